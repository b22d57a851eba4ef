"""%%indox_image and friends in an in-process IPython shell, against the local server over loopback.

Fast flag-level tests; the same behaviours in a real kernel are in test_notebooks.py.
"""

from __future__ import annotations

import base64
import getpass
import io
import json
import sys

import pytest
from IPython.core.error import UsageError
from IPython.core.magic_arguments import parse_argstring
from PIL import Image

from indox_jupyter import Client, ImageResult, ValidationError
from indox_jupyter.local import Fault
from indox_jupyter.magics import LOCAL_NOTICE, IndoxMagics

from .conftest import TEST_API_KEY, TEST_BYOK, generation_requests
from .magic_helpers import cell, html_of, magics


def last_body(server) -> dict:
    return generation_requests(server)[-1]["json"]


# --------------------------------------------------------------------------------------------
# Flags reach the request body


def test_dalle3_flags_reach_the_body(ip, server):
    result = cell(ip, "-m openai/dall-e-3 -s 1024x1792 -n 1 -q hd --style natural --response-format b64_json "
                      "--param user=u-42", "a lighthouse")
    body = last_body(server)
    assert body == {"prompt": "a lighthouse", "model": "openai/dall-e-3", "n": 1, "size": "1024x1792",
                    "quality": "hd", "style": "natural", "response_format": "b64_json",
                    "additional_params": {"user": "u-42"}}
    assert isinstance(result, ImageResult) and result.images[0].height == 1792


def test_imagen_flags_reach_the_body(ip, server):
    cell(ip, '--model google/imagen-3.0-generate-002 --aspect-ratio 16:9 --negative-prompt "blurry, text" '
             "--seed 7 --n 2", "a harbour")
    body = last_body(server)
    assert body["aspect_ratio"] == "16:9" and body["negative_prompt"] == "blurry, text"
    assert body["seed"] == 7 and body["n"] == 2 and "size" not in body


def test_param_values_are_json_when_they_parse(ip, server):
    cell(ip, "-m stability/stable-diffusion-xl --param steps=30 --param cfg=7.5 --param tags='[\"a\",\"b\"]' "
             "--param sampler=euler --param hires=true")
    assert last_body(server)["additional_params"] == {
        "steps": 30, "cfg": 7.5, "tags": ["a", "b"], "sampler": "euler", "hires": True}


def test_line_magic_with_flags_anywhere(ip, server):
    result = ip.run_line_magic("indox_image", "-m openai/dall-e-2 -s 256x256 a paper boat -n 2")
    assert last_body(server) == {"prompt": "a paper boat", "model": "openai/dall-e-2", "n": 2, "size": "256x256"}
    assert len(result.images) == 2


def test_line_magic_keeps_apostrophes_and_unquotes_a_quoted_prompt(ip, server):
    ip.run_line_magic("indox_image", "-m openai/dall-e-2 a cat's hat")
    assert last_body(server)["prompt"] == "a cat's hat"
    ip.run_line_magic("indox_image", '-m openai/dall-e-2 "a quoted prompt"')
    assert last_body(server)["prompt"] == "a quoted prompt"


def test_parser_on_its_own():
    args = parse_argstring(IndoxMagics.indox_image, "-m a/b -n 3 --param x=1 --param y=2 --local -o res words here")
    assert (args.model, args.n, args.param, args.local, args.out, args.prompt) == (
        "a/b", 3, ["x=1", "y=2"], True, "res", ["words", "here"])


def test_help_lists_every_flag_and_sends_nothing(ip, server, capsys):
    assert cell(ip, "--help", "ignored") is None
    text = capsys.readouterr().out
    for flag in ("--model", "--size", "--n", "--quality", "--style", "--aspect-ratio", "--negative-prompt",
                 "--seed", "--response-format", "--param", "--byok", "--out", "--save", "--local", "--client"):
        assert flag in text
    assert ip.run_line_magic("indox_image", "-h") is None
    assert generation_requests(server) == []


# --------------------------------------------------------------------------------------------
# Prompt variables, -o, output


def test_prompt_variables_are_filled_from_the_notebook(ip, server):
    ip.run_cell("from types import SimpleNamespace\nanimal = 'red fox'\nscene = SimpleNamespace(season='winter')")
    cell(ip, "-m openai/dall-e-2", "A {animal} in {scene.season}, {{braces}}\n")
    assert last_body(server)["prompt"] == "A red fox in winter, {braces}"


