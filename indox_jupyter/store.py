"""The gallery: every image received is kept on disk, indexed in SQLite, and found again.

Layout under the home directory::

    images/<sha256[:2]>/<sha256>.<ext>   content-addressed: identical bytes share one file
    gallery.sqlite3                      WAL; one row per image received, one per generation

Crash safety comes from ordering, not from cleverness: a file is written to a temp file in its
final directory, fsynced, renamed into place and the directory fsynced; only then are the rows of
the whole generation inserted in one short transaction. A process killed at any point leaves
either nothing, or complete files that no row names yet (harmless: the next identical image
reuses them). Temp files are never read and are removed once they are an hour old.

Several kernels may write at once: each thread has its own connection, transactions are short
``BEGIN IMMEDIATE`` ones, and "database is locked" is retried with backoff.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import sqlite3
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from . import _cachekey
from ._cachekey import cache_key, scrub
from ._download import sniff_mime
from ._models import EXTENSIONS, GeneratedImage, ImageResult
from .errors import StoreError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "Entry",
    "FailedImage",
    "Gallery",
    "StoreError",
    "StoredImages",
    "VerifyReport",
    "cache_key",
    "default_gallery",
    "default_home",
    "history",
]

HOME_ENV = "INDOX_JUPYTER_HOME"
APP_NAME = "indox-jupyter"
DB_NAME = "gallery.sqlite3"
IMAGES_DIR = "images"
SCHEMA_VERSION = 1
SOURCES = ("magic", "panel", "client", "batch")
Source = Literal["magic", "panel", "client", "batch"]

BUSY_TIMEOUT_S = 10.0  # sqlite's own wait for a lock, per statement
LOCK_RETRY_DEADLINE_S = 120.0  # then our retries on "database is locked", in total
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".part"
TEMP_MAX_AGE_S = 3600.0


# One id per process: lets the magic ask "what did this kernel spend" without trusting clocks.
SESSION_ID = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Where the gallery lives


def _close_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.close()
    except sqlite3.Error:
        pass


def default_home() -> Path:
    """``$INDOX_JUPYTER_HOME``, else the platform's per-user data directory."""
    env = os.environ.get(HOME_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA", "").strip()
        return (Path(base) if base else Path.home() / "AppData" / "Local") / APP_NAME
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_NAME
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / APP_NAME


# ---------------------------------------------------------------------------------------------
# What the gallery hands back


@dataclass(frozen=True)
class Entry:
    """One stored image. ``image`` and ``data`` read the file on each access (nothing is kept)."""

    path: Path
    prompt: str | None
    revised_prompt: str | None
    model: str | None
    cost: float | None
    created: datetime
    width: int | None
    height: int | None
    sha256: str
    source: str
    cache_key: str | None
    id: int = 0
    provider: str | None = None
    request_id: str | None = None
    mime: str | None = None
    size_bytes: int | None = None
    image_index: int = 0
    batch_id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def data(self) -> bytes:
        """The original bytes, as received."""
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise StoreError(
                f"gallery image {self.path} cannot be read ({exc.strerror or exc}); "
                "Gallery().verify() lists every missing file"
            ) from None

    @property
    def image(self) -> PILImage:
        """The image as a PIL image, decoded now."""
        from PIL import Image

        img = Image.open(io.BytesIO(self.data))
        img.load()
        return img

    def _repr_png_(self) -> bytes | None:  # a quick look in a notebook; the magic draws its own
        if self.mime == "image/png":
            try:
                return self.data
            except StoreError:
                return None
        return None


@dataclass(frozen=True)
class FailedImage:
    """An image of a result that could not be obtained or written; the others were kept."""

    index: int
    error: str


class StoredImages(list):  # list[Entry]
    """What :meth:`Gallery.add` returns: the stored entries, plus ``failed`` for the rest."""

    def __init__(self, entries: Sequence[Entry] = (), failed: Sequence[FailedImage] = ()) -> None:
        super().__init__(entries)
        self.failed: list[FailedImage] = list(failed)


@dataclass
class VerifyReport:
    """What :meth:`Gallery.verify` found. ``ok`` when every row's file is there and intact."""

    checked: int = 0
    missing: list[Entry] = field(default_factory=list)
    corrupt: list[Entry] = field(default_factory=list)
    orphan_files: list[Path] = field(default_factory=list)  # complete files no row names: harmless
    stale_temp_files: int = 0

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupt

    def __str__(self) -> str:
        if self.ok:
            return f"gallery OK: {self.checked} images checked"
        return (
            f"gallery: {self.checked} images checked, {len(self.missing)} missing, "
            f"{len(self.corrupt)} corrupt: "
            + ", ".join(str(e.path) for e in (*self.missing, *self.corrupt)[:5])
        )


# ---------------------------------------------------------------------------------------------
# Schema

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    # One row per result received: the money, and whether all its images made it to disk.
    """CREATE TABLE IF NOT EXISTS generations (
        id INTEGER PRIMARY KEY,
        created TEXT NOT NULL,
        cost REAL,
        images_expected INTEGER NOT NULL,
        images_stored INTEGER NOT NULL,
        cache_key TEXT,
        request_id TEXT,
        model TEXT,
        source TEXT NOT NULL,
        session TEXT NOT NULL,
        batch_id TEXT
    )""",
    # One row per image received, even when the bytes (and so the file) are shared.
    """CREATE TABLE IF NOT EXISTS images (
        id INTEGER PRIMARY KEY,
        generation_id INTEGER NOT NULL REFERENCES generations(id),
        created TEXT NOT NULL,
        prompt TEXT,
        revised_prompt TEXT,
        model TEXT,
        provider TEXT,
        params TEXT NOT NULL DEFAULT '{}',
        request_id TEXT,
        cost REAL,
        file TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        width INTEGER,
        height INTEGER,
        mime TEXT,
        bytes INTEGER,
        source TEXT NOT NULL CHECK (source IN ('magic', 'panel', 'client', 'batch')),
        cache_key TEXT,
        image_index INTEGER NOT NULL,
        batch_id TEXT,
        UNIQUE (generation_id, image_index)
    )""",
    "CREATE INDEX IF NOT EXISTS generations_by_key ON generations (cache_key, id)",
    "CREATE INDEX IF NOT EXISTS generations_by_created ON generations (created)",
    "CREATE INDEX IF NOT EXISTS images_by_created ON images (created, generation_id)",
]

