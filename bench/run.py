"""Benchmark: batch generation against the local server, ours vs the reference client vs raw httpx.

    python bench/run.py [--latency 0.5] [--quick] [--inproc]

Measured side by side in one run; prints a table of ratios and writes
bench/results/latest.json and bench/results/latest.png (matplotlib, from the ``bench`` extra).

The server runs in a child process by default, so its threads (which draw and encode PNGs) do not
compete with the client for this process's GIL: on a 2-core machine that is closer to a remote
service. ``--inproc`` runs it in-process instead. Metrics that need modules not written yet
(render, store, the extension entry point, history) print "n/a (...)" until those land.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indox_jupyter import Client, ImageResult, batch  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GEN = "/api/v1/images/generations"
KEY = "bench-key"
MODEL = "openai/dall-e-2"
SIZE = "256x256"  # small images: the bench measures the client, not the server's PNG encoder
NA = "n/a (module missing)"


# ---------------------------------------------------------------------------------------------
# The server, in a child process (or in-process with --inproc)


_CHILD = textwrap.dedent("""
    import sys
    from indox_jupyter.local import LocalServer
    server = LocalServer(latency=float(sys.argv[1])).start()
    print(server.url, flush=True)
    sys.stdin.read()  # EOF from the parent means stop
    server.stop()
""")


class Server:
    """A LocalServer reached through its control API, wherever it runs."""

    def __init__(self, latency: float, inproc: bool) -> None:
        self.latency = latency
        self._local: Any = None
        self._proc: subprocess.Popen[str] | None = None
        if inproc:
            from indox_jupyter.local import LocalServer

            self._local = LocalServer(latency=latency).start()
            self.url = self._local.url
        else:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(latency)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
            assert self._proc.stdout is not None
            self.url = self._proc.stdout.readline().strip()
            if not self.url.startswith("http"):
                raise RuntimeError("the local server did not start")
        self._http = httpx.Client(base_url=self.url, timeout=30, trust_env=False)

    def configure(self, latency: float) -> None:
        self._http.post("/_local/config", json={"latency": latency}).raise_for_status()

    def reset(self) -> None:
        self._http.post("/_local/reset").raise_for_status()

    def stats(self) -> dict[str, Any]:
        return self._http.get("/_local/stats").json()

    def stop(self) -> None:
        self._http.close()
        if self._local is not None:
            self._local.stop()
        elif self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait(timeout=10)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


# ---------------------------------------------------------------------------------------------
# Batch of N: ours, the reference client, raw httpx


def prompts(n: int, tag: str) -> list[str]:
    return [f"{tag} {i}: a lighthouse at dusk, watercolour" for i in range(n)]


def run_ours(server: Server, n: int, concurrency: int, tag: str) -> float:
    with Client(api_key=KEY, base_url=server.url) as client:
        client.usage()  # key exchange done up front, as in a session that already made one call
        wall, results = timed(lambda: batch.images_many(
            client, prompts(n, tag), concurrency=concurrency, progress=False, model=MODEL, size=SIZE))
    failed = [r for r in results if not isinstance(r, ImageResult)]
    if failed:
        raise RuntimeError(f"{len(failed)} of {n} failed, e.g. {failed[0]!r}")
    assert all(img.loaded for r in results for img in r.images)
    return wall


def run_reference(server: Server, n: int, tag: str) -> float | None:
    try:
        from indoxrouter import Client as RefClient
    except ImportError:
        return None
    logging.getLogger("indoxrouter").setLevel(logging.ERROR)
    ref = RefClient(api_key=KEY, base_url=server.url)  # authenticates in the constructor

    def loop() -> None:
        for prompt in prompts(n, tag):  # one at a time, as users do with it
            ref.images(prompt, model=MODEL, size=SIZE)

    wall, _ = timed(loop)
    ref.session.close()
    return wall


def run_raw(server: Server, n: int, tag: str) -> float:
    """The floor: n concurrent posts on one httpx.AsyncClient, nothing else."""

    async def go() -> None:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60,
                                     trust_env=False) as http:
            responses = await asyncio.gather(*(
                http.post(GEN, json={"prompt": p, "model": MODEL, "size": SIZE})
                for p in prompts(n, tag)))
        for r in responses:
            r.raise_for_status()

    wall, _ = timed(lambda: asyncio.run(go()))
    return wall


# ---------------------------------------------------------------------------------------------
# Per-request overhead beyond the server's own time


def overhead(server: Server, count: int) -> dict[str, float | None]:
    """Median client-side ms per sequential request: wall time minus the server's duration_ms."""
    server.configure(0.0)
    out: dict[str, float | None] = {}

    def measure(call: Callable[[str], float]) -> float:
        call("warm-up")
        samples = []
        for i in range(count):
            start = time.perf_counter()
            server_ms = call(f"overhead {i}")
            samples.append((time.perf_counter() - start) * 1000 - server_ms)
        return statistics.median(samples)

    with Client(api_key=KEY, base_url=server.url) as client:
        out["ours"] = measure(lambda p: client.images(p, model=MODEL, size=SIZE)["duration_ms"])
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=60, trust_env=False) as http:
        out["raw_httpx"] = measure(lambda p: http.post(
            GEN, json={"prompt": p, "model": MODEL, "size": SIZE}).json()["duration_ms"])
    try:
        from indoxrouter import Client as RefClient
    except ImportError:
        out["reference"] = None
    else:
        ref = RefClient(api_key=KEY, base_url=server.url)
        out["reference"] = measure(lambda p: ref.images(p, model=MODEL, size=SIZE)["duration_ms"])
        ref.session.close()
    server.configure(server.latency)
    return out


