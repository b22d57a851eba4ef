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
    StoreError,
    ValidationError,
)

__all__ = [
    "APIError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "Gallery",
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
    "StoreError",
    "ValidationError",
    "__version__",
    "history",
    "panel",
]


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext indox_jupyter``: register the magics (imported here so the package loads fast)."""
    from .magics import load

    load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext indox_jupyter``: remove the magics and their display hook."""
    from .magics import unload

    unload(ipython)


def __getattr__(name: str) -> object:
    # The panel imports ipywidgets: load it on first use so importing the package stays light.
    if name == "panel":
        from ._panel import panel

        return panel
    if name in ("Gallery", "history"):  # the gallery opens SQLite: only when asked for
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
