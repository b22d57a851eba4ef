"""Fixtures for the browser tests: a LocalServer here, JupyterLab / Notebook 7 in a subprocess, Chromium.

Follows ../../../shared/browser-testing.md (verified recipe): isolated JUPYTER_* dirs, loopback only,
``--ServerApp.port_retries=0``, readiness by polling /api/status, SIGTERM on teardown, Debian's
/usr/bin/chromium driven by Playwright (never ``playwright install``).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from indox_jupyter.local import LocalServer

from ..conftest import TEST_API_KEY

CHROMIUM = Path("/usr/bin/chromium")
KERNEL_READY = """() => {
  const n = document.querySelector('.jp-Toolbar-kernelName')?.textContent.trim();
  const s = document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status;
  return !!n && n !== 'No Kernel' && s === 'idle';
}"""


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """No Chromium: skip locally, but fail in CI (a browser test that never runs proves nothing)."""
    if CHROMIUM.exists():
        return
    in_ci = os.environ.get("CI", "").lower() == "true"
    for item in items:
        if "browser" in item.keywords and not in_ci:
            item.add_marker(pytest.mark.skip(reason=f"{CHROMIUM} not found (apt-get install chromium)"))


def write_notebook(path: Path, cells: list[str]) -> None:
    body = [{"cell_type": "code", "id": f"c{i}", "source": src, "metadata": {}, "outputs": [],
             "execution_count": None} for i, src in enumerate(cells)]
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": meta, "cells": body}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def router() -> Iterator[LocalServer]:
    """The IndoxRouter stand-in the kernel talks to (it runs in this process, so tests steer it)."""
    with LocalServer() as server:
        yield server


@pytest.fixture(scope="module", params=["lab", "notebook"])
def jupyter(request: Any, router: LocalServer, tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    """A Jupyter server on loopback whose kernels see the local router and a private gallery."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is required in CI (CI=true); .ci/run installs it")
    root, home = tmp_path_factory.mktemp("nbroot"), tmp_path_factory.mktemp("jhome")
    settings = home / "config/lab/user-settings"
    (settings / "@jupyterlab/apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab/apputils-extension/notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false"}')  # the news toast would cover the page
    # Save widget state into the notebook, so the test can prove no key ends up in it.
    (settings / "@jupyter-widgets/jupyterlab-manager").mkdir(parents=True)
    (settings / "@jupyter-widgets/jupyterlab-manager/plugin.jupyterlab-settings").write_text(
        '{"saveState": true}')
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        INDOX_ROUTER_BASE_URL=router.url, INDOX_ROUTER_API_KEY=TEST_API_KEY,
        INDOX_JUPYTER_HOME=str(home / "indox"),
    )
    log_path = home / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", request.param, "--no-browser", "--allow-root",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeError(log_path.read_text()) from None
                time.sleep(0.25)
        try:
            yield {"app": request.param, "base": base, "token": token, "root": root,
                   "log": log_path, "gallery": home / "indox"}
        finally:
            proc.terminate()  # SIGTERM: the server shuts its kernels down and exits
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture()
def browser_page() -> Iterator[Any]:
    """A fresh headless Chromium page (named so as not to clash with pytest-playwright's ``page``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()
