"""``%%indox_image --each`` and ``-m a/x,b/y``: many prompts and models in one grid.

In-process shell against the local server over loopback (the batch engine itself is tested in
test_batch.py); one kernel test checks the grid inside a running event loop.
"""

from __future__ import annotations

import re

import nbformat
import pytest
from IPython.core.error import UsageError

from indox_jupyter import ImageResult
from indox_jupyter.local import Fault
from indox_jupyter.magics import IndoxMagics
from indox_jupyter.render import FROM_GALLERY, ImageGrid, word_diff_html
from indox_jupyter.store import default_gallery

from .conftest import TEST_API_KEY, generation_requests
from .magic_helpers import cell, magics

THREE = "openai/dall-e-2,openai/dall-e-3,stability/stable-diffusion-xl"


def fmt(ip, grid) -> dict:
    data, _ = ip.display_formatter.format(grid)
    return data


def sent(server, since: int = 0) -> list[tuple[str, str]]:
    """(prompt, model) of the generation requests after the first ``since`` recorded requests.

    (Not server.reset(): that also forgets the access tokens, and the re-login would show up.)"""
    return [(r["json"]["prompt"], r["json"]["model"]) for r in server.requests[since:]
            if r["path"] == "/api/v1/images/generations"]


# --------------------------------------------------------------------------------------------
# Rows and columns


def test_each_line_is_a_prompt_in_order(ip, server):
    ip.run_cell("animal = 'fox'")
    grid = cell(ip, "--each -m openai/dall-e-2 -s 256x256", "\n  a red {animal}\n\n a blue whale \n   \na green owl\n")
    assert isinstance(grid, ImageGrid) and grid.models == ["openai/dall-e-2"]
    assert grid.prompts == ["a red fox", "a blue whale", "a green owl"]
    assert [r.prompt for r in grid] == grid.prompts
    assert sorted(p for p, _ in sent(server)) == sorted(grid.prompts)
    html = fmt(ip, grid)["text/html"]
    assert html.index("a red fox") < html.index("a blue whale") < html.index("a green owl")
    assert html.count("data:image/webp;base64,") == 3


def test_each_variable_iterates_a_list(ip, server):
    ip.user_ns["captions"] = ["one cat", "  ", "two cats"]
    # IPython refuses a cell magic with an empty body, so --each VAR is the line magic.
    grid = ip.run_line_magic("indox_image", "--each captions -m openai/dall-e-2 -s 256x256")
    assert grid.prompts == ["one cat", "two cats"] and len(generation_requests(server)) == 2
    again = ip.run_cell("%indox_image --each captions -m openai/dall-e-2 -s 256x256").result
    assert all(r.from_gallery for r in again) and len(generation_requests(server)) == 2


def test_models_are_columns_in_the_order_given(ip, server):
    grid = cell(ip, f"-m {THREE}", "a harbour at dawn")
    assert grid.models == THREE.split(",") and grid.prompts == ["a harbour at dawn"]
    assert [r.model for r in grid] == THREE.split(",")
    assert sorted(m for _, m in sent(server)) == sorted(THREE.split(","))
    html = fmt(ip, grid)["text/html"]
    positions = [html.index(f">{m}</div>") for m in grid.models]
    assert positions == sorted(positions)
    revised = grid[1].images[0].revised_prompt  # dall-e-3 revises; shown as a word diff
    assert revised and word_diff_html("a harbour at dawn", revised) in html
    assert len(re.findall(r"\$0\.\d{3} · \d+\.\d s</div>", html)) == 3  # cost and time under each


def test_each_with_models_rows_are_prompts_columns_are_models(ip, server):
    grid = cell(ip, "--each -m openai/dall-e-2,stability/stable-diffusion-xl -s 512x512", "first\nsecond\nthird")
    assert len(grid) == 6 and len(generation_requests(server)) == 6
    for row, prompt in enumerate(grid.prompts):
        for column, model in enumerate(grid.models):
            outcome = grid.cell(row, column)
            assert isinstance(outcome, ImageResult) and (outcome.prompt, outcome.model) == (prompt, model)
    text = fmt(ip, grid)["text/plain"]
    assert text.splitlines()[0].startswith("ImageGrid: 3 prompt(s) x 2 model(s)")
    assert [line.split("] ")[1].split(":")[0] for line in text.splitlines()[1:]] == grid.models * 3


def test_duplicate_and_spaced_models(ip, server):
    grid = cell(ip, "-m 'openai/dall-e-2, openai/dall-e-2 ,stability/stable-diffusion-xl'")
    assert grid.models == ["openai/dall-e-2", "stability/stable-diffusion-xl"]


# --------------------------------------------------------------------------------------------
# Failures


def test_one_model_failing_shows_its_error_in_its_cell(ip, server):
    grid = cell(ip, "-m openai/dall-e-2,nosuch/model,stability/stable-diffusion-xl", "a lighthouse")
    assert isinstance(grid[0], ImageResult) and isinstance(grid[2], ImageResult)
    assert isinstance(grid[1], Exception) and grid.failed == [(0, 1, grid[1])]
    data = fmt(ip, grid)
    assert data["text/html"].count("data:image/webp;base64,") == 2 and "indox-error" in data["text/html"]
    assert "nosuch/model: failed" in data["text/plain"]


