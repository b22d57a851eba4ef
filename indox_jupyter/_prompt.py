"""Filling ``{name}`` and ``{expr.attr}`` in a prompt from the notebook's variables.

IPython expands variables on a magic's line but never in a cell body, and it silently leaves
unknown names as they are. A prompt is sent to a paid service, so here an unknown name is an
error (nothing is sent) and ``{{``/``}}`` are the only way to write a literal brace.
Pure: no IPython import, the namespace is passed in.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

from .errors import ValidationError

__all__ = ["PromptError", "interpolate", "names_in"]

_BRACE_HINT = "write {{ and }} for literal braces"
_MAX_WIDTH = 10_000


class PromptError(ValidationError):
    """The prompt template could not be filled; nothing was sent."""


class _Formatter(string.Formatter):
    """``str.format`` rules, but fields come only from the given namespace and never from dunders."""

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self._ns = namespace

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        first, rest = _split_field(field_name)
        if not first.isidentifier():
            raise PromptError(f"{{{field_name}}} is not a variable name ({_BRACE_HINT})")
        if first not in self._ns:
            raise PromptError(f"{{{field_name}}}: no variable named {first!r} in the notebook; "
                              f"define it first, or {_BRACE_HINT}")
        obj = self._ns[first]
        for is_attr, key in rest:
            if is_attr:
                if key.startswith("_"):
                    raise PromptError(f"{{{field_name}}}: private attribute {key!r} is not allowed in a prompt")
                try:
                    obj = getattr(obj, key)
                except AttributeError:
                    raise PromptError(
                        f"{{{field_name}}}: {type(obj).__name__} object has no attribute {key!r}"
                    ) from None
            else:
                try:
                    obj = obj[key]
                except (KeyError, IndexError, TypeError):
                    raise PromptError(f"{{{field_name}}}: no item [{key!r}]") from None
        return obj, first

    def check_unused_args(self, used_args: Any, args: Any, kwargs: Any) -> None:
        return None

    def format_field(self, value: Any, format_spec: str) -> Any:
        # {x:>2000000000} would build gigabytes before any length check could run.
        if any(int(number) > _MAX_WIDTH for number in re.findall(r"\d+", format_spec)):
            raise PromptError(f"format {format_spec!r:.40} asks for more than {_MAX_WIDTH:,} characters")
        return super().format_field(value, format_spec)


def _split_field(field_name: str) -> tuple[str, list[tuple[bool, Any]]]:
    try:
        first, rest = string._string.formatter_field_name_split(field_name)  # type: ignore[attr-defined]
    except ValueError as exc:
        raise PromptError(f"{{{field_name}}} is malformed ({exc}); {_BRACE_HINT}") from None
    if not isinstance(first, str):  # {0}: positional fields make no sense in a prompt
        raise PromptError(f"{{{field_name}}} is a position, not a variable name; {_BRACE_HINT}")
    return first, list(rest)


def interpolate(template: str, namespace: Mapping[str, Any]) -> str:
    """``template`` with every ``{field}`` filled from ``namespace``; PromptError otherwise."""
    if "{" not in template and "}" not in template:
        return template
    try:
        if any(field == "" for _, field, _, _ in string.Formatter().parse(template)):
            raise PromptError(f"empty {{}} in the prompt: put a variable name inside, or {_BRACE_HINT}")
        return _Formatter(namespace).vformat(template, (), {})
    except PromptError:
        raise
    except ValueError as exc:  # "Single '}' encountered", bad format spec, ...
        raise PromptError(f"the prompt has a stray brace or bad format ({exc}); {_BRACE_HINT}") from None
    except (TypeError, AttributeError, KeyError, IndexError) as exc:  # format spec on the wrong type
        raise PromptError(f"could not fill the prompt: {type(exc).__name__}: {exc}") from None


def names_in(template: str) -> list[str]:
    """Top-level variable names the template refers to (for help and tests)."""
    names: list[str] = []
    for _, field, _, _ in string.Formatter().parse(template):
        if field:
            first, _ = _split_field(field)
            if first not in names:
                names.append(first)
    return names
