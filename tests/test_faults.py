"""The fault matrix: every way the router or an image host can misbehave, over real loopback sockets.

Each row of ``MATRIX`` scripts one fault on the session's ``LocalServer`` and states what the
client must do: succeed (after retries where the fault is transient) or raise the documented
typed error with a one-line message. Around every row, ``test_fault`` also checks that an image
received *before* the fault is still retrievable without a request (nothing that arrived is lost).

Rows that overlap ``tests/test_client.py`` name it in ``see``; they test a different angle (the
transient case, the images kept, the bounds) rather than repeating it.

``python -m tests.test_faults`` prints the table that RELIABILITY.md carries.
"""

from __future__ import annotations

import base64
import email.utils
import io
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from PIL import Image

import indox_jupyter as ij
from indox_jupyter import Client, ImageResult
from indox_jupyter import _download
from indox_jupyter.local import Fault, LocalServer

from .conftest import TEST_API_KEY

FILES = "/files/*"
MB = 1024 * 1024


def png_bytes(width: int = 16, height: int = 16, color: str = "teal") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Ctx:
    """What a row gets: the client (retry sleeps recorded, not waited), the server, and helpers."""

    client: Client
    server: LocalServer
    sleeps: list[float]
    mark: int = 0  # requests recorded before the row started
    charged0: float = 0.0
    generations0: int = 0

    def requests(self) -> list[dict]:
        return self.server.requests[self.mark:]

    def gens(self) -> list[dict]:
        return [r for r in self.requests() if r["path"] == "/api/v1/images/generations"]

    def files(self) -> list[dict]:
        return [r for r in self.requests() if r["path"].startswith("/files/")]

    def generated(self) -> int:
        return self.server.stats["generations"] - self.generations0

    def charged(self) -> float:
        return round(self.server.stats["charged"] - self.charged0, 6)


def one_line(err: BaseException) -> str:
    """The message a user sees: one line, bounded, no traceback text."""
    text = str(err)
    assert text and "\n" not in text and "\r" not in text, text
    assert len(text) <= 500, len(text)
    assert "Traceback" not in text and "httpx." not in text and "File \"" not in text
    return text


def raises(cls: type[BaseException], fn: Callable[[], object], match: str | None = None) -> BaseException:
    with pytest.raises(cls, match=match) as info:
        fn()
    assert isinstance(info.value, ij.IndoxRouterError)
    one_line(info.value)
    return info.value


def all_decodable(result: ImageResult) -> None:
    for img in result.images:
        Image.open(io.BytesIO(img.data)).load()


@dataclass
class Row:
    id: str
    fault: str
    outcome: str
    run: Callable[[Ctx], None]
    see: str = ""
    marks: list = field(default_factory=list)


MATRIX: list[Row] = []


