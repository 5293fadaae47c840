"""The evaluation contract: the points every decoder is scored on.

Every decoder (POYO, SAMBA, the baselines) is scored on the same points: the target's own
samples that fall inside a recording's evaluation domain (e.g. ``test_domain``), in the
target's physical units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofm.data.recording import Recording
from neurofm.data.signals import Intervals
from neurofm.errors import InvalidDataError

__all__ = ["EvalTargets", "evaluation_targets"]


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
