"""Catalog: a folder of recordings plus an SQLite index, queried without opening recordings.

Layout::

    CATALOG/
      catalog.sqlite          the index (SQLite, WAL journal; tables below)
      catalog.sqlite-wal      SQLite's journal and shared memory, while a Catalog is open
      catalog.sqlite-shm      (SQLite removes them when the last connection closes)
      <recording id>.h5       one file per recording (see neurofm.data.recording)
      catalog.json.migrated   the index of an older neurofm, kept after its migration
      .neurofm-writer-*.lock  one lock file per live writer (see below)

Tables of ``catalog.sqlite``:

``meta(key, value)``
    ``format`` = ``neurofm.catalog``, ``version`` = 2, ``generation`` (a counter every write
    transaction increments), ``migrated_from`` (sha256 of the ``catalog.json`` migrated, if any).
``recordings``
    One row per recording. Columns hold the fields queries filter on (``id`` primary key,
    ``file``, ``subject_id``, ``session_id``, ``species``, ``task``, ``modality``,
    ``duration_s``, ``n_units``, ``n_spikes``, ``source_sha256``, ``dandiset_id``); ``fields``
    is a JSON object with the others (``areas``, ``signals``, ``source_path``,
    ``source_url``, ...); ``complete`` is 1 when the two tables below hold the recording's
    units and domains (0 for a row migrated from ``catalog.json``: its recording is read
    once, when first needed, and the row completed); ``generation`` is the write that made
    the row.
``units(recording_id, ids)``
    Unit ids of each spikes signal, a JSON object ``{signal: [unit ids]}``: vocabularies are
    built from the index alone.
``domains(split, recording_id, starts, ends)``
    Each recording's ``<split>_domain`` intervals (``train``, ``valid``, ``test``, ...) as
    little-endian float64 blobs (bounds only), clustered by split: splits are computed from
    the index alone, reading one split's rows.

A :class:`Catalog` object reads every ``recordings`` row once when it opens (10,000 rows in
about 0.1 s of CPU) and then re-reads only the rows whose ``generation`` is newer
(:meth:`Catalog.refresh`, and after each of its own changes); :meth:`Catalog.select`,
:meth:`Catalog.domains` and :meth:`Catalog.unit_ids` never open a recording file. The object
keeps one connection per process and thread while it lives (:meth:`Catalog.close` or its end
closes them): closing SQLite's last connection checkpoints the WAL, two fsyncs that would
otherwise dominate every change. It pickles without them, and a forked child opens its own.

Several writers at once (two ``neurofm ingest`` into one catalog, a Dask client merging its
workers' files): every change is one SQLite transaction taken with ``BEGIN IMMEDIATE``, so
writers queue (up to :data:`LOCK_TIMEOUT` seconds) and none of their rows are lost; readers
see the index as of the last commit (WAL). SQLite's WAL needs the writers on one host: on a
cluster, one process (the Dask client) writes and workers only write recording files.

An index of an older neurofm (``catalog.json``) is migrated on first open, under a lock on the
JSON file that older writers also take: the new index is built under a temporary name and
linked into place only when complete, then ``catalog.json`` is renamed
``catalog.json.migrated``. A crash before the link leaves the JSON catalog as it was; a crash
after it is finished by the next open. A catalog that cannot be written (a read-only folder)
is read from its JSON as it is.

Each writer also holds a lock on a file of its own (``.neurofm-writer-<host>-<pid>-<id>.lock``)
while it lives. Temporary files (``.<id>.h5.<random>.tmp``, ``.catalog.sqlite.<random>.tmp``,
``.neurofm-stage-*``) found when no other writer is alive were left by a killed one: the next
writer removes them, and :meth:`Catalog.leftovers` reports them (``neurofm info``,
``neurofm verify``).

Index rows are checked, not trusted: a malformed row (edited by hand) is reported by its rowid
and id (:attr:`Catalog.problems`) instead of failing every query, and a row's ``file`` must
resolve inside the catalog folder (``..``, absolute paths and symlinks out are refused). A file
``catalog.sqlite`` that is not SQLite, or not a neurofm index, is a :class:`CatalogError`
naming it.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from neurofm import display
from neurofm.data.recording import Integrity, Recording, check_integrity
from neurofm.data.signals import Intervals
from neurofm.data.storage import probe_hdf5
from neurofm.errors import CatalogError, InvalidDataError

log = logging.getLogger(__name__)

#: The index inside a catalog folder.
INDEX_NAME = "catalog.sqlite"
#: The index of neurofm before version 2 of the format, migrated on first open.
LEGACY_INDEX_NAME = "catalog.json"
#: What ``catalog.json`` is renamed to once migrated.
MIGRATED_NAME = LEGACY_INDEX_NAME + ".migrated"
FORMAT_NAME = "neurofm.catalog"
FORMAT_VERSION = 2
#: Seconds a writer waits for another writer's transaction before it gives up with an error.
LOCK_TIMEOUT = 300.0
_WRITER_LOCK = re.compile(r"^\.neurofm-writer-.+\.lock$")
#: Temporary files of neurofm's writers at the top of a catalog folder: atomic writes of a
#: recording or of an index (``neurofm.atomic``; SQLite's own files of a half-built index),
#: and the NWB reader's staging folders.
_TEMP_FILE = re.compile(
    r"^\.(?:.+\.h5|catalog\.json|catalog\.sqlite)\.[A-Za-z0-9_]+\.tmp(?:-wal|-shm|-journal)?$"
)
_STAGE_DIR = re.compile(r"^\.neurofm-stage-[A-Za-z0-9_]+$")

#: Index fields stored as columns of ``recordings`` (the others go to its JSON ``fields``).
_COLUMNS = (
    "id",
    "file",
    "subject_id",
    "session_id",
    "species",
    "task",
    "modality",
    "duration_s",
    "n_units",
    "n_spikes",
    "source_sha256",
    "dandiset_id",
)
_COLUMN_SET = frozenset(_COLUMNS)
#: The order of an entry's fields (as :func:`_index_entry` makes them).
#: An index field (and provenance key) ingest writes: the digest of its settings.
SETTINGS_KEY = "ingest_settings"
_FIELD_ORDER = (
    "id",
    "file",
    "subject_id",
    "session_id",
    "species",
    "task",
    "modality",
    "areas",
    "duration_s",
    "n_units",
    "n_spikes",
    "signals",
    "source_path",
    "source_url",
    "source_sha256",
    "dandiset_id",
)
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value);
CREATE TABLE recordings (
    id TEXT PRIMARY KEY NOT NULL,
    file TEXT,
    subject_id TEXT,
    session_id TEXT,
    species TEXT,
    task TEXT,
    modality TEXT,
    duration_s REAL,
    n_units INTEGER,
    n_spikes INTEGER,
    source_sha256 TEXT,
    dandiset_id TEXT,
    fields TEXT NOT NULL DEFAULT '{}',
    complete INTEGER NOT NULL DEFAULT 0,
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX recordings_by_source ON recordings (source_sha256);
CREATE INDEX recordings_by_subject ON recordings (subject_id);
CREATE INDEX recordings_by_generation ON recordings (generation);
CREATE INDEX recordings_incomplete ON recordings (id) WHERE complete = 0;
CREATE TABLE units (
    recording_id TEXT PRIMARY KEY NOT NULL,
    ids TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE domains (
    split TEXT NOT NULL,
    recording_id TEXT NOT NULL,
    starts BLOB NOT NULL,
    ends BLOB NOT NULL,
    PRIMARY KEY (split, recording_id)
) WITHOUT ROWID;
CREATE INDEX domains_by_recording ON domains (recording_id);
"""
_TABLES = ("meta", "recordings", "units", "domains")
_SELECT_ROWS = f"SELECT rowid, {', '.join(_COLUMNS)}, fields FROM recordings"

