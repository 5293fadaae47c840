"""Spike counts in time bins: the one bin-edge rule of the package.

**The rule.** Bins are half-open, like every window of the data layer: bin ``k`` of a grid
that starts at ``start`` is ``[start + k * bin_size, start + (k + 1) * bin_size)``. Each edge is
the float64 value of exactly that expression, and a time ``t`` falls in bin ``k`` iff
``edge_k <= t < edge_(k+1)`` as float64 comparisons, with no tolerance: a spike on an edge opens
the next bin, a time outside ``[edge_0, edge_n)`` is in no bin. (A time that is meant to sit on
an edge, such as 0.15 s on a 50 ms grid, lands on whichever side float64 rounding puts it; the
rule does not guess.)

Two views of the counts follow it, both exact and vectorised (no Python loop over spikes):

* :func:`bin_spikes` counts every unit's spikes on a regular grid (sequence models, analyses,
  :meth:`neurofm.data.Spikes.binned`);
* :func:`lagged_counts` gives, at each sample time ``t``, the counts in ``n_lags`` bins of its
  own history, lag ``k`` (0 = most recent) covering
  ``[t + offset - (k + 1) * bin_size, t + offset - k * bin_size)``; the bins move with ``t``.

:func:`bin_index` is the rule itself, for anything else binned beside the spikes (e.g.
behaviour samples averaged per bin).
"""

from __future__ import annotations

import numpy as np

__all__ = ["bin_index", "bin_spikes", "lagged_counts"]


def bin_index(times: np.ndarray, start: float, n_bins: int, bin_size: float) -> np.ndarray:
    """The bin of every time on the grid ``start + bin_size * arange(n_bins + 1)``.

    Parameters
    ----------
    times : ndarray, shape (n,)
        Times in seconds, in any order.
    start : float
        Left edge of bin 0.
    n_bins : int
        Number of bins.
    bin_size : float
        Bin width in seconds.

    Returns
    -------
    ndarray of int64, shape (n,)
        ``k`` with ``edges[k] <= t < edges[k + 1]``, or -1 for a time in no bin.
    """
    times = np.asarray(times, dtype=np.float64)
    edges = start + bin_size * np.arange(n_bins + 1)
    k = np.searchsorted(edges, times, side="right") - 1
    k[k >= n_bins] = -1  # at or after the last edge
    return k


def bin_spikes(
    times: np.ndarray,
    unit_index: np.ndarray,
    n_units: int,
    start: float,
    n_bins: int,
    bin_size: float,
) -> np.ndarray:
    """Spike counts per unit on a regular grid (the module's rule: half-open bins).

    Parameters
    ----------
    times, unit_index : ndarray, shape (n_spikes,)
        Spike times (sorted or not) and their units in ``[0, n_units)``.
    n_units : int
        Number of units (columns of the result).
    start : float
        Left edge of bin 0.
    n_bins : int
        Number of bins.
    bin_size : float
        Bin width in seconds.

    Returns
    -------
    ndarray of int64, shape (n_bins, n_units)
        Spikes outside ``[edges[0], edges[-1])`` are not counted.
    """
    unit_index = np.asarray(unit_index, dtype=np.int64)
    k = bin_index(times, start, n_bins, bin_size)
    keep = k >= 0
    flat = k[keep] * n_units + unit_index[keep]
    return np.bincount(flat, minlength=n_bins * n_units).reshape(n_bins, n_units)


def lagged_counts(
    times: np.ndarray,
    unit_index: np.ndarray,
    n_units: int,
    at: np.ndarray,
    bin_size: float,
    n_lags: int,
    offset: float = 0.0,
) -> np.ndarray:
    """Per-unit spike counts in ``n_lags`` bins of history before each time of ``at``.

    Lag ``k`` of time ``t`` counts spikes ``s`` with ``t + offset - (k + 1) * bin_size <= s <
    t + offset - k * bin_size`` (both edges evaluated by exactly that expression: the module's
    rule, on a grid that moves with ``t``).

    Parameters
    ----------
    times, unit_index : ndarray, shape (n_spikes,)
        Spike times (sorted or not) and units in ``[0, n_units)``.
    n_units : int
        Number of units.
    at : ndarray, shape (T,)
        Times at which features are wanted (any order).
    bin_size : float
        Bin width in seconds.
    n_lags : int
        Bins of history per time.
    offset : float
        Shift of the history window (0: causal, only spikes before ``t``).

    Returns
    -------
    ndarray of int32, shape (T, n_lags, n_units)

    Notes
    -----
    For each lag edge ``E_k = at + offset - k * bin_size`` (sorted when ``at`` is), the count
    of unit ``u`` below ``E_k[j]`` is a cumulative sum over ``j`` of where each spike first
    enters (one ``searchsorted`` + one ``bincount`` per edge); a lag's counts are the difference
    of two consecutive edges. Cost O(n_lags * (n_spikes log T + T * n_units)).
    """
    at = np.asarray(at, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    unit_index = np.asarray(unit_index, dtype=np.int64)
    order = None
    if at.size > 1 and (np.diff(at) < 0).any():
        order = np.argsort(at, kind="stable")
        at = at[order]
    n = len(at)
    below = np.empty((n_lags + 1, n, n_units), dtype=np.int32)
    for k in range(n_lags + 1):  # a loop over edges, not spikes
        edge = at + offset - k * bin_size
        first = np.searchsorted(edge, times, side="right")  # first j with edge[j] > s
        enter = np.bincount(first * n_units + unit_index, minlength=(n + 1) * n_units)
        np.cumsum(enter[: n * n_units].reshape(n, n_units), axis=0, out=below[k])
    out = np.moveaxis(below[:-1] - below[1:], 0, 1)  # (T, n_lags, n_units)
    if order is not None:
        unsorted = np.empty_like(out)
        unsorted[order] = out
        out = unsorted
    return np.ascontiguousarray(out)
