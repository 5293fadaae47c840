"""HDF5 storage of signals, and the lazy views that read one window at a time.

Layout of a signal group (``/signals/<name>``, attribute ``kind``)::

    spikes     timestamps f8[n], unit_index i4[n], time_index i8[K+1] (attr step),
               units/ids str[u], units/columns/<col>[u]
    irregular  timestamps f8[n], values [n, c], time_index i8[K+1], channels str[c]
    regular    data [t, c] (attrs rate, start, unit), channels str[c],
               channel_info/<col>[c]? (per-channel type, position, parcel centroid...)
    intervals  start f8[n], end f8[n], end_cummax f8[n], labels str[n]?, columns/<col>[n]
               (attr time_columns)

Chunking and compression (why): none, on purpose.

* Every array a window reads (spike ``timestamps``/``unit_index``, irregular series, regular
  ``data``) is stored *contiguous and uncompressed*. A window is then a read of exactly its byte
  range at a computed offset: no chunk B-tree walk, no chunk cache, nothing to inflate. Measured
  on 1 s windows of a 100-unit recording: chunked+gzip cost 33 us (10 min) vs 81 us (10 h), i.e.
  it got slower with length once the chunk cache stopped holding the file, and a gzip chunk of
  behaviour cost ~120 us to inflate on every miss; contiguous cost ~35-40 us at both lengths.
  Spike times are nearly incompressible float64 anyway (gzip saved < 40%).
* ``time_index[k]`` is the first event at or after ``k * step`` (``step`` = ``INDEX_STEP`` =
  1 s). A window reads two entries of it, then only the events between them: O(log n + k)
  (the final ``searchsorted`` runs on that small span in memory), never O(n). The index costs
  8 bytes per second of recording.
* Interval tables (trials, epochs, domains) are small; a lazy view reads them whole on first use
  and keeps them, so every later window is a binary search in memory.

Checksums (why): HDF5 checks nothing in contiguous, unfiltered datasets, so a flipped bit in a
spike time or a behaviour sample would be read as data. :func:`write_checksums` stores, as the
root attribute ``checksums``, a sha256 of every dataset's content and of every object's
attributes, computed from the finished file before it is renamed into place;
:func:`check_checksums` re-reads them and names what changed. The cost is one sequential read
of the file at write and at verify time (~1 GB/s), never on a window read.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import h5py
import numpy as np

from neurofm.data.signals import (
    Intervals,
    IrregularSeries,
    RegularSeries,
    Signal,
    Spikes,
    Units,
    check_window,
    describe,
    describe_html,
    regular_index_range,
)
from neurofm.errors import InvalidDataError

INDEX_STEP = 1.0
_STR = h5py.string_dtype("utf-8")
#: Root attribute holding the checksum manifest (JSON).
CHECKSUM_ATTR = "checksums"
#: Bytes hashed per block, so memory stays flat on recordings of any length.
_HASH_BLOCK_BYTES = 1 << 24


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def _time_index(timestamps: np.ndarray, step: float = INDEX_STEP) -> np.ndarray:
    last = float(timestamps[-1]) if len(timestamps) else 0.0
    grid = np.arange(int(np.floor(last / step)) + 2) * step
    return np.searchsorted(timestamps, grid, side="left").astype(np.int64)


def _write_strings(group: h5py.Group, name: str, values: np.ndarray) -> None:
    texts = [str(v) for v in values]
    bad = next((t for t in texts if "\x00" in t), None)
    if bad is not None:  # HDF5 ends C strings at NUL: the text would come back cut short
        where = f"{group.name.strip('/')}/{name}".removeprefix("signals/")
        raise InvalidDataError(
            f"{where}: text {bad!r} holds a NUL character, which HDF5 cannot store"
        )
    group.create_dataset(name, data=np.asarray(texts, dtype=object), dtype=_STR)


def _write_columns(
    group: h5py.Group, columns: dict[str, np.ndarray], name: str = "columns"
) -> None:
    cols = group.create_group(name)
    for key, col in columns.items():
        if col.dtype == object or col.dtype.kind in "US":
            _write_strings(cols, key, col)
        else:
            cols.create_dataset(key, data=col)


def _read_column(ds: h5py.Dataset) -> np.ndarray:
    if h5py.check_string_dtype(ds.dtype) is not None:
        return np.asarray(ds.asstr()[()], dtype=object)
    return ds[()]


def _read_columns(group: h5py.Group, name: str = "columns") -> dict[str, np.ndarray]:
    if name not in group:
        return {}
    return {key: _read_column(ds) for key, ds in group[name].items()}


def write_units(parent: h5py.Group, units: Units) -> None:
    """Write a units table as ``parent["units"]``."""
    group = parent.create_group("units")
    _write_strings(group, "ids", units.ids)
    _write_columns(group, units.columns)


def write_signal(parent: h5py.Group, name: str, signal: Signal) -> None:
    """Write ``signal`` (eager or lazy) as ``parent[name]``."""
    if isinstance(signal, LazySignal):
        # Lazy views copy at the HDF5 level: no data passes through Python memory.
        parent.file.copy(signal.group, parent, name=name)
        return
    group = parent.create_group(name)
    group.attrs["kind"] = signal.kind
    if isinstance(signal, Spikes):
        group.create_dataset("timestamps", data=signal.timestamps)
        group.create_dataset("unit_index", data=signal.unit_index.astype(np.int32))
        group.create_dataset("time_index", data=_time_index(signal.timestamps))
        group["time_index"].attrs["step"] = INDEX_STEP
        write_units(group, signal.units)
    elif isinstance(signal, IrregularSeries):
        group.create_dataset("timestamps", data=signal.timestamps)
        group.create_dataset("values", data=signal.values)
        group.create_dataset("time_index", data=_time_index(signal.timestamps))
        group["time_index"].attrs["step"] = INDEX_STEP
        _write_strings(group, "channels", signal.channels)
        group.attrs["unit"] = signal.unit
    elif isinstance(signal, RegularSeries):
        group.create_dataset("data", data=signal.data)
        group.attrs.update(rate=signal.rate, start=signal.start, unit=signal.unit)
        _write_strings(group, "channels", signal.channels)
        if signal.channel_info:  # optional: files without it (format 1 as first written) stay valid
            _write_columns(group, signal.channel_info, "channel_info")
    elif isinstance(signal, Intervals):
        group.create_dataset("start", data=signal.start)
        group.create_dataset("end", data=signal.end)
        cummax = np.maximum.accumulate(signal.end) if len(signal) else signal.end
        group.create_dataset("end_cummax", data=cummax)
        if signal.labels is not None:
            _write_strings(group, "labels", signal.labels)
        _write_columns(group, signal.columns)
        group.attrs["time_columns"] = json.dumps(list(signal.time_columns))
    else:
        raise TypeError(f"cannot store {type(signal).__name__} as a signal")


# --------------------------------------------------------------------------------------------
# checksums
# --------------------------------------------------------------------------------------------


def _objects(f: h5py.File) -> Iterator[tuple[str, h5py.Group | h5py.Dataset]]:
    """("" for the root, then every group and dataset by path), in a stable order."""
    yield "", f
    names: list[str] = []
    f.visit(names.append)
    for name in sorted(names):
        yield name, f[name]


def _dataset_digest(ds: h5py.Dataset) -> str:
    """sha256 of a dataset's dtype, shape and values, read in blocks of rows.

    Variable-length strings are hashed as their stored bytes (never decoded: a damaged text is
    a changed checksum, not a UnicodeDecodeError), each with its length.
    """
    h = hashlib.sha256(f"{ds.dtype.str}{ds.shape}".encode())
    if ds.shape is None or ds.size == 0:
        return h.hexdigest()
    if ds.ndim == 0:
        rows: Iterator[Any] = iter([ds[()]])
    else:
        per_row = max(1, int(np.prod(ds.shape[1:])) * max(ds.dtype.itemsize, 16))
        step = max(1, _HASH_BLOCK_BYTES // per_row)
        rows = (ds[lo : lo + step] for lo in range(0, ds.shape[0], step))
    is_vlen = h5py.check_vlen_dtype(ds.dtype) is not None or ds.dtype == object
    for block in rows:
        if is_vlen:
            for value in np.asarray(block, dtype=object).ravel():
                raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
                h.update(len(raw).to_bytes(8, "little"))
                h.update(raw)
        else:
            h.update(np.ascontiguousarray(block).tobytes())
    return h.hexdigest()


def _attr_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return b"b" + value
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogateescape")
    arr = np.asarray(value)
    if arr.dtype == object:
        return b"o" + b"\x00".join(_attr_bytes(v) for v in arr.ravel())
    return f"{arr.dtype.str}{arr.shape}".encode() + arr.tobytes()


def _attrs_digest(obj: h5py.Group | h5py.Dataset) -> str:
    h = hashlib.sha256()
    for name in sorted(obj.attrs):
        if obj.name == "/" and name == CHECKSUM_ATTR:
            continue
        h.update(name.encode() + b"\x00" + _attr_bytes(obj.attrs[name]) + b"\x00")
    return h.hexdigest()


def _digests(f: h5py.File) -> dict[str, dict[str, str]]:
    datasets, attrs = {}, {}
    for name, obj in _objects(f):
        attrs[name or "/"] = _attrs_digest(obj)
        if isinstance(obj, h5py.Dataset):
            datasets[name] = _dataset_digest(obj)
    return {"datasets": datasets, "attributes": attrs}


def write_checksums(f: h5py.File) -> None:
    """Store the sha256 of every dataset and of every object's attributes in ``f.attrs``.

    Called once the file is complete (``Recording.save`` does it before the rename), so what
    is hashed is what readers will read.
    """
    manifest = {"algorithm": "sha256", **_digests(f)}
    f.attrs[CHECKSUM_ATTR] = json.dumps(manifest, separators=(",", ":"))


def check_checksums(f: h5py.File) -> list[str] | None:
    """Re-read ``f`` and name every dataset or attribute set whose content changed.

    Returns
    -------
    list of str or None
        One line per problem (``"signals/spikes/timestamps: content changed since it was
        written"``), [] when all is as written, None when the file holds no checksums (written
        before neurofm stored them).
    """
    if CHECKSUM_ATTR not in f.attrs:
        return None
    try:
        manifest = json.loads(f.attrs[CHECKSUM_ATTR])
        want_data, want_attrs = manifest["datasets"], manifest["attributes"]
        if manifest.get("algorithm") != "sha256" or not isinstance(want_data, dict):
            raise ValueError("unknown layout")
    except Exception as exc:  # a damaged manifest is damage too
        return [f"{CHECKSUM_ATTR}: the checksum manifest is unreadable ({type(exc).__name__})"]
    problems: list[str] = []
    seen: set[str] = set()
    try:
        objects = list(_objects(f))
    except Exception as exc:  # a damaged object header or B-tree
        return [f"file structure: unreadable ({_reason(exc)})"]
    for name, obj in objects:
        key = name or "/"
        where = name or "file attributes (metadata, provenance)"
        try:
            if key not in want_attrs and name not in want_data:  # an object added: said once
                problems.append(f"{name}: not written by neurofm (added afterwards)")
                continue
            if want_attrs.get(key) != _attrs_digest(obj):
                what = where if not name else f"{name} (attributes)"
                problems.append(f"{what}: changed since it was written")
            if isinstance(obj, h5py.Dataset):
                seen.add(name)
                if name not in want_data:
                    problems.append(f"{name}: not written by neurofm (added afterwards)")
                elif want_data[name] != _dataset_digest(obj):
                    problems.append(f"{name}: content changed since it was written")
        except Exception as exc:  # h5py raises OSError/ValueError... on damaged storage
            problems.append(f"{name or 'file attributes'}: unreadable ({_reason(exc)})")
            seen.add(name)
    problems += [f"{name}: missing (it was written)" for name in sorted(set(want_data) - seen)]
    return problems


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


# --------------------------------------------------------------------------------------------
# probing untrusted HDF5 files
# --------------------------------------------------------------------------------------------

#: Seconds the HDF5 library may take to walk one file's structure in the probe.
PROBE_TIMEOUT = 60.0

# Walks what a reader will touch first: every object header, every attribute, and the first
# and last element of every dataset (the chunk index of chunked ones). One line per file.
_PROBE = r"""
import sys, h5py
def element(ds, at):
    ds[tuple(at)]
