"""The interactive panel: ``indox_jupyter.panel()`` / ``%indox_panel``.

A small ipywidgets 8 app over the same :class:`~indox_jupyter.Client` the magic uses, so there is
no second code path to the router. Design points, each with its reason:

* **The kernel stays free.** A click starts the request on a daemon thread and returns at once;
  ipywidgets 8 sends widget updates from any thread, so the panel can report progress while the
  user runs other cells.
* **No double charge.** Generate is disabled while a request is in flight. Cancel only stops
  *waiting* (an HTTP request cannot be taken back): an image that still arrives was paid for, so
  it is kept in the gallery and shown, marked "arrived after Cancel".
* **No secret in the notebook.** Every widget value is synced into the notebook's saved widget
  state, a ``Password`` widget's too. The BYOK box therefore hands its value to kernel memory and
  clears itself as soon as the value reaches the kernel (it only syncs on Enter or blur).
* **No traceback in the log.** Every callback is guarded: errors become one line in the status
  area; an unexpected bug also leaves its traceback in a collapsed "Details" box of the panel.
* **Compare models side by side.** "Compare with" (under Advanced) sends the same prompt to the
  main model and each selected model at once (``batch.images_many``), one column per model. Each
  model gets only the options it takes; where the chosen value does not apply it gets its own
  default, and the status line says so. One model failing shows its error in its column only.
* **Standard widgets only**, no custom JavaScript: works in JupyterLab 4, Notebook 7, VS Code and
  Colab. Previews are compressed WebP (``render.encode_preview``), never the full PNG.
"""

from __future__ import annotations

import hashlib
import html
import threading
import time
import traceback
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from . import errors
from ._core import DEFAULT_MODEL, build_image_request
from ._models import GeneratedImage, ImageModel, ImageResult
from ._redact import redact
from .render import error_line, money

if TYPE_CHECKING:
    from ._client import Client
    from .store import Entry, Gallery

__all__ = ["FALLBACK_MODELS", "Panel", "panel"]

PANEL_WIDTH = "800px"
PREVIEW_SIDE = 384  # px of the compressed preview kept in widget state (shown at 192 px)
THUMB_SIDE = 160
THUMB_CACHE = 200  # History thumbnails kept in memory (least recently shown dropped first)
MAX_CARDS = 24  # session results kept in the panel; older ones stay in the History tab
HISTORY_LIMIT = 24
DEFAULT_SAVE_DIR = "indox_images"
TICK_SECONDS = 0.5
MODELS_TIMEOUT = 10.0  # s per request for the model list: a silent server must not freeze panel()
CLOSED_MESSAGE = "the connection was closed; open a new panel"

# Shown when the router's model list cannot be read (offline, no key yet): the public models'
# documented options, so the panel is still usable and still only offers valid combinations.
FALLBACK_MODELS: tuple[ImageModel, ...] = (
    ImageModel("openai/dall-e-3", "openai", "dall-e-3",
               sizes=("1024x1024", "1792x1024", "1024x1792"),
               qualities=("standard", "hd"), styles=("vivid", "natural"), max_n=1),
    ImageModel("openai/dall-e-2", "openai", "dall-e-2",
               sizes=("256x256", "512x512", "1024x1024"), max_n=10),
    ImageModel("openai/gpt-image-1", "openai", "gpt-image-1",
               sizes=("1024x1024", "1536x1024", "1024x1536", "auto"),
               qualities=("auto", "low", "medium", "high"), max_n=10),
    ImageModel("google/imagen-3.0-generate-002", "google", "imagen-3.0-generate-002",
               aspect_ratios=("1:1", "3:4", "4:3", "9:16", "16:9"), max_n=4,
               details={"supported_extras": ["negative_prompt", "seed"]}),
    ImageModel("stability/stable-diffusion-xl", "stability", "stable-diffusion-xl",
               sizes=("1024x1024", "1152x896", "896x1152", "1216x832", "832x1216", "512x512"),
               max_n=10, details={"supported_extras": ["negative_prompt", "seed"]}),
    ImageModel("xai/grok-2-image", "xai", "grok-2-image", sizes=("1024x768",), max_n=10),
)

_DEFAULT_NAMES = frozenset({
    "prompt", "model", "compare", "size", "aspect_ratio", "n", "quality", "style",
    "negative_prompt", "seed", "byok", "save_dir", "use_cache",
})
# The choosable options, each with the ImageModel field that lists what a model offers.
_CHOICES = (("size", "sizes"), ("aspect_ratio", "aspect_ratios"), ("quality", "qualities"),
            ("style", "styles"))
COMPARE_COLUMNS = 3  # columns of a comparison at the panel's 800 px; more models wrap


# ---------------------------------------------------------------------------------------------
# Small helpers (no widgets)


def _preview_bytes(data: bytes, side: int) -> bytes:
    """Compressed WebP preview, via the renderer's encoder so magic and panel look alike."""
    from .render import PreviewOptions, encode_preview

    return encode_preview(data, PreviewOptions(max_side=side, format="webp", quality=75)).data


def _default_client() -> tuple[Client, str | None]:
    """The magic's rule: the configured key / base URL, else (neither set) the local server."""
    import os

    from ._client import Client
    from ._core import API_KEY_ENV, BASE_URL_ENV

    if os.environ.get(API_KEY_ENV) or os.environ.get(BASE_URL_ENV):
        return Client(), None
    note = (f"No API key or base URL set ({API_KEY_ENV}): the built-in local server answers "
            "with sample images at no cost.")
    return Client(base_url="local"), note


def _list_models(client: Client) -> list[Any]:
    """The router's model list, asked with a short timeout and no retries.

    The panel's own client waits up to 600 s (image generation is slow); a server that accepts
    the connection but never answers would freeze ``panel()`` that long. A throwaway client with
    the same key and base URL does the listing and is closed at once.
    """
    from ._client import Client

    core = getattr(client, "_core", None)
    if not isinstance(client, Client) or core is None:
        return list(client.models())
    with Client(core.api_key, base_url=client.base_url, timeout=MODELS_TIMEOUT, max_retries=0) as quick:
        return quick.models()


def _gallery_or_none() -> Gallery | None:
    try:
        from .store import default_gallery
    except ImportError:  # the gallery is optional for the panel; it works without one
        return None
    return default_gallery()


def _preselected(model: ImageModel, name: str) -> str | None:
    """What the panel pre-selects for option ``name`` of ``model`` (see ``Panel._on_model``)."""
    values = tuple(getattr(model, dict(_CHOICES)[name]))
    preferred = None if name == "aspect_ratio" else (model.details or {}).get(f"default_{name}")
    return preferred if preferred in values else (values[0] if values else None)


