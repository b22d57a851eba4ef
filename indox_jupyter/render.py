"""Rich display of results: ImageResult -> standard mimebundle (``text/html`` + ``text/plain``).

Pure (no IPython, no I/O beyond reading the image bytes the result already holds), so the same
output appears in JupyterLab, Notebook 7, VS Code, Colab and nbconvert HTML. Rules kept here:

* every prompt, revised prompt, model name and error text is HTML-escaped;
* images are embedded as small ``data:`` previews (WebP, long side 768 by default), never the full
  PNG, so a saved notebook stays small; the originals stay on ``result.images[i].data``;
* provider URLs are never written out: they expire and may carry signed tokens;
* inline styles only, no ``<style>``/``<script>``: nothing leaks into the page around the output.
"""

from __future__ import annotations

import base64
import difflib
import html
import io
import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._models import GeneratedImage, ImageModel, ImageResult

__all__ = [
    "DEFAULT_PREVIEW",
    "ModelsTable",
    "PreviewOptions",
    "UsageView",
    "encode_preview",
    "render_result",
    "result_mimebundle",
    "word_diff_html",
]

PreviewFormat = Literal["webp", "jpeg"]
_PIL_FORMAT = {"webp": "WEBP", "jpeg": "JPEG"}
_MUTED = "opacity:.72;font-size:12px"


@dataclass(frozen=True)
class PreviewOptions:
    """How big and how compressed the embedded previews are (``IndoxMagics`` traits feed this)."""

    max_side: int = 768
    format: PreviewFormat = "webp"
    quality: int = 70

    def __post_init__(self) -> None:
        if not 16 <= self.max_side <= 4096:
            raise ValueError(f"preview max_side must be between 16 and 4096 (got {self.max_side})")
        if self.format not in _PIL_FORMAT:
            raise ValueError(f"preview format must be 'webp' or 'jpeg' (got {self.format!r})")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"preview quality must be between 1 and 100 (got {self.quality})")

    @property
    def mime_type(self) -> str:
        return f"image/{self.format}"


DEFAULT_PREVIEW = PreviewOptions()


@dataclass(frozen=True)
class Preview:
    data: bytes
    mime_type: str
    width: int
    height: int

    @property
    def data_uri(self) -> str:
        return f"data:{self.mime_type};base64,{base64.b64encode(self.data).decode('ascii')}"


# A result is often displayed more than once (Out[n], `_`, re-display); encode each image once.
_previews: weakref.WeakKeyDictionary[Any, dict[PreviewOptions, Preview]] = weakref.WeakKeyDictionary()


