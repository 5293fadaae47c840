"""Recording -> NWB, and model predictions back into a copy of the lab's own NWB file.

:func:`write_nwb` writes what :func:`neurofm.readers.nwb.read_nwb` reads, so
``read_nwb(write_nwb(rec, "x.nwb"))`` gives ``rec`` back:

* spikes -> the ``units`` table: spike times, unit ids (string ids that are not integers go in
  a ``neurofm_unit_id`` column), every 1-D units column; ``electrode``/``area``/
  ``electrode_group`` columns become NWB's electrodes table and electrode groups, as read;
  an ``obs_intervals`` signal becomes the units' observation intervals;
* sampled series -> ``TimeSeries`` in ``processing/behavior`` (rate-based or timestamped);
* intervals -> ``trials``, ``epochs`` or other time-interval tables (labels -> ``tags``);
* metadata -> NWB's session and subject fields; provenance, channel names, units of
  measurement and what else NWB has no field for -> a JSON block in the file's ``notes``,
  which the reader uses to restore them (the re-read's provenance points at the new file,
  the original's is under ``provenance.extra["derived_from"]``).

:func:`add_predictions` copies a source NWB file and adds a processing module of predicted
series, so results go back to the lab in its own format.

Both write to a temporary file beside the destination and rename it when complete.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import neurofm
from neurofm.atomic import atomic_path
from neurofm.data.recording import Recording
from neurofm.data.signals import Intervals, IrregularSeries, RegularSeries, Spikes
from neurofm.errors import InvalidDataError, ReaderError

log = logging.getLogger(__name__)

__all__ = ["EXPORT_MARKER", "add_predictions", "write_nwb"]

#: Precedes the JSON block that :func:`write_nwb` leaves in the NWB file's ``notes``.
EXPORT_MARKER = "neurofm-export: "
#: Version of that JSON block.
EXPORT_VERSION = 1
#: The processing module that holds the sampled series.
SERIES_MODULE = "behavior"

# Columns pynwb's Units and TimeIntervals tables define themselves.
_UNITS_RESERVED = {
    "spike_times",
    "obs_intervals",
    "electrodes",
    "electrode_group",
    "waveform_mean",
    "waveform_sd",
    "waveforms",
    "neurofm_unit_id",
}
_INTERVALS_RESERVED = {"start_time", "stop_time", "tags", "timeseries"}
_PLACEHOLDER_TIME = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def write_nwb(recording: Recording, path: str | os.PathLike[str]) -> Path:
    """Write a Recording as an NWB file (HDF5 backend), atomically.

    Parameters
    ----------
    recording : Recording
        In memory or lazy (each signal is loaded whole in turn: memory grows with the largest
        signal). At most one signal may be :class:`~neurofm.data.signals.Spikes` (NWB has one
        units table; it is read back as ``spikes``). A recording without spikes (EEG, fMRI
        parcels) is read back with ``read_nwb(path, require_units=False)``.
    path : path-like
        Destination ``.nwb`` file; its folder is created if needed, an existing file replaced.
        :func:`~neurofm.readers.nwb.read_nwb` names the re-read recording after the file
        (``sub-S0_ses-1.nwb`` -> ``sub-S0_ses-1``).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InvalidDataError
        The recording holds more than one spike signal, or nothing NWB can store.
    """
    from pynwb import NWBHDF5IO

    path = Path(path)
    spike_signals = [n for n in recording if recording[n].kind == "spikes"]
    if len(spike_signals) > 1:
        raise InvalidDataError(
            f"recording {recording.id!r}: NWB holds one units table, and this recording has "
            f"{len(spike_signals)} spike signals ({', '.join(spike_signals)}); export a "
            "recording with one (Recording.with_signals / a new Recording)"
        )
    nwb, export = _nwbfile(recording)
    if spike_signals:
        name = spike_signals[0]
        if name != "spikes":
            log.warning("recording %r: spike signal %r reads back as 'spikes'", recording.id, name)
        obs = recording["obs_intervals"].load() if "obs_intervals" in recording else None
        if obs is not None and not _is_obs_intervals(obs):
            obs = None
        _add_units(nwb, recording.id, recording[name].load(), obs)
    for name in recording:
        signal = recording[name]
        if signal.kind in ("regular", "irregular"):
            export["signals"][name] = _add_series(nwb, signal.load())
        elif signal.kind == "intervals":
            if name == "obs_intervals" and spike_signals and _is_obs_intervals(signal.load()):
                continue  # written with the units
            export["signals"][name] = _add_intervals(nwb, recording.id, name, signal.load())
    nwb.notes = (
        f"Exported by neurofm {neurofm.__version__} from recording {recording.id!r}. The block "
        "below holds what NWB has no field for (provenance, channel names), so neurofm reads "
        "the file back as it was.\n" + EXPORT_MARKER + _json(export)
    )
    with atomic_path(path) as tmp, _quiet_suffix(), NWBHDF5IO(str(tmp), mode="w") as io:
        io.write(nwb)
    log.info("wrote %s (recording %s)", path, recording.id)
    return path


@contextmanager
def _open_nwb(path: Path) -> Iterator[tuple[Any, Any]]:
    """(io, NWBFile) of a file to copy; a file pynwb cannot read is a ReaderError."""
    from pynwb import NWBHDF5IO

    try:
        io = NWBHDF5IO(str(path), mode="r", load_namespaces=True)
        nwb = io.read()
    except Exception as exc:  # pynwb/hdmf/h5py raise many types for files they cannot read
        text = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
        raise ReaderError(f"{path}: cannot read as NWB ({reason})") from None
    try:
        yield io, nwb
    finally:
        io.close()


@contextmanager
def _quiet_suffix() -> Iterator[None]:
    # The temporary name ends in .tmp, which pynwb warns about; the final name is the user's.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The file path provided", category=UserWarning)
        yield


def _json(value: Any) -> str:
    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, np.generic):
            return obj.item()
        return str(obj)

    return json.dumps(value, default=default)


def _nwbfile(recording: Recording) -> tuple[Any, dict[str, Any]]:
    from pynwb import NWBFile
    from pynwb.file import Subject

    meta = recording.metadata
    placeholders = []
    start = _PLACEHOLDER_TIME
    if meta.session_start_time:
        try:
            start = dt.datetime.fromisoformat(meta.session_start_time)
        except ValueError:
            log.warning(
                "recording %r: session_start_time %r is not ISO 8601; not exported",
                recording.id,
                meta.session_start_time,
            )
            placeholders.append("session_start_time")
        if start.tzinfo is None:
            start = start.replace(tzinfo=dt.timezone.utc)
    else:
        placeholders.append("session_start_time")
    if not meta.description:
        placeholders.append("description")
    nwb = NWBFile(
        session_description=meta.description or f"neurofm recording {recording.id}",
        identifier=str(uuid.uuid4()),
        session_start_time=start,
        session_id=meta.session_id or None,
        institution=meta.institution or None,
        lab=meta.lab or None,
        protocol=meta.task or None,
        source_script=f"neurofm {neurofm.__version__} (neurofm.writers.nwb.write_nwb)",
        source_script_file_name="neurofm/writers/nwb.py",
        was_generated_by=[["neurofm", neurofm.__version__]],
    )
    if meta.subject_id or meta.species or meta.sex or meta.age:
        if not meta.sex:
            placeholders.append("sex")  # NWB's "U" (unknown): DANDI requires a sex
        if not meta.age:
            log.warning(
                "recording %r: no subject age in the metadata; DANDI requires one "
                "(nwbinspector: check_subject_age)",
                recording.id,
            )
        nwb.subject = Subject(
            subject_id=meta.subject_id or None,
            species=meta.species or None,
            sex=meta.sex or "U",
            age=meta.age or None,
        )
    export = {
        "format": "neurofm.nwb-export",
        "version": EXPORT_VERSION,
        "neurofm_version": neurofm.__version__,
        "recording_id": recording.id,
        "duration": recording.duration,
        "metadata": {
            "modality": meta.modality,
            "extra": meta.extra,
            "placeholders": placeholders,
        },
        "provenance": dataclasses.asdict(recording.provenance),
        "signals": {},
    }
    return nwb, export


# --------------------------------------------------------------------------------------------
# units
# --------------------------------------------------------------------------------------------


def _is_obs_intervals(table: Intervals) -> bool:
    return table.labels is None and set(table.columns) == {"unit_index"}


def _column_data(values: np.ndarray) -> Any:
    """A 1-D column as hdmf takes it: strings as a list of str, numbers and bools as numpy."""
    values = np.asarray(values)
    if values.dtype.kind in "biuf":
        return values
    return [str(v) for v in values]


def _add_units(nwb: Any, rec_id: str, spikes: Spikes, obs: Intervals | None) -> None:
    from hdmf.common import DynamicTableRegion, ElementIdentifiers, VectorData, VectorIndex
    from pynwb.misc import Units

    table = spikes.units
    n = len(table)
    ids = [str(i) for i in table.ids]
    integer_ids = all(i.lstrip("-").isdigit() and str(int(i)) == i for i in ids)
    order = np.argsort(spikes.unit_index, kind="stable")  # time order kept within each unit
    counts = np.bincount(spikes.unit_index, minlength=n)
    spike_times = VectorData(
        name="spike_times",
        description="Spike times of each unit in seconds from the session start.",
        data=np.asarray(spikes.timestamps, dtype=np.float64)[order],
    )
    columns: list[Any] = [
        spike_times,
        VectorIndex(name="spike_times_index", data=np.cumsum(counts), target=spike_times),
    ]
    if not integer_ids:
        columns.append(
            VectorData(
                name="neurofm_unit_id",
                description="neurofm's string id of each unit (unique within the recording).",
                data=ids,
            )
        )
    if obs is not None:
        rows = np.argsort(obs.columns["unit_index"], kind="stable")
        owners = np.asarray(obs.columns["unit_index"])[rows]
        bounds = VectorData(
            name="obs_intervals",
            description="Observation intervals of each unit.",
            data=np.column_stack([obs.start[rows], obs.end[rows]]),
        )
        columns += [
            bounds,
            VectorIndex(
                name="obs_intervals_index",
                data=np.cumsum(np.bincount(owners, minlength=n)),
                target=bounds,
            ),
        ]
    cols = dict(table.columns)
    electrode_rows = _electrodes(nwb, cols, n)
    if electrode_rows is not None:
        region = DynamicTableRegion(
            name="electrodes",
            description="The electrode on which each unit was recorded.",
            data=electrode_rows,
            table=nwb.electrodes,
        )
        columns += [
            region,
            VectorIndex(name="electrodes_index", data=np.arange(1, n + 1), target=region),
        ]
        for key in ("electrode", "area"):
            cols.pop(key)
    if "electrode_group" in cols:
        groups = _electrode_groups(nwb, cols.pop("electrode_group"))
        columns.append(
            VectorData(
                name="electrode_group",
                description="The electrode group of each unit.",
                data=groups,
            )
        )
    for key, values in cols.items():
        values = np.asarray(values)
        if key in _UNITS_RESERVED or values.ndim != 1:
            log.warning("recording %r: units column %r is not exported to NWB", rec_id, key)
            continue
        columns.append(
            VectorData(name=key, description=f"units column {key!r}", data=_column_data(values))
        )
    nwb.units = Units(
        name="units",
        description="Sorted units exported by neurofm.",
        id=ElementIdentifiers(
            name="id", data=np.asarray([int(i) for i in ids]) if integer_ids else np.arange(n)
        ),
        columns=columns,
    )


def _electrodes(nwb: Any, cols: dict[str, np.ndarray], n: int) -> np.ndarray | None:
    """Build NWB's electrodes table from the units' ``electrode``, ``area`` and
    ``electrode_group`` columns when they agree (one area and group per electrode); the rows of
    the table each unit sits on, else None (the columns are then written as plain columns)."""
    if not {"electrode", "area", "electrode_group"} <= set(cols):
        return None
    electrode = np.asarray(cols["electrode"])
    if electrode.dtype.kind not in "iu" or (electrode < 0).any():
        return None
    seen: dict[int, tuple[str, str]] = {}
    for e, a, g in zip(electrode, cols["area"], cols["electrode_group"], strict=True):
        pair = (str(a), str(g))
        if seen.setdefault(int(e), pair) != pair:
            return None
    groups = {g: None for _, g in seen.values()}
    made = dict(zip(groups, _electrode_groups(nwb, list(groups)), strict=True))
    first = next(iter(seen.values()))
    for row in range(int(electrode.max()) + 1 if n else 0):
        # Electrodes without a unit still need a row (units point at rows by index).
        area, group = seen.get(row, ("unknown", first[1]))
        nwb.add_electrode(group=made[group], location=area)
    return electrode.astype(np.int64)


def _electrode_groups(nwb: Any, names: Any) -> list[Any]:
    """One ElectrodeGroup per distinct name (created on a shared device); one per value."""
    device = nwb.devices.get("neurofm_device") or nwb.create_device(
        name="neurofm_device", description="Recording device (not known to neurofm)."
    )
    out = []
    for name in map(str, names):
        if name not in nwb.electrode_groups:
            nwb.create_electrode_group(
                name=name, description=f"electrode group {name}", location="unknown", device=device
            )
        out.append(nwb.electrode_groups[name])
    return out


# --------------------------------------------------------------------------------------------
# series and intervals
# --------------------------------------------------------------------------------------------


def _series_module(nwb: Any, name: str, description: str) -> Any:
    if name in nwb.processing:
        return nwb.processing[name]
    return nwb.create_processing_module(name=name, description=description)


def _timeseries(name: str, series: RegularSeries | IrregularSeries, description: str) -> Any:
    from pynwb import TimeSeries

    values = np.asarray(series.data if isinstance(series, RegularSeries) else series.values)
    data = values[:, 0] if values.shape[1] == 1 else values
    unit = series.unit or "n/a"
    if isinstance(series, RegularSeries):
        return TimeSeries(
            name=name,
            description=description,
            data=data,
            unit=unit,
            rate=float(series.rate),
            starting_time=float(series.start),
        )
    return TimeSeries(
        name=name,
        description=description,
        data=data,
        unit=unit,
        timestamps=np.asarray(series.timestamps, dtype=np.float64),
    )


def _add_series(nwb: Any, series: RegularSeries | IrregularSeries) -> dict[str, Any]:
    module = _series_module(nwb, SERIES_MODULE, "Sampled series exported by neurofm.")
    channels = [str(c) for c in series.channels]
    module.add(_timeseries(series.name, series, f"channels: {', '.join(channels)}"))
    entry: dict[str, Any] = {"channels": channels, "unit": series.unit}
    if isinstance(series, RegularSeries) and series.channel_info:
        entry["channel_info"] = {k: np.asarray(v).tolist() for k, v in series.channel_info.items()}
    return entry


def _add_intervals(nwb: Any, rec_id: str, name: str, table: Intervals) -> dict[str, Any]:
    from hdmf.common import VectorData, VectorIndex
    from pynwb.epoch import TimeIntervals

    columns: list[Any] = [
        VectorData(name="start_time", description="Start time (s).", data=table.start),
        VectorData(name="stop_time", description="Stop time (s).", data=table.end),
    ]
    if table.labels is not None:
        tags = VectorData(
            name="tags", description="The interval's label.", data=[str(v) for v in table.labels]
        )
        columns += [
            tags,
            VectorIndex(name="tags_index", data=np.arange(1, len(table) + 1), target=tags),
        ]
    for key, values in table.columns.items():
        values = np.asarray(values)
        if key in _INTERVALS_RESERVED or values.ndim != 1:
            log.warning("recording %r: %s column %r is not exported to NWB", rec_id, name, key)
            continue
        columns.append(
            VectorData(name=key, description=f"{name} column {key!r}", data=_column_data(values))
        )
    intervals = TimeIntervals(
        name=name, description=f"{name} exported by neurofm.", columns=columns
    )
    if name == "trials":
        nwb.trials = intervals
    elif name == "epochs":
        nwb.epochs = intervals
    elif name == "invalid_times":
        nwb.invalid_times = intervals
    else:
        nwb.add_time_intervals(intervals)
    return {"time_columns": list(table.time_columns)}


# --------------------------------------------------------------------------------------------
# predictions into a copy of the source file
# --------------------------------------------------------------------------------------------


def add_predictions(
    source_nwb: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    predictions: Mapping[str, RegularSeries],
    name: str = "neurofm",
    description: str = "Predictions of a neurofm model.",
) -> Path:
    """Copy an NWB file and add a processing module holding predicted series.

    The source file is not changed; everything it holds is copied (pynwb's export), so the
    result opens in the lab's own tools with the predictions beside the recorded data.

    Parameters
    ----------
    source_nwb : path-like
        The NWB file the predictions were made from.
    out_path : path-like
        Where the copy goes (written to a temporary name and renamed when complete); it must
        not be ``source_nwb``.
    predictions : mapping of str to RegularSeries or IrregularSeries
        Predicted series by name (e.g. ``{"hand_vel": ...}``), times in seconds from the
        session start, as the model scored them. Each becomes a ``TimeSeries`` of that name
        (with a rate, or with timestamps when irregularly sampled).
    name : str
        Name of the processing module; it must not exist in the source file.
    description : str
        The module's description: which model, checkpoint and split made the predictions.

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    ReaderError
        The source is missing or not a readable NWB file.
    InvalidDataError
        No predictions, a prediction that is not a series, the module name already
        used, or ``out_path`` is the source.
    """
    from pynwb import NWBHDF5IO

    source, out = Path(source_nwb), Path(out_path)
    if not source.is_file():
        raise ReaderError(f"{source}: no such NWB file")
    if out.resolve() == source.resolve():
        raise InvalidDataError(
            f"{out}: the output (--out, or out_path) must differ from the source NWB file, "
            "which is never changed"
        )
    if not predictions:
        raise InvalidDataError(f"add_predictions({source}): predictions is empty")
    for key, series in predictions.items():
        if not isinstance(series, RegularSeries | IrregularSeries):
            raise InvalidDataError(
                f"predictions[{key!r}]: expected a RegularSeries or IrregularSeries, got "
                f"{type(series).__name__}"
            )
    with _open_nwb(source) as (src, nwb):
        if name in nwb.processing:
            raise InvalidDataError(
                f"{source}: processing module {name!r} already exists (pass another name=)"
            )
        module = nwb.create_processing_module(name=name, description=description)
        for key, series in predictions.items():
            channels = ", ".join(map(str, series.channels))
            module.add(_timeseries(key, series, f"Predicted {key}; channels: {channels}."))
        nwb.set_modified()
        with atomic_path(out) as tmp, _quiet_suffix(), NWBHDF5IO(str(tmp), "w") as dst:
            dst.export(src_io=src, nwbfile=nwb)
    log.info("wrote %s: %s + processing/%s (%d series)", out, source, name, len(predictions))
    return out
