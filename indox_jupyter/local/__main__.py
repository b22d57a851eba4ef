"""`python -m indox_jupyter.local`: run the local server in the foreground."""

from __future__ import annotations

import argparse

from .server import serve


def main(argv: list[str] | None = None) -> None:
    """Parse flags and serve until Ctrl-C."""
    ap = argparse.ArgumentParser(prog="python -m indox_jupyter.local", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds of delay per generation")
    ap.add_argument("--fail-rate", type=float, default=0.0, help="probability of a 503 per generation")
    a = ap.parse_args(argv)
    serve(a.host, a.port, a.latency, a.fail_rate)


if __name__ == "__main__":
    main()