# ---------------------------------------------------------------------------------------------
# Resume: a re-run served by lookup (a dict now; the gallery's store once it lands)


def rerun_from_lookup(server: Server, n: int) -> dict[str, Any]:
    store: dict[tuple, ImageResult] = {}

    def key(prompt: str, model: str, params: dict) -> tuple:
        return prompt, model, json.dumps(params, sort_keys=True)

    with Client(api_key=KEY, base_url=server.url) as client:
        client.usage()
        fresh, _ = timed(lambda: batch.images_many(
            client, prompts(n, "rerun"), concurrency=n, progress=False, model=MODEL, size=SIZE,
            on_result=lambda i, r: store.__setitem__(key(r.prompt, r.model, r.params), r)))
        before = server.stats()["by_path"].get(GEN, 0)
        again, _ = timed(lambda: batch.images_many(
            client, prompts(n, "rerun"), concurrency=n, progress=False, model=MODEL, size=SIZE,
            lookup=lambda p, m, params: store.get(key(p, m, params))))
        sent = server.stats()["by_path"].get(GEN, 0) - before
    return {"fresh_s": fresh, "rerun_s": again, "ratio": again / fresh, "requests_sent": sent}


def gallery_rerun(server: Server, n: int) -> dict[str, Any] | str:
    """The same through the gallery: ``Gallery.finder(client)`` as lookup, ``Gallery.recorder()``
    as on_result."""
    if importlib.util.find_spec("indox_jupyter.store") is None:
        return NA
    import tempfile

    from indox_jupyter.store import Gallery

    if not (hasattr(Gallery, "finder") and hasattr(Gallery, "recorder")):
        return "n/a (Gallery has no finder()/recorder() yet)"
    with tempfile.TemporaryDirectory() as tmp, Gallery(tmp) as gallery, \
            Client(api_key=KEY, base_url=server.url) as client:
        client.usage()
        fresh, _ = timed(lambda: batch.images_many(
            client, prompts(n, "gallery"), concurrency=n, progress=False, model=MODEL, size=SIZE,
            on_result=gallery.recorder()))
        before = server.stats()["by_path"].get(GEN, 0)
        again, results = timed(lambda: batch.images_many(
            client, prompts(n, "gallery"), concurrency=n, progress=False, model=MODEL, size=SIZE,
            lookup=gallery.finder(client)))
        sent = server.stats()["by_path"].get(GEN, 0) - before
        served = sum(isinstance(r, ImageResult) for r in results)
    return {"fresh_s": fresh, "rerun_s": again, "ratio": again / fresh, "requests_sent": sent,
            "served": served}


