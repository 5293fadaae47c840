"""Spike plots: one trial's raster and behaviour, a raster of a time range, PSTHs.

Every function reads only the windows it draws from a recording (``signal.window``), so they
are cheap on a lazily opened :class:`~neurofm.data.Recording` however long the session is.
Each returns a matplotlib Figure and, given ``path``, also saves it as a PNG atomically.

* :func:`plot_trial`: raster and behaviour of one trial, its events marked.
* :func:`plot_raster`: raster of ``[start, end)``, units optionally grouped by brain area.
* :func:`plot_psth`: peri-stimulus time histogram aligned on a trial event, mean +- SEM
  across trials, for the population or for single units, optionally one line per condition.

Examples
--------
>>> rec = Recording.open("catalog/sub-S0_ses-1.h5")
>>> plot_raster(rec, 10.0, 14.0, sort_by="area", path="raster.png")
>>> plot_psth(rec, align="go_cue_time", group_by="target_dir", path="psth.png")
>>> plot_psth(rec, align="move_onset_time", by="unit", max_units=6)
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from neurofm.data.binning import bin_spikes
from neurofm.data.recording import Recording
from neurofm.data.signals import Intervals, Signal
from neurofm.errors import InvalidDataError
from neurofm.viz.decoding import channel_label
from neurofm.viz.figures import pyplot, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_psth", "plot_raster", "plot_trial"]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------------------------
# shared checks
# --------------------------------------------------------------------------------------------


def _signal(recording: Recording, name: str, kind: str) -> Signal:
    """The signal ``name`` of ``recording``, checked to be of ``kind``."""
    if name not in recording:
        raise InvalidDataError(
            f"recording {recording.id!r}: no {kind} signal {name!r} "
            f"(has {sorted(recording.signals)})"
        )
    signal = recording[name]
    if signal.kind != kind:
        raise InvalidDataError(
            f"recording {recording.id!r}: signal {name!r} holds {signal.kind}, expected {kind}"
        )
    return signal


def _trials_table(recording: Recording, trials: str) -> Intervals:
    table = _signal(recording, trials, "intervals").load()
    assert isinstance(table, Intervals)
    return table


def _time_range(start: float, end: float, where: str) -> tuple[float, float]:
    try:
        start, end = float(start), float(end)
    except (TypeError, ValueError):
        raise InvalidDataError(f"{where}: start and end must be numbers") from None
    if not (math.isfinite(start) and math.isfinite(end) and end > start):
        raise InvalidDataError(f"{where}: need finite start < end, got [{start}, {end})")
    return start, end


# --------------------------------------------------------------------------------------------
# one trial
# --------------------------------------------------------------------------------------------


def plot_trial(
    recording: Recording,
    trial: int = 0,
    path: PathLike | None = None,
    *,
    margin: float = 0.3,
    spikes: str = "spikes",
    behavior: tuple[str, ...] = ("hand_pos", "hand_vel"),
    trials: str = "trials",
) -> Figure:
    """Raster and behaviour of one trial, with its events (columns ``*_time``) marked.

    Units are grouped and coloured by brain area when the units table has an ``area``
    column; each behaviour channel is named in a legend and each signal's unit is on its
    axis; the trial's span is shaded and its events are dashed lines, named along the top of
    the raster; a legend below says what the shading, the lines and the colours are. Only
    the trial's window of the spikes and of the behaviour signals is read.

    Parameters
    ----------
    recording : Recording
        Needs a spikes signal and an interval table of trials.
    trial : int
        Row of the trials table.
    path : str or Path, optional
        Where to save a PNG (written atomically); the figure is returned either way.
    margin : float
        Seconds shown before the trial's start and after its end.
    spikes, behavior, trials : str
        Names of the signals to draw; missing behaviour signals are skipped.

    Returns
    -------
    matplotlib.figure.Figure
        The raster's axes first (its first collection holds the spikes: x session time,
        y row), then one axes per behaviour signal; the event names are the tick labels of
        the raster's top axis.

    Raises
    ------
    InvalidDataError
        The trial index is out of range, or a spikes or trials signal is missing.
    """
    table = _trials_table(recording, trials)
    if not isinstance(trial, int | np.integer) or not 0 <= trial < len(table):
        raise InvalidDataError(
            f"recording {recording.id!r}: {trials}: trial {trial!r} out of range [0, {len(table)})"
        )
    spike_signal = _signal(recording, spikes, "spikes")
    start = max(float(table.start[trial]) - margin, 0.0)
    end = float(table.end[trial]) + margin
    row, keys = _unit_order(spike_signal.units, "auto", spikes)
    sp = spike_signal.window(start, end)
    shown = [b for b in behavior if b in recording]
    series_of = {name: recording[name].window(start, end) for name in shown}

    plt = pyplot()
    fig, axes = plt.subplots(
        1 + len(shown),
        1,
        figsize=(8, 3.4 + 1.6 * len(shown)),
        sharex=True,
        gridspec_kw={"height_ratios": [3] + [1] * len(shown)},
        layout="constrained",
    )
    axes = np.atleast_1d(axes)
    colour_of_row, group_handles = _group_colours(keys)
    rows = row[sp.unit_index] if len(sp) else np.empty(0, dtype=np.int64)
    axes[0].scatter(
        sp.timestamps + start,
        rows,
        s=2,
        marker="|",
        c=colour_of_row[rows] if len(sp) else "k",
        linewidths=0.6,
    )
    _label_groups(axes[0], keys, len(sp.units), "area")
    axes[0].set_ylim(-1, len(sp.units))
    axes[0].invert_yaxis()  # first row on top, as in plot_raster
    for ax, name in zip(axes[1:], shown, strict=True):
        series = series_of[name]
        times = series.timestamps + start
        values = series.data if series.kind == "regular" else series.values
        for c in range(values.shape[1]):
            ax.plot(times, values[:, c], lw=1.2, label=channel_label(series.channels, c))
        ax.set_ylabel(f"{name}\n({series.unit})" if series.unit else name)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7.5, frameon=False)
    events = {k: v[trial] for k, v in table.columns.items() if k in table.time_columns}
    events = {k: float(t) for k, t in events.items() if np.isfinite(t)}
    for ax in axes:
        ax.axvspan(table.start[trial], table.end[trial], color=TRIAL_SHADE, zorder=-1)
        for t in events.values():
            ax.axvline(t, color="tab:red", lw=0.8, ls="--")
    if events:
        # Event names as tick labels of a top axis: laid out (and never clipped) by the layout.
        top = axes[0].secondary_xaxis("top")
        top.set_xticks(list(events.values()), [k.removesuffix("_time") for k in events])
        top.tick_params(axis="x", colors="tab:red", labelsize=8, length=3)
        for label in top.get_xticklabels():
            label.set(rotation=30, ha="left", rotation_mode="anchor")
    axes[-1].set_xlabel("time in session (s)")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(color=TRIAL_SHADE, label="trial (start to end)")]
    if events:
        handles.append(Line2D([], [], color="tab:red", lw=0.8, ls="--", label="trial events"))
    fig.legend(
        handles=handles + group_handles,
        loc="outside lower center",
        ncol=len(handles) + len(group_handles),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(f"{recording.id}: trial {trial}")
    save_png(fig, path, dpi=120)
    return fig


# --------------------------------------------------------------------------------------------
# raster of a time range
# --------------------------------------------------------------------------------------------


#: Shade of a trial's span behind rasters and traces (explained in each figure's legend).
TRIAL_SHADE = "0.9"


def _unit_order(units: Any, sort_by: str | None, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(row of each unit, group key of each row) for a raster's y axis.

    ``sort_by="auto"`` groups by ``area`` when the units table has that column and keeps the
    table's order otherwise; None keeps the table's order (no keys).
    """
    n = len(units)
    if sort_by == "auto":
        sort_by = "area" if "area" in units.columns else None
    if sort_by is None:
        return np.arange(n), np.asarray([], dtype=object)
    if sort_by not in units.columns:
        raise InvalidDataError(
            f"{where}.units.{sort_by}: no such column to sort by (has {sorted(units.columns)})"
        )
    key = np.asarray([str(v) for v in units.columns[sort_by]], dtype=object)
    order = np.argsort(key.astype(str), kind="stable")  # ties keep the file's unit order
    row = np.empty(n, dtype=np.int64)
    row[order] = np.arange(n)
    return row, key[order]


