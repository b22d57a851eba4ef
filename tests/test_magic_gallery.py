"""The magic and the gallery: images kept before display, re-runs served from disk, money, history.

In-process shell against the local server over loopback; the last test restarts into a fresh
kernel (nbclient) with the server's file URLs expired.
"""

from __future__ import annotations

import re

import nbformat
import pytest
from IPython.core.error import UsageError

from indox_jupyter import ImageResult
from indox_jupyter.local import Fault
from indox_jupyter.render import FROM_GALLERY, HistoryView
from indox_jupyter.store import Gallery, default_gallery

from .conftest import TEST_API_KEY, TEST_BYOK, generation_requests
from .magic_helpers import cell, html_of, magics


def text_of(ip, result) -> str:
    data, _ = ip.display_formatter.format(result)
    return data["text/plain"]


def file_requests(server) -> list[dict]:
    return [r for r in server.requests if r["path"] != "/api/v1/images/generations"
            and "/files/" in r["path"]]


# --------------------------------------------------------------------------------------------
# Stored on arrival


def test_every_image_is_stored_with_the_interpolated_prompt(ip, server):
    ip.run_cell("animal = 'red fox'")
    result = cell(ip, "-m openai/dall-e-2 -s 256x256 -n 2", "a {animal} in snow")
    assert not result.from_gallery
    entries = default_gallery().history()
    assert len(entries) == 2
    assert {e.prompt for e in entries} == {"a red fox in snow"}
    assert {e.source for e in entries} == {"magic"}
    assert sorted(e.data for e in entries) == sorted(img.data for img in result.images)
    assert sum(e.cost for e in entries) == pytest.approx(result.cost)


def test_stored_before_it_is_displayed(ip, server, monkeypatch):
    seen = []
    import indox_jupyter.magics as magics_module

    real = magics_module.render_result

    def spy(result, options):
        seen.append(len(default_gallery()))
        return real(result, options)

    monkeypatch.setattr(magics_module, "render_result", spy)
    result = cell(ip, "-m openai/dall-e-2 -s 256x256")
    ip.display_formatter.format(result)
    assert seen == [1]


