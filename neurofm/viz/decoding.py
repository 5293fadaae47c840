"""Decoding plots: predicted against true behaviour on evaluation trials."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from neurofm.errors import InvalidDataError
from neurofm.viz.figures import pyplot, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_predictions"]


def plot_predictions(
    result: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    max_sessions: int = 3,
    max_segments: int = 4,
) -> Figure:
    """Predicted vs true behaviour on a few evaluation trials of a few sessions.

    Parameters
    ----------
    result : EvalResult
        From :func:`neurofm.training.evaluate.evaluate_poyo` (or any object with a ``split``
        and ``sessions`` mapping ids to objects with ``recording_id``, ``timestamps`` (T,),
        ``truth`` and ``prediction`` (T, D) and ``r2``).
    path : str or Path, optional
        Where to save a PNG (written atomically); the figure is returned either way.
    max_sessions, max_segments : int
        How many sessions (rows) and contiguous evaluation segments (trials) to show.

    Returns
    -------
    matplotlib.figure.Figure
        One row per session, one column per behaviour dimension; in each axes, line 0 is the
        truth and line 1 the prediction, NaN between segments.

    Raises
    ------
    InvalidDataError
        The result has no sessions.
    """
    sessions = list(result.sessions.values())[:max_sessions]
    if not sessions:
        raise InvalidDataError("plot_predictions: the result has no sessions")
    plt = pyplot()
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
    save_png(fig, path, dpi=110)
    return fig
