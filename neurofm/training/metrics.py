"""Metrics and the evaluation contract shared by POYO and the baselines.

Every decoder is scored on the same points: the target's own samples that fall inside a
recording's evaluation domain (e.g. ``test_domain``), in the target's physical units. R^2 is
computed per output dimension and averaged (scikit-learn's and torchmetrics' "uniform average").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofm.data.recording import Recording
from neurofm.data.signals import Intervals
from neurofm.errors import InvalidDataError

__all__ = ["EvalTargets", "evaluation_targets", "pearson_r", "r2_score"]


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


@dataclass
class EvalTargets:
    """The target's samples inside an evaluation domain of one recording."""

    recording_id: str
    timestamps: np.ndarray  # (T,) seconds from the recording's start
    values: np.ndarray  # (T, D) in the target's units


def evaluation_targets(
    rec: Recording, target: str, split: str = "test", domain: Intervals | None = None
) -> EvalTargets:
    """The points every decoder is scored on for ``rec`` and ``split`` (or ``domain``).

    Raises
    ------
    InvalidDataError
        If the recording has no ``<split>_domain`` or no ``target`` signal.
    """
    domain_name = f"{split}_domain"
    for name in (target,) if domain is not None else (target, domain_name):
        if name not in rec:
            raise InvalidDataError(
                f"recording {rec.id!r} has no signal {name!r} (has {sorted(rec.signals)}); "
                "ingest it with a dataset card that defines the splits"
            )
    series = rec[target].load()
    times = np.asarray(series.timestamps, dtype=np.float64)
    values = series.data if series.kind == "regular" else series.values
    domain = domain if domain is not None else rec[domain_name].load()
    inside = domain.contains(times)
    return EvalTargets(rec.id, times[inside], np.asarray(values)[inside])
