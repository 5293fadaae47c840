"""The data layer's signal types: one vocabulary for every modality.

All times are float64 seconds from the recording's start; windows are half-open ``[start, end)``
and a windowed signal's times are relative to the window's start. Every constructor validates its
input and raises :class:`~neurofm.errors.InvalidDataError` naming the signal and the field.

The classes here hold numpy arrays in memory. Their lazy, HDF5-backed counterparts live in
:mod:`neurofm.data.storage`; both answer ``window(start, end)`` with an in-memory signal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from neurofm import display
from neurofm.data.binning import bin_spikes
from neurofm.errors import InvalidDataError

__all__ = [
    "IrregularSeries",
    "Intervals",
    "RegularSeries",
    "Signal",
    "Spikes",
    "Units",
    "regular_index_range",
]


# --------------------------------------------------------------------------------------------
# validation helpers (shared by the eager classes and the HDF5 reader)
# --------------------------------------------------------------------------------------------


def _as_1d(values: Any, dtype: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InvalidDataError(f"{where}: cannot convert to {np.dtype(dtype)} ({exc})") from None
    if arr.ndim != 1:
        raise InvalidDataError(f"{where}: expected a 1-D array, got shape {arr.shape}")
    return arr


def check_times(times: np.ndarray, where: str, *, sorted_: bool, nonnegative: bool) -> None:
    """Raise :class:`InvalidDataError` unless ``times`` is finite (and sorted / >= 0 if asked)."""
    if times.size == 0:
        return
    bad = ~np.isfinite(times)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidDataError(f"{where}: must be finite (found {times[i]} at index {i})")
    if nonnegative and times[0 if sorted_ else int(np.argmin(times))] < 0:
        i = int(np.flatnonzero(times < 0)[0])
        raise InvalidDataError(
            f"{where}: must be >= 0 s from the recording's start (found {times[i]} at index {i})"
        )
    if sorted_:
        drops = np.flatnonzero(np.diff(times) < 0)
        if drops.size:
            i = int(drops[0]) + 1
            raise InvalidDataError(
                f"{where}: must be sorted in non-decreasing order "
                f"(index {i}: {times[i]} < {times[i - 1]})"
            )


def _check_length(arr: np.ndarray, n: int, where: str, against: str) -> None:
    if len(arr) != n:
        raise InvalidDataError(f"{where}: length {len(arr)} does not match {against} ({n})")


def _columns(
    columns: Mapping[str, Any] | None, n: int, owner: str, against: str
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, values in (columns or {}).items():
        arr = np.asarray(values)
        if arr.ndim == 0:
            raise InvalidDataError(f"{owner}.{key}: expected one value per row, got a scalar")
        _check_length(arr, n, f"{owner}.{key}", against)
        out[str(key)] = arr
    return out


def check_window(start: float, end: float, owner: str) -> None:
    if not (math.isfinite(start) and math.isfinite(end)):
        raise InvalidDataError(f"{owner}.window: start and end must be finite ({start}, {end})")
    if end < start:
        raise InvalidDataError(f"{owner}.window: end ({end}) must be >= start ({start})")


def regular_index_range(start: float, rate: float, n: int, a: float, b: float) -> tuple[int, int]:
    """Sample indices ``[lo, hi)`` of a regular series whose times fall in ``[a, b)``.

    Sample ``i`` lies at ``start + i / rate``. The closed-form guess is corrected by evaluating
    that very expression, so the eager and the lazy path agree bit for bit at window edges.
    """

    def first_at_or_after(t: float) -> int:
        i = min(max(math.ceil((t - start) * rate), 0), n)
        while i > 0 and start + (i - 1) / rate >= t:
            i -= 1
        while i < n and start + i / rate < t:
            i += 1
        return i

    return first_at_or_after(a), first_at_or_after(b)


class Signal:
    """Common interface of every signal: a name, a length and an in-memory ``window``."""

    kind: ClassVar[str] = "signal"
    name: str

    def window(self, start: float, end: float) -> Signal:  # pragma: no cover - interface
        raise NotImplementedError

    def load(self) -> Signal:
        """Return the signal in memory (eager signals return themselves)."""
        return self


# --------------------------------------------------------------------------------------------
# Units and Spikes
# --------------------------------------------------------------------------------------------


class Units:
    """A table of sorted units: string ids unique within the recording, plus columns.

    Parameters
    ----------
    ids : sequence of str
        Unit identifiers, unique within the recording (e.g. ``"elec12/unit3"``).
    columns : mapping of str to array-like, optional
        Per-unit metadata with one value per unit: ``area``, ``electrode``, ``quality``...
    name : str
        Name used in error messages.
    """

    def __init__(
        self,
        ids: Sequence[str] | np.ndarray,
        columns: Mapping[str, Any] | None = None,
        name: str = "units",
        *,
        validate: bool = True,
    ) -> None:
        self.name = name
        if not validate:
            self.ids, self.columns = np.asarray(ids, dtype=object), dict(columns or {})
            return
        self.ids = np.asarray([str(i) for i in ids], dtype=object)
        if self.ids.ndim != 1:
            raise InvalidDataError(f"{name}.ids: expected a 1-D sequence of strings")
        uniq, counts = np.unique(self.ids.astype(str), return_counts=True)
        if (counts > 1).any():
            dup = str(uniq[counts > 1][0])
            raise InvalidDataError(f"{name}.ids: must be unique (duplicate id {dup!r})")
        self.columns = _columns(columns, len(self.ids), name, "ids")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        cols = f"; columns {', '.join(self.columns)}" if self.columns else ""
        return f"<Units: {display.count(len(self), 'unit')} ({display.names(self.ids, 4)}){cols}>"

    def _repr_html_(self) -> str:
        rows = [[uid, *(col[i] for col in self.columns.values())] for i, uid in enumerate(self.ids)]
        caption = f"Units: {display.count(len(self), 'unit')}"
        return display.html_table(caption, rows, ["id", *self.columns])


class Spikes(Signal):
    """Spike events of many units, sorted by time.

    Parameters
    ----------
    timestamps : array-like of float, shape (n,)
        Spike times in seconds from the recording's start; finite, >= 0, non-decreasing.
    unit_index : array-like of int, shape (n,)
        Row of :attr:`units` that fired each spike.
    units : Units or sequence of str
        The units table (or just its ids).
    name : str
        Name used in error messages.
    """

    kind: ClassVar[str] = "spikes"

    def __init__(
        self,
        timestamps: Any,
        unit_index: Any,
        units: Units | Sequence[str],
        name: str = "spikes",
        *,
        validate: bool = True,
    ) -> None:
        self.name = name
        self.units = units if isinstance(units, Units) else Units(units, name=f"{name}.units")
        if not validate:  # internal fast path: slices of already validated data
            self.timestamps, self.unit_index = timestamps, unit_index
            return
        self.timestamps = _as_1d(timestamps, np.float64, f"{name}.timestamps")
        self.unit_index = _as_1d(unit_index, np.int64, f"{name}.unit_index").astype(np.int32)
        _check_length(self.unit_index, len(self.timestamps), f"{name}.unit_index", "timestamps")
        check_times(self.timestamps, f"{name}.timestamps", sorted_=True, nonnegative=True)
        if self.unit_index.size:
            lo, hi = int(self.unit_index.min()), int(self.unit_index.max())
            if lo < 0 or hi >= len(self.units):
                bad = lo if lo < 0 else hi
                raise InvalidDataError(
                    f"{name}.unit_index: values must be in [0, {len(self.units)}) "
                    f"(the units table), found {bad}"
                )

    def __len__(self) -> int:
        return len(self.timestamps)

    def __repr__(self) -> str:
        return describe(self)

    def _repr_html_(self) -> str:
        return describe_html(self)

    def window(self, start: float, end: float) -> Spikes:
        """Spikes in ``[start, end)``, times relative to ``start``; the units table is kept."""
        check_window(start, end, self.name)
        lo, hi = np.searchsorted(self.timestamps, [start, end], side="left")
        return Spikes(
            self.timestamps[lo:hi] - start,
            self.unit_index[lo:hi],
            self.units,
            self.name,
            validate=False,
        )

    def counts(self) -> np.ndarray:
        """Number of spikes of every unit, shape ``(n_units,)`` (totals; see :meth:`binned`)."""
        return np.bincount(self.unit_index, minlength=len(self.units))

    def binned(self, bin_size: float, n_bins: int, start: float = 0.0) -> np.ndarray:
        """Spike counts per unit in ``n_bins`` bins of ``bin_size`` s from ``start``.

        Bin ``k`` is ``[start + k * bin_size, start + (k + 1) * bin_size)``, the package's one
        bin-edge rule (:mod:`neurofm.data.binning`); spikes outside the grid are not counted.
        On a window (``spikes.window(a, b).binned(...)``) times are relative to ``a``.

        Returns
        -------
        ndarray of int64, shape (n_bins, n_units)
        """
        return bin_spikes(
            self.timestamps, self.unit_index, len(self.units), start, n_bins, bin_size
        )


# --------------------------------------------------------------------------------------------
# sampled series
# --------------------------------------------------------------------------------------------


def _as_2d(data: Any, where: str) -> np.ndarray:
    arr = np.asarray(data)
    if arr.dtype == object:
        raise InvalidDataError(f"{where}: expected a numeric array, got dtype object")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InvalidDataError(f"{where}: expected shape (time, channels), got {arr.shape}")
    return arr


def _channels(channels: Sequence[str] | None, n: int, where: str) -> np.ndarray:
    if channels is None:
        return np.asarray([str(i) for i in range(n)], dtype=object)
    out = np.asarray([str(c) for c in channels], dtype=object)
    _check_length(out, n, where, "the number of data columns")
    return out


class RegularSeries(Signal):
    """A signal sampled at a fixed rate: EEG, LFP, fMRI parcels (rate = 1/TR), behaviour.

    Parameters
    ----------
    data : array-like, shape (time, channels)
        Samples; a 1-D array is one channel.
    rate : float
        Sampling rate in Hz, > 0.
    start : float
        Time of the first sample in seconds from the recording's start, >= 0.
    channels : sequence of str, optional
        Channel names (default ``"0", "1", ...``).
    name : str
        Name used in error messages.
    unit : str
        Physical unit of the samples (e.g. ``"m/s"``, ``"V"``).
    channel_info : mapping of str to array-like, optional
        Per-channel metadata, one value per channel: EEG channel ``type`` and electrode
        position ``x``, ``y``, ``z`` (m, MNE head frame), fMRI parcel ``label`` and centroid
        ``x``, ``y``, ``z`` (mm, atlas space)... Windows share it with the parent series.
    """

    kind: ClassVar[str] = "regular"

    def __init__(
        self,
        data: Any,
        rate: float,
        start: float = 0.0,
        channels: Sequence[str] | None = None,
        name: str = "series",
        unit: str = "",
        *,
        channel_info: Mapping[str, Any] | None = None,
        validate: bool = True,
    ) -> None:
        self.name, self.unit = name, unit
        if not validate:
            self.data, self.rate, self.start, self.channels = data, rate, start, channels
            self.channel_info = channel_info if channel_info is not None else {}
            return
        self.data = _as_2d(data, f"{name}.data")
        try:
            self.rate, self.start = float(rate), float(start)
        except (TypeError, ValueError):
            raise InvalidDataError(f"{name}: rate and start must be numbers") from None
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise InvalidDataError(f"{name}.rate: must be a finite number > 0 Hz, got {rate}")
        if not (math.isfinite(self.start) and self.start >= 0):
            raise InvalidDataError(f"{name}.start: must be finite and >= 0 s, got {start}")
        self.channels = _channels(channels, self.data.shape[1], f"{name}.channels")
        self.channel_info = _columns(
            channel_info, len(self.channels), f"{name}.channel_info", "channels"
        )

    def __len__(self) -> int:
        return self.data.shape[0]

    def __repr__(self) -> str:
        return describe(self)

    def _repr_html_(self) -> str:
        return describe_html(self)

    @property
    def timestamps(self) -> np.ndarray:
        """Sample times in seconds, shape ``(time,)``."""
        return self.start + np.arange(len(self)) / self.rate

    @property
    def end(self) -> float:
        """Time just after the last sample (the series covers ``[start, end)``)."""
        return self.start + len(self) / self.rate

    def window(self, start: float, end: float) -> RegularSeries:
        """Samples whose times lie in ``[start, end)``, the new start relative to ``start``."""
        check_window(start, end, self.name)
        lo, hi = regular_index_range(self.start, self.rate, len(self), start, end)
        return self._slice(lo, hi, start)

    def _slice(self, lo: int, hi: int, origin: float) -> RegularSeries:
        # An empty window still gets a start inside it, so stitching code can place it.
        first = self.start + lo / self.rate if hi > lo else max(self.start, origin)
        return RegularSeries(
            self.data[lo:hi],
            self.rate,
            first - origin,
            self.channels,
            self.name,
            self.unit,
            channel_info=self.channel_info,
            validate=False,
        )


class IrregularSeries(Signal):
    """Samples at arbitrary, sorted times (behaviour from a camera or a touch screen).

    Parameters
    ----------
    timestamps : array-like of float, shape (time,)
        Finite, >= 0, non-decreasing times in seconds.
    values : array-like, shape (time, channels)
        One row per timestamp; a 1-D array is one channel.
    channels : sequence of str, optional
        Channel names.
    name : str
        Name used in error messages.
    unit : str
        Physical unit of the values.
    """

    kind: ClassVar[str] = "irregular"

    def __init__(
        self,
        timestamps: Any,
        values: Any,
        channels: Sequence[str] | None = None,
        name: str = "series",
        unit: str = "",
        *,
        validate: bool = True,
    ) -> None:
        self.name, self.unit = name, unit
        if not validate:
            self.timestamps, self.values, self.channels = timestamps, values, channels
            return
        self.timestamps = _as_1d(timestamps, np.float64, f"{name}.timestamps")
        self.values = _as_2d(values, f"{name}.values")
        _check_length(self.values, len(self.timestamps), f"{name}.values", "timestamps")
        check_times(self.timestamps, f"{name}.timestamps", sorted_=True, nonnegative=True)
        self.channels = _channels(channels, self.values.shape[1], f"{name}.channels")

    def __len__(self) -> int:
        return len(self.timestamps)

    def __repr__(self) -> str:
        return describe(self)

    def _repr_html_(self) -> str:
        return describe_html(self)

    def window(self, start: float, end: float) -> IrregularSeries:
        """Samples in ``[start, end)`` with times relative to ``start``."""
        check_window(start, end, self.name)
        lo, hi = np.searchsorted(self.timestamps, [start, end], side="left")
        return IrregularSeries(
            self.timestamps[lo:hi] - start,
            self.values[lo:hi],
            self.channels,
            self.name,
            self.unit,
            validate=False,
        )


# --------------------------------------------------------------------------------------------
# intervals
# --------------------------------------------------------------------------------------------


class Intervals(Signal):
    """A set of ``[start, end)`` intervals: trials, stimulus epochs, train/valid/test domains.

    Parameters
    ----------
    start, end : array-like of float, shape (n,)
        Finite bounds with ``start <= end``, sorted by ``start``.
    labels : sequence of str, optional
        One label per interval (e.g. the stimulus class or the split).
    columns : mapping of str to array-like, optional
        Extra per-interval columns (e.g. ``target_x``, ``go_cue_time``).
    time_columns : sequence of str
        Names of ``columns`` that hold times; they are shifted with the interval on windowing.
    name : str
        Name used in error messages.

    Notes
    -----
    A window keeps every interval that overlaps it, unclipped, so a trial that began before the
    window keeps its true (negative, relative) start.
    """

    kind: ClassVar[str] = "intervals"

    def __init__(
        self,
        start: Any,
        end: Any,
        labels: Sequence[str] | None = None,
        columns: Mapping[str, Any] | None = None,
        time_columns: Sequence[str] = (),
        name: str = "intervals",
        *,
        validate: bool = True,
    ) -> None:
        self.name = name
        self.time_columns = tuple(time_columns)
        if not validate:
            self.start, self.end, self.labels = start, end, labels
            self.columns = dict(columns or {})
            return
        self.start = _as_1d(start, np.float64, f"{name}.start")
        self.end = _as_1d(end, np.float64, f"{name}.end")
        _check_length(self.end, len(self.start), f"{name}.end", "start")
        check_times(self.start, f"{name}.start", sorted_=True, nonnegative=False)
        check_times(self.end, f"{name}.end", sorted_=False, nonnegative=False)
        neg = np.flatnonzero(self.end < self.start)
        if neg.size:
            i = int(neg[0])
            raise InvalidDataError(
                f"{name}.end: must be >= start (interval {i}: [{self.start[i]}, {self.end[i]}))"
            )
        self.labels = None
        if labels is not None:
            self.labels = np.asarray([str(v) for v in labels], dtype=object)
            _check_length(self.labels, len(self.start), f"{name}.labels", "start")
        self.columns = _columns(columns, len(self.start), name, "start")
        for key in self.time_columns:
            if key not in self.columns:
                raise InvalidDataError(f"{name}.time_columns: {key!r} is not a column")
            if not np.issubdtype(self.columns[key].dtype, np.number):
                raise InvalidDataError(f"{name}.{key}: a time column must be numeric")

    def __len__(self) -> int:
        return len(self.start)

    def __repr__(self) -> str:
        return describe(self)

    def _repr_html_(self) -> str:
        return describe_html(self)

    @property
    def duration(self) -> np.ndarray:
        return self.end - self.start

    def overlapping(self, start: float, end: float, end_cummax: np.ndarray) -> np.ndarray:
        """Indices of intervals overlapping ``[start, end)``.

        ``end_cummax`` (the running maximum of ``end``) is non-decreasing, so binary search finds
        the first interval that can reach ``start`` even when intervals overlap or nest.
        Zero-length intervals count when ``start <= t < end``.
        """
        first = int(np.searchsorted(end_cummax, start, side="right"))
        # Zero-length intervals exactly at `start` have end == start: step back over them.
        while first > 0 and end_cummax[first - 1] == start:
            first -= 1
        stop = int(np.searchsorted(self.start, end, side="left"))
        idx = np.arange(first, max(first, stop))
        s, e = self.start[idx], self.end[idx]
        keep = (e > start) | ((s == e) & (s >= start))
        return idx[keep]

    def window(self, start: float, end: float) -> Intervals:
        """Intervals overlapping ``[start, end)``, times relative to ``start``, not clipped."""
        check_window(start, end, self.name)
        return self.take(self.overlapping(start, end, np.maximum.accumulate(self.end)), start)

    def take(self, idx: np.ndarray, origin: float = 0.0) -> Intervals:
        """Rows ``idx`` with every time shifted by ``-origin``."""
        cols = {}
        for key, col in self.columns.items():
            cols[key] = col[idx] - origin if key in self.time_columns else col[idx]
        return Intervals(
            self.start[idx] - origin,
            self.end[idx] - origin,
            None if self.labels is None else self.labels[idx],
            cols,
            self.time_columns,
            self.name,
            validate=False,
        )

    def contains(self, times: np.ndarray) -> np.ndarray:
        """Boolean mask: which ``times`` fall inside any interval."""
        times = np.asarray(times, dtype=np.float64)
        mask = np.zeros(times.shape, dtype=bool)
        for s, e in zip(self.start, self.end, strict=True):
            mask |= (times >= s) & (times < e)
        return mask

    def to_dataframe(self) -> Any:
        """The intervals as a :class:`pandas.DataFrame` (start, end, label, columns)."""
        import pandas as pd

        frame = {"start": self.start, "end": self.end}
        if self.labels is not None:
            frame["label"] = self.labels
        for key, col in self.columns.items():
            frame[key] = list(col) if col.ndim > 1 else col
        return pd.DataFrame(frame)


# --------------------------------------------------------------------------------------------
# how signals describe themselves (repr, Jupyter); shared with the lazy signals of storage.py
# --------------------------------------------------------------------------------------------


def facts(signal: Any) -> list[tuple[str, str]]:
    """(what, value) pairs describing an eager or lazy signal, from what it holds in memory.

    A lazy signal is never read whole: only its length, shape, rate, channel names and (for
    events and intervals) its first and last time, which cost one element each.
    """
    kind, n = signal.kind, len(signal)
    out: list[tuple[str, str]] = []
    if kind == "spikes":
        units = display.count(len(signal.units), "unit")
        out.append(("size", f"{display.count(n, 'spike')}, {units}"))
    elif kind in ("regular", "irregular"):
        c = len(signal.channels)
        out.append(("size", f"{display.count(n, 'sample')} x {display.count(c, 'channel')}"))
        if kind == "regular":
            out.append(("rate", f"{signal.rate:g} Hz"))
    else:
        out.append(("size", display.count(n, "interval")))
    ends = time_range(signal)
    out.append(("time", display.span(*ends) if ends is not None else "empty"))
    if kind in ("regular", "irregular"):
        out.append(("channels", display.names(signal.channels)))
        if signal.unit:
            out.append(("unit", signal.unit))
    if kind == "intervals":
        columns = column_names(signal)
        if columns:
            out.append(("columns", display.names(columns)))
    return out


def time_range(signal: Any) -> tuple[float, float] | None:
    """First and last time of a signal (None when empty); lazy signals read two elements."""
    if hasattr(signal, "first_last"):  # lazy signals of neurofm.data.storage
        return signal.first_last()
    if len(signal) == 0:
        return None
    if signal.kind == "regular":
        return signal.start, signal.end
    if signal.kind == "intervals":
        return float(signal.start[0]), float(signal.end.max())
    return float(signal.timestamps[0]), float(signal.timestamps[-1])


def column_names(intervals: Any) -> list[str]:
    """Column names of an interval table (``label`` first when it has labels)."""
    if hasattr(intervals, "column_names"):  # lazy: the stored columns' names
        return intervals.column_names()
    return (["label"] if intervals.labels is not None else []) + list(intervals.columns)


def describe(signal: Any) -> str:
    """``<Spikes 'spikes': 38,159 spikes, 47 units; time 0.0-83.0 s>`` (lazy ones say so)."""
    pairs = facts(signal)
    rest = "; ".join(f"{k} {v}" for k, v in pairs[1:])
    return f"<{type(signal).__name__} {signal.name!r}: {pairs[0][1]}{'; ' + rest if rest else ''}>"


def describe_html(signal: Any) -> str:
    """A signal's facts as a two-column table."""
    return display.html_table(f"{type(signal).__name__} {signal.name!r}", facts(signal))
