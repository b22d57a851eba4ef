"""Everything the sync and async clients share, with no I/O of its own.

Request shaping per provider, validation, response parsing, error mapping, the retry policy and
the authentication state all live here. The API calls are written once, as generators that
*yield* what they need done (``Send`` a request, ``Sleep``, ``Authenticate``) and receive the
outcome; ``Client`` and ``AsyncClient`` only perform those steps with blocking or awaiting I/O.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
import re
import time
import uuid
import warnings
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Union

import httpx

from . import errors
from ._cachekey import scope_of
from ._models import ImageModel, ImageResult
from ._redact import redact, without_secrets

DEFAULT_BASE_URL = "https://api.indoxrouter.com"
DEFAULT_MODEL = "openai/dall-e-3"
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)  # generations are slow; refusals are not
DEFAULT_MAX_RETRIES = 2
LOCAL = "local"
LOCAL_API_KEY = "indox-local"  # the built-in server accepts any key; this one is not a secret
API_KEY_ENV = "INDOX_ROUTER_API_KEY"
BASE_URL_ENV = "INDOX_ROUTER_BASE_URL"

AUTH_PATH = "/api/v1/auth/api-key"
IMAGES_PATH = "/api/v1/images/generations"
MODELS_PATH = "/api/v1/models/"
USAGE_PATH = "/api/v1/user/usage"

MAX_N = 10
MAX_PROMPT_CHARS = 100_000  # a sanity bound against pasting a file, not a provider rule

# ---------------------------------------------------------------------------------------------
# Retry policy


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter, capped; the server's Retry-After wins when given."""

    max_retries: int = DEFAULT_MAX_RETRIES
    initial_delay: float = INITIAL_RETRY_DELAY
    max_delay: float = MAX_RETRY_DELAY
    max_retry_after: float = MAX_RETRY_AFTER
    random: Callable[[], float] = random.random

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """How long to wait before retry number ``attempt`` (0-based)."""
        asked = parse_retry_after(retry_after)
        if asked is not None:
            return min(asked, self.max_retry_after)
        ceiling = min(self.max_delay, self.initial_delay * (2**attempt))
        return ceiling * self.random()


# ---------------------------------------------------------------------------------------------
# Validation and request shaping

_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.:@+-]*$")
# [0-9], not \d: \d also matches "٠" and "１", which would be sent to the server as they are.
_SIZE_RE = re.compile(r"^([1-9][0-9]{0,4})\s*[xX×]\s*([1-9][0-9]{0,4})$")
_RATIO_RE = re.compile(r"^([1-9][0-9]{0,3}):([1-9][0-9]{0,3})$")
_KNOWN_PROVIDER_OF = (
    ("dall-e", "openai"),
    ("dalle", "openai"),
    ("gpt-image", "openai"),
    ("imagen", "google"),
    ("grok", "xai"),
    ("stable-diffusion", "stability"),
    ("sdxl", "stability"),
)

GOOGLE_SIZE_TO_RATIO = {
    "1024x1024": "1:1",
    "512x512": "1:1",
    "256x256": "1:1",
    "1024x768": "4:3",
    "768x1024": "3:4",
    "1024x1536": "2:3",
    "1536x1024": "3:2",
    "1792x1024": "16:9",
    "1024x1792": "9:16",
}
# What the reference client lets through for these model families (plus routing fields).
GPT_IMAGE_PARAMS = frozenset(
    {"prompt", "size", "quality", "n", "user", "background", "moderation",
     "output_compression", "output_format", "style"}
)
IMAGEN_PARAMS = frozenset(
    {"prompt", "n", "negative_prompt", "aspect_ratio", "guidance_scale", "seed",
     "safety_filter_level", "person_generation", "include_safety_attributes",
     "include_rai_reason", "language", "output_mime_type", "output_compression_quality",
     "add_watermark", "enhance_prompt", "response_format"}
)
GROK_IMAGE_PARAMS = frozenset({"prompt", "n", "response_format"})
ROUTING_FIELDS = frozenset({"model", "byok_api_key"})  # never filtered: dropping BYOK would bill credits


