"""%%indox_image output in a real JupyterLab 4 and Notebook 7, driven through headless Chromium.

What only a browser can show: the WebP previews decode, the revised prompt is on screen, and a
prompt full of markup stays literal text in a trusted output (where the front end *would* run a
``<script>``). Run with INDOX_SCREENSHOT=1 to refresh docs/magic-lab.png.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from .conftest import KERNEL_READY, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

DOCS_PNG = Path(__file__).resolve().parents[2] / "docs" / "magic-lab.png"
MARKUP = "a <b>bold</b> <script>window.__pwned=1</script> lighthouse"
PLAIN = "a red kite over the dunes at dusk"
REVISED = (f"A detailed, high-resolution digital illustration of {PLAIN}, "
           "with soft natural lighting and a balanced composition")
CELLS = [
    "%load_ext indox_jupyter",
    f"%%indox_image -m openai/dall-e-2 -s 512x512 -n 2\n{MARKUP}",
    f"%%indox_image -m openai/dall-e-3\n{PLAIN}",
]
EXECUTED = re.compile(r"^\s*\[\d+\]:\s*$")
ALL_DECODED = "els => els.length > 0 && els.every(i => i.complete && i.naturalWidth > 0)"


def test_magic_outputs_decode_and_stay_escaped(jupyter, router, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    router.latency = 0.0
    write_notebook(jupyter["root"] / "magic.ipynb", CELLS)
    path = "lab/tree" if jupyter["app"] == "lab" else "notebooks"
    page.goto(f"{jupyter['base']}/{path}/magic.ipynb?token={jupyter['token']}")
    page.wait_for_function(KERNEL_READY, timeout=60_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

    # Every cell has run ([n]:, not [ ]: or [*]:) before anything is judged.
    cells = page.locator(".jp-Notebook .jp-Cell")
    expect(cells).to_have_count(len(CELLS))
    expect(cells.locator(".jp-InputArea-prompt")).to_have_text([EXECUTED] * len(CELLS), timeout=90_000)

    # No kernel error anywhere (checked first, so a failure shows the traceback, not a timeout).
    errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    tracebacks = errors.filter(has_text="Traceback")
    assert tracebacks.count() == 0, tracebacks.all_inner_texts()

    first = cells.nth(1).locator(".jp-OutputArea-output .indox-result")
    second = cells.nth(2).locator(".jp-OutputArea-output .indox-result")
    expect(first).to_have_count(1)
    expect(second).to_have_count(1)

    # The previews decode: 2 from dall-e-2, 1 from dall-e-3 (lazy images: scroll each into view).
    for result, count in ((first, 2), (second, 1)):
        images = result.locator("img")
        expect(images).to_have_count(count)
        for i in range(count):
            images.nth(i).scroll_into_view_if_needed()
        page.wait_for_function(ALL_DECODED, arg=images.element_handles(), timeout=60_000)
        assert all(w > 0 for w in images.evaluate_all("els => els.map(i => i.naturalWidth)"))

    # The markup prompt is literal, visible text; nothing in it became an element or ran.
    first.scroll_into_view_if_needed()
    shown = first.get_by_text(MARKUP, exact=True)
    expect(shown).to_have_count(1)
    expect(shown).to_be_visible()
    expect(first.get_by_text("<script>", exact=False).first).to_be_visible()
    expect(first.locator("b", has_text="bold")).to_have_count(0)
    expect(page.locator(".jp-OutputArea-output script")).to_have_count(0)
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    expect(first.locator("img").first).to_have_attribute("alt", MARKUP)
    expect(first).to_contain_text("no revised prompt")  # dall-e-2 does not rewrite prompts
    # Two prices in one output must stay text: the front ends' MathJax would typeset "$…$" as maths.
    expect(first).to_contain_text("total $0.036 ($0.018 each)")
    expect(first.locator("mjx-container, .MathJax")).to_have_count(0)

    # dall-e-3's revised prompt is on screen, its added words marked.
    second.scroll_into_view_if_needed()
    caption = second.locator("figcaption")
    expect(caption).to_contain_text(REVISED)
    expect(caption).to_be_visible()
    expect(caption.locator("mark").first).to_be_visible()
    expect(second).to_contain_text("openai/dall-e-3")

    if os.environ.get("INDOX_SCREENSHOT") == "1" and jupyter["app"] == "lab":
        _screenshot(page)


def _screenshot(page: Any) -> None:
    """Refresh docs/magic-lab.png: Lab's notebook area at a 1200 px viewport, cropped below the last cell."""
    page.set_viewport_size({"width": 1200, "height": 1700})
    page.evaluate("() => document.querySelectorAll('.jp-OutputArea img').forEach(i => i.loading = 'eager')")
    cells = page.locator(".jp-Notebook .jp-Cell")
    cells.first.locator(".jp-InputPrompt").click()  # the active-cell bar on the short first cell
    cells.first.scroll_into_view_if_needed()
    page.wait_for_function(ALL_DECODED, arg=page.locator(".jp-OutputArea img").element_handles())
    panel = page.locator(".jp-NotebookPanel:visible").first.bounding_box()
    last = cells.last.bounding_box()
    assert panel is not None and last is not None
    bottom = min(last["y"] + last["height"] + 16, panel["y"] + panel["height"])
    DOCS_PNG.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_PNG), clip={"x": panel["x"], "y": panel["y"], "width": panel["width"],
                                              "height": bottom - panel["y"]})
