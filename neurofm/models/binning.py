"""Spike counts in time bins: the input of the binned baselines (Wiener filter, GRU).

Two views of the same counts, both exact and vectorised (no Python loop over spikes):

* :func:`bin_spikes` counts every unit's spikes on a regular grid of bins
  ``[start + k * bin_size, start + (k + 1) * bin_size)``, for sequence models.
* :func:`lagged_counts` gives, at each target sample time ``t``, the counts in ``n_lags`` bins of
  its own history: lag ``k`` (0 = most recent) covers
  ``[t + offset - (k + 1) * bin_size, t + offset - k * bin_size)``. The bins move with ``t``, so
  a decoder is read out at the target's exact sample times, whatever their rate.

The ``recording_*`` helpers read spikes from a (lazy) :class:`~neurofm.data.Recording` window by
window, so memory grows with the requested times, not with the recording.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofm.data.recording import Recording
from neurofm.errors import InvalidDataError

__all__ = [
    "Binning",
    "bin_spikes",
    "lagged_counts",
    "recording_bins",
    "recording_lagged_counts",
    "spikes_of",
]


@dataclass(frozen=True)
class Binning:
    """How spikes become features.

    Attributes
    ----------
    bin_size : float
        Bin width in seconds (20 ms: fine enough for reaching velocity, coarse enough that
        counts are not all 0/1).
    n_lags : int
        Bins of history per target sample. 10 bins of 20 ms = 200 ms, which spans the ~100 ms
        by which motor cortex leads movement plus the preparatory build-up before it.
    offset : float
        Shifts the history window: the bins cover ``[t + offset - n_lags * bin_size,
        t + offset)``. 0 means causal (only spikes before ``t``); a positive offset also uses
        spikes after ``t``.
    sqrt : bool
        Square-root transform the counts (stabilises Poisson variance).
    """

    bin_size: float = 0.02
    n_lags: int = 10
    offset: float = 0.0
    sqrt: bool = False

    def __post_init__(self) -> None:
        if not (np.isfinite(self.bin_size) and self.bin_size > 0):
            raise InvalidDataError(f"binning.bin_size: must be > 0 s, got {self.bin_size}")
        if int(self.n_lags) != self.n_lags or self.n_lags < 1:
            raise InvalidDataError(f"binning.n_lags: must be an integer >= 1, got {self.n_lags}")
        if not np.isfinite(self.offset):
            raise InvalidDataError(f"binning.offset: must be finite, got {self.offset}")

    @property
    def history(self) -> float:
        """Seconds of spikes before ``t + offset`` that one feature vector sees."""
        return self.n_lags * self.bin_size

    def transform(self, counts: np.ndarray) -> np.ndarray:
        """Counts as float32, square-rooted if :attr:`sqrt`."""
        out = counts.astype(np.float32)
        return np.sqrt(out, out=out) if self.sqrt else out


def bin_spikes(
    times: np.ndarray,
    unit_index: np.ndarray,
    n_units: int,
    start: float,
    n_bins: int,
    bin_size: float,
) -> np.ndarray:
    """Spike counts per unit on a regular grid.

    Bin ``k`` is ``[edges[k], edges[k + 1])`` with ``edges = start + bin_size * arange(n_bins
    + 1)``; spikes outside ``[edges[0], edges[-1])`` are ignored.

    Returns
    -------
    ndarray of int64, shape (n_bins, n_units)
    """
    times = np.asarray(times, dtype=np.float64)
    unit_index = np.asarray(unit_index, dtype=np.int64)
    edges = start + bin_size * np.arange(n_bins + 1)
    k = np.searchsorted(edges, times, side="right") - 1
    keep = (k >= 0) & (k < n_bins)
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
    t + offset - k * bin_size`` (both edges evaluated by exactly that expression).

    Parameters
    ----------
    times, unit_index : ndarray, shape (n_spikes,)
        Spike times (sorted or not) and units in ``[0, n_units)``.
    at : ndarray, shape (T,)
        Times at which features are wanted (any order).

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


# --------------------------------------------------------------------------------------------
# from recordings
# --------------------------------------------------------------------------------------------


def spikes_of(rec: Recording, spikes: str = "spikes") -> object:
    """The (lazy) spikes signal of ``rec``, or an :class:`InvalidDataError` naming both."""
    if spikes not in rec or rec[spikes].kind != "spikes":
        raise InvalidDataError(
            f"recording {rec.id!r} has no spikes signal {spikes!r} (has {sorted(rec.signals)})"
        )
    return rec[spikes]


def recording_lagged_counts(
    rec: Recording,
    at: np.ndarray,
    binning: Binning,
    spikes: str = "spikes",
    chunk: int = 2048,
) -> np.ndarray:
    """Transformed lagged counts at times ``at`` of ``rec``, flattened to features.

    Spikes are read window by window (``chunk`` target times at a time), so only the history
    that the requested times need is loaded.

    Returns
    -------
    ndarray of float32, shape (T, n_lags * n_units)
        Feature ``k * n_units + u`` is unit ``u``'s (transformed) count at lag ``k``.
    """
    sig = spikes_of(rec, spikes)
    n_units = len(sig.units)
    at = np.asarray(at, dtype=np.float64)
    order = np.argsort(at, kind="stable")
    out = np.empty((len(at), binning.n_lags * n_units), dtype=np.float32)
    for lo in range(0, len(at), chunk):
        idx = order[lo : lo + chunk]
        t = at[idx]
        # Window start a, all times relative to it (spike times come back as s - a).
        a = float(t[0]) + binning.offset - binning.history - binning.bin_size
        b = float(t[-1]) + binning.offset + binning.bin_size
        win = sig.window(a, b)
        counts = lagged_counts(
            win.timestamps,
            win.unit_index,
            n_units,
            t - a,
            binning.bin_size,
            binning.n_lags,
            binning.offset,
        )
        out[idx] = binning.transform(counts.reshape(len(t), -1))
    return out


def recording_bins(
    rec: Recording,
    binning: Binning,
    first: int,
    stop: int,
    spikes: str = "spikes",
) -> np.ndarray:
    """Transformed counts of bins ``first <= k < stop`` of the global grid of ``rec``.

    The grid is ``[k * bin_size, (k + 1) * bin_size)`` from time 0, so bins of different
    calls line up; only the spikes of ``[first * bin_size, stop * bin_size)`` are read.

    Returns
    -------
    ndarray of float32, shape (stop - first, n_units)
    """
    sig = spikes_of(rec, spikes)
    b = binning.bin_size
    win = sig.window(first * b, stop * b)
    counts = bin_spikes(win.timestamps, win.unit_index, len(sig.units), 0.0, stop - first, b)
    return binning.transform(counts)