def _fail(message: str) -> errors.ValidationError:
    return errors.ValidationError(message)


def _short_repr(value: Any, limit: int = 40) -> str:
    """repr() for a message: bounded, and never str() of an int too long to convert."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() >= 128:
        return f"a {value.bit_length()}-bit number"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _suggest_model(model: str) -> str:
    lowered = model.lower().replace("_", "-")
    for stem, provider in _KNOWN_PROVIDER_OF:
        if lowered.startswith(stem):
            name = "dall-e-" + lowered[len(stem):].lstrip("-") if stem == "dalle" else lowered
            return f"{provider}/{name}"
    return DEFAULT_MODEL


def check_model(model: Any) -> tuple[str, str]:
    """``provider/name`` split in two, or a ValidationError that shows the accepted form."""
    if not isinstance(model, str) or not _MODEL_RE.match(model.strip()):
        shown = repr(model) if not isinstance(model, str) else repr(model[:60])
        hint = _suggest_model(model) if isinstance(model, str) and model.strip() else DEFAULT_MODEL
        raise _fail(f"model must be 'provider/model', e.g. {hint} (got {shown})")
    provider, name = model.strip().split("/", 1)
    return provider, name


def check_size(size: Any) -> str:
    if isinstance(size, str) and (_SIZE_RE.match(size.strip()) or _RATIO_RE.match(size.strip())):
        match = _SIZE_RE.match(size.strip())
        return f"{match.group(1)}x{match.group(2)}" if match else size.strip()
    raise _fail(
        f"size must be WIDTHxHEIGHT such as 1024x1024, or a ratio W:H such as 16:9 (got {size!r:.60})"
    )


def check_aspect_ratio(ratio: Any) -> str:
    if isinstance(ratio, str) and _RATIO_RE.match(ratio.strip()):
        return ratio.strip()
    raise _fail(f"aspect_ratio must be W:H such as 1:1 or 16:9 (got {ratio!r:.60})")


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        # ASCII digits only: str.isdigit() also accepts "²" and "٣", which int() then rejects.
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,30}", value.strip()):
            value = int(value.strip())
        else:
            raise _fail(f"{name} must be a whole number (got {value!r:.60})")
    if (low is not None and value < low) or (high is not None and value > high):
        # str() of an int over 4300 digits raises ValueError; show its size instead.
        shown = str(value) if value.bit_length() < 128 else f"a {value.bit_length()}-bit number"
        raise _fail(f"{name} must be between {low} and {high} (got {shown})")
    return value


# C0 controls but tab, newline and carriage return; DEL; and lone surrogates (not encodable as UTF-8).
_BAD_CHAR_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def _check_chars(name: str, value: str) -> None:
    bad = _BAD_CHAR_RE.search(value)
    if bad:
        code = ord(bad.group())
        what = "an unpaired surrogate (invalid Unicode)" if code >= 0xD800 else "a control character"
        raise _fail(f"{name} contains {what} U+{code:04X} at position {bad.start()}; remove it")


def check_text(name: str, value: Any, *, max_chars: int = 10_000) -> str:
    if not isinstance(value, str):
        raise _fail(f"{name} must be text (got {type(value).__name__})")
    if not value.strip():
        raise _fail(f"{name} must not be empty")
    if len(value) > max_chars:
        raise _fail(f"{name} is {len(value):,} characters; the limit here is {max_chars:,}")
    _check_chars(name, value)
    return value


def check_prompt(prompt: Any) -> str:
    if not isinstance(prompt, str):
        raise _fail(f"prompt must be text (got {type(prompt).__name__})")
    stripped = prompt.strip()
    if not stripped:
        raise _fail("prompt is empty: describe the image you want, e.g. 'a lighthouse at dusk'")
    if len(stripped) > MAX_PROMPT_CHARS:
        raise _fail(f"prompt is {len(stripped):,} characters; the limit is {MAX_PROMPT_CHARS:,}")
    _check_chars("prompt", stripped)
    return stripped


def _ratio_for_google(size: str) -> str:
    if ":" in size:
        return size
    if size in GOOGLE_SIZE_TO_RATIO:
        return GOOGLE_SIZE_TO_RATIO[size]
    width, height = (int(part) for part in size.split("x"))
    divisor = math.gcd(width, height)
    return f"{width // divisor}:{height // divisor}"


@dataclass(frozen=True)
class ImageRequest:
    """A checked generation request: the JSON body plus what the result should remember."""

    body: dict[str, Any]
    model: str
    prompt: str
    dropped: tuple[str, ...] = ()

    @property
    def public_params(self) -> dict[str, Any]:
        """The body without prompt, model and secrets: safe to store and show."""
        return {
            k: v for k, v in without_secrets(self.body).items() if k not in ("prompt", "model")
        }


def build_image_request(
    prompt: Any,
    model: Any = DEFAULT_MODEL,
    size: Any = None,
    n: Any = None,
    quality: Any = None,
    style: Any = None,
    response_format: Any = None,
    byok_api_key: Any = None,
    *,
    negative_prompt: Any = None,
    seed: Any = None,
    aspect_ratio: Any = None,
    guidance_scale: Any = None,
    **extra: Any,
) -> ImageRequest:
    """Check every argument and shape the body as the reference client does per provider.

    Raises ValidationError before anything is sent. Only parameters that are set are sent.
    """
    text = check_prompt(prompt)
    provider, name = check_model(model)
    model_id = f"{provider}/{name}"
    body: dict[str, Any] = {"prompt": text, "model": model_id}
    if n is not None:
        body["n"] = check_int("n", n, 1, MAX_N)
    if size is not None:
        size = check_size(size)
    if quality is not None:
        body["quality"] = check_text("quality", quality, max_chars=40)
    if style is not None:
        body["style"] = check_text("style", style, max_chars=40)
    if response_format is not None:
        if response_format not in ("url", "b64_json"):
            raise _fail(f"response_format must be 'url' or 'b64_json' (got {response_format!r:.40})")
        body["response_format"] = response_format
    if byok_api_key is not None:
        if not isinstance(byok_api_key, str) or not byok_api_key.strip():
            raise _fail("byok_api_key must be a non-empty string (your provider key)")
        if not byok_api_key.strip().isprintable() or not byok_api_key.strip().isascii():
            # never echo any part of it: this is a key
            raise _fail("byok_api_key holds non-printable or non-ASCII characters; paste the key again")
        body["byok_api_key"] = byok_api_key.strip()
    if negative_prompt is not None:
        body["negative_prompt"] = check_text("negative_prompt", negative_prompt)
    if seed is not None:
        body["seed"] = check_int("seed", seed, 0, 2**63 - 1)
    if guidance_scale is not None:
        # A range test, not math.isfinite(): that raises OverflowError for an int over 1e308;
        # NaN fails every comparison, so it is refused too.
        if (isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float))
                or not -1e6 <= guidance_scale <= 1e6):
            raise _fail(f"guidance_scale must be a number (got {_short_repr(guidance_scale)})")
        body["guidance_scale"] = guidance_scale
    if aspect_ratio is not None:
        aspect_ratio = check_aspect_ratio(aspect_ratio)

    for key, value in extra.items():
        if not key.isidentifier():
            raise _fail(f"parameter name {key!r:.40} is not a valid name")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            raise _fail(f"parameter {key} must be JSON-serialisable (got {type(value).__name__})") from None
    if extra:
        body["additional_params"] = dict(extra)
    try:  # what httpx will do with the body; a lone surrogate in an extra value fails only here
        json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _fail("a parameter value contains an unpaired surrogate (invalid Unicode)") from None

    provider_key, name_key = provider.lower(), name.lower()
    if provider_key == "google":
        if aspect_ratio is not None:
            body["aspect_ratio"] = aspect_ratio
        elif size is not None:
            body["aspect_ratio"] = _ratio_for_google(size)
    else:
        if size is not None:
            body["size"] = size
        if aspect_ratio is not None:
            body["aspect_ratio"] = aspect_ratio

    allowed: frozenset[str] | None = None
    if provider_key == "openai" and "gpt-image" in name_key:
        allowed = GPT_IMAGE_PARAMS
    elif provider_key == "google" and "imagen" in name_key:
        allowed = IMAGEN_PARAMS
    elif provider_key == "xai":
        allowed = GROK_IMAGE_PARAMS if "grok-2-image" in name_key else frozenset(body) - {"size"}
    dropped: tuple[str, ...] = ()
    if allowed is not None:
        dropped = tuple(k for k in body if k not in allowed and k not in ROUTING_FIELDS)
        for key in dropped:
            del body[key]
    return ImageRequest(body=body, model=model_id, prompt=text, dropped=dropped)


# ---------------------------------------------------------------------------------------------
# Responses and errors


def _detail_text(detail: Any) -> str:
    """The server's ``detail`` as one line (422 gives a list of {loc, msg})."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    if isinstance(detail, Mapping):
        return str(detail.get("message") or detail.get("msg") or json.dumps(detail))
    return str(detail)


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_body(response: httpx.Response) -> str:
    """The most useful short text in an error response, JSON or not."""
    try:
        payload = response.json()
    except (ValueError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, Mapping):
        for key in ("detail", "message", "error"):
            if payload.get(key):
                return _detail_text(payload[key])
        return ""
    text = response.text if response.content else ""
    if "<" in text[:200]:
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
        return f"an HTML page{': ' + title.group(1).strip() if title else ''}"
    return text


