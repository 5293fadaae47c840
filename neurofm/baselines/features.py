"""Spike-count features of the binned baselines (Wiener filter, GRU), read from recordings.

:class:`Binning` says how spikes become features; the ``recording_*`` functions read a (lazy)
:class:`~neurofm.data.Recording` window by window, so memory grows with the requested times, not
with the recording. The counting itself, and its bin-edge rule (half-open bins whose edges are
evaluated as ``start + k * bin_size``), is the data layer's: :mod:`neurofm.data.binning`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofm.data.binning import lagged_counts
from neurofm.data.recording import Recording
from neurofm.data.signals import Signal
from neurofm.errors import InvalidDataError

__all__ = ["Binning", "recording_bins", "recording_lagged_counts", "spikes_of"]


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


def spikes_of(rec: Recording, spikes: str = "spikes") -> Signal:
    """The (lazy) spikes signal of ``rec``, or an :class:`InvalidDataError` naming both.

    Parameters
    ----------
    rec : Recording
        The recording.
    spikes : str
        Name of its spikes signal.

    Returns
    -------
    Signal
        A :class:`~neurofm.data.Spikes` or its lazy, HDF5-backed view.
    """
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

    Parameters
    ----------
    rec : Recording
        The recording (lazy or in memory).
    at : ndarray, shape (T,)
        Target sample times in seconds, any order.
    binning : Binning
        Bins, lags, offset and transform.
    spikes : str
        Name of the spikes signal.
    chunk : int
        Target times per window read.

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
    """Transformed counts of bins ``first <= k < stop`` of the grid of ``rec`` from time 0.

    The grid is ``[k * bin_size, (k + 1) * bin_size)``, so bins of different calls line up;
    only the spikes of ``[first * bin_size, stop * bin_size)`` are read, and binned relative to
    ``first * bin_size`` (:meth:`neurofm.data.Spikes.binned`).

    Parameters
    ----------
    rec : Recording
        The recording.
    binning : Binning
        Bin width and transform (lags and offset are not used).
    first, stop : int
        Bins ``[first, stop)`` of the grid.
    spikes : str
        Name of the spikes signal.

    Returns
    -------
    ndarray of float32, shape (stop - first, n_units)
    """
    sig = spikes_of(rec, spikes)
    b = binning.bin_size
    return binning.transform(sig.window(first * b, stop * b).binned(b, stop - first))
