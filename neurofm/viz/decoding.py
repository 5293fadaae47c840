"""Decoding plots: predicted against true behaviour on evaluation trials."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from neurofm.errors import InvalidDataError
from neurofm.metrics import r2_score
from neurofm.viz.figures import pyplot, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["channel_label", "plot_few_shot", "plot_predictions"]


def channel_label(channels: Any, d: int) -> str:
    """Name of output dimension ``d``: its channel name, or ``dim d`` without one (a purely
    numeric name, e.g. ``"0"``, reads as ``channel 0``)."""
    names = list(channels) if channels is not None else []
    if d >= len(names) or str(names[d]) == "":
        return f"dim {d}"
    name = str(names[d])
    return f"channel {name}" if name.isdigit() else name


def _segments(t: np.ndarray, max_segments: int) -> list[slice]:
    """Contiguous runs of evaluation points (trials): a gap of more than 3 sample steps
    starts a new one. The first ``max_segments`` of them."""
    if len(t) == 0:
        return []
    step = np.median(np.diff(t)) if len(t) > 1 else 1.0
    bounds = [0, *(np.flatnonzero(np.diff(t) > 3 * step) + 1).tolist(), len(t)]
    runs = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return runs[:max_segments]


def _concatenated(
    t: np.ndarray, segments: list[slice], values: list[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray], list[float]]:
    """Segments laid end to end on one time axis (seconds from the first segment's start),
    a NaN point between two segments so no line joins them.

    Returns the x values, each of ``values`` laid out the same way, and the x of every
    boundary between segments.
    """
    step = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    xs, ys, bounds = [], [[] for _ in values], []
    offset = 0.0
    for i, seg in enumerate(segments):
        ts = t[seg]
        if i:
            bounds.append(offset - step / 2)
            xs.append(np.array([offset - step / 2]))
            for y in ys:
                y.append(np.array([np.nan]))
        xs.append(ts - ts[0] + offset)
        for y, v in zip(ys, values, strict=True):
            y.append(np.asarray(v[seg], dtype=float))
        offset += float(ts[-1] - ts[0]) + step
    return np.concatenate(xs), [np.concatenate(y) for y in ys], bounds


def plot_predictions(
    result: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    max_sessions: int = 3,
    max_segments: int = 4,
) -> Figure:
    """Predicted vs true behaviour on a few evaluation trials of a few sessions.

    Each panel is one output dimension of one session, titled with that dimension's own R^2
    (over all the session's evaluation points, not only the trials shown) and labelled with
    its channel name and unit. Trials are laid end to end on a time axis in seconds, the
    boundaries between them marked by dotted lines.

    Parameters
    ----------
    result : EvalResult
        From :func:`neurofm.evaluation.poyo.evaluate_poyo` (or any object with a ``split``
        and ``sessions`` mapping ids to objects with ``recording_id``, ``timestamps`` (T,),
        ``truth`` and ``prediction`` (T, D), and optionally ``channels`` (D names) and
        ``unit``; the result's optional ``target`` names the signal).
    path : str or Path, optional
        Where to save a PNG (written atomically); the figure is returned either way.
    max_sessions, max_segments : int
        How many sessions (rows) and contiguous evaluation segments (trials) to show.

    Returns
    -------
    matplotlib.figure.Figure
        One row per session, one column per behaviour dimension; in each axes, line 0 is the
        truth and line 1 the prediction (a NaN point between trials), then one dotted line per
        trial boundary.

    Raises
    ------
    InvalidDataError
        The result has no sessions.
    """
    sessions = list(result.sessions.values())[:max_sessions]
    if not sessions:
        raise InvalidDataError("plot_predictions: the result has no sessions")
    plt = pyplot()
    target = str(getattr(result, "target", "") or "")
    dims = sessions[0].truth.shape[1]
    fig, axes = plt.subplots(
        len(sessions),
        dims,
        figsize=(5.0 * dims, 2.3 * len(sessions) + 0.9),
        squeeze=False,
        layout="constrained",
    )
    for row, s in enumerate(sessions):
        channels = getattr(s, "channels", None)
        unit = str(getattr(s, "unit", "") or "")
        segments = _segments(s.timestamps, max_segments)
        for d in range(dims):
            ax = axes[row, d]
            x, (truth, pred), bounds = _concatenated(
                s.timestamps, segments, [s.truth[:, d], s.prediction[:, d]]
            )
            ax.plot(x, truth, color="k", lw=1.3, label="true", zorder=3)
            ax.plot(x, pred, color="tab:red", lw=1.0, alpha=0.85, label="predicted", zorder=2)
            for i, b in enumerate(bounds):
                ax.axvline(
                    b,
                    color="0.55",
                    lw=0.8,
                    ls=":",
                    zorder=1,
                    label="trial boundary" if i == 0 else None,
                )
            if len(x) > 1:
                ax.set_xlim(x[0], x[-1])
            name = f"{target} {channel_label(channels, d)}".strip()
            # The panel's own R^2: this dimension, over all the session's evaluation points.
            r2 = r2_score(s.truth[:, d], s.prediction[:, d]) if len(s.truth) > 1 else np.nan
            ax.set_title(f"{s.recording_id}\n{name}: R² {r2:.2f}", fontsize=8.5)
            ax.set_ylabel(f"{name} ({unit})" if unit else name, fontsize=8.5)
            ax.tick_params(labelsize=8)
            if row == len(sessions) - 1:
                ax.set_xlabel(
                    f"time in the {result.split} trials shown, end to end (s)", fontsize=8.5
                )
    handles, labels = [], []
    for ax in axes.flat:  # the first panel with a trial boundary has all three entries
        h, lab = ax.get_legend_handles_labels()
        if len(lab) > len(labels):
            handles, labels = h, lab
    fig.legend(
        handles, labels, loc="outside upper center", ncol=len(labels), frameon=False, fontsize=8.5
    )
    save_png(fig, path, dpi=110)
    return fig


def plot_few_shot(
    rows: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    metric: str = "r2",
    title: str = "adapting to a new session",
) -> Figure:
    """The few-shot curve: a new session's test score against the labelled trials used.

    One line per adaptation mode (``unit-id``, ``full``, ``scratch``...): the mean over seeds,
    with every seed's score as a dot, so the spread is visible.

    Parameters
    ----------
    rows : sequence of mapping
        One per run, with ``mode``, ``trials`` and the score (``r2``), e.g.
        :func:`neurofm.evaluation.fewshot.few_shot_curve`'s rows.
    path : str or Path, optional
        Where to save a PNG (written atomically); the figure is returned either way.
    metric : str
        The key of the score in each row.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InvalidDataError
        No rows, or a row without ``mode``, ``trials`` or the score.
    """
    rows = list(rows)
    if not rows:
        raise InvalidDataError("plot_few_shot: no rows to plot")
    for i, row in enumerate(rows):
        missing = [k for k in ("mode", "trials", metric) if k not in row]
        if missing:
            raise InvalidDataError(f"plot_few_shot: rows[{i}] has no {', '.join(missing)}")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.4), layout="constrained")
    for mode in dict.fromkeys(str(r["mode"]) for r in rows):
        mine = [r for r in rows if str(r["mode"]) == mode]
        trials = sorted({int(r["trials"]) for r in mine})
        means = [np.mean([float(r[metric]) for r in mine if int(r["trials"]) == k]) for k in trials]
        (line,) = ax.plot(trials, means, marker="o", lw=1.5, label=mode)
        ax.scatter(
            [int(r["trials"]) for r in mine],
            [float(r[metric]) for r in mine],
            color=line.get_color(),
            s=12,
            alpha=0.5,
        )
    ax.set_xlabel("labelled trials of the new session")
    ax.set_ylabel("test R²" if metric == "r2" else metric)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8.5, title="adaptation", title_fontsize=8.5)
    save_png(fig, path, dpi=110)
    return fig