_STATUS_TEXT = {
    400: (errors.InvalidParametersError, "Invalid parameters"),
    401: (errors.AuthenticationError, "Authentication failed"),
    402: (errors.InsufficientCreditsError, "Insufficient credits"),
    403: (errors.AuthenticationError, "Not allowed with this key"),
    422: (errors.ValidationError, "Request validation failed"),
    429: (errors.RateLimitError, "Rate limited"),
    500: (errors.ProviderError, "The provider failed"),
    502: (errors.ServiceUnavailableError, "Service unavailable"),
    503: (errors.ServiceUnavailableError, "Service unavailable"),
    504: (errors.ServiceUnavailableError, "Service timed out"),
}
_HINTS = {
    401: "check INDOX_ROUTER_API_KEY or %indox_login",
    402: "top up your IndoxRouter credits, or pass byok_api_key to use your own provider key",
    429: "wait a moment and try again",
}


def status_error(response: httpx.Response, secrets: tuple[str | None, ...] = (), attempts: int = 1) -> errors.IndoxRouterError:
    """The exception for an error response, with the server's detail made safe to show."""
    status = response.status_code
    detail = one_line(redact(describe_body(response), secrets))
    lowered = detail.lower()
    cls, summary = _STATUS_TEXT.get(status, (errors.APIError, "Unexpected answer"))
    if status >= 500 and status not in _STATUS_TEXT:
        cls, summary = errors.ProviderError, "The service failed"
    if status == 400 and ("validation" in lowered or "invalid format" in lowered):
        cls = errors.ValidationError
    if status == 404:
        model_at, provider_at = lowered.find("model"), lowered.find("provider")
        if provider_at >= 0 and (model_at < 0 or provider_at < model_at):
            cls, summary = errors.ProviderNotFoundError, "Unknown provider"
        elif "model" in lowered and any(w in lowered for w in ("not supported", "disabled", "unavailable")):
            cls, summary = errors.ModelNotAvailableError, "Model not available"
        elif "model" in lowered:
            cls, summary = errors.ModelNotFoundError, "Unknown model"
        else:
            summary = "Not found"
    message = f"{summary} (HTTP {status})"
    if detail:
        message += f": {detail}"
    if attempts > 1:
        message += f" [after {attempts} attempts]"
    if status in _HINTS:
        message += f" — {_HINTS[status]}"
    if cls is errors.RateLimitError:
        return errors.RateLimitError(
            message,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            status_code=status,
            detail=detail,
        )
    return cls(message, status_code=status, detail=detail)


