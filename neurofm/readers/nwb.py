"""NWB files -> :class:`~neurofm.data.Recording`, through pynwb.

What is read:

* ``units``: spike times (merged into one time-sorted stream in blocks, so memory stays
  bounded on files with tens of millions of spikes), unit ids, per-unit columns (electrode
  location -> ``area``, electrode group, quality...) and ``obs_intervals``;
* every TimeSeries in the processing modules (e.g. ``processing/behavior``), also inside
  containers such as ``Position``: rate-based series become :class:`RegularSeries`,
  timestamped ones :class:`IrregularSeries`; NWB's ``conversion``/``offset`` are applied;
* ``trials``, ``epochs`` and other interval tables -> :class:`Intervals` with their columns
  (columns named ``*_time`` shift with windows);
* subject and session metadata, and provenance (path, sha256, NWB identifier).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import h5py
import numpy as np

import neurofm
from neurofm.data.merge import merge_spike_trains, stage_spike_trains
from neurofm.data.recording import Metadata, Provenance, Recording, provenance_from
from neurofm.data.signals import Intervals, IrregularSeries, RegularSeries, Signal, Units
from neurofm.data.storage import probe_hdf5
from neurofm.errors import InvalidDataError, NeuroFMError, ReaderError
from neurofm.sources.local import sha256_file

log = logging.getLogger(__name__)

__all__ = ["read_nwb"]

#: Above this many spikes the merged stream goes to a temporary HDF5 file instead of memory.
IN_MEMORY_SPIKES = 4_000_000
#: Spikes per sorted block while merging (~50 MB of temporaries).
BLOCK_SPIKES = 2_000_000


def read_nwb(
    path: str | Path,
    *,
    recording_id: str | None = None,
    require_units: bool = True,
    sha256: str | None = None,
    tmp_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    provenance: dict[str, Any] | None = None,
    unsorted_spikes: Literal["drop_units", "sort"] | None = None,
) -> Recording:
    """Read an NWB file into a Recording.

    Parameters
    ----------
    path : str or Path
        The ``.nwb`` file (HDF5 backend), or an ``http(s)://`` URL, which is streamed: only
        the bytes the reader touches are fetched (HTTP range requests through remfile).
    recording_id : str, optional
        Id of the recording; default the file name without ``.nwb``
        (``sub-S0_ses-1_ecephys``), unique within a DANDI-layout folder.
    require_units : bool
        Raise if the file has no Units table (spiking data is what neurofm ingests from NWB).
    sha256 : str, optional
        The file's sha256 when the caller already computed it.
    tmp_dir : str or Path, optional
        Where the spike stream of a large file is staged (default the system temp folder);
        pass a folder on the destination's file system.
    progress : callable, optional
        Called with a number of spikes processed, e.g. ``tqdm.update``.
    provenance : dict, optional
        Extra provenance fields (``dandiset_id``, ``asset_path``, ``source_url``...).
    unsorted_spikes : {"drop_units", "sort"}, optional
        What to do with units whose spike times go back in time (a dataset card's
        ``repairs.unsorted_spikes``): drop those units, or sort their spike times. By default
        such a file is refused. What was repaired (unit ids, spikes) is logged and stored in
        the provenance under ``repairs``.

    Returns
    -------
    Recording
        In memory, except for the spikes of very large files (more than
        ``IN_MEMORY_SPIKES``), which stay in a temporary HDF5 file that is deleted when the
        recording is closed or garbage-collected. ``Recording.save`` copies them efficiently.

    Raises
    ------
    ReaderError
        Not an HDF5/NWB file, truncated, or missing the Units table.
    InvalidDataError
        Bad values: NaN or negative spike times, unsorted spike times (without a repair
        policy), series whose data and timestamps disagree.
    """
    import pynwb  # heavy (~1 s): imported only when a file is read

    url = str(path) if str(path).startswith(("http://", "https://")) else None
    if url is None:
        path = Path(path)
        if path.is_dir():
            raise ReaderError(f"{path}: is a folder, expected an .nwb file")
        if not path.is_file():
            raise ReaderError(f"{path}: no such file")
        _check_hdf5(path)
    try:
        if url is None:
            io = pynwb.NWBHDF5IO(str(path), "r", load_namespaces=True)
        else:
            from neurofm.sources.dandi import open_remote

            io = pynwb.NWBHDF5IO(file=open_remote(url), mode="r", load_namespaces=True)
            path = Path(PurePosixPath(url.split("?")[0]).name)
    except NeuroFMError:
        raise
    except Exception as exc:  # pynwb/hdmf raise many types for broken files
        raise ReaderError(f"{url or path}: cannot open as NWB ({_reason(exc)})") from None
    try:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                nwb = io.read()
            # pynwb warns about bad files on stderr; our own errors say it on one line, so the
            # warnings go to the log instead.
            for w in caught:
                log.info("%s: pynwb: %s", path, w.message)
        except Exception as exc:
            raise ReaderError(f"{path}: cannot read as NWB ({_reason(exc)})") from None
        signals: dict[str, Signal] = {}
        cleanup: list[Callable[[], None]] = []
        repairs: dict[str, Any] = {}
        try:
            _read_units(
                nwb,
                path,
                signals,
                cleanup,
                require_units,
                tmp_dir,
                progress,
                unsorted_spikes,
                repairs,
            )
            _read_series(nwb, path, signals)
            _read_intervals(nwb, path, signals)
            metadata = _metadata(nwb, signals)
            duration, derived = _apply_export(nwb, signals, metadata)
            # Built inside the try: if it fails, the staging file must still be removed.
            rec = Recording(
                recording_id or default_recording_id(path),
                signals,
                duration=duration,
                metadata=metadata,
                provenance=_provenance(
                    nwb,
                    path,
                    url,
                    sha256,
                    {**(provenance or {}), **_repairs_entry(repairs), **derived},
                ),
            )
        except NeuroFMError:
            for fn in cleanup:
                fn()
            raise
        except Exception as exc:
            # h5py raises OSError/KeyError/RuntimeError on truncated or damaged datasets
            # mid-read; hdmf and numpy raise others on damaged tables and shapes (fuzzing).
            for fn in cleanup:
                fn()
            raise ReaderError(f"{path}: damaged or truncated NWB file ({_reason(exc)})") from None
        except BaseException:
            for fn in cleanup:
                fn()
            raise
    finally:
        io.close()
    for fn in cleanup:
        rec.add_closer(fn)
    return rec


def _repairs_entry(repairs: dict[str, Any]) -> dict[str, Any]:
    return {"repairs": repairs} if repairs else {}


def _provenance(
    nwb: Any, path: Path, url: str | None, sha256: str | None, extra: dict[str, Any] | None
) -> Provenance:
    fields = {
        "source_path": "" if url else str(path.resolve()),
        "source_url": url or "",
        # A streamed file is never read whole, so its hash must come from the source.
        "sha256": sha256 or ("" if url else sha256_file(path)),
        "reader": "neurofm.readers.nwb",
        "neurofm_version": neurofm.__version__,
        "nwb_identifier": str(nwb.identifier),
        **(extra or {}),
    }
    return provenance_from(fields)


def default_recording_id(path: Path | PurePosixPath) -> str:
    """``sub-S0_ses-1`` for DANDI/BIDS names such as ``sub-S0_ses-1_ecephys.nwb``, else the stem."""
    stem = path.name.removesuffix(".nwb")
    parts = stem.split("_")
    # A BIDS-style name ends in a suffix without '-' (ecephys, behavior...): drop it.
    if len(parts) > 1 and parts[0].startswith("sub-") and "-" not in parts[-1]:
        return "_".join(parts[:-1])
    return stem


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _check_hdf5(path: Path) -> None:
    if not h5py.is_hdf5(path):
        raise ReaderError(f"{path}: not an HDF5 file (NWB files must use the HDF5 backend)")
    # Damage that crashes or hangs the HDF5 library is found in a child process first.
    problem = probe_hdf5([path]).get(str(path))
    if problem is not None:
        raise ReaderError(f"{path}: {problem}")
    try:
        with h5py.File(path, "r") as f:
            f.attrs.get("nwb_version")
            list(f.keys())
    except Exception as exc:  # OSError, or KeyError/RuntimeError from a damaged object header
        raise ReaderError(f"{path}: truncated or corrupt HDF5 file ({_reason(exc)})") from None


# --------------------------------------------------------------------------------------------
# units
# --------------------------------------------------------------------------------------------


def _read_units(
    nwb: Any,
    path: Path,
    signals: dict[str, Signal],
    cleanup: list[Callable[[], None]],
    require_units: bool,
    tmp_dir: str | Path | None,
    progress: Callable[[int], None] | None,
    unsorted_spikes: str | None = None,
    repairs: dict[str, Any] | None = None,
) -> None:
    units = nwb.units
    if units is None or "spike_times" not in units.colnames:
        if require_units:
            raise ReaderError(f"{path}: no Units table with spike_times (is this spiking data?)")
        return
    ids = np.asarray(units.id.data[()])
    if len(ids) == 0:
        raise ReaderError(f"{path}: the Units table is empty")
    unit_ids = [str(i) for i in ids]
    unit_columns = _unit_columns(nwb, units, len(ids))
    if "neurofm_unit_id" in unit_columns:  # string ids of a file neurofm exported
        unit_ids = [str(i) for i in unit_columns.pop("neurofm_unit_id")]
    table = Units(unit_ids, unit_columns, name="units")
    ends = np.asarray(units["spike_times"].data[()])
    if len(ends) != len(ids):
        raise InvalidDataError(
            f"{path}: units.spike_times_index has {len(ends)} rows but units.id has {len(ids)}"
        )
    source = units["spike_times"].target.data
    n_spikes = int(ends[-1]) if len(ends) else 0
    where = f"{path}: units.spike_times"
    in_memory = n_spikes <= IN_MEMORY_SPIKES
    # One read: a compressed dataset is inflated once, not once per merge block.
    times = source[()] if in_memory else source
    kept: np.ndarray | None = None  # rows of the file's Units table kept (None: all)
    # In memory the check is one vectorised pass; on disk only a repair policy pays for it
    # (without one, the merge refuses the first unsorted train it meets).
    if in_memory or unsorted_spikes is not None:
        bad = _unsorted_units(times, ends)
        if bad.size and unsorted_spikes is None:
            raise InvalidDataError(_unsorted_message(where, times, ends, bad, table))
        entry: dict[str, Any] = {
            "policy": unsorted_spikes,
            "n_units": 0,
            "units": [],
            "n_spikes": 0,
        }
        if bad.size:
            n_units = len(table)
            times, ends, table, kept, entry = _repair_unsorted(
                times, ends, table, bad, str(unsorted_spikes), in_memory, tmp_dir, cleanup
            )
            done = (
                f"dropped with their {entry['n_spikes']} spikes"
                if unsorted_spikes == "drop_units"
                else f"their {entry['n_spikes']} spikes sorted"
            )
            shown = ", ".join(entry["units"][:10]) + (" ..." if len(bad) > 10 else "")
            log.warning(
                "%s: repairs.unsorted_spikes %s: %d of %d units had spike times going back "
                "in time (%s): %s",
                path,
                unsorted_spikes,
                len(bad),
                n_units,
                shown,
                done,
            )
        if unsorted_spikes is not None and repairs is not None:
            repairs["unsorted_spikes"] = entry
    try:
        if in_memory:
            signals["spikes"] = merge_spike_trains(
                times, ends, table, where, block_spikes=BLOCK_SPIKES
            )
            if progress is not None:
                progress(n_spikes)
        else:
            staged = stage_spike_trains(
                times,
                ends,
                table,
                where,
                block_spikes=BLOCK_SPIKES,
                tmp_dir=tmp_dir,
                progress=progress,
            )
            cleanup.append(staged.close)  # removed if a later part of the file fails to read
            signals["spikes"] = staged
    except InvalidDataError as exc:
        if "must be sorted in time" not in str(exc):
            raise
        raise InvalidDataError(f"{exc}; {_UNSORTED_HINT}") from None
    finally:
        if not in_memory and isinstance(times, h5py.Dataset) and times is not source:
            _remove_repaired_copy(times)  # the staged merge has its own copy now
    obs = _obs_intervals(units, path, table, kept)
    if obs is not None:
        signals["obs_intervals"] = obs


_UNSORTED_HINT = (
    "a dataset card can drop such units or sort their spike times "
    "(repairs: {unsorted_spikes: drop_units} or {unsorted_spikes: sort})"
)


def _unsorted_units(times: Any, ends: np.ndarray) -> np.ndarray:
    """Rows of the Units table whose spike train goes back in time somewhere."""
    ends = np.asarray(ends, dtype=np.int64)
    begins = np.concatenate([[0], ends[:-1]])
    if isinstance(times, np.ndarray):
        # One pass over the flat array: a drop inside a unit's train, not at a unit boundary.
        drops = np.flatnonzero(np.diff(times) < 0) + 1  # index of the later spike
        drops = drops[~np.isin(drops, begins)]
        return np.unique(np.searchsorted(ends, drops, side="right"))
    # On disk (a large file): unit by unit, one train in memory at a time.
    return np.asarray(
        [
            u
            for u, (b, e) in enumerate(zip(begins, ends, strict=True))
            if e - b > 1 and (np.diff(np.asarray(times[int(b) : int(e)])) < 0).any()
        ],
        dtype=np.int64,
    )


def _unsorted_message(
    where: str, times: np.ndarray, ends: np.ndarray, bad: np.ndarray, table: Units
) -> str:
    u = int(bad[0])
    b = int(ends[u - 1]) if u else 0
    train = times[b : int(ends[u])]
    i = int(np.flatnonzero(np.diff(train) < 0)[0]) + 1
    names = ", ".join(repr(str(table.ids[k])) for k in bad[:10]) + (" ..." if len(bad) > 10 else "")
    return (
        f"{where} of unit {str(table.ids[u])!r}: must be sorted in time (spike {i}: "
        f"{train[i]} < {train[i - 1]}); {len(bad)} of {len(table)} units go back in time "
        f"({names}); {_UNSORTED_HINT}"
    )


def _repair_unsorted(
    times: Any,
    ends: np.ndarray,
    table: Units,
    bad: np.ndarray,
    policy: str,
    in_memory: bool,
    tmp_dir: str | Path | None,
    cleanup: list[Callable[[], None]],
) -> tuple[Any, np.ndarray, Units, np.ndarray, dict[str, Any]]:
    """Drop the ``bad`` units or sort their trains: (times, ends, units, kept rows, entry).

    In memory the flat array is edited; a large file's trains are copied unit by unit into a
    temporary HDF5 file beside the staging folder (removed once the merge has read it), so
    memory stays at one unit's train.
    """
    ends = np.asarray(ends, dtype=np.int64)
    begins = np.concatenate([[0], ends[:-1]])
    counts = ends - begins
    keep = np.ones(len(ends), dtype=bool)
    if policy == "drop_units":
        keep[bad] = False
    kept = np.flatnonzero(keep)
    new_ends = np.cumsum(counts[kept]).astype(np.int64)
    entry = {
        "policy": policy,
        "n_units": len(bad),
        "units": [str(table.ids[u]) for u in bad],
        "n_spikes": int(counts[bad].sum()),
    }
    to_sort = set(bad.tolist()) if policy == "sort" else set()
    if in_memory:
        times = np.asarray(times, dtype=np.float64)
        if policy == "sort":
            times = times.copy()
            for u in to_sort:
                times[begins[u] : ends[u]] = np.sort(times[begins[u] : ends[u]])
        else:
            times = times[np.repeat(keep, counts)]
    else:
        folder = Path(tempfile.mkdtemp(prefix=".neurofm-repair-", dir=tmp_dir))
        handle = h5py.File(folder / "spike_times.h5", "w")
        out = handle.create_dataset(
            "spike_times", shape=(int(new_ends[-1]) if len(new_ends) else 0,), dtype=np.float64
        )
        # Registered before anything is written: a failure below still removes the copy.
        cleanup.append(lambda: _remove_repaired_copy(out))
        at = 0
        for u in kept:
            train = np.asarray(times[int(begins[u]) : int(ends[u])], dtype=np.float64)
            out[at : at + len(train)] = np.sort(train) if u in to_sort else train
            at += len(train)
        handle.flush()
        times = out
    if not len(kept):
        raise InvalidDataError(
            f"repairs.unsorted_spikes drop_units: every unit ({len(ends)}) goes back in time; "
            "nothing is left to read (try unsorted_spikes: sort)"
        )
    units = Units(table.ids[kept], {k: v[kept] for k, v in table.columns.items()}, table.name)
    return times, new_ends, units, kept, entry


def _remove_repaired_copy(times: Any) -> None:
    """Close and delete the temporary file of repaired spike trains (safe to call again)."""
    try:
        filename = Path(times.file.filename)
        times.file.close()
    except Exception:  # already closed (and removed)
        return
    shutil.rmtree(filename.parent, ignore_errors=True)


def _column_values(column: Any) -> np.ndarray | None:
    """A plain per-row column as numpy, or None for ragged / table-valued columns."""
    data = column.data
    values = data[()] if isinstance(data, h5py.Dataset) else np.asarray(data)
    values = np.asarray(values)
    if values.ndim != 1:
        return None
    if values.dtype.kind == "S" or values.dtype == object:
        out = []
        for v in values:
            if isinstance(v, bytes):
                v = v.decode()
            elif not isinstance(v, str | int | float | np.generic):
                # Object references (e.g. an ElectrodeGroup): keep their name, or drop the column.
                if not hasattr(v, "name"):
                    return None
                v = v.name
            out.append(str(v))
        values = np.asarray(out, dtype=object)
    return values


def _unit_columns(nwb: Any, units: Any, n: int) -> dict[str, np.ndarray]:
    from hdmf.common import DynamicTableRegion, VectorIndex

    columns: dict[str, np.ndarray] = {}
    skip = {"spike_times", "obs_intervals", "electrodes", "waveform_mean", "waveform_sd"}
    for name in units.colnames:
        if name in skip:
            continue
        col = units[name]
        if isinstance(col, VectorIndex | DynamicTableRegion):
            continue
        values = _column_values(col)
        if values is not None and len(values) == n:
            columns[name] = values
    if "electrodes" in units.colnames and nwb.electrodes is not None:
        region = units["electrodes"]
        # A ragged electrodes column: take each unit's first electrode.
        if isinstance(region, VectorIndex):
            ends = np.asarray(region.data[()])
            rows = np.asarray(region.target.data[()])[np.concatenate([[0], ends[:-1]])]
        else:
            rows = np.asarray(region.data[()])
        electrodes = nwb.electrodes
        columns["electrode"] = rows.astype(np.int64)
        for src, dst in (("location", "area"), ("group_name", "electrode_group")):
            if src in electrodes.colnames:
                values = _column_values(electrodes[src])
                if values is not None:
                    columns[dst] = values[rows]
    return columns


def _obs_intervals(
    units: Any, path: Path, table: Units, kept: np.ndarray | None = None
) -> Intervals | None:
    if "obs_intervals" not in units.colnames:
        return None
    index = units["obs_intervals"]
    ends = np.asarray(index.data[()])
    bounds = np.asarray(index.target.data[()], dtype=np.float64).reshape(-1, 2)
    owner = np.repeat(np.arange(len(ends)), np.diff(np.concatenate([[0], ends])))
    if kept is not None:  # units dropped by a repair: their intervals go, the rest renumber
        row = np.full(len(ends), -1)
        row[kept] = np.arange(len(kept))
        keep = row[owner] >= 0
        bounds, owner = bounds[keep], row[owner][keep]
    order = np.argsort(bounds[:, 0], kind="stable")
    try:
        return Intervals(
            bounds[order, 0],
            bounds[order, 1],
            columns={"unit_index": owner[order]},
            name="obs_intervals",
        )
    except InvalidDataError as exc:
        raise InvalidDataError(f"{path}: units.{exc}") from None


# --------------------------------------------------------------------------------------------
# time series
# --------------------------------------------------------------------------------------------


def _iter_series(nwb: Any) -> list[tuple[str, Any]]:
    """(module name, TimeSeries) for every series in the processing modules."""
    from pynwb import TimeSeries

    found = []
    for module_name, module in nwb.processing.items():
        for obj in module.data_interfaces.values():
            if isinstance(obj, TimeSeries):
                found.append((module_name, obj))
                continue
            # Containers such as Position or BehavioralTimeSeries hold series in a dict.
            for attr in ("spatial_series", "time_series"):
                inner = getattr(obj, attr, None)
                if isinstance(inner, dict):
                    found.extend((module_name, ts) for ts in inner.values())
    return found


def _read_series(nwb: Any, path: Path, signals: dict[str, Signal]) -> None:
    for module_name, ts in _iter_series(nwb):
        name = ts.name if ts.name not in signals else f"{module_name}_{ts.name}"
        where = f"{path}: processing/{module_name}/{ts.name}"
        data = np.asarray(ts.data[()])
        if data.dtype.kind not in "biuf":
            log.info("%s: skipped (non-numeric data of dtype %s)", where, data.dtype)
            continue
        if data.ndim > 2:
            data = data.reshape(len(data), -1)
        conversion = float(getattr(ts, "conversion", 1.0) or 1.0)
        offset = float(getattr(ts, "offset", 0.0) or 0.0)
        if conversion != 1.0 or offset != 0.0:
            data = data * conversion + offset
        channels = _series_channels(ts, data)
        try:
            if ts.rate is not None:
                signals[name] = RegularSeries(
                    data, ts.rate, ts.starting_time or 0.0, channels, name, ts.unit or ""
                )
            else:
                timestamps = np.asarray(ts.timestamps[()], dtype=np.float64)
                if len(timestamps) != len(data):
                    raise InvalidDataError(
                        f"data has {len(data)} samples but timestamps has {len(timestamps)}"
                    )
                signals[name] = IrregularSeries(timestamps, data, channels, name, ts.unit or "")
        except InvalidDataError as exc:
            raise InvalidDataError(f"{where}: {exc}") from None


#: A TimeSeries named like ``hand_vel``, ``cursor_pos`` or ``finger_acceleration``.
_KINEMATIC_NAME = r"(^|_)(pos|position|vel|velocity|acc|accel|acceleration)(_|$)"


def _series_channels(ts: Any, data: np.ndarray) -> list[str]:
    """Column names: x, y(, z) for coordinates (a SpatialSeries, or a 2-3 column TimeSeries
    named as a position, velocity or acceleration, as NWB has no column names for those),
    else 0, 1, ..."""
    import re

    n = 1 if data.ndim == 1 else data.shape[1]
    kinematic = 2 <= n <= 3 and re.search(_KINEMATIC_NAME, str(ts.name), re.IGNORECASE)
    if (ts.neurodata_type == "SpatialSeries" and n <= 3) or kinematic:
        return ["x", "y", "z"][:n]
    return [str(i) for i in range(n)]


# --------------------------------------------------------------------------------------------
# intervals and metadata
# --------------------------------------------------------------------------------------------


def _read_intervals(nwb: Any, path: Path, signals: dict[str, Signal]) -> None:
    from hdmf.common import VectorIndex

    for name, table in (nwb.intervals or {}).items():
        start = np.asarray(table["start_time"].data[()], dtype=np.float64)
        stop = np.asarray(table["stop_time"].data[()], dtype=np.float64)
        columns: dict[str, np.ndarray] = {}
        labels = None
        for col_name in table.colnames:
            if col_name in ("start_time", "stop_time"):
                continue
            col = table[col_name]
            if isinstance(col, VectorIndex):
                if col_name == "tags":  # epochs' tags -> one comma-separated label
                    ends = np.asarray(col.data[()])
                    words = _column_values(col.target)
                    if words is not None:
                        begins = np.concatenate([[0], ends[:-1]])
                        pairs = zip(begins, ends, strict=True)
                        labels = [",".join(map(str, words[b:e])) for b, e in pairs]
                continue
            values = _column_values(col)
            if values is not None and len(values) == len(start):
                columns[col_name] = values
        order = np.argsort(start, kind="stable")
        time_columns = [
            c for c, v in columns.items() if c.endswith("_time") and v.dtype.kind in "fiu"
        ]
        try:
            signals[name] = Intervals(
                start[order],
                stop[order],
                None if labels is None else np.asarray(labels, dtype=object)[order],
                {k: v[order] for k, v in columns.items()},
                time_columns,
                name,
            )
        except InvalidDataError as exc:
            raise InvalidDataError(f"{path}: intervals/{exc}") from None


def _metadata(nwb: Any, signals: dict[str, Signal]) -> Metadata:
    subject = nwb.subject
    modality = "ecephys" if "spikes" in signals else "behavior"
    return Metadata(
        subject_id=str(getattr(subject, "subject_id", "") or ""),
        session_id=str(nwb.session_id or ""),
        species=str(getattr(subject, "species", "") or ""),
        sex=str(getattr(subject, "sex", "") or ""),
        age=str(getattr(subject, "age", "") or ""),
        task=str(nwb.protocol or ""),
        modality=modality,
        session_start_time=nwb.session_start_time.isoformat() if nwb.session_start_time else "",
        institution=str(nwb.institution or ""),
        lab=str(nwb.lab or ""),
        description=str(nwb.session_description or ""),
    )


#: Precedes the JSON block neurofm.writers.nwb.write_nwb leaves in ``notes`` (kept equal there).
EXPORT_MARKER = "neurofm-export: "


def _apply_export(
    nwb: Any, signals: dict[str, Signal], metadata: Metadata
) -> tuple[float | None, dict[str, Any]]:
    """Restore what a file neurofm exported keeps in its ``notes`` (NWB has no field for it):
    channel names, units of measurement and time columns of the signals, the modality and extra
    metadata, the duration. Returns (duration or None, provenance entries); a file neurofm did
    not write is left alone."""
    import json

    notes = str(nwb.notes or "")
    at = notes.find(EXPORT_MARKER)
    if at < 0:
        return None, {}
    try:
        export = json.loads(notes[at + len(EXPORT_MARKER) :])
        entries = dict(export["signals"])
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        log.warning("notes: a neurofm export block that cannot be read (%s): ignored", exc)
        return None, {}
    for name, entry in entries.items():
        signal = signals.get(name)
        if not isinstance(entry, dict):
            continue
        if isinstance(signal, RegularSeries | IrregularSeries):
            channels = entry.get("channels")
            if isinstance(channels, list) and len(channels) == len(signal.channels):
                signal.channels = np.asarray([str(c) for c in channels], dtype=object)
            signal.unit = str(entry.get("unit", signal.unit))
            info = entry.get("channel_info")
            if isinstance(signal, RegularSeries) and isinstance(info, dict) and info:
                signal.channel_info = {
                    str(k): np.asarray(v)
                    for k, v in info.items()
                    if isinstance(v, list) and len(v) == len(signal.channels)
                }
        elif isinstance(signal, Intervals):
            listed = entry.get("time_columns")
            wanted = [str(c) for c in listed] if isinstance(listed, list) else []
            signal.time_columns = tuple(c for c in wanted if c in signal.columns)
    meta = export.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    if "modality" in meta:
        metadata.modality = str(meta["modality"])
    if isinstance(meta.get("extra"), dict):
        metadata.extra.update(meta["extra"])
    placeholders = meta.get("placeholders")
    for key in placeholders if isinstance(placeholders, list) else []:
        if key in ("session_start_time", "description", "sex"):
            setattr(metadata, key, "")
    duration = export.get("duration")
    ok = isinstance(duration, int | float) and np.isfinite(duration) and duration >= 0
    derived = export.get("provenance")
    return (float(duration) if ok else None), {
        "derived_from": derived if isinstance(derived, dict) else {}
    }