__all__ = [
    "SETTINGS_KEY",
    "Catalog",
    "CatalogHealth",
    "Leftover",
    "split_domains",
    "time_domains",
]


def _index_entry(rec: Recording, file_name: str) -> dict[str, Any]:
    meta, prov = rec.metadata, rec.provenance
    signals = {name: sig.kind for name, sig in rec.signals.items()}
    n_units = n_spikes = 0
    areas: set[str] = set()
    for sig in rec.signals.values():
        if sig.kind == "spikes":
            n_units += len(sig.units)
            n_spikes += len(sig)
            if "area" in sig.units.columns:
                areas.update(str(a) for a in sig.units.columns["area"])
    entry = {
        "id": rec.id,
        "file": file_name,
        "subject_id": meta.subject_id,
        "session_id": meta.session_id,
        "species": meta.species,
        "task": meta.task,
        "modality": meta.modality,
        "areas": sorted(areas),
        "duration_s": rec.duration,
        "n_units": n_units,
        "n_spikes": n_spikes,
        "signals": signals,
        "source_path": prov.source_path,
        "source_url": prov.source_url,
        "source_sha256": prov.sha256,
        "dandiset_id": prov.dandiset_id,
    }
    if prov.extra.get(SETTINGS_KEY):  # written by ingest
        entry[SETTINGS_KEY] = prov.extra[SETTINGS_KEY]
    return entry


@dataclass
class _Details:
    """What vocabularies and splits need of a recording, kept in the index beside its entry."""

    #: Unit ids of each spikes signal.
    units: dict[str, list[str]]
    #: ``split -> (starts, ends)`` of each ``<split>_domain`` intervals signal.
    domains: dict[str, tuple[np.ndarray, np.ndarray]]


def _details_of(rec: Recording) -> _Details:
    units: dict[str, list[str]] = {}
    domains: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, sig in rec.signals.items():
        if sig.kind == "spikes":
            units[name] = [str(u) for u in sig.units.ids]
        elif sig.kind == "intervals" and name.endswith("_domain"):
            loaded = sig.load()  # a lazy signal reads its (small) bounds; in memory: itself
            domains[name.removesuffix("_domain")] = (
                np.asarray(loaded.start, dtype="<f8"),
                np.asarray(loaded.end, dtype="<f8"),
            )
    return _Details(units, domains)


def _entry_facts(entry: dict[str, Any]) -> list[str]:
    """What a catalog's repr says about one index entry."""
    out = []
    if entry.get("subject_id"):
        out.append(f"subject {entry['subject_id']}")
    if entry.get("modality"):
        out.append(str(entry["modality"]))
    if entry.get("duration_s") is not None:
        out.append(display.seconds(entry["duration_s"]))
    if entry.get("n_units"):
        out.append(display.count(entry["n_units"], "unit"))
    if entry.get("areas"):
        out.append(", ".join(map(str, entry["areas"])))
    return out


def _entry_problem(entry: Any, position: int, seen: set[str]) -> str | None:
    """Why an entry of a ``catalog.json`` cannot be used (None when it can)."""
    where = f"recordings[{position}]"
    if not isinstance(entry, dict):
        return f"{where}: must be a mapping of fields, got {type(entry).__name__}"
    if "id" not in entry:
        return f"{where}: field 'id' is missing"
    rid = entry["id"]
    where += f" (id {rid!r})"
    if not isinstance(rid, str) or not rid or "/" in rid:
        return f"{where}: field 'id' must be a non-empty string without '/' (got {rid!r})"
    if rid in seen:
        return f"{where}: id {rid!r} appears twice in the index (the first one is used)"
    if "file" not in entry:
        return f"{where}: field 'file' is missing"
    if not isinstance(entry["file"], str) or not entry["file"]:
        return f"{where}: field 'file' must be a string (got {entry['file']!r})"
    return None


def _row_entry(row: Sequence[Any]) -> tuple[dict[str, Any] | None, str | None]:
    """``(entry, None)`` for a usable ``recordings`` row, ``(None, problem)`` otherwise.

    ``row`` is ``(rowid, *_COLUMNS, fields)``; the problem names the rowid and the id.
    """
    # Called once per row when a catalog opens: the checks of a good row come first and cheap.
    rowid, values, fields = row[0], row[1:-1], row[-1]
    rid, file_name = values[0], values[1]
    where = "recordings row {} (id {!r})"
    if type(rid) is not str or not rid or "/" in rid:
        where = where.format(rowid, rid)
        return None, f"{where}: field 'id' must be a non-empty string without '/' (got {rid!r})"
    if type(file_name) is not str or not file_name:
        where = where.format(rowid, rid)
        if file_name is None:
            return None, f"{where}: field 'file' is missing"
        return None, f"{where}: field 'file' must be a string (got {file_name!r})"
    try:
        extra = json.loads(fields)
    except (TypeError, ValueError):
        extra = None
    if type(extra) is not dict:
        where = where.format(rowid, rid)
        return None, f"{where}: field 'fields' must be a JSON object (got {fields!r})"
    entry = dict(zip(_COLUMNS, values, strict=True))
    if not _COLUMN_SET.isdisjoint(extra):  # edited by hand: the columns win
        extra = {k: v for k, v in extra.items() if k not in _COLUMN_SET}
    entry.update(extra)
    return entry, None


def _row_values(entry: dict[str, Any], complete: bool, generation: int) -> tuple[Any, ...]:
    """The ``recordings`` row of an entry (columns, JSON fields, complete, generation)."""
    extra = {k: v for k, v in entry.items() if k not in _COLUMNS}
    columns = [entry.get(c) for c in _COLUMNS]
    return (*columns, json.dumps(extra), int(complete), generation)


_INSERT_ROW = (
    f"INSERT INTO recordings ({', '.join(_COLUMNS)}, fields, complete, generation) "
    f"VALUES ({', '.join('?' * (len(_COLUMNS) + 3))})"
)


def _write_details(conn: sqlite3.Connection, rid: str, details: _Details) -> None:
    """Replace a recording's unit ids and domains (its row says ``complete``)."""
    conn.execute("DELETE FROM units WHERE recording_id = ?", (rid,))
    conn.execute("DELETE FROM domains WHERE recording_id = ?", (rid,))
    conn.execute(
        "INSERT INTO units (recording_id, ids) VALUES (?, ?)", (rid, json.dumps(details.units))
    )
    conn.executemany(
        "INSERT INTO domains (split, recording_id, starts, ends) VALUES (?, ?, ?, ?)",
        [
            (split, rid, starts.astype("<f8").tobytes(), ends.astype("<f8").tobytes())
            for split, (starts, ends) in details.domains.items()
        ],
    )