def parse_json(response: httpx.Response, secrets: tuple[str | None, ...] = ()) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        kind = describe_body(response) or "an empty body"
        raise errors.APIError(
            f"The server answered HTTP {response.status_code} with {one_line(redact(kind, secrets), 120)} "
            "instead of JSON; is the base URL an IndoxRouter API?",
            status_code=response.status_code,
        ) from None


def has_image(item: Any) -> bool:
    """An item of ``data`` that carries an image: a non-empty ``url`` or ``b64_json`` string."""
    return isinstance(item, Mapping) and any(
        isinstance(item.get(key), str) and item[key] for key in ("url", "b64_json")
    )


def parse_image_response(
    response: httpx.Response, request: ImageRequest, secrets: tuple[str | None, ...] = ()
) -> ImageResult:
    payload = parse_json(response, secrets)
    if not isinstance(payload, Mapping):
        raise errors.APIError("The image response is not a JSON object", status_code=response.status_code)
    if payload.get("success") is False:
        detail = one_line(redact(str(payload.get("message") or payload.get("detail") or "no reason given"), secrets))
        raise errors.ProviderError(f"The provider reported a failure: {detail}", detail=detail)
    data = payload.get("data")
    if not isinstance(data, list) or not data:
        raise errors.APIError("The response holds no images (empty 'data'); nothing was charged by us to show")
    usable = [item for item in data if has_image(item)]
    if not usable:
        raise errors.APIError("No item in the response has a 'url' or 'b64_json'")
    if len(usable) < len(data):
        warnings.warn(f"{len(data) - len(usable)} of {len(data)} items carried no image and were skipped", stacklevel=4)
    asked = request.body.get("n")
    if isinstance(asked, int) and len(usable) < asked:
        warnings.warn(f"asked for {asked} images, received {len(usable)}", stacklevel=4)
    cleaned = dict(payload)
    cleaned["data"] = usable
    if isinstance(cleaned.get("byok_api_key"), str):  # a server echoing the key, not the flag
        del cleaned["byok_api_key"]
    return ImageResult(cleaned, model=request.model, prompt=request.prompt, params=request.public_params)


