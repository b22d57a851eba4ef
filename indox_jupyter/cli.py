"""``indox-jupyter serve | generate | demo``: the project without a notebook."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import IndoxRouterError, ValidationError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="indox-jupyter",
        description="Generate images through IndoxRouter, or run the built-in local server.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the built-in IndoxRouter-compatible server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--latency", type=float, default=0.0, metavar="SECONDS",
                       help="artificial delay before each generation answers")
    serve.add_argument("--fail-rate", type=float, default=0.0, metavar="P",
                       help="probability (0..1) of a 503 on a generation")

    gen = sub.add_parser("generate", help="generate images and save them")
    gen.add_argument("prompt")
    gen.add_argument("-m", "--model", default="openai/dall-e-3")
    gen.add_argument("-s", "--size")
    gen.add_argument("-n", "--n", type=int)
    gen.add_argument("-q", "--quality")
    gen.add_argument("--style")
    gen.add_argument("-o", "--out", default="generated_images", metavar="DIR",
                     help="directory for the image files (default: generated_images)")
    gen.add_argument("--local", action="store_true",
                     help="use the built-in local server (offline, no key needed)")

    demo = sub.add_parser("demo", help="run the quickstart notebook offline and write it as HTML")
    demo.add_argument("--out", default="indox-demo.html", metavar="FILE.html")
    return parser


def _generate(args: argparse.Namespace) -> int:
    from ._client import Client
    from .render import money

    with Client(base_url="local" if args.local else None) as client:
        result = client.images(
            args.prompt, model=args.model, size=args.size, n=args.n,
            quality=args.quality, style=args.style,
        )
        paths = result.save(args.out)
    for image, path in zip(result.images, paths):
        print(path)
        if image.revised_prompt:
            print(f"  revised prompt: {image.revised_prompt}")
    print(f"{len(paths)} image(s) from {result.model}, cost {money(result.cost)}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .local import serve

    if not 0.0 <= args.fail_rate <= 1.0 or args.latency < 0:
        raise ValidationError("--fail-rate must be between 0 and 1 and --latency not negative")
    serve(host=args.host, port=args.port, latency=args.latency, fail_rate=args.fail_rate)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    path = run_demo(args.out)
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"serve": _serve, "generate": _generate, "demo": _demo}
    try:
        return handlers[args.command](args)
    except IndoxRouterError as exc:
        print(f"indox-jupyter: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    except OSError as exc:  # a folder we cannot write, a port already taken
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"indox-jupyter: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
