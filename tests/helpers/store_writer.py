"""A separate process that writes images into a gallery, for the store's multi-process tests.

    python tests/helpers/store_writer.py HOME TAG COUNT [--side PIXELS] [--die-at POINT]

COUNT 0 means "forever" (until killed). Every image has distinct bytes: one noise PNG is made
per process and each image gets its own tEXt chunk, so the loop's time goes to storing, not to
drawing, and a SIGKILL from outside lands inside the store's writes often.

``--die-at`` makes the process SIGKILL itself at an exact point of the first image's write, to
hit the windows a random kill only sometimes reaches:
``before-rename`` (temp file written and fsynced, not yet renamed) and
``after-rename`` (file in place, its row not yet inserted).
Prints one line per stored image so the test can follow progress.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import random
import signal
import struct
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from PIL import Image  # noqa: E402

from indox_jupyter._models import ImageResult  # noqa: E402
from indox_jupyter.store import Gallery  # noqa: E402


def noise_png(seed: str, side: int) -> bytes:
    rng = random.Random(seed)
    img = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def with_text_chunk(png: bytes, text: str) -> bytes:
    """``png`` with a tEXt chunk before IEND: still a valid PNG, different bytes."""
    payload = b"Comment\x00" + text.encode()
    chunk = struct.pack(">I", len(payload)) + b"tEXt" + payload
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + payload) & 0xFFFFFFFF)
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + chunk + png[iend:]


def die_at(point: str) -> None:
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        if point == "before-rename":
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)
        if point == "after-rename":
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("home")
    parser.add_argument("tag")
    parser.add_argument("count", type=int)
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--die-at", choices=["before-rename", "after-rename"])
    args = parser.parse_args()
    base = noise_png(args.tag, args.side)
    gallery = Gallery(args.home)
    if args.die_at:
        die_at(args.die_at)
    i = 0
    while args.count == 0 or i < args.count:
        data = with_text_chunk(base, f"{args.tag} {i}")
        result = ImageResult(
            {"created": 1, "data": [{"b64_json": base64.b64encode(data).decode(), "index": 0,
                                     "revised_prompt": f"revised {args.tag} {i}"}],
             "usage": {"cost": 0.04}, "request_id": f"{args.tag}-{i}"},
            model="openai/dall-e-3", prompt=f"{args.tag} image {i}", params={"size": "256x256"},
        )
        stored = gallery.add(result, source="batch")
        assert len(stored) == 1 and not stored.failed, stored.failed
        print(f"stored {args.tag} {i} {stored[0].sha256}", flush=True)
        i += 1


if __name__ == "__main__":
    main()