def _bump_generation(conn: sqlite3.Connection) -> int:
    conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
    return int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction: ``BEGIN IMMEDIATE`` waits (up to :data:`LOCK_TIMEOUT`) for other
    writers, so a read-modify-write never interleaves with another one."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


#: Connections a forked child inherited: never used there, and never closed (closing a
#: parent's SQLite connection in a child is what SQLite's documentation warns against).
_INHERITED: list[sqlite3.Connection] = []


def _connect(db: Path) -> sqlite3.Connection:
    """A connection to an existing index (never creates one).

    A reader of a catalog in a read-only folder cannot make WAL's shared-memory file: it
    reads the database file as it is (``immutable``), as nothing can be writing it there.
    """
    uri = "file:" + quote(str(db.absolute()))
    conn = sqlite3.connect(
        f"{uri}?mode=rw",
        uri=True,
        timeout=LOCK_TIMEOUT,
        isolation_level=None,
        check_same_thread=False,  # one per thread (Catalog._connection), checked there
    )
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints, never torn
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        if "readonly" not in str(exc) and "unable to open" not in str(exc):
            raise
    return sqlite3.connect(
        f"{uri}?immutable=1", uri=True, isolation_level=None, check_same_thread=False
    )


def _build_index(
    folder: Path, rows: Iterable[tuple[dict[str, Any], _Details | None]], meta: dict[str, Any]
) -> Path:
    """A complete index under a temporary name in ``folder`` (the caller links it into place).

    Built without a journal (a temporary file has nothing to recover) and switched to WAL
    before it is closed.
    """
    fd, name = tempfile.mkstemp(prefix=f".{INDEX_NAME}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(name)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; other users may share a catalog
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("BEGIN")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("format", FORMAT_NAME), ("version", FORMAT_VERSION), ("generation", 1)]
                + sorted(meta.items()),
            )
            _fill_index(conn, rows)
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode = WAL")  # persistent: every later open uses it
        finally:
            conn.close()
    except BaseException:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)
        raise
    return tmp


def _fill_index(
    conn: sqlite3.Connection, rows: Iterable[tuple[dict[str, Any], _Details | None]]
) -> None:
    for entry, details in rows:
        conn.execute(_INSERT_ROW, _row_values(entry, details is not None, 1))
        if details is not None:
            _write_details(conn, entry["id"], details)


