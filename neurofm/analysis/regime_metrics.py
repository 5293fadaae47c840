"""Rich vs lazy metrics: how much a network changed while it learned.

Notation: ``0`` is before training, ``T`` after. Following Liu et al. (ICLR 2024), "lazy"
learning keeps weights, representations and the tangent kernel close to their initial values;
"rich" learning changes them:

* weight change ``||W(T) - W(0)||_F`` (bigger: richer; Chizat et al. 2019 on lazy training);
* representation alignment ``A(H0 H0^T, HT HT^T)`` of hidden states on a fixed probe set
  (lower: richer; Flesch et al. 2022);
* tangent-kernel alignment ``A(K(0), K(T))`` of the empirical NTK (lower: richer; George,
  Lajoie & Baratin 2022);
* sign similarity: the fraction of hidden activations whose sign is unchanged (with ReLU, the
  on/off pattern).

``A(K1, K2) = <K1, K2>_F / (||K1||_F ||K2||_F)`` is the uncentred kernel alignment the paper's
code uses (a cosine similarity of matrices).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch.func import jacrev

from neurofm.errors import InvalidDataError

__all__ = [
    "alignment",
    "empirical_ntk",
    "representation_alignment",
    "sign_similarity",
    "weight_change",
]


def _np(x: object) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def alignment(k1: object, k2: object) -> float:
    """Uncentred kernel alignment ``<K1, K2>_F / (||K1||_F ||K2||_F)``.

    Parameters
    ----------
    k1, k2 : array-like or torch.Tensor, same shape
        Kernel (Gram) matrices.

    Returns
    -------
    float
        In ``[-1, 1]``; 1 when the kernels are proportional. NaN if either is zero or not
        finite (e.g. after a diverged run).
    """
    a, b = _np(k1), _np(k2)
    if a.shape != b.shape:
        raise InvalidDataError(f"alignment: kernel shapes differ ({a.shape} vs {b.shape})")
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    if not np.isfinite(denom) or denom == 0:
        return float("nan")
    return float((a * b).sum() / denom)


def weight_change(w0: object, wt: object, relative: bool = False) -> float:
    """Frobenius norm of the change ``||W(T) - W(0)||_F`` (divided by ``||W(0)||_F`` if asked).

    The paper reports the absolute change; every rank condition of its sweep starts at the same
    ``||W(0)||_F``, so absolute and relative values order the conditions identically.
    """
    a, b = _np(w0), _np(wt)
    if a.shape != b.shape:
        raise InvalidDataError(f"weight_change: shapes differ ({a.shape} vs {b.shape})")
    change = float(np.linalg.norm(b - a))
    return change / float(np.linalg.norm(a)) if relative else change


def representation_alignment(h0: object, ht: object) -> float:
    """Alignment of the representation kernels ``H0 H0^T`` and ``HT HT^T``.

    Parameters
    ----------
    h0, ht : array-like, shape (trials, units)
        Hidden states on the same probe trials before and after training (the paper uses the
        last step of the decision period).
    """
    a, b = _np(h0), _np(ht)
    if a.ndim != 2 or a.shape != b.shape:
        raise InvalidDataError(
            f"representation_alignment: expected two (trials, units) arrays of the same shape, "
            f"got {a.shape} and {b.shape}"
        )
    return alignment(a @ a.T, b @ b.T)


def sign_similarity(h0: object, ht: object) -> float:
    """Fraction of activations whose sign is the same before and after training.

    With ReLU units the sign is the on/off state, so this is the stability of the active set.
    """
    a, b = _np(h0), _np(ht)
    if a.shape != b.shape:
        raise InvalidDataError(f"sign_similarity: shapes differ ({a.shape} vs {b.shape})")
    return float((np.sign(a) == np.sign(b)).mean())


def empirical_ntk(
    fn: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
    params: Mapping[str, torch.Tensor],
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Empirical neural tangent kernel ``K = J J^T`` with respect to ``params``.

    The Jacobian is built with :func:`torch.func.jacrev` (vectorised vector-Jacobian products),
    one row per output entry.

    Parameters
    ----------
    fn : callable
        Maps a dict of parameter tensors to the network's outputs (any shape; every entry is one
        row of ``J``, e.g. trials x time steps x output units).
    params : mapping of str to Tensor
        The parameters the kernel is taken with respect to (e.g. only ``w_rec``, as the paper).
    chunk_size : int, optional
        Rows per vectorised batch (bounds memory at ``chunk_size x n_params`` floats).

    Returns
    -------
    Tensor, shape (n_outputs, n_outputs)

    Examples
    --------
    >>> w = torch.randn(3, 4)
    >>> x = torch.randn(5, 4)
    >>> k = empirical_ntk(lambda p: x @ p["w"].T, {"w": w})   # (15, 15)
    """
    detached = {k: v.detach() for k, v in params.items()}
    jac = jacrev(lambda p: fn(p).reshape(-1), chunk_size=chunk_size)(detached)
    kernel = None
    for j in jac.values():
        flat = j.reshape(j.shape[0], -1)
        part = flat @ flat.T
        kernel = part if kernel is None else kernel + part
    if kernel is None:
        raise InvalidDataError("empirical_ntk: no parameters given")
    return kernel