def row(id: str, fault: str, outcome: str, see: str = "") -> Callable:
    def register(fn: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
        assert id not in {r.id for r in MATRIX}, id
        MATRIX.append(Row(id, fault, outcome, fn, see))
        return fn

    return register


def one_charge_success(c: Ctx, result: ImageResult, attempts: int) -> None:
    """A transient fault survived: the images are here, sent `attempts` times under ONE key, paid once."""
    gens = c.gens()
    assert len(gens) == attempts
    assert len({g["headers"]["idempotency-key"] for g in gens}) == 1
    assert c.generated() == 1 and c.server.stats["idempotent_replays"] == 0
    all_decodable(result)


# -- the router: rate limits and server errors ---------------------------------------------------


@row("429-no-retry-after", "429 without Retry-After, once", "success after a jittered backoff (<= 0.5 s)")
def _(c: Ctx) -> None:
    c.server.script(Fault(status=429, body={"detail": "slow down"}))
    result = c.client.images("a fox")
    one_charge_success(c, result, 2)
    assert len(c.sleeps) == 1 and 0 <= c.sleeps[0] <= 0.5


@row("429-retry-after-seconds", "429 with Retry-After: 2, once", "success after exactly 2 s",
     see="test_client::test_retry_after_seconds_and_http_date_are_honoured")
def _(c: Ctx) -> None:
    c.server.script(Fault(status=429, headers={"Retry-After": "2"}))
    result = c.client.images("a fox")
    one_charge_success(c, result, 2)
    assert c.sleeps == [2.0]


@row("429-retry-after-http-date", "429 with Retry-After as an HTTP-date 20 s ahead, once",
     "success after ~20 s (computed from the date)")
def _(c: Ctx) -> None:
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    c.server.script(Fault(status=429, headers={"Retry-After": when}))
    result = c.client.images("a fox")
    one_charge_success(c, result, 2)
    assert len(c.sleeps) == 1 and 15 <= c.sleeps[0] <= 21


@row("429-retry-after-past-date", "429 with an HTTP-date in the past", "success, retried at once")
def _(c: Ctx) -> None:
    c.server.script(Fault(status=429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    one_charge_success(c, c.client.images("a fox"), 2)
    assert c.sleeps == [0.0]


@row("429-persistent", "429 with Retry-After: 7 on every attempt", "RateLimitError(.retry_after=7) after 3 attempts, nothing charged",
     see="test_client::test_retryable_statuses_are_retried_then_raised")
def _(c: Ctx) -> None:
    c.server.script(Fault(status=429, headers={"Retry-After": "7"}, times=3))
    err = raises(ij.RateLimitError, lambda: c.client.images("a fox"), "after 3 attempts")
    assert err.retry_after == 7.0 and err.status_code == 429
    assert c.sleeps == [7.0, 7.0] and c.charged() == 0


for _code in (500, 502, 503, 504):
    def _transient(c: Ctx, code: int = _code) -> None:
        c.server.script(Fault(status=code, body={"detail": f"transient {code}"}))
        one_charge_success(c, c.client.images("a fox"), 2)

    row(f"{_code}-transient", f"{_code} once, then a normal answer",
        "success on the retry, one charge, same Idempotency-Key",
        see="test_client::test_retryable_statuses_are_retried_then_raised (persistent case)")(_transient)


@row("500-persistent", "500 on every attempt", "ProviderError after 3 attempts, nothing charged",
     see="test_client::test_retryable_statuses_are_retried_then_raised")
def _(c: Ctx) -> None:
    c.server.script(Fault(status=500, body={"detail": "provider exploded"}, times=3))
    raises(ij.ProviderError, lambda: c.client.images("a fox"), "provider exploded.*after 3 attempts")
    assert len(c.gens()) == 3 and c.charged() == 0


# -- the router: broken transport ---------------------------------------------------------------


@row("reset-mid-response", "TCP reset after 20 bytes of the response head (generation)",
     "NetworkError 'may have completed', not re-sent (a POST that may have reached the server)")
def _(c: Ctx) -> None:
    c.client.models()  # authenticated already, so the only request left is the generation
    c.server.script(Fault(action="reset", size=20))
    raises(ij.NetworkError, lambda: c.client.images("a fox"), "may have completed")
    assert len(c.gens()) == 1 and c.sleeps == []


@row("lost-after-charge", "the server generates and charges, then resets instead of answering",
     "NetworkError 'may have completed'; charged exactly once, never re-sent",
     see="test_client::test_connection_reset_after_send_is_not_retried_for_a_generation")
def _(c: Ctx) -> None:
    c.server.script(Fault(action="lose"))
    raises(ij.NetworkError, lambda: c.client.images("a fox"), "check usage")
    assert len(c.gens()) == 1 and c.generated() == 1


@row("reset-on-read", "TCP reset on GET /models/ (idempotent)", "success on the retry",
     see="test_client::test_reads_are_retried_after_a_reset")
def _(c: Ctx) -> None:
    c.client.models()
    c.server.script(Fault(path="/api/v1/models/", action="reset", size=5))
    assert c.client.models()
    assert len(c.sleeps) == 1


@row("read-timeout", "the answer comes after the client's read timeout (0.3 s)",
     "APITimeoutError(.may_have_completed=True), not re-sent",
     see="test_client::test_read_timeout_after_send_is_not_retried")
def _(c: Ctx) -> None:
    with Client(TEST_API_KEY, base_url=c.server.url, timeout=httpx.Timeout(0.3, connect=5)) as fast:
        fast._sleep = c.sleeps.append
        fast.models()
        c.server.script(Fault(action="pass", delay=0.6))
        err = raises(ij.APITimeoutError, lambda: fast.images("a fox"), "may have completed")
    assert err.may_have_completed and len(c.gens()) == 1 and c.sleeps == []


@row("read-timeout-on-read", "GET /models/ answers after the read timeout, once", "success on the retry")
def _(c: Ctx) -> None:
    with Client(TEST_API_KEY, base_url=c.server.url, timeout=httpx.Timeout(0.3, connect=5)) as fast:
        fast._sleep = c.sleeps.append
        fast.models()
        c.server.script(Fault(path="/api/v1/models/", action="pass", delay=0.6))
        assert fast.models()
    assert len(c.sleeps) == 1


# -- the router: bodies that are not what they claim ----------------------------------------------


@row("malformed-json", "200 with Content-Type JSON and a cut-off JSON body",
     "APIError 'instead of JSON', not retried")
def _(c: Ctx) -> None:
    c.server.script(Fault(status=200, body='{"data": [{"url": "http://x', content_type="application/json"))
    raises(ij.APIError, lambda: c.client.images("a fox"), "instead of JSON")
    assert len(c.gens()) == 1


@row("html-200", "200 with an HTML page (captive portal, wrong base URL)",
     "APIError naming the page title", see="test_client::test_html_page_with_200_is_an_api_error")
def _(c: Ctx) -> None:
    page = "<!DOCTYPE html><html><head><title>Hotel Wi-Fi Login</title></head><body>x</body></html>"
    c.server.script(Fault(status=200, body=page, content_type="text/html"))
    raises(ij.APIError, lambda: c.client.images("a fox"), "HTML page: Hotel Wi-Fi Login")


@row("html-502", "502 with an nginx HTML error page on every attempt",
     "ServiceUnavailableError 'an HTML page: 502 Bad Gateway' after 3 attempts")
def _(c: Ctx) -> None:
    page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body><center><h1>502</h1></center></body></html>"
    c.server.script(Fault(status=502, body=page, content_type="text/html", times=3))
    raises(ij.ServiceUnavailableError, lambda: c.client.images("a fox"),
           "HTML page: 502 Bad Gateway.*after 3 attempts")


@row("html-502-transient", "502 HTML page once", "success on the retry")
def _(c: Ctx) -> None:
    c.server.script(Fault(status=502, body="<html><title>502</title></html>", content_type="text/html"))
    one_charge_success(c, c.client.images("a fox"), 2)


@row("success-false", "200 with success: false and a message", "ProviderError carrying the message",
     see="test_client::test_success_false_and_empty_data")
def _(c: Ctx) -> None:
    c.server.script(Fault(status=200, body={"success": False, "message": "Your request was rejected by the safety system",
                                            "data": None}))
    err = raises(ij.ProviderError, lambda: c.client.images("a fox"), "rejected by the safety system")
    assert err.detail and "safety" in err.detail


@row("empty-data", "200 with data: []", "APIError 'no images'", see="test_client::test_success_false_and_empty_data")
def _(c: Ctx) -> None:
    c.server.script(Fault(status=200, body={"success": True, "data": []}))
    raises(ij.APIError, lambda: c.client.images("a fox"), "no images")


@row("fewer-than-n", "n=3 asked, 1 image answered", "success with a warning; the 1 image kept and decodable")
def _(c: Ctx) -> None:
    c.server.script(Fault(status=200, body={"data": [{"b64_json": b64(png_bytes())}]}))
    with pytest.warns(UserWarning, match="asked for 3 images, received 1"):
        result = c.client.images("a fox", model="openai/dall-e-2", size="256x256", n=3)
    assert len(result.images) == 1 and result.images[0].width == 16


@row("item-without-image", "3 items, the middle one has neither url nor b64_json",
     "success with a warning; the other 2 kept")
def _(c: Ctx) -> None:
    body = {"data": [{"b64_json": b64(png_bytes(color="red"))}, {"revised_prompt": "nothing here"},
                     {"b64_json": b64(png_bytes(color="blue"))}]}
    c.server.script(Fault(status=200, body=body))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = c.client.images("a fox", model="openai/dall-e-2", size="256x256", n=3)
    assert [str(w.message) for w in seen] == ["1 of 3 items carried no image and were skipped",
                                             "asked for 3 images, received 2"]
    assert len(result.images) == 2
    colors = [Image.open(io.BytesIO(img.data)).getpixel((0, 0)) for img in result.images]
    assert colors == [(255, 0, 0), (0, 0, 255)]


@row("no-item-has-image", "every item lacks url and b64_json", "APIError 'No item ... has a url'")
def _(c: Ctx) -> None:
    c.server.script(Fault(status=200, body={"data": [{"revised_prompt": "x"}, "junk", None]}))
    raises(ij.APIError, lambda: c.client.images("a fox"), "url.*b64_json")


@row("invalid-base64", "one of two items has b64_json that is not base64",
     "the result is returned; that image raises ImageDownloadError, the other is kept",
     see="test_client::test_invalid_base64_is_a_download_error")
def _(c: Ctx) -> None:
    body = {"data": [{"b64_json": b64(png_bytes())}, {"b64_json": "%%% not base64 %%%"}]}
    c.server.script(Fault(status=200, body=body))
    result = c.client.images("a fox", model="openai/dall-e-2", size="256x256", n=2)
    assert result.images[0].data.startswith(b"\x89PNG")
    raises(ij.ImageDownloadError, lambda: result.images[1].data, "not valid base64")
    assert result.images[0].loaded  # the good one is still there


@row("base64-not-an-image", "b64_json is valid base64 of a text file", "ImageDownloadError 'not an image'")
def _(c: Ctx) -> None:
    c.server.script(Fault(status=200, body={"data": [{"b64_json": b64(b"hello, I am not a PNG")}]}))
    result = c.client.images("a fox")
    raises(ij.ImageDownloadError, lambda: result.images[0].data, "not an image")


# -- image URLs: the host is untrusted ------------------------------------------------------------


def _two_urls(c: Ctx) -> ImageResult:
    return c.client.images("a fox", model="openai/dall-e-2", size="256x256", n=2)


@row("url-expired-403", "the image URL answers 403 (expired signed URL) after image 0 was fetched",
     "ImageDownloadError(status 403) 'expired' for image 1; image 0 still served from memory",
     see="test_client::test_expired_url_says_so")
def _(c: Ctx) -> None:
    result = _two_urls(c)
    first = result.images[0].data
    c.server.expire_files()
    err = raises(ij.ImageDownloadError, lambda: result.images[1].data, "HTTP 403: it has expired")
    assert err.status_code == 403
    before = len(c.files())
    assert result.images[0].data == first and len(c.files()) == before


@row("url-html", "the image URL answers 200 text/html (a login page)",
     "ImageDownloadError 'an HTML page'; a later retry of the same image succeeds",
     see="test_client::test_url_answering_html_is_refused")
def _(c: Ctx) -> None:
    result = c.client.images("a fox")
    c.server.script(Fault(path=FILES, status=200, body="<!doctype html><title>Sign in</title>", content_type="text/html"))
    raises(ij.ImageDownloadError, lambda: result.images[0].data, "HTML page")
    assert result.images[0].data.startswith(b"\x89PNG")  # failures are not cached


@row("url-truncated-png", "the image URL sends half a PNG and a Content-Length for all of it, then closes",
     "ImageDownloadError 'connection closed'; a retry succeeds",
     see="test_client::test_truncated_png_is_refused (complete response, short PNG)")
def _(c: Ctx) -> None:
    result = c.client.images("a fox")
    whole = _download.fetch_image(result.images[0].url).data
    c.server.script(Fault(path=FILES, status=200, action="truncate", body=whole[: len(whole) // 2],
                          content_type="image/png", size=len(whole)))
    raises(ij.ImageDownloadError, lambda: result.images[0].data)
    assert result.images[0].data == whole


@row("url-truncated-png-complete", "the image URL sends a complete response holding half a PNG",
     "ImageDownloadError 'corrupt or truncated'")
def _(c: Ctx) -> None:
    half = png_bytes(64, 64)[:60]
    result = c.client.images("a fox")
    c.server.script(Fault(path=FILES, status=200, body=half, content_type="image/png"))
    raises(ij.ImageDownloadError, lambda: result.images[0].data, "corrupt or truncated|not an image")


@row("url-reset", "the image host resets the connection", "ImageDownloadError; a retry succeeds")
def _(c: Ctx) -> None:
    result = c.client.images("a fox")
    c.server.script(Fault(path=FILES, action="reset"))
    raises(ij.ImageDownloadError, lambda: result.images[0].data, "failed|connection")
    assert result.images[0].data.startswith(b"\x89PNG")


@row("url-non-http", "items with file:///etc/passwd, javascript:alert(1), ftp:// and data: URLs next to a real one",
     "each bad one ImageDownloadError 'only http and https', never fetched; the real one kept",
     see="test_client::test_non_http_urls_are_never_fetched")
def _(c: Ctx) -> None:
    real = c.client.images("a fox")["data"][0]["url"]
    bad = ["file:///etc/passwd", "javascript:alert(1)", "ftp://127.0.0.1/x.png", "data:image/png;base64,AAAA",
           "http:///no-host", "//127.0.0.1/schemeless.png"]
    body = {"data": [{"url": u} for u in bad] + [{"url": real}]}
    c.server.script(Fault(status=200, body=body))
    result = c.client.images("a fox 2")
    mark = len(c.files())
    for img in result.images[:-1]:
        raises(ij.ImageDownloadError, lambda img=img: img.data, "only http and https")
    assert len(c.files()) == mark  # nothing was fetched for them
    assert result.images[-1].data.startswith(b"\x89PNG")


@row("redirect-other-host", "307 from 127.0.0.1 to localhost (another host)",
     "followed with no Authorization or Cookie; image kept",
     see="test_client::test_redirect_to_another_host_is_followed_without_credentials (302)")
def _(c: Ctx) -> None:
    result = c.client.images("a fox")
    target = result.images[0].url.replace("127.0.0.1", "localhost")
    c.server.script(Fault(path=FILES, status=307, headers={"Location": target}, body=""))
    assert result.images[0].data.startswith(b"\x89PNG")
    hops = c.files()
    assert len(hops) == 2
    for hop in hops:
        assert not {"authorization", "cookie", "x-api-key", "idempotency-key"} & set(hop["headers"])


@row("redirect-to-file-scheme", "302 to file:///etc/passwd", "ImageDownloadError 'only http and https'")
def _(c: Ctx) -> None:
    result = c.client.images("a fox")
    c.server.script(Fault(path=FILES, status=302, headers={"Location": "file:///etc/passwd"}, body=""))
    raises(ij.ImageDownloadError, lambda: result.images[0].data, "only http and https")


@row("redirect-loop", "the image URL redirects to itself forever", "ImageDownloadError after 5 redirects")
def _(c: Ctx) -> None:
    result = c.client.images("a fox")
    c.server.script(Fault(path=FILES, status=302, headers={"Location": result.images[0].url}, body="", times=50))
    raises(ij.ImageDownloadError, lambda: result.images[0].data, "more than 5 times")
    assert len(c.files()) == 6


def peak_memory(action) -> int:
    """Peak bytes Python allocated while ``action`` ran."""
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@row("huge-body-200mb", "the image URL streams 200 MB of PNG-looking junk, no Content-Length (cap set to 2 MB)",
     "ImageDownloadError 'larger than the 2 MB limit'; reading stops at the cap (peak memory < 8 MB)")
def _(c: Ctx) -> None:
    result = c.client.images("a fox")
    c.server.script(Fault(path=FILES, action="huge", status=200, size=200 * MB))
    peak = peak_memory(lambda: raises(ij.ImageDownloadError, lambda: result.images[0].data,
                                      "larger than the 2 MB limit"))
    assert peak < 8 * MB, peak


@row("huge-declared-length", "the image URL declares Content-Length: 200 MB",
     "ImageDownloadError before reading the body")
def _(c: Ctx) -> None:
    result = c.client.images("a fox")
    c.server.script(Fault(path=FILES, action="huge", status=200, size=4 * MB,
                          headers={"Content-Length": str(200 * MB)}))
    peak = peak_memory(lambda: raises(ij.ImageDownloadError, lambda: result.images[0].data,
                                      "larger than the 2 MB limit"))
    assert peak < 2 * MB, peak


@row("decompression-bomb", "the image URL serves a 15 kB PNG that decodes to 144 Mpx",
     "ImageDownloadError 'pixel limit' without decoding it",
     see="test_client::test_decompression_bomb_is_refused (bytes, not served)")
def _(c: Ctx) -> None:
    bomb = io.BytesIO()
    Image.new("1", (12000, 12000)).save(bomb, "PNG")
    result = c.client.images("a fox")
    c.server.script(Fault(path=FILES, status=200, body=bomb.getvalue(), content_type="image/png"))
    tracemalloc.start()
    try:
        raises(ij.ImageDownloadError, lambda: result.images[0].data, "pixel limit|too large")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * MB, peak  # 144 Mpx would be 18 MB even at 1 bit per pixel, 144 MB as bytes


@row("slow-loris-drip", "the image URL dribbles the PNG one byte every 20 ms (deadline set to 0.3 s)",
     "ImageDownloadError 'did not deliver in time'")
def _(c: Ctx) -> None:
    result = c.client.images("a fox")
    c.server.script(Fault(path=FILES, action="slow", delay=0.02))
    raises(ij.ImageDownloadError, lambda: result.images[0].data, "did not deliver in time")


@row("slow-loris-stall", "the image URL sends one byte, then the next only after 5 s (deadline 0.3 s, read timeout 60 s)",
     "ImageDownloadError 'did not deliver in time' (each read is bounded by the time left)")
def _(c: Ctx) -> None:
    result = c.client.images("a fox")
    c.server.script(Fault(path=FILES, action="slow", delay=5.0))
    raises(ij.ImageDownloadError, lambda: result.images[0].data, "did not deliver in time")


# -- the runner -----------------------------------------------------------------------------------


@pytest.fixture()
def tight_download(monkeypatch):
    """A 2 MB cap and a 0.3 s deadline, so hostile hosts are measured in milliseconds."""
    monkeypatch.setattr(_download, "MAX_IMAGE_BYTES", 2 * MB)
    monkeypatch.setattr(_download, "DOWNLOAD_DEADLINE", 0.3)


@pytest.mark.parametrize("case", MATRIX, ids=[r.id for r in MATRIX])
def test_fault(case: Row, client, server, sleeps, tight_download) -> None:
    # An image that arrived before the fault: whatever happens next, it stays retrievable.
    with Client(TEST_API_KEY, base_url=server.url) as other:
        earlier = other.images("before the fault")
        kept = earlier.images[0].data
    ctx = Ctx(client, server, sleeps, mark=len(server.requests), charged0=server.stats["charged"],
              generations0=server.stats["generations"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unexpected warning is a failure; rows expect theirs
        case.run(ctx)
    requests_after = len(server.requests)
    assert earlier.images[0].data == kept and len(server.requests) == requests_after


def test_matrix_is_complete() -> None:
    """Every fault the issue names has a row (so a deleted row is noticed)."""
    ids = {r.id for r in MATRIX}
    required = {
        "429-no-retry-after", "429-retry-after-seconds", "429-retry-after-http-date",
        "500-transient", "502-transient", "503-transient", "504-transient",
        "reset-mid-response", "read-timeout", "malformed-json", "html-200", "html-502",
        "success-false", "empty-data", "fewer-than-n", "item-without-image", "invalid-base64",
        "url-expired-403", "url-html", "url-truncated-png", "url-non-http", "redirect-other-host",
        "huge-body-200mb", "decompression-bomb", "slow-loris-drip", "slow-loris-stall",
    }
    assert required <= ids, required - ids


def table() -> str:
    """The markdown table for RELIABILITY.md."""
    lines = ["| # | Fault | Outcome | Test |", "|---|---|---|---|"]
    for i, r in enumerate(MATRIX, 1):
        lines.append(f"| {i} | {r.fault} | {r.outcome} | `test_fault[{r.id}]` |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(table())
