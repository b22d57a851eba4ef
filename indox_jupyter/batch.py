"""Many generations at once: ``images_many`` (blocking) and ``aimages_many`` (awaitable).

Planning (validation, cache lookups), result tracking (slots, ``on_result``, the progress bar) and
downloading are shared; only the driver differs. The blocking one is a thread pool over the sync
client (httpx.Client is thread-safe and its auth lock allows one key exchange), so it needs no
event loop and works as well inside a running one (a Jupyter kernel); the awaitable one is an
asyncio worker pool. Both use ONE client core for every worker, so a 429 with Retry-After pauses
the whole batch (``ClientCore.paused_until``), and both call back in the caller's thread (a
gallery's sqlite connection or a widget is not shared across threads).

Everything is validated before anything is sent. A bad shared parameter fails the call; a bad item
gets its ValidationError in its slot and is never sent. Image bytes are downloaded and verified as
part of the batch, so a result holds its images even after the provider's temporary URLs expire.

Resume: ``lookup(prompt, model, params)`` may serve a slot without a request, and
``on_result(index, result)`` sees each other slot as it completes, so a store fed by ``on_result``
and read by ``lookup`` makes an interrupted batch re-run send only what is missing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from . import errors
from ._core import DEFAULT_MODEL, ImageRequest, build_image_request, check_int

if TYPE_CHECKING:
    from ._client import AsyncClient, Client
    from ._models import ImageResult

__all__ = ["aimages_many", "images_many"]

Outcome = Union["ImageResult", Exception]
Lookup = Callable[[str, str, dict[str, Any]], "ImageResult | None"]
OnResult = Callable[[int, Outcome], Any]

DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 100  # httpx's default connection pool size; beyond it requests only queue
_POLL = 0.1  # seconds: how often a blocked caller wakes to notice Ctrl-C


# ---------------------------------------------------------------------------------------------
# Planning: validation and cache lookups, no I/O


@dataclass
class _Plan:
    """What a batch will do: slots already decided, and the requests still to send."""

    results: list[Outcome | None]
    jobs: list[tuple[int, ImageRequest]] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)  # slots holding a ValidationError

    @property
    def served(self) -> int:
        """Slots already filled (cache hits and invalid items)."""
        return len(self.results) - len(self.jobs)


def _plan(client: Client | AsyncClient, prompts: Iterable[Any], params: dict[str, Any],
          lookup: Lookup | None) -> _Plan:
    """Check everything before anything is sent; ask ``lookup`` for each valid item."""
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Iterable):
        raise errors.ValidationError(
            f"prompts must be a list of prompts (got {type(prompts).__name__}); "
            "for one prompt use images()"
        )
    if "prompt" in params:
        raise errors.ValidationError("pass prompts as the first argument, not prompt=")
    shared = dict(params)
    # A bad shared parameter would fail every item alike: fail the call instead.
    build_image_request("shared parameter check", shared.pop("model", DEFAULT_MODEL), **shared)

    items = list(prompts)
    plan = _Plan(results=[None] * len(items))
    for index, item in enumerate(items):
        try:
            request = _item_request(client, item, params)
        except errors.InvalidParametersError as exc:
            plan.results[index] = errors.ValidationError(f"item {index}: {exc}")
            plan.invalid.append(index)
            continue
        hit = lookup(request.prompt, request.model, request.public_params) if lookup else None
        if hit is not None:
            plan.results[index] = hit
        else:
            plan.jobs.append((index, request))
    return plan


def _item_request(client: Client | AsyncClient, item: Any, params: dict[str, Any]) -> ImageRequest:
    """One item (a prompt, or a dict of per-item parameters) merged over the shared ones."""
    merged = dict(params)
    if isinstance(item, Mapping):
        if "prompt" not in item:
            raise errors.ValidationError("a dict item needs a 'prompt' key")
        merged.update(item)
        prompt = merged.pop("prompt")
    else:
        prompt = item
    model = merged.pop("model", DEFAULT_MODEL)
    return client._image_request(prompt, model, **merged)


# ---------------------------------------------------------------------------------------------
# Drivers: a thread pool over a Client, an asyncio worker pool over an AsyncClient


def _load_images(result: ImageResult) -> ImageResult:
    """Download (or decode) and verify every image now, in a worker thread."""
    try:
        for image in result.images:
            image.data  # noqa: B018 - the property fetches, verifies and keeps the bytes
    except errors.ImageDownloadError as exc:
        exc.result = result  # type: ignore[attr-defined]  # charged: keep it reachable
        raise
    return result


async def _run_tasks(client: AsyncClient, jobs: list[tuple[int, ImageRequest]], concurrency: int,
                     deliver: Callable[[int, Outcome], None]) -> None:
    """Send ``jobs`` with at most ``concurrency`` in flight; ``deliver`` each slot as it completes.

    A failure of one item becomes that item's outcome; anything ``deliver`` raises, and
    cancellation, stop the whole batch (in-flight requests are abandoned).
    """
    pending = deque(jobs)
    workers = min(concurrency, len(jobs))
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="indox-batch-download")

    async def worker() -> None:
        while pending:
            index, request = pending.popleft()
            outcome: Outcome
            try:
                result = await client._run(client._core.images_flow(request))
                outcome = await loop.run_in_executor(pool, _load_images, result)
            except Exception as exc:  # one prompt's failure is its slot's outcome
                outcome = exc
            deliver(index, outcome)

    tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # re-raise what stopped the batch, if anything did
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        pool.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------------------------------------
# Progress


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(enabled: bool, total: int, initial: int) -> Any:
    """A tqdm.auto bar (a widget in Jupyter, text in a terminal), or nothing without tqdm."""
    if not enabled or total == initial:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the optional "batch" extra is not installed
        return _NoBar()
    return tqdm(total=total, initial=initial, desc="images", unit="img", leave=True)


class _Tracker:
    """Fills slots, calls ``on_result`` and moves the bar; always in the caller's thread."""

    def __init__(self, plan: _Plan, on_result: OnResult | None, progress: bool) -> None:
        self.results = plan.results
        self.on_result = on_result
        self.failed = len(plan.invalid)
        self.bar = _progress(progress, len(plan.results), plan.served)
        if self.failed:
            self.bar.set_postfix_str(f"{self.failed} failed")
        if on_result is not None:
            for index in plan.invalid:
                on_result(index, self.results[index])  # type: ignore[arg-type]

    def __call__(self, index: int, outcome: Outcome) -> None:
        self.results[index] = outcome
        if isinstance(outcome, Exception):
            self.failed += 1
            self.bar.set_postfix_str(f"{self.failed} failed")
        self.bar.update(1)
        if self.on_result is not None:
            self.on_result(index, outcome)


