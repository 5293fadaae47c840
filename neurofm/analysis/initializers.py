"""Initial recurrent weights of controlled rank and structure.

All constructors start from a base matrix (by default ``W0 = g N(0, 1) / sqrt(N)``, the paper's
random init) and keep its Frobenius norm, so conditions differ only in how that norm is spread
over singular directions, as in Liu et al. (ICLR 2024):

* :func:`svd_truncate`: keep the top ``r`` singular triplets (the paper's rank sweep);
* :func:`spectral_decay`: the same singular vectors with ``sigma_i ~ i^-alpha`` (continuous
  effective rank);
* :func:`task_aligned`: the top ``r`` singular values and left vectors of ``W0`` with right
  singular vectors supplied by the task (the RNN analogue of the paper's aligned init
  ``W1 ~ u beta^T``, Proposition 1);
* :func:`from_connectivity`: a measured connectivity matrix (e.g. spike-count correlations of a
  recording) rescaled to a chosen spectral radius, with :func:`shuffled_control`.

Matrices are torch tensors (float32) so they drop straight into a model.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from neurofm.errors import InvalidDataError

__all__ = [
    "from_connectivity",
    "low_rank_init",
    "random_gaussian",
    "shuffled_control",
    "spectral_decay",
    "spectral_radius",
    "svd_truncate",
    "task_aligned",
]


def random_gaussian(n: int, gain: float = 1.5, seed: int = 0) -> torch.Tensor:
    """``gain * N(0, 1) / sqrt(n)``, shape ``(n, n)``: spectral radius about ``gain``."""
    gen = torch.Generator().manual_seed(int(seed))
    return gain * torch.randn(n, n, generator=gen) / np.sqrt(n)


def _check_rank(rank: int, n: int) -> None:
    if not 1 <= rank <= n:
        raise InvalidDataError(f"rank must be in [1, {n}] for a {n}x{n} matrix, got {rank}")


def _rescale(w: torch.Tensor, norm: float) -> torch.Tensor:
    current = float(torch.linalg.matrix_norm(w))
    if current == 0:
        raise InvalidDataError("cannot rescale an all-zero matrix to a target norm")
    return w * (norm / current)


def svd_truncate(
    w0: torch.Tensor, rank: int, preserve: Literal["fro"] | None = "fro"
) -> torch.Tensor:
    """Rank-``rank`` truncation of ``w0``'s SVD, rescaled to ``||w0||_F`` (``preserve="fro"``).

    Every rank shares the base's singular vectors, so a rank sweep from one ``w0`` changes only
    how the (fixed) norm is spread.
    """
    _check_rank(rank, min(w0.shape))
    u, s, vt = torch.linalg.svd(w0)
    w = (u[:, :rank] * s[:rank]) @ vt[:rank]
    return _rescale(w, float(torch.linalg.matrix_norm(w0))) if preserve == "fro" else w


def spectral_decay(w0: torch.Tensor, exponent: float) -> torch.Tensor:
    """``w0``'s singular vectors with singular values ``~ i^-exponent``, at ``||w0||_F``.

    ``exponent = 0`` gives a flat spectrum (maximal effective rank); large exponents approach
    rank one.
    """
    if exponent < 0:
        raise InvalidDataError(f"spectral decay exponent must be >= 0, got {exponent}")
    u, _, vt = torch.linalg.svd(w0)
    s = torch.arange(1, u.shape[1] + 1, dtype=w0.dtype) ** (-float(exponent))
    return _rescale((u * s) @ vt, float(torch.linalg.matrix_norm(w0)))


def task_aligned(w0: torch.Tensor, right: torch.Tensor, rank: int | None = None) -> torch.Tensor:
    """Rank-``r`` weights whose right singular vectors are task directions.

    ``W = U0[:, :r] diag(S0[:r]) right[:r]``, rescaled to ``||w0||_F``: the top ``r`` singular
    values and left singular vectors of the base ``w0`` (so its random output directions and
    spectrum are those of :func:`svd_truncate` at the same rank) and rows of ``right``
    (orthonormal, shape ``(r, n)``) as the input directions. Only the alignment differs from a
    random rank-``r`` init.
    """
    rank = right.shape[0] if rank is None else rank
    _check_rank(rank, min(w0.shape))
    if right.shape[0] < rank or right.shape[1] != w0.shape[1]:
        raise InvalidDataError(
            f"task_aligned: need {rank} right directions of length {w0.shape[1]}, "
            f"got shape {tuple(right.shape)}"
        )
    u, s, _ = torch.linalg.svd(w0)
    w = (u[:, :rank] * s[:rank]) @ right[:rank].to(w0.dtype)
    return _rescale(w, float(torch.linalg.matrix_norm(w0)))


def low_rank_init(
    n: int,
    rank: int,
    gain: float = 1.5,
    mode: Literal["svd_truncate", "spectral_decay"] = "svd_truncate",
    seed: int = 0,
    exponent: float = 1.0,
) -> torch.Tensor:
    """A random ``n x n`` init at the Frobenius norm of ``gain N(0,1)/sqrt(n)``, of low rank.

    ``mode="svd_truncate"`` keeps ``rank`` singular triplets; ``"spectral_decay"`` uses the
    power-law spectrum ``i^-exponent`` instead (``rank`` is then ignored). For task-aligned
    weights see :func:`task_aligned`.
    """
    w0 = random_gaussian(n, gain, seed)
    if mode == "svd_truncate":
        return svd_truncate(w0, rank)
    if mode == "spectral_decay":
        return spectral_decay(w0, exponent)
    raise InvalidDataError(f"low_rank_init: unknown mode {mode!r}")


def spectral_radius(w: torch.Tensor | np.ndarray) -> float:
    """Largest eigenvalue modulus."""
    arr = w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
    return float(np.abs(np.linalg.eigvals(arr.astype(np.float64))).max())


def from_connectivity(matrix: np.ndarray | torch.Tensor, radius: float = 1.5) -> torch.Tensor:
    """A measured connectivity matrix rescaled to spectral radius ``radius``.

    Parameters
    ----------
    matrix : array-like, shape (n, n)
        E.g. :func:`neurofm.analysis.windows.spike_count_correlation` of a recording, or a
        coupling estimate; its diagonal is zeroed (no self-connections).
    radius : float
        Target spectral radius (holding it fixed across conditions controls for the stability
        confound the paper discusses, App. Fig. 9).
    """
    arr = np.array(matrix.detach().cpu() if isinstance(matrix, torch.Tensor) else matrix, float)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise InvalidDataError(f"connectivity: expected a square matrix, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidDataError("connectivity: contains NaN or infinite values")
    np.fill_diagonal(arr, 0.0)
    rho = spectral_radius(arr)
    if rho == 0:
        raise InvalidDataError("connectivity: spectral radius is 0 (no off-diagonal structure)")
    return torch.as_tensor(arr * (radius / rho), dtype=torch.float32)


def shuffled_control(w: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``w``'s off-diagonal entries randomly permuted: same weights and Frobenius norm, no
    structure (so a higher effective rank). The diagonal stays zero.
    """
    n = w.shape[0]
    off = ~torch.eye(n, dtype=torch.bool)
    gen = torch.Generator().manual_seed(int(seed))
    values = w[off]
    out = torch.zeros_like(w)
    out[off] = values[torch.randperm(values.numel(), generator=gen)]
    return out
