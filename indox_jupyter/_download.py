"""Fetching and verifying images from provider URLs, which we treat as untrusted.

Downloads use their own short-lived httpx client that never carries our Authorization header
or cookies (a cookie jar ignores ports, so sharing the API client would leak the session cookie
to any service on the API's host). Redirects are followed by hand so that every hop is checked.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import ssl
import time
import warnings
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from .errors import ImageDownloadError

MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_IMAGE_PIXELS = 80_000_000  # a 8944x8944 image; far beyond any provider's output
MAX_REDIRECTS = 5
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
DOWNLOAD_DEADLINE = 300.0  # whole-download limit: a slow-loris server never trips a read timeout

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


@dataclass(frozen=True)
class VerifiedImage:
    data: bytes
    mime_type: str
    width: int
    height: int


def sniff_mime(data: bytes) -> str | None:
    """The image type from its first bytes, or None when it is not an image we accept."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def verify_image(data: bytes, *, source: str = "the image") -> VerifiedImage:
    """Accept only bytes that are really a decodable image of sane dimensions."""
    mime = sniff_mime(data)
    if mime is None:
        kind = "an HTML page" if data.lstrip()[:1] == b"<" else "not an image"
        raise ImageDownloadError(f"{source} is {kind} (expected PNG, JPEG, WebP or GIF bytes)")
    from PIL import Image  # Pillow is heavy; load it only when an image arrives

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ImageDownloadError(
                        f"{source} claims {width}x{height} pixels, over the "
                        f"{MAX_IMAGE_PIXELS:,} pixel limit (a decompression bomb?)"
                    )
                img.verify()
            with Image.open(io.BytesIO(data)) as img:
                img.load()  # verify() skips pixel data; a truncated file fails only here
    except ImageDownloadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDownloadError(f"{source} is too large to decode safely ({exc})") from None
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise ImageDownloadError(f"{source} is a corrupt or truncated {mime} file ({exc})") from None
    return VerifiedImage(data, mime, width, height)


def decode_b64_image(payload: str, *, index: int) -> VerifiedImage:
    """Decode an item's ``b64_json`` and verify it."""
    if payload.startswith("data:"):
        payload = payload.partition(",")[2]
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageDownloadError(f"image {index}: b64_json is not valid base64") from None
    return verify_image(data, source=f"image {index}")


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """One verified TLS context for all downloads: loading the CA bundle costs ~70 ms each time."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = url if len(url) < 60 else url[:57] + "…"
        raise ImageDownloadError(
            f"refusing to download {shown!r}: only http and https image URLs are fetched"
        )


def _status_error(url: str, status: int) -> ImageDownloadError:
    host = urlsplit(url).hostname
    if status in (401, 403, 404, 410):
        message = (
            f"image URL on {host} answered HTTP {status}: it has expired or is not accessible "
            "(provider URLs last about an hour; the gallery keeps images once received)"
        )
    else:
        message = f"image URL on {host} answered HTTP {status}"
    return ImageDownloadError(message, status_code=status)


def _hop_timeout(give_up_at: float) -> httpx.Timeout:
    """The per-hop timeout, no longer than what is left of the whole-download deadline.

    httpx applies a read timeout to each read, so a server that dribbles a byte just before it
    expires never trips it; bounding every read by the time left makes the deadline hold even
    when the server stalls between two bytes (worst case: twice the time left at the hop).
    """
    left = max(0.001, give_up_at - time.monotonic())
    base = DOWNLOAD_TIMEOUT

    def cap(value: float | None) -> float:
        return left if value is None else min(value, left)

    return httpx.Timeout(connect=cap(base.connect), read=cap(base.read), write=cap(base.write),
                         pool=cap(base.pool))


def fetch_image(
    url: str, *, max_bytes: int | None = None, deadline: float | None = None
) -> VerifiedImage:
    """Download an image with no credentials, a size cap, a deadline and verification.

    ``max_bytes`` and ``deadline`` default to MAX_IMAGE_BYTES and DOWNLOAD_DEADLINE as they are
    when the call is made (so a notebook or a test can tighten them module-wide).
    """
    max_bytes = MAX_IMAGE_BYTES if max_bytes is None else max_bytes
    give_up_at = time.monotonic() + (DOWNLOAD_DEADLINE if deadline is None else deadline)
    with httpx.Client(verify=_ssl_context(), timeout=DOWNLOAD_TIMEOUT, follow_redirects=False, trust_env=False) as http:
        for _ in range(MAX_REDIRECTS + 1):
            _check_url(url)
            try:
                if time.monotonic() > give_up_at:
                    raise httpx.ReadTimeout("download deadline passed")
                with http.stream("GET", url, timeout=_hop_timeout(give_up_at)) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise _status_error(url, response.status_code)
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > max_bytes:
                        raise _too_big(url, max_bytes)
                    chunks, size = [], 0
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise _too_big(url, max_bytes)
                        if time.monotonic() > give_up_at:
                            raise httpx.ReadTimeout("download deadline passed")
                        chunks.append(chunk)
            except httpx.TimeoutException:
                raise ImageDownloadError(
                    f"image URL on {urlsplit(url).hostname} did not deliver in time"
                ) from None
            except httpx.HTTPError as exc:
                raise ImageDownloadError(
                    f"image URL on {urlsplit(url).hostname} failed: {type(exc).__name__}"
                ) from None
            return verify_image(b"".join(chunks), source=f"image at {urlsplit(url).hostname}")
    raise ImageDownloadError(f"image URL redirected more than {MAX_REDIRECTS} times")


def _too_big(url: str, max_bytes: int) -> ImageDownloadError:
    return ImageDownloadError(
        f"image at {urlsplit(url).hostname} is larger than the {max_bytes // (1024 * 1024)} MB limit"
    )