def test_out_assigns_and_cell_result_is_the_image_result(ip, server):
    outcome = ip.run_cell("%%indox_image -m openai/dall-e-2 -o pic\na red kite")
    assert outcome.success
    assert isinstance(ip.user_ns["pic"], ImageResult)
    assert outcome.result is ip.user_ns["pic"] and ip.user_ns["_"] is ip.user_ns["pic"]


def test_output_is_escaped(ip, server):
    result = cell(ip, "", "<script>alert('x')</script> on a hill")
    html = html_of(ip, result)
    assert "<script" not in html and "&lt;script&gt;" in html


def test_preview_traits_shape_the_display(ip, server):
    ip.run_line_magic("config", "IndoxMagics.preview_size = 200")
    ip.run_line_magic("config", "IndoxMagics.preview_format = 'jpeg'")
    html = html_of(ip, cell(ip, "-s 1024x1024"))
    assert 'width="200"' in html and "data:image/jpeg;base64," in html


def test_save_writes_full_size_files(ip, server, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cell(ip, "-m openai/dall-e-2 -n 2 --save out")
    files = sorted((tmp_path / "out").iterdir())
    assert len(files) == 2 and "saved 2 file(s)" in capsys.readouterr().out
    with Image.open(files[0]) as img:
        assert img.size == (1024, 1024) and img.format == "PNG"


# --------------------------------------------------------------------------------------------
# Traits as defaults


def test_config_traits_are_defaults_and_flags_win(ip, server):
    ip.run_line_magic("config", 'IndoxMagics.model = "openai/dall-e-2"')
    ip.run_line_magic("config", 'IndoxMagics.size = "512x512"')
    ip.run_line_magic("config", "IndoxMagics.n = 2")
    cell(ip, "")
    assert last_body(server) == {"prompt": "a lighthouse at dusk", "model": "openai/dall-e-2", "n": 2,
                                 "size": "512x512"}
    cell(ip, "-s 256x256 -n 1")
    assert last_body(server)["size"] == "256x256" and last_body(server)["n"] == 1


def test_config_before_load_is_applied(shell, server, monkeypatch):
    from traitlets.config import Config

    monkeypatch.setenv("INDOX_ROUTER_BASE_URL", server.url)
    monkeypatch.setenv("INDOX_ROUTER_API_KEY", TEST_API_KEY)
    saved = shell.config
    shell.config = Config()
    shell.config.IndoxMagics.model = "openai/dall-e-2"
    try:
        shell.extension_manager.load_extension("indox_jupyter")
        cell(shell, "")
        assert last_body(server)["model"] == "openai/dall-e-2"
    finally:
        shell.extension_manager.unload_extension("indox_jupyter")
        shell.config = saved


@pytest.mark.parametrize("setting", ['model = "nonsense"', 'size = "huge"', "n = 11", "preview_size = 0",
                                     "preview_format = 'gif'"])
def test_bad_trait_values_are_refused(ip, setting):
    before = (magics(ip).model, magics(ip).size, magics(ip).n)
    with pytest.raises(Exception) as info:
        setattr(magics(ip), *[s.strip().strip('"').strip("'") for s in setting.split("=")])
    assert "TraitError" in type(info.value).__name__
    assert (magics(ip).model, magics(ip).size, magics(ip).n) == before


# --------------------------------------------------------------------------------------------
# Refused before sending: one short line, zero requests

BAD_INPUTS = [
    ("--size huge", "x", "size must be WIDTHxHEIGHT"),
    ("-n 11", "x", "n must be between 1 and 10"),
    ("-n 0", "x", "n must be between 1 and 10"),
    ("-n many", "x", "invalid int value"),
    ("--bogus", "x", "unrecognized arguments: --bogus"),
    ("-m nonsense", "x", "model must be 'provider/model'"),
    ("", "   \n  ", "the prompt is empty"),
    ("", "a {nope} here", "no variable named 'nope'"),
    ("", "a } here", "stray brace"),
    ("--byok NOT_SET_ANYWHERE", "x", "no notebook variable or environment variable"),
    ("--byok 'sk-pasted-key-1234567890'", "x", "--byok takes a variable name"),
    ("--param byok_api_key=abc", "x", "use --byok NAME"),
    ("--param novalue", "x", "KEY=VALUE"),
    ("--param size=512x512 -s 256x256", "x", "size is given twice"),
    ("-o 1bad", "x", "-o/--out takes a variable name"),
    ("--client nothing_here", "x", "no such variable"),
    ("--local --client c", "x", "use one"),
    ("--response-format xml", "x", "invalid choice"),
    ("--seed -5", "x", "seed must be between"),
    ("--aspect-ratio wide", "x", "aspect_ratio must be W:H"),
    ("words on the line", "and a body", "unexpected words on the magic line"),
]


@pytest.mark.parametrize(("line", "body", "fragment"), BAD_INPUTS)
def test_bad_input_is_one_line_and_sends_nothing(ip, server, line, body, fragment):
    with pytest.raises(UsageError) as info:
        cell(ip, line, body)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message and len(message) < 300
    assert info.value.__cause__ is None or info.value.__suppress_context__
    assert server.requests == []


def test_usage_error_is_printed_without_traceback(ip, server, capsys):
    ip.run_cell("%%indox_image --size huge\nx")
    err = capsys.readouterr().err
    assert err.strip().startswith("UsageError: ValidationError: size must be") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("fault", "fragment"),
    [
        (Fault(status=402, body={"detail": "Insufficient credits"}), "InsufficientCreditsError"),
        (Fault(status=401, body={"detail": "Invalid API key"}, times=3), "AuthenticationError"),
        (Fault(status=429, headers={"Retry-After": "0"}, times=3), "RateLimitError"),
    ],
)
def test_server_errors_are_one_line(ip, server, fault, fragment):
    magics(ip).max_retries = 0 if fault.status != 429 else 2
    server.script(fault)
    with pytest.raises(UsageError) as info:
        cell(ip, "-m openai/dall-e-2")
    assert str(info.value).startswith(fragment) and "\n" not in str(info.value)
    assert TEST_API_KEY not in str(info.value)