for i, path in enumerate(sys.argv[1:]):
    print("BEGIN", i, flush=True)
    try:
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                for key in list(obj.attrs.keys()):
                    obj.attrs.get(key)
                if isinstance(obj, h5py.Dataset) and obj.shape and obj.size:
                    element(obj, [0] * obj.ndim)
                    element(obj, [n - 1 for n in obj.shape])
            visit("", f)
            f.visititems(visit)
    except Exception:
        pass  # a Python-level error: the reader reports it, in-process, with its own words
    print("END", i, flush=True)
"""


def probe_hdf5(
    paths: Sequence[str | os.PathLike[str]], timeout: float | None = None
) -> dict[str, str]:
    """Walk HDF5 files' structure in a child process first: damage that crashes or hangs the
    HDF5 library becomes a problem to report, not the end of the calling process.

    The HDF5 C library trusts a file's internal pointers: a damaged object header or
    attribute can make it segfault or loop forever (found by fuzzing NWB files), which no
    ``try``/``except`` can catch. Readers of untrusted files and ``neurofm verify``/``info``
    call this before opening files in-process. One child walks all ``paths`` (metadata and
    two elements per dataset, never whole datasets) and is restarted after a crash or a hang.

    Parameters
    ----------
    paths : sequence of path-like
        Local HDF5 files.
    timeout : float, optional
        Seconds allowed per file (default :data:`PROBE_TIMEOUT`).

    Returns
    -------
    dict of str to str
        For each file the library crashed or hung on, the problem (keys as ``str(path)``);
        files it walked (or that raised an ordinary error, reported later by the reader) are
        absent.
    """
    timeout = PROBE_TIMEOUT if timeout is None else timeout
    todo = [str(p) for p in paths]
    problems: dict[str, str] = {}
    while todo:
        done, problem = _probe_some(todo, timeout)
        if problem is not None:
            problems[todo[done]] = problem
            done += 1
        todo = todo[done:]
    return problems


def _probe_some(paths: list[str], timeout: float) -> tuple[int, str | None]:
    """Walk ``paths`` in one child; (files finished, problem of the next one or None)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _PROBE, *paths],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    finished = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
            finished.set()
        finished.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    done = 0
    try:
        while done < len(paths):
            # Wait for this file's END, a crash (EOF) or the time bound.
            while True:
                finished.clear()  # before looking: a line that comes after is not missed
                if f"END {done}" in lines or not reader.is_alive():
                    break
                started = f"BEGIN {done}" in lines  # before it: the child's start-up
                if not finished.wait(timeout if started else timeout + 60.0):
                    proc.kill()
                    return done, (
                        f"the HDF5 library did not finish reading the file's structure within "
                        f"{timeout:g} s (a damaged file can make it loop forever)"
                    )
            if f"END {done}" not in lines:
                code = proc.wait()
                what = signal.Signals(-code).name if code < 0 else f"exit code {code}"
                return done, f"damaged HDF5 file: the HDF5 library crashed reading it ({what})"
            done += 1
        return done, None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(5)


