"""Client and AsyncClient: the I/O around the flows in ``_core``.

Each class only knows how to perform three steps (send a request, sleep, authenticate once
under a lock); request shaping, retries, re-authentication and parsing are shared in _core.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from ._version import __version__
from . import errors
from ._core import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    LOCAL,
    LOCAL_API_KEY,
    Authenticate,
    ClientCore,
    Flow,
    ImageRequest,
    Send,
    Sleep,
    build_image_request,
)
from ._models import ImageModel, ImageResult
from ._redact import guard_http_logs, mask

if TYPE_CHECKING:
    from .batch import Lookup, OnResult

TimeoutTypes = float | int | httpx.Timeout | None


def _timeout(value: TimeoutTypes) -> httpx.Timeout:
    if isinstance(value, httpx.Timeout):
        return value
    if value is None:
        return httpx.Timeout(None)
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= 0):
        raise errors.ValidationError(f"timeout must be a positive number of seconds or an httpx.Timeout (got {value!r})")
    return httpx.Timeout(float(value), connect=min(10.0, float(value)))


def _resolve_settings(api_key: str | None, base_url: str | None) -> tuple[str, str, bool]:
    """(api key, base URL, local?) from arguments, then the environment, then defaults."""
    url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).strip()
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if url.lower() == LOCAL:
        from .local import shared_server  # starts a server thread: only when asked for

        key = _check_api_key(key) if isinstance(key, str) and key.strip() else LOCAL_API_KEY
        return key, shared_server().url, True
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise errors.ValidationError(
            f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL}, or 'local' (got {url[:60]!r})"
        )
    url = url.rstrip("/")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")]
    if not key:
        raise errors.AuthenticationError(
            f"No IndoxRouter API key: set {API_KEY_ENV}, pass Client(api_key=...), "
            "or use base_url=\"local\" to work offline against the built-in server"
        )
    if not isinstance(key, str):
        raise errors.ValidationError(f"api_key must be a string (got {type(key).__name__})")
    return _check_api_key(key), url, False


def _check_api_key(key: str) -> str:
    """The key goes into an HTTP header: a line break there makes httpx fail with the key in its
    message, and non-ASCII crashes the header encoding. Refuse both here; never echo the key."""
    key = key.strip()
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        raise errors.ValidationError(
            "api_key holds spaces, line breaks or non-ASCII characters; paste the key again"
        )
    return key


class _ClientBase:
    """Settings and argument handling shared by both clients (no I/O)."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int = 2,
    ) -> None:
        guard_http_logs()
        key, url, local = _resolve_settings(api_key, base_url)
        self._core = ClientCore(key, url, local=local, max_retries=max_retries)
        self._timeout = _timeout(timeout)
        self._headers = {"User-Agent": f"indox-jupyter/{__version__}"}

    @property
    def base_url(self) -> str:
        return self._core.base_url

    @property
    def is_local(self) -> bool:
        """True when this client talks to the built-in local server."""
        return self._core.local

    @property
    def max_retries(self) -> int:
        return self._core.policy.max_retries

    def _image_request(self, prompt: Any, model: Any, **params: Any) -> ImageRequest:
        request = build_image_request(prompt, model, **params)
        if request.dropped:
            warnings.warn(
                f"{request.model} does not take {', '.join(request.dropped)}; not sent",
                stacklevel=3,
            )
        return request

    def __repr__(self) -> str:
        where = "local" if self.is_local else self.base_url
        return f"{type(self).__name__}(base_url={where!r}, api_key={mask(self._core.api_key)!r})"