def test_cell_error_is_escaped_one_line(ip, server):
    ip.run_line_magic("config", "IndoxMagics.concurrency = 1")  # requests go in grid order
    server.script(Fault(status=400, body={"detail": "bad <script>alert(1)</script>\nsecond line"}))
    grid = cell(ip, "-m openai/dall-e-2,openai/dall-e-3")
    assert isinstance(grid[0], Exception) and isinstance(grid[1], ImageResult)
    html = fmt(ip, grid)["text/html"]
    assert "<script" not in html and "&lt;script&gt;" in html
    assert "\n" not in grid.error_text(0) and "second line" in grid.error_text(0)


@pytest.mark.parametrize("line, body, fragment", [
    ("-m openai/dall-e-2,nonsense", "x", "provider/model"),
    ("-m openai/dall-e-2,a/<b>", "x", "provider/model"),
    ("-m ,", "x", "several separated by commas"),
    ("--each -m openai/dall-e-2", "\n   \n", "no prompts"),
    ("--each nope", None, "no such variable"),
    ("--each n_items", None, "list of prompts"),
    ("--each mixed", None, "item 1 is int"),
    ("--each captions", "a body too", "leave the cell body empty"),
    ("--each --client c", "x\ny", "drop --client"),
    ("-m openai/dall-e-2,openai/dall-e-3 --client c", "x", "drop --client"),
    ("--each -n 11", "x\ny", "n"),
    ("--each -s huge", "x\ny", "size"),
])
def test_bad_input_is_refused_before_anything_is_sent(ip, server, line, body, fragment):
    ip.user_ns.update(n_items=3, mixed=["a", 1], captions=["a"], c=object())
    with pytest.raises(UsageError, match=fragment) as caught:
        if body is None:
            ip.run_line_magic("indox_image", line)
        else:
            ip.run_cell_magic("indox_image", line, body)
    assert "\n" not in str(caught.value)
    assert server.requests == []


def test_budget_refuses_the_whole_grid_before_sending(ip, server):
    ip.run_line_magic("config", "IndoxMagics.budget = 0.05")  # 3 x $0.02 (dall-e-2 1024x1024) > 0.05
    with pytest.raises(UsageError, match="over budget: these 3 request"):
        cell(ip, "--each -m openai/dall-e-2 -s 1024x1024", "a\nb\nc")
    assert generation_requests(server) == []
    cell(ip, "--each -m openai/dall-e-2 -s 1024x1024", "a\nb")
    assert len(generation_requests(server)) == 2


# --------------------------------------------------------------------------------------------
# Gallery: stored as they arrive, re-runs and resumes send only what is missing


def test_every_cell_is_stored_with_one_batch_id(ip, server):
    grid = cell(ip, "--each -m openai/dall-e-2,stability/stable-diffusion-xl -s 512x512", "p1\np2")
    entries = default_gallery().history()
    assert len(entries) == 4 and {e.source for e in entries} == {"magic"}
    assert len({e.batch_id for e in entries}) == 1 and entries[0].batch_id
    assert {(e.prompt, e.model) for e in entries} == {(r.prompt, r.model) for r in grid}
    assert magics(ip).session_cost == pytest.approx(grid.cost)


def test_rerun_is_served_from_the_gallery(ip, server):
    first = cell(ip, f"--each -m {THREE}", "a\nb")
    before = len(server.requests)
    again = cell(ip, f"--each -m {THREE}", "a\nb")
    assert len(server.requests) == before and all(r.from_gallery for r in again) and again.cost == 0
    assert [r.request_id for r in again] == [r.request_id for r in first]
    data = fmt(ip, again)
    assert data["text/html"].count(FROM_GALLERY) >= 6 and FROM_GALLERY in data["text/plain"]
    fresh = cell(ip, f"--each -m {THREE} --new", "a\nb")
    assert len(generation_requests(server)) == 12 and not any(r.from_gallery for r in fresh)


def test_growing_the_list_sends_only_the_new_prompts(ip, server):
    cell(ip, "--each -m openai/dall-e-2 -s 256x256", "one\ntwo")
    before = len(server.requests)
    grid = cell(ip, "--each -m openai/dall-e-2 -s 256x256", "one\ntwo\nthree\nfour")
    assert sorted(p for p, _ in sent(server, before)) == ["four", "three"]
    assert [r.from_gallery for r in grid] == [True, True, False, False]