_IMAGE_COLUMNS = (
    "id, generation_id, created, prompt, revised_prompt, model, provider, params, request_id, "
    "cost, file, sha256, width, height, mime, bytes, source, cache_key, image_index, batch_id"
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _is_locked(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (not possible, nor needed, on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sha256_of_file(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# The gallery


class Gallery:
    """A folder of images plus an SQLite index; safe across threads and processes.

    Nothing is created until the first write; reading an empty home finds nothing.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self.home: Path = Path(home).expanduser() if home is not None else default_home()
        self.home = self.home.absolute()
        self.db_path: Path = self.home / DB_NAME
        self.images_dir: Path = self.home / IMAGES_DIR
        self.session_id: str = SESSION_ID
        self._local = threading.local()
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._lock = threading.Lock()
        self._schema_ready = False
        self._swept = False

    def __repr__(self) -> str:
        return f"Gallery({str(self.home)!r})"

    # -- connections ---------------------------------------------------------------------------

    def _error(self, exc: BaseException) -> StoreError:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, sqlite3.Error) and _is_locked(exc):
            return StoreError(
                f"the gallery database {self.db_path} stayed locked by another process for "
                f"{LOCK_RETRY_DEADLINE_S:.0f} s ({reason}); close other kernels using it and retry"
            )
        if isinstance(exc, PermissionError) or "readonly" in reason.replace(" ", "").lower() or "unable to open" in reason:
            return StoreError(
                f"the gallery database {self.db_path} cannot be opened for writing ({reason}); "
                f"check the folder's permissions or set ${HOME_ENV} to another folder"
            )
        return StoreError(
            f"the gallery database {self.db_path} is unreadable ({reason}); move it aside "
            f"(the images in {self.images_dir} are kept) and a new one will be created, "
            f"or set ${HOME_ENV} to another folder"
        )

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        try:
            conn = sqlite3.connect(
                self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA synchronous = FULL")  # a committed row survives power loss too
            conn.create_function(
                "casefold", 1, lambda s: s.casefold() if isinstance(s, str) else s, deterministic=True
            )
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            # Threads come and go (the panel uses one per click): close what ended threads left.
            alive = []
            for thread, old in self._connections:
                if thread.is_alive():
                    alive.append((thread, old))
                else:
                    _close_quietly(old)
            alive.append((threading.current_thread(), conn))
            self._connections = alive
        return conn

    def close(self) -> None:
        """Close every connection this object opened (it reopens on next use)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for _thread, conn in connections:
            _close_quietly(conn)
        self._local = threading.local()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """Run ``work`` in one transaction, retrying while another process holds the lock."""
        deadline = time.monotonic() + LOCK_RETRY_DEADLINE_S
        delay = 0.01
        while True:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    value = work(conn)
                    conn.execute("COMMIT")
                    return value
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if _is_locked(exc) and time.monotonic() < deadline:
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 0.5)
                    continue
                raise self._error(exc) from None

    def _ensure_schema(self) -> None:
        """Create the folder and the database on first write; check the version every time."""
        if self._schema_ready:
            return
        try:
            created = not self.home.exists()
            self.images_dir.mkdir(parents=True, exist_ok=True)
            if created:
                _fsync_dir(self.home.parent)
                _fsync_dir(self.home)
        except OSError as exc:
            raise StoreError(
                f"the gallery folder {self.home} cannot be created ({exc.strerror or exc}); "
                f"set ${HOME_ENV} to a writable folder"
            ) from None
        self._init_db()

    def _init_db(self) -> None:
        deadline = time.monotonic() + LOCK_RETRY_DEADLINE_S
        while True:
            try:
                conn = self._connect()
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
                break
            except sqlite3.Error as exc:
                if _is_locked(exc) and time.monotonic() < deadline:
                    time.sleep(0.02 + random.random() * 0.05)
                    continue
                raise self._error(exc) from None
        if mode and str(mode[0]).lower() != "wal":  # e.g. a network filesystem without shm
            warnings.warn(f"gallery database {self.db_path} runs in {mode[0]} mode, not WAL", stacklevel=3)

        def create(c: sqlite3.Connection) -> int:
            for statement in _SCHEMA:
                c.execute(statement)
            row = c.execute("SELECT max(version) FROM schema_version").fetchone()
            if row is None or row[0] is None:
                c.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                return SCHEMA_VERSION
            return int(row[0])

        version = self._run(create, write=True)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the gallery database {self.db_path} was written by a newer indox-jupyter "
                f"(schema {version}, this one knows {SCHEMA_VERSION}); upgrade indox-jupyter"
            )
        self._schema_ready = True

    def _readable(self) -> bool:
        """Prepare for a read; False when there is no gallery yet (nothing gets created)."""
        if self._schema_ready:
            return True
        if not self.db_path.exists():
            return False
        self._ensure_schema()
        return True

    # -- files ---------------------------------------------------------------------------------

    def _relative_file(self, sha: str, mime: str) -> str:
        return f"{IMAGES_DIR}/{sha[:2]}/{sha}{EXTENSIONS.get(mime, '.img')}"

    def _write_file(self, relative: str, data: bytes, sha: str) -> None:
        """Atomically place ``data`` at ``relative``, unless an intact copy is already there."""
        final = self.home / relative
        if final.exists() and final.stat().st_size == len(data) and _sha256_of_file(final) == sha:
            return  # identical bytes already stored (possibly by a writer that died before its row)
        folder = final.parent
        new_folder = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        if new_folder:
            _fsync_dir(folder.parent)
        fd, temp = _mkstemp(folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if hasattr(os, "chmod"):
                os.chmod(temp, 0o644)
            os.replace(temp, final)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
        _fsync_dir(folder)

    def _sweep_temp_files(self, max_age: float = TEMP_MAX_AGE_S) -> int:
        """Remove temp files left by killed writers, once they are old enough to be abandoned."""
        removed = 0
        cutoff = time.time() - max_age
        for temp in self._temp_files():
            try:
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
                    removed += 1
            except OSError:
                pass
        return removed

    def _temp_files(self) -> Iterator[Path]:
        if not self.images_dir.is_dir():
            return iter(())
        return self.images_dir.glob(f"*/{TEMP_PREFIX}*{TEMP_SUFFIX}")

    # -- writing -------------------------------------------------------------------------------

    def add(
        self,
        result: ImageResult,
        *,
        source: Source = "client",
        cache_key: str | None = None,
        prompt: str | None = None,
        batch_id: str | None = None,
        warn: bool = True,
    ) -> StoredImages:
        """Keep every image of ``result``; returns their entries, with ``.failed`` for the rest.

        ``prompt`` is the prompt after interpolation (default: the result's). ``cache_key``
        defaults to the key of the result's own prompt, requested model and params, so a client
        result added here is found again by :meth:`lookup`. A result that itself came from the
        gallery is not stored again (it was not paid for twice). ``warn=False`` when the caller
        reports ``.failed`` itself (one line for the user, not two).
        """
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)} (got {source!r})")
        if getattr(result, "from_gallery", False):
            return StoredImages()
        prompt = prompt if prompt is not None else result.prompt
        requested_model = getattr(result, "_requested_model", None) or result.model
        params = scrub(dict(result.params or {}))
        if cache_key is None:
            cache_key = _cachekey.cache_key(prompt, requested_model, result.params, server=result.server)
        self._ensure_schema()
        if not self._swept:
            self._swept = True
            self._sweep_temp_files()

        total_cost = result.cost
        count = len(result.images)
        per_image = (total_cost / count) if (total_cost is not None and count) else None

        ready: list[dict[str, Any]] = []
        failed: list[FailedImage] = []
        for image in result.images:
            try:
                data = image.data  # downloads a URL image once; the result keeps the bytes
                mime, width, height = image.mime_type, image.width, image.height
            except Exception as exc:  # any failure of one image must not lose the others
                failed.append(FailedImage(image.index, " ".join(str(exc).split()) or type(exc).__name__))
                continue
            sha = hashlib.sha256(data).hexdigest()
            relative = self._relative_file(sha, mime)
            try:
                self._write_file(relative, data, sha)
            except OSError as exc:
                failed.append(FailedImage(image.index, f"could not write {self.home / relative}: {exc.strerror or exc}"))
                continue
            ready.append({
                "revised_prompt": image.revised_prompt, "file": relative, "sha256": sha,
                "width": width, "height": height, "mime": mime, "bytes": len(data),
                "image_index": image.index,
            })

        created = _iso(_now())
        model, provider, request_id = result.model, result.provider, result.request_id
        params_json = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

        def insert(conn: sqlite3.Connection) -> list[int]:
            cur = conn.execute(
                "INSERT INTO generations (created, cost, images_expected, images_stored, cache_key,"
                " request_id, model, source, session, batch_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (created, total_cost, count, len(ready), cache_key, request_id, model, source,
                 self.session_id, batch_id),
            )
            generation_id = cur.lastrowid
            ids = []
            for item in ready:
                cur = conn.execute(
                    "INSERT INTO images (generation_id, created, prompt, revised_prompt, model,"
                    " provider, params, request_id, cost, file, sha256, width, height, mime, bytes,"
                    " source, cache_key, image_index, batch_id)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (generation_id, created, prompt, item["revised_prompt"], model, provider,
                     params_json, request_id, per_image, item["file"], item["sha256"],
                     item["width"], item["height"], item["mime"], item["bytes"], source,
                     cache_key, item["image_index"], batch_id),
                )
                ids.append(int(cur.lastrowid or 0))
            return ids

        ids = self._run(insert, write=True)
        moment = datetime.fromisoformat(created)
        entries = [
            Entry(
                path=self.home / item["file"], prompt=prompt, revised_prompt=item["revised_prompt"],
                model=model, cost=per_image, created=moment, width=item["width"],
                height=item["height"], sha256=item["sha256"], source=source, cache_key=cache_key,
                id=row_id, provider=provider, request_id=request_id, mime=item["mime"],
                size_bytes=item["bytes"], image_index=item["image_index"], batch_id=batch_id,
                params=params,
            )
            for row_id, item in zip(ids, ready)
        ]
        if failed and warn:
            warnings.warn(
                f"{len(failed)} of {count} images could not be kept in the gallery "
                f"({failed[0].error}); the other {len(entries)} were stored",
                stacklevel=2,
            )
        return StoredImages(entries, failed)

    # -- reading -------------------------------------------------------------------------------

    def _entry(self, row: sqlite3.Row | tuple[Any, ...]) -> Entry:
        (row_id, _gen, created, prompt, revised, model, provider, params, request_id, cost, file,
         sha, width, height, mime, size, source, key, index, batch_id) = row
        try:
            parsed_params = json.loads(params) if params else {}
        except ValueError:
            parsed_params = {}
        return Entry(
            path=self.home / file, prompt=prompt, revised_prompt=revised, model=model, cost=cost,
            created=datetime.fromisoformat(created), width=width, height=height, sha256=sha,
            source=source, cache_key=key, id=row_id, provider=provider, request_id=request_id,
            mime=mime, size_bytes=size, image_index=index, batch_id=batch_id, params=parsed_params,
        )

    def lookup(self, cache_key: str) -> ImageResult | None:
        """The newest complete generation stored under ``cache_key``, rebuilt from disk.

        No network. The result has ``from_gallery = True``, cost 0 (``original_cost`` keeps what
        was paid) and ``gallery_entries``. A missing or corrupt file makes that generation a miss
        (with a warning) and the next older one is tried.
        """
        if not cache_key or not self._readable():
            return None

        def read(conn: sqlite3.Connection) -> list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
            generations = conn.execute(
                "SELECT id, created, cost, request_id, model FROM generations"
                " WHERE cache_key = ? AND images_stored = images_expected AND images_expected > 0"
                " ORDER BY id DESC LIMIT 20",
                (cache_key,),
            ).fetchall()
            return [
                (g, conn.execute(
                    f"SELECT {_IMAGE_COLUMNS} FROM images WHERE generation_id = ? ORDER BY image_index",
                    (g[0],),
                ).fetchall())
                for g in generations
            ]

        for generation, rows in self._run(read, write=False):
            entries = [self._entry(row) for row in rows]
            images: list[GeneratedImage] = []
            for entry in entries:
                problem = None
                try:
                    data = entry.path.read_bytes()
                except OSError as exc:
                    problem = f"is missing ({exc.strerror or exc})"
                else:
                    if hashlib.sha256(data).hexdigest() != entry.sha256:
                        problem = "is corrupt (its sha256 does not match)"
                    else:
                        images.append(GeneratedImage.from_stored(
                            data, mime_type=entry.mime or sniff_mime(data) or "image/png",
                            width=entry.width, height=entry.height,
                            index=entry.image_index, revised_prompt=entry.revised_prompt))
                if problem:
                    warnings.warn(
                        f"gallery file {entry.path} {problem}; not using the stored images "
                        "(Gallery().verify() lists every damaged file)",
                        stacklevel=2,
                    )
                    break
            else:
                if entries:
                    return self._rebuild(generation, entries, images)
        return None

    def _rebuild(self, generation: tuple[Any, ...], entries: list[Entry],
                 images: list[GeneratedImage]) -> ImageResult:
        _gid, created, cost, request_id, model = generation
        first = entries[0]
        moment = datetime.fromisoformat(created)
        model_name = model or first.model
        raw: dict[str, Any] = {
            "created": int(moment.timestamp()),
            "data": [
                {"index": e.image_index, "revised_prompt": e.revised_prompt, "gallery_path": str(e.path)}
                for e in entries
            ],
            "usage": {"cost": 0.0},
            "from_gallery": True,
        }
        if model_name:
            raw["model"] = model_name
        if first.provider:
            raw["provider"] = first.provider
        if request_id:
            raw["request_id"] = request_id
        result = ImageResult(raw, model=model_name, prompt=first.prompt, params=dict(first.params))
        result.images = images
        result.from_gallery = True  # type: ignore[attr-defined]
        result.original_cost = cost  # type: ignore[attr-defined]
        result.gallery_entries = entries  # type: ignore[attr-defined]
        return result

    def find(self, prompt: str | None, model: str | None,
             params: Mapping[str, Any] | None = None, *, server: str | None = None) -> ImageResult | None:
        """``lookup`` by request instead of by key; fits ``images_many(lookup=...)``.

        ``server`` is the client's :func:`~indox_jupyter._cachekey.server_scope` (None: IndoxRouter).
        """
        return self.lookup(_cachekey.cache_key(prompt, model, params, server=server))

    def finder(self, client: Any) -> Callable[[str, str, Mapping[str, Any]], ImageResult | None]:
        """A ``lookup(prompt, model, params)`` for ``images_many`` scoped to ``client``'s server,
        so the built-in server's sample images never stand in for IndoxRouter's."""
        server = _cachekey.server_scope(client)

        def lookup(prompt: str, model: str, params: Mapping[str, Any]) -> ImageResult | None:
            return self.find(prompt, model, params, server=server)

        return lookup

    def recorder(self, *, source: Source = "batch",
                 batch_id: str | None = None) -> Callable[[int, Any], None]:
        """An ``on_result(index, outcome)`` callback that stores each result of a batch.

        Errors and results served from the gallery are skipped. All rows share ``batch_id``
        (a new one when not given; the callback's ``batch_id`` attribute tells which).
        """
        chosen = batch_id or uuid.uuid4().hex

        def on_result(index: int, outcome: Any) -> None:
            if isinstance(outcome, ImageResult):
                self.add(outcome, source=source, batch_id=chosen)

        on_result.batch_id = chosen  # type: ignore[attr-defined]
        return on_result

    def history(self, n: int | None = None, search: str | None = None,
                model: str | None = None) -> list[Entry]:
        """Stored images, newest first.

        ``search`` is a case-insensitive literal substring of the prompt or the revised prompt
        (``%`` and ``_`` mean themselves). ``model`` matches ``provider/name`` exactly or just the
        name (``dall-e-3``), ignoring case.
        """
        if (n is not None and n <= 0) or not self._readable():
            return []
        where, args = [], []
        if search:
            where.append("(instr(casefold(prompt), ?) > 0 OR instr(casefold(coalesce(revised_prompt, '')), ?) > 0)")
            args += [search.casefold(), search.casefold()]
        if model:
            wanted = model.strip().lower()
            where.append("(lower(model) = ? OR substr(lower(model), instr(model, '/') + 1) = ?)")
            args += [wanted, wanted]
        sql = f"SELECT {_IMAGE_COLUMNS} FROM images"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, generation_id DESC, image_index ASC"
        if n is not None:
            sql += " LIMIT ?"
            args.append(int(n))
        rows = self._run(lambda conn: conn.execute(sql, args).fetchall(), write=False)
        return [self._entry(row) for row in rows]

    def __len__(self) -> int:
        if not self._readable():
            return 0
        return int(self._run(lambda c: c.execute("SELECT count(*) FROM images").fetchone()[0], write=False))

    # -- money ---------------------------------------------------------------------------------

    def total_cost(self) -> float:
        """USD recorded for every generation ever stored (images that failed to download too)."""
        return self._sum_cost("", ())

    def spend_since(self, since: datetime | float) -> float:
        """USD of generations stored at or after ``since`` (a datetime, or epoch seconds)."""
        moment = since if isinstance(since, datetime) else datetime.fromtimestamp(since, tz=timezone.utc)
        return self._sum_cost(" WHERE created >= ?", (_iso(moment),))

    def session_cost(self, session_id: str | None = None) -> float:
        """USD stored by one process (default: this one), whatever the clocks say."""
        return self._sum_cost(" WHERE session = ?", (session_id or self.session_id,))

    def _sum_cost(self, where: str, args: tuple[Any, ...]) -> float:
        if not self._readable():
            return 0.0
        sql = f"SELECT coalesce(sum(cost), 0) FROM generations{where}"
        return float(self._run(lambda c: c.execute(sql, args).fetchone()[0], write=False))

    # -- health --------------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Check every row's file (present, sha256 matches); list unreferenced files too."""
        report = VerifyReport()
        rows = self._run(
            lambda c: c.execute(f"SELECT {_IMAGE_COLUMNS} FROM images ORDER BY id").fetchall(), write=False
        ) if self._readable() else []
        known: dict[str, str | None] = {}
        for row in rows:
            entry = self._entry(row)
            report.checked += 1
            key = str(entry.path)
            if key not in known:
                known[key] = _sha256_of_file(entry.path) if entry.path.is_file() else None
            actual = known[key]
            if actual is None:
                report.missing.append(entry)
            elif actual != entry.sha256:
                report.corrupt.append(entry)
        if self.images_dir.is_dir():
            for path in sorted(self.images_dir.glob("*/*")):
                if path.name.startswith(TEMP_PREFIX):
                    report.stale_temp_files += 1
                elif str(path) not in known and path.is_file():
                    report.orphan_files.append(path)
        return report


def _mkstemp(folder: Path) -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=folder)


# ---------------------------------------------------------------------------------------------
# The default gallery

_defaults: dict[Path, Gallery] = {}
_defaults_lock = threading.Lock()


def default_gallery() -> Gallery:
    """The gallery at :func:`default_home` (re-read each call, so changing the env var works)."""
    home = default_home().absolute()
    with _defaults_lock:
        gallery = _defaults.get(home)
        if gallery is None:
            gallery = _defaults[home] = Gallery(home)
        return gallery


def history(n: int | None = None, search: str | None = None, model: str | None = None) -> list[Entry]:
    """Stored images of the default gallery, newest first (see :meth:`Gallery.history`)."""
    return default_gallery().history(n=n, search=search, model=model)
