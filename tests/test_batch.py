"""Batch generation against the local server over real sockets: order, per-prompt errors, shared
backoff, running inside an event loop, resume after an interruption, and the async twin.

No wall-clock assertions: the backoff test compares the server's request timestamps with the
pause the client itself recorded (same process, same monotonic clock).
"""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from indox_jupyter import AsyncClient, Client, ImageResult
from indox_jupyter import batch, errors
from indox_jupyter.local import Fault, LocalServer

from .conftest import generation_requests

SMALL = {"model": "openai/dall-e-2", "size": "256x256"}  # cheap to draw and to verify


@pytest.fixture
def client(server):
    with Client(api_key="k", base_url=server.url) as c:
        yield c


def key(result: ImageResult) -> tuple:
    return result.prompt, result.model, json.dumps(result.params, sort_keys=True)


def test_order_preserved_and_images_downloaded(server, client):
    server.latency = 0.02
    prompts = [f"prompt number {i}" for i in range(10)]
    results = batch.images_many(client, prompts, concurrency=4, progress=False, **SMALL)
    assert [r.prompt for r in results] == prompts
    for r in results:
        assert isinstance(r, ImageResult) and r.model == "openai/dall-e-2"
        assert all(img.loaded for img in r.images)  # bytes fetched as part of the batch
        assert r.images[0].width == 256
    assert server.stats["generations"] == 10
    assert server.stats["auth_exchanges"] == 1  # one core, one key exchange for all workers


def test_per_item_params_and_errors_in_their_slots(server, client):
    server.script(
        Fault(status=402, body={"detail": "Insufficient credits"}),
        Fault(status=404, body={"detail": "Model 'nope' not found for provider 'openai'"}),
    )
    items = [
        {"prompt": "a", **SMALL},
        {"prompt": "b", **SMALL},
        "c",
        {"prompt": "d", "model": "google/imagen-3.0-generate-002", "size": "1792x1024"},
        "   ",  # invalid: never sent
        {"size": "256x256"},  # invalid: no prompt
        {"prompt": "e", "n": 99},  # invalid n
    ]
    seen: dict[int, object] = {}
    results = batch.images_many(client, items, concurrency=1, progress=False, size="256x256",
                                model="openai/dall-e-2", on_result=seen.__setitem__)
    assert isinstance(results[0], errors.InsufficientCreditsError)
    assert isinstance(results[1], errors.ModelNotFoundError)
    assert isinstance(results[2], ImageResult) and results[2].prompt == "c"
    assert results[3].model == "google/imagen-3.0-generate-002"
    assert results[3].params["aspect_ratio"] == "16:9"  # per-item size shaped for Imagen
    for i in (4, 5, 6):
        assert isinstance(results[i], errors.ValidationError) and f"item {i}" in str(results[i])
    assert seen == dict(enumerate(results))  # every slot reported, errors included
    sent = [r["json"]["prompt"] for r in generation_requests(server)]
    assert sorted(sent) == ["a", "b", "c", "d"]  # invalid items never left the machine


def test_failed_download_keeps_the_paid_result_reachable(server, client):
    server.script(Fault(path="/files/*", status=403))  # the provider URL has "expired"
    results = batch.images_many(client, ["ok", "lost"], concurrency=1, progress=False, **SMALL)
    assert isinstance(results[0], errors.ImageDownloadError)
    assert results[0].result.prompt == "ok"  # generated and charged: not thrown away
    assert isinstance(results[1], ImageResult) and results[1].images[0].loaded


def test_invalid_shared_parameter_fails_before_sending(server, client):
    with pytest.raises(errors.ValidationError, match="size"):
        batch.images_many(client, ["a", "b"], size="huge", progress=False)
    with pytest.raises(errors.ValidationError, match="list of prompts"):
        batch.images_many(client, "a single string", progress=False)
    with pytest.raises(errors.ValidationError, match="concurrency"):
        batch.images_many(client, ["a"], concurrency=0, progress=False)
    assert server.stats["requests"] == 0
    assert batch.images_many(client, [], progress=False) == []


def test_one_429_pauses_every_worker(server, client):
    # The first generation is refused (after 0.1 s) with Retry-After: 1 while three others are
    # in flight; they may finish, but nobody may send again before the pause ends.
    server.latency = 0.2
    server.script(Fault(status=429, headers={"Retry-After": "1"}, delay=0.1))
    results = batch.images_many(client, [f"p{i}" for i in range(8)], concurrency=4,
                                progress=False, **SMALL)
    assert all(isinstance(r, ImageResult) for r in results)

    gens = generation_requests(server)
    assert len(gens) == 9  # 8 prompts + the one retry
    pause_end = client._core.paused_until
    pause_start = pause_end - 1.0  # set when the 429 arrived: Retry-After 1 s
    during = [r for r in gens if pause_start < r["time"] < pause_end]
    assert during == []  # nobody sent while the batch was told to wait
    before = [r for r in gens if r["time"] <= pause_start]
    assert len(before) == 4  # only the first wave went out; the rest waited for the pause


