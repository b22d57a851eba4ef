"""The gallery store: real files, real SQLite, real processes; no mocks."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image

from indox_jupyter._cachekey import canonical_request
from indox_jupyter._models import ImageResult
from indox_jupyter.errors import IndoxRouterError
from indox_jupyter.store import (
    DB_NAME,
    HOME_ENV,
    Entry,
    Gallery,
    StoreError,
    cache_key,
    default_home,
    history,
)

ROOT = Path(__file__).resolve().parents[1]
WRITER = ROOT / "tests" / "helpers" / "store_writer.py"


def png(seed: int, side: int = 32, color: tuple[int, int, int] | None = None) -> bytes:
    if color is None:
        color = (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256)
    img = Image.new("RGB", (side, side), color)
    img.putpixel((0, 0), (seed % 256, (seed // 256) % 256, 7))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def make_result(images: list[bytes | None], *, prompt: str = "a cat", model: str = "openai/dall-e-3",
                params: dict | None = None, cost: float | None = 0.04,
                revised: str = "a fluffy cat") -> ImageResult:
    items = []
    for i, data in enumerate(images):
        item: dict = {"index": i, "revised_prompt": f"{revised} {i}"}
        if data is None:
            item["b64_json"] = base64.b64encode(b"<html>not an image</html>").decode()
        else:
            item["b64_json"] = base64.b64encode(data).decode()
        items.append(item)
    body: dict = {"created": 1, "data": items, "request_id": "req-1"}
    if cost is not None:
        body["usage"] = {"cost": cost}
    return ImageResult(body, model=model, prompt=prompt,
                       params={"size": "256x256"} if params is None else params)


def files_in(home: Path) -> list[Path]:
    return sorted(p for p in (home / "images").glob("*/*") if not p.name.startswith(".tmp-"))


def rows(home: Path, sql: str = "SELECT file, sha256 FROM images") -> list[tuple]:
    conn = sqlite3.connect(home / DB_NAME)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Layout and basic storing


def test_nothing_is_created_until_the_first_write(tmp_path: Path) -> None:
    home = tmp_path / "home"
    gallery = Gallery(home)
    assert gallery.history() == [] and gallery.lookup("0" * 64) is None
    assert gallery.total_cost() == 0.0 and gallery.verify().ok
    assert not home.exists()


def test_add_writes_content_addressed_files_and_full_rows(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path)
    data = [png(1), png(2)]
    result = make_result(data, params={"size": "256x256", "byok_api_key": "sk-abcdefghijklmnop1234",
                                       "quality": None, "additional_params": {"api_key": "x" * 20, "seed_x": 3}})
    stored = gallery.add(result, source="magic", prompt="a cat, interpolated")
    assert len(stored) == 2 and stored.failed == []
    for entry, raw in zip(stored, data):
        sha = hashlib.sha256(raw).hexdigest()
        assert entry.sha256 == sha
        assert entry.path == tmp_path / "images" / sha[:2] / f"{sha}.png"
        assert entry.path.read_bytes() == raw == entry.data
        assert entry.image.size == (32, 32)
        assert entry.cost == pytest.approx(0.02)
        assert entry.prompt == "a cat, interpolated" and entry.source == "magic"
        assert entry.created.tzinfo is not None
    (row,) = rows(tmp_path, "SELECT params, model, provider, request_id, mime, bytes, width, file "
                            "FROM images WHERE image_index = 1")
    assert row[0] == '{"additional_params":{"seed_x":3},"size":"256x256"}'
    assert row[1:5] == ("openai/dall-e-3", "openai", "req-1", "image/png")
    assert row[5] == len(data[1]) and row[6] == 32
    assert not Path(row[7]).is_absolute()
    # WAL and a schema version
    assert rows(tmp_path, "PRAGMA journal_mode") == [("wal",)]
    assert rows(tmp_path, "SELECT version FROM schema_version") == [(1,)]
    # nothing secret anywhere in the database file
    db_bytes = (tmp_path / DB_NAME).read_bytes() + (tmp_path / (DB_NAME + "-wal")).read_bytes()
    assert b"sk-abcdefghijklmnop" not in db_bytes and b"x" * 20 not in db_bytes


def test_identical_bytes_share_one_file_but_get_two_rows(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path)
    same = png(5)
    gallery.add(make_result([same], prompt="first"))
    gallery.add(make_result([same], prompt="second"))
    assert len(files_in(tmp_path)) == 1
    assert len(rows(tmp_path)) == 2
    assert [e.prompt for e in gallery.history()] == ["second", "first"]


def test_one_failed_image_does_not_lose_the_others(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path)
    with pytest.warns(UserWarning, match="1 of 3 images could not be kept"):
        stored = gallery.add(make_result([png(1), None, png(3)], cost=0.09))
    assert [e.image_index for e in stored] == [0, 2]
    assert [f.index for f in stored.failed] == [1] and "HTML page" in stored.failed[0].error
    assert len(rows(tmp_path)) == 2
    # the money of all three images is still recorded
    assert gallery.total_cost() == pytest.approx(0.09)
    # an incomplete generation is no cache hit
    assert gallery.lookup(stored[0].cache_key) is None


def test_gallery_results_are_not_stored_again(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path)
    key = cache_key("a cat", "openai/dall-e-3", {"size": "256x256"})
    gallery.add(make_result([png(1)]), cache_key=key)
    hit = gallery.lookup(key)
    assert hit is not None
    assert gallery.add(hit) == [] and len(rows(tmp_path)) == 1
    assert gallery.total_cost() == pytest.approx(0.04)


def test_old_temp_files_are_ignored_and_swept(tmp_path: Path) -> None:
    shard = tmp_path / "images" / "ab"
    shard.mkdir(parents=True)
    old, fresh = shard / ".tmp-old.part", shard / ".tmp-fresh.part"
    old.write_bytes(b"half a png")
    fresh.write_bytes(b"someone is writing this")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    gallery = Gallery(tmp_path)
    gallery.add(make_result([png(1)]))
    assert not old.exists() and fresh.exists()
    report = gallery.verify()
    assert report.ok and report.stale_temp_files == 1 and report.orphan_files == []


def test_an_orphan_file_left_by_a_killed_writer_is_reused(tmp_path: Path) -> None:
    data = png(9)
    sha = hashlib.sha256(data).hexdigest()
    target = tmp_path / "images" / sha[:2] / f"{sha}.png"
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    gallery = Gallery(tmp_path)
    assert gallery.verify().orphan_files == [target]
    inode = target.stat().st_ino
    (entry,) = gallery.add(make_result([data]))
    assert entry.path == target and target.stat().st_ino == inode  # not rewritten
    # a damaged file of the same name is replaced by the good bytes
    target.write_bytes(b"garbage")
    gallery.add(make_result([data]))
    assert target.read_bytes() == data


# ---------------------------------------------------------------------------------------------
# Cache key


def test_cache_key_is_stable_and_normalised() -> None:
    base = cache_key("a cat", "openai/dall-e-3", {"size": "1024x1024", "n": 1, "quality": "hd"})
    assert base == cache_key("a cat", "openai/dall-e-3", {"quality": "hd", "n": 1, "size": "1024x1024"})
    assert base == cache_key("  a cat\n", "openai/dall-e-3",
                             {"quality": "hd", "n": 1, "size": "1024x1024", "style": None})
    assert base == cache_key("a cat", "openai/dall-e-3",
                             {"quality": "hd", "n": 1, "size": "1024x1024", "response_format": "b64_json"})
    assert len(base) == 64 and int(base, 16) >= 0
    # a fixed value: the key must not drift between versions, or every cache entry is lost
    assert cache_key("a cat", "openai/dall-e-3", {"size": "256x256"}) == hashlib.sha256(
        b'{"model":"openai/dall-e-3","params":{"size":"256x256"},"prompt":"a cat","v":1}'
    ).hexdigest()
    assert cache_key("a cat", "openai/dall-e-3", {"guidance_scale": 7}) == \
        cache_key("a cat", "openai/dall-e-3", {"guidance_scale": 7.0})
    for different in (
        cache_key("a dog", "openai/dall-e-3", {"size": "1024x1024", "n": 1, "quality": "hd"}),
        cache_key("a cat", "openai/dall-e-2", {"size": "1024x1024", "n": 1, "quality": "hd"}),
        cache_key("a cat", "openai/dall-e-3", {"size": "1024x1024", "n": 2, "quality": "hd"}),
        cache_key("a cat", "openai/dall-e-3", {"size": "1024x1024", "n": 1, "quality": "standard"}),
        cache_key("a cat", "openai/dall-e-3", {"size": "1024x1024", "n": 1, "quality": "hd", "style": "vivid"}),
    ):
        assert different != base


def test_secrets_neither_change_nor_enter_the_cache_key() -> None:
    params = {"size": "1024x1024"}
    base = cache_key("a cat", "openai/dall-e-3", params)
    secret_params = [
        {"byok_api_key": "sk-proj-aaaaaaaaaaaaaaaaaaaa"},
        {"byok_api_key": "sk-proj-bbbbbbbbbbbbbbbbbbbb"},
        {"api_key": "ir-cccccccccccccccccccc"},
        {"additional_params": {"openai_api_key": "dddddddddddddddd"}},
        {"access_token": "eeeeeeeeeeeeeeee", "password": "hunter2hunter2"},
        {"user": "Bearer ffffffffffffffffffff"},
    ]
    for extra in secret_params:
        assert cache_key("a cat", "openai/dall-e-3", {**params, **extra}) == base, extra
        text = canonical_request("a cat", "openai/dall-e-3", {**params, **extra})
        for value in extra.values():
            inner = value if isinstance(value, str) else next(iter(value.values()))
            assert inner not in text
    # harmless names that merely contain "key" or "token" are kept
    assert cache_key("a cat", "openai/dall-e-3", {**params, "max_tokens": 5}) != base
    assert cache_key("a cat", "openai/dall-e-3", {**params, "keyframe": 2}) != base


# ---------------------------------------------------------------------------------------------
# Lookup


def test_lookup_after_restart_reads_from_disk(tmp_path: Path) -> None:
    data = [png(1, side=64), png(2, side=64)]
    key = cache_key("a cat", "openai/dall-e-3", {"size": "256x256", "n": 2})
    Gallery(tmp_path).add(make_result(data, cost=0.08), source="magic", cache_key=key)

    fresh = Gallery(tmp_path)  # as in a new kernel
    hit = fresh.lookup(key)
    assert hit is not None
    assert hit.from_gallery is True and hit.cost == 0.0 and hit.original_cost == pytest.approx(0.08)
    assert [img.data for img in hit.images] == data
    assert all(img.loaded and img.url is None for img in hit.images)  # no network could happen
    assert [img.revised_prompt for img in hit.images] == ["a fluffy cat 0", "a fluffy cat 1"]
    assert hit.prompt == "a cat" and hit.model == "openai/dall-e-3" and hit.request_id == "req-1"
    assert hit.images[1].to_pil().size == (64, 64)
    assert fresh.lookup(cache_key("a dog", "openai/dall-e-3", {})) is None


def test_lookup_returns_the_newest_generation_and_default_key_matches(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path)
    gallery.add(make_result([png(1)]))  # cache_key defaults to the result's own request
    gallery.add(make_result([png(2)]))
    hit = gallery.lookup(cache_key("a cat", "openai/dall-e-3", {"size": "256x256"}))
    assert hit is not None and hit.images[0].data == png(2)


def test_missing_file_is_a_miss_with_a_warning_and_reported_by_verify(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path)
    key = "k" * 64
    (entry,) = gallery.add(make_result([png(1)]), cache_key=key)
    entry.path.unlink()
    with pytest.warns(UserWarning, match="missing"):
        assert Gallery(tmp_path).lookup(key) is None
    report = gallery.verify()
    assert not report.ok and [e.path for e in report.missing] == [entry.path]
    assert "1 missing" in str(report)
    with pytest.raises(StoreError, match="verify"):
        entry.data


def test_corrupt_file_is_a_miss_and_an_older_intact_generation_is_used(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path)
    key = "k" * 64
    gallery.add(make_result([png(1)]), cache_key=key)
    (newest,) = gallery.add(make_result([png(2)]), cache_key=key)
    newest.path.write_bytes(newest.path.read_bytes()[:-10])  # truncated
    with pytest.warns(UserWarning, match="corrupt"):
        hit = gallery.lookup(key)
    assert hit is not None and hit.images[0].data == png(1)
    assert [e.path for e in gallery.verify().corrupt] == [newest.path]


def test_find_and_recorder_fit_a_batch_run(tmp_path: Path) -> None:
    """images_many(lookup=gallery.find, on_result=gallery.recorder()) resumes from the gallery."""
    gallery = Gallery(tmp_path)
    record = gallery.recorder()
    # what a batch passes: request.prompt, request.model, request.public_params
    record(0, make_result([png(1)], prompt="a cat", params={"size": "256x256", "n": 1}))
    record(1, ValueError("this slot failed"))
    (entry,) = gallery.history()
    assert entry.source == "batch" and entry.batch_id == record.batch_id  # type: ignore[attr-defined]
    hit = Gallery(tmp_path).find("a cat", "openai/dall-e-3", {"n": 1, "size": "256x256"})
    assert hit is not None and hit.from_gallery and hit.images[0].data == png(1)
    record(2, hit)  # served from the gallery: not stored or charged again
    assert len(gallery) == 1 and gallery.total_cost() == pytest.approx(0.04)
    assert gallery.find("a cat", "openai/dall-e-3", {"n": 2, "size": "256x256"}) is None


# ---------------------------------------------------------------------------------------------
# History and money


def test_history_order_search_and_model_filter(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path)
    gallery.add(make_result([png(1)], prompt="A lighthouse at dusk", revised="tall tower"))
    gallery.add(make_result([png(2), png(3)], prompt="a red fox", model="google/imagen-3",
                            revised="a crimson FOX"))
    gallery.add(make_result([png(4)], prompt="100% cotton_candy", revised="pink clouds"))
    gallery.add(make_result([png(5)], prompt="Café au lait", revised="coffee"))

    everything = gallery.history()
    assert [e.prompt for e in everything] == [
        "Café au lait", "100% cotton_candy", "a red fox", "a red fox", "A lighthouse at dusk"]
    assert [e.image_index for e in everything if e.prompt == "a red fox"] == [0, 1]
    assert [e.prompt for e in gallery.history(n=2)] == ["Café au lait", "100% cotton_candy"]
    assert gallery.history(n=0) == []
    assert [e.prompt for e in gallery.history(search="LIGHTHOUSE")] == ["A lighthouse at dusk"]
    assert [e.prompt for e in gallery.history(search="tower")] == ["A lighthouse at dusk"]  # revised
    assert len(gallery.history(search="crimson fox")) == 2
    assert [e.prompt for e in gallery.history(search="0% c")] == ["100% cotton_candy"]
    assert gallery.history(search="%") == gallery.history(search="100%")  # % is literal
    assert [e.prompt for e in gallery.history(search="n_c")] == ["100% cotton_candy"]
    assert gallery.history(search="a_r") == []  # _ is literal, not "any character"
    assert [e.prompt for e in gallery.history(search="CAFÉ")] == ["Café au lait"]
    assert {e.model for e in gallery.history(model="google/imagen-3")} == {"google/imagen-3"}
    assert len(gallery.history(model="imagen-3")) == 2
    assert len(gallery.history(model="openai/dall-e-3", search="cotton")) == 1
    assert gallery.history(model="openai/dall-e-2") == []
    entry = everything[0]
    assert isinstance(entry, Entry) and entry.path.is_absolute()
    with pytest.raises(Exception):
        entry.prompt = "changed"  # type: ignore[misc]


def test_module_history_uses_the_env_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "envhome"))
    assert default_home() == tmp_path / "envhome"
    Gallery().add(make_result([png(1)], prompt="via env"))
    assert [e.prompt for e in history()] == ["via env"]
    assert [e.prompt for e in history(n=1, search="VIA", model="dall-e-3")] == ["via env"]


def test_default_home_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HOME_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert default_home() == tmp_path / "xdg" / "indox-jupyter"
        monkeypatch.delenv("XDG_DATA_HOME")
        assert default_home() == Path.home() / ".local" / "share" / "indox-jupyter"


def test_total_cost_spend_since_and_session(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path)
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    gallery.add(make_result([png(1), png(2)], cost=0.08))
    middle = datetime.now(timezone.utc)
    gallery.add(make_result([png(3)], cost=0.04))
    gallery.add(make_result([png(4)], cost=None))  # unknown cost counts as nothing
    assert gallery.total_cost() == pytest.approx(0.12)
    assert gallery.spend_since(before) == pytest.approx(0.12)
    assert gallery.spend_since(middle) == pytest.approx(0.04)
    assert gallery.spend_since(time.time() + 60) == 0.0
    assert gallery.session_cost() == pytest.approx(0.12)
    assert gallery.session_cost("some-other-kernel") == 0.0
    assert [e.cost for e in gallery.history()] == [None, pytest.approx(0.04), pytest.approx(0.04), pytest.approx(0.04)]


# ---------------------------------------------------------------------------------------------
# Errors


def test_corrupt_database_gives_one_line_store_error_with_the_path(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not an sqlite database at all" * 200)
    gallery = Gallery(tmp_path)
    for action in (gallery.history, lambda: gallery.add(make_result([png(1)])),
                   lambda: gallery.lookup("k" * 64), gallery.total_cost):
        with pytest.raises(StoreError) as info:
            action()
        message = str(info.value)
        assert "\n" not in message and str(tmp_path / DB_NAME) in message
        assert "move it aside" in message
        assert isinstance(info.value, IndoxRouterError)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Gallery(tmp_path).add(make_result([png(1)]))
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer indox-jupyter"):
        Gallery(tmp_path).history()


def test_unusable_home_is_a_one_line_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("a file where the gallery folder should be")
    with pytest.raises(StoreError, match="cannot be created") as info:
        Gallery(blocker).add(make_result([png(1)]))
    assert str(blocker) in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# Concurrency: threads and processes


def test_threads_share_one_gallery(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(10):
                gallery.add(make_result([png(t * 100 + i)], prompt=f"t{t} {i}"))
                gallery.history(n=3)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(gallery) == 40 and gallery.verify().ok
    gallery.close()


def _check_store_integrity(home: Path) -> list[tuple]:
    """No row without its intact file; no half file anywhere. Returns the rows."""
    found = rows(home)
    for relative, sha in found:
        data = (home / relative).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    for path in files_in(home):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.stem, f"half file {path}"
    assert rows(home, "PRAGMA integrity_check") == [("ok",)]
    return found


def test_two_processes_writing_50_images_each(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, str(WRITER), str(tmp_path), tag, "50"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for tag in ("alpha", "beta")
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.count("stored") == 50
    found = _check_store_integrity(tmp_path)
    assert len(found) == 100
    assert len(set(found)) == 100  # no duplicate rows (every image is distinct)
    assert len(files_in(tmp_path)) == 100
    prompts = rows(tmp_path, "SELECT prompt FROM images")
    assert len({p for (p,) in prompts}) == 100
    assert Gallery(tmp_path).total_cost() == pytest.approx(4.0)
    assert Gallery(tmp_path).verify().ok


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_writer_killed_mid_write_leaves_no_dangling_row_or_half_file(tmp_path: Path) -> None:
    # 1500x1500 noise PNGs (6.7 MB): each write takes long enough that some kills land in it.
    rng = random.Random(4)
    for round_ in range(8):
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(tmp_path), f"kill{round_}", "0", "--side", "1500"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        for _ in range(2):  # let some rows appear first
            line = proc.stdout.readline()
            assert line.startswith("stored"), proc.stderr.read()
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        proc.stdout.close()
        proc.stderr.close()
        _check_store_integrity(tmp_path)
    # the database opens and takes writes after all that
    gallery = Gallery(tmp_path)
    (entry,) = gallery.add(make_result([png(1)], prompt="after the kills"))
    assert gallery.history(n=1)[0].prompt == "after the kills"
    report = gallery.verify()
    assert report.ok, str(report)
    assert len(gallery) >= 17 and entry.path.exists()


@pytest.mark.parametrize("point", ["before-rename", "after-rename"])
def test_writer_killed_at_exact_points(tmp_path: Path, point: str) -> None:
    """SIGKILL with the temp file complete but not renamed, and with the file placed but no row."""
    proc = subprocess.run([sys.executable, str(WRITER), str(tmp_path), "die", "5", "--die-at", point],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL and proc.stdout == ""
    _check_store_integrity(tmp_path)
    assert rows(tmp_path) == []
    temps = list((tmp_path / "images").glob("*/.tmp-*"))
    placed = files_in(tmp_path)
    if point == "before-rename":
        assert len(temps) == 1 and placed == []
    else:
        assert temps == [] and len(placed) == 1
    # a normal writer afterwards stores the same first image, reusing the orphan file if any
    done = subprocess.run([sys.executable, str(WRITER), str(tmp_path), "die", "5"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(_check_store_integrity(tmp_path)) == 5
    assert len(files_in(tmp_path)) == 5
    report = Gallery(tmp_path).verify()
    assert report.ok and report.orphan_files == []


def test_add_and_lookup_do_not_touch_the_network(tmp_path: Path) -> None:
    """A URL image that was already downloaded is stored from memory; lookup never needs URLs."""
    result = ImageResult({"created": 1, "data": [{"url": "http://127.0.0.1:9/expired.png"}]},
                         model="openai/dall-e-3", prompt="a cat", params={})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stored = Gallery(tmp_path).add(result)
    assert stored == [] and stored.failed and stored.failed[0].index == 0
    # the cost is still on record even though no image could be kept
    assert rows(tmp_path, "SELECT images_expected, images_stored FROM generations") == [(1, 0)]


def test_server_scope_separates_keys():
    from indox_jupyter import Client
    from indox_jupyter._cachekey import cache_key, server_scope

    class Foreign:
        def images(self, prompt, **kw):  # the seed's API, pointing who knows where
            return {}

    with Client(base_url="local") as local, Client("ir-k-0123456789abcdef") as real, \
            Client("ir-k-0123456789abcdef", base_url="http://127.0.0.1:1/") as other:
        scopes = [server_scope(local), server_scope(real), server_scope(other), server_scope(Foreign())]
    assert scopes[:3] == ["local", None, "http://127.0.0.1:1"] and scopes[3].startswith("client:")
    keys = {cache_key("a cat", "openai/dall-e-3", {"size": "1024x1024"}, server=s) for s in scopes}
    assert len(keys) == 4
    # IndoxRouter's keys are unchanged by the scope parameter
    assert cache_key("a cat", "openai/dall-e-3", {}) == cache_key("a cat", "openai/dall-e-3", {}, server=None)
