"""Keeping keys, tokens and BYOK values out of every string we show or store."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

# Anything that looks like a credential inside free text (server details, URLs, logs).
# Each pattern keeps its first group (the label) and hides the rest.
_CREDENTIAL_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(
        r"(?i)((?:api[_-]?key|access_token|token|byok_api_key|x-api-key)[\"']?\s*[:=]\s*[\"']?)"
        r"[^\s\"',;&}]{6,}"
    ),
    re.compile(r"\b()(?:sk|ir|rk|pk|xai)-[A-Za-z0-9_-]{12,}\b"),
]

SECRET_PARAM_NAMES = frozenset({"byok_api_key", "api_key", "access_token", "token", "password"})


def mask(secret: str | None) -> str:
    """A hint that tells two keys apart without revealing either: ``ir-…cdef``."""
    if not secret:
        return "<none>"
    if len(secret) < 12:
        return "…"
    prefix = secret.split("-", 1)[0] + "-" if "-" in secret[:5] else ""
    return f"{prefix}…{secret[-4:]}"


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove the given secrets and anything credential-shaped from ``text``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern in _CREDENTIAL_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


def without_secrets(params: dict) -> dict:
    """A copy of request parameters safe to store or display, nested values included.

    Extra keyword arguments travel inside ``additional_params``, so ``images(..., api_key=...)``
    puts a secret one level down: secret-named keys are dropped at every depth.
    """

    def clean(value: object) -> object:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if not (isinstance(k, str) and k.lower() in SECRET_PARAM_NAMES)}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(params)  # type: ignore[return-value]


class RedactingFilter(logging.Filter):
    """Rewrites log records so credential-shaped text never reaches a handler.

    httpcore's DEBUG trace prints response headers, and the key exchange's ``Set-Cookie`` carries
    the access token: a user who turns on DEBUG logging in a notebook would print it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


# Logger filters do not apply to child loggers, so each logger that traces HTTP gets one.
_HTTP_LOGGERS = ("httpx", "httpcore", "httpcore.http11", "httpcore.http2", "httpcore.connection",
                 "httpcore.proxy")
_FILTER = RedactingFilter()


def guard_http_logs() -> None:
    """Install the filter once on the HTTP libraries' loggers (idempotent)."""
    for name in _HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
