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

from ._core import one_line  # the same one-line shortening as the client's errors

if TYPE_CHECKING:
    from ._models import GeneratedImage, ImageModel, ImageResult

# Jupyter front ends run MathJax over HTML output: "$0.036 ($0.018 each)" or a prompt with two
# dollar signs would be typeset as maths. These classes tell MathJax 2 and 3 to leave it alone.
_NO_MATH = "tex2jax_ignore mathjax_ignore"

__all__ = [
    "DEFAULT_PREVIEW",
    "FROM_GALLERY",
    "HistoryView",
    "ImageGrid",
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
_BADGE = ("display:inline-block;padding:2px 8px;margin-bottom:8px;border-radius:10px;font-size:12px;"
          "background:rgba(46,160,67,.15);border:1px solid rgba(46,160,67,.5)")

#: The mark on a result served from the gallery (shown in HTML and plain text).
FROM_GALLERY = "from gallery: no request, no cost"


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


def money(value: float | None) -> str:
    """Dollars as every surface shows them (magic, panel, history, budget messages)."""
    if value is None:
        return "cost unknown"
    return f"${value:.3f}" if value == 0 or abs(value) >= 0.001 else f"${value:.5f}"


def error_line(exc: BaseException, secrets: Iterable[str | None] = (), limit: int = 300) -> str:
    """``Type: message`` on one line with credentials removed: how every surface shows an error."""
    from ._redact import redact

    text = " ".join(redact(str(exc), secrets).split()) or "no details"
    return one_line(f"{type(exc).__name__}: {text}", limit)


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
    mark = gallery_note(result)
    if mark:
        header = f'<div class="indox-from-gallery" style="{_BADGE}">{html.escape(mark)}</div>{header}'
    tiles = "".join(_tile(result, img, options) for img in result.images)
    cost = result.cost
    each = f" ({money(cost / count)} each)" if cost and count > 1 else ""
    facts = [f"<b>{model}</b>", f"{count} image{'s' if count != 1 else ''}", html.escape(_sizes(result))]
    facts += [html.escape(s) for s in _settings(result)]
    if mark:
        facts.append("no cost now")
    else:
        facts.append(f"total {html.escape(money(cost))}{html.escape(each)}")
    has_revision = any(img.revised_prompt for img in result.images)
    legend = (" · <mark>marked</mark> words were added or changed by the provider"
              if has_revision and result.prompt else "")
    body = (
        f'<div class="indox-result {_NO_MATH}" style="max-width:{width}px;font-family:system-ui,-apple-system,'
        f'Segoe UI,sans-serif;color:inherit">{header}'
        f'<div style="display:grid;grid-template-columns:repeat({columns},minmax(0,1fr));gap:14px">'
        f"{tiles}</div>"
        f'<div style="margin-top:10px;{_MUTED}">{" · ".join(facts)}{legend}</div></div>'
    )
    metadata: dict[str, Any] = {"indox_jupyter": {"model": result.model, "prompt": result.prompt,
                                                  "request_id": result.request_id}}
    if mark:
        metadata["indox_jupyter"]["from_gallery"] = True
    return {"text/html": body, "text/plain": plain_summary(result)}, metadata


def gallery_note(result: ImageResult) -> str | None:
    """The "from gallery" mark for a result served from disk (with what it first cost), else None."""
    if not getattr(result, "from_gallery", False):
        return None
    paid = getattr(result, "original_cost", None)
    created = result.created
    when = f" on {created:%Y-%m-%d %H:%M} UTC" if created else ""
    first = f" (first paid {money(paid)}{when})" if paid is not None else (
        f" (first made{when})" if when else "")
    return f"{FROM_GALLERY}{first}"


def plain_summary(result: ImageResult) -> str:
    """What a terminal, a log or a text-only front end shows."""
    count = len(result.images)
    lines = [f"{result.model or 'unknown model'} · {count} image{'s' if count != 1 else ''} · "
             f"{_sizes(result)} · {money(result.cost)}"]
    mark = gallery_note(result)
    if mark:
        lines.insert(0, mark)
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
    return f'<div class="{_NO_MATH}"><table style="{_TABLE}"><tr>{head}</tr>{body}</table>{foot}</div>'


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
                 note: str | None = None, *, store_total: float | None = None,
                 store_images: int | None = None, budget: float | None = None,
                 gallery_hits: int = 0) -> None:
        self.usage = dict(usage)
        self.session_cost = session_cost
        self.session_images = session_images
        self.note = note
        self.store_total = store_total
        self.store_images = store_images
        self.budget = budget
        self.gallery_hits = gallery_hits

    def rows(self) -> list[tuple[str, str]]:
        rows = [(str(k).replace("_", " "), _short_value(v)) for k, v in self.usage.items()
                if not isinstance(v, (Mapping, list))]
        rows.append(("this session", f"{money(self.session_cost)} for {self.session_images} image(s)"))
        if self.gallery_hits:
            rows.append(("served from gallery", f"{self.gallery_hits} cell result(s), no request, no cost"))
        if self.budget is not None:
            left = max(self.budget - self.session_cost, 0.0)
            rows.append(("session budget", f"{money(self.budget)} ({money(left)} left)"))
        if self.store_total is not None:
            count = f" for {self.store_images} image(s)" if self.store_images is not None else ""
            rows.append(("gallery total (all sessions)", f"{money(self.store_total)}{count}"))
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


