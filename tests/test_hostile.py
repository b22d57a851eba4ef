"""Bad and hostile inputs: each is refused with one line, sends ZERO requests, never a traceback.

Three surfaces are driven: the client (``Client.images`` and ``Client(...)``), the magic
(``run_cell_magic("indox_image", ...)`` in an in-process shell) and the panel's Python surface
(``Panel`` values + ``generate()``). ``server.requests == []`` proves nothing left the process,
not even the key exchange. Hypothesis drives the size/model/int parsers, the whole request
builder, the magic's flag parser and the ``{variable}`` interpolation with random text.

``tests/test_client.py::test_bad_input_is_refused_before_sending`` and
``tests/test_magics.py::test_bad_input_is_one_line_and_sends_nothing`` hold the ordinary
mistakes; the cases here are the hostile ones (sizes, encodings, types, paths, names).
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

import indox_jupyter as ij
from indox_jupyter import Client
from indox_jupyter._core import (
    MAX_PROMPT_CHARS,
    build_image_request,
    check_aspect_ratio,
    check_int,
    check_model,
    check_size,
)

from .conftest import TEST_API_KEY

HYPOTHESIS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def one_line(text: str) -> None:
    assert text and "\n" not in text and "\r" not in text, text
    assert len(text) <= 400, len(text)
    assert "Traceback" not in text


def deep_list(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


class Weird:
    def __str__(self) -> str:
        raise RuntimeError("str() of this object explodes")

    __repr__ = __str__


def self_referencing() -> list:
    loop: list = []
    loop.append(loop)
    return loop


# -- through the client ----------------------------------------------------------------------------

CLIENT_CASES = [
    # prompts: size, encoding, control characters, types
    ("prompt-huge", {"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "limit is 100,000"),
    ("prompt-10mb", {"prompt": "lighthouse " * 1_000_000}, "limit is 100,000"),
    ("prompt-nul", {"prompt": "a cat\x00; rm -rf /"}, "control character U\\+0000"),
    ("prompt-ansi-escape", {"prompt": "a \x1b[2J\x1b[31mred\x1b[0m cat"}, "control character U\\+001B"),
    ("prompt-backspace", {"prompt": "a cat\x08\x08\x08dog"}, "control character U\\+0008"),
    ("prompt-del", {"prompt": "a cat\x7f"}, "control character U\\+007F"),
    ("prompt-lone-surrogate", {"prompt": "a cat \ud83d"}, "unpaired surrogate"),
    ("prompt-only-whitespace-unicode", {"prompt": "\u2003\u3000\n\t "}, "prompt is empty"),
    ("prompt-bytes", {"prompt": b"a cat"}, "prompt must be text"),
    ("prompt-none", {"prompt": None}, "prompt must be text"),
    ("prompt-list", {"prompt": ["a", "cat"]}, "prompt must be text"),
    ("prompt-dict", {"prompt": {"text": "a cat"}}, "prompt must be text"),
    # model names
    ("model-traversal", {"model": "../../etc/passwd"}, "provider/model"),
    ("model-url", {"model": "http://evil.example/openai/dall-e-3"}, "provider/model"),
    ("model-query", {"model": "openai/dall-e-3?admin=1"}, "provider/model"),
    ("model-three-parts", {"model": "openai/dall-e-3/extra"}, "provider/model"),
    ("model-unicode", {"model": "openаi/dall-e-3"}, "provider/model"),  # Cyrillic а
    ("model-newline", {"model": "openai/dall-e-3\nX-Evil: 1"}, "provider/model"),
    ("model-markup", {"model": "<script>alert(1)</script>"}, "provider/model"),
    ("model-int", {"model": 3}, "provider/model"),
    ("model-empty", {"model": ""}, "provider/model"),
    # numbers
    ("n-superscript", {"n": "²"}, "whole number"),
    ("n-arabic-digit", {"n": "٣"}, "whole number"),
    ("n-double-minus", {"n": "--5"}, "whole number"),
    ("n-negative", {"n": -1}, "between 1 and 10"),
    ("n-huge", {"n": 10**100}, "between 1 and 10"),
    ("n-nan", {"n": float("nan")}, "whole number"),
    ("n-list", {"n": [1]}, "whole number"),
    ("seed-5000-digits", {"seed": 10**5000}, "between 0 and"),
    ("seed-negative", {"seed": -1}, "between 0 and"),
    ("guidance-10e400", {"guidance_scale": 10**400}, "guidance_scale must be a number"),
    ("guidance-inf", {"guidance_scale": float("inf")}, "guidance_scale must be a number"),
    ("guidance-nan", {"guidance_scale": float("nan")}, "guidance_scale must be a number"),
    # sizes
    ("size-arabic-digits", {"size": "1٠٢٤x1٠٢٤"}, "WIDTHxHEIGHT"),
    ("size-fullwidth", {"size": "１０２４x１０２４"}, "WIDTHxHEIGHT"),
    ("size-negative", {"size": "-1024x1024"}, "WIDTHxHEIGHT"),
    ("size-three-dims", {"size": "1024x1024x3"}, "WIDTHxHEIGHT"),
    ("size-huge", {"size": "999999x999999"}, "WIDTHxHEIGHT"),
    ("size-tuple", {"size": (1024, 1024)}, "WIDTHxHEIGHT"),
    ("size-markup", {"size": "<img src=x onerror=alert(1)>"}, "WIDTHxHEIGHT"),
    ("aspect-ratio-zero", {"aspect_ratio": "0:1"}, "W:H"),
    # other text parameters
    ("quality-control-char", {"quality": "hd\x1b"}, "control character"),
    ("style-surrogate", {"style": "vivid\udc00"}, "unpaired surrogate"),
    ("quality-huge", {"quality": "h" * 10_000}, "limit here is 40"),
    ("negative-prompt-list", {"negative_prompt": ["blur"]}, "must be text"),
    ("response-format-list", {"response_format": ["url"]}, "'url' or 'b64_json'"),
    # BYOK values: refused without echoing them
    ("byok-int", {"byok_api_key": 12345}, "non-empty string"),
    ("byok-whitespace", {"byok_api_key": " \t\n"}, "non-empty string"),
    ("byok-newline-inside", {"byok_api_key": "sk-abc\r\nX-Evil: 1"}, "non-printable"),
    ("byok-non-ascii", {"byok_api_key": "sk-ключ-0123456789"}, "non-ASCII"),
    # extra parameters
    ("extra-set", {"tags": {"a", "b"}}, "JSON-serialisable"),
    ("extra-object", {"thing": Weird()}, "JSON-serialisable"),
    ("extra-nan", {"strength": float("nan")}, "JSON-serialisable"),
    ("extra-self-reference", {"loop": self_referencing()}, "JSON-serialisable"),
    ("extra-100k-deep", {"nested": deep_list(100_000)}, "JSON-serialisable"),
    ("extra-bytes", {"mask": b"\x89PNG"}, "JSON-serialisable"),
    ("extra-surrogate-value", {"caption": "x\ud800"}, "unpaired surrogate"),
]


@pytest.mark.parametrize(("kwargs", "fragment"), [c[1:] for c in CLIENT_CASES], ids=[c[0] for c in CLIENT_CASES])
def test_client_refuses_before_sending(client, server, kwargs, fragment):
    args = {"prompt": "a cat", **kwargs}
    with pytest.raises(ij.ValidationError, match=fragment) as info:
        client.images(**args)
    one_line(str(info.value))
    byok = kwargs.get("byok_api_key")
    if isinstance(byok, str) and byok.strip():  # a refused key is never echoed
        assert byok.strip()[:8] not in str(info.value)
    assert server.requests == []


def test_extra_parameter_names_that_are_not_names(client, server):
    for name in ("bad key", "1st", "a-b", "x;y", "__import__('os')", ""):
        with pytest.raises(ij.ValidationError, match="not a valid name") as info:
            client.images("a cat", **{name: 1})
        one_line(str(info.value))
    assert server.requests == []


SETTINGS_CASES = [
    ("key-newline", {"api_key": TEST_API_KEY + "\r\nX-Injected: 1"}, "line breaks"),
    ("key-inner-space", {"api_key": "ir-abc def-0123456789"}, "spaces"),
    ("key-non-ascii", {"api_key": "ir-ключ-0123456789"}, "non-ASCII"),
    ("key-int", {"api_key": 12345}, "must be a string"),
    ("url-javascript", {"base_url": "javascript:alert(1)"}, "http\\(s\\) URL"),
    ("url-file", {"base_url": "file:///etc/passwd"}, "http\\(s\\) URL"),
    ("url-empty-host", {"base_url": "http://"}, "http\\(s\\) URL"),
    ("timeout-zero", {"timeout": 0}, "positive number"),
    ("timeout-string", {"timeout": "10"}, "positive number"),
    ("retries-huge", {"max_retries": 10**6}, "between 0 and 20"),
    ("retries-superscript", {"max_retries": "²"}, "whole number"),
]


@pytest.mark.parametrize(("kwargs", "fragment"), [c[1:] for c in SETTINGS_CASES], ids=[c[0] for c in SETTINGS_CASES])
def test_client_settings_are_refused_without_a_request(server, kwargs, fragment):
    args = {"api_key": TEST_API_KEY, "base_url": server.url, **kwargs}
    with pytest.raises(ij.ValidationError, match=fragment) as info:
        Client(args.pop("api_key"), **args)
    one_line(str(info.value))
    key = kwargs.get("api_key")
    if isinstance(key, str):
        assert key.strip() not in str(info.value) and "0123456789" not in str(info.value)
    assert server.requests == []


# -- hypothesis: parsers never crash ---------------------------------------------------------------

_ASCII_SIZE = re.compile(r"^[1-9][0-9]*x[1-9][0-9]*$|^[1-9][0-9]*:[1-9][0-9]*$")


@HYPOTHESIS
@given(st.one_of(st.text(), st.from_regex(r"\s*[0-9٠-٩]{1,6}\s*[xX×:]\s*[0-9٠-٩]{1,6}\s*", fullmatch=True)))
def test_size_parser_accepts_well_formed_or_raises_validation_error(text):
    try:
        out = check_size(text)
    except ij.ValidationError as exc:
        one_line(str(exc))
    else:
        assert _ASCII_SIZE.match(out), out


@HYPOTHESIS
@given(st.one_of(st.text(), st.from_regex(r"[0-9٠-٩]{1,5}:[0-9٠-٩]{1,5}", fullmatch=True)))
def test_aspect_ratio_parser(text):
    try:
        out = check_aspect_ratio(text)
    except ij.ValidationError as exc:
        one_line(str(exc))
    else:
        assert re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", out), out


@HYPOTHESIS
@given(st.one_of(st.text(), st.from_regex(r"[a-zA-Zа-я0-9_.:@+-]{0,12}/[a-zA-Zа-я0-9_.:@+/-]{0,12}\s?", fullmatch=True),
                 st.integers(), st.none(), st.binary()))
def test_model_parser(value):
    try:
        provider, name = check_model(value)
    except ij.ValidationError as exc:
        one_line(str(exc))
    else:
        assert provider.isascii() and name.isascii() and "/" not in name and " " not in provider + name
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", provider)


@HYPOTHESIS
@given(st.one_of(st.text(), st.integers(), st.floats(), st.booleans(), st.from_regex(r"\s*-*[0-9²٣]{1,40}\s*", fullmatch=True)))
def test_int_parser(value):
    try:
        out = check_int("n", value, 1, 10)
    except ij.ValidationError as exc:
        one_line(str(exc))
    else:
        assert type(out) is int and 1 <= out <= 10


@HYPOTHESIS
@given(prompt=st.text(max_size=300), size=st.one_of(st.none(), st.text(max_size=20)),
       extra=st.dictionaries(st.text(max_size=8), st.recursive(
           st.none() | st.booleans() | st.floats() | st.text(max_size=10) | st.integers(),
           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
           max_leaves=10), max_size=3))
def test_request_builder_is_sendable_or_refused(prompt, size, extra):
    """Whatever the text, a built body encodes exactly as httpx will encode it."""
    try:
        request = build_image_request(prompt, "openai/dall-e-2", size=size, **extra)
    except ij.ValidationError as exc:
        one_line(str(exc))
    else:
        json.dumps(request.body, ensure_ascii=False, allow_nan=False).encode("utf-8")
        assert request.prompt.strip() == request.prompt and request.prompt


# -- through the magic -----------------------------------------------------------------------------


@pytest.fixture()
def ip(ip):
    """The conftest shell, with a few variables for the prompt templates."""
    ip.user_ns.update({"subject": "a cat", "n_items": 3, "secret_holder": object()})
    return ip


MAGIC_CASES = [
    ("prompt-huge", "", "x" * (MAX_PROMPT_CHARS + 10), "limit is 100,000"),
    ("prompt-ansi", "", "a \x1b[31mred\x1b[0m cat", "control character"),
    ("prompt-nul", "", "a cat\x00", "control character"),
    ("prompt-surrogate", "", "a cat \udfff", "unpaired surrogate"),
    ("prompt-bell", "", "ding\x07", "control character"),
    ("var-dunder-attr", "", "{subject.__class__.__mro__}", "private attribute"),
    ("var-import", "", "{__import__}", "no variable named"),
    ("var-private-item", "", "{secret_holder._x}", "private attribute"),
    ("var-positional", "", "{0}", "position"),
    ("var-width-bomb", "", "{subject:x>1000000}", "more than 10,000 characters"),
    ("var-bad-conversion", "", "{subject!x}", "stray brace or bad format"),
    ("var-unclosed", "", "a {subject", "stray brace or bad format"),
    ("var-empty", "", "a {} cat", "empty {}"),
    ("size-unicode-digits", "-s 1٠٢٤x1٠٢٤", "a cat", "WIDTHxHEIGHT"),
    ("size-markup", "-s '<b>1024</b>'", "a cat", "WIDTHxHEIGHT"),
    ("model-traversal", "-m ../../etc/passwd", "a cat", "provider/model"),
    ("model-markup", "-m '<img src=x onerror=alert(1)>'", "a cat", "provider/model"),
    ("n-not-a-number", "-n ²", "a cat", "invalid int value"),
    ("seed-huge", "--seed 99999999999999999999999999", "a cat", "seed must be between"),
    ("out-dotted", "-o a.b", "a cat", "-o/--out takes a variable name"),
    ("out-traversal", "-o ../x", "a cat", "-o/--out takes a variable name"),
    ("out-keyword", "-o class", "a cat", "-o/--out takes a variable name"),
    ("out-expression", "-o 'x;import os'", "a cat", "-o/--out takes a variable name"),
    ("out-digit-start", "-o 9lives", "a cat", "-o/--out takes a variable name"),
    ("param-nan", "--param strength=NaN", "a cat", "JSON-serialisable"),
    ("param-name-expression", "--param __import__('os')=1", "a cat", "KEY=VALUE"),
    ("param-surrogate-json", "--param caption='\"\\ud800\"'", "a cat", "unpaired surrogate"),
    ("byok-expression", "--byok os.environ", "a cat", "--byok takes a variable name"),
    ("client-expression", "--client __import__('os')", "a cat", "--client takes a variable name"),
    ("flag-unknown-long", "--save-all /tmp", "a cat", "unrecognized arguments"),
]


@pytest.mark.parametrize(("line", "body", "fragment"), [c[1:] for c in MAGIC_CASES], ids=[c[0] for c in MAGIC_CASES])
def test_magic_refuses_before_sending(ip, server, capsys, line, body, fragment):
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("indox_image", line, body)
    message = str(info.value)
    assert re.search(fragment, message), message
    one_line(message)
    assert server.requests == []
    ip.run_cell(f"%%indox_image {line}\n{body}")  # as a user sees it: one line on stderr, no traceback
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[:500]
    assert server.requests == []


# --save: refused BEFORE anything is sent. The magic writes only below the notebook's folder
# (traversal, absolute and home paths are refused; Python's result.save() takes any path).
SAVE_CASES = [
    ("save-nul", "--save 'out\x00dir'"),
    ("save-onto-a-file", "--save {file}"),
    ("save-under-proc", "--save /proc/indox-cannot-write-here"),
    ("save-traversal", "--save ../../../../../../tmp/indox-escape"),
    ("save-absolute", "--save /etc/indox"),
    ("save-home", "--save ~/indox"),
    ("save-symlink-escape", "--save {link}/inside"),
]


@pytest.mark.parametrize("line", [c[1] for c in SAVE_CASES], ids=[c[0] for c in SAVE_CASES])
def test_magic_save_target_is_refused_before_sending(ip, server, tmp_path, monkeypatch, line):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "link").symlink_to("/tmp")
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("indox_image", line.format(file="a_file", link="link"), "a cat")
    one_line(str(info.value))
    assert server.requests == []


@pytest.mark.parametrize("line", ["-s '1024", "-m \"openai/dall-e-3", "--param 'a=1"])
def test_magic_unclosed_quote_is_one_line(ip, server, line):
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("indox_image", line, "a cat")
    one_line(str(info.value))
    assert server.requests == []


@HYPOTHESIS
@given(st.lists(st.sampled_from(list("-snmo=' \"\\/.:x0123456789abc{}%$\x00é٣") + ["--save", "--param", "--byok",
                "--seed", "-n", "-s", "-o", "-m", "--local", "--client", " "]), max_size=25).map("".join))
def test_magic_flag_parser_never_crashes(ip, server, line):
    """Random magic lines: parsed and resolved (nothing is sent) or one UsageError/ValidationError."""
    from indox_jupyter.magics import ImageCall

    m = ip.magics_manager.registry["IndoxMagics"]
    try:
        try:
            args = m._parse(line)
        except ValueError as exc:  # known: see test_magic_unclosed_quote_is_one_line
            assume("No closing quotation" not in str(exc))
            raise
        call = m._resolve(args, "a cat")
        m._build_request(call)
    except (UsageError, ij.ValidationError) as exc:
        one_line(" ".join(str(exc).split()) or "usage error")
    else:
        assert isinstance(call, ImageCall)
    assert server.requests == []


@HYPOTHESIS
@given(st.text(max_size=60), st.dictionaries(st.from_regex(r"[a-z]{1,3}", fullmatch=True),
                                             st.one_of(st.text(max_size=5), st.integers(), st.lists(st.integers(), max_size=3)),
                                             max_size=3))
def test_interpolation_fills_or_raises_prompt_error(template, namespace):
    from indox_jupyter._prompt import PromptError, interpolate

    assert issubclass(PromptError, ij.ValidationError)
    try:
        out = interpolate(template, namespace)
    except PromptError as exc:
        one_line(str(exc))
    else:
        assert isinstance(out, str)
        if "{" not in template and "}" not in template:
            assert out == template


# -- through the panel's Python surface ------------------------------------------------------------

PANEL_CASES = [
    ("prompt-huge", {"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "limit is 100,000"),
    ("prompt-control", {"prompt": "a \x1b[31m cat"}, "control character"),
    ("prompt-surrogate", {"prompt": "a cat \ud800"}, "unpaired surrogate"),
    ("prompt-blank", {"prompt": "\u3000 \n"}, "prompt is empty"),
    ("seed-superscript", {"seed": "²"}, "whole number"),
    ("seed-text", {"seed": "abc"}, "whole number"),
    ("seed-huge", {"seed": "9" * 40}, "between 0 and"),
    ("negative-control", {"negative_prompt": "blur\x08"}, "control character"),
]


@pytest.fixture()
def panel_for(client):
    from indox_jupyter._panel import Panel

    made = []

    def build():
        p = Panel(client, gallery=False)
        made.append(p)
        return p

    yield build
    for p in made:
        p.wait(10)


@pytest.mark.parametrize(("values", "fragment"), [c[1:] for c in PANEL_CASES], ids=[c[0] for c in PANEL_CASES])
def test_panel_refuses_before_sending(panel_for, server, capsys, values, fragment):
    p = panel_for()  # building it lists the models (auth + GET /models/): that is not a generation
    p.prompt.value = "a cat"
    p.model.value = "stability/stable-diffusion-xl"  # a model that takes seed and negative_prompt
    mark = len(server.requests)
    for name, value in values.items():
        getattr(p, name).value = value
    with pytest.raises(ij.ValidationError, match=fragment):
        p.generate()
    one_line(p.status.value)
    assert p.status.value.startswith("ValidationError") and not p.generate_button.disabled
    p.generate_button.click()  # the click path: same line, nothing raised into the kernel
    assert p.status.value.startswith("ValidationError")
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert server.requests[mark:] == []


def test_case_count():
    """The issue asks for at least 40 hostile cases; keep the count visible."""
    total = len(CLIENT_CASES) + len(SETTINGS_CASES) + len(MAGIC_CASES) + len(PANEL_CASES)
    assert total >= 40, total
