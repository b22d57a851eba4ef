"""``%%indox_image`` and friends: a thin IPython shell over the client and the renderer.

One generation is a pipeline of small steps, each a method::

    _parse(line)             flags -> argparse Namespace (bad flags: UsageError, nothing sent)
    _resolve(args, cell)     -> ImageCall: prompt filled from {variables}, defaults from traits,
                             --byok NAME looked up, --param parsed (nothing sent)
    _build_request(call)     -> ImageRequest: every value checked by the client's own rules
    _cached(call, key)       -> the stored ImageResult for the same request, or None (no I/O
                             beyond the local gallery; skipped by --new and ``cache = False``)
    _check_budget(...)       refuses before sending once the session budget is spent
    _generate(call, request) -> ImageResult: asks the server (image bytes not yet fetched)
    _store(call, result)     fetches the bytes: every image received goes to the gallery, with
                             the cost, before it is displayed; one failed download loses nothing
    _account(result)         session spend (counted even when an image did not arrive)
    _keep_what_arrived(...)  a missing image is one ``indox:`` line; the others are shown
    _finish(call, result)    -o NAME, --save DIR (a failure there is a warning, not an error)

``--each`` (a prompt per line, or a list variable) and ``-m a/x,b/y`` (several models) run the
same steps for every (prompt, model) pair through ``batch.images_many`` and return an
:class:`~indox_jupyter.render.ImageGrid`: a row per prompt, a column per model.

The magic returns the ImageResult (or ImageGrid), so ``_``, ``Out[n]`` and ``-o`` hold it and it
displays once, through the formatter registered here with the preview traits.
Expected failures become one ``UsageError`` line; ``show_tracebacks`` re-raises them instead.
"""

from __future__ import annotations

import json
import keyword
import math
import os
import re
import sys
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Enum, Float, Int, TraitError, Unicode, observe, validate

from . import _prompt
from ._core import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    MAX_N,
    ImageRequest,
    build_image_request,
    check_int,
    check_model,
    check_size,
)
from ._models import ImageResult
from ._redact import redact
from .errors import ImageDownloadError, IndoxRouterError, NetworkError, StoreError, ValidationError
from .render import (
    GRID_PREVIEW,
    HistoryView,
    ImageGrid,
    ModelsTable,
    PreviewOptions,
    UsageView,
    error_line,
    money,
    render_grid,
    render_result,
)