# ---------------------------------------------------------------------------------------------
# Grids of several prompts and/or models (%%indox_image --each, -m a/x,b/y)


class ImageGrid(list):  # list[ImageResult | Exception], row-major: prompts x models
    """Results of one ``--each`` / several-models cell: a row per prompt, a column per model.

    It is a list of outcomes in row-major order (an :class:`ImageResult`, or the exception for
    that cell), so ``-o NAME`` gives every result; :meth:`cell` and :attr:`results` help.
    ``errors`` holds the one-line text shown for each failed cell (already redacted by the caller).
    """

    def __init__(self, prompts: Sequence[str], models: Sequence[str], outcomes: Sequence[Any], *,
                 seconds: Sequence[float | None] | None = None,
                 errors: Mapping[int, str] | None = None,
                 options: PreviewOptions | None = None, note: str | None = None) -> None:
        if len(outcomes) != len(prompts) * len(models):
            raise ValueError(f"{len(prompts)} prompts x {len(models)} models need "
                             f"{len(prompts) * len(models)} outcomes (got {len(outcomes)})")
        super().__init__(outcomes)
        self.prompts: list[str] = list(prompts)
        self.models: list[str] = list(models)
        self.seconds: list[float | None] = list(seconds) if seconds is not None else [None] * len(self)
        self.errors: dict[int, str] = dict(errors or {})
        self.options = options or GRID_PREVIEW
        self.note = note

    def cell(self, row: int, column: int = 0) -> Any:
        """The outcome for prompt ``row`` and model ``column``."""
        if not (0 <= row < len(self.prompts) and 0 <= column < len(self.models)):
            raise IndexError(f"no cell ({row}, {column}) in a {len(self.prompts)}x{len(self.models)} grid")
        return self[row * len(self.models) + column]

    @property
    def results(self) -> list[ImageResult]:
        """The cells that hold images, in grid order."""
        from ._models import ImageResult

        return [o for o in self if isinstance(o, ImageResult)]

    @property
    def failed(self) -> list[tuple[int, int, Any]]:
        """``(row, column, exception)`` of every failed cell."""
        width = len(self.models)
        return [(i // width, i % width, o) for i, o in enumerate(self) if isinstance(o, BaseException)]

    @property
    def cost(self) -> float:
        """USD paid for this grid now (cells served from the gallery cost nothing)."""
        return sum((r.cost or 0.0) for r in self.results)

    def error_text(self, index: int) -> str:
        if index in self.errors:
            return one_line(self.errors[index])
        outcome = self[index]
        return one_line(f"{type(outcome).__name__}: {outcome}")

    def __repr__(self) -> str:
        return plain_grid(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return render_grid(self)[0]


GRID_PREVIEW = PreviewOptions(max_side=384)


def _grid_cell(grid: ImageGrid, index: int, options: PreviewOptions) -> str:
    from ._models import ImageResult

    outcome = grid[index]
    prompt = grid.prompts[index // len(grid.models)]
    model = grid.models[index % len(grid.models)]
    style = "display:flex;flex-direction:column;gap:6px;min-width:0"
    if not isinstance(outcome, ImageResult):
        message = html.escape(grid.error_text(index))
        return (f'<div class="indox-cell indox-error" style="{style}"><div style="padding:16px;border:1px '
                f'dashed rgba(220,50,50,.7);border-radius:6px;font-size:12px">{message}</div>'
                f'<div style="{_MUTED}"><b>{html.escape(model)}</b> · failed</div></div>')
    pictures = []
    for image in outcome.images:
        try:
            preview = _preview(image, options)
        except Exception as exc:
            reason = html.escape(one_line(f"{type(exc).__name__}: {exc}"))
            pictures.append(f'<div style="padding:12px;{_MUTED}">image {image.index} could not be shown '
                            f"({reason})</div>")
            continue
        alt = html.escape(image.revised_prompt or prompt, quote=True)
        pictures.append(f'<img src="{preview.data_uri}" alt="{alt}" width="{preview.width}" '
                        f'height="{preview.height}" style="max-width:100%;height:auto;display:block;'
                        f'border-radius:6px" loading="lazy">')
    revised = next((img.revised_prompt for img in outcome.images if img.revised_prompt), None)
    facts = [f"<b>{html.escape(outcome.model or model)}</b>"]
    mark = gallery_note(outcome)
    if mark:
        facts.append(html.escape(FROM_GALLERY))
    else:
        facts.append(html.escape(money(outcome.cost)))
        seconds = grid.seconds[index]
        if seconds is not None:
            facts.append(f"{seconds:.1f} s")
    caption = (f'<div style="font-size:12px;line-height:1.4">{word_diff_html(prompt, revised)}</div>'
               if revised else f'<div style="{_MUTED}">no revised prompt</div>')
    badge = ' indox-from-gallery' if mark else ''
    return (f'<div class="indox-cell{badge}" style="{style}">{"".join(pictures)}'
            f'<div style="{_MUTED}">{" · ".join(facts)}</div>{caption}</div>')


def render_grid(grid: ImageGrid, options: PreviewOptions | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data, metadata)``: one HTML grid, a row per prompt and a column per model, escaped."""
    options = options or grid.options
    columns = len(grid.models)
    width = min(260 * columns + 180, 1400)
    head = "".join(f'<div style="font-weight:600;font-size:13px">{html.escape(m)}</div>' for m in grid.models)
    rows = []
    for r, prompt in enumerate(grid.prompts):
        cells = "".join(_grid_cell(grid, r * columns + c, options) for c in range(columns))
        rows.append(f'<div class="indox-row-prompt" style="font-size:13px;line-height:1.4;'
                    f'word-break:break-word">{html.escape(prompt)}</div>{cells}')
    hits = sum(1 for o in grid if getattr(o, "from_gallery", False))
    facts = [f"{len(grid.prompts)} prompt{'s' if len(grid.prompts) != 1 else ''} x {columns} "
             f"model{'s' if columns != 1 else ''}", f"paid now {money(grid.cost)}"]
    if hits:
        facts.append(f"{hits} from gallery (no request, no cost)")
    if grid.failed:
        facts.append(f"{len(grid.failed)} failed")
    if grid.note:
        facts.append(grid.note)
    body = (
        f'<div class="indox-grid {_NO_MATH}" style="max-width:{width}px;font-family:system-ui,-apple-system,'
        f'Segoe UI,sans-serif;color:inherit"><div style="display:grid;grid-template-columns:'
        f'minmax(120px,180px) repeat({columns},minmax(0,1fr));gap:12px;align-items:start">'
        f"<div></div>{head}{''.join(rows)}</div>"
        f'<div style="margin-top:10px;{_MUTED}">{html.escape(" · ".join(facts))}</div></div>'
    )
    metadata = {"indox_jupyter": {"prompts": list(grid.prompts), "models": list(grid.models),
                                  "failed": len(grid.failed), "from_gallery": hits}}
    return {"text/html": body, "text/plain": plain_grid(grid)}, metadata


def plain_grid(grid: ImageGrid) -> str:
    from ._models import ImageResult

    lines = [f"ImageGrid: {len(grid.prompts)} prompt(s) x {len(grid.models)} model(s) · "
             f"paid now {money(grid.cost)}"]
    for index, outcome in enumerate(grid):
        prompt = grid.prompts[index // len(grid.models)]
        model = grid.models[index % len(grid.models)]
        if isinstance(outcome, ImageResult):
            how = FROM_GALLERY if getattr(outcome, "from_gallery", False) else money(outcome.cost)
            seconds = grid.seconds[index]
            took = f" · {seconds:.1f} s" if seconds is not None and not outcome.from_gallery else ""
            detail = f"{len(outcome.images)} image(s) · {how}{took}"
        else:
            detail = f"failed: {grid.error_text(index)}"
        lines.append(f"[{one_line(prompt, 80)}] {model}: {detail}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# %indox_history

THUMB_PREVIEW = PreviewOptions(max_side=160, quality=65)


class HistoryView:
    """What ``%indox_history`` returns: stored images (gallery entries), newest first."""

    def __init__(self, entries: Sequence[Any], note: str | None = None,
                 options: PreviewOptions = THUMB_PREVIEW) -> None:
        self.entries = list(entries)
        self.note = note
        self.options = options

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Any:
        return self.entries[index]

    def __iter__(self) -> Any:
        return iter(self.entries)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return render_history(self.entries, self.note, self.options)

    def __repr__(self) -> str:
        return plain_history(self.entries, self.note)


def _entry_thumb(entry: Any, options: PreviewOptions) -> str:
    try:
        preview = encode_preview(entry.data, options)
    except Exception as exc:  # missing or corrupt file: say so, never raise from a display
        reason = html.escape(one_line(str(exc) or type(exc).__name__, 200))
        return (f'<div style="width:{options.max_side}px;padding:8px;border:1px dashed rgba(220,50,50,.7);'
                f'border-radius:6px;font-size:11px">file unavailable: {reason}</div>')
    alt = html.escape(entry.prompt or "stored image", quote=True)
    return (f'<img src="{preview.data_uri}" alt="{alt}" width="{preview.width}" height="{preview.height}" '
            f'style="display:block;border-radius:4px" loading="lazy">')


def _when(entry: Any) -> str:
    created = getattr(entry, "created", None)
    return f"{created:%Y-%m-%d %H:%M} UTC" if created else "date unknown"


def render_history(entries: Sequence[Any], note: str | None = None,
                   options: PreviewOptions = THUMB_PREVIEW) -> dict[str, str]:
    """Gallery entries -> ``text/html`` (thumbnails read from disk) + ``text/plain``; escaped."""
    if not entries:
        text = note or "no stored images match"
        return {"text/html": f'<div style="{_MUTED}">{html.escape(text)}</div>', "text/plain": text}
    cards = []
    for entry in entries:
        revised = (f'<div style="font-size:12px"><span style="{_MUTED}">revised</span> '
                   f"{word_diff_html(entry.prompt, entry.revised_prompt)}</div>"
                   if entry.revised_prompt else "")
        size = f" · {entry.width}x{entry.height}" if entry.width and entry.height else ""
        cards.append(
            '<div class="indox-history-entry" style="display:flex;gap:12px;align-items:flex-start;'
            'padding:6px 0;border-bottom:1px solid rgba(128,128,128,.25)">'
            f"{_entry_thumb(entry, options)}"
            '<div style="min-width:0;font-size:13px;line-height:1.4">'
            f'<div>{html.escape(entry.prompt or "(no prompt)")}</div>{revised}'
            f'<div style="{_MUTED}"><b>{html.escape(entry.model or "unknown model")}</b> · '
            f"{html.escape(money(entry.cost))} · {html.escape(_when(entry))}{html.escape(size)}</div>"
            "</div></div>"
        )
    foot = f'<div style="{_MUTED};margin-top:6px">{html.escape(note)}</div>' if note else ""
    body = (f'<div class="indox-history {_NO_MATH}" style="font-family:system-ui,sans-serif;max-width:760px">'
            f'{"".join(cards)}{foot}</div>')
    return {"text/html": body, "text/plain": plain_history(entries, note)}


def plain_history(entries: Sequence[Any], note: str | None = None) -> str:
    lines = []
    for entry in entries:
        lines.append(f"{_when(entry)} · {entry.model or 'unknown model'} · {money(entry.cost)} · "
                     f"{one_line(entry.prompt or '(no prompt)', 120)}")
        if entry.revised_prompt:
            lines.append(f"    revised: {one_line(entry.revised_prompt, 160)}")
    if note:
        lines.append(note)
    return "\n".join(lines) or "no stored images match"