def test_unknown_model_on_the_server_is_one_line(ip, server):
    with pytest.raises(UsageError, match=r"^ModelNotFoundError: .*HTTP 404"):
        cell(ip, "-m openai/no-such-model")


def test_unreachable_server_is_one_line(ip, monkeypatch):
    monkeypatch.setenv("INDOX_ROUTER_BASE_URL", "http://127.0.0.1:9")
    magics(ip).max_retries = 0
    with pytest.raises(UsageError, match=r"^NetworkError: .*could not reach http://127\.0\.0\.1:9"):
        cell(ip, "")


def test_show_tracebacks_reraises_the_original(ip, server):
    ip.run_line_magic("config", "IndoxMagics.show_tracebacks = True")
    with pytest.raises(ValidationError):
        cell(ip, "--size huge")


# --------------------------------------------------------------------------------------------
# Secrets: --byok NAME


def test_byok_by_variable_name_reaches_the_body_and_never_the_output(ip, server, capsys):
    ip.user_ns["my_openai_key"] = TEST_BYOK
    result = cell(ip, "--byok my_openai_key -m openai/dall-e-2")
    assert last_body(server)["byok_api_key"] == "***"  # sent (the server's record is redacted)
    assert result.cost == 0.0  # BYOK: the local server charges nothing
    data, metadata = ip.display_formatter.format(result)
    shown = json.dumps([data, metadata, result.to_dict(), result.params, repr(result)]) + capsys.readouterr().out
    assert TEST_BYOK not in shown and TEST_API_KEY not in shown


def test_byok_from_environment(ip, server, monkeypatch):
    monkeypatch.setenv("MY_PROVIDER_KEY", TEST_BYOK)
    result = cell(ip, "--byok MY_PROVIDER_KEY -m openai/dall-e-2")
    assert last_body(server)["byok_api_key"] == "***" and result.cost == 0.0


def test_byok_value_never_in_an_error(ip, server):
    ip.user_ns["k"] = TEST_BYOK
    server.script(Fault(status=400, body={"detail": f"bad provider key {TEST_BYOK}"}))
    with pytest.raises(UsageError) as info:
        cell(ip, "--byok k -m openai/dall-e-2")
    assert TEST_BYOK not in str(info.value)