# --------------------------------------------------------------------------------------------
# lazy reading
# --------------------------------------------------------------------------------------------


class LazySignal(Signal):
    """A signal still on disk: ``window`` reads only that window, ``load`` reads it all."""

    def __init__(self, group: h5py.Group, name: str) -> None:
        self.group, self.name = group, name

    def __repr__(self) -> str:
        # Only what the lazy view holds: lengths, names, two elements for the time range.
        text = describe(self)
        where = os.path.basename(self.group.file.filename) if self.group.file else "closed"
        return f"{text[:-1]}; on disk in {where}>"

    def _repr_html_(self) -> str:
        return describe_html(self)

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError


def direct(ds: h5py.Dataset) -> Any:
    """A read-only view of a dataset that slices with the least overhead.

    Our arrays are contiguous and unfiltered, so their bytes sit at one offset in the file and a
    ``numpy.memmap`` over them slices in ~3 us instead of h5py's ~9 us per call; only the pages
    a window touches are read. Anything else (chunked, compressed, empty) stays an h5py dataset.
    Slices of the memmap are views: callers copy what they keep (``np.array``).
    """
    offset = ds.id.get_offset() if ds.size else None
    if offset is None or ds.chunks is not None or ds.compression is not None:
        return ds
    return np.memmap(ds.file.filename, dtype=ds.dtype, mode="r", offset=offset, shape=ds.shape)


