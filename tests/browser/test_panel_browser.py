"""The panel in a real JupyterLab 4 and Notebook 7, driven through headless Chromium.

What only a browser can show: the widgets render and react, a click runs in the background while
the kernel answers other cells, Cancel frees the UI, and nothing secret reaches the page or the
saved notebook (with widget state saving switched on). Run with INDOX_SCREENSHOT=1 to refresh
docs/panel.png.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from ..conftest import TEST_API_KEY, TEST_BYOK
from .conftest import KERNEL_READY, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

DOCS_PNG = Path(__file__).resolve().parents[2] / "docs" / "panel.png"
PROMPT = "a lighthouse at dusk"
REVISED = (f"A detailed, high-resolution digital illustration of {PROMPT}, "
           "with soft natural lighting and a balanced composition")
CELLS = [
    "import indox_jupyter\np = indox_jupyter.panel()\np",
    # Runs while a slow generation is in flight: the answer says whether it still was.
    "answers = globals().get('answers', 0) + 1\n"
    "print('kernel answered', answers, 'while generating:', p.generate_button.disabled)",
]
SLOW = 4.0  # seconds the local server takes per generation in the responsiveness part


def open_notebook(page: Any, jupyter: dict[str, Any], name: str) -> None:
    path = "lab/tree" if jupyter["app"] == "lab" else "notebooks"
    page.goto(f"{jupyter['base']}/{path}/{name}?token={jupyter['token']}")
    page.wait_for_function(KERNEL_READY, timeout=60_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def run_cell(page: Any, index: int) -> None:
    page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")


def test_panel_generate_refine_cancel_while_kernel_answers(jupyter, router, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    router.latency = 0.0
    write_notebook(jupyter["root"] / "panel.ipynb", CELLS)
    open_notebook(page, jupyter, "panel.ipynb")

    panel = page.locator(".indox-panel")
    expect(panel).to_be_visible(timeout=60_000)
    generate = panel.locator("button.widget-button", has_text="Generate")
    cancel = panel.locator("button.widget-button", has_text="Cancel")
    status = panel.locator(".indox-status")
    prompt = panel.locator(".indox-prompt textarea")
    expect(generate).to_be_enabled()
    expect(cancel).to_be_hidden()

    # Tidy at 800 px: the panel keeps to its width and nothing overflows sideways.
    box = panel.bounding_box()
    assert box is not None and box["width"] <= 800
    assert panel.evaluate("el => el.scrollWidth <= el.clientWidth + 1")

    # Type, Generate, and the image with its revised prompt appears in the panel.
    prompt.fill(PROMPT)
    generate.click()
    card = panel.locator(".indox-card").first
    expect(card.locator(".indox-revised")).to_contain_text(REVISED, timeout=60_000)
    image = card.locator("img")
    expect(image).to_be_visible()
    page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=image.element_handle())
    expect(card.locator(".indox-meta")).to_contain_text("openai/dall-e-3 · 1024x1024 · $0.040")
    expect(status).to_contain_text("Done: openai/dall-e-3")

    # Use revised prompt copies it into the prompt box.
    card.locator(".indox-use-revised").click()
    expect(prompt).to_have_value(REVISED)

    # A BYOK key typed in the page goes to kernel memory; the box empties itself.
    panel.locator(".jupyter-widget-Collapse-header, .widget-collapse-header, .lm-AccordionPanel-title",
                  has_text="Advanced").first.click()
    byok = panel.locator(".indox-byok input")
    byok.fill(TEST_BYOK)
    byok.press("Enter")
    expect(byok).to_have_value("")
    expect(byok).to_have_attribute("placeholder", "key set for this session (kernel memory only); type to replace")

    # A slow generation: the kernel still answers another cell meanwhile; then Cancel.
    router.latency = SLOW
    generate.click()
    expect(cancel).to_be_visible()
    expect(generate).to_be_disabled()
    run_cell(page, 1)
    answer = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-OutputArea-output")
    expect(answer).to_contain_text("kernel answered 2 while generating: True", timeout=60_000)
    cancel.click()
    expect(generate).to_be_enabled()
    expect(cancel).to_be_hidden()
    expect(status).to_contain_text("Cancelled")
    # The cancelled request still completes: paid for, so it is kept and shown, marked.
    expect(panel.locator(".indox-card").first.locator(".indox-note")).to_have_text(
        "arrived after Cancel (paid, kept in the gallery)", timeout=60_000)
    router.latency = 0.0

    if os.environ.get("INDOX_SCREENSHOT") == "1" and jupyter["app"] == "lab":
        _screenshot(page, panel)

    # Nothing secret in the page, nor in the saved notebook (widget state saving is on).
    html = page.content()
    assert TEST_API_KEY not in html and TEST_BYOK not in html
    saved_before = (jupyter["root"] / "panel.ipynb").stat().st_mtime_ns
    run_cell(page, 1)  # focus in the notebook, then save it
    page.keyboard.press("Control+s")
    notebook = jupyter["root"] / "panel.ipynb"
    deadline = time.monotonic() + 30
    while notebook.stat().st_mtime_ns == saved_before and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    text = notebook.read_text()
    assert "kernel answered" in text  # the save happened
    assert "application/vnd.jupyter.widget-state+json" in text  # with widget state in it
    assert TEST_API_KEY not in text and TEST_BYOK not in text
    assert TEST_BYOK not in jupyter["log"].read_text()


def _screenshot(page: Any, panel: Any) -> None:
    """Refresh docs/panel.png: a second generation with another model, then the panel alone."""
    from playwright.sync_api import expect

    panel.locator("button.widget-button", has_text="Forget key").click()  # billed normally again
    panel.locator(".jupyter-widget-Collapse-header, .widget-collapse-header, .lm-AccordionPanel-title",
                  has_text="Advanced").first.click()  # fold Advanced away
    panel.locator(".indox-model select").select_option("openai/dall-e-2")
    panel.locator(".indox-prompt textarea").fill("a paper boat on a calm lake, watercolour")
    panel.locator(".indox-size select").select_option("512x512")
    panel.locator(".indox-n input").fill("2")
    panel.locator(".indox-n input").press("Tab")
    panel.locator("button.widget-button", has_text="Generate").click()
    expect(panel.locator(".indox-card").first.locator(".indox-meta")).to_contain_text(
        "openai/dall-e-2 · #1 of 2", timeout=60_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.indox-card img')].every(i => i.complete && i.naturalWidth > 0)")
    DOCS_PNG.parent.mkdir(parents=True, exist_ok=True)
    panel.screenshot(path=str(DOCS_PNG))