def _group_colours(keys: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """RGBA colour of every raster row (one colour per group; black without groups) and
    legend handles naming each group and its number of units."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    if len(keys) == 0:
        return np.zeros((0, 4)), []
    groups = list(dict.fromkeys(keys.tolist()))  # in row order
    cmap = colormaps["tab10"]
    colour = {g: cmap(i % 10) for i, g in enumerate(groups)}
    rows = np.asarray([colour[k] for k in keys])
    handles = [
        Line2D(
            [],
            [],
            color=colour[g],
            marker="|",
            ls="",
            markersize=9,
            mew=2,
            label=f"{g} ({_units(int((keys == g).sum()))})",
        )
        for g in groups
    ]
    return rows, handles


def _units(n: int) -> str:
    return f"{n} unit" if n == 1 else f"{n} units"


def _label_groups(ax: Any, keys: np.ndarray, n_units: int, by: str) -> None:
    """Group names at the middle of their rows, lines between groups; or a plain label."""
    if len(keys) == 0 or n_units == 0:
        ax.set_ylabel("unit")
        return
    bounds = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    edges = np.concatenate([[0], bounds, [n_units]])
    for b in bounds:
        ax.axhline(b - 0.5, color="0.6", lw=0.6)
    ax.set_yticks((edges[:-1] + edges[1:] - 1) / 2, [str(keys[e]) for e in edges[:-1]])
    ax.set_ylabel(f"units by {by}")


def plot_raster(
    recording: Recording,
    start: float,
    end: float,
    path: PathLike | None = None,
    *,
    spikes: str = "spikes",
    sort_by: str | None = "auto",
    trials: str | None = "trials",
    marker_size: float | None = None,
    title: str | None = None,
) -> Figure:
    """Spike raster of every unit in ``[start, end)`` (session time, seconds).

    One row per unit of the units table (units without a spike keep an empty row); each
    spike is a tick at its time in the session. Only the spikes in the range are read.

    Parameters
    ----------
    recording : Recording
        Needs a spikes signal.
    start, end : float
        The half-open time range, seconds from the recording's start.
    path : str or Path, optional
        Where to save a PNG (written atomically); the figure is returned either way.
    spikes : str
        Name of the spikes signal.
    sort_by : str or None
        A column of the units table (e.g. ``"area"``): rows are grouped by its value (sorted;
        within a group the units keep their order), each group drawn in its own colour,
        labelled on the y axis, separated by lines and named in the legend with its number of
        units. ``"auto"`` (the default): by ``area`` when the units table has it; None: rows
        in the units table's order, in black.
    trials : str or None
        Name of an interval table whose intervals in the range are shaded (skipped when the
        recording has none; the legend says what the shading is); None shades nothing.
    marker_size : float, optional
        Size of a spike's tick (points squared); default: about the height of a row.
    title : str, optional
        Figure title (default: the recording id and the range).

    Returns
    -------
    matplotlib.figure.Figure
        One axes; its first collection holds the spikes (x: session time, y: row; colours by
        group).

    Raises
    ------
    InvalidDataError
        ``start``/``end`` not a finite, non-empty range; no spikes signal of that name; no
        ``sort_by`` column in the units table.
    """
    start, end = _time_range(start, end, f"plot_raster: recording {recording.id!r}")
    spike_signal = _signal(recording, spikes, "spikes")
    row, keys = _unit_order(spike_signal.units, sort_by, spikes)
    sp = spike_signal.window(start, end)
    n_units = len(sp.units)

    plt = pyplot()
    height = 1.5 + min(6.0, 0.04 * n_units + 1.5)  # inches
    if marker_size is None:
        row_points = 72 * (height - 1.0) / max(n_units + 1, 1)
        marker_size = float(np.clip(0.8 * row_points, 2.0, 12.0) ** 2)
    fig, ax = plt.subplots(figsize=(10, height), layout="constrained")
    colour_of_row, handles = _group_colours(keys)
    rows = row[sp.unit_index] if len(sp) else np.empty(0, dtype=np.int64)
    ax.scatter(
        sp.timestamps + start,
        rows,
        s=marker_size,
        marker="|",
        c=colour_of_row[rows] if len(keys) and len(sp) else "k",
        linewidths=0.6,
    )
    if trials is not None and trials in recording:
        from matplotlib.patches import Patch

        shown = _signal(recording, trials, "intervals").window(start, end)
        for a, b in zip(shown.start + start, shown.end + start, strict=True):
            ax.axvspan(max(a, start), min(b, end), color=TRIAL_SHADE, zorder=-1)
        if len(shown):
            handles = [*handles, Patch(color=TRIAL_SHADE, label=f"{trials} (start to end)")]
    by = "area" if sort_by == "auto" else sort_by
    _label_groups(ax, keys, n_units, str(by))
    ax.set_xlim(start, end)
    ax.set_ylim(-1, max(n_units, 1))
    ax.invert_yaxis()  # first row on top, like a table
    ax.set_xlabel("time in session (s)")
    ax.set_title(title or f"{recording.id}: {len(sp)} spikes of {n_units} units", fontsize=10)
    if handles:
        fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    save_png(fig, path, dpi=120)
    return fig


# --------------------------------------------------------------------------------------------
# peri-stimulus time histograms
# --------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    """A group's value for a legend: floats to 4 significant digits."""
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    return str(value)


def _align_times(table: Intervals, align: str, where: str) -> np.ndarray:
    if align in ("start", "start_time"):
        return np.asarray(table.start, dtype=np.float64)
    if align in ("end", "stop_time"):
        return np.asarray(table.end, dtype=np.float64)
    if align not in table.columns:
        raise InvalidDataError(
            f"{where}.{align}: no such column to align on (has start, end, "
            f"{', '.join(sorted(table.columns))})"
        )
    col = table.columns[align]
    if col.ndim != 1 or not np.issubdtype(col.dtype, np.number):
        raise InvalidDataError(f"{where}.{align}: must be a numeric column of event times")
    return np.asarray(col, dtype=np.float64)


def _rows(rows: Sequence[int] | np.ndarray | None, n: int, where: str) -> np.ndarray:
    if rows is None:
        return np.arange(n)
    arr = np.asarray(rows)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise InvalidDataError(
                f"{where}: a boolean rows mask needs {n} values, got shape {arr.shape}"
            )
        return np.flatnonzero(arr)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidDataError(f"{where}: rows must be trial indices or a boolean mask")
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise InvalidDataError(f"{where}: trial {int(bad[0])} out of range [0, {n})")
    return arr.astype(np.int64)


def _pick_units(
    units: Sequence[str | int] | None, ids: np.ndarray, totals: np.ndarray, limit: int, where: str
) -> np.ndarray:
    if units is None:
        # The most active units in the aligned windows (ties: the table's order).
        return np.sort(np.argsort(-totals, kind="stable")[: max(limit, 0)])
    out = []
    for u in units:
        if isinstance(u, str):
            hits = np.flatnonzero(ids == u)
            if hits.size == 0:
                raise InvalidDataError(f"{where}.units: no unit with id {u!r}")
            out.append(int(hits[0]))
        elif isinstance(u, int | np.integer) and 0 <= u < len(ids):
            out.append(int(u))
        else:
            raise InvalidDataError(
                f"{where}.units: {u!r} is neither a unit id nor an index in [0, {len(ids)})"
            )
    return np.asarray(out, dtype=np.int64)


def plot_psth(
    recording: Recording,
    align: str = "go_cue_time",
    path: PathLike | None = None,
    *,
    window: tuple[float, float] = (-0.5, 1.0),
    bin_size: float = 0.02,
    by: Literal["population", "unit"] = "population",
    units: Sequence[str | int] | None = None,
    max_units: int = 6,
    group_by: str | None = None,
    rows: Sequence[int] | np.ndarray | None = None,
    spikes: str = "spikes",
    trials: str = "trials",
    title: str | None = None,
) -> Figure:
    """Peri-stimulus time histogram: firing rate around a trial event, mean +- SEM over trials.

    For every trial, the spikes in ``[t + window[0], t + window[0] + n * bin_size)`` around its
    event time ``t`` are read (that window only) and counted in ``n = (window[1] - window[0]) /
    bin_size`` bins; bin ``k`` is ``[t + window[0] + k * bin_size, t + window[0] + (k + 1) *
    bin_size)`` (the half-open rule of :mod:`neurofm.data.binning`, in window time). A
    trial's rate in a bin is its count divided by ``bin_size`` (Hz); the line is the mean rate
    over trials, drawn at the bins' centres, and the band is +- the standard error of that
    mean (``std(ddof=1) / sqrt(n_trials)``; none with one trial).

    Trials whose event time is NaN (e.g. no go cue in a failed trial) or whose window does not
    lie inside ``[0, recording.duration]`` are left out, so a partly covered window never
    lowers the rate.

    Parameters
    ----------
    recording : Recording
        Needs a spikes signal and an interval table of trials.
    align : str
        The event: a numeric column of the trials table holding times in seconds
        (``"go_cue_time"``, ``"move_onset_time"``, ...), or ``"start"`` / ``"end"`` for the
        trials' bounds.
    path : str or Path, optional
        Where to save a PNG (written atomically); the figure is returned either way.
    window : (float, float)
        Seconds before (negative) and after the event.
    bin_size : float
        Bin width in seconds; must divide the window's length.
    by : {"population", "unit"}
        ``"population"``: one axes, the mean rate per unit over the chosen units (all of them
        by default). ``"unit"``: one axes per unit.
    units : sequence of str or int, optional
        Units by id or index. Default: every unit for the population; the ``max_units`` most
        active units in the aligned windows for ``by="unit"``.
    max_units : int
        How many units ``by="unit"`` shows by default.
    group_by : str, optional
        A column of the trials table (e.g. ``"target_dir"``): one line per value, each averaged
        over its own trials.
    rows : sequence of int or boolean mask, optional
        Trials (rows of the trials table) to use; default all.
    spikes, trials : str
        Names of the spikes signal and of the trials table.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per panel; in each, line ``i`` is group ``i``'s mean rate (x: seconds from
        the event) and collection ``i`` its SEM band.

    Raises
    ------
    InvalidDataError
        No such spikes or trials signal, no ``align`` or ``group_by`` column, a bad trial
        index or unit, a bad window or bin size, or no trial left to average.
    """
    where = f"recording {recording.id!r}: {trials}"
    if by not in ("population", "unit"):
        raise InvalidDataError(f"plot_psth: by must be 'population' or 'unit', got {by!r}")
    w0, w1 = _time_range(*window, where="plot_psth: window")
    bin_size = float(bin_size)
    if not (math.isfinite(bin_size) and bin_size > 0):
        raise InvalidDataError(f"plot_psth: bin_size must be > 0 s, got {bin_size}")
    n_bins = round((w1 - w0) / bin_size)
    if n_bins < 1 or abs(n_bins * bin_size - (w1 - w0)) > 1e-6 * bin_size:
        raise InvalidDataError(
            f"plot_psth: bin_size {bin_size} s must divide the window's length {w1 - w0} s"
        )
    table = _trials_table(recording, trials)
    events = _align_times(table, align, where)
    group_col = None
    if group_by is not None:
        if group_by not in table.columns or table.columns[group_by].ndim != 1:
            raise InvalidDataError(
                f"{where}.{group_by}: no such column to group by (has "
                f"{', '.join(sorted(table.columns))})"
            )
        group_col = table.columns[group_by]
    chosen = _rows(rows, len(table), f"{where}: rows")
    spike_signal = _signal(recording, spikes, "spikes")

    lo = events[chosen] + w0
    span = n_bins * bin_size
    ok = np.isfinite(events[chosen]) & (lo >= 0) & (lo + span <= recording.duration + 1e-9)
    if (~ok).any():
        logger.info(
            "plot_psth: %s: %d of %d trials left out (no %s time, or the window leaves the "
            "recording)",
            recording.id,
            int((~ok).sum()),
            len(chosen),
            align,
        )
    chosen, lo = chosen[ok], lo[ok]
    if chosen.size == 0:
        raise InvalidDataError(
            f"{where}.{align}: no trial with a finite event time whose window "
            f"[{w0}, {w1}) s lies inside the recording"
        )

    # Read each trial's window once; bin later, for the units that are shown.
    windows = [spike_signal.window(a, a + span) for a in lo]
    ids = np.asarray(spike_signal.units.ids, dtype=object)
    totals = np.zeros(len(ids), dtype=np.int64)
    for w in windows:
        totals += np.bincount(w.unit_index, minlength=len(ids))
    if by == "population" and units is None:
        picked = np.arange(len(ids))
    else:
        picked = _pick_units(units, ids, totals, max_units, f"recording {recording.id!r}: {spikes}")
    if picked.size == 0:
        raise InvalidDataError(f"recording {recording.id!r}: {spikes}: no unit to show")
    column = np.full(len(ids), -1, dtype=np.int64)
    column[picked] = np.arange(len(picked))

    # counts[trial, bin, unit], binned by the package's one rule (neurofm.data.binning):
    # bin k is [k * bin_size, (k + 1) * bin_size) in window time.
    counts = np.zeros((len(windows), n_bins, len(picked)), dtype=np.float64)
    for i, w in enumerate(windows):
        col = column[w.unit_index]
        keep = col >= 0
        counts[i] = bin_spikes(w.timestamps[keep], col[keep], len(picked), 0.0, n_bins, bin_size)
    rates = counts / bin_size  # Hz
    if by == "population":
        rates = rates.mean(axis=2, keepdims=True)  # mean rate per unit

    if group_col is None:
        groups = [("all trials", np.arange(len(chosen)))]
    else:
        values = group_col[chosen]
        groups = [(f"{group_by}={_fmt(v)}", np.flatnonzero(values == v)) for v in np.unique(values)]
    centers = w0 + bin_size * (np.arange(n_bins) + 0.5)

    plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    n_panels = rates.shape[2]
    ncols = min(3, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(4.2 * ncols + 2.0 if n_panels > 1 else 9, 2.8 * nrows + 0.9),
        sharex=True,
        squeeze=False,
        layout="constrained",
    )
    areas = spike_signal.units.columns.get("area") if by == "unit" else None
    event = align.removesuffix("_time")
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "viridis")
    for p in range(nrows * ncols):
        ax = axes.flat[p]
        if p >= n_panels:
            ax.set_visible(False)
            continue
        for g, (label, idx) in enumerate(groups):
            color = cmap(g % 10) if len(groups) <= 10 else cmap(g / max(len(groups) - 1, 1))
            r = rates[idx, :, p]
            mean = r.mean(axis=0)
            sem = r.std(axis=0, ddof=1) / np.sqrt(len(idx)) if len(idx) > 1 else np.zeros(n_bins)
            ax.plot(centers, mean, color=color, lw=1.4, label=f"{label} (n={len(idx)})")
            ax.fill_between(centers, mean - sem, mean + sem, color=color, alpha=0.25, lw=0)
        ax.axvline(0.0, color="k", lw=0.8, ls="--")
        ax.set_xlim(w0, w1)
        if by == "unit":
            u = picked[p]
            area = f" ({areas[u]})" if areas is not None else ""
            ax.set_title(f"{ids[u]}{area}", fontsize=9)
        if p % ncols == 0:
            ax.set_ylabel("mean rate per unit (Hz)" if by == "population" else "rate (Hz)")
        if p >= n_panels - ncols:
            ax.set_xlabel(f"time from {event} (s)")
    # One legend for the figure, beside the panels: the groups, then what the band and the
    # dashed line are.
    handles, labels = axes.flat[0].get_legend_handles_labels()
    handles += [
        Patch(color="0.6", alpha=0.4, lw=0),
        Line2D([], [], color="k", lw=0.8, ls="--"),
    ]
    labels += ["± SEM across trials", event]
    fig.legend(handles, labels, loc="outside right upper", fontsize=7.5, frameon=False)
    who = f"{len(picked)} units" if by == "population" else "single units"
    fig.suptitle(
        title
        or f"{recording.id}: PSTH of {who}, aligned on {event}\n"
        f"{len(chosen)} trials, {bin_size * 1000:g} ms bins; line: mean rate, band: ± SEM",
        fontsize=10,
    )
    save_png(fig, path, dpi=120)
    return fig