class _EventIndex:
    """Finds the rows of an event group whose timestamps lie in a window.

    Dataset handles and the index step are looked up once (an h5py group lookup or attribute
    read costs ~35 us, several times the read of a window's bytes), and the coarse time index
    is read into memory on first use: 8 bytes per second of recording, 288 KB for 10 hours.
    """

    def __init__(self, group: h5py.Group) -> None:
        self._index_ds = group["time_index"]
        self._index: np.ndarray | None = None
        self.timestamps = direct(group["timestamps"])
        self.step = float(self._index_ds.attrs["step"])
        self.k = self._index_ds.shape[0]
        self.n = self.timestamps.shape[0]

    @property
    def index(self) -> np.ndarray:
        if self._index is None:
            self._index = self._index_ds[()]
        return self._index

    def span(self, start: float, end: float) -> tuple[int, int, np.ndarray]:
        """Rows ``[lo, hi)`` with timestamps in ``[start, end)``, and those timestamps.

        Two lookups in the coarse time index bracket the window; only the timestamps between
        them are read, and a binary search on that small span refines the bounds.
        """
        k_lo = min(max(int(np.floor(start / self.step)), 0), self.k - 1)
        k_hi = int(np.ceil(end / self.step))
        # index[k] is the first event at or after k * step, so these bracket the window.
        bound_lo = int(self.index[k_lo]) if start > 0 else 0
        if k_hi >= self.k:
            bound_hi = self.n
        else:
            bound_hi = int(self.index[k_hi]) if k_hi >= 0 else 0
        if bound_hi <= bound_lo:
            return bound_lo, bound_lo, np.empty(0)
        span = np.asarray(self.timestamps[bound_lo:bound_hi])
        i0, i1 = np.searchsorted(span, [start, end], side="left")
        return bound_lo + int(i0), bound_lo + int(i1), span[i0:i1]

    @property
    def last_time(self) -> float:
        return float(self.timestamps[self.n - 1]) if self.n else 0.0

    def first_last(self) -> tuple[float, float] | None:
        """First and last timestamps (two elements read), None when empty."""
        return (float(self.timestamps[0]), self.last_time) if self.n else None


