"""Small helpers for tests that drive the magics in the in-process shell (fixtures: conftest)."""

from __future__ import annotations

from indox_jupyter import ImageResult
from indox_jupyter.magics import IndoxMagics


def magics(shell) -> IndoxMagics:
    return shell.magics_manager.registry["IndoxMagics"]


def cell(ip, line: str, body: str = "a lighthouse at dusk") -> ImageResult:
    return ip.run_cell_magic("indox_image", line, body)


def html_of(ip, result) -> str:
    data, _ = ip.display_formatter.format(result)
    return data["text/html"]