def _link_into_place(tmp: Path, target: Path) -> bool:
    """Hard-link a complete ``tmp`` to ``target`` unless it exists; True if this one won."""
    try:
        os.link(tmp, target)  # complete, or not there: never half
        return True
    except FileExistsError:  # another process made it first
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _read_legacy(index: Path) -> tuple[list[Any], bytes]:
    """The entries of a ``catalog.json`` (unchecked) and its bytes."""
    try:
        raw = index.read_bytes()
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
        raise CatalogError(f"{index}: cannot read the catalog index ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise CatalogError(f"{index}: field 'format' must be {FORMAT_NAME!r}")
    version = doc.get("version", -1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CatalogError(f"{index}: field 'version' must be an integer, got {version!r}")
    if version > 1:
        raise CatalogError(
            f"{index}: version {version} is not a JSON index (an index of version 2 and later "
            f"is {INDEX_NAME})"
        )
    entries = doc.get("recordings")
    if not isinstance(entries, list):
        raise CatalogError(f"{index}: field 'recordings' must be a list")
    return entries, raw


def _checked_legacy(index: Path, entries: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    good, problems = [], []
    seen: set[str] = set()
    for position, entry in enumerate(entries):
        problem = _entry_problem(entry, position, seen)
        if problem is None:
            seen.add(entry["id"])
            good.append(entry)
        else:
            problems.append(problem)
    return good, problems


def _retire_legacy(folder: Path) -> None:
    """Rename ``catalog.json`` to ``catalog.json.migrated`` (the last step of a migration)."""
    os.replace(folder / LEGACY_INDEX_NAME, folder / MIGRATED_NAME)


@dataclass
class Leftover:
    """A temporary file or folder in a catalog, left by a writer."""

    path: Path
    #: True while another writer of this catalog is alive (it may still be writing it).
    writer_alive: bool

    def describe(self) -> str:
        name = self.path.name + ("/" if self.path.is_dir() else "")
        if self.writer_alive:
            return f"{name} (being written by a running neurofm, or left by one)"
        return f"{name} (left by an interrupted writer; the next ingest removes it)"


@dataclass
class CatalogHealth:
    """What :meth:`Catalog.verify` found.

    Attributes
    ----------
    path : Path
        The catalog folder.
    recordings : dict of str to Integrity
        Per indexed recording, what re-reading it found.
    problems : list of str
        Index rows that could not be used, by rowid and id.
    leftovers : list of Leftover
        Temporary files of writers.
    unindexed : list of Path
        ``.h5`` files at the top of the folder that no index entry names (copied in by hand,
        or left by another catalog): not part of the catalog, and not checked.
    """

    path: Path
    recordings: dict[str, Integrity] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    leftovers: list[Leftover] = field(default_factory=list)
    unindexed: list[Path] = field(default_factory=list)

    @property
    def broken(self) -> dict[str, list[str]]:
        return {rid: i.problems for rid, i in self.recordings.items() if not i.ok}

    @property
    def ok(self) -> bool:
        return not self.broken and not self.problems


def _flock(fd: int, blocking: bool) -> bool:
    """Take an exclusive lock on ``fd``; False if ``blocking`` is False and it is held."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks; a single writer only
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


class _Session:
    """This writer's lock file: held while it lives, so others know its temporaries are live."""

    def __init__(self, folder: Path) -> None:
        name = f".neurofm-writer-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.lock"
        self.path = folder / name
        self.fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        _flock(self.fd, blocking=False)  # a fresh, unique file: never held by anyone else

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # unlinked while held: no one can be waiting
            os.close(self.fd)
            self.fd = None


def _probe_dead(path: Path, remove: bool) -> bool:
    """Whether the writer of lock file ``path`` is gone; its file is removed if ``remove``."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    except OSError:  # unreadable (another user's, a read-only folder): assume alive
        return False
    try:
        if not _flock(fd, blocking=False):
            return False
        if remove:
            path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


@contextmanager
def _legacy_lock(folder: Path) -> Iterator[bool]:
    """Hold the lock older neurofm writers take on ``catalog.json`` itself (``flock``).

    Yields False when there is no ``catalog.json`` any more (another process migrated it).
    Older writers replace the file by a rename: a lock taken on a file that was replaced while
    this one waited is dropped and the current file is locked instead.
    """
    index = folder / LEGACY_INDEX_NAME
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        try:
            fd = os.open(index, os.O_RDONLY)
        except FileNotFoundError:
            yield False
            return
        while not _flock(fd, blocking=False):
            if time.monotonic() > deadline:
                os.close(fd)
                raise CatalogError(
                    f"{index}: waited {LOCK_TIMEOUT:g} s for another writer of this catalog "
                    "to finish updating the index"
                )
            time.sleep(0.02)
        try:
            current = os.path.samestat(os.fstat(fd), os.stat(index))
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)  # replaced (or migrated) while this process waited: look again
    try:
        yield True
    finally:
        os.close(fd)  # closing releases the lock


class Catalog:
    """A folder of recordings with an index.

    Parameters
    ----------
    path : str or Path
        The catalog folder.
    create : bool
        If True, a missing folder is a new, empty catalog (created on the first ``add``);
        otherwise a missing index raises :class:`~neurofm.errors.CatalogError`.
    writer : bool
        Register this object as a live writer now (``ingest`` does, before it reads anything
        that it may stage in the folder) and remove the temporary files of writers that died;
        ``add`` registers on its own otherwise.

    Raises
    ------
    CatalogError
        No index (and ``create`` is False), or an index that cannot be read: not SQLite,
        damaged, not a neurofm index, or of a newer version; the message names the file.

    Examples
    --------
    >>> cat = Catalog("catalog")
    >>> [e["id"] for e in cat.select(subject_id="S0", area="M1")]
    >>> train = cat.domains("train")    # {recording id: Intervals}, from the index alone
    >>> rec = cat.open(cat.ids[0])      # lazy Recording
    """

    def __init__(
        self, path: str | os.PathLike[str], create: bool = False, writer: bool = False
    ) -> None:
        self.path = Path(path)
        self._session: _Session | None = None
        self._crashes: dict[str, str] | None = None  # probe results of up_to_date
        #: Index rows that cannot be used, by rowid and id (left in the index as they are).
        self.problems: list[str] = []
        self._by_id: dict[str, dict[str, Any]] = {}
        self._ids: list[str] = []  # sorted
        self._n_rows = 0  # rows of the table, usable or not
        self._generation = -1
        #: Open connections to the index, by (process, thread).
        self._conns: dict[tuple[int, int], sqlite3.Connection] = {}
        #: Read from an unmigrated catalog.json (a folder this process cannot write).
        self._legacy = False
        db, legacy = self.path / INDEX_NAME, self.path / LEGACY_INDEX_NAME
        if db.is_file():
            if legacy.is_file():
                self._finish_migration()
            self._load()
        elif legacy.is_file():
            self._migrate()
        elif create:
            if self.path.exists() and not self.path.is_dir():
                raise CatalogError(f"{self.path}: exists and is not a folder")
        else:
            raise CatalogError(
                f"{self.path}: not a neurofm catalog (no {INDEX_NAME}); "
                "create one with `neurofm ingest SRC --out DIR`"
            )
        if writer and self.path.is_dir():
            self._register()

    @staticmethod
    def is_catalog(path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` is a catalog folder (it has an index, of this or an older format)."""
        path = Path(path)
        return (path / INDEX_NAME).is_file() or (path / LEGACY_INDEX_NAME).is_file()

    # ---- the index ------------------------------------------------------------------------

    @property
    def index_path(self) -> Path:
        """The index file (``catalog.sqlite``)."""
        return self.path / INDEX_NAME

    @contextmanager
    def _connection(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """This process's and thread's connection to the index; SQLite's errors become a
        CatalogError naming the file (and the connection is dropped).

        The connection is kept while the object lives: closing the last connection makes
        SQLite checkpoint and delete its WAL (two fsyncs), which would dominate every change.
        """
        db = self.index_path
        key = (os.getpid(), threading.get_ident())
        conn = self._conns.get(key)
        try:
            if conn is None:
                if any(pid != key[0] for pid, _ in self._conns):  # forked: not ours to touch
                    _INHERITED.extend(self._conns.values())
                    self._conns = {}
                conn = self._conns[key] = _connect(db)
            yield conn
            conn = None  # kept
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise CatalogError(
                    f"{db}: waited {LOCK_TIMEOUT:g} s for another writer of this catalog to "
                    "finish updating the index"
                ) from None
            what = "update" if write else "read"
            raise CatalogError(f"{db}: cannot {what} the catalog index ({exc})") from None
        except sqlite3.DatabaseError as exc:  # not a database, a damaged one
            raise CatalogError(
                f"{db}: cannot read the catalog index ({exc}); the recordings' own files are "
                f"not affected: move the index aside (to {db.name}.damaged) and ingest the "
                f"sources into {db.parent} again to rebuild it"
            ) from None
        finally:
            if conn is not None:  # an error: start afresh next time
                self._conns.pop(key, None)
                conn.close()

    def _close_connections(self) -> None:
        """Close this process's connections (a forked child leaves its parent's alone)."""
        mine = [k for k in getattr(self, "_conns", {}) if k[0] == os.getpid()]
        for key in mine:
            self._conns.pop(key).close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_conns"] = {}  # connections do not pickle: the copy opens its own
        state["_session"] = None  # nor is the copy a live writer
        return state

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, ``BEGIN IMMEDIATE``: writers queue, none is lost."""
        with self._connection(write=True) as conn, _immediate(conn):
            yield conn

    def _check_schema(self, conn: sqlite3.Connection) -> int:
        """The index's generation, after checking it is a neurofm index this code reads."""
        db = self.index_path
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not set(_TABLES) <= tables:
            raise CatalogError(
                f"{db}: not a neurofm catalog index (tables {sorted(tables)}; expected "
                f"{', '.join(_TABLES)})"
            )
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT_NAME:
            raise CatalogError(
                f"{db}: meta 'format' must be {FORMAT_NAME!r}, got {meta.get('format')!r}"
            )
        version = meta.get("version")
        if not isinstance(version, int):
            raise CatalogError(f"{db}: meta 'version' must be an integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise CatalogError(
                f"{db}: version {version} is newer than this neurofm supports ({FORMAT_VERSION})"
            )
        generation = meta.get("generation")
        if not isinstance(generation, int):
            raise CatalogError(f"{db}: meta 'generation' must be an integer, got {generation!r}")
        return generation

    def _load(self) -> None:
        """Read every row of the index (one consistent snapshot)."""
        with self._connection() as conn:
            conn.execute("BEGIN")  # one snapshot for the checks and the rows
            generation = self._check_schema(conn)
            rows = conn.execute(_SELECT_ROWS + " ORDER BY id").fetchall()
            conn.execute("COMMIT")
        by_id, problems = {}, []
        for row in rows:
            entry, problem = _row_entry(row)
            if entry is None:
                problems.append(problem)
            else:
                by_id[entry["id"]] = entry
        for problem in problems:
            log.warning("%s: %s", self.index_path, problem)
        self._by_id, self._ids, self.problems = by_id, list(by_id), problems
        self._n_rows, self._generation, self._legacy = len(rows), generation, False

    def refresh(self) -> None:
        """Catch up with changes other processes made to the index.

        Only rows written since this object last read the index are read (each write
        transaction stamps its rows with a new generation); rows removed by hand make it
        read the whole index again.
        """
        if not self.index_path.is_file():
            if (self.path / LEGACY_INDEX_NAME).is_file():
                self._load_legacy()
            return
        if self._legacy:  # another process migrated the index meanwhile
            self._load()
            return
        with self._connection() as conn:
            self._catch_up(conn)

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        """:meth:`refresh` on an open connection."""
        conn.execute("BEGIN")  # one snapshot: the new rows and the count agree
        generation = self._check_schema(conn)
        if generation == self._generation:
            conn.execute("COMMIT")
            return
        rows = conn.execute(_SELECT_ROWS + " WHERE generation > ?", (self._generation,)).fetchall()
        n_rows = conn.execute("SELECT count(*) FROM recordings").fetchone()[0]
        conn.execute("COMMIT")
        added = 0
        for row in rows:
            entry, problem = _row_entry(row)
            if entry is None:  # not a write of neurofm's: read everything again
                self._load()
                return
            rid = entry["id"]
            if rid not in self._by_id:
                bisect.insort(self._ids, rid)
                added += 1
            self._by_id[rid] = entry
            self.problems = [p for p in self.problems if f"(id {rid!r})" not in p]
        if n_rows != self._n_rows + added:  # rows were removed (by hand): read them all
            self._load()
            return
        self._n_rows, self._generation = n_rows, generation

    def _put(self, entry: dict[str, Any], details: _Details, overwrite: bool) -> None:
        """Insert or replace one recording's row and domains, in one transaction."""
        self._ensure_index()
        rid = entry["id"]
        with self._connection(write=True) as conn:
            with _immediate(conn):
                if (
                    not overwrite
                    and conn.execute("SELECT 1 FROM recordings WHERE id = ?", (rid,)).fetchone()
                ):
                    raise CatalogError(f"{self.path}: recording {rid!r} already exists")
                generation = _bump_generation(conn)
                conn.execute("DELETE FROM recordings WHERE id = ?", (rid,))
                conn.execute(_INSERT_ROW, _row_values(entry, True, generation))
                _write_details(conn, rid, details)
            self._catch_up(conn)  # the same connection: one open and close per change

    def _ensure_index(self) -> None:
        """Make the index if the folder has none (migrating a ``catalog.json``), atomically."""
        if self.index_path.is_file():
            return
        self.path.mkdir(parents=True, exist_ok=True)
        if (self.path / LEGACY_INDEX_NAME).is_file():
            self._migrate(required=True)
            return
        tmp = _build_index(self.path, [], {})
        _link_into_place(tmp, self.index_path)
        self._load()

    # ---- migration from catalog.json ---------------------------------------------------------

    def _migrate(self, required: bool = False) -> None:
        """Turn ``catalog.json`` into ``catalog.sqlite`` (see the module's notes), then load it.

        A folder this process cannot write keeps its JSON index, read as it is, unless
        ``required`` (a write is coming, which would fail anyway).
        """
        transient = self._session is None
        self._register()  # a live writer: no one removes the half-built index as litter
        try:
            unmigrated = self._migrate_locked()
        except OSError as exc:
            if required:
                raise CatalogError(
                    f"{self.path / LEGACY_INDEX_NAME}: cannot migrate the index to "
                    f"{INDEX_NAME} ({exc})"
                ) from None
            log.warning(
                "%s: cannot migrate the index to %s (%s); reading it as it is",
                self.path / LEGACY_INDEX_NAME,
                INDEX_NAME,
                exc,
            )
            self._load_legacy()
            return
        finally:
            if transient:
                self._release_session()
        self._load()
        self.problems += unmigrated

    def _migrate_locked(self) -> list[str]:
        """Migrate under the lock of ``catalog.json``; the entries left out, as problems."""
        legacy = self.path / LEGACY_INDEX_NAME
        with _legacy_lock(self.path) as present:
            if not present or self.index_path.is_file():
                return []  # another process migrated it while this one waited
            entries, raw = _read_legacy(legacy)
            good, problems = _checked_legacy(legacy, entries)
            for problem in problems:
                log.warning(
                    "%s: %s: not migrated (the entry stays in %s)", legacy, problem, MIGRATED_NAME
                )
            meta = {"migrated_from": hashlib.sha256(raw).hexdigest()}
            tmp = _build_index(self.path, ((e, None) for e in good), meta)
            _link_into_place(tmp, self.index_path)
            _retire_legacy(self.path)
        log.info("%s: migrated %d recordings to %s", legacy, len(good), INDEX_NAME)
        return [
            f"{LEGACY_INDEX_NAME} {p} (not migrated; kept in {MIGRATED_NAME})" for p in problems
        ]

    def _finish_migration(self) -> None:
        """Both indexes exist: finish a migration interrupted after its link, or leave alone a
        ``catalog.json`` that is not the one migrated (written by an older neurofm since)."""
        legacy = self.path / LEGACY_INDEX_NAME
        try:
            with self._connection() as conn:
                row = conn.execute("SELECT value FROM meta WHERE key = 'migrated_from'").fetchone()
            raw = legacy.read_bytes()
        except (CatalogError, OSError):
            return  # the load that follows reports an unreadable index
        if row is not None and row[0] == hashlib.sha256(raw).hexdigest():
            try:
                with _legacy_lock(self.path) as present:
                    if present:
                        _retire_legacy(self.path)
            except OSError as exc:  # a read-only folder: harmless, the index is complete
                log.debug("%s: not renamed (%s)", legacy, exc)
            return
        log.warning(
            "%s: ignored: the index is %s; recordings an older neurofm added to the JSON file "
            "are not in it (ingest them again)",
            legacy,
            INDEX_NAME,
        )

    def _load_legacy(self) -> None:
        """Read an unmigrated ``catalog.json`` into memory (a folder this process cannot write)."""
        index = self.path / LEGACY_INDEX_NAME
        entries, _ = _read_legacy(index)
        good, problems = _checked_legacy(index, entries)
        for problem in problems:
            log.warning("%s: %s", index, problem)
        by_id = {e["id"]: dict(e) for e in sorted(good, key=lambda e: e["id"])}
        self._by_id, self._ids, self.problems = by_id, list(by_id), problems
        self._n_rows, self._generation, self._legacy = len(entries), -1, True

    # ---- writers and their temporary files --------------------------------------------------

    def _register(self) -> None:
        """Become a live writer (once per object) and remove what dead writers left behind."""
        if self._session is not None:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._session = _Session(self.path)
        except OSError as exc:
            # A read-only catalog: nothing can be written, and the write that is attempted
            # (if any) reports it for its file; up-to-date sources are still skipped.
            log.debug("%s: not registered as a writer (%s)", self.path, exc)
            return
        weakref.finalize(self, self._session.release)
        for path in self._remove_stale():
            log.warning("%s: removed %s, left by an interrupted writer", self.path, path.name)

    def _writer_files(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        mine = self._session.path if self._session is not None else None
        return sorted(p for p in self.path.iterdir() if _WRITER_LOCK.match(p.name) and p != mine)

    def _other_writers_alive(self) -> bool:
        """Whether a writer other than this object is alive; a writer removes dead ones' files."""
        remove = self._session is not None
        return not all([_probe_dead(p, remove) for p in self._writer_files()])

    def _temp_files(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return sorted(
            p
            for p in self.path.iterdir()
            if (_TEMP_FILE.match(p.name) and p.is_file())
            or (_STAGE_DIR.match(p.name) and p.is_dir())
        )

    def leftovers(self) -> list[Leftover]:
        """Temporary files and staging folders of writers at the top of the catalog folder,
        and the lock files of writers that died."""
        found = self._temp_files()
        dead = [p for p in self._writer_files() if _probe_dead(p, remove=False)]
        alive = bool(found) and (self._other_writers_alive() or self._session is not None)
        return [Leftover(p, alive) for p in found] + [Leftover(p, False) for p in dead]

    def _remove_stale(self) -> list[Path]:
        """Remove writers' temporary files if no other writer is alive.

        The temporaries are listed before the writers are checked: a writer that registers in
        between is seen alive (nothing is removed), and one that registers after the check
        has no file in the list yet (a writer registers before it creates any).
        """
        found = self._temp_files()
        if self._other_writers_alive() or not found:
            return []
        for path in found:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return found

    def close(self) -> None:
        """Close the index and stop being a live writer of this catalog; also on ``with`` exit.

        The object stays usable: a later query opens the index again.
        """
        self._close_connections()
        self._release_session()

    def _release_session(self) -> None:
        if self._session is not None:
            self._session.release()
            self._session = None

    def __del__(self) -> None:
        # A sqlite3 connection sits in reference cycles (its statement cache): left to the
        # garbage collector, its WAL files would outlive this object by an unknown while.
        try:
            self._close_connections()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- queries --------------------------------------------------------------------------

    @property
    def _entries(self) -> list[dict[str, Any]]:
        return [self._by_id[rid] for rid in self._ids]

    @property
    def entries(self) -> list[dict[str, Any]]:
        """Index entries, one dict per recording, sorted by id (copies)."""
        return [dict(e) for e in self._entries]

    @property
    def ids(self) -> list[str]:
        """The recordings' ids, sorted."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __contains__(self, recording_id: object) -> bool:
        return recording_id in self._by_id

    def __repr__(self) -> str:
        # From the index alone: no recording is opened.
        lines = [f"<Catalog {str(self.path)!r}: {self._headline()}"]
        lines += [f"  {e['id']}: {'; '.join(_entry_facts(e))}" for e in self._entries[:10]]
        if len(self) > 10:
            lines.append(f"  ... {len(self) - 10:,} more")
        return "\n".join(lines) + ">"

    def _repr_html_(self) -> str:
        fields = ("subject_id", "session_id", "modality", "areas", "duration_s", "n_units")
        rows = []
        for e in self._entries:
            values = [e.get(k, "") for k in fields]
            values[3] = ", ".join(map(str, values[3] or []))
            values[4] = display.seconds(values[4]) if values[4] != "" else ""
            rows.append([e["id"], *values, ", ".join(e.get("signals", {}))])
        header = ("id", "subject", "session", "modality", "areas", "duration", "units", "signals")
        return display.html_table(f"Catalog {str(self.path)!r}: {self._headline()}", rows, header)

    def _headline(self) -> str:
        entries = self._entries
        subjects = {e.get("subject_id") for e in entries if e.get("subject_id")}
        parts = [display.count(len(entries), "recording")]
        if subjects:
            parts.append(display.count(len(subjects), "subject"))
        total = sum(float(e.get("duration_s") or 0) for e in entries)
        parts.append(display.seconds(total))
        units = sum(int(e.get("n_units") or 0) for e in entries)
        if units:
            parts.append(display.count(units, "unit"))
        if self.problems:
            bad = display.count(len(self.problems), "unusable entry", "unusable entries")
            parts.append(bad)
        return ", ".join(parts)

    def entry(self, recording_id: str) -> dict[str, Any]:
        """One recording's index entry (a copy)."""
        try:
            return dict(self._by_id[recording_id])
        except (KeyError, TypeError):
            shown = ", ".join(self.ids if len(self) <= 20 else [*self._ids[:20], "..."])
            raise CatalogError(
                f"{self.path}: no recording {recording_id!r} (has {shown})"
            ) from None

    def select(self, *, as_frame: bool = False, **criteria: Any) -> Any:
        """Entries matching every criterion (from the index; no recording is opened).

        A criterion matches a field equal to it, or a list field containing it
        (``area="M1"`` matches entries whose ``areas`` contain M1). A sequence value matches
        any of its items: ``subject_id=["S0", "S1"]``.

        Parameters
        ----------
        as_frame : bool
            Return a ``pandas.DataFrame`` indexed by recording id (one row per recording,
            one column per index field) instead of a list of dicts.
        **criteria
            Field name -> wanted value (or values).

        Returns
        -------
        list of dict, or pandas.DataFrame
        """
        out = []
        for e in self._entries:
            if all(self._matches(e, key, want) for key, want in criteria.items()):
                out.append(dict(e))
        if not as_frame:
            return out
        import pandas as pd

        seen = dict.fromkeys(k for e in self._entries for k in e)
        known = [k for k in _FIELD_ORDER if k in seen]
        columns = known + [k for k in seen if k not in known] or ["id"]
        return pd.DataFrame(out, columns=columns).set_index("id")

    @staticmethod
    def _matches(entry: dict[str, Any], key: str, want: Any) -> bool:
        if key not in entry and key + "s" in entry:  # area -> areas
            key += "s"
        if key not in entry:
            fields = ", ".join(sorted(entry))
            raise CatalogError(f"select: unknown field {key!r} (fields: {fields})")
        have = entry[key]
        wants = list(want) if isinstance(want, list | tuple | set) else [want]
        if isinstance(have, list):
            return any(w in have for w in wants)
        return have in wants

    def _wanted(self, recording_ids: Sequence[str] | None) -> list[str]:
        wanted = self.ids if recording_ids is None else list(recording_ids)
        for rid in wanted:
            if rid not in self._by_id:
                self.entry(rid)  # raises, naming the catalog and its recordings
        return wanted

    def domains(
        self, split: str, recording_ids: Sequence[str] | None = None
    ) -> dict[str, Intervals]:
        """Each recording's ``<split>_domain`` intervals, read from the index.

        Parameters
        ----------
        split : str
            ``train``, ``valid``, ``test`` (or any ``<name>_domain`` a recording has).
        recording_ids : sequence of str, optional
            Default every recording of the catalog.

        Returns
        -------
        dict of str to Intervals
            In the order of ``recording_ids``; a recording without that domain is left out,
            an empty domain is kept. Only the bounds are indexed (no labels or columns).

        Raises
        ------
        CatalogError
            An id that is not in the catalog.
        """
        wanted = self._wanted(recording_ids)
        if not wanted:
            return {}
        found: dict[str, tuple[int, int]] = {}
        pending: set[str] = set(wanted)
        if not self._legacy:
            with self._connection() as conn:
                conn.execute("BEGIN")
                rows = self._rows_of(
                    conn,
                    "SELECT recording_id, starts, ends FROM domains WHERE split = ?",
                    (split,),
                    wanted,
                )
                pending = {r[0] for r in conn.execute(_UNINDEXED)} & pending
                conn.execute("COMMIT")
            want = set(wanted)
            rows = [r for r in rows if r[0] in want]
            # One decode for all blobs (10,000 recordings: 60,000 small arrays otherwise);
            # each domain is a slice of two writable arrays.
            sizes = np.cumsum([0] + [len(r[1]) // 8 for r in rows])
            all_starts = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f8").astype(float)
            all_ends = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f8").astype(float)
            found = {r[0]: (sizes[i], sizes[i + 1]) for i, r in enumerate(rows)}
        out: dict[str, Intervals] = {}
        name = f"{split}_domain"
        for rid in wanted:
            if rid in pending:
                bounds = self._complete(rid).domains.get(split)
                if bounds is not None:
                    out[rid] = Intervals(*bounds, name=name, validate=False)
            elif rid in found:
                lo, hi = found[rid]
                out[rid] = Intervals(all_starts[lo:hi], all_ends[lo:hi], name=name, validate=False)
        return out

    def _rows_of(
        self, conn: sqlite3.Connection, query: str, params: tuple, wanted: list[str]
    ) -> list[tuple]:
        """Rows of ``query`` (its first column a recording id) for the ``wanted`` recordings:
        the whole table for most of the catalog, else the wanted ids looked up (a fine-tune
        reads one recording's rows, not 10,000)."""
        if 4 * len(wanted) >= len(self._by_id):
            return conn.execute(query, params).fetchall()
        glue = " AND " if " WHERE " in query else " WHERE "
        rows: list[tuple] = []
        for i in range(0, len(wanted), 500):  # SQLite takes 999 parameters at least
            chunk = wanted[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            rows += conn.execute(
                f"{query}{glue}recording_id IN ({marks})", (*params, *chunk)
            ).fetchall()
        return rows

    def unit_ids(
        self, recording_ids: Sequence[str] | None = None, signal: str = "spikes"
    ) -> dict[str, list[str]]:
        """Each recording's unit ids of a spikes signal, read from the index.

        Parameters
        ----------
        recording_ids : sequence of str, optional
            Default every recording of the catalog.
        signal : str
            The spikes signal.

        Returns
        -------
        dict of str to list of str
            In the order of ``recording_ids``; a recording without that signal is left out.
        """
        wanted = self._wanted(recording_ids)
        if not wanted:
            return {}
        units: dict[str, str] = {}
        pending: set[str] = set(wanted)
        if not self._legacy:
            with self._connection() as conn:
                conn.execute("BEGIN")
                rows = self._rows_of(conn, "SELECT recording_id, ids FROM units", (), wanted)
                pending = {r[0] for r in conn.execute(_UNINDEXED)} & pending
                conn.execute("COMMIT")
            want = set(wanted)
            units = {rid: u for rid, u in rows if rid in want}
        out: dict[str, list[str]] = {}
        for rid in wanted:
            if rid in pending or rid not in units:
                ids = self._complete(rid).units.get(signal)
            else:
                ids = json.loads(units[rid]).get(signal)
            if ids is not None:
                out[rid] = list(ids)
        return out

    def _complete(self, recording_id: str) -> _Details:
        """Read a recording the index does not describe fully (a row migrated from
        ``catalog.json``) and complete its row, so it is read only once."""
        with self.open(recording_id) as rec:
            details = _details_of(rec)
        if self._legacy:
            return details
        try:
            with self._transaction() as conn:
                done = conn.execute(
                    "UPDATE recordings SET complete = 1 WHERE id = ? AND complete = 0 AND file = ?",
                    (recording_id, self._by_id[recording_id]["file"]),
                ).rowcount
                if done:
                    _write_details(conn, recording_id, details)
        except CatalogError as exc:  # a read-only catalog: read again next time
            log.debug("%s: row of %s not completed (%s)", self.path, recording_id, exc)
        return details

    def file_of(self, recording_id: str) -> Path:
        """The recording's file, checked to lie inside the catalog folder.

        Raises
        ------
        CatalogError
            No such recording, or its ``file`` resolves outside the catalog (``..``, an
            absolute path, a symlink out): such an entry is refused, never opened.
        """
        name = self.entry(recording_id)["file"]
        root = self.path.resolve()
        resolved = (root / name).resolve()
        if not resolved.is_relative_to(root) or resolved == root:
            raise CatalogError(
                f"{self.index_path}: recording {recording_id!r}: file {name!r} resolves "
                f"outside the catalog folder ({resolved}); refused"
            )
        return self.path / name

    def open(self, recording_id: str) -> Recording:
        """Open one recording lazily."""
        path = self.file_of(recording_id)
        if not path.is_file():
            raise CatalogError(
                f"{path}: no such recording file (indexed as {recording_id!r} in {self.path})"
            )
        return Recording.open(path)

    def check(self, recording_id: str) -> Integrity:
        """Re-read one recording against its checksums (see :func:`check_integrity`)."""
        try:
            path = self.file_of(recording_id)
        except CatalogError as exc:
            return Integrity(self.path / str(self.entry(recording_id)["file"]), [str(exc)])
        return check_integrity(path)

    def _check_probed(self, recording_id: str) -> Integrity:
        """:meth:`check` for a file the up-to-date probe walked (or one probed now)."""
        try:
            path = self.file_of(recording_id)
        except CatalogError:
            return self.check(recording_id)
        crash = (self._crashes or {}).get(str(path))
        if crash is not None:
            return Integrity(path, [f"{path}: {crash}"])
        return check_integrity(path, probe=self._crashes is None)

    def verify(self, progress: Any = None) -> CatalogHealth:
        """Re-read every recording against its checksums, and check the index.

        Parameters
        ----------
        progress : callable, optional
            Called with each recording id as it is checked (e.g. to advance a progress bar).

        Returns
        -------
        CatalogHealth
            Broken recordings, unusable index rows and leftover temporary files.
        """
        health = CatalogHealth(self.path, problems=list(self.problems))
        files: dict[str, Path] = {}
        for rid in self.ids:
            try:
                files[rid] = self.file_of(rid)
            except CatalogError as exc:
                health.recordings[rid] = Integrity(
                    self.path / str(self.entry(rid)["file"]), [str(exc)]
                )
        # One child process walks every file first: one that crashes the HDF5 library is
        # marked broken without ever being opened here.
        crashed = probe_hdf5([p for p in files.values() if p.is_file()])
        for rid in self.ids:
            if rid in files:
                path = files[rid]
                if str(path) in crashed:
                    health.recordings[rid] = Integrity(path, [f"{path}: {crashed[str(path)]}"])
                else:
                    health.recordings[rid] = check_integrity(path, probe=False)
            if progress is not None:
                progress(rid)
        health.recordings = {rid: health.recordings[rid] for rid in self.ids}
        health.leftovers = self.leftovers()
        listed = {p.resolve() for p in files.values()}
        health.unindexed = sorted(
            p for p in self.path.glob("*.h5") if p.is_file() and p.resolve() not in listed
        )
        return health

    def up_to_date(self, source_sha256: str, settings: str | None = None) -> dict[str, Any] | None:
        """The entry ingested from a source with this sha256 whose file is still healthy.

        A recording whose bytes changed since it was written (a checksum fails) or that cannot
        be opened is not up to date: ingesting its source again repairs it. With ``settings``
        (the digest ingest records of a card, reader options and id), neither is one ingested
        with other settings, or before they were recorded.
        """
        if self._crashes is None:  # one child walks every indexed file, once per object
            paths = []
            for e in self._entries:
                try:
                    paths.append(self.file_of(e["id"]))
                except CatalogError:
                    continue
            self._crashes = probe_hdf5([p for p in paths if p.is_file()])
        for e in self._entries:
            if e.get("source_sha256") != source_sha256:
                continue
            if settings is not None and e.get(SETTINGS_KEY) != settings:
                log.warning(
                    "%s: %s was ingested %s; ingesting it again",
                    self.path,
                    e["id"],
                    "with other settings (dataset card, splits, reader options or id)"
                    if e.get(SETTINGS_KEY)
                    else "before neurofm recorded its ingest settings",
                )
                continue
            health = self._check_probed(e["id"])
            if health.ok:
                return dict(e)
            log.warning(
                "%s: %s is damaged (%s); ingesting it again",
                self.path,
                e["id"],
                "; ".join(health.problems[:3]),
            )
        return None

    # ---- changes --------------------------------------------------------------------------

    def add(self, recording: Recording, overwrite: bool = True) -> dict[str, Any]:
        """Save ``recording`` into the catalog and index it (both atomically).

        Safe with other writers at once: the file is written under a temporary name and
        renamed, then its row is written in one transaction.

        Parameters
        ----------
        recording : Recording
            Saved as ``<id>.h5``.
        overwrite : bool
            Replace a recording of the same id (default); if False, such a recording is an
            error.

        Returns
        -------
        dict
            The new index entry.
        """
        if not overwrite:
            self.refresh()
            if recording.id in self:
                raise CatalogError(f"{self.path}: recording {recording.id!r} already exists")
        transient = self._session is None  # a writer only for this call
        self._register()
        try:
            self._ensure_index()  # before the file: an index that cannot be made leaves none
            file_name = f"{recording.id}.h5"
            recording.save(self.path / file_name)
            entry = _index_entry(recording, file_name)
            self._put(entry, _details_of(recording), overwrite)
        finally:
            if transient:
                self._release_session()
        return dict(entry)

    def register(self, file: str | os.PathLike[str], overwrite: bool = True) -> dict[str, Any]:
        """Index a recording file that is already in the catalog folder.

        For writers that save recordings themselves (e.g. Dask workers writing
        ``<catalog>/<id>.h5`` atomically) and leave the index to one process: the file is
        opened lazily (its metadata, unit ids and split domains are read, no signal data),
        and its row is written in one transaction, as :meth:`add` does.

        Parameters
        ----------
        file : str or Path
            The recording file, absolute or relative to the catalog folder; it must lie
            inside the folder.
        overwrite : bool
            Replace an entry of the same id (default); if False, such an entry is an error.

        Returns
        -------
        dict
            The new index entry.

        Raises
        ------
        CatalogError
            A file outside the catalog folder, or an id already indexed (``overwrite=False``).
        ReaderError
            A file that is missing or not a neurofm recording.
        """
        path = Path(file)
        if not path.is_absolute():
            path = self.path / path
        root = self.path.resolve()
        resolved = path.resolve()
        if not resolved.is_relative_to(root) or resolved == root:
            raise CatalogError(
                f"{path}: not inside the catalog folder {self.path}; save it there first"
            )
        with Recording.open(path) as rec:
            entry = _index_entry(rec, resolved.relative_to(root).as_posix())
            details = _details_of(rec)
        self._put(entry, details, overwrite)
        return dict(entry)


_UNINDEXED = "SELECT id FROM recordings WHERE complete = 0"


def split_domains(
    trials: Intervals,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    names: Sequence[str] = ("train", "valid", "test"),
    column: str | None = None,
) -> dict[str, Intervals]:
    """Split a recording's trials into train/valid/test domains that never overlap in time.

    Parameters
    ----------
    trials : Intervals
        The trials; they must not overlap each other (otherwise a moment could belong to two
        splits).
    fractions : sequence of float
        Share of trials per split, summing to 1 (ignored when ``column`` is given).
    seed : int
        Seed of the random assignment.
    names : sequence of str
        Names of the splits.
    column : str, optional
        Use an existing per-trial column (e.g. NWB's ``split``) instead of a random draw; its
        values must be among ``names``.

    Returns
    -------
    dict of str to Intervals
        One Intervals per split, sorted by start.
    """
    n = len(trials)
    if n and (trials.start[1:] < trials.end[:-1]).any():
        i = int(np.flatnonzero(trials.start[1:] < trials.end[:-1])[0]) + 1
        raise InvalidDataError(
            f"{trials.name}: trials {i - 1} and {i} overlap, so trial-based splits could overlap "
            "in time"
        )
    if column is not None:
        if column not in trials.columns:
            raise InvalidDataError(f"{trials.name}: no column {column!r} to split by")
        assignment = np.asarray([str(v) for v in trials.columns[column]], dtype=object)
        unknown = sorted(set(assignment) - set(names))
        if unknown:
            raise InvalidDataError(
                f"{trials.name}.{column}: values {unknown} are not split names {list(names)}"
            )
    else:
        if len(fractions) != len(names) or not np.isclose(sum(fractions), 1.0):
            raise InvalidDataError(
                f"split fractions {list(fractions)} must have one value per split "
                f"{list(names)} and sum to 1"
            )
        order = np.random.default_rng(seed).permutation(n)
        bounds = np.round(np.cumsum([0.0, *fractions]) * n).astype(int)
        assignment = np.empty(n, dtype=object)
        for name, lo, hi in zip(names, bounds[:-1], bounds[1:], strict=True):
            assignment[order[lo:hi]] = name
    return {name: trials.take(np.flatnonzero(assignment == name)) for name in names}


def time_domains(
    start: float,
    end: float,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    names: Sequence[str] = ("train", "valid", "test"),
) -> dict[str, Intervals]:
    """Cut ``[start, end)`` into contiguous train/valid/test blocks, in that order.

    For continuous recordings without trials (EEG-fMRI runs, resting state) a held-out block
    at the end is the honest split: random short blocks would leak through the slow
    autocorrelation of BOLD and of the hemodynamic response.

    Parameters
    ----------
    start, end : float
        The span to split, seconds.
    fractions : sequence of float
        Share of the span per split, summing to 1; a zero share gives an empty domain.
    names : sequence of str
        Names of the splits, in time order.

    Returns
    -------
    dict of str to Intervals
        One Intervals (one block, or none) per split.
    """
    if len(fractions) != len(names) or not np.isclose(sum(fractions), 1.0):
        raise InvalidDataError(
            f"split fractions {list(fractions)} must have one value per split {list(names)} "
            "and sum to 1"
        )
    if not end > start:
        raise InvalidDataError(f"time_domains: empty span [{start}, {end})")
    edges = start + (end - start) * np.cumsum([0.0, *fractions])
    edges[-1] = end
    out = {}
    for name, lo, hi in zip(names, edges[:-1], edges[1:], strict=True):
        keep = hi > lo
        out[name] = Intervals(
            np.array([lo] if keep else [], dtype=np.float64),
            np.array([hi] if keep else [], dtype=np.float64),
            name=f"{name}_domain",
        )
    return out
