"""Merge per-unit spike trains into one time-sorted stream with bounded memory.

NWB (and most sorters) store spikes unit by unit: a flat ``spike_times`` array and the end
offset of every unit. The data layer wants one stream sorted by time. Sorting 50 million
spikes at once needs ~1.5 GB of temporaries (the times, an int64 argsort, the permuted copies),
so this module cuts time into blocks of at most ``block_spikes`` spikes, gathers each block's
pieces unit by unit (every unit's train is sorted, so a block is a contiguous slice of it) and
sorts only that block. No library does this k-way merge from an on-disk ragged array, hence
the hand-written code.

Memory is one unit's train (during the scan) plus one block, whatever the file's size. Large
results are written straight into an HDF5 spikes group (see :func:`write_spikes_streaming`).

Readers call two functions and never touch HDF5 themselves: :func:`merge_spike_trains` (the
stream in memory) and :func:`stage_spike_trains` (the stream in a temporary file that the
returned lazy view owns and deletes).
"""

from __future__ import annotations

import math
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from neurofm.data.signals import Spikes, Units
from neurofm.data.storage import INDEX_STEP, LazySpikes, write_units
from neurofm.errors import InvalidDataError

__all__ = [
    "RaggedSpikeTrains",
    "StagedSpikes",
    "merge_spike_trains",
    "stage_spike_trains",
    "write_spikes_streaming",
]

#: Spikes per sorted block while merging (~50 MB of temporaries).
BLOCK_SPIKES = 2_000_000