__all__ = ["IndoxMagics", "ImageCall"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

LOCAL_NOTICE = (
    "indox: no API key or base URL set, so the built-in local server answered (sample images, "
    "no cost). Use %indox_login or set INDOX_ROUTER_API_KEY for IndoxRouter."
)

# --param may not carry these: each has its own, safer, way in.
_FORBIDDEN_PARAMS = {"prompt": "the cell body", "model": "-m/--model", "byok_api_key": "--byok NAME",
                     "api_key": "%indox_login"}


@dataclass
class ImageCall:
    """Everything one magic call resolved to, before anything is sent."""

    prompt: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    byok: str | None = field(default=None, repr=False)  # the value; never shown or stored
    client_name: str | None = None
    local: bool = False
    out: str | None = None
    save: str | None = None
    fresh: bool = False  # --new: never served from the gallery
    prompts: list[str] = field(default_factory=list)  # --each: every prompt (else [prompt])
    models: list[str] = field(default_factory=list)  # -m a/x,b/y: every model (else [model])
    each: bool = False

    def __post_init__(self) -> None:
        self.prompts = self.prompts or [self.prompt]
        self.models = self.models or [self.model]

    @property
    def grid(self) -> bool:
        """True when the cell makes a grid (several prompts or several models)."""
        return self.each or len(self.models) > 1

    @property
    def secrets(self) -> tuple[str | None, ...]:
        return (self.byok,)


def _unquote(text: str | None) -> str | None:
    """IPython's arg_split keeps quotes (posix=False); drop one matching pair around a value."""
    if text is not None and len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _param_value(raw: str) -> Any:
    """``--param k=v``: JSON when it parses (numbers, true, lists), else the text itself."""
    text = _unquote(raw.strip()) or ""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _variable_name(flag: str, name: str | None) -> str | None:
    if name is None:
        return None
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValidationError(f"{flag} takes a variable name such as my_image (got {name[:40]!r})")
    return name


def _models(text: str | None, default: str) -> list[str]:
    """``-m a/x,b/y``: split on commas first, then check each as ``provider/model``."""
    if text is None:
        return [default]
    names: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        check_model(part)
        if part not in names:
            names.append(part)
    if not names:
        raise ValidationError(f"-m/--model takes provider/model, or several separated by commas "
                              f"(got {text[:40]!r})")
    return names


def _images(indexes: Sequence[int]) -> str:
    """``image 1`` or ``images 1, 2``."""
    return f"image{'s' if len(indexes) > 1 else ''} {', '.join(str(i) for i in indexes)}"


def _save_dir(text: str | None) -> str | None:
    """``--save DIR``: made and checked writable now, so a bad folder costs nothing."""
    if text is None:
        return None
    shown = repr(text[:60])
    if not text.strip() or "\x00" in text:
        raise ValidationError(f"--save takes a folder name (got {shown})")
    # A magic line in a shared notebook should not write anywhere on disk: only below the
    # notebook's folder. Python's result.save() takes any path.
    here = os.path.realpath(os.getcwd())
    path = os.path.realpath(os.path.join(here, text))
    if os.path.isabs(text) or text.startswith("~") or os.path.commonpath([here, path]) != here:
        raise ValidationError(
            f"--save takes a folder inside the notebook's folder, e.g. images (got {shown}); "
            "to save elsewhere use result.save('/path/to/folder')"
        )
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValidationError(f"--save {shown}: that exists and is not a folder")
    import tempfile

    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ValidationError(f"--save {shown}: cannot write there ({exc.strerror or exc})") from None
    return text


@magics_class
class IndoxMagics(Magics):
    """``%%indox_image``, ``%indox_models``, ``%indox_login``, ``%indox_usage``, ``%indox_history``,
    ``%indox_panel``.

    Defaults are traits: ``%config IndoxMagics.model = "openai/dall-e-2"``.
    """

    model = Unicode(DEFAULT_MODEL, help="Model used when -m is not given.").tag(config=True)
    size = Unicode(None, allow_none=True, help="Size used when -s is not given (model default if None).").tag(config=True)
    n = Int(None, allow_none=True, help="Number of images when -n is not given.").tag(config=True)
    quality = Unicode(None, allow_none=True, help="Quality when -q is not given.").tag(config=True)
    style = Unicode(None, allow_none=True, help="Style when --style is not given.").tag(config=True)
    preview_size = Int(768, help="Long side in pixels of the preview embedded in the notebook.").tag(config=True)
    preview_format = Enum(["webp", "jpeg"], default_value="webp", help="Preview encoding.").tag(config=True)
    preview_quality = Int(70, help="Preview quality 1-100 (lower is smaller).").tag(config=True)
    base_url = Unicode(None, allow_none=True,
                       help=f"IndoxRouter URL or 'local'; None reads {BASE_URL_ENV}.").tag(config=True)
    timeout = Float(DEFAULT_TIMEOUT.read or 600.0, help="Seconds to wait for a generation.").tag(config=True)
    max_retries = Int(2, help="Retries on 429/5xx and lost connections.").tag(config=True)
    show_tracebacks = Bool(False, help="Show full tracebacks instead of one-line errors.").tag(config=True)
    cache = Bool(True, help="Serve a re-run with the same prompt and parameters from the gallery "
                            "(no request, no cost). --new skips it for one cell.").tag(config=True)
    budget = Float(None, allow_none=True,
                   help="USD this session may spend through the magics; None = no limit. Once spent, "
                        "generations are refused before anything is sent.").tag(config=True)
    concurrency = Int(8, help="Requests in flight at once for --each and several models.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        # Before super().__init__: configured base_url/timeout/max_retries fire close() there.
        self._api_key: str | None = None  # set by %indox_login, memory only
        self._client: Any = None
        self._client_settings: tuple[Any, ...] | None = None
        self._local_client: Any = None
        self.session_cost = 0.0
        self.session_images = 0
        self.gallery_hits = 0
        self._prices: dict[int, dict[str, float]] = {}  # per client: model id -> USD per image
        super().__init__(shell=shell, **kwargs)
        if shell is not None:
            formatter = shell.display_formatter.mimebundle_formatter
            formatter.for_type(ImageResult, self._format_result)
            formatter.for_type(ImageGrid, self._format_grid)

    # -- traits ---------------------------------------------------------------------------

    @validate("model")
    def _check_model(self, proposal: Any) -> str:
        self._trait_check(check_model, proposal)
        return proposal["value"].strip()

    @validate("size")
    def _check_size(self, proposal: Any) -> str | None:
        return None if proposal["value"] is None else self._trait_check(check_size, proposal)

    @validate("n")
    def _check_n(self, proposal: Any) -> int | None:
        value = proposal["value"]
        return None if value is None else self._trait_check(lambda v: check_int("n", v, 1, MAX_N), proposal)

    @validate("budget")
    def _check_budget_trait(self, proposal: Any) -> float | None:
        value = proposal["value"]
        if value is not None and (not math.isfinite(value) or value < 0):
            raise TraitError(f"budget must be a number of USD >= 0, or None for no limit (got {value!r})")
        return value

    @validate("base_url")
    def _check_base_url(self, proposal: Any) -> str | None:
        value = proposal["value"]
        if value is None or not value.strip():
            return None
        text = value.strip()
        if text.lower() == "local":
            return "local"
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", text):
            raise TraitError(f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL}, 'local', "
                             f"or None (got {redact(text[:60])!r})")
        return text

    @validate("concurrency")
    def _check_concurrency(self, proposal: Any) -> int:
        return self._trait_check(lambda v: check_int("concurrency", v, 1, 100), proposal)

    @validate("preview_size")
    def _check_preview_size(self, proposal: Any) -> int:
        return self._trait_check(lambda v: check_int("preview_size", v, 16, 4096), proposal)

    @validate("preview_quality")
    def _check_preview_quality(self, proposal: Any) -> int:
        return self._trait_check(lambda v: check_int("preview_quality", v, 1, 100), proposal)

    @staticmethod
    def _trait_check(check: Any, proposal: Any) -> Any:
        try:
            return check(proposal["value"])
        except ValidationError as exc:
            raise TraitError(str(exc)) from None

    @observe("base_url", "timeout", "max_retries")
    def _settings_changed(self, change: Any) -> None:
        self.close()

    # -- display --------------------------------------------------------------------------

    def preview_options(self) -> PreviewOptions:
        return PreviewOptions(self.preview_size, self.preview_format, self.preview_quality)

    def _format_result(self, result: ImageResult) -> tuple[dict[str, Any], dict[str, Any]]:
        return render_result(result, self.preview_options())

    def grid_preview_options(self) -> PreviewOptions:
        return PreviewOptions(min(self.preview_size, GRID_PREVIEW.max_side), self.preview_format,
                              self.preview_quality)

    def _format_grid(self, grid: ImageGrid) -> tuple[dict[str, Any], dict[str, Any]]:
        return render_grid(grid)

    # -- clients --------------------------------------------------------------------------

    def _new_client(self, api_key: str | None, base_url: str | None) -> Any:
        from ._client import Client

        return Client(api_key, base_url=base_url, timeout=self.timeout, max_retries=self.max_retries)

    def client(self, *, local: bool = False) -> tuple[Any, bool]:
        """The client for the current settings, and whether it is the no-key local fallback."""
        if local:
            if self._local_client is None:
                self._local_client = self._new_client(None, "local")
            return self._local_client, False
        base_url = self.base_url or os.environ.get(BASE_URL_ENV) or None
        key = self._api_key or os.environ.get(API_KEY_ENV) or None
        fallback = key is None and base_url is None
        settings = (key, base_url, fallback)
        if self._client is None or self._client_settings != settings:
            if self._client is not None:
                self._client.close()
            self._client = self._new_client(key, "local" if fallback else base_url)
            self._client_settings = settings
        return self._client, fallback

    def close(self) -> None:
        """Close the HTTP clients (on unload, or when the connection settings change)."""
        for client in (self._client, self._local_client):
            if client is not None:
                client.close()
        self._client = self._local_client = None
        self._client_settings = None
        self._prices.clear()  # keyed by id(client): a new client may reuse a closed one's id

    # -- errors ---------------------------------------------------------------------------

    @contextmanager
    def _expected_errors(self, secrets: tuple[str | None, ...] = ()) -> Iterator[None]:
        """Expected failures become one UsageError line, and our own warnings (a parameter the
        model does not take, fewer images than asked) one ``indox:`` line each instead of
        Python's file-and-source form."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            except IndoxRouterError as exc:
                if self.show_tracebacks:
                    raise
                raise UsageError(error_line(exc, secrets, limit=1000)) from None
            finally:
                for warning in caught:
                    if os.path.abspath(warning.filename).startswith(_PACKAGE_DIR):
                        print(f"indox: {redact(str(warning.message), secrets)}", file=sys.stderr)
                    else:  # someone else's warning: hand it on untouched
                        warnings.warn_explicit(warning.message, warning.category,
                                               warning.filename, warning.lineno)

    # -- %%indox_image --------------------------------------------------------------------

    @magic_arguments()
    @argument("-m", "--model", help="provider/model, e.g. openai/dall-e-3 (default: the model trait); "
                                    "several separated by commas compare them side by side")
    @argument("-s", "--size", help="WIDTHxHEIGHT such as 1024x1024")
    @argument("-n", "--n", type=int, help=f"number of images, 1-{MAX_N}")
    @argument("-q", "--quality", help="e.g. standard or hd (model dependent)")
    @argument("--style", help="e.g. vivid or natural (model dependent)")
    @argument("--aspect-ratio", help="W:H such as 16:9 (Imagen)")
    @argument("--negative-prompt", help="what to keep out of the image")
    @argument("--seed", type=int, help="random seed, for models that take one")
    @argument("--response-format", choices=("url", "b64_json"), help="how the provider returns images")
    @argument("--param", action="append", default=[], metavar="KEY=VALUE",
              help="extra provider parameter (repeatable); VALUE is JSON when it parses, else text")
    @argument("--byok", metavar="NAME",
              help="name of a notebook variable (else environment variable) holding your provider key")
    @argument("-o", "--out", metavar="NAME", help="also assign the result to this variable")
    @argument("--save", metavar="DIR", help="also save the full-size image files in DIR")
    @argument("--local", action="store_true", help="use the built-in local server for this cell")
    @argument("--client", metavar="NAME",
              help="use this notebook client object (ours or indoxrouter.Client) instead")
    @argument("--new", action="store_true",
              help="generate afresh even if the gallery holds images for the same request")
    @argument("--each", nargs="?", const="", default=None, metavar="VAR",
              help="every non-empty line of the cell is a prompt, or (line magic: %%indox_image "
                   "--each VAR) every item of the list VAR; they run concurrently and show as one grid")
    @argument("-h", "--help", action="store_true", help="show this help")
    @argument("prompt", nargs="*", help="the prompt (line magic); for %%%%indox_image it is the cell body")
    @no_var_expand
    @line_cell_magic
    def indox_image(self, line: str, cell: str | None = None) -> ImageResult | ImageGrid | None:
        """Generate images; {name} and {obj.attr} in the prompt come from the notebook.

        A re-run with the same prompt and parameters is served from the gallery (no request, no
        cost) unless --new is given or ``%config IndoxMagics.cache = False``.
        """
        args = self._parse(line)
        if args.help:
            print(self.indox_image.parser.format_help().lstrip(": \n"))
            return None
        call = ImageCall(prompt="", model=self.model)
        with self._expected_errors(call.secrets):
            call = self._resolve(args, cell)
        with self._expected_errors(call.secrets):
            if call.grid:
                return self._run_grid(call)
            request = self._build_request(call)
            scope = self._scope(call)
            key = self._cache_key(request.prompt, request.model, request.public_params, scope)
            result = self._cached(call, key)
            if result is None:
                self._check_budget(call, [request])
                result = self._generate(call, request)
                stored = self._store(call, result, key, report=False)  # first: fetches what it can
                self._account(result)  # charged even if an image did not arrive
                self._keep_what_arrived(call, result, stored)
            else:
                self._account(result)
            self._finish(call, result)
        return result

    def _parse(self, line: str, magic: Any = None) -> Any:
        """The flags of ``magic`` (default %%indox_image) from ``line``; an unclosed quote is one
        UsageError line."""
        try:
            return parse_argstring(magic or self.indox_image, line)
        except ValueError as exc:  # shlex: "No closing quotation" and the like
            raise UsageError(f"could not read the magic line ({exc}): close every quote, "
                             "or escape a lone one") from None

    def _resolve(self, args: Any, cell: str | None) -> ImageCall:
        """Flags, traits and notebook variables -> one ImageCall. Sends nothing."""
        words = " ".join(args.prompt).strip()
        if cell is not None and words:
            raise ValidationError("the prompt goes in the cell body for %%indox_image; "
                                  f"unexpected words on the magic line: {words[:40]!r}")
        ns = self.shell.user_ns if self.shell is not None else {}
        models = _models(_unquote(args.model), self.model)
        if args.each is not None:
            prompts = self._each_prompts(args.each, cell if cell is not None else words, ns)
        else:
            template = cell if cell is not None else (_unquote(words) or "")
            if not template.strip():
                raise ValidationError("the prompt is empty: write what you want to see, e.g. "
                                      "%indox_image a lighthouse at dusk")
            prompts = [_prompt.interpolate(template.strip(), ns)]

        options: dict[str, Any] = {
            "size": _unquote(args.size) if args.size is not None else self.size,
            "n": args.n if args.n is not None else self.n,
            "quality": _unquote(args.quality) if args.quality is not None else self.quality,
            "style": _unquote(args.style) if args.style is not None else self.style,
            "aspect_ratio": _unquote(args.aspect_ratio),
            "negative_prompt": _unquote(args.negative_prompt),
            "seed": args.seed,
            "response_format": args.response_format,
        }
        options = {k: v for k, v in options.items() if v is not None}
        for item in args.param:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or not key.isidentifier():
                raise ValidationError(f"--param takes KEY=VALUE with a name as KEY (got {item[:40]!r})")
            if key in _FORBIDDEN_PARAMS:
                raise ValidationError(f"--param {key} is not allowed; use {_FORBIDDEN_PARAMS[key]}")
            if key in options:
                raise ValidationError(f"{key} is given twice (by a flag or trait and by --param)")
            options[key] = _param_value(raw)

        if args.local and args.client:
            raise ValidationError("--local and --client both choose the client; use one")
        client_name = _variable_name("--client", args.client)
        if client_name is not None and client_name not in ns:
            raise ValidationError(f"--client {client_name}: no such variable in the notebook")
        if client_name is not None and (args.each is not None or len(models) > 1):
            raise ValidationError("--each and several models run through indox_jupyter's own client; "
                                  "drop --client for this cell")
        return ImageCall(
            prompt=prompts[0],
            model=models[0],
            options=options,
            byok=self._byok(args.byok, ns),
            client_name=client_name,
            local=args.local,
            out=_variable_name("-o/--out", args.out),
            save=_save_dir(_unquote(args.save)),
            fresh=args.new,
            prompts=prompts,
            models=models,
            each=args.each is not None,
        )

    @staticmethod
    def _each_prompts(var: str, text: str | None, ns: dict[str, Any]) -> list[str]:
        """``--each``: the cell's non-empty lines (each filled from {variables}), or a list variable."""
        if var:
            name = _variable_name("--each", _unquote(var))
            if text and text.strip():
                raise ValidationError(f"--each {name} takes the prompts from {name}; "
                                      "leave the cell body empty")
            if name not in ns:
                raise ValidationError(f"--each {name}: no such variable in the notebook")
            value = ns[name]
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ValidationError(f"--each {name} must be a list of prompts "
                                      f"(got {type(value).__name__})")
            prompts = []
            for i, item in enumerate(value):
                if not isinstance(item, str):
                    raise ValidationError(f"--each {name}: item {i} is {type(item).__name__}, not text")
                if item.strip():
                    prompts.append(item.strip())
        else:
            lines = (text or "").splitlines()
            prompts = [_prompt.interpolate(line.strip(), ns) for line in lines if line.strip()]
        if not prompts:
            raise ValidationError("--each found no prompts: write one prompt per line in the cell "
                                  "(or name a non-empty list variable: --each my_prompts)")
        return prompts

    @staticmethod
    def _byok(name: str | None, ns: dict[str, Any]) -> str | None:
        """The BYOK key named by ``--byok NAME``: a notebook variable, else an environment variable."""
        if name is None:
            return None
        _variable_name("--byok", name)
        value = ns.get(name) if name in ns else os.environ.get(name)
        if value is None:
            raise ValidationError(f"--byok {name}: no notebook variable or environment variable of that name; "
                                  f"set one (e.g. %env {name}=...) and name it here, never paste the key")
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(f"--byok {name}: it must hold your provider key as non-empty text")
        return value.strip()

    def _build_request(self, call: ImageCall) -> ImageRequest:
        """Check every value as the client will, so a bad one is refused before anything is sent."""
        return build_image_request(call.prompt, call.model, byok_api_key=call.byok, **call.options)

    def _generate(self, call: ImageCall, request: ImageRequest) -> ImageResult:
        """Ask a server for the images (the one step that talks to it; ``_store`` fetches the bytes)."""
        if call.client_name is not None:
            from ._adapt import adapt_result, call_foreign, check_client

            client = check_client(self.shell.user_ns[call.client_name], call.client_name)
            kwargs: dict[str, Any] = {"model": request.model, **call.options}
            if call.byok is not None:
                kwargs["byok_api_key"] = call.byok
            answer = call_foreign(client, request.prompt, kwargs, call.secrets)
            result = adapt_result(answer, prompt=request.prompt, model=request.model,
                                  params=request.public_params, secrets=call.secrets)
        else:
            client, fallback = self.client(local=call.local)
            if fallback:
                print(LOCAL_NOTICE)
            result = client.images(request.prompt, model=request.model, byok_api_key=call.byok, **call.options)
        # The bytes are fetched by _store (the gallery keeps every image it can obtain), so one
        # expired URL cannot lose the others or the record of what was paid.
        return result

    def _keep_what_arrived(self, call: ImageCall, result: ImageResult, stored: Any) -> None:
        """After ``_store``: drop the images whose bytes never arrived from ``result`` (so the
        display shows what was received and does not fetch again), and say so on one line.
        Nothing arrived at all: one error line (the generation was still charged and recorded)."""
        errors_by_index = {f.index: f.error for f in getattr(stored, "failed", ())}
        if stored is None:  # the gallery could not be used: fetch here (nothing else tried)
            for image in result.images:
                try:
                    image.data  # noqa: B018 - fetches, verifies and keeps the bytes
                except Exception as exc:
                    errors_by_index[image.index] = " ".join(str(exc).split()) or type(exc).__name__
        missing = [image for image in result.images if not image.loaded]
        not_kept = [image.index for image in result.images
                    if image.loaded and image.index in errors_by_index]
        if not_kept and stored is not None:  # arrived but could not be written to the gallery
            first = errors_by_index[not_kept[0]]
            self._warn(redact(f"indox: {_images(not_kept)} not kept in the gallery ({first}); "
                              "use -o NAME or --save DIR to keep them", call.secrets))
        if not missing:
            return
        count = len(result.images)
        names = [image.index for image in missing]
        first = errors_by_index.get(names[0], "download failed")
        cost = f" ({money(result.cost)})" if result.cost else ""
        if len(missing) == count:
            raise ImageDownloadError(
                f"{_images(names)} of {count} did not arrive ({first}); the generation was "
                f"charged{cost} and is recorded in the gallery and this session's spend"
            )
        result.images = [image for image in result.images if image.loaded]
        self._warn(redact(
            f"indox: {_images(names)} of {count} did not arrive ({first}); the generation was "
            f"charged{cost} in full; showing the {len(result.images)} that did (kept in the gallery)", call.secrets))

    def _finish(self, call: ImageCall, result: ImageResult | ImageGrid) -> None:
        if call.out is not None:
            self.shell.user_ns[call.out] = result
        if call.save is not None:
            results = result.results if isinstance(result, ImageGrid) else [result]
            paths: list[Any] = []
            try:
                for r in results:
                    paths += r.save(call.save)
            except (OSError, IndoxRouterError) as exc:
                # Paid for and already in the gallery: warn, and still show the images.
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else error_line(exc)
                kept = f"{len(paths)} file(s) saved before that; " if paths else ""
                self._warn(redact(f"indox: --save {call.save} failed ({' '.join(str(reason).split())}); "
                                  f"{kept}the images are in the gallery (%indox_history) and in the "
                                  "cell's result", call.secrets))
                return
            print(f"saved {len(paths)} file(s) to {os.path.abspath(call.save)}")

    # -- the gallery: cache, store, money ---------------------------------------------------

    def gallery(self) -> Any:
        """The gallery at ``$INDOX_JUPYTER_HOME`` (or the default home), re-read on every use."""
        from .store import default_gallery

        return default_gallery()

    def _scope(self, call: ImageCall) -> str | None:
        """The server the cell's images come from, part of its cache key."""
        from ._cachekey import server_scope

        if call.client_name is not None:
            return server_scope(self.shell.user_ns[call.client_name])
        return server_scope(self.client(local=call.local)[0])

    @staticmethod
    def _cache_key(prompt: str, model: str, params: dict[str, Any], scope: str | None) -> str:
        from ._cachekey import cache_key

        return cache_key(prompt, model, params, server=scope)

    def _use_cache(self, call: ImageCall) -> bool:
        return self.cache and not call.fresh

    def _cached(self, call: ImageCall, key: str) -> ImageResult | None:
        """The stored result of the same request, rebuilt from disk; None when not cached."""
        if not self._use_cache(call):
            return None
        try:
            return self.gallery().lookup(key)
        except StoreError as exc:
            self._warn(f"indox: the gallery could not be read, generating instead ({exc})")
            return None

    def _store(self, call: ImageCall, result: ImageResult, key: str, *, prompt: str | None = None,
               batch_id: str | None = None, report: bool = True) -> Any:
        """Keep every image received, before it is displayed. A failure is reported, not raised:
        the images were paid for and are still shown (and held in memory by the result).

        Returns the gallery's ``StoredImages`` (``.failed``: images it could not fetch or write),
        or None when the gallery could not be used. With ``report=False`` the caller reports
        failed images itself, so the gallery's own summary warning is dropped."""
        if getattr(result, "from_gallery", False):
            return None
        try:
            return self.gallery().add(result, source="magic", cache_key=key, batch_id=batch_id,
                                      prompt=prompt if prompt is not None else call.prompt, warn=report)
        except StoreError as exc:
            self._warn(f"indox: not kept in the gallery ({' '.join(str(exc).split())}); "
                       "use -o NAME or --save DIR to keep these images")
            return None

    @staticmethod
    def _warn(message: str) -> None:
        print(message, file=sys.stderr)

    def _account(self, result: ImageResult) -> None:
        if getattr(result, "from_gallery", False):
            self.gallery_hits += 1
            return
        self.session_cost += result.cost or 0.0
        self.session_images += len(result.images)

    def session_spend(self) -> float:
        """USD this kernel spent: the magics' own count, or the gallery's record of this process
        (which includes the panel) when that is higher."""
        spent = self.session_cost
        try:
            spent = max(spent, self.gallery().session_cost())
        except StoreError:
            pass
        return spent

    def _estimate(self, call: ImageCall, requests: Sequence[ImageRequest]) -> float | None:
        """Price x n for requests whose model's price the router lists; None when unknown."""
        if call.client_name is not None:
            return None
        client, _ = self.client(local=call.local)
        prices = self._prices.get(id(client))
        if prices is None:
            try:
                prices = {m.id: m.price for m in client.models() if m.price is not None}
            except Exception:  # offline, no key: the estimate is optional
                prices = {}
            self._prices[id(client)] = prices
        total = 0.0
        for request in requests:
            price = prices.get(request.model)
            if price is None:
                return None
            total += price * int(request.body.get("n") or 1)
        return total

    def _check_budget(self, call: ImageCall, requests: Sequence[ImageRequest]) -> None:
        """Refuse before sending once ``budget`` is spent (or would be by these requests)."""
        budget = self.budget
        if budget is None or not requests:
            return
        spent = self.session_spend()
        raise_to = money(max(budget * 2, spent + 1.0, 1.0))
        how = (f"raise it with %config IndoxMagics.budget = {raise_to.lstrip('$')} "
               "(or = None for no limit)")
        if spent >= budget:
            raise UsageError(f"budget reached: this session spent {money(spent)} of "
                             f"IndoxMagics.budget = {money(budget)}; nothing was sent; {how}")
        estimate = self._estimate(call, requests)
        if estimate is not None and spent + estimate > budget + 1e-9:
            raise UsageError(f"over budget: these {len(requests)} request(s) would cost about "
                             f"{money(estimate)} and this session spent {money(spent)} of "
                             f"IndoxMagics.budget = {money(budget)}; nothing was sent; {how}")

    # -- --each and several models: one grid ----------------------------------------------

    def _run_grid(self, call: ImageCall) -> ImageGrid:
        """Every (prompt, model) pair concurrently through ``batch.images_many``; one grid."""
        from . import batch

        pairs = [(p, m) for p in call.prompts for m in call.models]
        requests = []
        for prompt, model in pairs:  # every value checked before anything is sent
            requests.append(build_image_request(prompt, model, byok_api_key=call.byok, **call.options))
        client, fallback = self.client(local=call.local)
        scope = self._scope(call)
        keys = [self._cache_key(r.prompt, r.model, r.public_params, scope) for r in requests]

        hits: dict[str, ImageResult] = {}
        if self._use_cache(call):
            for key in dict.fromkeys(keys):
                hit = self._cached(call, key)
                if hit is not None:
                    hits[key] = hit
        missing = [r for r, k in zip(requests, keys) if k not in hits]
        self._check_budget(call, missing)
        if missing and fallback:
            print(LOCAL_NOTICE)

        batch_id = uuid.uuid4().hex
        seconds: list[float | None] = [None] * len(pairs)
        started = time.monotonic()

        def lookup(prompt: str, model: str, params: dict[str, Any]) -> ImageResult | None:
            return hits.get(self._cache_key(prompt, model, params, scope))

        def keep(index: int, outcome: Any) -> None:
            paid = outcome if isinstance(outcome, ImageResult) else getattr(outcome, "result", None)
            if isinstance(paid, ImageResult):  # a failed download was still charged: keep the row
                self._account(paid)
                self._store(call, paid, keys[index], prompt=requests[index].prompt, batch_id=batch_id)

        def on_result(index: int, outcome: Any) -> None:
            seconds[index] = time.monotonic() - started
            keep(index, outcome)

        items = [{"prompt": r.prompt, "model": r.model} for r in requests]
        shared: dict[str, Any] = dict(call.options, model=call.models[0])
        if call.byok is not None:
            shared["byok_api_key"] = call.byok
        try:
            outcomes = batch.images_many(client, items, concurrency=self.concurrency, progress=True,
                                         lookup=lookup, on_result=on_result, on_late=keep, **shared)
        except KeyboardInterrupt:
            # batch.images_many stops sending and reports what already arrived (stored above);
            # requests already sent finish in background threads and reach ``keep`` (on_late),
            # so what they bring is paid for and kept too. Say so, with numbers.
            done = sum(1 for t in seconds if t is not None)
            waiting = len(missing) - done
            note = f"indox: interrupted; {done} of {len(missing)} new result(s) were kept in the gallery"
            if waiting:
                note += (f"; of the other {waiting}, requests already sent finish in the background "
                         "and are kept in the gallery as they arrive; a re-run sends only the prompts "
                         "still missing")
            self._warn(note)
            raise
        for index, outcome in enumerate(outcomes):
            if getattr(outcome, "from_gallery", False):
                self.gallery_hits += 1
            paid = getattr(outcome, "result", None)
            if isinstance(outcome, ImageDownloadError) and isinstance(paid, ImageResult):
                # Some images of a paid result did not arrive: show the ones that did (they are
                # in the gallery already) and name the failure on one line, as a single cell does.
                # (The gallery tries each image once more when it stores the result.)
                arrived = [image for image in paid.images if image.loaded]
                if arrived and len(arrived) < len(paid.images):
                    self._warn(f"indox: {requests[index].model} for prompt {index // len(call.models) + 1}: "
                               f"{len(paid.images) - len(arrived)} of {len(paid.images)} image(s) did not "
                               f"arrive ({error_line(outcome, call.secrets, limit=160)}); showing the rest")
                if arrived:
                    paid.images = arrived
                    outcomes[index] = paid
        errors = {i: error_line(o, call.secrets) for i, o in enumerate(outcomes) if isinstance(o, BaseException)}
        grid = ImageGrid(call.prompts, call.models, outcomes, seconds=seconds, errors=errors,
                         options=self.grid_preview_options())
        self._finish(call, grid)
        return grid

    # -- %indox_models, %indox_login, %indox_usage ----------------------------------------

    @line_magic
    def indox_models(self, line: str = "") -> ModelsTable:
        """Table of the image models (the built-in list when the service is unreachable)."""
        from ._core import parse_models

        with self._expected_errors():
            client, fallback = self.client(local="--local" in line.split())
            note = "built-in local server" if fallback or client.is_local else None
            try:
                models = client.models()
            except NetworkError as exc:
                from .local import catalog

                models = parse_models(catalog.listing())
                note = f"offline list: {exc}"
        return ModelsTable(models, note)

    @line_magic
    def indox_login(self, line: str = "") -> None:
        """Ask for the IndoxRouter API key (hidden input); kept in memory for this session only."""
        import getpass

        try:
            key = getpass.getpass("IndoxRouter API key: ")
        except Exception as exc:  # no stdin (e.g. nbclient) or Ctrl-C in the prompt
            raise UsageError(f"could not read a key here ({type(exc).__name__}); "
                             f"set {API_KEY_ENV} instead") from None
        key = (key or "").strip()
        if not key:
            raise UsageError("no key entered; nothing changed")
        self._api_key = key
        self.close()
        print("API key set for this session (kept in memory only, never saved or shown).")

    @line_magic
    def indox_usage(self, line: str = "") -> UsageView:
        """Credits and usage from the service, this session's spend, and the gallery's total."""
        note = None
        try:
            client, fallback = self.client(local="--local" in line.split())
            note = "built-in local server" if fallback or client.is_local else None
            usage = client.usage()
        except IndoxRouterError as exc:  # still show what we know locally
            if self.show_tracebacks:
                raise
            usage, note = {}, f"service usage unavailable ({error_line(exc)})"
        gallery = self.gallery()
        try:
            store_total, store_images = gallery.total_cost(), len(gallery)
        except StoreError as exc:
            store_total = store_images = None
            note = "; ".join(filter(None, [note, f"gallery unavailable ({' '.join(str(exc).split())})"]))
        return UsageView(usage, self.session_spend(), self.session_images, note,
                         store_total=store_total, store_images=store_images, budget=self.budget,
                         gallery_hits=self.gallery_hits)

    @magic_arguments()
    @argument("-n", "--n", type=int, default=24, help="how many images (newest first; default 24)")
    @argument("--search", help="only prompts or revised prompts containing TEXT (any case)")
    @argument("--model", help="only this model (provider/name or just name)")
    @line_magic
    def indox_history(self, line: str = "") -> HistoryView:
        """Images kept in the gallery, newest first: thumbnail, prompt, revised prompt, model, cost, date."""
        args = self._parse(line, self.indox_history)
        with self._expected_errors():
            n = check_int("-n", args.n, 1, 10_000)
            search, model = _unquote(args.search), _unquote(args.model)
            gallery = self.gallery()
            entries = gallery.history(n, search=search or None, model=model or None)
        filters = [f"matching {search!r}" if search else "", f"model {model}" if model else ""]
        shown = " ".join(f for f in filters if f)
        note = f"{len(entries)} newest stored image(s){' ' + shown if shown else ''} · gallery {gallery.home}"
        return HistoryView(entries, note)

    @line_magic
    def indox_panel(self, line: str = "") -> Any:
        """Open the interactive panel (``indox_jupyter.panel()``) with this session's connection."""
        from ._panel import panel

        if line.strip():
            raise UsageError("%indox_panel takes no arguments; use indox_jupyter.panel(model=..., size=...) "
                             "to pre-fill it")
        if self._api_key or self.base_url:  # %indox_login or the base_url trait: same settings
            with self._expected_errors():
                current, _ = self.client()
                # Its own client: the magic closes its client when the settings change.
                own = self._new_client(current._core.api_key, None if current.is_local else current.base_url)
            opened = panel(own)
            opened._owns_client = True  # panel.close() releases it
            return opened
        return panel()


def load(shell: Any) -> IndoxMagics:
    """Register the magics on ``shell`` (what ``%load_ext indox_jupyter`` runs)."""
    magics = IndoxMagics(shell=shell)
    shell.register_magics(magics)
    return magics


def unload(shell: Any) -> None:
    """Undo ``load``: drop the magics, the display hook and the instance's clients."""
    manager = shell.magics_manager
    magics = manager.registry.pop(IndoxMagics.__name__, None)
    for kind, names in IndoxMagics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
    printers = shell.display_formatter.mimebundle_formatter.type_printers
    printers.pop(ImageResult, None)
    printers.pop(ImageGrid, None)
    if magics is not None:
        magics.close()
        if magics in shell.configurables:
            shell.configurables.remove(magics)