def test_store_failure_still_shows_the_paid_image(ip, server, monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("INDOX_JUPYTER_HOME", str(blocker))
    result = cell(ip, "-m openai/dall-e-2 -s 256x256")
    assert isinstance(result, ImageResult) and len(result.images[0].data) > 0
    err = capsys.readouterr().err
    assert "not kept in the gallery" in err and err.count("\n") == 1


def test_one_expired_url_keeps_the_other_image_and_the_spend(ip, server, capsys):
    # image 0 downloads, image 1's URL answers 403 (expired): a paid result must not be lost
    server.script(Fault(path="/files/*", action="pass"), Fault(path="/files/*", status=403))
    outcome = ip.run_cell("%%indox_image -m openai/dall-e-2 -s 256x256 -n 2 --response-format url -o pics\n"
                          "a kite over the dunes")
    assert outcome.success and outcome.error_in_exec is None
    result = ip.user_ns["pics"]
    assert outcome.result is result and [img.index for img in result.images] == [0]
    assert result.cost and result.cost > 0
    entries = default_gallery().history()
    assert [e.image_index for e in entries] == [0] and entries[0].data == result.images[0].data
    assert magics(ip).session_cost == pytest.approx(result.cost)  # the session spend counts it
    assert default_gallery().session_cost() == pytest.approx(result.cost)  # and so does the gallery
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("indox: image 1 of 2 did not arrive"), err
    assert "403" in lines[0] and "Traceback" not in err and TEST_API_KEY not in err
    assert html_of(ip, result).count("data:image/webp;base64,") == 1


def test_no_image_arrived_is_one_line_and_the_spend_is_still_counted(ip, server, capsys):
    server.script(Fault(path="/files/*", status=403, times=2))
    with pytest.raises(UsageError) as info:
        cell(ip, "-m openai/dall-e-2 -s 256x256 -n 2 --response-format url")
    message = str(info.value)
    assert message.startswith("ImageDownloadError: images 0, 1 of 2 did not arrive") and "\n" not in message
    assert "charged" in message
    paid = generation_requests(server)
    assert len(paid) == 1
    assert magics(ip).session_cost > 0
    assert default_gallery().session_cost() == pytest.approx(magics(ip).session_cost)
    assert len(default_gallery()) == 0


# --------------------------------------------------------------------------------------------
# The cache


def test_rerun_is_served_from_the_gallery_with_no_request(ip, server):
    first = cell(ip, "-m openai/dall-e-2 -s 512x512 -n 2")
    assert len(generation_requests(server)) == 1
    server.reset()
    again = cell(ip, "-m openai/dall-e-2 -s 512x512 -n 2")
    assert server.requests == []  # nothing at all: no generation, no file download
    assert again.from_gallery and again.cost == 0 and again.original_cost == pytest.approx(first.cost)
    assert [img.data for img in again.images] == [img.data for img in first.images]
    html = html_of(ip, again)
    assert FROM_GALLERY in html and "data:image/webp;base64," in html
    assert text_of(ip, again).startswith(FROM_GALLERY)
    assert FROM_GALLERY not in html_of(ip, first)
    assert magics(ip).gallery_hits == 1 and magics(ip).session_cost == pytest.approx(first.cost)


def test_hit_after_the_provider_urls_expired_and_a_reload(ip, server):
    cell(ip, "-m openai/dall-e-2 -s 256x256 --response-format url")
    server.expire_files()
    ip.run_line_magic("reload_ext", "indox_jupyter")  # a new IndoxMagics: nothing in memory
    server.reset()
    again = cell(ip, "-m openai/dall-e-2 -s 256x256 --response-format b64_json")  # transport: same key
    assert again.from_gallery and server.requests == []


def test_different_parameters_are_a_miss(ip, server):
    cell(ip, "-m openai/dall-e-2 -s 256x256")
    cell(ip, "-m openai/dall-e-2 -s 512x512")
    cell(ip, "-m openai/dall-e-2 -s 256x256 --param user=u1")
    cell(ip, "-m openai/dall-e-2 -s 256x256", "another prompt")
    assert len(generation_requests(server)) == 4


def test_byok_is_not_part_of_the_key_and_never_stored(ip, server):
    ip.user_ns["K1"] = TEST_BYOK
    ip.user_ns["K2"] = TEST_BYOK + "other"
    cell(ip, "-m openai/dall-e-2 -s 256x256 --byok K1")
    again = cell(ip, "-m openai/dall-e-2 -s 256x256 --byok K2")
    assert again.from_gallery and len(generation_requests(server)) == 1
    home = default_gallery().home
    raw = b"".join(p.read_bytes() for p in home.iterdir() if p.is_file())
    assert TEST_BYOK.encode() not in raw and TEST_API_KEY.encode() not in raw


def test_new_always_sends_and_becomes_the_cached_one(ip, server):
    cell(ip, "-m openai/dall-e-2 -s 256x256")
    fresh = cell(ip, "-m openai/dall-e-2 -s 256x256 --new")
    assert not fresh.from_gallery and len(generation_requests(server)) == 2
    again = cell(ip, "-m openai/dall-e-2 -s 256x256")
    assert again.from_gallery and len(generation_requests(server)) == 2
    assert again.request_id == fresh.request_id  # the newest generation is served


def test_cache_trait_off_sends_every_time(ip, server):
    ip.run_line_magic("config", "IndoxMagics.cache = False")
    cell(ip, "-m openai/dall-e-2 -s 256x256")
    cell(ip, "-m openai/dall-e-2 -s 256x256")
    assert len(generation_requests(server)) == 2
    assert len(default_gallery()) == 2  # still kept


def test_local_sample_images_never_stand_in_for_the_service(ip, server):
    cell(ip, "-m openai/dall-e-2 -s 256x256 --local")
    assert generation_requests(server) == []
    real = cell(ip, "-m openai/dall-e-2 -s 256x256")
    assert not real.from_gallery and len(generation_requests(server)) == 1


def test_missing_file_is_a_miss_with_a_warning_not_a_crash(ip, server, capfd):
    cell(ip, "-m openai/dall-e-2 -s 256x256")
    for entry in default_gallery().history():
        entry.path.unlink()
    again = cell(ip, "-m openai/dall-e-2 -s 256x256")
    assert not again.from_gallery and len(generation_requests(server)) == 2
    err = capfd.readouterr().err
    assert "indox: gallery file" in err and "is missing" in err


# --------------------------------------------------------------------------------------------
# Money


def test_budget_refuses_before_sending(ip, server):
    ip.run_line_magic("config", "IndoxMagics.budget = 0.0")
    with pytest.raises(UsageError) as caught:
        cell(ip, "-m openai/dall-e-2 -s 256x256")
    message = str(caught.value)
    assert "\n" not in message and "%config IndoxMagics.budget = " in message and "nothing was sent" in message
    assert generation_requests(server) == []


def test_budget_counts_the_session_spend_and_hits_stay_free(ip, server):
    ip.run_line_magic("config", "IndoxMagics.budget = 0.03")
    cell(ip, "-m openai/dall-e-2 -s 1024x1024")  # $0.02
    with pytest.raises(UsageError, match="over budget"):  # $0.02 + $0.02 > $0.03 (price from /models)
        cell(ip, "-m openai/dall-e-2 -s 1024x1024", "another")
    assert len(generation_requests(server)) == 1
    hit = cell(ip, "-m openai/dall-e-2 -s 1024x1024")
    assert hit.from_gallery
    ip.run_line_magic("config", "IndoxMagics.budget = 0.02")
    with pytest.raises(UsageError, match="budget reached"):
        cell(ip, "-m openai/dall-e-2 -s 1024x1024", "another")
    ip.run_line_magic("config", "IndoxMagics.budget = None")
    cell(ip, "-m openai/dall-e-2 -s 1024x1024", "another")
    assert len(generation_requests(server)) == 2


@pytest.mark.parametrize("value", ["-1", "float('nan')", "'lots'"])
def test_bad_budget_is_refused(ip, value):
    from traitlets import TraitError

    with pytest.raises(TraitError):
        magics(ip).budget = eval(value)


def test_usage_shows_session_and_store_totals(ip, server):
    earlier = Gallery()
    earlier.session_id = "an-earlier-kernel"
    earlier.add(ImageResult({"data": [], "usage": {"cost": 1.25}}, model="openai/dall-e-3", prompt="old"))
    cell(ip, "-m openai/dall-e-2 -s 256x256 -n 2")
    cell(ip, "-m openai/dall-e-2 -s 256x256 -n 2")  # a hit: free
    view = ip.run_line_magic("indox_usage", "")
    assert view.session_cost == pytest.approx(0.032) and view.session_images == 2
    assert view.store_total == pytest.approx(1.25 + 0.032) and view.gallery_hits == 1
    text = repr(view)
    assert "gallery total" in text and "$1.28" in text and "served from gallery" in text


# --------------------------------------------------------------------------------------------
# %indox_history


def test_history_newest_first_with_thumbnails_and_escaping(ip, server):
    cell(ip, "-m openai/dall-e-2 -s 256x256", "first <b>bold</b> & co")
    cell(ip, "-m openai/dall-e-3", "second <script>alert(1)</script>")
    view = ip.run_line_magic("indox_history", "")
    assert isinstance(view, HistoryView) and [e.prompt for e in view][0].startswith("second")
    data, _ = ip.display_formatter.format(view)
    html = data["text/html"]
    assert "<script" not in html and "&lt;script&gt;" in html and "&lt;b&gt;bold" in html
    assert html.count("data:image/webp;base64,") == 2
    assert "openai/dall-e-3" in html and "revised" in html  # dall-e-3 revises the prompt
    assert html.index("second") < html.index("first")
    assert data["text/plain"].splitlines()[0].find("openai/dall-e-3") > 0
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", data["text/plain"])


def test_history_filters(ip, server):
    cell(ip, "-m openai/dall-e-2 -s 256x256 -n 3", "a red fox")
    cell(ip, "-m openai/dall-e-3", "a blue whale")
    assert len(ip.run_line_magic("indox_history", "-n 2")) == 2
    assert {e.prompt for e in ip.run_line_magic("indox_history", '--search "BLUE whale"')} == {"a blue whale"}
    assert len(ip.run_line_magic("indox_history", "--model dall-e-2")) == 3
    assert len(ip.run_line_magic("indox_history", "--search nothing-like-it")) == 0
    with pytest.raises(UsageError):
        ip.run_line_magic("indox_history", "-n 0")


def test_history_with_a_missing_file_says_so(ip, server):
    cell(ip, "-m openai/dall-e-2 -s 256x256")
    [entry] = default_gallery().history()
    entry.path.unlink()
    data, _ = ip.display_formatter.format(ip.run_line_magic("indox_history", ""))
    assert "file unavailable" in data["text/html"]


def test_history_of_an_empty_gallery(ip):
    view = ip.run_line_magic("indox_history", "")
    assert len(view) == 0 and "0 newest" in repr(view)


# --------------------------------------------------------------------------------------------
# %indox_panel


def test_panel_magic_returns_the_panel(ip, server):
    from indox_jupyter._panel import Panel

    result = ip.run_line_magic("indox_panel", "")
    assert isinstance(result, Panel)
    result.client.close()
    with pytest.raises(UsageError):
        ip.run_line_magic("indox_panel", "bogus")


# --------------------------------------------------------------------------------------------
# A fresh kernel after a restart, with the provider's URLs expired


def _run_in_kernel(source: str, env: dict, workdir) -> nbformat.NotebookNode:
    import nbclient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext indox_jupyter"), nbformat.v4.new_code_cell(source)]
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(workdir)}}).execute(env=env)
    return nb