def test_byok_variable_must_be_text(ip, server):
    ip.user_ns["k"] = 42
    with pytest.raises(UsageError, match="non-empty text"):
        cell(ip, "--byok k")
    assert server.requests == []


# --------------------------------------------------------------------------------------------
# Which client answers: fallback, --local, --client


def test_no_key_no_url_uses_local_server_and_says_so(ip, server, monkeypatch, capsys):
    monkeypatch.delenv("INDOX_ROUTER_BASE_URL")
    monkeypatch.delenv("INDOX_ROUTER_API_KEY")
    result = cell(ip, "-m openai/dall-e-2")
    out = capsys.readouterr().out
    assert out.strip() == LOCAL_NOTICE and "%indox_login" in out and "INDOX_ROUTER_API_KEY" in out
    assert len(result.images) == 1
    assert server.requests == []  # the built-in shared server answered, not the test server


def test_local_flag_uses_built_in_server(ip, server, capsys):
    result = cell(ip, "--local -m openai/dall-e-2")
    assert len(result.images) == 1 and server.requests == []
    assert LOCAL_NOTICE not in capsys.readouterr().out


def test_client_flag_with_our_client(ip, server):
    ip.user_ns["mine"] = Client(TEST_API_KEY, base_url=server.url)
    result = cell(ip, "--client mine -m openai/dall-e-2 -s 256x256 -o r")
    assert ip.user_ns["r"] is result and last_body(server)["size"] == "256x256"


class SeedDictClient:
    """Anything with the seed's images() returning the seed's dict (like indoxrouter.Client)."""

    def __init__(self, png: bytes, fail: Exception | None = None) -> None:
        self.png, self.fail, self.calls = png, fail, []

    def images(self, prompt, model="openai/dall-e-3", size=None, n=None, byok_api_key=None, **kwargs):
        self.calls.append(dict(prompt=prompt, model=model, size=size, n=n, byok_api_key=byok_api_key, **kwargs))
        if self.fail:
            raise self.fail
        return {"created": 1684939249, "data": [
            {"b64_json": base64.b64encode(self.png).decode(), "revised_prompt": f"{prompt}, revised", "index": i}
            for i in range(n or 1)]}


