"""The panel's Python surface, in-process against the local server (fast; the browser test is separate)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

import indox_jupyter
from indox_jupyter import Client, ImageResult
from indox_jupyter.local import Fault
from indox_jupyter._panel import FALLBACK_MODELS, Panel, panel
from indox_jupyter.store import DB_NAME, Gallery

from .conftest import TEST_API_KEY, TEST_BYOK, generation_requests

pytestmark = pytest.mark.timeout(60)


@pytest.fixture()
def gallery(tmp_path):
    with Gallery(tmp_path / "gallery") as g:
        yield g


@pytest.fixture()
def make(client, gallery):
    """Build a panel on the test client and gallery; waits for its last job on teardown."""
    made: list[Panel] = []

    def build(**defaults) -> Panel:
        p = Panel(client, gallery=gallery, **defaults)
        made.append(p)
        return p

    yield build
    for p in made:
        p.wait(30)


def widget_state(p: Panel) -> str:
    """Everything the front end (and a saved notebook's widget state) gets for this panel."""
    from ipywidgets.embed import dependency_state

    return json.dumps(dependency_state(p.widget, drop_defaults=False), default=repr)


# -- import surface ----------------------------------------------------------------------------


def test_importing_the_package_does_not_import_ipywidgets():
    code = "import sys, indox_jupyter; print('ipywidgets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("first", ["import indox_jupyter._panel", "import indox_jupyter.magics", "pass"])
def test_panel_is_the_function_whatever_was_imported_first(first):
    code = (f"import indox_jupyter\n{first}\n"
            "from indox_jupyter._panel import panel\n"
            "assert indox_jupyter.panel is panel\n"
            "print(type(indox_jupyter.panel(gallery=False)).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Panel"


def test_panel_displays_as_its_widget(make):
    p = make()
    bundle = p._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == p.widget.model_id


# -- model options -----------------------------------------------------------------------------


def test_only_the_chosen_models_options_are_offered(make):
    p = make()
    assert p.model.value == "openai/dall-e-3"
    assert "openai/dall-e-2" in p.model.options and "google/imagen-3.0-generate-002" in p.model.options
    assert p.size.options == ("1024x1024", "1792x1024", "1024x1792")
    assert p.quality.options == ("standard", "hd") and p.style.options == ("vivid", "natural")
    assert p.n.disabled and p.n.max == 1
    assert p.aspect_ratio.layout.display == "none"

    p.size.value = "1024x1024"
    p.model.value = "openai/dall-e-2"
    assert p.size.options == ("1024x1024", "512x512", "256x256")
    assert p.size.value == "1024x1024"  # still valid: kept
    assert p.quality.layout.display == "none" and p.style.layout.display == "none"
    assert not p.n.disabled and p.n.max == 10

    p.model.value = "openai/gpt-image-1"
    assert p.quality.options == ("auto", "low", "medium", "high") and p.quality.value == "auto"

    p.model.value = "google/imagen-3.0-generate-002"
    assert p.size.layout.display == "none" and p.aspect_ratio.layout.display is None
    assert "16:9" in p.aspect_ratio.options
    assert p.negative_prompt.layout.display is None  # Imagen takes a negative prompt...
    p.model.value = "openai/dall-e-3"
    assert p.negative_prompt.layout.display == "none"  # ...DALL-E 3 does not


def test_only_supported_options_are_sent(make, server):
    p = make(prompt="a lighthouse", model="openai/dall-e-2", size="256x256", n=2)
    p.negative_prompt.value = "fog"  # hidden for dall-e-2: must not be sent
    result = p.generate()
    assert len(result.images) == 2
    body = generation_requests(server)[-1]["json"]
    assert body["model"] == "openai/dall-e-2" and body["size"] == "256x256" and body["n"] == 2
    assert not {"quality", "style", "negative_prompt", "aspect_ratio"} & set(body)

    p.model.value = "google/imagen-3.0-generate-002"
    p.aspect_ratio.value = "16:9"
    p.n.value = 1
    p.seed.value = "7"
    p.generate()
    body = generation_requests(server)[-1]["json"]
    assert body["aspect_ratio"] == "16:9" and body["seed"] == 7 and body["negative_prompt"] == "fog"
    assert "size" not in body


def test_offline_model_list_falls_back_with_a_note(gallery, server):
    server.stop()
    try:
        with Client(TEST_API_KEY, base_url=server.url, max_retries=0) as offline:
            p = Panel(offline, gallery=gallery)
    finally:
        server.start()
    assert list(p.model.options) == [m.id for m in FALLBACK_MODELS]
    assert "Model list unavailable" in p.status.value and "built-in list" in p.status.value
    assert TEST_API_KEY not in p.status.value


def test_defaults_are_checked(make):
    p = make(prompt="x", model="openai/dall-e-2", size="512x512", save_dir="out", use_cache=False)
    assert (p.prompt.value, p.model.value, p.size.value, p.save_dir.value, p.use_cache.value) == (
        "x", "openai/dall-e-2", "512x512", "out", False)
    with pytest.raises(TypeError, match="unexpected option"):
        make(sizes="1024x1024")
    with pytest.raises(indox_jupyter.ValidationError, match="does not offer size"):
        make(model="openai/dall-e-3", size="256x256")


def test_default_client_is_the_local_server_with_a_note_when_nothing_is_configured(gallery):
    p = panel(gallery=gallery)
    assert p.client.is_local
    assert "local server" in p.status.value
    p.prompt.value = "a quiet harbour"
    assert p.generate().images[0].width > 0


def test_default_client_uses_the_configured_server(monkeypatch, gallery, server):
    monkeypatch.setenv("INDOX_ROUTER_BASE_URL", server.url)
    monkeypatch.setenv("INDOX_ROUTER_API_KEY", TEST_API_KEY)
    p = panel(gallery=gallery)
    assert not p.client.is_local and p.client.base_url == server.url
    assert p.status.value == ""


# -- generating --------------------------------------------------------------------------------


def test_generate_returns_the_result_and_shows_it_on_top(make, server):
    p = make(prompt="a red fox", model="openai/dall-e-3")
    first = p.generate()
    assert isinstance(first, ImageResult) and p.result is first
    assert p.status.value.startswith("Done: openai/dall-e-3 · 1 image · $0.040")
    card = p.results_box.children[0]
    image, info = card.children
    assert image.format == "webp" and len(image.value) < len(first.images[0].data) / 4  # a preview
    revised = next(c for c in info.children if "indox-revised" in c._dom_classes)
    assert "digital illustration of" in revised.value
    assert "openai/dall-e-3 · 1024x1024 · $0.040" in info.children[0].value

    p.prompt.value = "a blue fox"
    second = p.generate()
    assert p.results == [second, first]
    assert len(p.results_box.children) == 2 and p.results_box.children[1] is card  # newest on top


def test_click_returns_at_once_and_runs_in_the_background(make, server):
    server.latency = 1.0
    p = make(prompt="a slow sunrise")
    p.generate_button.click()
    # Back in the caller's thread while the request is in flight: the kernel stays responsive.
    assert p.generate_button.disabled and p.cancel_button.layout.display is None
    assert p.progress.layout.display is None and p.result is None
    assert p.status.value.startswith("Generating with openai/dall-e-3")
    p.generate_button.click()  # a second click while running: ignored, never a second charge
    result = p.wait(30)
    assert isinstance(result, ImageResult) and p.result is result
    assert not p.generate_button.disabled and p.cancel_button.layout.display == "none"
    assert len(generation_requests(server)) == 1


def test_cancel_stops_waiting_and_a_late_image_is_kept(make, server, gallery):
    server.latency = 1.0
    p = make(prompt="a late train")
    p.generate_button.click()
    p.cancel_button.click()
    assert not p.generate_button.disabled and p.cancel_button.layout.display == "none"
    assert p.status.value.startswith("Cancelled")
    p.wait(30)
    assert p.result is None  # not what the user is waiting for any more...
    late = p.results_box.children[0]
    notes = [c.value for c in late.children[1].children if "indox-note" in c._dom_classes]
    assert notes == ["arrived after Cancel (paid, kept in the gallery)"]  # ...but shown and kept
    assert [e.prompt for e in gallery.history()] == ["a late train"]
    assert "finished after all" in p.status.value


def test_a_new_generation_can_start_after_cancel(make, server):
    server.latency = 1.0
    p = make(prompt="first", use_cache=False)
    p.generate_button.click()
    p.cancel()
    p.prompt.value = "second"
    server.latency = 0.0
    result = p.generate()
    assert result.prompt == "second" and p.result is result
    p.wait(30)  # the cancelled one lands later, marked, without replacing p.result
    assert p.result is result


def test_generate_refuses_to_run_twice_at_once(make, server):
    server.latency = 1.0
    p = make(prompt="once")
    p.generate_button.click()
    with pytest.raises(RuntimeError, match="already running"):
        p.generate()
    p.wait(30)


# -- gallery and cache -------------------------------------------------------------------------


def test_every_result_is_stored_and_an_unchanged_request_is_served_from_the_gallery(make, server, gallery):
    p = make(prompt="a paper boat")
    paid = p.generate()
    again = p.generate()
    assert getattr(again, "from_gallery", False) and again.cost == 0
    assert len(generation_requests(server)) == 1
    assert "Served from the gallery" in p.status.value
    notes = [c.value for c in p.results_box.children[0].children[1].children if "indox-note" in c._dom_classes]
    assert notes and "from the gallery" in notes[0]
    assert again.images[0].data == paid.images[0].data

    p.use_cache.value = False
    fresh = p.generate()
    assert not getattr(fresh, "from_gallery", False) and len(generation_requests(server)) == 2
    assert [e.source for e in gallery.history()] == ["panel", "panel"]


def test_history_tab_browses_the_store(make, gallery):
    p = make(prompt="a green kite", model="openai/dall-e-2", size="256x256")
    p.generate()
    p.prompt.value = "a yellow kite"
    p.model.value = "stability/stable-diffusion-xl"
    p.generate()
    p.tabs.selected_index = 1  # opening the tab loads it
    assert len(p.history_grid.children) == 2
    assert p.history_status.value == "2 shown of 2 stored images"
    first_caption = p.history_grid.children[0].children[1].value
    assert first_caption == "a yellow kite"  # newest first
    p.history_search.value = "green"
    assert [c.children[1].value for c in p.history_grid.children] == ["a green kite"]
    p.history_search.value = ""
    p.history_model.value = "stability/stable-diffusion-xl"
    assert [c.children[1].value for c in p.history_grid.children] == ["a yellow kite"]
    p.history_grid.children[0].children[3].click()  # "Use prompt"
    assert p.prompt.value == "a yellow kite" and p.tabs.selected_index == 0


def test_panel_without_gallery_still_works(client):
    p = Panel(client, gallery=False, prompt="no store")
    assert p.generate().images
    assert p.refresh_history() == [] and "No gallery" in p.history_status.value


# -- per-image buttons -------------------------------------------------------------------------


def test_use_revised_prompt_copies_it_into_the_prompt_box(make):
    p = make(prompt="a cat on a roof")
    result = p.generate()
    use = p.results_box.children[0].children[1].children[-1].children[0]
    assert use.description == "Use revised prompt"
    use.click()
    assert p.prompt.value == result.images[0].revised_prompt
    assert p.prompt.value != "a cat on a roof"


def test_save_writes_the_original_bytes_to_the_chosen_directory(make, tmp_path):
    p = make(prompt="a saved cat", save_dir=str(tmp_path / "out"))
    result = p.generate()
    save = p.results_box.children[0].children[1].children[-1].children[1]
    save.click()
    files = list((tmp_path / "out").iterdir())
    assert len(files) == 1 and files[0].read_bytes() == result.images[0].data
    assert p.status.value == f"Saved {files[0]}"


# -- errors ------------------------------------------------------------------------------------


def test_errors_are_one_escaped_line_never_a_traceback(make, server, capsys):
    p = make(prompt="")
    p.generate_button.click()  # empty prompt: refused before sending
    assert p.status.value.startswith("ValidationError: ")
    assert not p.generate_button.disabled and generation_requests(server) == []

    server.script(Fault(status=402, body={"detail": "Insufficient credits <b>now</b>\nsecond line"}))
    p.prompt.value = "a costly cat"
    p.generate_button.click()
    p.wait(30)
    assert p.status.value.startswith("InsufficientCreditsError: ")
    assert "\n" not in p.status.value and p.status.style.text_color == "#c62828"
    assert p.result is None and not p.generate_button.disabled
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err


def test_generate_raises_what_the_status_line_shows(make, server):
    server.script(Fault(status=400, body={"detail": "size not allowed"}))
    p = make(prompt="a locked door")
    with pytest.raises(indox_jupyter.InvalidParametersError):
        p.generate()
    assert p.status.value.startswith("InvalidParametersError") and "size not allowed" in p.status.value
    assert not p.generate_button.disabled


def test_unexpected_errors_go_to_the_details_box(make, monkeypatch, capsys):
    p = make(prompt="a bug")

    def boom(*args, **kwargs):
        raise RuntimeError("unexpected <thing>")

    monkeypatch.setattr(p.client, "images", boom)
    p.generate_button.click()
    p.wait(30)
    assert p.status.value == "Unexpected error: RuntimeError: unexpected <thing> (see Details)"
    assert p.details.layout.display is None
    assert "Traceback" in p._details.outputs[0]["text"]
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err


def test_prompt_text_is_escaped_in_the_revised_prompt(make):
    p = make(prompt="<img src=x onerror=alert(1)> fox")
    p.generate()
    revised = next(c for c in p.results_box.children[0].children[1].children if "indox-revised" in c._dom_classes)
    assert "<img" not in revised.value and "&lt;img" in revised.value


# -- secrets -----------------------------------------------------------------------------------


def test_byok_key_never_stays_in_widget_state(make, server, gallery):
    p = make(prompt="a private cat")
    p.byok.value = TEST_BYOK  # what the front end sends on Enter / blur
    assert p.byok.value == ""  # moved to kernel memory at once
    assert "kernel memory only" in p.byok.placeholder
    result = p.generate()
    assert generation_requests(server)[-1]["json"]["byok_api_key"] == "***"  # it was sent
    assert "byok_api_key" not in result.params
    state = widget_state(p)
    for secret in (TEST_BYOK, TEST_API_KEY):
        assert secret not in state
        assert secret not in p.status.value
    assert all(TEST_BYOK not in json.dumps(e.params) for e in gallery.history())

    p.forget_byok_button.click()
    p.use_cache.value = False
    p.generate()
    assert "byok_api_key" not in generation_requests(server)[-1]["json"]


def test_status_lines_never_carry_a_key(make, server):
    server.script(Fault(status=400, body={"detail": f"bad key {TEST_BYOK} and {TEST_API_KEY}"}))
    p = make(prompt="a leaky cat")
    p.byok.value = TEST_BYOK
    p.generate_button.click()
    p.wait(30)
    assert p.status.value.startswith("InvalidParametersError")
    assert TEST_BYOK not in p.status.value and TEST_API_KEY not in p.status.value


def test_widget_updates_from_the_worker_thread_reach_the_widgets(make, server):
    """The ticker runs on its own thread; its updates must land while the caller keeps working."""
    server.latency = 1.2
    p = make(prompt="a ticking clock")
    seen: list[str] = []
    ticked = threading.Event()

    def watch(change):
        if change["new"].endswith(" s"):
            seen.append(change["new"])
            ticked.set()

    p.status.observe(watch, names="value")
    p.generate_button.click()
    assert ticked.wait(10)
    assert seen[0].startswith("Generating with openai/dall-e-3 · 1 image… ")
    p.wait(30)


# -- a result with an image that cannot be downloaded ------------------------------------------


@pytest.mark.parametrize("stored", [True, False], ids=["gallery", "no-gallery"])
def test_one_failed_download_keeps_and_shows_the_other_image(client, gallery, server, stored):
    """Paid for two, one URL refused: the other image is stored, shown, and the status names #1."""
    p = Panel(client, gallery=gallery if stored else False,
              prompt="two boats", model="openai/dall-e-2", size="256x256", n=2)
    server.script(Fault(path="/files/*", status=403))  # the first image's URL has "expired"
    result = p.generate()
    assert p.result is result and len(result.images) == 2
    cards = p.results_box.children
    assert len(cards) == 1  # only the image that arrived
    assert "#2 of 2" in cards[0].children[1].children[0].value
    status = p.status.value
    assert status.startswith("Done: openai/dall-e-2 · 1 of 2 images") and "\n" not in status
    assert "image #1 could not be downloaded" in status and "403" in status
    assert TEST_API_KEY not in status
    if stored:
        assert [e.image_index for e in gallery.history()] == [1]
        assert gallery.total_cost() == pytest.approx(result.cost)  # the whole generation's cost
    else:
        assert len(gallery) == 0


# -- the panel's HTTP client -------------------------------------------------------------------


def test_close_closes_only_a_client_the_panel_created(client):
    own = panel(gallery=False)  # nothing configured: the panel makes its own local client
    own.close()
    assert own.client._http.is_closed
    own.close()  # idempotent

    shared = Panel(client, gallery=False)
    shared.close()
    assert not client._http.is_closed  # passed in: the caller's to close
    assert client.models()


def test_a_client_closed_elsewhere_is_one_plain_status_line(server, gallery, capsys):
    lent = Client(TEST_API_KEY, base_url=server.url)
    p = Panel(lent, gallery=gallery, prompt="a closed door")
    lent.close()  # e.g. the magic that lent it was unloaded
    p.generate_button.click()
    p.wait(30)
    assert p.status.value == "NetworkError: the connection was closed; open a new panel"
    assert p.details.layout.display == "none" and not p.generate_button.disabled
    assert generation_requests(server) == []
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err


def test_the_ticker_never_overwrites_the_final_status(make, server, monkeypatch):
    """The ticker's check and write are one step: "Generating… N s" never lands after "Done"."""
    import indox_jupyter._panel as panel_module

    monkeypatch.setattr(panel_module, "TICK_SECONDS", 0.001)  # tick all the time
    server.latency = 0.05
    p = make(prompt="a photo finish", use_cache=False)
    # A slow front-end sync between the ticker's check and its status write widens the race.
    p.progress.observe(lambda _change: time.sleep(0.2), names="value")
    for _ in range(5):
        p.generate_button.click()
        p.wait(30)
        for thread in threading.enumerate():
            if thread.name == "indox-panel-tick":
                thread.join(30)
        assert p.status.value.startswith("Done: openai/dall-e-3 · 1 image")


# -- a gallery that cannot be used -------------------------------------------------------------


@pytest.fixture()
def broken_gallery(tmp_path):
    home = tmp_path / "broken"
    home.mkdir()
    (home / DB_NAME).write_bytes(b"this is not an sqlite database at all" * 200)
    return Gallery(home)


def test_an_unreadable_gallery_still_generates_and_says_so_in_one_line(client, server, broken_gallery):
    p = Panel(client, gallery=broken_gallery, prompt="a lost map")
    result = p.generate()
    assert p.result is result and len(p.results_box.children) == 1
    assert len(generation_requests(server)) == 1
    status = p.status.value
    assert status.startswith("Done: openai/dall-e-3 · 1 image") and "\n" not in status
    assert "the gallery could not be read" in status and "not kept in the gallery" in status
    assert str(broken_gallery.db_path) in status


def late_notes(p: Panel) -> list[str]:
    card = p.results_box.children[0]
    return [c.value for c in card.children[1].children if "indox-note" in c._dom_classes]


def test_a_late_image_without_a_gallery_is_not_said_to_be_kept(client, server):
    server.latency = 1.0
    p = Panel(client, gallery=False, prompt="a late bus")
    p.generate_button.click()
    p.cancel_button.click()
    assert "kept in the gallery" not in p.status.value
    p.wait(30)
    assert late_notes(p) == ["arrived after Cancel (paid; not stored: the gallery is off)"]
    assert "finished after all" in p.status.value and "kept" not in p.status.value


def test_a_late_image_that_could_not_be_stored_is_not_said_to_be_kept(client, server, broken_gallery):
    server.latency = 1.0
    p = Panel(client, gallery=broken_gallery, prompt="a late ferry")
    p.generate_button.click()
    p.cancel_button.click()
    p.wait(30)
    assert late_notes(p) == ["arrived after Cancel (paid; not kept in the gallery)"]
    status = p.status.value
    assert "finished after all" in status and "not kept in the gallery" in status and "\n" not in status


def test_a_server_that_never_answers_the_model_list_does_not_freeze_the_panel(gallery, monkeypatch):
    """Connections are accepted (the listen backlog) but never answered."""
    import socket

    import indox_jupyter._panel as panel_module

    monkeypatch.setattr(panel_module, "MODELS_TIMEOUT", 0.5)  # the real one is 10 s
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with Client(TEST_API_KEY, base_url=f"http://127.0.0.1:{port}") as slow:  # 600 s timeout
            p = Panel(slow, gallery=gallery)
            assert not slow._http.is_closed  # the panel's listing client was its own
    assert list(p.model.options) == [m.id for m in FALLBACK_MODELS]
    status = p.status.value
    assert status.startswith("Model list unavailable (APITimeoutError") and "built-in list" in status
    assert TEST_API_KEY not in status and "\n" not in status


# -- limits ------------------------------------------------------------------------------------


def test_out_of_range_n_is_refused_not_clamped(make):
    assert make(model="openai/dall-e-2", n=3).n.value == 3
    for model, n in [("openai/dall-e-2", 50), ("openai/dall-e-2", 0), ("openai/dall-e-3", 2),
                     ("openai/dall-e-2", "many"), ("openai/dall-e-2", 2.5), ("openai/dall-e-2", True)]:
        with pytest.raises(indox_jupyter.ValidationError, match="^n must be") as info:
            make(model=model, n=n)
        assert "\n" not in str(info.value)


def test_history_thumbnails_are_capped(make, gallery, monkeypatch):
    import indox_jupyter._panel as panel_module

    monkeypatch.setattr(panel_module, "THUMB_CACHE", 2)
    p = make(model="openai/dall-e-2", size="256x256")
    for prompt in ("one kite", "two kites", "three kites"):
        p.prompt.value = prompt
        p.generate()
    assert len(p.refresh_history()) == 3 and len(p.history_grid.children) == 3
    assert len({e.sha256 for e in gallery.history()}) == 3
    assert len(p._thumbs) == 2


# -- comparing models --------------------------------------------------------------------------


def columns(p: Panel) -> list:
    """The model columns of the newest comparison row."""
    row = p.results_box.children[0]
    assert "indox-compare" in row._dom_classes
    return list(row.children)


def column_model(column) -> str:
    return column.children[0].value


def column_errors(column) -> list[str]:
    return [c.value for c in column.children if "indox-error" in c._dom_classes]


def column_cards(column) -> list:
    return [c for c in column.children if "indox-compare-card" in c._dom_classes]


def test_compare_offers_every_other_model_and_says_so_in_the_advanced_title(make):
    p = make(model="openai/dall-e-3", compare="openai/dall-e-2, stability/stable-diffusion-xl")
    assert "openai/dall-e-3" not in p.compare.options and "openai/dall-e-2" in p.compare.options
    assert p.compare.value == ("openai/dall-e-2", "stability/stable-diffusion-xl")
    assert p.advanced.titles == ("Advanced · comparing with 2 other models",)
    p.model.value = "openai/dall-e-2"  # the main model is never compared with itself
    assert "openai/dall-e-2" not in p.compare.options and "openai/dall-e-3" in p.compare.options
    assert p.compare.value == ("stability/stable-diffusion-xl",)
    assert p.advanced.titles == ("Advanced · comparing with 1 other model",)
    p.compare_clear.click()
    assert p.compare.value == () and p.advanced.titles == ("Advanced",)
    with pytest.raises(indox_jupyter.ValidationError, match="provider/model"):
        make(compare="dall-e-2")


def test_comparing_three_models_sends_three_requests_and_shows_three_columns(make, server, gallery):
    p = make(prompt="a red fox", model="openai/dall-e-3", size="1792x1024")
    p.compare.value = ("openai/dall-e-2", "stability/stable-diffusion-xl")
    result = p.generate()
    assert isinstance(result, ImageResult) and result.model == "openai/dall-e-3" and p.result is result
    bodies = {r["json"]["model"]: r["json"] for r in generation_requests(server)}
    assert len(generation_requests(server)) == 3
    assert bodies["openai/dall-e-3"]["size"] == "1792x1024"
    # 1792x1024 is not offered by the others: each gets its own default, and the line says so.
    assert bodies["openai/dall-e-2"]["size"] == "1024x1024"
    assert bodies["stability/stable-diffusion-xl"]["size"] == "1024x1024"
    assert not {"quality", "style"} & (set(bodies["openai/dall-e-2"]) | set(bodies["stability/stable-diffusion-xl"]))

    cols = columns(p)
    assert [column_model(c) for c in cols] == ["openai/dall-e-3", "openai/dall-e-2", "stability/stable-diffusion-xl"]
    revised = []
    for column in cols:
        (card,) = column_cards(column)
        assert card.children[0].format == "webp" and not column_errors(column)
        revised.append(next((c.value for c in card.children if "indox-revised" in c._dom_classes), None))
    assert "digital illustration of" in revised[0]  # DALL-E 3 rewrites the prompt...
    assert revised[1] is None  # ...DALL-E 2 does not (its card says "no revised prompt")
    assert "highly detailed" in revised[2]
    assert "1792x1024 · $0.080" in column_cards(cols[0])[0].children[1].value
    assert "1024x1024 · $0.020" in column_cards(cols[1])[0].children[1].value

    status = p.status.value
    assert status.startswith("Compared 3 models: 3 generated ($0.140)") and "\n" not in status
    assert "openai/dall-e-2: size 1024x1024, its default (1792x1024 not offered)" in status
    assert p.status.style.text_color == "#2e7d32"
    assert list(p.results_by_model) == ["openai/dall-e-3", "openai/dall-e-2", "stability/stable-diffusion-xl"]
    assert all(isinstance(r, ImageResult) for r in p.results_by_model.values())
    assert sorted(e.model for e in gallery.history()) == sorted(p.results_by_model)
    assert {e.source for e in gallery.history()} == {"panel"}


def test_each_compared_model_gets_only_what_it_takes(make, server):
    p = make(prompt="a misty lake", model="stability/stable-diffusion-xl", size="512x512", n=3,
             negative_prompt="people", seed=7, compare=["openai/dall-e-3", "google/imagen-3.0-generate-002"])
    p.generate()
    bodies = {r["json"]["model"]: r["json"] for r in generation_requests(server)}
    main, dalle, imagen = (bodies[m] for m in ("stability/stable-diffusion-xl", "openai/dall-e-3",
                                               "google/imagen-3.0-generate-002"))
    assert (main["size"], main["n"], main["negative_prompt"], main["seed"]) == ("512x512", 3, "people", 7)
    assert dalle["n"] == 1 and dalle["size"] == "1024x1024"
    assert not {"negative_prompt", "seed"} & set(dalle)
    assert (imagen["n"], imagen["negative_prompt"], imagen["seed"]) == (3, "people", 7)
    assert "size" not in imagen and "aspect_ratio" not in imagen  # Imagen takes aspect_ratio only
    status = p.status.value
    assert ("openai/dall-e-3: size 1024x1024, its default (512x512 not offered), n=1, its maximum, "
            "without negative prompt, without seed") in status
    assert "google/imagen-3.0-generate-002: without size" in status
    assert len(columns(p)) == 3 and len(column_cards(columns(p)[0])) == 3


def test_a_compared_model_that_fails_shows_its_error_and_the_others_still_show(make, server, gallery):
    p = make(prompt="a kite", model="openai/dall-e-2", size="256x256",
             compare=("openai/dall-e-9", "stability/stable-diffusion-xl"))  # the server has no dall-e-9
    result = p.generate()  # a compared model's failure is not raised
    assert p.result is result and result.model == "openai/dall-e-2"
    cols = columns(p)
    assert [len(column_cards(c)) for c in cols] == [1, 0, 1]
    (error,) = column_errors(cols[1])
    assert error.startswith('<div style="color:#c62828') and "ModelNotFoundError: " in error
    assert "Model &#x27;dall-e-9&#x27; not found" in error
    assert isinstance(p.results_by_model["openai/dall-e-9"], indox_jupyter.ModelNotFoundError)
    status = p.status.value
    assert status.startswith("Compared 3 models: 2 generated ($0.056), 1 failed")
    assert p.status.style.text_color == "#c62828"
    assert len(gallery.history()) == 2


def test_a_scripted_failure_shows_in_one_column_escaped_on_one_line(make, server):
    server.script(Fault(status=404, body={"detail": "Model 'x' <b>not</b> found\nsecond line"}))
    p = make(prompt="a lantern", model="openai/dall-e-2", size="256x256",
             compare=("openai/dall-e-3", "stability/stable-diffusion-xl"))
    p.generate_button.click()  # whichever model's request the fault meets, the click never raises
    p.wait(30)
    cols = columns(p)
    failed = [c for c in cols if column_errors(c)]
    assert len(failed) == 1 and len(generation_requests(server)) == 3
    (error,) = column_errors(failed[0])
    assert "&lt;b&gt;not&lt;/b&gt;" in error and "<b>" not in error and "\n" not in error.split(">", 1)[1]
    assert all(len(column_cards(c)) == 1 for c in cols if c is not failed[0])
    assert "2 generated" in p.status.value and "1 failed" in p.status.value


def test_the_main_model_failing_is_raised_after_every_column_is_shown(make, server):
    p = make(prompt="a bell", model="openai/nope-1", compare=("openai/dall-e-2",))
    with pytest.raises(indox_jupyter.ModelNotFoundError):
        p.generate()
    assert p.result is None
    cols = columns(p)
    assert [column_model(c) for c in cols] == ["openai/nope-1", "openai/dall-e-2"]
    assert column_errors(cols[0]) and len(column_cards(cols[1])) == 1
    assert isinstance(p.results_by_model["openai/dall-e-2"], ImageResult)
    assert not p.generate_button.disabled


def test_rerunning_a_comparison_is_served_from_the_gallery(make, server, gallery):
    p = make(prompt="a paper crane", model="openai/dall-e-2", size="256x256")
    single = p.generate()
    assert len(generation_requests(server)) == 1
    p.compare.value = ("openai/dall-e-3", "stability/stable-diffusion-xl")
    first = p.generate()  # the main model's request is unchanged: the same key as a single run
    assert getattr(first, "from_gallery", False) and first.images[0].data == single.images[0].data
    assert len(generation_requests(server)) == 3
    assert "2 generated" in p.status.value and "1 from the gallery (no charge)" in p.status.value

    again = p.generate()
    assert len(generation_requests(server)) == 3  # zero new requests
    assert p.result is again and getattr(again, "from_gallery", False)
    assert p.status.value.startswith("Compared 3 models: 3 from the gallery (no charge)")
    for column in columns(p):
        notes = [c.value for c in column_cards(column)[0].children if "indox-note" in c._dom_classes]
        assert notes == ["from the gallery: identical earlier request, no charge"]
    assert len(gallery.history()) == 3  # nothing stored twice

    p.use_cache.value = False
    p.generate()
    assert len(generation_requests(server)) == 6


def test_a_comparison_click_runs_in_the_background_and_cancel_keeps_late_results(make, server, gallery):
    server.latency = 1.0
    p = make(prompt="a late comet", model="openai/dall-e-2", size="256x256",
             compare=("openai/dall-e-3", "stability/stable-diffusion-xl"))
    p.generate_button.click()
    assert p.generate_button.disabled and p.status.value.startswith("Generating with 3 models")
    p.cancel_button.click()
    assert not p.generate_button.disabled and p.status.value.startswith("Cancelled")
    p.wait(30)
    assert p.result is None and p.results_by_model == {}
    cols = columns(p)
    assert len(cols) == 3
    for column in cols:
        notes = [c.value for c in column_cards(column)[0].children if "indox-note" in c._dom_classes]
        assert notes == ["arrived after Cancel (paid, kept in the gallery)"]
    assert len(gallery.history()) == 3 and len(generation_requests(server)) == 3
    assert p.status.value.startswith("A cancelled comparison finished after all: 3 of 3 results kept")


def test_byok_key_never_reaches_widget_state_when_comparing(make, server, gallery):
    p = make(prompt="a private owl", model="openai/dall-e-2", size="256x256",
             compare=("openai/dall-e-3", "stability/stable-diffusion-xl"))
    p.byok.value = TEST_BYOK
    assert p.byok.value == ""
    p.generate()
    bodies = [r["json"] for r in generation_requests(server)]
    assert len(bodies) == 3 and all(b["byok_api_key"] == "***" for b in bodies)  # sent to each
    state = widget_state(p)
    for secret in (TEST_BYOK, TEST_API_KEY):
        assert secret not in state and secret not in p.status.value
    assert all(TEST_BYOK not in json.dumps(e.params) for e in gallery.history())
    assert all("byok_api_key" not in r.params for r in p.results_by_model.values())
