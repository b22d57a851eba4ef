"""``%%indox_image`` and friends: a thin IPython shell over the client and the renderer.

One generation is a pipeline of small steps, each a method, so later features (the gallery's
cache and store) hook in between without touching the others::

    _parse(line)             flags -> argparse Namespace (bad flags: UsageError, nothing sent)
    _resolve(args, cell)     -> ImageCall: prompt filled from {variables}, defaults from traits,
                             --byok NAME looked up, --param parsed (nothing sent)
    _build_request(call)     -> ImageRequest: every value checked by the client's own rules
    _generate(call, request) -> ImageResult: the only step that talks to a server
    _finish(call, result)    -o NAME, --save DIR, session spend

The magic returns the ImageResult, so ``_``, ``Out[n]`` and ``-o`` hold it and it displays
once, through the formatter registered here with the preview traits.
Expected failures become one ``UsageError`` line; ``show_tracebacks`` re-raises them instead.
"""

from __future__ import annotations

import json
import keyword
import os
from collections.abc import Iterator
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
from .errors import IndoxRouterError, NetworkError, ValidationError
from .render import ModelsTable, PreviewOptions, UsageView, render_result

__all__ = ["IndoxMagics", "ImageCall"]

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


@magics_class
class IndoxMagics(Magics):
    """``%%indox_image``, ``%indox_models``, ``%indox_login``, ``%indox_usage``.

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

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._api_key: str | None = None  # set by %indox_login, memory only
        self._client: Any = None
        self._client_settings: tuple[Any, ...] | None = None
        self._local_client: Any = None
        self.session_cost = 0.0
        self.session_images = 0
        if shell is not None:
            shell.display_formatter.mimebundle_formatter.for_type(ImageResult, self._format_result)

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

    # -- errors ---------------------------------------------------------------------------

    @contextmanager
    def _expected_errors(self, secrets: tuple[str | None, ...] = ()) -> Iterator[None]:
        try:
            yield
        except IndoxRouterError as exc:
            if self.show_tracebacks:
                raise
            message = " ".join(redact(str(exc), secrets).split())
            raise UsageError(f"{type(exc).__name__}: {message}") from None

    # -- %%indox_image --------------------------------------------------------------------

    @magic_arguments()
    @argument("-m", "--model", help="provider/model, e.g. openai/dall-e-3 (default: the model trait)")
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
    @argument("-h", "--help", action="store_true", help="show this help")
    @argument("prompt", nargs="*", help="the prompt (line magic); for %%%%indox_image it is the cell body")
    @no_var_expand
    @line_cell_magic
    def indox_image(self, line: str, cell: str | None = None) -> ImageResult | None:
        """Generate images; {name} and {obj.attr} in the prompt come from the notebook."""
        args = self._parse(line)
        if args.help:
            print(self.indox_image.parser.format_help().lstrip(": \n"))
            return None
        call = ImageCall(prompt="", model=self.model)
        with self._expected_errors(call.secrets):
            call = self._resolve(args, cell)
        with self._expected_errors(call.secrets):
            request = self._build_request(call)
            result = self._generate(call, request)
            self._finish(call, result)
        return result

    def _parse(self, line: str) -> Any:
        return parse_argstring(self.indox_image, line)

    def _resolve(self, args: Any, cell: str | None) -> ImageCall:
        """Flags, traits and notebook variables -> one ImageCall. Sends nothing."""
        words = " ".join(args.prompt).strip()
        if cell is not None and words:
            raise ValidationError("the prompt goes in the cell body for %%indox_image; "
                                  f"unexpected words on the magic line: {words[:40]!r}")
        template = cell if cell is not None else (_unquote(words) or "")
        if not template.strip():
            raise ValidationError("the prompt is empty: write what you want to see, e.g. "
                                  "%indox_image a lighthouse at dusk")
        ns = self.shell.user_ns if self.shell is not None else {}
        prompt = _prompt.interpolate(template.strip(), ns)

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
        return ImageCall(
            prompt=prompt,
            model=_unquote(args.model) or self.model,
            options=options,
            byok=self._byok(args.byok, ns),
            client_name=client_name,
            local=args.local,
            out=_variable_name("-o/--out", args.out),
            save=_unquote(args.save),
        )

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
        """Ask a server for the images (the one step with I/O) and fetch their bytes."""
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
        for image in result.images:
            image.data  # download now: an expired URL is an error here, not a broken display
        return result

    def _finish(self, call: ImageCall, result: ImageResult) -> None:
        self.session_cost += result.cost or 0.0
        self.session_images += len(result.images)
        if call.out is not None:
            self.shell.user_ns[call.out] = result
        if call.save is not None:
            try:
                paths = result.save(call.save)
            except OSError as exc:
                raise ValidationError(f"--save {call.save}: {exc.strerror or exc}") from None
            print(f"saved {len(paths)} file(s) to {os.path.abspath(call.save)}")

    # -- %indox_models, %indox_login, %indox_usage ----------------------------------------

    @line_magic
    def indox_models(self, line: str = "") -> ModelsTable:
        """Table of the image models (the built-in list when the service is unreachable)."""
        from ._core import parse_models

        client, fallback = self.client(local="--local" in line.split())
        note = "built-in local server" if fallback or client.is_local else None
        with self._expected_errors():
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
        """Credits and usage from the service, plus what this session spent through the magics."""
        client, fallback = self.client(local="--local" in line.split())
        with self._expected_errors():
            usage = client.usage()
        note = "built-in local server" if fallback or client.is_local else None
        return UsageView(usage, self.session_cost, self.session_images, note)


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
    shell.display_formatter.mimebundle_formatter.type_printers.pop(ImageResult, None)
    if magics is not None:
        magics.close()
        if magics in shell.configurables:
            shell.configurables.remove(magics)
