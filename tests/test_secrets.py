"""Secret scan: the API key, the exchanged token and a BYOK value never leave in anything we show.

Every error path of the client is driven with a recognisable key and BYOK value while the
server *echoes them back* (in ``detail``, ``message``, an HTML title, a non-JSON body, a header).
Then exception texts and reprs, ``.detail``, warnings, every log record at DEBUG (ours, httpx,
httpcore), result reprs/params/JSON, the server's ``/_local/requests`` and the gallery's
database and folder are scanned for each secret: zero hits. The notebook-level scan (saved
.ipynb after a real kernel) is in tests/test_notebooks.py; this file covers the rest.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import httpx
import pytest

import indox_jupyter as ij
from indox_jupyter import Client
from indox_jupyter.local import Fault

from .conftest import TEST_API_KEY, TEST_BYOK

# A second BYOK value passed as a nested extra parameter (where a careless filter would miss it).
NESTED_SECRET = "sk-nested-5555666677778888SECRET"


def echo_text(token: str | None) -> str:
    return f"key={TEST_API_KEY} Bearer {token} byok {TEST_BYOK} nested {NESTED_SECRET}"


def error_faults(token: str | None) -> list[tuple[str, Fault]]:
    echo = echo_text(token)
    faults = [(f"status-{s}", Fault(status=s, body={"detail": echo}, times=3))
              for s in (400, 401, 402, 403, 404, 409, 418, 422, 429, 500, 502, 503, 504)]
    faults += [
        ("detail-list", Fault(status=422, body={"detail": [{"loc": ["body", "byok_api_key"], "msg": echo}]})),
        ("success-false", Fault(status=200, body={"success": False, "message": echo})),
        ("html-title", Fault(status=502, body=f"<html><title>{echo}</title></html>", content_type="text/html", times=3)),
        ("plain-text-200", Fault(status=200, body=echo, content_type="text/plain")),
        ("header-echo", Fault(status=429, headers={"Retry-After": "0", "X-Debug": echo}, times=3)),
        ("reset", Fault(action="reset", size=10)),
        ("lose", Fault(action="lose")),
    ]
    return faults


def scan(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{where} leaks {secret[:6]}…"
        assert secret[-12:] not in text, f"{where} leaks the tail of {secret[:6]}…"


def test_every_error_path_keeps_every_secret_out(server, sleeps, caplog, recwarn):
    caplog.set_level(logging.DEBUG)  # ours, httpx, httpcore: everything
    shown: list[str] = []
    with Client(TEST_API_KEY, base_url=server.url) as client:
        client._sleep = sleeps.append
        client.images("warm up")  # the key exchange: now there is a token to leak too
        token = client._core.token
        assert token and token != TEST_API_KEY
        secrets = [TEST_API_KEY, token, TEST_BYOK, NESTED_SECRET]
        for name, fault in error_faults(token):
            server.script(fault)
            try:
                result = client.images("a cat", byok_api_key=TEST_BYOK, options={"api_key": NESTED_SECRET})
            except ij.IndoxRouterError as exc:
                shown += [f"{name}: {exc}", repr(exc), str(exc.detail), str(exc.args)]
            else:  # plain-text-200 cannot succeed; any success must be clean too
                shown += [repr(result), str(result.params), str(result.to_dict())]
            finally:
                server.reset()  # forget the fault's leftovers and tokens: the next round re-authenticates
                client._core.token = None
        shown.append(repr(client))
    for i, text in enumerate(shown):
        scan(text, secrets, f"shown[{i}] {text[:40]!r}")
    scan("\n".join(str(w.message) for w in recwarn), secrets, "warnings")
    ours = [r for r in caplog.records if not r.name.startswith("httpcore")]
    scan("\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in ours), secrets, "log records")


def test_httpcore_debug_log_holds_no_token(server, caplog):
    caplog.set_level(logging.DEBUG)
    with Client(TEST_API_KEY, base_url=server.url) as client:
        client.images("a cat")
        token = client._core.token
    scan(caplog.text, [TEST_API_KEY, token], "httpcore DEBUG log")


def test_a_successful_byok_result_holds_no_secret(server, caplog):
    caplog.set_level(logging.DEBUG)
    with Client(TEST_API_KEY, base_url=server.url) as client:
        result = client.images("a cat", byok_api_key=TEST_BYOK, options={"api_key": NESTED_SECRET},
                               model="stability/stable-diffusion-xl")
        token = client._core.token
        texts = [repr(result), str(result.params), str(result.to_dict()), repr(result.images[0]),
                 str(result._repr_mimebundle_())]
    secrets = [TEST_API_KEY, token, TEST_BYOK, NESTED_SECRET]
    for text in texts:
        scan(text, secrets, "result")
    scan("\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpcore")), secrets, "log")


def test_the_server_record_of_requests_holds_no_secret(server):
    with Client(TEST_API_KEY, base_url=server.url) as client:
        client.images("a cat", byok_api_key=TEST_BYOK, options={"api_key": NESTED_SECRET},
                      model="stability/stable-diffusion-xl")
        token = client._core.token
    raw = httpx.get(server.url + "/_local/requests").text
    assert "/api/v1/images/generations" in raw
    scan(raw, [TEST_API_KEY, token, TEST_BYOK], "/_local/requests")


def test_transport_errors_and_bad_settings_hold_no_secret(sleeps):
    texts = []
    with Client(TEST_API_KEY, base_url="http://127.0.0.1:9") as client:  # nothing listens
        client._sleep = sleeps.append
        with pytest.raises(ij.NetworkError) as info:
            client.images("a cat", byok_api_key=TEST_BYOK)
        texts += [str(info.value), repr(info.value)]
    for bad in (TEST_API_KEY + "\r\nX-Evil: 1", TEST_API_KEY + " trailing words", "ключ" + TEST_API_KEY):
        with pytest.raises(ij.ValidationError) as info:
            Client(bad, base_url="http://127.0.0.1:9")
        texts += [str(info.value), repr(info.value)]
    for bad in (TEST_BYOK + "\r\nX-Evil: 1", TEST_BYOK + "\x00tail", "ключ" + TEST_BYOK):
        with Client(TEST_API_KEY, base_url="http://127.0.0.1:9") as client:
            with pytest.raises(ij.ValidationError) as info:
                client.images("a cat", byok_api_key=bad)
        texts += [str(info.value), repr(info.value)]
    for text in texts:
        scan(text, [TEST_API_KEY, TEST_BYOK], "transport/settings error")


def test_the_gallery_database_and_folder_hold_no_secret(server, tmp_path):
    """Results generated with BYOK (top level and nested) and stored: no secret in any file."""
    from indox_jupyter.store import Gallery

    with Client(TEST_API_KEY, base_url=server.url) as client, Gallery(tmp_path / "g") as gallery:
        token = None
        for i in range(3):
            result = client.images(f"a stored cat {i}", byok_api_key=TEST_BYOK, model="stability/stable-diffusion-xl",
                                   options={"api_key": NESTED_SECRET}, api_key=NESTED_SECRET)
            gallery.add(result)
            token = client._core.token
        server.script(Fault(status=400, body={"detail": echo_text(token)}))
        with pytest.raises(ij.InvalidParametersError):
            client.images("a refused cat", byok_api_key=TEST_BYOK)
        assert len(gallery.history()) == 3
    secrets = [TEST_API_KEY, token, TEST_BYOK, NESTED_SECRET]
    files = [p for p in Path(tmp_path / "g").rglob("*") if p.is_file()]
    assert any(p.suffix in (".sqlite", ".db", ".sqlite3") or "db" in p.name for p in files), files
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{path.name} holds {secret[:6]}…"


def test_redaction_unit():
    from indox_jupyter._redact import redact, without_secrets

    text = f"Authorization: Bearer {TEST_API_KEY}; api_key={TEST_BYOK} x-api-key: 'abcdefgh1234'"
    out = redact(text)
    assert TEST_API_KEY not in out and TEST_BYOK not in out and "abcdefgh1234" not in out
    nested = without_secrets({"prompt": "x", "byok_api_key": TEST_BYOK,
                              "additional_params": {"api_key": NESTED_SECRET, "steps": 3,
                                                    "inner": [{"token": NESTED_SECRET}]}})
    assert NESTED_SECRET not in str(nested) and TEST_BYOK not in str(nested)
    assert nested["additional_params"]["steps"] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert redact("") == ""