def encode_preview(data: bytes, options: PreviewOptions = DEFAULT_PREVIEW) -> Preview:
    """Downscale (never upscale) and compress image bytes for embedding."""
    from PIL import Image  # heavy; only needed once something is displayed

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
        keep_alpha = has_alpha and options.format == "webp"
        frame = img.convert("RGBA" if keep_alpha else "RGB")
    frame.thumbnail((options.max_side, options.max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if options.format == "webp":
        frame.save(out, "WEBP", quality=options.quality, method=6)
    else:
        frame.save(out, "JPEG", quality=options.quality, optimize=True, progressive=True)
    return Preview(out.getvalue(), options.mime_type, frame.width, frame.height)


def _preview(image: GeneratedImage, options: PreviewOptions) -> Preview:
    cached = _previews.setdefault(image, {})
    if options not in cached:
        cached[options] = encode_preview(image.data, options)
    return cached[options]


# ---------------------------------------------------------------------------------------------
# The revised-prompt diff

_WORD = re.compile(r"\S+")


def _norm(word: str) -> str:
    return re.sub(r"^\W+|\W+$", "", word.lower()) or word.lower()


def word_diff_html(original: str | None, revised: str) -> str:
    """``revised`` escaped, with the words the provider added or changed wrapped in ``<mark>``.

    Matching ignores case and surrounding punctuation, so "dusk." still matches "dusk".
    """
    words = _WORD.findall(revised)
    if not original:
        return html.escape(" ".join(words))
    base = [_norm(w) for w in _WORD.findall(original)]
    matcher = difflib.SequenceMatcher(a=base, b=[_norm(w) for w in words], autojunk=False)
    parts: list[str] = []
    for tag, _, _, j1, j2 in matcher.get_opcodes():
        chunk = html.escape(" ".join(words[j1:j2]))
        if not chunk:
            continue
        if tag in ("insert", "replace"):
            parts.append(f"<mark>{chunk}</mark>")
        else:
            parts.append(chunk)
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# The result grid


def _money(value: float | None) -> str:
    if value is None:
        return "cost unknown"
    return f"${value:.3f}" if value == 0 or abs(value) >= 0.001 else f"${value:.5f}"


def _sizes(result: ImageResult) -> str:
    found = []
    for img in result.images:
        try:
            text = f"{img.width}x{img.height}"
        except Exception:
            continue
        if text not in found:
            found.append(text)
    if found:
        return ", ".join(found)
    size = result.params.get("size") or result.params.get("aspect_ratio")
    return str(size) if size else "size unknown"


def _settings(result: ImageResult) -> list[str]:
    """Options worth showing next to the model (never secrets: params are already stripped)."""
    shown = []
    for key in ("quality", "style", "aspect_ratio", "seed", "negative_prompt"):
        value = result.params.get(key)
        if value is not None:
            shown.append(f"{key.replace('_', ' ')} {value}")
    return shown


def _tile(result: ImageResult, image: GeneratedImage, options: PreviewOptions) -> str:
    caption = image.revised_prompt
    try:
        preview = _preview(image, options)
    except Exception as exc:  # a display must never raise; say what went wrong instead
        reason = html.escape(f"{type(exc).__name__}: {exc}")
        picture = (f'<div style="padding:24px;border:1px dashed rgba(128,128,128,.6);border-radius:6px;'
                   f'{_MUTED}">image {image.index} could not be shown ({reason})</div>')
        dims = ""
    else:
        alt = html.escape(caption or result.prompt or f"image {image.index}", quote=True)
        picture = (f'<img src="{preview.data_uri}" alt="{alt}" width="{preview.width}" '
                   f'height="{preview.height}" style="max-width:100%;height:auto;display:block;'
                   f'border-radius:6px" loading="lazy">')
        dims = f" · {image.width}x{image.height}"
    if caption:
        text = word_diff_html(result.prompt, caption)
        label = "revised prompt"
    else:
        text, label = "", "no revised prompt"
    return (
        '<figure style="margin:0;display:flex;flex-direction:column;gap:6px">'
        f"{picture}"
        '<figcaption style="font-size:13px;line-height:1.4">'
        f'<div style="{_MUTED}">#{image.index}{dims} · {label}</div>{text}</figcaption></figure>'
    )


def render_result(
    result: ImageResult, options: PreviewOptions = DEFAULT_PREVIEW
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data, metadata)`` for IPython: an escaped HTML grid and a plain-text summary."""
    count = len(result.images)
    columns = 1 if count == 1 else 2 if count in (2, 4) else 3
    width = 480 if count == 1 else 300 * columns
    model = html.escape(result.model or "unknown model")
    header = ""
    if result.prompt:
        header = (f'<div style="margin-bottom:10px"><span style="{_MUTED}">prompt</span><br>'
                  f'<span style="font-size:14px">{html.escape(result.prompt)}</span></div>')
    tiles = "".join(_tile(result, img, options) for img in result.images)
    cost = result.cost
    each = f" ({_money(cost / count)} each)" if cost and count > 1 else ""
    facts = [f"<b>{model}</b>", f"{count} image{'s' if count != 1 else ''}", html.escape(_sizes(result))]
    facts += [html.escape(s) for s in _settings(result)]
    facts.append(f"total {html.escape(_money(cost))}{html.escape(each)}")
    has_revision = any(img.revised_prompt for img in result.images)
    legend = (" · <mark>marked</mark> words were added or changed by the provider"
              if has_revision and result.prompt else "")
    body = (
        f'<div class="indox-result" style="max-width:{width}px;font-family:system-ui,-apple-system,'
        f'Segoe UI,sans-serif;color:inherit">{header}'
        f'<div style="display:grid;grid-template-columns:repeat({columns},minmax(0,1fr));gap:14px">'
        f"{tiles}</div>"
        f'<div style="margin-top:10px;{_MUTED}">{" · ".join(facts)}{legend}</div></div>'
    )
    metadata = {"indox_jupyter": {"model": result.model, "prompt": result.prompt,
                                  "request_id": result.request_id}}
    return {"text/html": body, "text/plain": plain_summary(result)}, metadata


def plain_summary(result: ImageResult) -> str:
    """What a terminal, a log or a text-only front end shows."""
    count = len(result.images)
    lines = [f"{result.model or 'unknown model'} · {count} image{'s' if count != 1 else ''} · "
             f"{_sizes(result)} · {_money(result.cost)}"]
    if result.prompt:
        lines.append(f"prompt: {result.prompt}")
    for img in result.images:
        if img.revised_prompt:
            lines.append(f"[{img.index}] revised: {img.revised_prompt}")
    return "\n".join(lines)


def result_mimebundle(result: ImageResult) -> dict[str, Any]:
    """The hook ``ImageResult._repr_mimebundle_`` calls (default preview options)."""
    return render_result(result)[0]


# ---------------------------------------------------------------------------------------------
# Small tables for %indox_models and %indox_usage

_TABLE = "border-collapse:collapse;font-size:13px;font-family:system-ui,sans-serif"
_CELL = "padding:3px 10px;border-bottom:1px solid rgba(128,128,128,.3);text-align:left"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], note: str | None) -> str:
    head = "".join(f'<th style="{_CELL}">{html.escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_CELL}">{html.escape(str(c))}</td>' for c in row) + "</tr>"
        for row in rows
    )
    foot = f'<div style="{_MUTED};margin-top:6px">{html.escape(note)}</div>' if note else ""
    return f'<div><table style="{_TABLE}"><tr>{head}</tr>{body}</table>{foot}</div>'


def _plain_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], note: str | None) -> str:
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    if note:
        lines.append(note)
    return "\n".join(lines)


class ModelsTable:
    """What ``%indox_models`` returns: the image models, one row each."""

    headers = ("model", "sizes / aspect ratios", "qualities", "styles", "max n", "$/image")

    def __init__(self, models: Sequence[ImageModel], note: str | None = None) -> None:
        self.models = list(models)
        self.note = note

    def rows(self) -> list[tuple[str, ...]]:
        return [
            (m.id, ", ".join(m.sizes or m.aspect_ratios) or "-", ", ".join(m.qualities) or "-",
             ", ".join(m.styles) or "-", str(m.max_n or "-"),
             f"{m.price:.3f}" if m.price is not None else "-")
            for m in self.models
        ]

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        rows = self.rows()
        return {"text/html": _table(self.headers, rows, self.note),
                "text/plain": _plain_table(self.headers, rows, self.note)}

    def __repr__(self) -> str:
        return _plain_table(self.headers, self.rows(), self.note)


class UsageView:
    """What ``%indox_usage`` returns: the account's figures and this session's spend."""

    def __init__(self, usage: Mapping[str, Any], session_cost: float, session_images: int,
                 note: str | None = None) -> None:
        self.usage = dict(usage)
        self.session_cost = session_cost
        self.session_images = session_images
        self.note = note

    def rows(self) -> list[tuple[str, str]]:
        rows = [(str(k).replace("_", " "), _short_value(v)) for k, v in self.usage.items()
                if not isinstance(v, (Mapping, list))]
        rows.append(("this session", f"{_money(self.session_cost)} for {self.session_images} image(s)"))
        return rows

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        rows = self.rows()
        return {"text/html": _table(("", "value"), rows, self.note),
                "text/plain": _plain_table(("", "value"), rows, self.note)}

    def __repr__(self) -> str:
        return _plain_table(("", "value"), self.rows(), self.note)


def _short_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    return str(value)[:80]