class Client(_ClientBase):
    """Blocking client: ``Client(api_key).images(prompt, model=...)``."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int = 2,
    ) -> None:
        super().__init__(api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)
        self._http = httpx.Client(timeout=self._timeout, headers=self._headers, trust_env=False)
        self._auth_lock = threading.Lock()
        self._sleep = time.sleep

    def _run(self, flow: Flow) -> Any:
        outcome: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = flow.throw(error) if error is not None else flow.send(outcome)
            except StopIteration as stop:
                return stop.value
            outcome, error = None, None
            try:
                if isinstance(step, Send):
                    outcome = self._http.send(step.request)
                elif isinstance(step, Sleep):
                    self._sleep(step.seconds)
                elif isinstance(step, Authenticate):
                    outcome = self._token(step.stale)
            except httpx.RequestError as exc:
                error = exc

    def _token(self, stale: str | None) -> str | None:
        with self._auth_lock:  # one exchange, however many threads ask at once
            if self._core.token is None or self._core.token == stale:
                self._run(self._core.auth_flow())
            return self._core.token

    def images(
        self,
        prompt: str,
        model: str = DEFAULT_MODEL,
        size: str | None = None,
        n: int | None = None,
        quality: str | None = None,
        style: str | None = None,
        response_format: str | None = None,
        byok_api_key: str | None = None,
        *,
        negative_prompt: str | None = None,
        seed: int | None = None,
        aspect_ratio: str | None = None,
        guidance_scale: float | None = None,
        **extra: Any,
    ) -> ImageResult:
        """Generate images. Unknown keyword arguments travel in ``additional_params``."""
        request = self._image_request(
            prompt, model, size=size, n=n, quality=quality, style=style,
            response_format=response_format, byok_api_key=byok_api_key,
            negative_prompt=negative_prompt, seed=seed, aspect_ratio=aspect_ratio,
            guidance_scale=guidance_scale, **extra,
        )
        return self._run(self._core.images_flow(request))

    def images_many(
        self,
        prompts: Sequence[str | Mapping[str, Any]],
        *,
        concurrency: int = 8,
        progress: bool = True,
        lookup: Lookup | None = None,
        on_result: OnResult | None = None,
        on_late: OnResult | None = None,
        **params: Any,
    ) -> list[ImageResult | Exception]:
        """Many prompts at once, in order; a failure fills its own slot. See ``batch``."""
        from .batch import images_many

        return images_many(self, prompts, concurrency=concurrency, progress=progress,
                           lookup=lookup, on_result=on_result, on_late=on_late, **params)

    def models(self) -> list[ImageModel]:
        """The image-generation models the router offers."""
        return self._run(self._core.models_flow())

    def usage(self) -> dict[str, Any]:
        """Credits and usage figures as the router reports them."""
        return self._run(self._core.usage_flow())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_ClientBase):
    """The same API, awaitable: ``await AsyncClient(api_key).images(prompt)``."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int = 2,
    ) -> None:
        super().__init__(api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)
        self._http = httpx.AsyncClient(timeout=self._timeout, headers=self._headers, trust_env=False)
        self._auth_lock = asyncio.Lock()
        self._sleep = asyncio.sleep

    async def _run(self, flow: Flow) -> Any:
        outcome: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = flow.throw(error) if error is not None else flow.send(outcome)
            except StopIteration as stop:
                return stop.value
            outcome, error = None, None
            try:
                if isinstance(step, Send):
                    outcome = await self._http.send(step.request)
                elif isinstance(step, Sleep):
                    await self._sleep(step.seconds)
                elif isinstance(step, Authenticate):
                    outcome = await self._token(step.stale)
            except httpx.RequestError as exc:
                error = exc

    async def _token(self, stale: str | None) -> str | None:
        async with self._auth_lock:  # one exchange, however many tasks ask at once
            if self._core.token is None or self._core.token == stale:
                await self._run(self._core.auth_flow())
            return self._core.token

    async def images(
        self,
        prompt: str,
        model: str = DEFAULT_MODEL,
        size: str | None = None,
        n: int | None = None,
        quality: str | None = None,
        style: str | None = None,
        response_format: str | None = None,
        byok_api_key: str | None = None,
        *,
        negative_prompt: str | None = None,
        seed: int | None = None,
        aspect_ratio: str | None = None,
        guidance_scale: float | None = None,
        **extra: Any,
    ) -> ImageResult:
        """Generate images. Unknown keyword arguments travel in ``additional_params``."""
        request = self._image_request(
            prompt, model, size=size, n=n, quality=quality, style=style,
            response_format=response_format, byok_api_key=byok_api_key,
            negative_prompt=negative_prompt, seed=seed, aspect_ratio=aspect_ratio,
            guidance_scale=guidance_scale, **extra,
        )
        return await self._run(self._core.images_flow(request))

    async def images_many(
        self,
        prompts: Sequence[str | Mapping[str, Any]],
        *,
        concurrency: int = 8,
        progress: bool = True,
        lookup: Lookup | None = None,
        on_result: OnResult | None = None,
        **params: Any,
    ) -> list[ImageResult | Exception]:
        """Many prompts at once, in order; a failure fills its own slot. See ``batch``."""
        from .batch import aimages_many

        return await aimages_many(self, prompts, concurrency=concurrency, progress=progress,
                                  lookup=lookup, on_result=on_result, **params)

    async def models(self) -> list[ImageModel]:
        """The image-generation models the router offers."""
        return await self._run(self._core.models_flow())

    async def usage(self) -> dict[str, Any]:
        """Credits and usage figures as the router reports them."""
        return await self._run(self._core.usage_flow())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
