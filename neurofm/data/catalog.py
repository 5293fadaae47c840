"""Catalog: a folder of recordings plus one index file, queried without opening recordings.

Layout::

    CATALOG/
      catalog.json          {"format": "neurofm.catalog", "version": 1, "recordings": [...]}
      <recording id>.h5     one file per recording (see neurofm.data.recording)
      .neurofm-locks/       the index lock and one lock per live writer (see below)

Each index entry holds what queries and ``neurofm info`` need (subject, session, species, task,
modality, brain areas, duration, unit and spike counts, signal kinds) and the source file's
sha256, so re-ingesting an unchanged source is skipped. The index is rewritten atomically after
every change, so an interrupted ingest leaves a consistent catalog.

Several writers at once (two ``neurofm ingest`` into one catalog, Dask workers): every change
of the index is a read-modify-write under an exclusive lock on ``catalog.json`` itself
(``fcntl.flock``), re-reading the index under the lock, so no writer's entries are lost. The
index is replaced by an atomic rename, so a writer that waited on the old file sees that it was
replaced and locks the new one. Locking the index itself leaves nothing else in the folder (a
separate lock file could not be deleted safely, and filelock keeps it forever).

Each writer also holds a lock on a file of its own (``.neurofm-writer-<host>-<pid>-<id>.lock``)
while it lives. Temporary files (``.<id>.h5.<random>.tmp``, ``.neurofm-stage-*``) found when no
other writer is alive were left by a killed one: the next writer removes them, and
:meth:`Catalog.leftovers` reports them (``neurofm info``, ``neurofm verify``).

Index entries are checked, not trusted: a malformed entry is reported by its position and id
(:attr:`Catalog.problems`) instead of failing every query, and an entry's ``file`` must resolve
inside the catalog folder (``..``, absolute paths and symlinks out are refused).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurofm.atomic import atomic_path
from neurofm.data.recording import Integrity, Recording, check_integrity
from neurofm.data.signals import Intervals
from neurofm.data.storage import probe_hdf5
from neurofm.errors import CatalogError, InvalidDataError

log = logging.getLogger(__name__)

INDEX_NAME = "catalog.json"
FORMAT_NAME = "neurofm.catalog"
FORMAT_VERSION = 1
#: Seconds a writer waits for the index lock before it gives up with a clear error.
LOCK_TIMEOUT = 300.0
_WRITER_LOCK = re.compile(r"^\.neurofm-writer-.+\.lock$")
#: Temporary files of neurofm's writers at the top of a catalog folder: atomic writes of a
#: recording or of the index (``neurofm.atomic``), and the NWB reader's staging folders.
_TEMP_FILE = re.compile(r"^\.(?:.+\.h5|catalog\.json)\.[A-Za-z0-9_]+\.tmp$")
_STAGE_DIR = re.compile(r"^\.neurofm-stage-[A-Za-z0-9_]+$")

__all__ = ["Catalog", "CatalogHealth", "Leftover", "split_domains", "time_domains"]


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
    return {
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


def _entry_problem(entry: Any, position: int, seen: set[str]) -> str | None:
    """Why an index entry cannot be used (None when it can), naming its position and id."""
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
        Index entries that could not be used, by position and id.
    leftovers : list of Leftover
        Temporary files of writers.
    """

    path: Path
    recordings: dict[str, Integrity] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    leftovers: list[Leftover] = field(default_factory=list)

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