def parse_models(payload: Any) -> list[ImageModel]:
    """Image models from ``GET /models/`` in any of the shapes the API has used."""
    found: dict[str, ImageModel] = {}

    def visit(provider: str | None, entry: Any, kind_hint: str | None) -> None:
        if not isinstance(entry, Mapping):
            return
        name = entry.get("modelName") or entry.get("model") or entry.get("name") or entry.get("id")
        kinds = entry.get("type") or entry.get("types") or entry.get("capabilities") or kind_hint or ""
        kinds_text = json.dumps(kinds) if not isinstance(kinds, str) else kinds
        if not name or "image" not in kinds_text:
            return
        name = str(name)
        prov = provider or (name.split("/", 1)[0] if "/" in name else None)
        if prov is None:
            return
        short = name.split("/", 1)[1] if name.startswith(prov + "/") else name
        pricing = entry.get("pricing") if isinstance(entry.get("pricing"), Mapping) else {}
        price = pricing.get("per_image", pricing.get("image"))

        def strings(key: str) -> tuple[str, ...]:
            value = entry.get(key)
            return tuple(str(v) for v in value) if isinstance(value, list) else ()

        found[f"{prov}/{short}"] = ImageModel(
            id=f"{prov}/{short}",
            provider=str(prov),
            name=short,
            sizes=strings("sizes"),
            qualities=strings("qualities"),
            styles=strings("styles"),
            aspect_ratios=strings("aspect_ratios"),
            max_n=entry.get("max_n") if isinstance(entry.get("max_n"), int) else None,
            price=float(price) if isinstance(price, (int, float)) else None,
            details=dict(entry),
        )

    providers = payload.get("providers", payload.get("data", payload)) if isinstance(payload, Mapping) else payload
    if isinstance(providers, Mapping):
        providers = [dict(v, name=k) if isinstance(v, Mapping) else v for k, v in providers.items()]
    for prov in providers if isinstance(providers, list) else []:
        if not isinstance(prov, Mapping):
            continue
        pname = prov.get("name") or prov.get("provider") or prov.get("id")
        models = prov.get("models")
        if isinstance(models, Mapping):  # grouped by capability
            for kind, group in models.items():
                for entry in group if isinstance(group, list) else []:
                    visit(pname, entry, kind)
        elif isinstance(models, list):
            for entry in models:
                visit(pname, entry, None)
        for entry in prov.get("image_generation", []) if isinstance(prov.get("image_generation"), list) else []:
            visit(pname, entry, "image_generation")
        if "modelName" in prov:
            visit(None, prov, None)
    return sorted(found.values(), key=lambda m: m.id)


