"""What the gallery costs on disk per image: ``python tests/helpers/measure_store_bytes.py [N]``.

Stores N (default 200) distinct 1024x1024 PNGs with a DALL-E-3-sized prompt and revised prompt in
a fresh gallery, checkpoints the WAL, and prints the image file size, the file's allocated size,
and the database's growth per row.
"""

from __future__ import annotations

import io
import math
import os
import random
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from PIL import Image  # noqa: E402

from indox_jupyter._models import GeneratedImage, ImageResult  # noqa: E402
from indox_jupyter.store import DB_NAME, Gallery  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from store_writer import with_text_chunk  # type: ignore[import-not-found]  # noqa: E402


def picture(seed: int) -> bytes:
    """A smooth gradient with light noise: closer to a generated picture than flat colour."""
    rng = random.Random(seed)
    small = Image.new("RGB", (64, 64))
    small.putdata([(int(128 + 100 * math.sin((x + seed) / 9)), int(4 * y), rng.randrange(256))
                   for y in range(64) for x in range(64)])
    img = small.resize((1024, 1024), Image.BICUBIC)
    noise = Image.effect_noise((1024, 1024), 12).convert("RGB")
    img = Image.blend(img, noise, 0.08)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    prompt = "A watercolor painting of a lighthouse on a cliff at dusk, gulls, warm light"
    revised = ("A delicate watercolor painting depicting a tall white lighthouse perched on a rugged "
               "cliff at dusk. Seagulls glide through a sky washed in warm oranges and soft purples, "
               "while waves crash gently against the rocks below, rendered in loose, translucent "
               "brushstrokes.")
    with tempfile.TemporaryDirectory() as home:
        gallery = Gallery(home)
        base = picture(0)
        file_bytes = allocated = 0
        for i in range(count):
            data = with_text_chunk(base, f"image {i}")  # distinct bytes, same picture size
            result = ImageResult({"created": 1, "data": [{"revised_prompt": revised, "index": 0}],
                                  "usage": {"cost": 0.04}, "request_id": f"req-{i:08d}-abcdef"},
                                 model="openai/dall-e-3", prompt=prompt,
                                 params={"size": "1024x1024", "n": 1, "quality": "standard", "style": "vivid"})
            result.images = [GeneratedImage.from_bytes(data, revised_prompt=revised)]
            (entry,) = gallery.add(result, source="magic")
            stat = entry.path.stat()
            file_bytes += stat.st_size
            allocated += stat.st_blocks * 512
        gallery.close()
        db = Path(home) / DB_NAME
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages, page_size = conn.execute("PRAGMA page_count").fetchone()[0], conn.execute("PRAGMA page_size").fetchone()[0]
        conn.close()
        db_size = db.stat().st_size
        dirs = len([p for p in (Path(home) / "images").iterdir()])
        print(f"{count} images of 1024x1024 PNG")
        print(f"image file: {file_bytes / count:,.0f} bytes on average ({allocated / count:,.0f} allocated)")
        print(f"database: {db_size:,} bytes total ({pages} pages of {page_size}) = {db_size / count:,.0f} bytes per row")
        print(f"shard folders: {dirs} (4 KiB each, at most 256 in all)")
        print(f"index overhead per image: {db_size / count:,.0f} bytes "
              f"= {100 * (db_size / count) / (file_bytes / count):.3f}% of the image")


if __name__ == "__main__":
    main()
