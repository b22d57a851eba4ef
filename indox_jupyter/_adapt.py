"""Using a client object the notebook already has (``%%indox_image --client NAME``).

IndoxRouter users often hold the reference ``indoxrouter.Client``, whose ``images()`` takes the
seed's arguments and returns the seed's plain dict. Anything with that ``images()`` works: its
answer is checked and wrapped in our ``ImageResult`` so display, ``-o`` and ``--save`` behave
exactly as with our own client. The request is validated by us first, so nothing is sent for a
bad flag whichever client is used.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from ._core import has_image
from ._models import ImageResult
from ._redact import redact
from .errors import APIError, IndoxRouterError, ProviderError, ValidationError

__all__ = ["adapt_result", "call_foreign", "check_client"]


def check_client(obj: Any, name: str) -> Any:
    """The object if it can generate images, else a ValidationError naming what is missing."""
    images = getattr(obj, "images", None)
    if not callable(images):
        raise ValidationError(
            f"--client {name}: a {type(obj).__name__} has no images() method; pass a Client "
            "(indox_jupyter.Client or indoxrouter.Client)"
        )
    if inspect.iscoroutinefunction(images):
        raise ValidationError(f"--client {name}: images() is async; pass a blocking Client instead")
    return obj


def call_foreign(client: Any, prompt: str, kwargs: Mapping[str, Any], secrets: tuple[str | None, ...]) -> Any:
    """Call ``client.images`` with the seed's keywords; its own errors become one safe line."""
    try:
        return client.images(prompt, **kwargs)
    except IndoxRouterError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # a foreign client raises its own classes; show them as one line
        text = " ".join(redact(str(exc), secrets).split())[:300]
        raise APIError(f"{type(client).__name__}.images() failed: {type(exc).__name__}: {text}") from None


def adapt_result(
    answer: Any,
    *,
    prompt: str,
    model: str,
    params: Mapping[str, Any],
    secrets: tuple[str | None, ...] = (),
) -> ImageResult:
    """Our ImageResult from what a client returned: ours as is, the seed's dict wrapped."""
    if isinstance(answer, ImageResult):
        return answer
    if inspect.isawaitable(answer):
        close = getattr(answer, "close", None)
        if callable(close):
            close()  # silence "coroutine was never awaited"
        raise ValidationError("the client's images() returned an awaitable; pass a blocking Client instead")
    if not isinstance(answer, Mapping):
        raise APIError(f"the client's images() returned {type(answer).__name__}, not the seed's dict with 'data'")
    if answer.get("success") is False:
        reason = " ".join(redact(str(answer.get("message") or answer.get("detail") or "no reason given"),
                                 secrets).split())[:300]
        raise ProviderError(f"The provider reported a failure: {reason}")
    data = answer.get("data")
    if not isinstance(data, list) or not data:
        raise APIError("the client's answer holds no images (empty or missing 'data')")
    usable = [item for item in data if has_image(item)]
    if not usable:
        raise APIError("no item in the client's answer has a 'url' or 'b64_json'")
    cleaned = {k: v for k, v in answer.items() if k not in ("byok_api_key", "api_key")}
    cleaned["data"] = [dict(item) for item in usable]
    return ImageResult(cleaned, model=model, prompt=prompt, params=params)