# ---------------------------------------------------------------------------------------------
# Public entry points


async def aimages_many(
    client: AsyncClient,
    prompts: Iterable[str | Mapping[str, Any]],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: bool = True,
    lookup: Lookup | None = None,
    on_result: OnResult | None = None,
    **params: Any,
) -> list[ImageResult | Exception]:
    """Generate one result per prompt concurrently; see :func:`images_many`."""
    concurrency = check_int("concurrency", concurrency, 1, MAX_CONCURRENCY)
    plan = _plan(client, prompts, params, lookup)
    tracker = _Tracker(plan, on_result, progress)
    try:
        if plan.jobs:
            await _run_tasks(client, plan.jobs, concurrency, tracker)
    finally:
        tracker.bar.close()
    return plan.results  # type: ignore[return-value]  # every slot is filled by now


def images_many(
    client: Client,
    prompts: Iterable[str | Mapping[str, Any]],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: bool = True,
    lookup: Lookup | None = None,
    on_result: OnResult | None = None,
    on_late: OnResult | None = None,
    **params: Any,
) -> list[ImageResult | Exception]:
    """Generate one result per prompt, ``concurrency`` at a time; blocks until all are done.

    Returns a list in the order of ``prompts``: an ImageResult, or the exception for that prompt.
    A prompt may be a dict of per-item parameters (``{"prompt": ..., "model": ..., "size": ...}``)
    merged over ``params``. ``lookup(prompt, model, params)`` may return a stored ImageResult to
    serve a slot without a request; ``on_result(index, outcome)`` is called for every other slot as
    it completes (errors included). If the batch is interrupted, requests already sent still
    finish and are paid for: ``on_late(index, outcome)`` receives each of them, from a worker
    thread. Safe to call inside a running event loop.
    """
    concurrency = check_int("concurrency", concurrency, 1, MAX_CONCURRENCY)
    plan = _plan(client, prompts, params, lookup)
    tracker = _Tracker(plan, on_result, progress)
    try:
        if plan.jobs:
            _run_threads(client, plan.jobs, concurrency, tracker, on_late)
    finally:
        tracker.bar.close()
    return plan.results  # type: ignore[return-value]


def _generate(client: Client, request: ImageRequest) -> Outcome:
    """One item, start to finish, in a pool thread; its failure is its outcome."""
    try:
        return _load_images(client._run(client._core.images_flow(request)))
    except Exception as exc:
        return exc


def _run_threads(client: Client, jobs: list[tuple[int, ImageRequest]], concurrency: int,
                 tracker: _Tracker, on_late: OnResult | None = None) -> None:
    """At most ``concurrency`` items in flight; outcomes handed to ``tracker`` in this thread.

    On Ctrl-C (or if ``on_result`` raises) nothing more is sent. Requests already in flight
    finish in the background: they are paid for, so each is handed to ``on_late`` from the
    worker thread that finished it (when given).
    """
    pool = ThreadPoolExecutor(max_workers=min(concurrency, len(jobs)),
                              thread_name_prefix="indox-batch")
    slots: dict[Future[Outcome], int] = {pool.submit(_generate, client, request): index
                                         for index, request in jobs}
    pending = set(slots)
    in_callback = False
    try:
        while pending:
            done, pending = wait(pending, timeout=_POLL, return_when=FIRST_COMPLETED)
            for future in done:
                in_callback = True
                tracker(slots.pop(future), future.result())
                in_callback = False
    except BaseException:
        if not in_callback:  # Ctrl-C: report what already arrived (it has been paid for)
            for future in [f for f in slots if f.done() and not f.cancelled()]:
                tracker(slots.pop(future), future.result())
        pool.shutdown(wait=False, cancel_futures=True)
        if on_late is not None:
            for future, index in slots.items():
                if not future.cancelled():
                    future.add_done_callback(
                        lambda f, i=index: None if f.cancelled() else on_late(i, f.result()))
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