class _IndexLock:
    """An exclusive lock on the index file itself, held across its atomic replacement.

    A writer locks the file ``catalog.json`` names now; if, once it holds the lock, the name
    points to another file (a writer before it replaced the index), it locks that one instead.
    The first index is created atomically (hard link of a complete empty index), so writers
    that start on an empty folder agree on one file too.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.index = catalog.path / INDEX_NAME
        self.fd: int | None = None

    def __enter__(self) -> None:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            if not self.index.exists():
                self.catalog._create_empty_index()
            try:
                fd = os.open(self.index, os.O_RDWR)
            except FileNotFoundError:  # replaced between the check and the open
                continue
            while not _flock(fd, blocking=False):
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise CatalogError(
                        f"{self.index}: waited {LOCK_TIMEOUT:g} s for another writer of this "
                        "catalog to finish updating the index"
                    )
                time.sleep(0.02)
            try:
                current = os.path.samestat(os.fstat(fd), os.stat(self.index))
            except FileNotFoundError:
                current = False
            if current:
                self.fd = fd
                return
            os.close(fd)  # the index was replaced while this writer waited

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None


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

    Examples
    --------
    >>> cat = Catalog("catalog")
    >>> [e["id"] for e in cat.select(subject_id="S0", area="M1")]
    >>> rec = cat.open(cat.ids[0])      # lazy Recording
    """

    def __init__(
        self, path: str | os.PathLike[str], create: bool = False, writer: bool = False
    ) -> None:
        self.path = Path(path)
        self._session: _Session | None = None
        self._crashes: dict[str, str] | None = None  # probe results of up_to_date
        #: Index entries that cannot be used, by position and id (kept in the file as they are).
        self.problems: list[str] = []
        self._bad: list[Any] = []
        index = self.path / INDEX_NAME
        if index.is_file():
            self._load(index)
        elif create:
            if self.path.exists() and not self.path.is_dir():
                raise CatalogError(f"{self.path}: exists and is not a folder")
            self._entries: list[dict[str, Any]] = []
        else:
            raise CatalogError(
                f"{self.path}: not a neurofm catalog (no {INDEX_NAME}); "
                "create one with `neurofm ingest SRC --out DIR`"
            )
        if writer and self.path.is_dir():
            self._register()

    # ---- the index ------------------------------------------------------------------------

    def _load(self, index: Path) -> None:
        entries = self._read_index(index)
        good, self._bad, self.problems = [], [], []
        seen: set[str] = set()
        for position, entry in enumerate(entries):
            problem = _entry_problem(entry, position, seen)
            if problem is None:
                seen.add(entry["id"])
                good.append(entry)
            else:
                self.problems.append(problem)
                self._bad.append(entry)
        for problem in self.problems:
            log.warning("%s: %s", index, problem)
        self._entries = good

    @staticmethod
    def _read_index(index: Path) -> list[Any]:
        try:
            doc = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
            raise CatalogError(f"{index}: cannot read the catalog index ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            raise CatalogError(f"{index}: field 'format' must be {FORMAT_NAME!r}")
        version = doc.get("version", -1)
        if not isinstance(version, int) or isinstance(version, bool):
            raise CatalogError(f"{index}: field 'version' must be an integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise CatalogError(f"{index}: version {version} is newer than supported")
        entries = doc.get("recordings")
        if not isinstance(entries, list):
            raise CatalogError(f"{index}: field 'recordings' must be a list")
        return entries

    def _write_index(self) -> None:
        # Unusable entries stay in the file as they were: they are the user's to repair.
        doc = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "recordings": self._entries + self._bad,
        }
        with atomic_path(self.path / INDEX_NAME) as tmp:
            tmp.write_text(json.dumps(doc, indent=1))

    def _index_lock(self) -> _IndexLock:
        """The lock every read-modify-write of the index holds (a context manager)."""
        self.path.mkdir(parents=True, exist_ok=True)
        return _IndexLock(self)

    def _create_empty_index(self) -> None:
        """Create ``catalog.json`` with no recordings, unless it exists (atomic either way)."""
        import tempfile

        doc = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "recordings": []}
        fd, tmp = tempfile.mkstemp(prefix=f".{INDEX_NAME}.", suffix=".tmp", dir=self.path)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(doc, indent=1))
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)
            try:
                os.link(tmp, self.path / INDEX_NAME)  # complete, or not there: never half
            except FileExistsError:  # another writer made it first
                pass
        finally:
            Path(tmp).unlink(missing_ok=True)

    def refresh(self) -> None:
        """Re-read the index from disk (other processes may have changed it)."""
        index = self.path / INDEX_NAME
        if index.is_file():
            self._load(index)

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
        """Stop being a live writer of this catalog (no-op for a reader); also on ``with`` exit."""
        if self._session is not None:
            self._session.release()
            self._session = None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- queries --------------------------------------------------------------------------

    @property
    def entries(self) -> list[dict[str, Any]]:
        """Index entries, one dict per recording (a copy)."""
        return [dict(e) for e in self._entries]

    @property
    def ids(self) -> list[str]:
        return [e["id"] for e in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __contains__(self, recording_id: object) -> bool:
        return recording_id in self.ids

    def __repr__(self) -> str:
        return f"<Catalog {str(self.path)!r}: {len(self)} recordings>"

    def entry(self, recording_id: str) -> dict[str, Any]:
        for e in self._entries:
            if e["id"] == recording_id:
                return dict(e)
        raise CatalogError(f"{self.path}: no recording {recording_id!r} (has {self.ids})")

    def select(self, *, as_frame: bool = False, **criteria: Any) -> Any:
        """Entries matching every criterion.

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

        columns = list(dict.fromkeys(k for e in self._entries for k in e)) or ["id"]
        return pd.DataFrame(out, columns=columns).set_index("id")

    @staticmethod
    def _matches(entry: dict[str, Any], key: str, want: Any) -> bool:
        if key not in entry and key + "s" in entry:  # area -> areas
            key += "s"
        if key not in entry:
            raise CatalogError(f"select: unknown field {key!r} (fields: {sorted(entry)})")
        have = entry[key]
        wants = list(want) if isinstance(want, list | tuple | set) else [want]
        if isinstance(have, list):
            return any(w in have for w in wants)
        return have in wants

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
                f"{self.path / INDEX_NAME}: recording {recording_id!r}: file {name!r} resolves "
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
            Broken recordings, unusable index entries and leftover temporary files.
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
        return health

    def up_to_date(self, source_sha256: str) -> dict[str, Any] | None:
        """The entry ingested from a source with this sha256 whose file is still healthy.

        A recording whose bytes changed since it was written (a checksum fails) or that cannot
        be opened is not up to date: ingesting its source again repairs it.
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

        Safe with other writers at once: the file is written under a temporary name, then the
        index is re-read, updated and rewritten under the index lock.
        """
        if not overwrite:
            self.refresh()
            if recording.id in self:
                raise CatalogError(f"{self.path}: recording {recording.id!r} already exists")
        transient = self._session is None  # a writer only for this call
        self._register()
        try:
            file_name = f"{recording.id}.h5"
            recording.save(self.path / file_name)
            entry = _index_entry(recording, file_name)
            with self._index_lock():
                self.refresh()
                self._entries = [e for e in self._entries if e["id"] != recording.id] + [entry]
                self._entries.sort(key=lambda e: e["id"])
                self._write_index()
        finally:
            if transient:
                self.close()
        return dict(entry)


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