class LazySpikes(LazySignal):
    """Spikes stored in HDF5; see :class:`~neurofm.data.signals.Spikes`."""

    kind = "spikes"

    def __init__(self, group: h5py.Group, name: str) -> None:
        super().__init__(group, name)
        units = group["units"]
        # Ids were checked for uniqueness when the file was written.
        self.units = Units(
            units["ids"].asstr()[()], _read_columns(units), name=f"{name}.units", validate=False
        )
        self._events = _EventIndex(group)
        self._unit_index = direct(group["unit_index"])

    def __len__(self) -> int:
        return self._events.n

    @property
    def last_time(self) -> float:
        return self._events.last_time

    def first_last(self) -> tuple[float, float] | None:
        return self._events.first_last()

    def window(self, start: float, end: float) -> Spikes:
        check_window(start, end, self.name)
        lo, hi, times = self._events.span(start, end)
        unit_index = np.array(self._unit_index[lo:hi]) if hi > lo else np.empty(0, np.int32)
        return Spikes(times - start, unit_index, self.units, self.name, validate=False)

    def load(self) -> Spikes:
        return Spikes(
            np.array(self._events.timestamps[:]),
            np.array(self._unit_index[:]),
            self.units,
            self.name,
            validate=False,
        )

    def counts(self, chunk: int = 1 << 22) -> np.ndarray:
        """Spikes per unit, computed chunk by chunk so memory stays flat."""
        out = np.zeros(len(self.units), dtype=np.int64)
        for lo in range(0, len(self), chunk):
            out += np.bincount(self._unit_index[lo : lo + chunk], minlength=len(self.units))
        return out


class LazyIrregularSeries(LazySignal):
    """An irregular series stored in HDF5; see :class:`~neurofm.data.signals.IrregularSeries`."""

    kind = "irregular"

    def __init__(self, group: h5py.Group, name: str) -> None:
        super().__init__(group, name)
        self.channels = np.asarray(group["channels"].asstr()[()], dtype=object)
        self.unit = str(group.attrs.get("unit", ""))
        self._events = _EventIndex(group)
        self._values = direct(group["values"])

    def __len__(self) -> int:
        return self._events.n

    @property
    def last_time(self) -> float:
        return self._events.last_time

    def first_last(self) -> tuple[float, float] | None:
        return self._events.first_last()

    def window(self, start: float, end: float) -> IrregularSeries:
        check_window(start, end, self.name)
        lo, hi, times = self._events.span(start, end)
        return IrregularSeries(
            times - start,
            np.array(self._values[lo:hi]),
            self.channels,
            self.name,
            self.unit,
            validate=False,
        )

    def load(self) -> IrregularSeries:
        return IrregularSeries(
            np.array(self._events.timestamps[:]),
            np.array(self._values[:]),
            self.channels,
            self.name,
            self.unit,
            validate=False,
        )