def test_interrupted_batch_resumes_with_only_the_missing(ip, server, monkeypatch):
    ip.run_line_magic("config", "IndoxMagics.concurrency = 1")
    real_store = IndoxMagics._store
    stored = []

    def store_then_interrupt(self, call, result, key, **kw):
        real_store(self, call, result, key, **kw)
        stored.append(result.prompt)
        if len(stored) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the batch runs

    monkeypatch.setattr(IndoxMagics, "_store", store_then_interrupt)
    prompts = "\n".join(f"prompt {i}" for i in range(6))
    with pytest.raises(KeyboardInterrupt):
        cell(ip, "--each -m openai/dall-e-2 -s 256x256", prompts)
    monkeypatch.setattr(IndoxMagics, "_store", real_store)
    kept = {e.prompt for e in default_gallery().history()}
    assert kept == set(stored) and len(kept) == 2
    before = len(server.requests)
    grid = cell(ip, "--each -m openai/dall-e-2 -s 256x256", prompts)
    assert sorted(p for p, _ in sent(server, before)) == sorted(set(grid.prompts) - kept)
    assert len(sent(server, before)) == 4
    assert sum(r.from_gallery for r in grid) == 2


def test_out_holds_the_grid(ip, server, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcome = ip.run_cell("%%indox_image -m openai/dall-e-2,openai/dall-e-3 -o pics --save .\na kite")
    assert outcome.success
    grid = ip.user_ns["pics"]
    assert isinstance(grid, ImageGrid) and outcome.result is grid and ip.user_ns["_"] is grid
    assert len(grid.results) == 2 and len(list(tmp_path.iterdir())) == 2
    assert "saved 2 file(s)" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# In a real kernel (a running event loop)


def test_grid_in_a_kernel(server, tmp_path):
    import nbclient

    from indox_jupyter._demo import kernel_env

    env = kernel_env(server.url)
    env.update(INDOX_ROUTER_API_KEY=TEST_API_KEY, INDOX_JUPYTER_HOME=str(tmp_path / "home"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext indox_jupyter"),
                nbformat.v4.new_code_cell("%%indox_image --each -m openai/dall-e-2,openai/dall-e-3 -o g\n"
                                          "KGRID one\nKGRID two"),
                nbformat.v4.new_code_cell("print(type(g).__name__, len(g), g.models)")]
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    results = [o for o in nb.cells[1].outputs if o.output_type == "execute_result"]
    assert len(results) == 1 and results[0]["data"]["text/html"].count("data:image/webp;base64,") == 4
    assert not [o for o in nb.cells[1].outputs if o.output_type == "error"]
    assert "ImageGrid 4 ['openai/dall-e-2', 'openai/dall-e-3']" in nb.cells[2].outputs[0]["text"]
    assert len(generation_requests(server)) == 4


def test_interrupted_grid_keeps_every_paid_result(ip, server, monkeypatch, capsys):
    import threading

    ip.run_line_magic("config", "IndoxMagics.concurrency = 2")
    real_store = IndoxMagics._store
    interrupted = []

    def store_then_interrupt(self, call, result, key, **kw):
        real_store(self, call, result, key, **kw)
        if not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt  # Ctrl-C as the first result arrives

    monkeypatch.setattr(IndoxMagics, "_store", store_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        cell(ip, "--each -m openai/dall-e-2 -s 256x256", "\n".join(f"prompt {i}" for i in range(5)))
    for thread in threading.enumerate():  # the requests already sent finish in the background
        if thread.name.startswith("indox-batch"):
            thread.join(timeout=60)
    err = capsys.readouterr().err
    assert "1 of 5 new result(s) were kept in the gallery" in err
    assert "finish in the background and are kept in the gallery" in err
    sent = len(generation_requests(server))
    assert 2 <= sent <= 5  # never more than were asked for; queued ones may not have gone out
    # every request that was sent, and so paid for, has its image in the gallery
    assert len(default_gallery()) == sent
    assert len([line for line in err.splitlines() if line.startswith("indox:")]) == 1
    # a re-run sends only what is still missing
    monkeypatch.setattr(IndoxMagics, "_store", real_store)
    cell(ip, "--each -m openai/dall-e-2 -s 256x256", "\n".join(f"prompt {i}" for i in range(5)))
    assert len(generation_requests(server)) == 5


def test_grid_cell_with_a_lost_image_shows_the_images_that_arrived(ip, server, capsys):
    # the batch's download and the gallery's second try both meet the expired URL
    server.script(Fault(path="/files/*", status=403, body="expired", times=2))
    grid = cell(ip, "--each -m openai/dall-e-2 -s 256x256 -n 2", "a paper boat")
    (outcome,) = grid.results
    assert isinstance(outcome, ImageResult) and len(outcome.images) == 1
    assert len(default_gallery()) == 1  # the image that arrived is kept; the charge is recorded
    err = capsys.readouterr().err
    assert "1 of 2 image(s) did not arrive" in err and "HTTP 403" in err


def test_grid_cell_recovers_an_image_the_gallery_could_fetch_again(ip, server, capsys):
    server.script(Fault(path="/files/*", status=403, body="expired"))  # one failure only
    grid = cell(ip, "--each -m openai/dall-e-2 -s 256x256 -n 2", "a paper boat")
    (outcome,) = grid.results
    assert isinstance(outcome, ImageResult) and len(outcome.images) == 2
    assert "did not arrive" not in capsys.readouterr().err
