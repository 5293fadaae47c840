"""Plots (matplotlib, Agg backend so they work on headless machines and in CI)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from neurofm.atomic import atomic_path
from neurofm.data.recording import Recording
from neurofm.errors import InvalidDataError

__all__ = ["plot_trial"]


def plot_trial(
    recording: Recording,
    trial: int = 0,
    path: str | os.PathLike[str] | None = None,
    *,
    margin: float = 0.3,
    spikes: str = "spikes",
    behavior: tuple[str, ...] = ("hand_pos", "hand_vel"),
    trials: str = "trials",
) -> Any:
    """Raster and behaviour of one trial, with its events (columns ``*_time``) marked.

    Only the trial's window is read, so this is cheap on a lazily opened recording.

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
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    table = recording[trials].load()
    if not 0 <= trial < len(table):
        raise InvalidDataError(f"{recording.id}: trial {trial} out of range [0, {len(table)})")
    start = float(table.start[trial]) - margin
    end = float(table.end[trial]) + margin
    start = max(start, 0.0)
    win = recording.window(start, end)
    shown = [b for b in behavior if b in win]
    fig, axes = plt.subplots(
        1 + len(shown),
        1,
        figsize=(8, 3 + 1.6 * len(shown)),
        sharex=True,
        gridspec_kw={"height_ratios": [3] + [1] * len(shown)},
    )
    axes = np.atleast_1d(axes)
    sp = win[spikes]
    axes[0].scatter(sp.timestamps + start, sp.unit_index, s=2, marker="|", c="k", linewidths=0.6)
    axes[0].set_ylabel("unit")
    axes[0].set_ylim(-1, len(sp.units))
    for ax, name in zip(axes[1:], shown, strict=True):
        series = win[name]
        times = series.timestamps + start
        values = series.data if series.kind == "regular" else series.values
        for c, label in enumerate(series.channels):
            ax.plot(times, values[:, c], lw=1.2, label=str(label))
        ax.set_ylabel(f"{name}\n({series.unit})" if series.unit else name)
        ax.legend(loc="upper right", fontsize=7, frameon=False)
    events = {k: v[trial] for k, v in table.columns.items() if k in table.time_columns}
    for ax in axes:
        ax.axvspan(table.start[trial], table.end[trial], color="0.93", zorder=-1)
        for t in events.values():
            if np.isfinite(t):
                ax.axvline(t, color="tab:red", lw=0.8, ls="--")
    for k, t in events.items():
        if np.isfinite(t):
            axes[0].text(
                t,
                len(sp.units),
                k.removesuffix("_time"),
                fontsize=7,
                rotation=90,
                va="bottom",
                color="tab:red",
            )
    axes[-1].set_xlabel("time in session (s)")
    fig.suptitle(f"{recording.id}: trial {trial}")
    fig.tight_layout()
    if path is not None:
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    return fig


def plot_predictions(
    result: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    max_sessions: int = 3,
    max_segments: int = 4,
) -> Any:
    """Predicted vs true behaviour on a few evaluation trials of a few sessions.

    Parameters
    ----------
    result : EvalResult
        From :func:`neurofm.training.evaluate.evaluate_poyo` (or any object whose
        ``sessions`` map ids to ``timestamps``, ``truth``, ``prediction`` and ``r2``).
    path : str or Path, optional
        Where to save a PNG (atomically).
    max_sessions, max_segments : int
        How many sessions (rows) and contiguous evaluation segments (trials) to show.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    sessions = list(result.sessions.values())[:max_sessions]
    if not sessions:
        raise InvalidDataError("plot_predictions: the result has no sessions")
    dims = sessions[0].truth.shape[1]
    fig, axes = plt.subplots(
        len(sessions), dims, figsize=(4.5 * dims, 2.4 * len(sessions)), squeeze=False
    )
    for row, s in enumerate(sessions):
        t = s.timestamps
        step = np.median(np.diff(t)) if len(t) > 1 else 1.0
        breaks = np.flatnonzero(np.diff(t) > 3 * step) + 1
        stop = breaks[max_segments - 1] if len(breaks) >= max_segments else len(t)
        x = np.arange(stop, dtype=float)
        # Leave gaps between trials so unrelated segments are not joined by a line.
        gap = np.zeros(stop, dtype=bool)
        gap[[b for b in breaks if b < stop]] = True
        for d in range(dims):
            ax = axes[row, d]
            truth = s.truth[:stop, d].astype(float)
            pred = s.prediction[:stop, d].astype(float)
            truth[gap], pred[gap] = np.nan, np.nan
            ax.plot(x, truth, color="k", lw=1.2, label="true")
            ax.plot(x, pred, color="tab:red", lw=1.0, label="predicted")
            ax.set_title(f"{s.recording_id} dim {d}  (R^2 {s.r2:.2f})", fontsize=8)
            ax.set_xticks([])
        axes[row, 0].legend(fontsize=7, frameon=False, loc="upper left")
    axes[-1, 0].set_xlabel(f"evaluation samples of {result.split} trials (concatenated)")
    fig.tight_layout()
    if path is not None:
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    return fig