def png_bytes(size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(out, "PNG")
    return out.getvalue()


def test_client_flag_adapts_the_seed_dict(ip, server):
    fake = SeedDictClient(png_bytes())
    ip.user_ns.update(fake=fake, key_var=TEST_BYOK, animal="owl")
    result = cell(ip, "--client fake -m openai/dall-e-2 -n 2 --seed 3 --byok key_var -o got", "an {animal}")
    assert fake.calls == [{"prompt": "an owl", "model": "openai/dall-e-2", "size": None, "n": 2,
                           "byok_api_key": TEST_BYOK, "seed": 3}]
    assert isinstance(result, ImageResult) and ip.user_ns["got"] is result
    assert [img.revised_prompt for img in result.images] == ["an owl, revised"] * 2
    assert result.images[0].width == 64 and result.params == {"n": 2, "seed": 3}
    assert "<mark>revised</mark>" in html_of(ip, result)
    assert server.requests == []


def test_client_flag_foreign_error_is_one_redacted_line(ip):
    ip.user_ns.update(fake=SeedDictClient(png_bytes(), fail=RuntimeError(f"boom {TEST_BYOK}\nline two")),
                      k=TEST_BYOK)
    with pytest.raises(UsageError) as info:
        cell(ip, "--client fake --byok k")
    assert "RuntimeError: boom ***" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("obj", [42, object(), {"images": None}])
def test_client_flag_needs_images(ip, server, obj):
    ip.user_ns["c"] = obj
    with pytest.raises(UsageError, match=r"has no images\(\) method"):
        cell(ip, "--client c")


def test_client_flag_bad_answer(ip):
    class Odd:
        def images(self, prompt, **kw):
            return {"success": False, "message": "content policy"}

    ip.user_ns["odd"] = Odd()
    with pytest.raises(UsageError, match="ProviderError: The provider reported a failure: content policy"):
        cell(ip, "--client odd")


def test_client_flag_with_the_reference_indoxrouter_client(ip, server):
    import indoxrouter  # the published reference client (in the test extra)

    ip.user_ns["ref"] = indoxrouter.Client(api_key=TEST_API_KEY, base_url=server.url)
    result = cell(ip, "--client ref -m openai/dall-e-2 -s 256x256 -n 2")
    assert last_body(server)["size"] == "256x256" and last_body(server)["n"] == 2
    assert len(result.images) == 2 and result.images[0].width == 256 and result.cost
    sys.modules.pop("indoxrouter", None)


# --------------------------------------------------------------------------------------------
# %indox_models, %indox_login, %indox_usage; load/unload


def test_models_table(ip, server):
    table = ip.run_line_magic("indox_models", "")
    ids = [m.id for m in table.models]
    assert "openai/dall-e-3" in ids and table.note is None
    assert "openai/dall-e-3" in ip.display_formatter.format(table)[0]["text/html"]


def test_models_offline_fallback(ip, monkeypatch):
    monkeypatch.setenv("INDOX_ROUTER_BASE_URL", "http://127.0.0.1:9")
    magics(ip).max_retries = 0
    table = ip.run_line_magic("indox_models", "")
    assert "openai/dall-e-3" in [m.id for m in table.models] and table.note.startswith("offline list")


def test_login_keeps_key_in_memory_and_never_echoes(ip, server, monkeypatch, capsys):
    monkeypatch.delenv("INDOX_ROUTER_API_KEY")
    with pytest.raises(UsageError, match="No IndoxRouter API key"):
        cell(ip, "")
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": TEST_API_KEY)
    ip.run_line_magic("indox_login", "")
    cell(ip, "-m openai/dall-e-2")
    assert generation_requests(server)
    out = capsys.readouterr()
    assert TEST_API_KEY not in out.out + out.err and "memory only" in out.out
    assert TEST_API_KEY not in repr(magics(ip)._client)


def test_login_without_input(ip, monkeypatch):
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": "  ")
    with pytest.raises(UsageError, match="no key entered"):
        ip.run_line_magic("indox_login", "")


def test_usage_includes_session_spend(ip, server):
    cell(ip, "-m openai/dall-e-2 -n 2")
    view = ip.run_line_magic("indox_usage", "")
    assert view.session_images == 2 and view.session_cost == pytest.approx(view.usage["total_cost"])
    assert "this session" in repr(view)


def test_load_twice_unload_reload(shell, server, monkeypatch):
    monkeypatch.setenv("INDOX_ROUTER_BASE_URL", server.url)
    monkeypatch.setenv("INDOX_ROUTER_API_KEY", TEST_API_KEY)
    printers = shell.display_formatter.mimebundle_formatter.type_printers
    shell.extension_manager.load_extension("indox_jupyter")
    shell.extension_manager.load_extension("indox_jupyter")  # "already loaded": no second instance
    assert "indox_image" in shell.magics_manager.magics["cell"] and ImageResult in printers
    configurables = sum(isinstance(c, IndoxMagics) for c in shell.configurables)
    shell.run_line_magic("reload_ext", "indox_jupyter")
    assert sum(isinstance(c, IndoxMagics) for c in shell.configurables) == configurables
    assert isinstance(cell(shell, "-m openai/dall-e-2"), ImageResult)
    shell.extension_manager.unload_extension("indox_jupyter")
    for kind, name in (("cell", "indox_image"), ("line", "indox_image"), ("line", "indox_models"),
                       ("line", "indox_login"), ("line", "indox_usage")):
        assert name not in shell.magics_manager.magics[kind]
    assert ImageResult not in printers and "IndoxMagics" not in shell.magics_manager.registry


def test_load_ext_stays_light():
    import subprocess

    code = ("import sys, indox_jupyter; "
            "print(sorted(m for m in ('httpx', 'PIL', 'indox_jupyter.magics', 'indox_jupyter.render', 'ipywidgets') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "indox_jupyter.magics" not in out and "PIL" not in out and "ipywidgets" not in out


def test_unclosed_quote_is_one_line_and_sends_nothing(ip, server):
    with pytest.raises(UsageError, match="close every quote") as caught:
        cell(ip, "-s '1024")
    assert "\n" not in str(caught.value) and server.requests == []


@pytest.mark.parametrize("target", ["'bad\x00name'", "{file}", "/proc/indox-cannot-write-here"])
def test_save_target_is_checked_before_sending(ip, server, tmp_path, target):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(UsageError, match="--save") as caught:
        cell(ip, f"--save {target.format(file=tmp_path / 'a_file')}")
    assert "\n" not in str(caught.value) and server.requests == []


def test_our_warnings_are_one_line(ip, server, capfd):
    cell(ip, "-m xai/grok-2-image -q hd", "a robot")
    err = capfd.readouterr().err
    assert "indox: xai/grok-2-image does not take quality; not sent" in err
    assert "UserWarning" not in err and ".py:" not in err
    assert "quality" not in last_body(server)


# --------------------------------------------------------------------------------------------
# Connection settings: a bad one is one line in every magic, never a traceback


@pytest.mark.parametrize("value", ["ftp://example.com", "api.indoxrouter.com", "http://", "http://a b"])
def test_bad_base_url_trait_is_refused_in_one_line(ip, value):
    from traitlets import TraitError

    with pytest.raises(TraitError) as info:
        magics(ip).base_url = value
    assert "base_url must be an http(s) URL" in str(info.value) and "\n" not in str(info.value)
    assert magics(ip).base_url is None


def test_good_base_url_trait_values(ip, server):
    for value, kept in ((server.url, server.url), (" local ", "local"), ("LOCAL", "local"),
                        ("", None), (None, None)):
        magics(ip).base_url = value
        assert magics(ip).base_url == kept
    ip.run_line_magic("config", f'IndoxMagics.base_url = "{server.url}/api/v1"')
    assert ip.run_line_magic("indox_models", "").models


@pytest.mark.parametrize("magic", ["indox_models", "indox_panel"])
def test_base_url_without_key_is_one_line(ip, server, monkeypatch, magic):
    monkeypatch.delenv("INDOX_ROUTER_API_KEY")
    magics(ip).base_url = server.url
    with pytest.raises(UsageError, match="No IndoxRouter API key") as info:
        ip.run_line_magic(magic, "")
    assert "\n" not in str(info.value) and server.requests == []


def test_bad_base_url_from_the_environment_is_one_line(ip, server, monkeypatch):
    monkeypatch.setenv("INDOX_ROUTER_BASE_URL", "indoxrouter.example")
    with pytest.raises(UsageError, match="base_url must be an http") as info:
        ip.run_line_magic("indox_models", "")
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="base_url must be an http"):
        cell(ip, "")
    assert server.requests == []


def test_usage_without_a_key_still_shows_the_local_figures(ip, server, monkeypatch):
    monkeypatch.delenv("INDOX_ROUTER_API_KEY")
    magics(ip).base_url = server.url
    view = ip.run_line_magic("indox_usage", "")
    assert "service usage unavailable" in view.note and "No IndoxRouter API key" in view.note
    assert view.usage == {} and TEST_API_KEY not in repr(view)


def test_history_unclosed_quote_is_one_line(ip, server):
    with pytest.raises(UsageError, match="close every quote") as info:
        ip.run_line_magic("indox_history", '--search "abc')
    assert "\n" not in str(info.value)


def test_connection_traits_configured_before_load(shell, server, monkeypatch):
    from traitlets.config import Config

    monkeypatch.setenv("INDOX_ROUTER_API_KEY", TEST_API_KEY)
    saved = shell.config
    shell.config = Config()
    shell.config.IndoxMagics.base_url = server.url
    shell.config.IndoxMagics.timeout = 30.0
    try:
        shell.extension_manager.load_extension("indox_jupyter")
        assert magics(shell).base_url == server.url and magics(shell).timeout == 30.0
        cell(shell, "-m openai/dall-e-2")
        assert len(generation_requests(server)) == 1
    finally:
        shell.extension_manager.unload_extension("indox_jupyter")
        shell.config = saved


def test_indox_panel_gets_its_own_client_with_the_session_key(ip, server, monkeypatch):
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": TEST_API_KEY)
    ip.run_line_magic("indox_login", "")
    opened = ip.run_line_magic("indox_panel", "")
    shared, _ = magics(ip).client()
    assert opened.client is not shared and opened.client.base_url == shared.base_url
    assert opened.client._core.api_key == TEST_API_KEY
    ip.run_line_magic("indox_login", "")  # the magic replaces its client: the panel's lives on
    opened.close()
    assert opened.client._http.is_closed and not magics(ip).client()[0]._http.is_closed
