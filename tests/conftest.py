"""Shared fixtures: a real IndoxRouter-compatible server on loopback, and clients pointed at it."""

from __future__ import annotations

import os

import pytest

from indox_jupyter import Client
from indox_jupyter.local import LocalServer

# Looks like a real key so that redaction and secret scans are meaningful.
TEST_API_KEY = "ir-test-0123456789abcdefSECRET"
TEST_BYOK = "sk-byok-9876543210fedcbaSECRET"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    """No test reads the developer's real key, base URL or gallery."""
    for name in ("INDOX_ROUTER_API_KEY", "INDOX_ROUTER_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INDOX_JUPYTER_HOME", str(tmp_path_factory.mktemp("indox-home")))


@pytest.fixture(scope="session")
def _session_server():
    with LocalServer() as server:
        yield server


@pytest.fixture()
def server(_session_server):
    """The session's local server, with faults, counters and latency reset for each test."""
    _session_server.reset()
    _session_server.latency = 0.0
    _session_server.fail_rate = 0.0
    yield _session_server
    _session_server.reset()


@pytest.fixture()
def sleeps():
    return []


@pytest.fixture()
def client(server, sleeps):
    """A sync client whose retry sleeps are recorded instead of waited."""
    with Client(TEST_API_KEY, base_url=server.url) as c:
        c._sleep = sleeps.append
        yield c


@pytest.fixture(scope="session")
def shell():
    """The in-process IPython shell (one per test session)."""
    from IPython.testing.globalipapp import get_ipython
    from IPython.terminal.interactiveshell import TerminalInteractiveShell

    # get_ipython() starts the test shell once and returns None on later calls.
    return get_ipython() or TerminalInteractiveShell.instance()


@pytest.fixture()
def ip(shell, server, monkeypatch):
    """The shell with ``indox_jupyter`` loaded and pointed at the test server (with a key)."""
    monkeypatch.setenv("INDOX_ROUTER_BASE_URL", server.url)
    monkeypatch.setenv("INDOX_ROUTER_API_KEY", TEST_API_KEY)
    shell.extension_manager.load_extension("indox_jupyter")
    before = set(shell.user_ns)
    yield shell
    shell.extension_manager.unload_extension("indox_jupyter")
    shell.config.pop("IndoxMagics", None)  # %config writes here too; keep tests independent
    for name in set(shell.user_ns) - before:
        del shell.user_ns[name]


def generation_requests(server) -> list[dict]:
    return [r for r in server.requests if r["path"] == "/api/v1/images/generations"]


def pytest_collection_modifyitems(config, items):
    if os.environ.get("INDOX_SKIP_BROWSER"):
        skip = pytest.mark.skip(reason="INDOX_SKIP_BROWSER is set")
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip)
