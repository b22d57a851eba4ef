"""The local IndoxRouter-compatible server, exercised over real loopback sockets with httpx."""

from __future__ import annotations

import base64
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from indox_jupyter.local import Fault, LocalServer, shared_server
from indox_jupyter.local import draw
from indox_jupyter.local.catalog import ASPECT_PIXELS, PROVIDERS

GEN = "/api/v1/images/generations"
KEY = "test-key-123"


@pytest.fixture(scope="module")
def srv():
    with LocalServer(api_keys={KEY, "other-key"}) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(srv):
    srv.reset()
    srv.latency = 0.0
    srv.fail_rate = 0.0
    yield


@pytest.fixture
def client(srv):
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as c:
        yield c


def gen(client: httpx.Client, **body) -> httpx.Response:
    body.setdefault("prompt", "a lighthouse at dawn")
    body.setdefault("model", "openai/dall-e-3")
    headers = {}
    if "idem" in body:
        headers["Idempotency-Key"] = body.pop("idem")
    return client.post(GEN, json=body, headers=headers)


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return im.size


# -- auth ------------------------------------------------------------------------------------
def test_auth_exchange_token_expiry_and_key_as_bearer(srv):
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        assert c.post("/api/v1/auth/api-key").status_code == 401
        bad = c.post("/api/v1/auth/api-key", headers={"X-API-Key": "wrong"})
        assert bad.status_code == 401 and bad.json() == {"detail": "Invalid API key"}

        r = c.post("/api/v1/auth/api-key", headers={"X-API-Key": KEY})
        assert r.status_code == 200
        token = r.json()["access_token"]
        assert r.json()["token_type"] == "bearer" and token != KEY
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"access_token={token}") and "HttpOnly" in cookie and "Path=/" in cookie

        bearer = {"Authorization": f"Bearer {token}"}
        assert c.get("/api/v1/user/usage", headers=bearer).status_code == 200
        assert c.get("/api/v1/user/usage", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert c.get("/api/v1/user/usage").status_code == 200  # the access_token cookie alone works

        srv.expire_tokens()
        r = c.get("/api/v1/user/usage", headers=bearer)
        assert r.status_code == 401 and r.json() == {"detail": "Could not validate credentials"}
        c.cookies.clear()
        assert c.get("/api/v1/user/usage").status_code == 401
        assert c.get("/api/v1/user/usage", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.get("/api/v1/user/usage", headers={"Authorization": f"Basic {KEY}"}).status_code == 401
        # re-auth gives a fresh, working token
        token2 = c.post("/api/v1/auth/api-key", headers={"X-API-Key": KEY}).json()["access_token"]
        assert c.get("/api/v1/user/usage", headers={"Authorization": f"Bearer {token2}"}).status_code == 200
    assert srv.stats["auth_exchanges"] == 2


def test_any_key_accepted_without_key_list():
    with LocalServer() as s, httpx.Client(base_url=s.url, timeout=10) as c:
        assert c.post("/api/v1/auth/api-key", headers={"X-API-Key": "anything"}).status_code == 200
        assert c.post("/api/v1/auth/api-key", headers={"X-API-Key": ""}).status_code == 401
        assert c.get("/api/v1/models/", headers={"Authorization": "Bearer whatever"}).status_code == 200


def test_auth_fault_lets_client_fall_back_to_key_as_bearer(srv, client):
    srv.script(Fault(path="/api/v1/auth/api-key", status=404, body={"detail": "Not Found"}))
    assert client.post("/api/v1/auth/api-key", headers={"X-API-Key": KEY}).status_code == 404
    assert gen(client).status_code == 200
    assert srv.stats["auth_exchanges"] == 0


def test_legacy_form_token_endpoint(srv):
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        r = c.post("/api/v1/auth/token", data={"username": KEY, "password": KEY})
        assert r.status_code == 200 and "access_token" in r.json()
        assert c.post("/api/v1/auth/token", data={"username": "x", "password": "y"}).status_code == 401


# -- generation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model,size",
    [
        ("openai/dall-e-2", "256x256"),
        ("openai/dall-e-2", "512x512"),
        ("openai/dall-e-3", "1792x1024"),
        ("xai/grok-2-image", None),
        ("stability/stable-diffusion-xl", "896x1152"),
    ],
)
def test_generation_url_honours_size(srv, client, model, size):
    body = {"model": model} if size is None else {"model": model, "size": size}
    r = gen(client, **body)
    assert r.status_code == 200, r.text
    doc = r.json()
    provider, name = model.split("/")
    assert doc["provider"] == provider and doc["model"] == name and doc["success"] is True
    assert doc["created_at"].endswith("Z") and len(doc["request_id"]) == 36
    item = doc["data"][0]
    assert item["index"] == 0 and item["url"].startswith(f"{srv.url}/files/") and "b64_json" not in item
    img = client.get(item["url"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    want = size or "1024x768"
    assert png_size(img.content) == tuple(int(v) for v in want.split("x"))


def test_dalle3_prices_and_revised_prompt(client):
    cases = [({}, 0.04), ({"size": "1792x1024"}, 0.08), ({"quality": "hd"}, 0.08),
             ({"quality": "hd", "size": "1024x1792", "style": "natural"}, 0.12)]
    for extra, price in cases:
        doc = gen(client, prompt="a red fox", **extra).json()
        assert doc["usage"]["cost"] == pytest.approx(price)
        assert doc["usage"]["cost_breakdown"] == {"total_cost": pytest.approx(price), "per_image": pytest.approx(price)}
        assert doc["data"][0]["revised_prompt"].startswith("A detailed, high-resolution digital illustration of a red fox")


def test_default_size_and_n_images(client):
    doc = gen(client, model="openai/dall-e-2", n=3).json()
    assert [d["index"] for d in doc["data"]] == [0, 1, 2]
    assert len({d["url"] for d in doc["data"]}) == 3
    assert doc["usage"]["cost"] == pytest.approx(0.06)
    assert png_size(client.get(doc["data"][0]["url"]).content) == (1024, 1024)


def test_b64_json_and_gpt_image_b64_only(client):
    doc = gen(client, model="openai/dall-e-2", size="512x512", response_format="b64_json").json()
    item = doc["data"][0]
    assert "url" not in item and png_size(base64.b64decode(item["b64_json"])) == (512, 512)

    doc = gen(client, model="openai/gpt-image-1", size="1536x1024", quality="high").json()
    item = doc["data"][0]
    assert set(item) == {"b64_json", "index"}  # no url, no revised_prompt
    assert png_size(base64.b64decode(item["b64_json"])) == (1536, 1024)
    assert doc["usage"]["cost"] == pytest.approx(0.167)
    assert gen(client, model="openai/gpt-image-1", quality="low").json()["usage"]["cost"] == pytest.approx(0.011)


def test_imagen_uses_aspect_ratio_and_ignores_size(client):
    for ratio, pixels in ASPECT_PIXELS.items():
        doc = gen(client, model="google/imagen-3.0-generate-002", aspect_ratio=ratio, size="256x256",
                  response_format="b64_json").json()
        assert png_size(base64.b64decode(doc["data"][0]["b64_json"])) == pixels
        assert doc["usage"]["cost"] == pytest.approx(0.03)
    r = gen(client, model="google/imagen-3.0-generate-002", aspect_ratio="2:3")
    assert r.status_code == 400 and "1:1" in r.json()["detail"]


def test_byok_costs_nothing_and_is_not_echoed(srv, client):
    r = gen(client, byok_api_key="sk-very-secret")
    doc = r.json()
    assert doc["byok_api_key"] is True and doc["usage"]["cost"] == 0.0
    assert "sk-very-secret" not in r.text
    assert srv.stats["charged"] == 0.0 and srv.stats["generations"] == 1


@pytest.mark.parametrize(
    "body,status,needle",
    [
        ({"prompt": ""}, 422, "prompt"),
        ({"prompt": None}, 422, "prompt"),
        ({"model": "dall-e-3"}, 400, "provider/model_name"),
        ({"model": "acme/thing"}, 404, "Provider 'acme' not found"),
        ({"model": "openai/dall-e-9"}, 404, "Model 'dall-e-9' not found for provider 'openai'"),
        ({"model": "openai/gpt-4o-mini"}, 400, "text_completions"),
        ({"size": "512x512"}, 400, "1024x1024, 1792x1024, 1024x1792"),
        ({"n": 2}, 400, "between 1 and 1"),
        ({"model": "openai/dall-e-2", "n": 11}, 400, "between 1 and 10"),
        ({"model": "openai/dall-e-2", "n": 0}, 400, "between 1 and 10"),
        ({"n": "2"}, 422, "n"),
        ({"quality": "ultra"}, 400, "standard, hd"),
        ({"style": "gothic"}, 400, "vivid, natural"),
        ({"model": "openai/dall-e-2", "style": "vivid"}, 400, "Style"),
        ({"response_format": "jpeg"}, 400, "response_format"),
    ],
)
def test_validation_errors(srv, client, body, status, needle):
    r = gen(client, **body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    if status == 422:
        assert isinstance(detail, list) and detail[0]["loc"] == ["body", needle]
        assert {"loc", "msg", "type"} <= set(detail[0])
    else:
        assert needle in detail
    assert srv.stats["generations"] == 0 and srv.stats["charged"] == 0


def test_missing_prompt_and_bad_json_are_422(client):
    r = client.post(GEN, json={"model": "openai/dall-e-3"})
    assert r.status_code == 422 and r.json()["detail"][0] == {
        "loc": ["body", "prompt"], "msg": "Field required", "type": "missing"}
    r = client.post(GEN, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and isinstance(r.json()["detail"], list)


def test_unauthenticated_generation_is_401(srv):
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        r = c.post(GEN, json={"prompt": "x", "model": "openai/dall-e-3"})
        assert r.status_code == 401 and r.json() == {"detail": "Could not validate credentials"}
    assert srv.stats["generations"] == 0


def test_prompt_is_untrusted_text(client):
    nasty = "<script>alert(1)</script> {prompt} %s \x00\u202e 🌄 " + "x" * 5000
    doc = gen(client, prompt=nasty, model="stability/stable-diffusion-xl", size="512x512").json()
    assert doc["data"][0]["revised_prompt"].startswith("<script>alert(1)</script> {prompt} %s")
    assert png_size(client.get(doc["data"][0]["url"]).content) == (512, 512)


# -- idempotency ---------------------------------------------------------------------------------
def test_idempotency_key_replays_without_charging(srv, client):
    a = gen(client, idem="call-1")
    b = gen(client, idem="call-1")
    assert a.status_code == b.status_code == 200
    assert a.content == b.content
    s = srv.stats
    assert s["generations"] == 1 and s["charged"] == pytest.approx(0.04) and s["idempotent_replays"] == 1
    assert gen(client, idem="call-2").json()["request_id"] != a.json()["request_id"]
    assert gen(client, idem="call-1", prompt="something else").status_code == 422


def test_concurrent_duplicates_generate_once(srv):
    srv.latency = 0.1

    def call(_: int) -> bytes:
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=20) as c:
            r = gen(c, idem="same-key")
            assert r.status_code == 200
            return r.content

    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(call, range(8)))
    assert len(set(bodies)) == 1
    s = srv.stats
    assert s["generations"] == 1 and s["idempotent_replays"] == 7 and s["charged"] == pytest.approx(0.04)


def test_lose_charges_then_retry_replays(srv, client):
    srv.script(Fault(action="lose"))
    with pytest.raises(httpx.TransportError):
        gen(client, idem="lost-1")
    assert srv.stats["generations"] == 1 and srv.stats["charged"] == pytest.approx(0.04)
    r = gen(client, idem="lost-1")
    assert r.status_code == 200
    assert srv.stats["generations"] == 1 and srv.stats["idempotent_replays"] == 1


# -- files ----------------------------------------------------------------------------------------
def test_files_expire_with_403_and_unknown_is_404(srv, client):
    url = gen(client).json()["data"][0]["url"]
    with httpx.Client(timeout=10) as anon:  # files need no auth
        assert anon.get(url).status_code == 200
        srv.expire_files()
        r = anon.get(url)
        assert r.status_code == 403 and b"Request has expired" in r.content
        assert anon.get(f"{srv.url}/files/doesnotexist.png").status_code == 404
    fresh = gen(client).json()["data"][0]["url"]
    assert client.get(fresh).status_code == 200


# -- listings -------------------------------------------------------------------------------------
def test_models_listing_shapes(client):
    providers = client.get("/api/v1/models/").json()
    assert {p["name"] for p in providers} == set(PROVIDERS)
    for p in providers:
        types = {m["type"] for m in p["models"]}
        assert "image_generation" in types and len(types) > 1
    openai = next(p for p in providers if p["name"] == "openai")
    d3 = next(m for m in openai["models"] if m["modelName"] == "dall-e-3")
    assert d3["max_n"] == 1 and d3["sizes"][0] == "1024x1024" and d3["qualities"] == ["standard", "hd"]
    assert d3["styles"] == ["vivid", "natural"] and d3["pricing"]["per_image"] == 0.04 and d3["description"]

    images = client.get("/api/v1/models/openai/image_generation").json()
    assert {m["modelName"] for m in images} == {"dall-e-2", "dall-e-3", "gpt-image-1"}
    assert client.get("/api/v1/models/google/imagen-3.0-generate-002").json()["aspect_ratios"][0] == "1:1"
    assert client.get("/api/v1/models/openai/nope").status_code == 404
    assert client.get("/api/v1/models/acme/image_generation").status_code == 404
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


def test_usage_shape(client):
    gen(client, model="openai/dall-e-2", n=2)
    gen(client)
    u = client.get("/api/v1/user/usage").json()
    assert u["total_cost"] == pytest.approx(0.08) and u["credits_remaining"] == pytest.approx(99.92)
    assert u["total_requests"] == 2 and u["images_generated"] == 3
    assert u["by_model"]["openai/dall-e-2"] == {"requests": 1, "images": 2, "cost": pytest.approx(0.04)}


# -- faults ---------------------------------------------------------------------------------------
def test_fault_respond_with_headers_is_not_charged(srv, client):
    srv.script(Fault(status=429, body={"detail": "Rate limit exceeded"}, headers={"Retry-After": "1"}),
               Fault(status=503))
    r = gen(client)
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json() == {"detail": "Rate limit exceeded"}
    r = gen(client)
    assert r.status_code == 503 and r.json() == {"detail": "Injected fault 503"}
    assert gen(client).status_code == 200
    assert srv.stats["generations"] == 1 and srv.stats["requests"] == 3


def test_fault_times_and_path_prefix(srv, client):
    srv.script(Fault(path="/files/*", status=500, times=2))
    url = gen(client).json()["data"][0]["url"]  # generation path does not match
    assert [client.get(url).status_code for _ in range(3)] == [500, 500, 200]


def test_fault_reset_and_truncate_raise(srv, client):
    srv.script(Fault(action="reset"), Fault(action="reset", size=20), Fault(action="truncate", status=200))
    for _ in range(3):
        with pytest.raises(httpx.TransportError):
            gen(client)
    assert gen(client).status_code == 200
    assert srv.stats["generations"] == 1


def test_fault_delay_trips_read_timeout(srv, client):
    srv.script(Fault(path="/api/v1/user/usage", status=200, body={"ok": True}, delay=1.0))
    with pytest.raises(httpx.ReadTimeout):
        client.get("/api/v1/user/usage", timeout=httpx.Timeout(5, read=0.2))
    srv.script(Fault(path="/api/v1/user/usage", action="pass", delay=0.3, headers={"X-Injected": "yes"}))
    r = client.get("/api/v1/user/usage", timeout=10)
    assert r.status_code == 200 and r.headers["x-injected"] == "yes" and "total_cost" in r.json()


def test_fault_slow_and_huge(srv, client):
    srv.script(Fault(path="/api/v1/user/usage", action="slow", status=200, body='{"a": 1}', delay=0.01))
    assert client.get("/api/v1/user/usage").json() == {"a": 1}
    url = gen(client, model="openai/dall-e-2", size="256x256").json()["data"][0]["url"]
    srv.script(Fault(path="/files/*", action="huge", status=200, size=300_000))
    got = 0
    with client.stream("GET", url) as r:
        assert r.status_code == 200 and "content-length" not in r.headers
        for chunk in r.iter_bytes():
            got += len(chunk)
    assert got == 300_000


def test_fault_dict_round_trip():
    f = Fault(path="/files/*", status=503, body=b"raw", headers={"Retry-After": "2"}, action="respond", times=3)
    g = Fault.from_dict(json.loads(json.dumps(f.to_dict())))
    assert g.path == "/files/*" and g.status == 503 and g.body == "raw" and g.times == 3
    with pytest.raises(ValueError):
        Fault(action="explode")
    with pytest.raises(ValueError):
        Fault.from_dict({"bogus": 1})


# -- control API ----------------------------------------------------------------------------------
def test_control_api_over_http(srv, client):
    with httpx.Client(base_url=srv.url, timeout=10) as ctl:
        r = ctl.post("/_local/faults", json={"faults": [{"status": 502, "headers": {"Retry-After": "0"}}]})
        assert r.status_code == 200 and r.json()["queued"] == 1
        assert gen(client).status_code == 502
        assert ctl.post("/_local/faults", json={"faults": [{"action": "nope"}]}).status_code == 400

        assert ctl.post("/_local/config", json={"fail_rate": 1.0}).json()["fail_rate"] == 1.0
        assert gen(client).status_code == 503
        ctl.post("/_local/config", json={"fail_rate": 0.0, "latency": 0.0})

        url = gen(client).json()["data"][0]["url"]
        stats = ctl.get("/_local/stats").json()
        assert stats["generations"] == 1 and stats["by_path"][GEN] == 3
        ctl.post("/_local/expire-files")
        assert client.get(url).status_code == 403
        ctl.post("/_local/expire-tokens")
        tok = ctl.post("/api/v1/auth/api-key", headers={"X-API-Key": KEY}).json()["access_token"]
        ctl.post("/_local/expire-tokens")
        assert ctl.get("/api/v1/user/usage", headers={"Authorization": f"Bearer {tok}"}).status_code == 401
        assert ctl.post("/_local/reset").json() == {"ok": True}
        assert ctl.get("/_local/stats").json()["requests"] == 0
        assert ctl.get("/_local/requests").json() == []


def test_no_secret_in_recorded_requests(srv):
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        tok = c.post("/api/v1/auth/api-key", headers={"X-API-Key": KEY}).json()["access_token"]
        c.post(GEN, json={"prompt": "p", "model": "openai/dall-e-3", "byok_api_key": "sk-secret-byok"},
               headers={"Authorization": f"Bearer {tok}"})
        text = c.get("/_local/requests").text
    for secret in (KEY, tok, "sk-secret-byok"):
        assert secret not in text
        assert secret not in json.dumps(srv.requests)
    recs = json.loads(text)
    assert recs[0]["headers"]["x-api-key"] == "***"
    assert recs[1]["headers"]["authorization"] == "***" and recs[1]["json"]["byok_api_key"] == "***"
    assert recs[1]["auth"] == "token" and recs[1]["json"]["prompt"] == "p"


# -- load, failure rate, determinism ----------------------------------------------------------------
def test_64_concurrent_requests_with_latency(srv):
    srv.latency = 0.2

    async def main() -> list[int]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(base_url=srv.url, headers={"Authorization": f"Bearer {KEY}"},
                                     timeout=30, limits=limits) as c:
            import asyncio
            rs = await asyncio.gather(*(c.post(GEN, json={"prompt": f"img {i}", "model": "openai/dall-e-2",
                                                          "size": "256x256"}) for i in range(64)))
            return [r.status_code for r in rs]

    import asyncio
    statuses = asyncio.run(main())
    assert statuses == [200] * 64
    assert srv.stats["generations"] == 64 and srv.stats["images"] == 64


def test_fail_rate_one_fails_everything_and_charges_nothing(srv, client):
    srv.fail_rate = 1.0
    rs = [gen(client) for _ in range(5)]
    assert all(r.status_code == 503 and r.json() == {"detail": "Provider temporarily unavailable"} for r in rs)
    assert srv.stats["generations"] == 0 and srv.stats["charged"] == 0


def test_fail_rate_is_deterministic_from_seed():
    def pattern() -> list[int]:
        with LocalServer(seed=7, fail_rate=0.5) as s, httpx.Client(base_url=s.url, timeout=10) as c:
            return [c.post(GEN, json={"prompt": "x", "model": "openai/dall-e-2", "size": "256x256"},
                           headers={"Authorization": "Bearer k"}).status_code for _ in range(12)]

    first = pattern()
    assert first == pattern() and {200, 503} == set(first)


def test_images_are_deterministic(client):
    a = gen(client, model="openai/dall-e-2", size="256x256", response_format="b64_json", seed=5, n=2).json()
    b = gen(client, model="openai/dall-e-2", size="256x256", response_format="b64_json", seed=5, n=2).json()
    assert [d["b64_json"] for d in a["data"]] == [d["b64_json"] for d in b["data"]]
    assert a["data"][0]["b64_json"] != a["data"][1]["b64_json"]  # index matters
    draw.render_png.cache_clear()
    assert draw.render_png("p", 1, 0, 300, 200) == draw.render_png.__wrapped__("p", 1, 0, 300, 200)
    assert draw.render_png("p", 1, 0, 300, 200) != draw.render_png("p", 2, 0, 300, 200)


# -- lifecycle ----------------------------------------------------------------------------------------
def test_start_is_idempotent_and_restart_keeps_port():
    s = LocalServer()
    assert s.start() is s.start()
    url = s.url
    with httpx.Client(base_url=url, timeout=10) as c:
        assert c.get("/api/v1/models/", headers={"Authorization": "Bearer k"}).status_code == 200
        s.stop()
        s.stop()
        with pytest.raises(httpx.TransportError):
            c.get("/api/v1/models/", headers={"Authorization": "Bearer k"})
    s.start()
    try:
        assert s.url == url
        assert httpx.get(f"{url}/api/v1/models/", headers={"Authorization": "Bearer k"}).status_code == 200
    finally:
        s.stop()


def test_shared_server_is_a_thread_safe_singleton():
    got: list[LocalServer] = []
    threads = [threading.Thread(target=lambda: got.append(shared_server())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 8 and all(g is got[0] for g in got) and got[0].running


def test_revising_a_revised_prompt_does_not_wrap_it_twice():
    from indox_jupyter.local.catalog import find_model

    model = find_model("openai", "dall-e-3")
    once = model.revise("A red fox in NASA colours")
    assert once.startswith("A detailed") and " of a red fox in NASA colours," in once
    assert model.revise(once) == once
