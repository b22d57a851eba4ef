"""Deterministic placeholder images for the local server.

The same (prompt, seed, index, width, height) always gives the same PNG bytes, so tests can
compare images and caches can be checked. Colours and layout depend only on (prompt, seed,
index), so one prompt looks alike at every size. Drawing is done at low resolution where it
is expensive (blur) and scaled up, keeping a 1024x1024 image well under 100 ms.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import math
import random
import unicodedata

from PIL import Image, ImageDraw, ImageFilter, ImageFont

MAX_SIDE = 4096
_MAX_TEXT = 280


def _rng(prompt: str, seed: int, index: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{index}\x00{prompt}".encode("utf-8", "replace")).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def _colour(h: float, s: float, v: float, alpha: int | None = None) -> tuple[int, ...]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    rgb = (int(r * 255), int(g * 255), int(b * 255))
    return rgb if alpha is None else (*rgb, alpha)


def _clean_text(prompt: str) -> str:
    """Printable one-line text: the prompt is untrusted, so drop control/format characters."""
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in prompt)
    text = " ".join(text.split())
    if len(text) > _MAX_TEXT:
        text = text[: _MAX_TEXT - 1].rstrip() + "\u2026"
    return text


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # Pillow built without FreeType: fixed-size bitmap font.
        return ImageFont.load_default()


def _wrap(text: str, font: ImageFont.ImageFont, draw: ImageDraw.ImageDraw, width: int) -> list[str]:
    """Greedy word wrap by measured width; over-long words are split by characters."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if draw.textlength(candidate, font=font) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for ch in word:
            if draw.textlength(line + ch, font=font) > width and line:
                lines.append(line)
                line = ""
            line += ch
    if line:
        lines.append(line)
    return lines


def _gradient(rng: random.Random, size: tuple[int, int], top: tuple[int, ...],
              bottom: tuple[int, ...]) -> Image.Image:
    """A smooth two-colour ramp at a random angle, computed on a tiny grid and scaled up."""
    angle = rng.uniform(0, 2 * math.pi)
    cx, cy = math.cos(angle), math.sin(angle)
    n = 32
    span = abs(cx) + abs(cy)
    mask = Image.new("L", (n, n))
    mask.putdata([
        int(255 * (((x / (n - 1) - 0.5) * cx + (y / (n - 1) - 0.5) * cy) / span + 0.5))
        for y in range(n) for x in range(n)
    ])
    mask = mask.resize(size, Image.Resampling.BILINEAR)
    return Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), mask)


def render(prompt: str, seed: int, index: int, width: int, height: int) -> Image.Image:
    """Draw the image: gradient background, soft circles, the prompt on a translucent band.

    The background is composed and blurred at quarter size and scaled up once: it is all
    smooth, so nothing is lost, and it keeps full-size work to a single resize.
    """
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ValueError(f"image size out of range: {width}x{height}")
    rng = _rng(prompt, seed, index)
    hue = rng.random()
    top = _colour(hue, rng.uniform(0.45, 0.7), rng.uniform(0.8, 0.95))
    bottom = _colour(hue + rng.uniform(0.2, 0.45), rng.uniform(0.5, 0.8), rng.uniform(0.35, 0.6))
    sw, sh = max(1, width // 4), max(1, height // 4)
    small = _gradient(rng, (sw, sh), top, bottom).convert("RGBA")
    unit = min(sw, sh)
    for _ in range(rng.randint(4, 7)):
        layer = Image.new("RGBA", (sw, sh), (0, 0, 0, 0))
        r = rng.uniform(0.08, 0.3) * unit
        x, y = rng.uniform(0, sw), rng.uniform(0, sh)
        colour = _colour(hue + rng.uniform(-0.15, 0.6), rng.uniform(0.3, 0.8), rng.uniform(0.7, 1.0),
                         rng.randint(70, 150))
        ImageDraw.Draw(layer).ellipse((x - r, y - r, x + r, y + r), fill=colour)
        small.alpha_composite(layer)
    small = small.convert("RGB").filter(ImageFilter.GaussianBlur(max(1.0, unit / 40)))
    img = small.resize((width, height), Image.Resampling.BILINEAR)

    text = _clean_text(prompt)
    if text and width >= 32 and height >= 32:
        _draw_caption(img, text)
    return img


def _draw_caption(img: Image.Image, text: str) -> None:
    """Write the wrapped prompt on a dark translucent band at the bottom (in place)."""
    width, height = img.size
    font = _font(max(10, min(width, height) // 28))
    measure = ImageDraw.Draw(img)
    margin = max(6, width // 32)
    lines = _wrap(text, font, measure, width - 2 * margin)
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (11, 3)
    line_h = ascent + descent + 2
    max_lines = max(1, int(height * 0.3) // line_h)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1].rstrip()[:-1] + "\u2026" if len(lines[-1]) > 1 else "\u2026"
    band_h = min(height, len(lines) * line_h + 2 * margin)
    box = (0, height - band_h, width, height)
    region = img.crop(box).convert("RGBA")
    overlay = Image.new("RGBA", region.size, (0, 0, 0, 110))
    d = ImageDraw.Draw(overlay)
    y = margin
    for line in lines:
        d.text((margin, y), line, font=font, fill=(255, 255, 255, 235))
        y += line_h
    region.alpha_composite(overlay)
    img.paste(region.convert("RGB"), box)


@functools.lru_cache(maxsize=64)
def render_png(prompt: str, seed: int, index: int, width: int, height: int) -> bytes:
    """PNG bytes of `render(...)`; cached because retries and replays ask for the same image."""
    buf = io.BytesIO()
    render(prompt, seed, index, width, height).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