class LazyRegularSeries(LazySignal):
    """A regular series stored in HDF5; see :class:`~neurofm.data.signals.RegularSeries`."""

    kind = "regular"

    def __init__(self, group: h5py.Group, name: str) -> None:
        super().__init__(group, name)
        self.rate = float(group.attrs["rate"])
        self.start = float(group.attrs["start"])
        self.unit = str(group.attrs.get("unit", ""))
        self.channels = np.asarray(group["channels"].asstr()[()], dtype=object)
        # Read once at open (one value per channel); windows share it, so they cost nothing more.
        self.channel_info = _read_columns(group, "channel_info")
        self._data = direct(group["data"])
        self.shape = self._data.shape

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def end(self) -> float:
        return self.start + len(self) / self.rate

    def first_last(self) -> tuple[float, float] | None:
        return (self.start, self.end) if len(self) else None

    def window(self, start: float, end: float) -> RegularSeries:
        check_window(start, end, self.name)
        lo, hi = regular_index_range(self.start, self.rate, len(self), start, end)
        data = (
            np.array(self._data[lo:hi])
            if hi > lo
            else np.empty((0, *self.shape[1:]), self._data.dtype)
        )
        first = self.start + lo / self.rate if hi > lo else max(self.start, start)
        return RegularSeries(
            data,
            self.rate,
            first - start,
            self.channels,
            self.name,
            self.unit,
            channel_info=self.channel_info,
            validate=False,
        )

    def load(self) -> RegularSeries:
        return RegularSeries(
            np.array(self._data[:]),
            self.rate,
            self.start,
            self.channels,
            self.name,
            self.unit,
            channel_info=self.channel_info,
            validate=False,
        )


class LazyIntervals(LazySignal):
    """An interval table stored in HDF5, read whole on first use (tables are small)."""

    kind = "intervals"

    def __init__(self, group: h5py.Group, name: str) -> None:
        super().__init__(group, name)
        self._n = group["start"].shape[0]
        self._cache: tuple[Intervals, np.ndarray] | None = None

    def __len__(self) -> int:
        return self._n

    def column_names(self) -> list[str]:
        """The stored columns' names (``label`` first when labelled); nothing is read."""
        g = self.group
        stored = list(g["columns"]) if "columns" in g else []
        return (["label"] if "labels" in g else []) + stored

    def first_last(self) -> tuple[float, float] | None:
        """The first start and the latest end (one element of each dataset read)."""
        if self._cache is not None:
            intervals, cummax = self._cache
            return (float(intervals.start[0]), float(cummax[-1])) if self._n else None
        g = self.group
        return (float(g["start"][0]), float(g["end_cummax"][self._n - 1])) if self._n else None

    def _loaded(self) -> tuple[Intervals, np.ndarray]:
        if self._cache is None:
            g = self.group
            labels = np.asarray(g["labels"].asstr()[()], dtype=object) if "labels" in g else None
            intervals = Intervals(
                g["start"][()],
                g["end"][()],
                labels,
                _read_columns(g),
                json.loads(g.attrs.get("time_columns", "[]")),
                self.name,
                validate=False,
            )
            self._cache = (intervals, g["end_cummax"][()])
        return self._cache

    def window(self, start: float, end: float) -> Intervals:
        check_window(start, end, self.name)
        intervals, cummax = self._loaded()
        return intervals.take(intervals.overlapping(start, end, cummax), start)

    def load(self) -> Intervals:
        return self._loaded()[0]

    def to_dataframe(self) -> Any:
        """The table as a :class:`pandas.DataFrame` (start, end, label, columns), as
        :meth:`Intervals.to_dataframe <neurofm.data.signals.Intervals.to_dataframe>`."""
        return self.load().to_dataframe()


_LAZY = {
    "spikes": LazySpikes,
    "irregular": LazyIrregularSeries,
    "regular": LazyRegularSeries,
    "intervals": LazyIntervals,
}


def open_signal(group: h5py.Group, name: str) -> LazySignal:
    """Return the lazy view of a stored signal group."""
    kind = group.attrs.get("kind")
    if kind not in _LAZY:
        raise InvalidDataError(
            f"{group.file.filename}: signal {name!r} has unknown kind {kind!r} "
            f"(expected one of {sorted(_LAZY)})"
        )
    try:
        return _LAZY[kind](group, name)
    except KeyError as exc:
        raise InvalidDataError(
            f"{group.file.filename}: signal {name!r} is missing a field ({exc})"
        ) from None


def attrs_json(value: Any) -> str:
    """JSON for an HDF5 attribute (numpy scalars and paths become plain values)."""
    return json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o))
