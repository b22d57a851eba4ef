"""The client against the real local server over loopback: protocol, auth, errors, retries."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import io
import threading
import time

import httpx
import pytest
from PIL import Image

import indox_jupyter as ij
from indox_jupyter import AsyncClient, Client, ImageResult
from indox_jupyter._core import RetryPolicy, parse_retry_after
from indox_jupyter.local import Fault

from .conftest import TEST_API_KEY, TEST_BYOK, generation_requests


def bodies(server) -> list[dict]:
    return [r["json"] for r in generation_requests(server)]


# -- protocol: the body per provider --------------------------------------------------------


def test_dalle3_sends_only_the_parameters_that_are_set(client, server):
    result = client.images("a red fox", model="openai/dall-e-3", size="1024x1024",
                           quality="hd", style="natural")
    assert bodies(server) == [{"prompt": "a red fox", "model": "openai/dall-e-3",
                               "size": "1024x1024", "quality": "hd", "style": "natural"}]
    assert isinstance(result, ImageResult)
    assert result.model == "openai/dall-e-3" and result.provider == "openai"
    assert result.cost == pytest.approx(0.08)
    assert result.images[0].width == 1024 and result.images[0].mime_type == "image/png"


def test_google_size_becomes_aspect_ratio(client, server):
    client.images("dunes", model="google/imagen-3.0-generate-002", size="1792x1024", n=2)
    client.images("dunes", model="google/imagen-3.0-generate-002", size="4:3")
    client.images("dunes", model="google/imagen-3.0-generate-002", aspect_ratio="9:16", size="1024x1024")
    sent = bodies(server)
    assert [b.get("aspect_ratio") for b in sent] == ["16:9", "4:3", "9:16"]
    assert all("size" not in b for b in sent)
    assert sent[0]["n"] == 2


def test_xai_drops_size_and_everything_but_n_and_format(client, server):
    with pytest.warns(UserWarning, match="does not take"):
        client.images("a robot", model="xai/grok-2-image", size="1024x1024", n=1,
                      quality="hd", response_format="url")
    assert bodies(server) == [{"prompt": "a robot", "model": "xai/grok-2-image", "n": 1,
                               "response_format": "url"}]


def test_gpt_image_filter_keeps_byok_and_answers_b64(client, server):
    with pytest.warns(UserWarning, match="response_format"):
        result = client.images("a mug", model="openai/gpt-image-1", size="1024x1024",
                               quality="low", response_format="url", byok_api_key=TEST_BYOK)
    (body,) = bodies(server)
    assert set(body) == {"prompt", "model", "size", "quality", "byok_api_key"}
    assert result.images[0].url is None and result.images[0].data.startswith(b"\x89PNG")
    assert result.cost == 0.0  # BYOK: no credit deduction
    assert TEST_BYOK not in repr(result) and "byok_api_key" not in result.params


def test_extra_keywords_travel_in_additional_params(client, server):
    client.images("a boat", model="stability/stable-diffusion-xl", seed=7, negative_prompt="blur",
                  guidance_scale=6.5, steps=30, sampler="euler")
    (body,) = bodies(server)
    assert body["seed"] == 7 and body["negative_prompt"] == "blur" and body["guidance_scale"] == 6.5
    assert body["additional_params"] == {"steps": 30, "sampler": "euler"}


def test_b64_json_response_format(client, server):
    result = client.images("a kite", model="openai/dall-e-2", size="256x256", n=3,
                           response_format="b64_json")
    assert [img.url for img in result.images] == [None, None, None]
    assert [(img.width, img.height) for img in result.images] == [(256, 256)] * 3
    assert "b64_json" not in repr(result.images[0]) or "not decoded" in repr(result.images[0])
    assert len(repr(result.images[0])) < 200


def test_openai_style_response_form_is_accepted(client, server):
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, "PNG")
    body = {"created": 1684939249,
            "data": [{"b64_json": base64.b64encode(png.getvalue()).decode(), "revised_prompt": "red"}]}
    server.script(Fault(status=200, body=body))
    result = client.images("red square")
    assert result == body  # the Mapping equals the JSON
    assert result["created"] == 1684939249 and result.created.year == 2023
    assert result.cost is None and result.request_id is None
    assert result.images[0].revised_prompt == "red" and result.images[0].width == 8


def test_result_is_a_read_only_mapping(client):
    result = client.images("a tree")
    with pytest.raises(TypeError):
        result["data"] = []  # type: ignore[index]
    assert result.to_dict() == dict(result)
    assert result["data"][0]["url"].startswith("http")


def test_save_writes_original_bytes(client, tmp_path):
    result = client.images("a lamp", model="openai/dall-e-2", size="512x512", n=2)
    paths = result.save(tmp_path / "out", prefix="lamp")
    assert [p.name for p in paths] == ["lamp_0.png", "lamp_1.png"]
    assert paths[0].read_bytes() == result.images[0].data
    single = result.images[1].save(tmp_path)
    assert single == tmp_path / "image_1.png"


# -- authentication -----------------------------------------------------------------------


def test_key_is_exchanged_once_then_bearer_token(client, server):
    client.images("one")
    client.images("two")
    client.models()
    assert server.stats["auth_exchanges"] == 1
    kinds = [r["auth"] for r in server.requests if r["path"].startswith("/api/v1/") and "auth" not in r["path"]]
    assert kinds == ["token", "token", "token"]


def test_sixteen_concurrent_first_requests_exchange_once(server):
    with Client(TEST_API_KEY, base_url=server.url) as client:
        threads = [threading.Thread(target=client.images, args=(f"p{i}",)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert server.stats["auth_exchanges"] == 1
    assert server.stats["generations"] == 16


def test_async_sixteen_concurrent_first_requests_exchange_once(server):
    async def main():
        async with AsyncClient(TEST_API_KEY, base_url=server.url) as client:
            return await asyncio.gather(*(client.images(f"p{i}") for i in range(16)))

    results = asyncio.run(main())
    assert len(results) == 16 and all(isinstance(r, ImageResult) for r in results)
    assert server.stats["auth_exchanges"] == 1


def test_expired_token_reauthenticates_once_and_repeats(client, server):
    client.images("before")
    server.expire_tokens()
    client.images("after")
    assert server.stats["auth_exchanges"] == 2
    paths = [r["path"] for r in server.requests]
    assert paths.count("/api/v1/images/generations") == 3  # before, refused, repeated


def test_missing_exchange_endpoint_falls_back_to_key_as_bearer(client, server):
    server.script(Fault(path="/api/v1/auth/api-key", status=404, body={"detail": "Not Found"}))
    client.images("fallback")
    (gen,) = generation_requests(server)
    assert gen["auth"] == "api_key"


def test_wrong_key_is_an_authentication_error_without_the_key(server):
    server.script(Fault(path="/api/v1/auth/api-key", status=401, body={"detail": "Invalid API key"}))
    with Client(TEST_API_KEY, base_url=server.url) as client:
        with pytest.raises(ij.AuthenticationError) as info:
            client.images("x")
    assert "Invalid API key" in str(info.value) and TEST_API_KEY not in str(info.value)
    assert generation_requests(server) == []


def test_no_key_says_how_to_set_one(monkeypatch):
    with pytest.raises(ij.AuthenticationError, match="INDOX_ROUTER_API_KEY.*base_url=\"local\""):
        Client()


def test_local_needs_no_key(monkeypatch):
    monkeypatch.setenv("INDOX_ROUTER_BASE_URL", "local")
    with Client() as client:
        assert client.is_local
        assert client.images("offline").images[0].data


def test_env_key_and_base_url(monkeypatch, server):
    monkeypatch.setenv("INDOX_ROUTER_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("INDOX_ROUTER_BASE_URL", server.url + "/api/v1/")
    with Client() as client:
        assert client.base_url == server.url
        client.images("from env")


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "detail", "cls"),
    [
        (400, "size 999x999 is not supported", ij.InvalidParametersError),
        (400, "Request validation failed: bad", ij.ValidationError),
        (402, "Insufficient credits", ij.InsufficientCreditsError),
        (403, "Forbidden", ij.AuthenticationError),
        (404, "Provider 'acme' not found", ij.ProviderNotFoundError),
        (404, "Model 'x' not found for provider 'openai'", ij.ModelNotFoundError),
        (404, "Model 'x' is disabled", ij.ModelNotAvailableError),
        (422, [{"loc": ["body", "prompt"], "msg": "field required", "type": "missing"}], ij.ValidationError),
        (418, "teapot", ij.APIError),
    ],
)
def test_status_codes_map_to_the_exception_tree_without_retry(client, server, status, detail, cls):
    server.script(Fault(status=status, body={"detail": detail}))
    with pytest.raises(cls) as info:
        client.images("x")
    err = info.value
    assert err.status_code == status and f"HTTP {status}" in str(err)
    shown = detail if isinstance(detail, str) else "prompt: field required"
    assert shown in str(err) and "\n" not in str(err)
    assert len(generation_requests(server)) == 1  # 4xx is never retried


def test_invalid_parameter_errors_are_value_errors():
    assert issubclass(ij.ValidationError, ValueError)
    assert issubclass(ij.InvalidParametersError, ValueError)
    assert issubclass(ij.APITimeoutError, ij.NetworkError)


@pytest.mark.parametrize(("status", "cls"), [(429, ij.RateLimitError), (500, ij.ProviderError),
                                             (502, ij.ServiceUnavailableError),
                                             (503, ij.ServiceUnavailableError),
                                             (504, ij.ServiceUnavailableError)])
def test_retryable_statuses_are_retried_then_raised(client, server, sleeps, status, cls):
    server.script(Fault(status=status, times=3, body={"detail": f"boom {status}"}))
    with pytest.raises(cls, match=f"boom {status}.*after 3 attempts"):
        client.images("x")
    assert len(generation_requests(server)) == 3  # max_retries=2
    assert len(sleeps) == 2 and all(0 <= s <= 8 for s in sleeps)
    assert server.stats["generations"] == 0 and server.stats["charged"] == 0


def test_retry_then_success_uses_one_idempotency_key(client, server, sleeps):
    server.script(Fault(status=503), Fault(status=502))
    result = client.images("x")
    gens = generation_requests(server)
    assert len(gens) == 3 and result.images
    keys = {g["headers"]["idempotency-key"] for g in gens}
    assert len(keys) == 1 and keys.pop().startswith("indox-")
    client.images("y")
    assert generation_requests(server)[-1]["headers"]["idempotency-key"] not in keys


def test_retry_after_seconds_and_http_date_are_honoured(client, server, sleeps):
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.script(Fault(status=429, headers={"Retry-After": "3"}),
                  Fault(status=503, headers={"Retry-After": future}))
    client.images("x")
    assert sleeps[0] == 3.0
    assert 25 <= sleeps[1] <= 31


def test_retry_after_is_capped(client, server, sleeps):
    server.script(Fault(status=429, headers={"Retry-After": "3600"}))
    client.images("x")
    assert sleeps == [60.0]


def test_max_retries_zero_never_retries(server, sleeps):
    with Client(TEST_API_KEY, base_url=server.url, max_retries=0) as client:
        server.script(Fault(status=503))
        with pytest.raises(ij.ServiceUnavailableError):
            client.images("x")
    assert len(generation_requests(server)) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2", 2.0), ("0.5", 0.5), ("-4", 0.0), ("soon", None), ("", None), (None, None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value) == expected


def test_backoff_is_capped_full_jitter():
    policy = RetryPolicy(random=lambda: 1.0)
    assert [policy.delay(a) for a in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert RetryPolicy(random=lambda: 0.0).delay(3) == 0.0


def test_read_timeout_after_send_is_not_retried(server, sleeps):
    server.script(Fault(action="pass", delay=1.5))
    with Client(TEST_API_KEY, base_url=server.url, timeout=httpx.Timeout(0.5, connect=2)) as client:
        client._sleep = sleeps.append
        client.models()  # authenticate first, with the generous connect timeout
        with pytest.raises(ij.APITimeoutError, match="may have completed") as info:
            client.images("slow")
    assert info.value.may_have_completed
    assert len(generation_requests(server)) == 1 and sleeps == []


def test_connection_reset_after_send_is_not_retried_for_a_generation(client, server, sleeps):
    server.script(Fault(action="lose"))
    with pytest.raises(ij.NetworkError, match="may have completed"):
        client.images("lost answer")
    assert len(generation_requests(server)) == 1
    assert server.stats["generations"] == 1  # the server did the work: we must not pay twice


def test_reads_are_retried_after_a_reset(client, server, sleeps):
    client.models()
    server.script(Fault(path="/api/v1/models/", action="reset"))
    assert client.models()
    assert len(sleeps) == 1


def test_unreachable_server_is_a_network_error(sleeps):
    with Client(TEST_API_KEY, base_url="http://127.0.0.1:9") as client:
        client._sleep = sleeps.append
        with pytest.raises(ij.NetworkError, match="could not reach http://127.0.0.1:9"):
            client.images("x")
    assert len(sleeps) == 2  # connection refused: never delivered, so retried


def test_html_page_with_200_is_an_api_error(client, server):
    server.script(Fault(status=200, body="<html><title>Gateway</title></html>", content_type="text/html"))
    with pytest.raises(ij.APIError, match="HTML page: Gateway.*instead of JSON"):
        client.images("x")


def test_success_false_and_empty_data(client, server):
    server.script(Fault(status=200, body={"success": False, "message": "content policy", "data": []}),
                  Fault(status=200, body={"success": True, "data": []}))
    with pytest.raises(ij.ProviderError, match="content policy"):
        client.images("x")
    with pytest.raises(ij.APIError, match="no images"):
        client.images("x")


# -- validation sends nothing ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": 42}, "prompt must be text"),
        ({"model": "dalle3"}, "use|e.g. openai/dall-e-3"),
        ({"model": "nonsense"}, "provider/model"),
        ({"size": "huge"}, "WIDTHxHEIGHT"),
        ({"size": "0x100"}, "WIDTHxHEIGHT"),
        ({"n": 11}, "between 1 and 10"),
        ({"n": 0}, "between 1 and 10"),
        ({"n": True}, "whole number"),
        ({"n": 1.5}, "whole number"),
        ({"seed": "abc"}, "whole number"),
        ({"aspect_ratio": "wide"}, "W:H"),
        ({"response_format": "png"}, "'url' or 'b64_json'"),
        ({"byok_api_key": ""}, "non-empty"),
        ({"quality": 3}, "must be text"),
        ({"guidance_scale": "high"}, "must be a number"),
        ({"extra_param": object()}, "JSON-serialisable"),
    ],
)
def test_bad_input_is_refused_before_sending(client, server, kwargs, message):
    args = {"prompt": "a cat", **kwargs}
    with pytest.raises(ij.ValidationError, match=message) as info:
        client.images(**args)
    assert "\n" not in str(info.value)
    assert server.requests == []  # not even the key exchange


def test_bad_model_suggests_the_full_id(client):
    with pytest.raises(ij.ValidationError, match=r"e\.g\. openai/dall-e-3 \(got 'dalle3'\)"):
        client.images("x", model="dalle3")
    with pytest.raises(ij.ValidationError, match="e.g. google/imagen-3"):
        client.images("x", model="imagen-3.0-generate-002")


@pytest.mark.parametrize("kwargs", [{"timeout": -1}, {"timeout": float("nan")}, {"timeout": float("inf")},
                                    {"max_retries": -1}, {"base_url": "ftp://x"}])
def test_bad_client_settings(kwargs):
    with pytest.raises(ij.ValidationError):
        Client(TEST_API_KEY, **kwargs)


# -- downloads ------------------------------------------------------------------------------


def test_downloads_carry_no_credentials_and_happen_once(client, server):
    result = client.images("a bell")
    image = result.images[0]
    assert not image.loaded
    first = image.data
    assert image.data is first
    downloads = [r for r in server.requests if r["path"].startswith("/files/")]
    assert len(downloads) == 1
    assert "authorization" not in downloads[0]["headers"] and "cookie" not in downloads[0]["headers"]


def test_expired_url_says_so(client, server):
    result = client.images("a bell")
    server.expire_files()
    with pytest.raises(ij.ImageDownloadError, match="HTTP 403: it has expired") as info:
        result.images[0].data
    assert info.value.status_code == 403


def test_url_answering_html_is_refused(client, server):
    result = client.images("a bell")
    server.script(Fault(path="/files/*", status=200, body="<html>nope</html>", content_type="image/png"))
    with pytest.raises(ij.ImageDownloadError, match="HTML page"):
        result.images[0].data


def test_truncated_png_is_refused(client, server):
    result = client.images("a bell")
    data = result.images[0].data
    again = client.images("a bell 2")
    server.script(Fault(path="/files/*", status=200, body=data[: len(data) // 2].decode("latin-1"),
                        content_type="image/png"))
    with pytest.raises(ij.ImageDownloadError, match="corrupt or truncated|not an image"):
        again.images[0].data


def test_oversize_download_is_cut_off(client, server):
    from indox_jupyter._download import fetch_image

    result = client.images("a bell")
    server.script(Fault(path="/files/*", status=200, action="huge", size=3 * 1024 * 1024))
    with pytest.raises(ij.ImageDownloadError, match="larger than the 1 MB limit"):
        fetch_image(result.images[0].url, max_bytes=1024 * 1024)


def test_decompression_bomb_is_refused():
    from indox_jupyter._download import verify_image

    bomb = io.BytesIO()
    Image.new("1", (12000, 12000)).save(bomb, "PNG")  # ~15 kB on disk, 144 Mpx decoded
    assert len(bomb.getvalue()) < 100_000
    with pytest.raises(ij.ImageDownloadError, match="pixel limit|too large"):
        verify_image(bomb.getvalue())


@pytest.mark.parametrize("url", ["file:///etc/passwd", "javascript:alert(1)", "ftp://x/y.png", "data:,x"])
def test_non_http_urls_are_never_fetched(url):
    result = ImageResult({"data": [{"url": url}]})
    with pytest.raises(ij.ImageDownloadError, match="only http and https"):
        result.images[0].data


def test_redirect_to_another_host_is_followed_without_credentials(client, server):
    result = client.images("a bell")
    target = result.images[0].url.replace("127.0.0.1", "localhost")
    server.script(Fault(path="/files/*", status=302, headers={"Location": target}, body=""))
    assert result.images[0].data.startswith(b"\x89PNG")
    hops = [r for r in server.requests if r["path"].startswith("/files/")]
    assert len(hops) == 2
    assert all("authorization" not in h["headers"] and "cookie" not in h["headers"] for h in hops)


def test_invalid_base64_is_a_download_error():
    result = ImageResult({"data": [{"b64_json": "***not base64***"}]})
    with pytest.raises(ij.ImageDownloadError, match="not valid base64"):
        result.images[0].data


# -- secrets --------------------------------------------------------------------------------


def test_secrets_never_appear_in_reprs_or_errors(server):
    with Client(TEST_API_KEY, base_url=server.url) as client:
        assert TEST_API_KEY not in repr(client) and "…CRET" in repr(client)
        client.images("x")
        token = client._core.token
        assert token and token not in repr(client)
        echo = f"bad key {TEST_API_KEY} token {token} byok {TEST_BYOK}"
        server.script(Fault(status=400, body={"detail": echo}))
        with pytest.raises(ij.InvalidParametersError) as info:
            client.images("x", byok_api_key=TEST_BYOK)
    text = str(info.value) + repr(info.value) + str(info.value.detail)
    for secret in (TEST_API_KEY, token, TEST_BYOK):
        assert secret not in text


# -- models, usage, async -------------------------------------------------------------------


def test_models_lists_image_models_only(client):
    models = client.models()
    ids = [m.id for m in models]
    assert "openai/dall-e-3" in ids and "google/imagen-3.0-generate-002" in ids
    assert all("/" in i for i in ids) and not any("gpt-4o" in i for i in ids)
    dalle3 = next(m for m in models if m.id == "openai/dall-e-3")
    assert "1792x1024" in dalle3.sizes and dalle3.max_n == 1


def test_usage_reports_spend(client):
    client.images("x", model="openai/dall-e-2", size="256x256", n=2)
    usage = client.usage()
    assert usage["total_cost"] == pytest.approx(0.032)


def test_async_client_mirrors_sync(server):
    async def main():
        async with AsyncClient(TEST_API_KEY, base_url=server.url) as client:
            client._sleep = lambda s: asyncio.sleep(0)
            server.script(Fault(status=503))
            result = await client.images("async cat", model="openai/dall-e-2", size="256x256")
            models = await client.models()
            with pytest.raises(ij.ValidationError):
                await client.images("")
            return result, models

    result, models = asyncio.run(main())
    assert result.images[0].width == 256 and models
    assert len(generation_requests(server)) == 2


def test_public_surface_is_small():
    assert sorted(ij.__all__) == ij.__all__
    for name in ("Client", "AsyncClient", "ImageResult", "GeneratedImage", "IndoxRouterError"):
        assert name in ij.__all__


def test_cli_generate_local(tmp_path, capsys):
    from indox_jupyter.cli import main

    assert main(["generate", "a lighthouse at dusk", "--local", "-s", "1024x1024",
                 "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count(str(tmp_path)) == 1 and "revised prompt: A detailed" in out
    assert len(list(tmp_path.glob("*.png"))) == 1


def test_cli_bad_input_is_one_line(capsys):
    from indox_jupyter.cli import main

    assert main(["generate", "x", "--local", "-m", "dalle3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "openai/dall-e-3" in err


def test_cli_serve_runs_the_local_server(tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "indox_jupyter.cli", "serve", "--port", str(port),
                             "--latency", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/api/v1/models/", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.1)
        with Client(TEST_API_KEY, base_url=url) as client:
            assert client.images("served from the shell").images[0].data.startswith(b"\x89PNG")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert url in out and TEST_API_KEY not in out


def test_cli_serve_refuses_bad_settings(capsys):
    from indox_jupyter.cli import main

    assert main(["serve", "--fail-rate", "2"]) == 2
    assert "--fail-rate must be between 0 and 1" in capsys.readouterr().err


def test_cli_unwritable_output_is_one_line(capsys, tmp_path):
    from indox_jupyter.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["generate", "x", "--local", "-o", str(blocker / "sub")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_hostile_item_values_never_escape_as_raw_exceptions(client, server):
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "blue").save(png, "PNG")
    good = base64.b64encode(png.getvalue()).decode()
    body = {"created": 10**30, "usage": {"cost": 0.02, "cost_breakdown": ["x"]},
            "data": [{"b64_json": good, "index": "²", "revised_prompt": 42},
                     {"url": 17}, {"b64_json": ["not", "text"]}]}
    server.script(Fault(status=200, body=body))
    with pytest.warns(UserWarning, match="2 of 3 items carried no image"):
        result = client.images("odd answer")
    (image,) = result.images
    assert image.index == 0 and image.revised_prompt is None and image.width == 8
    assert result.created is None and result.cost == 0.02
    assert "ImageResult" in repr(result)


def test_undecodable_answer_is_an_api_error_not_a_raw_httpx_error(client, server):
    server.script(Fault(status=200, body="not gzip at all", headers={"Content-Encoding": "gzip"},
                        content_type="application/json"))
    with pytest.raises(ij.APIError, match="could not be read.*may have completed"):
        client.images("x")


def test_auto_named_files_never_overwrite_another_image(client, tmp_path):
    first = client.images("one", model="openai/dall-e-2", size="256x256")
    second = client.images("two", model="openai/dall-e-2", size="256x256")
    paths = first.save(tmp_path, prefix="same") + second.save(tmp_path, prefix="same")
    assert [p.name for p in paths] == ["same_0.png", "same_0-2.png"]
    assert paths[0].read_bytes() != paths[1].read_bytes()
    assert first.save(tmp_path, prefix="same") == paths[:1]  # same bytes: the same file
    assert second.images[0].save(tmp_path).name == "image_0.png"


def test_results_carry_their_server_scope(client, server):
    from indox_jupyter import Gallery

    result = client.images("scoped", model="openai/dall-e-2", size="256x256")
    assert result.server == server.url
    with Client(base_url="local") as local:
        local_result = local.images("scoped", model="openai/dall-e-2", size="256x256")
    assert local_result.server == "local"
    gallery = Gallery()
    gallery.add(local_result)
    assert gallery.finder(local)("scoped", "openai/dall-e-2", dict(local_result.params)) is not None
    # the local sample never answers a request to another server
    assert gallery.find("scoped", "openai/dall-e-2", dict(local_result.params)) is None