# ---------------------------------------------------------------------------------------------
# Metrics that light up as other modules land


def notebook_bytes(server: Server) -> dict[str, Any] | str:
    """Bytes an ImageResult adds to a notebook vs embedding the full 1024x1024 PNG."""
    if importlib.util.find_spec("indox_jupyter.render") is None:
        return NA
    server.configure(0.0)
    try:
        with Client(api_key=KEY, base_url=server.url) as client:
            result = client.images("a harbour at night, oil painting", model="openai/dall-e-3",
                                   size="1024x1024")
            png = result.images[0].data
            bundle = result._repr_mimebundle_()
    finally:
        server.configure(server.latency)
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    stored = len(json.dumps(data, default=lambda b: base64.b64encode(b).decode()))
    full = len(base64.b64encode(png))
    return {"notebook_bytes": stored, "full_png_b64_bytes": full, "ratio": stored / full}


_LOAD_EXT = textwrap.dedent("""
    import sys, time
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    start = time.perf_counter()
    import indox_jupyter
    if not hasattr(indox_jupyter, "load_ipython_extension"):
        print("MISSING"); raise SystemExit
    shell.extension_manager.load_extension("indox_jupyter")
    took = time.perf_counter() - start
    heavy = [m for m in ("PIL", "ipywidgets", "indox_jupyter.local.server") if m in sys.modules]
    print(took, ",".join(heavy))
""")
_IMPORT_HTTPX = "import time; s = time.perf_counter(); import httpx; print(time.perf_counter() - s)"


def load_ext_time(runs: int = 5) -> dict[str, Any] | str:
    """``%load_ext indox_jupyter`` in a fresh interpreter vs ``import httpx`` (medians)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def run(code: str) -> str:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, check=True).stdout.strip()

    first = run(_LOAD_EXT)
    if first == "MISSING":
        return "n/a (indox_jupyter has no load_ipython_extension yet)"
    outs = [first] + [run(_LOAD_EXT) for _ in range(runs - 1)]
    ext = statistics.median(float(o.split()[0]) for o in outs)
    heavy = outs[-1].split()[1] if len(outs[-1].split()) > 1 else ""
    httpx_s = statistics.median(float(run(_IMPORT_HTTPX)) for _ in range(runs))
    return {"load_ext_ms": ext * 1000, "import_httpx_ms": httpx_s * 1000, "ratio": ext / httpx_s,
            "heavy_modules_loaded": heavy.split(",") if heavy else []}


_HISTORY = textwrap.dedent("""
    import resource, sys, tempfile
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("indox_jupyter")
    from indox_jupyter import Client, batch
    from indox_jupyter.store import Gallery
    gallery = Gallery(tempfile.mkdtemp())
    with Client(api_key="k", base_url=sys.argv[1]) as client:
        batch.images_many(client, [f"history {i}" for i in range(100)], concurrency=16,
                          progress=False, on_result=gallery.recorder(), model="openai/dall-e-3")
        del client
    import gc; gc.collect()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    shown = gallery.history(100)  # what a notebook shows: the history, then each image
    for entry in shown:
        shell.display_formatter.format(entry)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(len(shown), base, peak)
