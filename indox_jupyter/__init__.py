"""indox-jupyter: generate images in notebooks through IndoxRouter.

``from indox_jupyter import Client`` gives the seed's API; ``%load_ext indox_jupyter`` adds the
``%%indox_image`` magic. Everything not listed in ``__all__`` is private.
"""

from __future__ import annotations

from ._client import AsyncClient, Client
from ._models import GeneratedImage, ImageModel, ImageResult
from ._version import __version__
from .errors import (
    APIError,
    APITimeoutError,
    AuthenticationError,
    ImageDownloadError,
    IndoxRouterError,
    InsufficientCreditsError,
    InvalidParametersError,
    ModelNotAvailableError,
    ModelNotFoundError,
    NetworkError,
    ProviderError,
    ProviderNotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    ValidationError,
)

__all__ = [
    "APIError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "GeneratedImage",
    "ImageDownloadError",
    "ImageModel",
    "ImageResult",
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
    "ValidationError",
    "__version__",
]