# ---------------------------------------------------------------------------------------------
# The calls, written once as generators of I/O steps


@dataclass(frozen=True)
class Send:
    request: httpx.Request


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Authenticate:
    """Ask the driver for a token; ``stale`` is the token the server just refused."""

    stale: str | None


Step = Union[Send, Sleep, Authenticate]
Flow = Generator[Step, Any, Any]

# Failures where the request surely never reached the server: safe to retry even for a POST.
_NOT_DELIVERED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class ClientCore:
    """Configuration, credentials and the call flows shared by Client and AsyncClient."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str,
        *,
        local: bool,
        max_retries: int,
    ) -> None:
        self.api_key = api_key
        self.base_url = base_url
        self.local = local
        self.policy = RetryPolicy(max_retries=check_int("max_retries", max_retries, 0, 20))
        self.token: str | None = None  # the bearer credential in use
        self.exchanged = False  # True when ``token`` came from the key exchange (so it can expire)
        # A 429 pauses every call of this client, not just the one that saw it (shared backoff).
        self.paused_until = 0.0

    @property
    def secrets(self) -> tuple[str | None, ...]:
        return (self.api_key, self.token)

    def url(self, path: str) -> str:
        return self.base_url + path

    # -- the step loop shared by every call

    def attempts(
        self, build: Callable[[], httpx.Request], *, replayable: bool, what: str
    ) -> Generator[Step, Any, tuple[httpx.Response, int]]:
        """Send with retries; return the final response (any status) and the attempt count.

        ``replayable`` says whether a request that may have reached the server can be sent again.
        """
        attempt = 0
        ready_at = 0.0  # when this call's own backoff ends
        while True:
            attempt += 1
            pause = self.paused_until - max(time.monotonic(), ready_at)
            if pause > 0:  # another call of this client was told to back off: so are we
                yield Sleep(pause)
            request = build()
            try:
                response = yield Send(request)
            except httpx.TimeoutException as exc:
                delivered = not isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
                if (replayable or not delivered) and attempt <= self.policy.max_retries:
                    yield Sleep(self.policy.delay(attempt - 1))
                    continue
                raise errors.APITimeoutError(
                    f"{what}: no answer within the timeout"
                    + (
                        "; the request was sent and may have completed (check usage() before retrying)"
                        if delivered and not replayable
                        else ""
                    ),
                    may_have_completed=delivered and not replayable,
                ) from None
            except httpx.TransportError as exc:
                delivered = not isinstance(exc, _NOT_DELIVERED)
                if (replayable or not delivered) and attempt <= self.policy.max_retries:
                    yield Sleep(self.policy.delay(attempt - 1))
                    continue
                where = self.base_url if not self.local else "the local server"
                reason = one_line(redact(str(exc) or type(exc).__name__, self.secrets), 120)
                message = f"{what}: could not reach {where} ({reason})"
                if delivered and not replayable:
                    message = (
                        f"{what}: the connection broke after the request was sent ({reason}); "
                        "it may have completed (check usage() before retrying)"
                    )
                raise errors.NetworkError(message) from None
            except httpx.RequestError as exc:  # an answer we could not decode, too many redirects
                reason = one_line(redact(str(exc) or type(exc).__name__, self.secrets), 120)
                raise errors.APIError(
                    f"{what}: the answer could not be read ({reason})"
                    + ("; the request may have completed (check usage() before retrying)"
                       if not replayable else "")
                ) from None
            if response.status_code in RETRY_STATUSES and attempt <= self.policy.max_retries:
                delay = self.policy.delay(attempt - 1, response.headers.get("retry-after"))
                # From the end of our previous backoff, not from "now": when a sleep returns
                # early (a test's recorded sleep, a clock step) our own earlier pause must not
                # come back as the shared pause of the next attempt.
                ready_at = max(time.monotonic(), ready_at) + delay
                if response.status_code == 429:
                    self.paused_until = max(self.paused_until, ready_at)
                yield Sleep(delay)
                continue
            return response, attempt

    # -- authentication

    def auth_flow(self) -> Generator[Step, Any, None]:
        """Exchange the key for a token; fall back to the key as bearer where there is no exchange."""
        key = self.api_key or ""

        def build() -> httpx.Request:
            return httpx.Request("POST", self.url(AUTH_PATH), headers={"X-API-Key": key})

        response, attempts = yield from self.attempts(build, replayable=True, what="authentication")
        if response.status_code in (404, 405):
            self.token, self.exchanged = key, False
            return
        if response.status_code != 200:
            raise status_error(response, self.secrets, attempts)
        payload = parse_json(response, self.secrets)
        token = payload.get("access_token") if isinstance(payload, Mapping) else None
        if not isinstance(token, str) or not token:
            self.token, self.exchanged = key, False  # cookie-only servers accept the key too
            return
        self.token, self.exchanged = token, True

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        replayable: bool,
        what: str,
        idempotency_key: str | None = None,
    ) -> Generator[Step, Any, httpx.Response]:
        """One API call: authenticate, send with retries, re-authenticate once on 401."""
        token = yield Authenticate(None)
        reauthenticated = False
        while True:
            def build(token: str | None = token) -> httpx.Request:
                headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
                if idempotency_key:
                    headers["Idempotency-Key"] = idempotency_key
                return httpx.Request(method, self.url(path), json=json_body, headers=headers)

            response, attempts = yield from self.attempts(build, replayable=replayable, what=what)
            if response.status_code == 401 and self.exchanged and not reauthenticated:
                reauthenticated = True
                token = yield Authenticate(token)
                continue
            if response.status_code >= 400:
                raise status_error(response, self.secrets, attempts)
            return response

    def images_flow(self, request: ImageRequest) -> Flow:
        # One key for every attempt of this call: a retry after a lost answer is never paid twice.
        # A request that may have reached the server is not re-sent: servers that ignore the
        # key would charge again, so the caller is told it may have completed instead.
        key = f"indox-{uuid.uuid4()}"
        response = yield from self.call(
            "POST", IMAGES_PATH, json_body=request.body, replayable=False,
            what="image generation", idempotency_key=key,
        )
        secrets = (*self.secrets, request.body.get("byok_api_key"))
        result = parse_image_response(response, request, secrets)
        result.server = scope_of(self.local, self.base_url)  # keeps local samples apart in the gallery
        return result

    def models_flow(self) -> Flow:
        response = yield from self.call("GET", MODELS_PATH, replayable=True, what="listing models")
        return parse_models(parse_json(response, self.secrets))

    def usage_flow(self) -> Flow:
        response = yield from self.call("GET", USAGE_PATH, replayable=True, what="reading usage")
        payload = parse_json(response, self.secrets)
        return dict(payload) if isinstance(payload, Mapping) else {"usage": payload}