def test_fresh_kernel_renders_from_disk_after_urls_expired(server, tmp_path):
    from indox_jupyter._demo import kernel_env

    env = kernel_env(server.url)
    home = tmp_path / "home"
    env.update(INDOX_ROUTER_API_KEY=TEST_API_KEY, INDOX_JUPYTER_HOME=str(home))
    source = "%%indox_image -m openai/dall-e-3 --response-format url\nKERNEL a lighthouse <at> dusk"

    first = _run_in_kernel(source, env, tmp_path).cells[1]
    assert len(generation_requests(server)) == 1
    assert FROM_GALLERY not in first.outputs[-1]["data"]["text/html"]

    server.expire_files()
    server.reset()
    second = _run_in_kernel(source, env, tmp_path).cells[1]
    assert server.requests == []
    outputs = [o for o in second.outputs if o.output_type != "stream"]
    assert [o.output_type for o in outputs] == ["execute_result"]
    data = outputs[0]["data"]
    assert FROM_GALLERY in data["text/html"] and FROM_GALLERY in data["text/plain"]
    assert "data:image/webp;base64," in data["text/html"] and "&lt;at&gt;" in data["text/html"]
    assert outputs[0]["metadata"]["indox_jupyter"]["from_gallery"] is True


def test_save_failing_after_a_paid_generation_warns_and_still_shows(ip, server, tmp_path, capsys,
                                                                   monkeypatch):
    import threading

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "out"
    folder.mkdir()
    server.script(Fault(action="pass", delay=1.0))  # time to break the folder while it generates
    swapped = threading.Event()

    def break_the_folder() -> None:  # after --save was checked, before the files are written
        for _ in range(3000):
            if generation_requests(server):
                folder.rmdir()
                folder.write_text("now a file")
                swapped.set()
                return
            threading.Event().wait(0.01)

    thread = threading.Thread(target=break_the_folder)
    thread.start()
    outcome = ip.run_cell("%%indox_image -m openai/dall-e-2 -s 256x256 -o pic --save out\na kite")
    thread.join()
    assert swapped.is_set()
    assert outcome.success and isinstance(outcome.result, ImageResult) and ip.user_ns["pic"] is outcome.result
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("indox: --save out failed") and "gallery" in lines[0]
    assert len(default_gallery()) == 1
    assert magics(ip).session_cost == pytest.approx(outcome.result.cost)


def test_prices_are_forgotten_when_the_connection_changes(ip, server):
    ip.run_line_magic("config", "IndoxMagics.budget = 100.0")
    cell(ip, "-m openai/dall-e-2 -s 256x256")  # the estimate reads the price list
    assert magics(ip)._prices
    magics(ip).base_url = server.url  # new connection settings close the clients
    assert magics(ip)._prices == {}