def _closed_client_error(exc: BaseException) -> errors.NetworkError | None:
    """httpx's "client has been closed" RuntimeError, as the one-line error the panel shows."""
    if isinstance(exc, RuntimeError) and "client has been closed" in str(exc):
        return errors.NetworkError(CLOSED_MESSAGE)
    return None


@dataclass
class _Job:
    """One generation: what was asked, and how it ended."""

    kwargs: dict[str, Any]
    key: str | None
    label: str
    started: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False
    result: ImageResult | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = None
    missing: list[tuple[int, str]] = field(default_factory=list)  # (index, why): never arrived
    problems: list[str] = field(default_factory=list)  # gallery trouble, one phrase each
    stored: bool = False  # every image that arrived is in the gallery
    # A comparison: one sub-job per model, the main model first (each sub-job's ``done`` says
    # its outcome is settled), and what was sent differently from the controls, one phrase each.
    parts: list[_Job] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# The panel


class Panel:
    """The panel's controls as attributes, plus :meth:`generate` for scripts and tests.

    Display it (last expression of a cell, or ``display(p)``) to show it.
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        gallery: Gallery | None | bool = True,
        **defaults: Any,
    ) -> None:
        unknown = sorted(set(defaults) - _DEFAULT_NAMES)
        if unknown:
            raise TypeError(f"panel() got unexpected option(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(_DEFAULT_NAMES))}")
        note = None
        # Only a client made here is the panel's to close (see close()); a client passed in
        # belongs to the caller (the magic, a script) and is never closed by the panel.
        self._owns_client = client is None
        if client is None:
            client, note = _default_client()
        self.client = client
        self._closed = False
        try:
            self._setup(gallery, defaults, note)
        except BaseException:
            self.close()  # a refused default must not leak the client made above
            raise

    def _setup(self, gallery: Gallery | None | bool, defaults: Mapping[str, Any], note: str | None) -> None:
        # Not ``gallery or None``: an empty Gallery has len 0 and is falsy.
        self._gallery: Gallery | None = (
            _gallery_or_none() if gallery is True else None if gallery is False else gallery
        )
        self.result: ImageResult | None = None
        self.results: list[ImageResult] = []  # this session's results, newest first
        # The last finished generation's outcome per model (main model first): an ImageResult,
        # or the exception that model's request ended with.
        self.results_by_model: dict[str, ImageResult | BaseException] = {}
        self._lock = threading.Lock()
        self._job: _Job | None = None  # the job the UI is waiting for
        self._last_job: _Job | None = None
        self._byok_secret: str | None = None
        self._thumbs: OrderedDict[str, bytes] = OrderedDict()  # sha256 -> WebP, an LRU
        self._models, model_note = self._load_models()
        self._build()
        self._apply_defaults(defaults)
        for text in (note, model_note):
            if text:
                self._set_status(text, "info")

    # -- construction --------------------------------------------------------------------------

    def _load_models(self) -> tuple[dict[str, ImageModel], str | None]:
        try:
            listed = [m for m in _list_models(self.client) if isinstance(m, ImageModel)]
        except Exception as exc:  # offline or no key yet: the panel must still open
            listed, note = [], f"Model list unavailable ({error_line(exc, self._secrets())}); showing the built-in list."
        else:
            note = None if listed else "The router listed no image models; showing the built-in list."
        return {m.id: m for m in (listed or FALLBACK_MODELS)}, note

    def _build(self) -> None:
        w = widgets
        wide = w.Layout(width="100%")
        initial = {"description_width": "initial"}

        self.prompt = w.Textarea(placeholder="Describe the image…", rows=3, layout=wide)
        self.prompt.add_class("indox-prompt")
        ids = list(self._models)
        start = DEFAULT_MODEL if DEFAULT_MODEL in self._models else ids[0]
        self.model = w.Dropdown(options=ids, value=start, description="Model",
                                style=initial, layout=w.Layout(width="330px"))
        self.size = w.Dropdown(description="Size", style=initial, layout=w.Layout(width="170px"))
        self.aspect_ratio = w.Dropdown(description="Aspect", style=initial,
                                       layout=w.Layout(width="140px"))
        self.n = w.BoundedIntText(value=1, min=1, max=10, description="n", style=initial,
                                  layout=w.Layout(width="90px"))
        self.quality = w.Dropdown(description="Quality", style=initial,
                                  layout=w.Layout(width="160px"))
        self.style = w.Dropdown(description="Style", style=initial, layout=w.Layout(width="150px"))
        options = [self.model, self.size, self.aspect_ratio, self.n, self.quality, self.style]
        for box, name in zip(options, ("model", "size", "aspect", "n", "quality", "style")):
            box.add_class(f"indox-{name}")
            box.layout.margin = "2px 14px 2px 0"  # ipywidgets 8 Layout has no flex gap
        options_row = w.HBox(options, layout=w.Layout(flex_flow="row wrap"))

        self.negative_prompt = w.Text(placeholder="what to leave out", description="Negative prompt",
                                      style=initial, layout=w.Layout(width="100%"))
        self.seed = w.Text(placeholder="random", description="Seed", style=initial,
                           layout=w.Layout(width="200px"))
        # continuous_update=False: the value reaches the kernel once (Enter or blur), is moved
        # into kernel memory and cleared, so it never sits in the saved widget state.
        self.byok = w.Password(placeholder="your provider key (optional, kept in kernel memory only)",
                               description="BYOK key", style=initial, continuous_update=False,
                               layout=w.Layout(width="440px"))
        self.byok.add_class("indox-byok")
        self.forget_byok_button = w.Button(description="Forget key", layout=w.Layout(width="auto"),
                                           tooltip="Drop the BYOK key from kernel memory")
        self.use_cache = w.Checkbox(value=True, indent=False, layout=w.Layout(width="auto"),
                                    description="Reuse an identical earlier result from the gallery (no charge)")
        self.save_dir = w.Text(value=DEFAULT_SAVE_DIR, description="Save to", style=initial,
                               layout=w.Layout(width="440px"))
        self._extras_row = w.HBox([self.seed], layout=w.Layout())
        # Its value is the tuple of extra model ids; the main model is never among the options.
        self.compare = w.SelectMultiple(options=[i for i in ids if i != start], value=(),
                                        rows=min(5, max(len(ids) - 1, 2)), description="Compare with",
                                        style=initial, layout=w.Layout(width="400px", flex="0 0 auto"))
        self.compare.add_class("indox-compare-models")
        compare_hint = w.HTML(
            '<div style="font-size:12px;line-height:1.4;opacity:.75">Ctrl / ⌘-click to pick '
            "several. Generate then sends the prompt to the main model and each of these at once "
            "and shows them side by side; each gets only the options it takes.</div>",
            layout=w.Layout(width="100%"))
        self.compare_clear = w.Button(description="Clear", layout=w.Layout(width="auto"),
                                      tooltip="Compare with no other model")
        compare_side = w.VBox([compare_hint, self.compare_clear], layout=w.Layout(
            flex="1 1 160px", min_width="0", margin="0 0 0 12px", align_items="flex-start"))
        compare_row = w.HBox([self.compare, compare_side],
                             layout=w.Layout(align_items="flex-start", margin="0 0 6px 0"))
        advanced = w.VBox([
            compare_row, self.negative_prompt, self._extras_row,
            w.HBox([self.byok, self.forget_byok_button], layout=w.Layout(align_items="center")),
            self.save_dir, self.use_cache,
        ], layout=w.Layout())
        self.advanced = w.Accordion(children=[advanced], titles=("Advanced",), selected_index=None)

        self.generate_button = w.Button(description="Generate", button_style="primary",
                                        icon="magic", layout=w.Layout(width="140px", flex="0 0 auto"))
        self.cancel_button = w.Button(description="Cancel", button_style="warning",
                                      layout=w.Layout(width="100px", flex="0 0 auto", display="none"))
        self.progress = w.FloatProgress(value=0, min=0, max=1, bar_style="info",
                                        layout=w.Layout(width="160px", flex="0 0 auto", display="none"))
        self.status = w.Label(value="", layout=w.Layout(flex="1 1 auto", min_width="0"))
        self.status.add_class("indox-status")
        action_row = w.HBox([self.generate_button, self.cancel_button, self.progress, self.status],
                            layout=w.Layout(align_items="center", width="100%"))

        self.results_box = w.VBox(layout=w.Layout())
        self.results_box.add_class("indox-results")
        self._details = w.Output()
        self.details = w.Accordion(children=[self._details], titles=("Details of an unexpected error",),
                                   selected_index=None, layout=w.Layout(display="none"))
        create = w.VBox([self.prompt, options_row, self.advanced, action_row, self.details,
                         self.results_box], layout=w.Layout(padding="6px 2px"))

        self.history_search = w.Text(placeholder="search prompts", continuous_update=False,
                                     layout=w.Layout(width="260px"))
        self.history_model = w.Dropdown(options=[("all models", "")] + [(i, i) for i in ids],
                                        value="", layout=w.Layout(width="280px"))
        self.history_refresh = w.Button(description="Refresh", icon="refresh",
                                        layout=w.Layout(width="110px"))
        self.history_status = w.Label(value="")
        self.history_grid = w.GridBox(layout=w.Layout(
            grid_template_columns="repeat(auto-fill, minmax(180px, 1fr))", grid_gap="10px"))
        self.history_grid.add_class("indox-history")
        history = w.VBox([
            w.HBox([self.history_search, self.history_model, self.history_refresh],
                   layout=w.Layout(flex_flow="row wrap")),
            self.history_status, self.history_grid,
        ], layout=w.Layout(padding="6px 2px"))

        self.tabs = w.Tab(children=[create, history], titles=("Create", "History"))
        self.widget = w.VBox([self.tabs], layout=w.Layout(width="100%", max_width=PANEL_WIDTH))
        self.widget.add_class("indox-panel")

        self.model.observe(self._guard(self._on_model), names="value")
        self.compare.observe(self._guard(self._on_compare), names="value")
        self.compare_clear.on_click(self._guard(lambda _b: setattr(self.compare, "value", ())))
        self.byok.observe(self._guard(self._on_byok), names="value")
        self.forget_byok_button.on_click(self._guard(lambda _b: self.forget_byok()))
        self.generate_button.on_click(self._guard(lambda _b: self._start()))
        self.cancel_button.on_click(self._guard(lambda _b: self.cancel()))
        self.tabs.observe(self._guard(self._on_tab), names="selected_index")
        self.history_refresh.on_click(self._guard(lambda _b: self.refresh_history()))
        self.history_search.observe(self._guard(lambda _c: self.refresh_history()), names="value")
        self.history_model.observe(self._guard(lambda _c: self.refresh_history()), names="value")
        self._on_model({"new": self.model.value})

    def _apply_defaults(self, defaults: Mapping[str, Any]) -> None:
        model = defaults.get("model")
        if model:
            model = str(model)
            if model not in self._models:  # a model the list does not know: offer it anyway
                provider, _, name = model.partition("/")
                self._models[model] = ImageModel(model, provider, name or model)
                self.model.options = list(self._models)
            self.model.value = model
        if defaults.get("compare"):
            self.set_compare(defaults["compare"])
        for name in ("size", "aspect_ratio", "quality", "style"):
            value = defaults.get(name)
            if value is not None:
                box = getattr(self, name)
                if value not in box.options:
                    raise errors.ValidationError(
                        f"{self.model.value} does not offer {name} {value!r}; "
                        f"choose one of {', '.join(map(str, box.options)) or 'none'}")
                box.value = value
        if defaults.get("n") is not None:
            self.n.value = self._checked_n(defaults["n"])
        for name in ("prompt", "negative_prompt", "save_dir"):
            if defaults.get(name) is not None:
                getattr(self, name).value = str(defaults[name])
        if defaults.get("seed") is not None:
            self.seed.value = str(defaults["seed"])
        if defaults.get("use_cache") is not None:
            self.use_cache.value = bool(defaults["use_cache"])
        if defaults.get("byok"):
            self._byok_secret = str(defaults["byok"])
            self._show_byok_set()

    def _checked_n(self, value: Any) -> int:
        """``n`` as given, if the chosen model offers it; the widget would silently clamp it."""
        top = int(self.n.max)
        n = int(value.strip()) if isinstance(value, str) and value.strip().isdigit() else value
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= top:
            allowed = "1" if top == 1 else f"a whole number from 1 to {top}"
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:39] + "…"
            raise errors.ValidationError(f"n must be {allowed} for {self.model.value} (got {shown})")
        return n

    # -- display -------------------------------------------------------------------------------

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.widget._repr_mimebundle_(include=include, exclude=exclude)

    def __repr__(self) -> str:
        return f"<indox_jupyter Panel model={self.model.value!r} results={len(self.results)}>"

    def close(self) -> None:
        """Close the HTTP client if the panel created it; a client passed in is left open.

        Safe to call more than once. Generating afterwards reports, in the status line, that the
        connection was closed.
        """
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            self.client.close()

    # -- callbacks -----------------------------------------------------------------------------

    def _guard(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a callback: errors become one status line, never a traceback in the log."""

        def wrapped(*args: Any) -> None:
            try:
                fn(*args)
            except errors.IndoxRouterError as exc:
                self._set_status(error_line(exc, self._secrets()), "error")
            except Exception as exc:
                self._unexpected(exc)

        return wrapped

    def _unexpected(self, exc: BaseException) -> None:
        self._set_status(f"Unexpected error: {error_line(exc, self._secrets())} (see Details)", "error")
        self._details_of(exc)

    def _details_of(self, exc: BaseException) -> None:
        """The traceback of an unexpected error, redacted, in the collapsed Details box."""
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self._details.outputs = ()
        self._details.append_stdout(redact(text, self._secrets()))
        self.details.layout.display = None

    def _secrets(self) -> tuple[str | None, ...]:
        core = getattr(self.client, "_core", None)
        return (self._byok_secret, getattr(core, "api_key", None), getattr(core, "token", None))

    def _set_status(self, text: str, kind: str = "info") -> None:
        colors = {"error": "#c62828", "ok": "#2e7d32"}
        self.status.style.text_color = colors.get(kind)
        self.status.value = " ".join(text.split())
        self.status.tooltip = self.status.value or None

    def _on_model(self, change: Mapping[str, Any]) -> None:
        """Offer only what the chosen model supports; keep a still-valid choice."""
        model = self._models.get(change["new"])
        if model is None:
            return

        def offer(box: widgets.Dropdown, values: Sequence[str], preferred: str | None) -> None:
            current = box.value
            box.options = list(values)
            if values:
                box.value = current if current in values else (
                    preferred if preferred in values else values[0])
            box.layout.display = None if values else "none"

        details = model.details or {}
        for name, listing in _CHOICES:
            offer(getattr(self, name), getattr(model, listing), _preselected(model, name))
        top = model.max_n or 10
        self.n.max = top
        self.n.value = min(self.n.value, top)
        self.n.disabled = top == 1
        extras = details.get("supported_extras")
        takes = (lambda name: True) if extras is None else (lambda name: name in extras)
        self.negative_prompt.layout.display = None if takes("negative_prompt") else "none"
        self._extras_row.layout.display = None if takes("seed") else "none"
        self._takes = takes
        self._offer_compare()

    # -- comparing models ----------------------------------------------------------------------

    def _offer_compare(self) -> None:
        """Every model but the main one; a still-valid selection is kept."""
        compare = getattr(self, "compare", None)
        if compare is None:
            return
        options = [i for i in self._models if i != self.model.value]
        kept = tuple(i for i in compare.value if i in options)
        if list(compare.options) != options:
            compare.options = options
        if tuple(compare.value) != kept:
            compare.value = kept
        self._on_compare({"new": compare.value})

    def _on_compare(self, change: Mapping[str, Any]) -> None:
        count = len(change["new"] or ())
        plural = "s" if count != 1 else ""
        title = f"Advanced · comparing with {count} other model{plural}" if count else "Advanced"
        if tuple(self.advanced.titles) != (title,):
            self.advanced.titles = (title,)

    def set_compare(self, models: str | Sequence[str]) -> tuple[str, ...]:
        """Compare with these models (ids, or one comma-separated string); returns the selection.

        Same as picking them in "Compare with". A model the router's list does not know is
        offered anyway (as with ``panel(model=...)``); the main model is left out.
        """
        from ._core import check_model

        wanted = models.split(",") if isinstance(models, str) else list(models)
        ids: list[str] = []
        for item in wanted:
            if not isinstance(item, str) or not item.strip():
                continue
            provider, name = check_model(item)
            model_id = item.strip()
            if model_id not in self._models:  # offered for comparing (the Model list stays as is)
                self._models[model_id] = ImageModel(model_id, provider, name)
            if model_id != self.model.value and model_id not in ids:
                ids.append(model_id)
        self._offer_compare()
        self.compare.value = tuple(ids)
        return tuple(self.compare.value)

    def _on_byok(self, change: Mapping[str, Any]) -> None:
        value = change["new"]
        if not value:
            return
        self._byok_secret = value.strip() or None
        self.byok.value = ""  # out of the widget state at once
        self._show_byok_set()

    def _show_byok_set(self) -> None:
        self.byok.placeholder = ("key set for this session (kernel memory only); type to replace"
                                 if self._byok_secret else "your provider key (optional, kept in kernel memory only)")

    def forget_byok(self) -> None:
        """Drop the BYOK key; later requests are billed to the IndoxRouter account again."""
        self._byok_secret = None
        self.byok.value = ""
        self._show_byok_set()
        self._set_status("BYOK key forgotten.")

    def _on_tab(self, change: Mapping[str, Any]) -> None:
        if change["new"] == 1:
            self.refresh_history()

    # -- the request ---------------------------------------------------------------------------

    def _request(self) -> tuple[dict[str, Any], str | None]:
        """Client kwargs from the controls (only what the model supports), and the cache key."""
        kwargs: dict[str, Any] = {"prompt": self.prompt.value, "model": self.model.value}
        for name in ("size", "aspect_ratio", "quality", "style"):
            box = getattr(self, name)
            if box.options and box.value:
                kwargs[name] = box.value
        kwargs["n"] = int(self.n.value)
        takes = getattr(self, "_takes", lambda name: True)
        if takes("negative_prompt") and self.negative_prompt.value.strip():
            kwargs["negative_prompt"] = self.negative_prompt.value.strip()
        seed = self.seed.value.strip()
        if takes("seed") and seed:
            try:
                kwargs["seed"] = int(seed)
            except ValueError:
                raise errors.ValidationError(f"seed must be a whole number (got {seed[:20]!r})") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the controls only offer what the model takes
            request = build_image_request(**kwargs)  # ValidationError before anything is sent
        key = self._key(request)
        if self._byok_secret:
            kwargs["byok_api_key"] = self._byok_secret
        return kwargs, key

    def _key(self, request: Any) -> str | None:
        """The gallery key of a checked request (scoped by server), or None: no reuse wanted."""
        if self._gallery is None or not self.use_cache.value:
            return None
        from ._cachekey import cache_key, server_scope

        return cache_key(request.prompt, request.model, request.public_params,
                         server=server_scope(self.client))

    def _compare_request(self, model_id: str, main: Mapping[str, Any]) -> tuple[_Job, list[str]]:
        """One compared model's sub-job: the main request's values where this model takes them,
        its own default where it does not; and what differs from the controls, one phrase each."""
        info = self._models.get(model_id)
        if info is None:
            provider, _, name = model_id.partition("/")
            info = ImageModel(model_id, provider, name or model_id)
        details = info.details or {}
        main_info = self._models.get(str(main["model"]))
        kwargs: dict[str, Any] = {"prompt": main["prompt"], "model": model_id}
        changed: list[str] = []
        for name, listing in _CHOICES:
            chosen = main.get(name)
            if chosen is None:
                continue
            offered = tuple(getattr(info, listing))
            label = name.replace("_", " ")
            if chosen in offered:
                kwargs[name] = chosen
            elif offered:
                default = details.get(f"default_{name}")
                if default in offered:
                    kwargs[name] = default
                    changed.append(f"{label} {default}, its default ({chosen} not offered)")
                else:
                    changed.append(f"its default {label} ({chosen} not offered)")
            elif main_info is None or chosen != _preselected(main_info, name):
                # A model without this option: worth saying, unless the value is only what the
                # panel pre-selects for the main model (its default), not the user's choice.
                changed.append(f"without {label}")
        n = int(main.get("n", 1))
        top = info.max_n or 10
        kwargs["n"] = min(n, top)
        if n > top:
            changed.append(f"n={top}, its maximum")
        extras = details.get("supported_extras")
        for name in ("negative_prompt", "seed"):
            if name in main:
                if extras is None or name in extras:
                    kwargs[name] = main[name]
                else:
                    changed.append(f"without {name.replace('_', ' ')}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            request = build_image_request(**kwargs)  # ValidationError before anything is sent
        for name in request.dropped:  # the provider's rules leave it out: not sent, so say so
            kwargs.pop(name, None)
            changed.append(f"without {name.replace('_', ' ')}")
        key = self._key(request)
        if "byok_api_key" in main:
            kwargs["byok_api_key"] = main["byok_api_key"]
        kwargs["model"] = request.model
        return _Job(kwargs, key, request.model), changed

    def _prepare(self) -> _Job:
        """The job a Generate runs: one request, or one per model when comparing."""
        kwargs, key = self._request()
        n = kwargs.get("n", 1)
        others = [m for m in self.compare.value if m != kwargs["model"]]
        if not others:
            return _Job(kwargs, key, f"{kwargs['model']} · {n} image{'s' if n != 1 else ''}")
        parts = [_Job(dict(kwargs), key, kwargs["model"])]
        notes = []
        for model_id in others:
            part, changed = self._compare_request(model_id, kwargs)
            if any(p.label == part.label for p in parts):
                continue
            parts.append(part)
            if changed:
                notes.append(f"{part.label}: {', '.join(changed)}")
        job = _Job(kwargs, key, self._compare_label(len(parts), 0), parts=parts, notes=notes)
        return job

    @staticmethod
    def _compare_label(total: int, done: int) -> str:
        return f"{total} models ({done} of {total} done)"

    def _lookup(self, job: _Job) -> ImageResult | None:
        """The stored result of the same request, or None. A gallery that cannot be read does
        not stop the generation (as in the magic): it is named in the final status line."""
        if job.key is None or self._gallery is None:
            return None
        try:
            return self._gallery.lookup(job.key)
        except errors.StoreError as exc:
            job.problems.append(f"the gallery could not be read, generated instead "
                                f"({error_line(exc, self._secrets())})")
            return None

    def generate(self) -> ImageResult:
        """Run one generation with the current values and return its result (blocking).

        Errors are raised (and shown in the status line); a result is stored, shown and kept
        in ``p.result`` exactly as after a click.

        When comparing (``p.compare.value`` names other models), every model is asked at once
        and this still returns the *main* model's result (also ``p.result``), or raises the main
        model's error after every column is shown. ``p.results_by_model`` maps each model id,
        main model first, to its ImageResult or to the exception its request ended with (a
        compared model's failure is never raised).
        """
        with self._lock:
            if self._job is not None:
                raise RuntimeError("a generation is already running; wait for it or press Cancel")
            try:
                job = self._prepare()
            except errors.IndoxRouterError as exc:
                self._set_status(error_line(exc, self._secrets()), "error")
                raise
            self._begin(job)
        self._work(job)
        if job.parts and job.error is None:
            main = job.parts[0]
            if main.error is not None:
                raise main.error
            assert main.result is not None
            return main.result
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _start(self) -> None:
        """What a click does: check the request here, run it on a thread, return at once."""
        with self._lock:
            if self._job is not None:  # a second click while running: never a second charge
                return
            job = self._prepare()
            self._begin(job)
        job.thread = threading.Thread(target=self._work, args=(job,), daemon=True,
                                      name="indox-panel-generate")
        job.thread.start()
        threading.Thread(target=self._tick, args=(job,), daemon=True, name="indox-panel-tick").start()

    def _begin(self, job: _Job) -> _Job:
        self._job = self._last_job = job
        self.generate_button.disabled = True
        self.cancel_button.layout.display = None
        self.progress.layout.display = None
        self.progress.value = 0
        self._set_status(f"Generating with {job.label}…")
        return job

    def _work(self, job: _Job) -> None:
        try:
            if job.parts:
                self._work_compare(job)
            else:
                result = self._lookup(job)
                if result is None:
                    result = self.client.images(**job.kwargs)
                    self._keep(result, job)
                job.result = result
        except BaseException as exc:  # reported in the panel; never escapes a thread
            job.error = _closed_client_error(exc) or exc
        finally:
            job.done.set()
        if job.parts:
            self._finish_compare(job)
        else:
            self._finish(job)

    def _work_compare(self, job: _Job) -> None:
        """Every model at once through ``batch.images_many``; each result is stored as it arrives.

        ``lookup`` serves an unchanged request from the gallery (the single path's key), and
        ``on_result`` stores each outcome in this thread. If the wait is interrupted (Ctrl-C
        during ``p.generate()``), requests already sent still finish and are paid for:
        ``on_late`` stores and shows each of them, marked.
        """
        from . import batch

        parts = job.parts
        by_model = {part.label: part for part in parts}

        def lookup(prompt: str, model: str, params: dict[str, Any]) -> ImageResult | None:
            part = by_model.get(model)
            return None if part is None else self._lookup(part)

        def on_result(index: int, outcome: Any) -> None:
            self._settle(parts[index], outcome)
            job.label = self._compare_label(len(parts), sum(p.done.is_set() for p in parts))

        def on_late(index: int, outcome: Any) -> None:
            try:
                part = parts[index]
                self._settle(part, outcome)
                if part.result is not None:
                    note, _line, _kind = self._late(part, part.result)
                    self._add_compare([part], note=note.replace("Cancel", "the interruption"))
            except Exception as exc:  # a worker thread: never a traceback in the log
                self._unexpected(exc)

        items = [{k: v for k, v in part.kwargs.items() if k != "byok_api_key"} for part in parts]
        shared = {"byok_api_key": job.kwargs["byok_api_key"]} if "byok_api_key" in job.kwargs else {}
        outcomes = batch.images_many(self.client, items, concurrency=len(items), progress=False,
                                     lookup=lookup, on_result=on_result, on_late=on_late, **shared)
        for part, outcome in zip(parts, outcomes):
            self._settle(part, outcome)  # the slots served from the gallery
        job.result, job.error = parts[0].result, None

    def _settle(self, part: _Job, outcome: Any) -> None:
        """One model's outcome: a result is stored (a paid one whose download failed too)."""
        if part.done.is_set():
            return
        try:
            paid = outcome if isinstance(outcome, ImageResult) else getattr(outcome, "result", None)
            if isinstance(paid, ImageResult):
                if not getattr(paid, "from_gallery", False):
                    self._keep(paid, part)  # stores it; names each image that did not arrive
                part.result = paid
            else:
                part.error = _closed_client_error(outcome) or outcome
        finally:
            part.done.set()

    def _keep(self, result: ImageResult, job: _Job) -> None:
        """Store first, as the magic does, then fetch whatever the gallery did not.

        ``Gallery.add`` downloads each image itself and keeps every one it obtains (and the
        cost), so one expired URL loses only that image. Images that never arrived go to
        ``job.missing``; gallery trouble goes to ``job.problems``. Nothing here raises: the
        result was paid for and what arrived must still be shown.
        """
        secrets = self._secrets()
        failed: dict[int, str] = {}
        if self._gallery is not None:
            try:
                # warn=False: the status line names the failed images instead
                stored = self._gallery.add(result, source="panel", cache_key=job.key, warn=False)
            except Exception as exc:
                why = error_line(exc, secrets)
                said = any(why in problem for problem in job.problems)  # the lookup's same error
                job.problems.append("not kept in the gallery either" if said
                                    else f"not kept in the gallery ({why})")
            else:
                failed = {f.index: redact(f.error, secrets) for f in stored.failed}
                job.stored = True
        for image in result.images:
            if image.loaded:  # in memory: shown, even when writing it to the gallery failed
                if image.index in failed:
                    job.stored = False
                    job.problems.append(f"image #{image.index + 1} not kept in the gallery "
                                        f"({failed[image.index]})")
                continue
            if image.index in failed:  # the gallery already tried to download it
                job.missing.append((image.index, failed[image.index]))
                continue
            try:
                image.data  # fetch now: provider URLs expire, and the card needs the bytes
            except Exception as exc:
                job.missing.append((image.index, error_line(exc, secrets)))

    def _tick(self, job: _Job) -> None:
        """Progress while waiting: elapsed seconds, and a bar that creeps but never completes."""
        while not job.done.wait(TICK_SECONDS):
            # Check and write under the lock _finish and cancel() take to end the job: once they
            # have, this job is no longer current and its final status cannot be overwritten.
            with self._lock:
                if job.cancelled or self._job is not job:
                    return
                elapsed = time.monotonic() - job.started
                self.progress.value = elapsed / (elapsed + 15.0)
                self.status.value = f"Generating with {job.label}… {elapsed:.0f} s"

    def _finish(self, job: _Job) -> None:
        try:
            with self._lock:
                current = self._job is job
                if current:
                    self._idle()
            if job.cancelled:
                if job.result is not None:
                    note, line, kind = self._late(job, job.result)
                    self._add(job.result, note=note)
                    if self._job is None:  # not while the user waits for a newer request
                        self._set_status(line, kind)
                return
            if job.error is not None:
                if isinstance(job.error, errors.IndoxRouterError):
                    self._set_status(error_line(job.error, self._secrets()), "error")
                elif isinstance(job.error, Exception):
                    self._unexpected(job.error)
                return
            result = job.result
            assert result is not None
            self.result = result
            cached = getattr(result, "from_gallery", False)
            self._add(result, note="from the gallery: identical earlier request, no charge" if cached else None)
            count = len(result.images)
            if cached:
                self._set_status(f"Served from the gallery ({count} image{'s' if count != 1 else ''}, no charge). "
                                 "Untick 'Reuse…' under Advanced for a new one.", "ok")
            else:
                self._set_status(self._done_line(job, result), "error" if job.missing or job.problems else "ok")
        except Exception as exc:
            self._unexpected(exc)

    def _finish_compare(self, job: _Job) -> None:
        """Show every model's column (one row), store nothing more (``_settle`` did), one line."""
        try:
            with self._lock:
                if self._job is job:
                    self._idle()
            settled = [part for part in job.parts if part.done.is_set()]
            if job.error is not None and not settled:
                if isinstance(job.error, errors.IndoxRouterError):
                    self._set_status(error_line(job.error, self._secrets()), "error")
                elif isinstance(job.error, Exception):
                    self._unexpected(job.error)
                elif not job.cancelled:  # Ctrl-C while p.generate() waited
                    self._set_status("Interrupted: stopped waiting. Requests already sent still finish; "
                                     "what they bring is kept in the gallery and shown, marked.", "error")
                return
            if job.cancelled:
                late = [part for part in settled if part.result is not None]
                notes = {part.label: self._late(part, part.result)[0] for part in late if part.result}
                self._add_compare(settled, notes=notes)
                if self._job is None:  # not while the user waits for a newer request
                    kept = all(part.stored or getattr(part.result, "from_gallery", False) for part in late)
                    where = "kept in the gallery" if kept and self._gallery is not None else "shown below"
                    self._set_status(f"A cancelled comparison finished after all: {len(late)} of "
                                     f"{len(job.parts)} results {where}, marked.",
                                     "info" if kept else "error")
                return
            self.results_by_model = {part.label: (part.result if part.result is not None else part.error)
                                     for part in settled}  # type: ignore[misc]
            main = job.parts[0]
            if main.result is not None:
                self.result = main.result
            self._add_compare(settled)
            for part in settled:  # a bug, not a refusal: its traceback goes to Details
                if part.error is not None and not isinstance(part.error, errors.IndoxRouterError):
                    self._details_of(part.error)
                    break
            line, kind = self._compare_line(job)
            self._set_status(line, kind)
        except Exception as exc:
            self._unexpected(exc)

    def _compare_line(self, job: _Job) -> tuple[str, str]:
        """One line for a comparison: counts and cost, then what was sent differently, then
        images that did not arrive and gallery trouble (each only once)."""
        parts = job.parts
        failed = [p for p in parts if p.result is None]
        served = [p for p in parts if p.result is not None and getattr(p.result, "from_gallery", False)]
        new = [p for p in parts if p.result is not None and p not in served]
        counts = []
        if new:
            costs = [p.result.cost for p in new if p.result is not None]
            total = None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
            counts.append(f"{len(new)} generated ({money(total)})")
        if served:
            counts.append(f"{len(served)} from the gallery (no charge)")
        if failed:
            counts.append(f"{len(failed)} failed")
        head = f"Compared {len(parts)} models: {', '.join(counts)}"
        trouble: list[str] = []
        whose: dict[str, list[str]] = {}  # gallery trouble -> the models it hit
        for part in parts:
            trouble += [f"{part.label} image #{i + 1} could not be downloaded ({why})" for i, why in part.missing]
            for problem in part.problems:
                whose.setdefault(problem, []).append(part.label)
        for problem, labels in whose.items():  # the same trouble for every model: said once
            trouble += [problem] if len(labels) == len(parts) else [f"{m}: {problem}" for m in labels]
        kind = "error" if failed or trouble else "ok"
        return "; ".join([head, *job.notes, *trouble]), kind

    @staticmethod
    def _done_line(job: _Job, result: ImageResult) -> str:
        """One line: what arrived and cost, then each image that did not and any gallery trouble."""
        count = len(result.images)
        arrived = count - len(job.missing)
        images = (f"{arrived} of {count} images" if job.missing
                  else f"{count} image{'s' if count != 1 else ''}")
        head = (f"Done: {result.model} · {images} · {money(result.cost)}" if arrived
                else f"No image arrived ({result.model} · {money(result.cost)} paid)")
        notes = [f"image #{index + 1} could not be downloaded ({why})" for index, why in job.missing]
        return "; ".join([head, *notes, *job.problems])

    def _late(self, job: _Job, result: ImageResult) -> tuple[str, str, str]:
        """Card note, status line and its kind for a result that arrived after Cancel; each
        says only what is true (paid or not, kept in the gallery or not)."""
        head = "A cancelled request finished after all"
        if getattr(result, "from_gallery", False):
            return ("arrived after Cancel (from the gallery, no charge)",
                    f"{head}: served from the gallery (no charge), marked below.", "info")
        notes = [f"image #{index + 1} could not be downloaded ({why})" for index, why in job.missing]
        arrived = len(result.images) - len(job.missing)
        plural = "s" if arrived != 1 else ""
        if self._gallery is None:
            note = "arrived after Cancel (paid; not stored: the gallery is off)"
            line = f"{head} (paid): its image{plural} shown below, marked; the gallery is off, use Save"
        elif not job.stored:
            note = "arrived after Cancel (paid; not kept in the gallery)"
            line = f"{head} (paid): its image{plural} shown below, marked, but not kept in the gallery"
        else:
            note = "arrived after Cancel (paid, kept in the gallery)"
            line = f"{head}: its image{plural} {'is' if arrived == 1 else 'are'} kept, marked below."
        if not arrived:
            line = f"{head} (paid), but no image arrived"
        problems = notes + job.problems
        kind = "error" if problems or (self._gallery is not None and not job.stored) else "info"
        return note, "; ".join([line, *problems]), kind

    def _idle(self) -> None:
        self._job = None
        self.generate_button.disabled = False
        self.cancel_button.layout.display = "none"
        self.progress.layout.display = "none"

    def cancel(self) -> None:
        """Stop waiting for the running request; a late image is still kept and shown."""
        with self._lock:
            job = self._job
            if job is None:
                return
            job.cancelled = True
            self._idle()
        where = "is shown below" if self._gallery is None else "is kept in the gallery"
        self._set_status("Cancelled: stopped waiting. If the request still completes, its image "
                         f"(already paid for) {where}.")

    def wait(self, timeout: float | None = None) -> ImageResult | None:
        """Block until the last started generation has ended; returns ``p.result``."""
        job = self._last_job
        if job is not None and not job.done.wait(timeout):
            raise TimeoutError("the generation is still running")
        if job is not None and job.thread is not None:
            job.thread.join(timeout)  # _finish runs after done is set: let it update the panel
        return self.result

    # -- the results gallery -------------------------------------------------------------------

    def _add(self, result: ImageResult, note: str | None = None) -> None:
        # Only the images that arrived (an expired URL leaves a gap, named in the status line).
        cards = [self._card(result, image, note) for image in result.images if image.loaded]
        with self._lock:
            self.results.insert(0, result)
            del self.results[MAX_CARDS:]
            self.results_box.children = tuple(cards + list(self.results_box.children))[:MAX_CARDS]

    def _card(self, result: ImageResult, image: GeneratedImage, note: str | None) -> widgets.Widget:
        w = widgets
        picture, children = self._card_parts(result, image, note, with_model=True)
        picture.layout.flex = "0 0 192px"
        info = w.VBox(children, layout=w.Layout(flex="1 1 auto", min_width="0", padding="0 0 0 12px"))
        card = w.HBox([picture, info], layout=w.Layout(
            padding="8px", margin="0 0 10px 0", border="1px solid rgba(128,128,128,.35)",
            align_items="flex-start"))
        card.add_class("indox-card")
        return card

    def _card_parts(self, result: ImageResult, image: GeneratedImage, note: str | None,
                    *, with_model: bool) -> tuple[widgets.Widget, list[widgets.Widget]]:
        """A result image's preview, and its facts, note, revised prompt and buttons."""
        w = widgets
        try:
            picture: widgets.Widget = w.Image(value=_preview_bytes(image.data, PREVIEW_SIDE),
                                              format="webp", width="192px")
            picture.layout = w.Layout(width="192px", max_width="100%", height="auto")
            dims = f"{image.width}x{image.height}"
        except Exception as exc:
            picture = w.Label(f"image {image.index} could not be shown ({error_line(exc)})",
                              layout=w.Layout(width="192px", max_width="100%"))
            dims = str(result.params.get("size") or result.params.get("aspect_ratio") or "size unknown")
        count = max(len(result.images), 1)
        cost = None if result.cost is None else result.cost / count
        facts = [dims, money(cost)]
        if with_model:
            facts.insert(0, result.model or "unknown model")
        if count > 1:
            facts.insert(1 if with_model else 0, f"#{image.index + 1} of {count}")
        meta = w.Label(" · ".join(facts))
        meta.add_class("indox-meta")
        children: list[widgets.Widget] = [meta]
        if note:
            mark = w.Label(note, style={"text_color": "#8a6d00"})
            mark.add_class("indox-note")
            children.append(mark)
        revised = image.revised_prompt
        if revised:
            from .render import word_diff_html  # escaped, with the provider's additions marked

            text = w.HTML(f'<div style="font-size:13px;line-height:1.4">{word_diff_html(result.prompt, revised)}</div>',
                          layout=w.Layout(width="100%"))
            text.add_class("indox-revised")
            children.append(text)
        else:
            children.append(w.Label("no revised prompt"))
        use = w.Button(description="Use revised prompt" if revised else "Use prompt",
                       layout=w.Layout(width="auto"))
        use.add_class("indox-use-revised")
        use.on_click(self._guard(lambda _b, t=revised or result.prompt or "": self._use_prompt(t)))
        save = w.Button(description="Save", icon="download", layout=w.Layout(width="auto"))
        save.add_class("indox-save")
        save.on_click(self._guard(lambda _b: self.save(result, image)))
        children.append(w.HBox([use, save], layout=w.Layout(flex_flow="row wrap")))
        return picture, children

    def _add_compare(self, parts: Sequence[_Job], note: str | None = None,
                     notes: Mapping[str, str] | None = None) -> None:
        """One row on top of the results: a column per model (``notes``: a note per model)."""
        w = widgets
        columns = [self._compare_column(part, (notes or {}).get(part.label, note)) for part in parts]
        row = w.GridBox(columns, layout=w.Layout(
            grid_template_columns=f"repeat({min(len(columns), COMPARE_COLUMNS)}, minmax(0, 1fr))",
            grid_gap="10px", margin="0 0 10px 0"))
        row.add_class("indox-compare")
        arrived = [part.result for part in parts if part.result is not None]
        with self._lock:
            self.results[:0] = arrived
            del self.results[MAX_CARDS:]
            self.results_box.children = ((row,) + tuple(self.results_box.children))[:MAX_CARDS]

    def _compare_column(self, part: _Job, note: str | None) -> widgets.Widget:
        """One model of a comparison: its name, then its images (as the cards show them), or
        its error on one escaped line."""
        w = widgets
        name = w.Label(part.label, tooltip=part.label, style={"font_weight": "bold"})
        name.add_class("indox-compare-model")
        children: list[widgets.Widget] = [name]

        def line(text: str, cls: str, color: str | None = None) -> widgets.Widget:
            colour = f"color:{color};" if color else ""
            box = w.HTML(f'<div style="{colour}font-size:13px;line-height:1.4;overflow-wrap:anywhere">'
                         f"{html.escape(text)}</div>", layout=w.Layout(width="100%"))
            box.add_class(cls)
            return box

        result = part.result
        if result is None:
            error = part.error if part.error is not None else RuntimeError("no answer")
            children.append(line(error_line(error, self._secrets()), "indox-error", "#c62828"))
        else:
            if getattr(result, "from_gallery", False) and note is None:
                note = "from the gallery: identical earlier request, no charge"
            for image in result.images:
                if not image.loaded:
                    continue
                picture, parts = self._card_parts(result, image, note, with_model=False)
                card = w.VBox([picture, *parts], layout=w.Layout(min_width="0", margin="0 0 8px 0"))
                card.add_class("indox-card")
                card.add_class("indox-compare-card")
                children.append(card)
            for index, why in part.missing:
                children.append(line(f"image #{index + 1} could not be downloaded ({why})",
                                     "indox-error", "#c62828"))
            if not any(image.loaded for image in result.images):
                children.append(line(f"No image arrived ({money(result.cost)} paid)", "indox-error", "#c62828"))
        column = w.VBox(children, layout=w.Layout(
            min_width="0", padding="8px", border="1px solid rgba(128,128,128,.35)"))
        column.add_class("indox-compare-group")
        return column

    def _use_prompt(self, text: str) -> None:
        self.prompt.value = text
        self._set_status("Prompt replaced; edit it and press Generate.")

    def save(self, result: ImageResult, image: GeneratedImage) -> Path:
        """Write the original bytes into the "Save to" directory; returns the file's path."""
        folder = Path(self.save_dir.value.strip() or DEFAULT_SAVE_DIR).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        data = image.data
        stem = (result.request_id or hashlib.sha256(data).hexdigest())[:12]
        path = folder / f"indox_{stem}_{image.index}{image.extension}"
        path.write_bytes(data)
        self._set_status(f"Saved {path}", "ok")
        return path

    # -- the History tab -----------------------------------------------------------------------

    def refresh_history(self) -> list[Entry]:
        """Show the newest stored images matching the search box and the model filter."""
        if self._gallery is None:
            self.history_status.value = "No gallery available: images are not being stored."
            return []
        search = self.history_search.value.strip() or None
        entries = self._gallery.history(HISTORY_LIMIT, search=search, model=self.history_model.value or None)
        self.history_grid.children = tuple(self._history_card(e) for e in entries)
        total = len(self._gallery)
        self.history_status.value = (f"{len(entries)} shown of {total} stored image{'s' if total != 1 else ''}"
                                     if entries else "Nothing stored matches." if total else "The gallery is empty.")
        return entries

    def _history_card(self, entry: Entry) -> widgets.Widget:
        w = widgets
        try:
            thumb = self._thumbs.get(entry.sha256)
            if thumb is None:
                thumb = self._thumbs[entry.sha256] = _preview_bytes(entry.data, THUMB_SIDE)
                while len(self._thumbs) > THUMB_CACHE:
                    self._thumbs.popitem(last=False)
            else:
                self._thumbs.move_to_end(entry.sha256)
            picture: widgets.Widget = w.Image(value=thumb, format="webp", width="160px")
        except Exception as exc:
            picture = w.Label(f"not readable ({error_line(exc)})")
        prompt = entry.prompt or ""
        caption = w.Label(prompt if len(prompt) <= 60 else prompt[:59] + "…", tooltip=prompt or None)
        when = entry.created.astimezone().strftime("%Y-%m-%d %H:%M")
        meta = w.Label(f"{entry.model or '?'} · {when} · {money(entry.cost)}",
                       style={"font_size": "11px"})
        use = w.Button(description="Use prompt", layout=w.Layout(width="auto"))
        use.on_click(self._guard(lambda _b, t=prompt: self._use_from_history(t)))
        card = w.VBox([picture, caption, meta, use], layout=w.Layout(min_width="0"))
        card.add_class("indox-history-card")
        return card

    def _use_from_history(self, text: str) -> None:
        self._use_prompt(text)
        self.tabs.selected_index = 0


def panel(client: Client | None = None, **defaults: Any) -> Panel:
    """Open the panel: ``indox_jupyter.panel(model="openai/dall-e-2", size="512x512")``.

    Without ``client``, the configured key and base URL are used, else the built-in local
    server (the panel says so). ``defaults`` pre-fill the controls (``prompt``, ``model``,
    ``size``, ``aspect_ratio``, ``n``, ``quality``, ``style``, ``negative_prompt``, ``seed``,
    ``save_dir``, ``use_cache``, ``byok``) and ``gallery=False`` turns storing off.
    ``compare="openai/dall-e-2,stability/stable-diffusion-xl"`` (or a list) pre-selects models to
    compare with: Generate then asks each of them too and shows one column per model
    (``p.compare.value``, ``p.results_by_model``; see :meth:`Panel.generate`).
    ``p.close()`` releases the connection the panel opened (a ``client`` passed in stays open).
    """
    return Panel(client, **defaults)
