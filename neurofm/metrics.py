"""Scores every layer may import: R^2, Pearson r, balanced accuracy (numpy in, floats out).

R^2 is computed per output dimension and averaged (scikit-learn's and torchmetrics' "uniform
average"). The points a decoder is scored on are chosen by
:func:`neurofm.data.targets.evaluation_targets`.
"""

from __future__ import annotations

import warnings

import numpy as np

from neurofm.errors import InvalidDataError

__all__ = ["balanced_accuracy", "pearson_r", "r2_score"]


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination, averaged over output dimensions."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    if y_true.shape != y_pred.shape:
        raise InvalidDataError(f"r2_score: shapes differ {y_true.shape} vs {y_pred.shape}")
    if len(y_true) < 2:
        raise InvalidDataError("r2_score: need at least two samples")
    ss_res = ((y_true - y_pred) ** 2).sum(axis=0)
    ss_tot = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    return float(np.mean(1.0 - ss_res / np.maximum(ss_tot, 1e-300)))


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson correlation per column."""
    a = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    b = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    return (a * b).sum(0) / np.sqrt((a**2).sum(0) * (b**2).sum(0) + 1e-300)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (chance is 1 / n_classes).

    A prediction of a class absent from ``y_true`` (short test splits) counts as a miss, as
    the definition says; scikit-learn's warning about it is not passed on."""
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true", UserWarning)
        return float(balanced_accuracy_score(np.asarray(y_true), np.asarray(y_pred)))
