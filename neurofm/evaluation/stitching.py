"""Overlapping windows -> whole-recording predictions: each point gets the mean over windows.

Evaluation windows overlap (by half, POYO's and SAMBA's protocol), so most points are predicted
by more than one window. Points are matched by their absolute time (:func:`stitch`, rounded to
the microsecond so float noise cannot split one sample in two) or by their index on a regular
grid such as fMRI volumes (:class:`OverlapMean`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["OverlapMean", "stitch"]

_KEY_SCALE = 1e6  # microseconds


def _keys(times: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(times, dtype=np.float64) * _KEY_SCALE).astype(np.int64)


def stitch(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` over duplicate ``times``.

    Parameters
    ----------
    times : numpy.ndarray
        (N,) seconds; times within half a microsecond are the same point.
    values : numpy.ndarray
        (N, ...) predictions at those times.

    Returns
    -------
    tuple of numpy.ndarray
        Sorted unique times (U,) and the mean of the values at each (U, D), float64.
    """
    keys = _keys(times)
    uniq, inverse = np.unique(keys, return_inverse=True)
    values = np.asarray(values, dtype=np.float64).reshape(len(keys), -1)
    sums = np.zeros((len(uniq), values.shape[1]))
    np.add.at(sums, inverse, values)
    counts = np.bincount(inverse, minlength=len(uniq))[:, None]
    return uniq / _KEY_SCALE, sums / counts


class OverlapMean:
    """Running mean of window predictions over the points of a regular grid (e.g. volumes).

    Parameters
    ----------
    n_points : int
        Points on the grid (e.g. volumes of a run).
    widths : dict of str to int
        Name and width of each predicted quantity: ``{"pred": P, "hidden": P * h}``.

    Examples
    --------
    >>> acc = OverlapMean(10, {"pred": 2})
    >>> acc.add(0, {"pred": np.ones((4, 2))})
    >>> acc.add(2, {"pred": 3 * np.ones((4, 2))})
    >>> points = acc.covered()
    >>> acc.mean("pred", points)[:, 0]
    array([1., 1., 2., 2., 3., 3.])
    """

    def __init__(self, n_points: int, widths: dict[str, int]) -> None:
        self.sums = {name: np.zeros((n_points, width)) for name, width in widths.items()}
        self.count = np.zeros(n_points)

    def add(self, start: int, values: dict[str, np.ndarray]) -> None:
        """Add one window's predictions, (W, width) each, for points ``start .. start + W - 1``."""
        w = len(next(iter(values.values())))
        sl = slice(start, start + w)
        for name, v in values.items():
            self.sums[name][sl] += v
        self.count[sl] += 1

    def covered(self) -> np.ndarray:
        """Indices of the points at least one window predicted."""
        return np.flatnonzero(self.count > 0)

    def mean(self, name: str, points: np.ndarray) -> np.ndarray:
        """The mean prediction of ``name`` at ``points`` (each must be covered)."""
        return self.sums[name][points] / self.count[points][:, None]