def test_sync_version_inside_a_running_loop(server, client):
    async def notebook_cell() -> list:
        asyncio.get_running_loop()  # as in a Jupyter kernel
        return batch.images_many(client, ["x", "y", "z"], progress=False, **SMALL)

    results = asyncio.run(notebook_cell())
    assert [r.prompt for r in results] == ["x", "y", "z"]


def test_resume_after_interruption_sends_only_missing(server, client):
    server.latency = 0.02
    prompts = [f"scene {i}" for i in range(12)]
    store: dict[tuple, ImageResult] = {}
    calling_thread = threading.get_ident()

    def on_result(index: int, result: object) -> None:
        assert threading.get_ident() == calling_thread  # callbacks stay in the caller's thread
        if isinstance(result, ImageResult):
            store[key(result)] = result
        if len(store) == 4:
            raise KeyboardInterrupt  # Ctrl-C after four results

    with pytest.raises(KeyboardInterrupt):
        batch.images_many(client, prompts, concurrency=2, progress=False, on_result=on_result, **SMALL)
    assert len(store) == 4

    first_run = dict(store)
    looked_up: list[tuple] = []

    def lookup(prompt: str, model: str, params: dict) -> ImageResult | None:
        looked_up.append((prompt, model, json.dumps(params, sort_keys=True)))
        return first_run.get(looked_up[-1])

    # A fresh server counts only the re-run (the first run's abandoned requests may still be
    # arriving at the old one); the stored results already hold their image bytes.
    with LocalServer() as second, Client(api_key="k", base_url=second.url) as again:
        results = batch.images_many(again, prompts, concurrency=2, progress=False, lookup=lookup,
                                    on_result=lambda i, r: store.setdefault(key(r), r), **SMALL)
        sent = sorted(r["json"]["prompt"] for r in generation_requests(second))
    assert [r.prompt for r in results] == prompts
    assert len(looked_up) == 12
    for k, stored in first_run.items():
        assert results[prompts.index(k[0])] is stored  # served from the store, not regenerated
    assert sent == sorted(set(prompts) - {k[0] for k in first_run})
    assert len(sent) == 8  # only the missing prompts went out again
    assert len(store) == 12


def test_progress_bar_with_and_without_tqdm(server, client, monkeypatch, capsys):
    results = batch.images_many(client, ["a", "b"], progress=True, **SMALL)
    assert len(results) == 2
    assert "2/2" in capsys.readouterr().err  # tqdm's text bar in a terminal
    import sys

    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # the optional extra is missing
    results = batch.images_many(client, ["c"], progress=True, **SMALL)
    assert isinstance(results[0], ImageResult)
    assert capsys.readouterr().err == ""


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_async_version_order_errors_and_cancel_resume(server):
    server.latency = 0.05
    async with AsyncClient(api_key="k", base_url=server.url) as aclient:
        aclient._core.policy.initial_delay = 0.0  # retry at once: no real backoff in tests
        server.script(Fault(status=503, times=3))  # all three attempts of the first prompt
        results = await batch.aimages_many(aclient, ["a", "b", "c"], concurrency=1,
                                           progress=False, **SMALL)
        assert isinstance(results[0], errors.ServiceUnavailableError)
        assert [r.prompt for r in results[1:]] == ["b", "c"]

        prompts = [f"async {i}" for i in range(10)]
        store: dict[tuple, ImageResult] = {}
        three = asyncio.Event()

        def on_result(index: int, result: object) -> None:
            store[key(result)] = result
            if len(store) == 3:
                three.set()

        task = asyncio.ensure_future(batch.aimages_many(
            aclient, prompts, concurrency=2, progress=False, on_result=on_result, **SMALL))
        await three.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        kept = len(store)
        assert kept >= 3

    with LocalServer() as second:
        async with AsyncClient(api_key="k", base_url=second.url) as again:
            results = await batch.aimages_many(
                again, prompts, concurrency=4, progress=False,
                lookup=lambda p, m, params: store.get((p, m, json.dumps(params, sort_keys=True))),
                **SMALL)
        assert [r.prompt for r in results] == prompts
        assert len(generation_requests(second)) == len(prompts) - kept


def test_client_methods_delegate_to_the_batch(server):
    from indox_jupyter import AsyncClient, Client

    with Client("ir-test-batch-key-0123456789", base_url=server.url) as client:
        results = client.images_many(["one", "two"], progress=False, model="openai/dall-e-2", size="256x256")
    assert [r.prompt for r in results] == ["one", "two"]

    async def main():
        async with AsyncClient("ir-test-batch-key-0123456789", base_url=server.url) as client:
            return await client.images_many(["three", ""], progress=False)

    results = asyncio.run(main())
    assert results[0].prompt == "three" and isinstance(results[1], ValueError)