@dataclass
class RaggedSpikeTrains:
    """Spike trains stored unit by unit, as in an NWB Units table.

    Parameters
    ----------
    times : array-like (numpy array or h5py.Dataset)
        All spike times, unit after unit; each unit's train sorted.
    ends : numpy.ndarray
        ``ends[u]`` is one past the last spike of unit ``u`` in ``times``.
    where : str
        Prefix for error messages (file and table), e.g. ``"x.nwb: units.spike_times"``.
    unit_names : sequence of str
        Unit identifiers, used in error messages.
    """

    times: Any
    ends: np.ndarray
    where: str
    unit_names: Any

    def __post_init__(self) -> None:
        self.ends = np.asarray(self.ends, dtype=np.int64)
        self.begins = np.concatenate([[0], self.ends[:-1]]).astype(np.int64)
        n = int(self.times.shape[0])
        if len(self.ends) and (
            (np.diff(self.ends) < 0).any() or self.ends[0] < 0 or self.ends[-1] > n
        ):
            raise InvalidDataError(
                f"{self.where}_index: offsets must be non-decreasing and <= {n} (the number of "
                "spike times)"
            )

    @property
    def n_units(self) -> int:
        return len(self.ends)

    @property
    def n_spikes(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def _unit(self, u: int, lo: int | None = None, hi: int | None = None) -> np.ndarray:
        b = int(self.begins[u])
        lo = b if lo is None else b + lo
        hi = int(self.ends[u]) if hi is None else b + hi
        return np.asarray(self.times[lo:hi], dtype=np.float64)

    def _check(self, u: int, train: np.ndarray) -> None:
        name = f"{self.where} of unit {self.unit_names[u]!r}"
        bad = ~np.isfinite(train)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidDataError(f"{name}: must be finite (found {train[i]} at spike {i})")
        if train.size and train.min() < 0:
            i = int(np.flatnonzero(train < 0)[0])
            raise InvalidDataError(
                f"{name}: must be >= 0 s from the session start (found {train[i]} at spike {i})"
            )
        drops = np.flatnonzero(np.diff(train) < 0)
        if drops.size:
            i = int(drops[0]) + 1
            raise InvalidDataError(
                f"{name}: must be sorted in time (spike {i}: {train[i]} < {train[i - 1]})"
            )

    def scan(self, block_spikes: int, progress: Callable[[int], None] | None = None) -> _Plan:
        """Validate every train and plan time blocks of at most ~``block_spikes`` spikes."""
        t_max = 0.0
        for u in range(self.n_units):
            if self.ends[u] > self.begins[u]:
                t_max = max(t_max, float(self.times[int(self.ends[u]) - 1]))
        # Fine bins first (8 per target block) so uneven firing still gives even blocks.
        n_fine = max(1, 8 * math.ceil(self.n_spikes / block_spikes))
        edges = np.linspace(0.0, np.nextafter(t_max, np.inf), n_fine + 1)
        positions = np.empty((self.n_units, n_fine + 1), dtype=np.int64)
        for u in range(self.n_units):
            train = self._unit(u)
            self._check(u, train)
            positions[u] = np.searchsorted(train, edges, side="left")
            positions[u, -1] = len(train)
            if progress is not None:
                progress(len(train))
        per_bin = np.diff(positions, axis=1).sum(axis=0)
        # Group consecutive fine bins greedily into blocks.
        cuts, acc = [0], 0
        for b, count in enumerate(per_bin):
            if acc and acc + count > block_spikes:
                cuts.append(b)
                acc = 0
            acc += int(count)
        cuts.append(n_fine)
        return _Plan(positions[:, cuts], t_max)

    def blocks(self, plan: _Plan) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(timestamps, unit_index)`` blocks in global time order."""
        pos = plan.positions
        for b in range(pos.shape[1] - 1):
            lo, hi = pos[:, b], pos[:, b + 1]
            counts = hi - lo
            units = np.flatnonzero(counts)
            if not units.size:
                continue
            times = np.concatenate([self._unit(int(u), int(lo[u]), int(hi[u])) for u in units])
            unit_index = np.repeat(units.astype(np.int32), counts[units])
            order = np.argsort(times, kind="stable")
            yield times[order], unit_index[order]


@dataclass
class _Plan:
    positions: np.ndarray  # (n_units, n_blocks + 1): block edges within each unit's train
    t_max: float


def write_spikes_streaming(
    group: h5py.Group,
    n_spikes: int,
    t_max: float,
    blocks: Iterator[tuple[np.ndarray, np.ndarray]],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Fill ``group`` with the spikes layout of :mod:`neurofm.data.storage`, block by block.

    The caller writes ``group["units"]``; this writes ``timestamps``, ``unit_index`` and the
    coarse ``time_index`` without ever holding more than one block.
    """
    group.attrs["kind"] = "spikes"
    ts = group.create_dataset("timestamps", shape=(n_spikes,), dtype=np.float64)
    ui = group.create_dataset("unit_index", shape=(n_spikes,), dtype=np.int32)
    k_total = int(np.floor(t_max / INDEX_STEP)) + 2
    index = np.full(k_total, n_spikes, dtype=np.int64)
    k, offset = 0, 0
    for times, units in blocks:
        n = len(times)
        ts[offset : offset + n] = times
        ui[offset : offset + n] = units
        # Grid points up to this block's last spike point into this block (or before it).
        k_stop = min(k_total, int(np.floor(times[-1] / INDEX_STEP)) + 1)
        if k_stop > k:
            grid = np.arange(k, k_stop) * INDEX_STEP
            index[k:k_stop] = offset + np.searchsorted(times, grid, side="left")
            k = k_stop
        offset += n
        if progress is not None:
            progress(n)
    if offset != n_spikes:
        raise InvalidDataError(f"spike merge wrote {offset} spikes, expected {n_spikes}")
    group.create_dataset("time_index", data=index)
    group["time_index"].attrs["step"] = INDEX_STEP


# --------------------------------------------------------------------------------------------
# what readers call: a merged stream in memory, or staged in a temporary file
# --------------------------------------------------------------------------------------------


def merge_spike_trains(
    times: Any,
    ends: np.ndarray,
    units: Units,
    where: str,
    *,
    block_spikes: int = BLOCK_SPIKES,
    name: str = "spikes",
) -> Spikes:
    """Merge per-unit spike trains into one time-sorted :class:`Spikes`, in memory.

    Parameters
    ----------
    times : array-like
        All spike times, unit after unit (each unit's train sorted).
    ends : ndarray
        ``ends[u]`` is one past the last spike of unit ``u`` in ``times``.
    units : Units
        The units table, one row per train.
    where : str
        Prefix for error messages (file and table).
    block_spikes : int
        Spikes per sorted block.
    name : str
        Name of the signal.

    Returns
    -------
    Spikes

    Raises
    ------
    InvalidDataError
        A train with NaN, negative or unsorted times, or offsets that do not fit ``times``.
    """
    trains = RaggedSpikeTrains(np.asarray(times), ends, where, list(units.ids))
    blocks = list(trains.blocks(trains.scan(block_spikes)))
    stamps = np.concatenate([b[0] for b in blocks]) if blocks else np.empty(0)
    unit_index = np.concatenate([b[1] for b in blocks]) if blocks else np.empty(0, np.int32)
    return Spikes(stamps, unit_index, units, name)


class StagedSpikes(LazySpikes):
    """A lazy view of spikes merged into a temporary HDF5 file, which it owns.

    :meth:`close` (or the view's garbage collection) closes and deletes the file and its
    folder; a recording holding the view registers :meth:`close` with
    :meth:`~neurofm.data.Recording.add_closer`.
    """

    def __init__(self, group: h5py.Group, name: str, folder: Path) -> None:
        super().__init__(group, name)
        self.folder = folder
        # The callback holds the file and the folder, never the view, so the view can be freed.
        self._finalizer = weakref.finalize(self, _remove_stage, group.file, folder)

    def close(self) -> None:
        """Close and delete the staging file (safe to call again)."""
        self._finalizer()


def _remove_stage(handle: h5py.File | None, folder: Path) -> None:
    try:
        if handle is not None:
            handle.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def stage_spike_trains(
    times: Any,
    ends: np.ndarray,
    units: Units,
    where: str,
    *,
    block_spikes: int = BLOCK_SPIKES,
    tmp_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    name: str = "spikes",
) -> StagedSpikes:
    """Merge per-unit spike trains into a temporary HDF5 file; return a lazy view that owns it.

    Memory stays at one block whatever the number of spikes. If anything fails, the staging
    folder is removed before the error propagates.

    Parameters
    ----------
    times : array-like (numpy array or h5py.Dataset)
        All spike times, unit after unit (each unit's train sorted); read block by block.
    ends : ndarray
        ``ends[u]`` is one past the last spike of unit ``u`` in ``times``.
    units : Units
        The units table, one row per train.
    where : str
        Prefix for error messages (file and table).
    block_spikes : int
        Spikes per sorted block.
    tmp_dir : str or Path, optional
        Folder of the staging folder (default the system temp folder); pass one on the
        destination's file system so that a later save copies locally.
    progress : callable, optional
        Called with the number of spikes written, once per block.
    name : str
        Name of the signal.

    Returns
    -------
    StagedSpikes
    """
    folder = Path(tempfile.mkdtemp(prefix=".neurofm-stage-", dir=tmp_dir))
    handle = None
    try:
        handle = h5py.File(folder / "spikes.h5", "w")
        source = times
        if isinstance(times, h5py.Dataset) and times.id.get_create_plist().get_nfilters() > 0:
            # The merge reads every unit's train once per time block; on a compressed dataset
            # each block would inflate every chunk again (measured: 5x slower ingest). One
            # sequential pass into an uncompressed contiguous copy avoids that. The copy is read
            # through h5py, not a memmap: mapped pages would count as resident memory.
            flat = handle.create_dataset("flat_spike_times", shape=times.shape, dtype=np.float64)
            chunk = times.chunks[0] if times.chunks else 1 << 22
            step = chunk * max(1, (1 << 22) // chunk)  # ~4M spikes per read, whole chunks
            for lo in range(0, times.shape[0], step):
                flat[lo : lo + step] = times[lo : lo + step]
            handle.flush()
            source = flat
        trains = RaggedSpikeTrains(source, ends, where, list(units.ids))
        plan = trains.scan(block_spikes)
        group = handle.create_group(name)
        write_units(group, units)
        write_spikes_streaming(group, trains.n_spikes, plan.t_max, trains.blocks(plan), progress)
        handle.flush()
        return StagedSpikes(group, name, folder)
    except BaseException:
        _remove_stage(handle, folder)
        raise
