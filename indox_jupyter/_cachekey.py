"""The gallery's cache key: which earlier generation a request would simply repeat.

Two requests share a key when they would ask the provider for the same thing: same prompt
(surrounding whitespace ignored, as the client strips it before sending), same ``provider/model``
and same parameters after normalisation. Normalisation, applied recursively:

* ``None`` values are dropped (an unset flag and ``flag=None`` send the same request), and so is
  a nested dict left empty once its secrets and Nones are gone;
* keys are sorted; integral floats become ints (``guidance_scale=7`` == ``7.0``);
* anything secret is removed: keys named like credentials (``byok_api_key``, ``api_key``,
  ``token``, ``password``, ``*_secret`` …) and string values shaped like a credential
  (``sk-…``, ``Bearer …``). A key can therefore never be recovered from, or change, the hash;
* ``prompt`` and ``model`` inside params are ignored (they are key parts of their own), and so is
  ``response_format``: URL or base64 is only how the bytes travel, the gallery holds the bytes.

Whether BYOK was used is deliberately *not* part of the key: it decides who pays, not which
images come back, and a cache hit costs nothing either way. Which *server* answered is part of
it (see :func:`server_scope`): the built-in local server's sample images must never stand in for
IndoxRouter's, nor the other way round.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from ._redact import SECRET_PARAM_NAMES, redact, without_secrets

CACHE_KEY_VERSION = 1

# Parameter names that must never be stored or hashed, beyond the client's explicit list.
_SECRET_NAME = re.compile(
    r"(?i)(^|[_-])(api[_-]?key|key|secret|token|password|passwd|pwd|authorization|auth|"
    r"credentials?|cookie|bearer)$|byok|access[_-]?token|client[_-]?secret|private[_-]?key"
)
# Request fields that do not change which images come back.
_NOT_IN_KEY = frozenset({"prompt", "model", "response_format"})


def is_secret_name(name: str) -> bool:
    """True for a parameter name that may hold a credential."""
    return name.lower() in SECRET_PARAM_NAMES or bool(_SECRET_NAME.search(name))


def _looks_secret(value: str) -> bool:
    return redact(value) != value


def scrub(value: Any) -> Any:
    """``value`` with secrets and ``None`` removed, recursively; JSON-ready.

    Used both for what the gallery stores as params and for what the cache key hashes.
    """
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in without_secrets(dict(value)).items():
            key = str(key)
            if item is None or is_secret_name(key):
                continue
            if isinstance(item, str) and _looks_secret(item):
                continue
            cleaned = scrub(item)
            if cleaned == {} and item != {}:
                continue  # held only secrets or Nones: as if it had not been given
            out[key] = cleaned
        return out
    if isinstance(value, (list, tuple)):
        return [
            scrub(item) for item in value
            if item is not None and not (isinstance(item, str) and _looks_secret(item))
        ]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return int(value) if value.is_integer() else value
    return str(value)  # a Path, a Decimal …: hash what it prints as, never fail


def server_scope(client: Any) -> str | None:
    """The server part of a key: None for IndoxRouter itself, ``"local"`` for the built-in
    server, else the base URL (another deployment, a proxy). Foreign client objects are scoped
    by their type, since we cannot know where they send requests."""
    if client is None:
        return None
    if not hasattr(client, "is_local"):
        return f"client:{type(client).__module__}.{type(client).__qualname__}"
    return scope_of(bool(client.is_local), str(getattr(client, "base_url", "") or ""))


def scope_of(local: bool, base_url: str) -> str | None:
    """:func:`server_scope` from a client's settings (the client core stamps results with it)."""
    from ._core import DEFAULT_BASE_URL

    if local:
        return "local"
    url = base_url.rstrip("/")
    return None if not url or url == DEFAULT_BASE_URL else url


def canonical_request(prompt: str | None, model: str | None, params: Mapping[str, Any] | None,
                      server: str | None = None) -> str:
    """The exact text that :func:`cache_key` hashes (handy when debugging a miss)."""
    cleaned = scrub(dict(params or {}))
    for name in _NOT_IN_KEY:
        cleaned.pop(name, None)
    document = {
        "v": CACHE_KEY_VERSION,
        "prompt": (prompt or "").strip(),
        "model": (model or "").strip(),
        "params": cleaned,
    }
    if server is not None:  # absent for IndoxRouter, so its keys stay as they always were
        document["server"] = server
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_key(prompt: str | None, model: str | None, params: Mapping[str, Any] | None = None,
              *, server: str | None = None) -> str:
    """sha256 (hex) of the canonical JSON of prompt, model, normalised secret-free params and the
    server scope (:func:`server_scope`)."""
    text = canonical_request(prompt, model, params, server)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
