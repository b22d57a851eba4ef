"""The exception tree: one class per thing a caller can act on.

    IndoxRouterError                 base; .status_code and .detail when the server gave them
    ├── AuthenticationError          401/403, or no key configured
    ├── InsufficientCreditsError     402
    ├── InvalidParametersError       400 (also a ValueError)
    │   └── ValidationError          422 and our own checks before sending
    ├── ProviderError                500, or success=false from the provider
    │   ├── ServiceUnavailableError  502, 503, 504
    │   ├── ProviderNotFoundError    404 naming a provider
    │   ├── ModelNotFoundError       404 naming a model
    │   └── ModelNotAvailableError   404 for a disabled or unsupported model
    ├── RateLimitError               429 (.retry_after in seconds, when known)
    ├── NetworkError                 the request never completed
    │   └── APITimeoutError          no answer in time (.may_have_completed)
    ├── ImageDownloadError           an image URL or payload we could not turn into an image
    ├── StoreError                   the gallery's database or folder cannot be used
    └── APIError                     anything else the server said that we cannot classify

Names follow the reference ``indoxrouter`` client so code that catches its exceptions keeps
working. Every message is one line and never contains a key, token or BYOK value.
"""

from __future__ import annotations

__all__ = [
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "ImageDownloadError",
    "IndoxRouterError",
    "InsufficientCreditsError",
    "InvalidParametersError",
    "ModelNotAvailableError",
    "ModelNotFoundError",
    "NetworkError",
    "ProviderError",
    "ProviderNotFoundError",
    "RateLimitError",
    "ServiceUnavailableError",
    "StoreError",
    "ValidationError",
]


class IndoxRouterError(Exception):
    """Base of every error this package raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.detail = detail

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class AuthenticationError(IndoxRouterError):
    """The key is missing, wrong or not allowed."""


class InsufficientCreditsError(IndoxRouterError):
    """The account has no credit left for this request."""


class InvalidParametersError(IndoxRouterError, ValueError):
    """The request's parameters were refused (by us or by the server)."""


class ValidationError(InvalidParametersError):
    """A value has the wrong form; nothing was sent when we found it ourselves."""


class ProviderError(IndoxRouterError):
    """The provider behind the router failed."""


class ServiceUnavailableError(ProviderError):
    """The router or the provider is temporarily unavailable (502/503/504)."""


class ProviderNotFoundError(ProviderError):
    """The provider part of ``provider/model`` is unknown to the router."""


class ModelNotFoundError(ProviderError):
    """The model is unknown to the router."""


class ModelNotAvailableError(ProviderError):
    """The model exists but is disabled or unsupported right now."""


class RateLimitError(IndoxRouterError):
    """Too many requests; ``retry_after`` says how long the server asked us to wait."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class NetworkError(IndoxRouterError):
    """The request or its answer was lost on the way."""


class APITimeoutError(NetworkError):
    """No answer in time. If the request had been sent, it may still have completed."""

    def __init__(self, message: str, *, may_have_completed: bool = False, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.may_have_completed = may_have_completed


class ImageDownloadError(IndoxRouterError):
    """An image URL expired, was refused, or did not hold a real image."""


class StoreError(IndoxRouterError):
    """The gallery's database or folder cannot be used; the message says where and what to do."""


class APIError(IndoxRouterError):
    """The server answered in a way we cannot classify (unexpected status or body)."""
