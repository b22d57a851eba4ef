"""Load with faults: N generations at concurrency 16 against LocalServer(fail_rate=0.1), then count.

What must hold (and is compared, not assumed):
  * every generation succeeds (max_retries=10 survives 10% injected 503s),
  * successful results == gallery rows == images the server says it produced == charged
    (cost summed client-side equals the server's ``charged``): nothing double-charged,
  * no request was repeated for an image already delivered: the server replayed no
    Idempotency-Key answer, and every request beyond the first per key is explained by a 503,
  * every image's bytes are present, decodable, and each stored file is one of them.

Size: INDOX_LOAD_N (default 200) so .ci/run can scale it. Figures are printed (run with -s) and,
when INDOX_LOAD_REPORT names a file, written there as JSON for RELIABILITY.md.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from indox_jupyter import Client, ImageResult

from .conftest import TEST_API_KEY, generation_requests

N = int(os.environ.get("INDOX_LOAD_N", "200"))
CONCURRENCY = 16
FAIL_RATE = 0.1
PARAMS = {"model": "openai/dall-e-2", "size": "256x256"}


def _run_batch(client: Client, prompts: list[str], on_result) -> tuple[list, str]:
    try:
        from indox_jupyter.batch import images_many
    except ImportError:  # batch not there: the same load through threads over one Client
        def one(i: int):
            try:
                result = client.images(prompts[i], **PARAMS)
                for img in result.images:
                    img.data
                outcome = result
            except Exception as exc:  # noqa: BLE001 - the outcome is the exception
                outcome = exc
            on_result(i, outcome)
            return outcome

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            return list(pool.map(one, range(len(prompts)))), "threads over one Client"
    return images_many(client, prompts, concurrency=CONCURRENCY, progress=False, on_result=on_result,
                       **PARAMS), "batch.images_many"


@pytest.mark.timeout(300)
def test_load_with_faults_loses_nothing_and_charges_once(server, tmp_path):
    from indox_jupyter.store import Gallery

    server.fail_rate = FAIL_RATE
    prompts = [f"load test image {i}" for i in range(N)]
    started = time.monotonic()
    with Client(TEST_API_KEY, base_url=server.url, max_retries=10) as client, \
            Gallery(tmp_path / "gallery") as gallery:
        outcomes, path = _run_batch(client, prompts, gallery.recorder())
        elapsed = time.monotonic() - started
        rows = gallery.history()
    server.fail_rate = 0.0

    failures = [o for o in outcomes if not isinstance(o, ImageResult)]
    results = [o for o in outcomes if isinstance(o, ImageResult)]
    assert failures == [], failures[:3]
    assert [r.prompt for r in results] == prompts  # in order, one per prompt

    stats = server.stats
    gens = generation_requests(server)
    per_key = Counter(g["headers"]["idempotency-key"] for g in gens)
    injected = len(gens) - stats["generations"]  # every request that did not produce images got a 503
    images = sum(len(r.images) for r in results)
    cost = round(sum(r.cost or 0.0 for r in results), 6)

    # no double charge, nothing lost
    assert stats["generations"] == len(results) == N
    assert stats["images"] == images == len(rows) == N
    assert stats["charged"] == pytest.approx(cost) and cost == pytest.approx(0.016 * N)
    # no request repeated for an image already delivered
    assert stats["idempotent_replays"] == 0
    assert len(per_key) == N  # one key per generation, kept across its retries
    assert sum(n - 1 for n in per_key.values()) == injected
    # every image present and decodable; the stored file is the same bytes
    by_request = {r.request_id: r for r in results}
    assert len(by_request) == N
    delivered = set()
    for result in results:
        for img in result.images:
            assert img.loaded
            Image.open(io.BytesIO(img.data)).load()
            delivered.add(img.data)
    for row in rows:
        assert row.path.is_file()
        data = row.path.read_bytes()
        Image.open(io.BytesIO(data)).load()
        assert data in delivered

    figures = {
        "path": path, "n": N, "concurrency": CONCURRENCY, "fail_rate": FAIL_RATE,
        "succeeded": len(results), "failed": len(failures), "images": images, "gallery_rows": len(rows),
        "server_generations": stats["generations"], "server_images": stats["images"],
        "server_charged": stats["charged"], "client_cost": cost,
        "generation_requests": len(gens), "injected_503_retried": injected,
        "max_attempts_for_one_image": max(per_key.values()), "idempotent_replays": stats["idempotent_replays"],
        "auth_exchanges": stats["auth_exchanges"], "seconds": round(elapsed, 2),
    }
    print("\nLOAD " + json.dumps(figures))
    report = os.environ.get("INDOX_LOAD_REPORT")
    if report:
        with open(report, "w") as fh:
            json.dump(figures, fh, indent=2)