""")


def history_memory(server: Server) -> dict[str, Any] | str:
    """Peak RSS of a fresh shell process that generates 100 1024x1024 images into a gallery and
    then shows its history (each entry through IPython's display formatter)."""
    missing = [m for m in ("indox_jupyter.store", "indox_jupyter.render")
               if importlib.util.find_spec(m) is None]
    if missing:
        return f"n/a (module missing: {', '.join(missing)})"
    server.configure(0.0)
    try:
        proc = subprocess.run([sys.executable, "-c", _HISTORY, server.url], capture_output=True,
                              text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    finally:
        server.configure(server.latency)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return f"n/a ({last[:100]})"
    shown, base_kb, peak_kb = (int(x) for x in proc.stdout.split())
    return {"images": shown, "before_showing_mib": base_kb / 1024, "peak_mib": peak_kb / 1024,
            "growth_mib": (peak_kb - base_kb) / 1024}


# ---------------------------------------------------------------------------------------------
# Report


def chart(report: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    latency = report["latency_s"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    b = report["batch16"]
    names = [k for k in ("ours", "raw_httpx", "reference") if b.get(k) is not None]
    labels = {"ours": "indox-jupyter\nimages_many", "raw_httpx": "raw httpx\n(floor)",
              "reference": "indoxrouter 0.1.39\n(sequential)"}
    values = [b[k] / latency for k in names]
    bars = left.bar([labels[k] for k in names], values, color=["#2b7bba", "#9aa5b1", "#d9822b"][:len(names)])
    left.bar_label(bars, fmt="%.2fx")
    left.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    left.set_yscale("log")
    left.set_ylabel("wall time / server latency (log)")
    left.set_title(f"16 prompts, server latency {latency:g} s")
    for conc, rows in report["scale"].items():
        ns = sorted(int(n) for n in rows)
        right.plot(ns, [rows[str(n)] for n in ns], marker="o", label=f"concurrency {conc}")
    right.set_xscale("log", base=2)
    right.set_xlabel("prompts in the batch")
    right.set_ylabel("wall time (s)")
    right.set_title("images_many: wall time vs N")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def fmt(value: Any, spec: str = ".2f", unit: str = "") -> str:
    if value is None:
        return "n/a (indoxrouter not installed)"
    return f"{value:{spec}}{unit}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.5, help="server latency per generation (s)")
    ap.add_argument("--quick", action="store_true", help="skip N=256 and the reference batch")
    ap.add_argument("--inproc", action="store_true", help="run the server in this process")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    latency = args.latency
    started = time.perf_counter()
    server = Server(latency, args.inproc)
    try:
        # Warm both code paths (imports, Pillow, first connections) before measuring anything.
        run_ours(server, 4, 4, "warm")
        run_raw(server, 4, "warm")

        batch16 = {
            "ours": run_ours(server, 16, 16, "b16"),
            "ours_default_concurrency_8": run_ours(server, 16, 8, "b16d"),
            "raw_httpx": run_raw(server, 16, "b16r"),
            "reference": None if args.quick else run_reference(server, 16, "b16ref"),
        }
        over = overhead(server, 30)
        scale: dict[str, dict[str, float]] = {}
        for conc in (8, 16, 32):
            for n in (16, 64) if args.quick else (16, 64, 256):
                scale.setdefault(str(conc), {})[str(n)] = run_ours(server, n, conc, f"s{conc}-{n}")
        rerun = rerun_from_lookup(server, 16)
        report = {
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "platform": platform.platform()},
            "server": "in-process" if args.inproc else "child process",
            "latency_s": latency, "model": MODEL, "size": SIZE,
            "batch16": batch16,
            "overhead_ms": over,
            "scale": scale,
            "rerun_dict_lookup": rerun,
            "gallery_rerun": gallery_rerun(server, 16),
            "notebook_bytes": notebook_bytes(server),
            "load_ext": load_ext_time(),
            "history_memory": history_memory(server),
        }
    finally:
        server.stop()
    report["bench_seconds"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    drew = chart(report, args.out / "latest.png")
    print(table(report))
    print(f"\nwrote {args.out / 'latest.json'}" + (f" and {args.out / 'latest.png'}" if drew
                                                    else " (no chart: matplotlib missing)"))
    return report


def table(r: dict[str, Any]) -> str:
    L = r["latency_s"]
    b, o = r["batch16"], r["overhead_ms"]
    rows: list[tuple[str, str, str]] = []
    add = lambda metric, value, goal="": rows.append((metric, value, goal))  # noqa: E731
    add("batch 16: ours (concurrency 16) wall/latency", f"{b['ours'] / L:.2f}x", "<= 1.3x")
    add("batch 16: ours (default concurrency 8) wall/latency",
        f"{b['ours_default_concurrency_8'] / L:.2f}x", "~2 waves")
    add("batch 16: raw httpx.AsyncClient wall/latency (floor)", f"{b['raw_httpx'] / L:.2f}x")
    ref = b.get("reference")
    add("batch 16: reference indoxrouter, sequential, wall/latency",
        f"{ref / L:.2f}x" if ref else "n/a (skipped or not installed)")
    add("batch 16: speed-up of ours over the reference",
        f"{ref / b['ours']:.1f}x" if ref else "n/a", ">= 10x")
    add("batch 16: ours / raw httpx", f"{b['ours'] / b['raw_httpx']:.2f}x")
    add("overhead per request beyond server time: ours", fmt(o["ours"], ".1f", " ms"))
    add("overhead per request beyond server time: raw httpx", fmt(o["raw_httpx"], ".1f", " ms"))
    add("overhead per request beyond server time: reference", fmt(o["reference"], ".1f", " ms"))
    for conc, rows_n in r["scale"].items():
        for n, wall in rows_n.items():
            waves = math.ceil(int(n) / int(conc))
            add(f"scale: N={n:>3} concurrency={conc:>2} wall (ideal {waves} x {L:g}s)",
                f"{wall:.2f} s = {wall / (waves * L):.2f}x ideal")
    rr = r["rerun_dict_lookup"]
    add("re-run served by lookup (dict) vs fresh: time ratio, requests",
        f"{rr['ratio']:.3f}, {rr['requests_sent']} sent", "<= 0.02, 0")
    g = r["gallery_rerun"]
    add("re-run served by the gallery vs fresh: time ratio, requests",
        g if isinstance(g, str) else f"{g['ratio']:.3f}, {g['requests_sent']} sent", "<= 0.02, 0")
    nb = r["notebook_bytes"]
    add("notebook bytes per 1024x1024 image / full PNG",
        nb if isinstance(nb, str) else f"{nb['ratio']:.3f} ({nb['notebook_bytes']:,} B)", "<= 0.10")
    le = r["load_ext"]
    add("%load_ext indox_jupyter vs import httpx",
        le if isinstance(le, str) else
        f"{le['load_ext_ms']:.0f} ms vs {le['import_httpx_ms']:.0f} ms = {le['ratio']:.2f}x"
        + (f" (loaded {', '.join(le['heavy_modules_loaded'])})" if le["heavy_modules_loaded"] else ""))
    hm = r["history_memory"]
    add("peak memory after showing a 100-image history",
        hm if isinstance(hm, str) else
        f"{hm['peak_mib']:.0f} MiB peak, +{hm['growth_mib']:.0f} MiB for showing {hm['images']}")
    w1 = max(len(m) for m, _, _ in rows)
    w2 = max(len(v) for _, v, _ in rows)
    head = (f"indox-jupyter bench · latency {L:g} s · {r['model']} {r['size']} · server in "
            f"{r['server']} · {r['machine']['cpus']} CPUs · Python {r['machine']['python']}")
    lines = [head, "", f"| {'metric':<{w1}} | {'value':<{w2}} | goal |", f"|{'-' * (w1 + 2)}|{'-' * (w2 + 2)}|------|"]
    lines += [f"| {m:<{w1}} | {v:<{w2}} | {g} |" for m, v, g in rows]
    lines.append(f"\n(full run {r['bench_seconds']:.0f} s)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
