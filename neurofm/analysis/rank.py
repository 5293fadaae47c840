"""Effective-rank measures of a weight matrix.

The hard rank of a truncated SVD says nothing about a matrix whose spectrum decays smoothly, or
about a measured connectivity matrix, so several continuous measures are offered. Which one the
paper used (Liu et al., ICLR 2024, "How connectivity structure shapes rich and lazy learning"):

* the rank sweep (their Fig. 1) is parameterised by the integer ``r`` of the SVD truncation,
  i.e. :func:`hard_rank` of the initial weights;
* for the experimentally driven connectivity (their Fig. 2) the paper reports the eigenvalue form
  ``sum_i |lambda_i| / (|lambda_1| N)`` (:func:`eigen_rank`), normalised to ``(0, 1]``.

The others are standard continuous surrogates, reported beside them in the sweep tables.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from neurofm.errors import InvalidDataError

__all__ = [
    "RANK_MEASURES",
    "effective_rank",
    "eigen_rank",
    "hard_rank",
    "participation_ratio",
    "roy_vetterli_rank",
    "stable_rank",
]

RankMeasure = Literal["hard", "stable", "participation", "entropy", "eigen"]
RANK_MEASURES: tuple[str, ...] = ("hard", "stable", "participation", "entropy", "eigen")


def _matrix(w: object, name: str = "weights") -> np.ndarray:
    arr = np.asarray(w.detach().cpu() if hasattr(w, "detach") else w, dtype=np.float64)
    if arr.ndim != 2 or 0 in arr.shape:
        raise InvalidDataError(f"{name}: expected a non-empty 2-D matrix, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidDataError(f"{name}: contains NaN or infinite values")
    return arr


def _singular_values(w: object) -> np.ndarray:
    return np.linalg.svd(_matrix(w), compute_uv=False)


def hard_rank(w: object, tol: float | None = None) -> int:
    """Number of singular values above ``tol``.

    This is the rank the SVD-truncation sweep controls: the paper's Fig. 1 x-axis. The default
    tolerance is numpy's, ``sigma_1 * max(shape) * eps``, with the machine epsilon of the
    input's own precision (a float32 matrix carries float32 rounding noise).
    """
    s = _singular_values(w)
    if tol is None:
        dtype = getattr(w, "dtype", np.float64)
        single = str(dtype) in ("float32", "torch.float32", "float16", "torch.float16")
        eps = np.finfo(np.float32 if single else np.float64).eps
        tol = s.max(initial=0.0) * max(s.size, *_matrix(w).shape) * eps
    return int((s > tol).sum())


def stable_rank(w: object) -> float:
    """Nuclear over operator norm, ``sum_i sigma_i / sigma_1`` (1 for rank one, up to N)."""
    s = _singular_values(w)
    return float(s.sum() / s[0]) if s[0] > 0 else 0.0


def participation_ratio(w: object) -> float:
    """``(sum_i sigma_i^2)^2 / sum_i sigma_i^4``: how many singular values carry the energy."""
    s2 = _singular_values(w) ** 2
    denom = float((s2**2).sum())
    return float(s2.sum() ** 2 / denom) if denom > 0 else 0.0


def roy_vetterli_rank(w: object) -> float:
    """Roy & Vetterli (2007): ``exp(H(p))`` with ``p_i = sigma_i / sum_j sigma_j``."""
    s = _singular_values(w)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def eigen_rank(w: object) -> float:
    """``sum_i |lambda_i| / (|lambda_1| N)`` over eigenvalues, in ``(0, 1]``.

    The measure the paper reports for its experimentally driven (connectome) initialisations;
    ``lambda_1`` is the eigenvalue of largest modulus. Needs a square matrix.
    """
    arr = _matrix(w)
    if arr.shape[0] != arr.shape[1]:
        raise InvalidDataError(f"weights: the eigenvalue form needs a square matrix ({arr.shape})")
    lam = np.abs(np.linalg.eigvals(arr))
    top = lam.max()
    return float(lam.sum() / (top * len(lam))) if top > 0 else 0.0


def effective_rank(w: object, kind: RankMeasure = "participation") -> float:
    """Effective rank of ``w`` by one of :data:`RANK_MEASURES`.

    Parameters
    ----------
    w : array-like or torch.Tensor, shape (m, n)
        The matrix.
    kind : {"hard", "stable", "participation", "entropy", "eigen"}
        ``hard``: numerical rank (the paper's Fig. 1); ``stable``: nuclear / operator norm;
        ``participation``: participation ratio of squared singular values; ``entropy``: Roy-
        Vetterli ``exp(H)``; ``eigen``: the paper's eigenvalue form for connectomes (Fig. 2).

    Returns
    -------
    float
    """
    funcs = {
        "hard": hard_rank,
        "stable": stable_rank,
        "participation": participation_ratio,
        "entropy": roy_vetterli_rank,
        "eigen": eigen_rank,
    }
    if kind not in funcs:
        raise InvalidDataError(
            f"effective_rank: unknown kind {kind!r} (expected one of {', '.join(RANK_MEASURES)})"
        )
    return float(funcs[kind](w))
