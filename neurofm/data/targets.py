"""The evaluation contract: what a decoder learns and the points every decoder is scored on.

A decoding target is either a behaviour series named by a string (``"hand_vel"``: its samples
are the points) or a :class:`TrialTarget`, a per-trial value read at an event time
(``{trials: tp, at: set_time}`` in a dataset card: one point per trial, at its ``set_time``,
valued ``tp``; with ``kind: class`` the value is a category).

Every decoder (POYO, SAMBA, the baselines) is scored on the same points: the target's points
that fall inside a recording's evaluation domain (e.g. ``test_domain``), in the target's
physical units. Points whose value is not finite (NaN gaps where a benchmark removed data) are
masked: never trained on, never scored, and counted (:attr:`EvalTargets.n_masked`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from neurofm.data.recording import Recording
from neurofm.data.signals import Intervals
from neurofm.errors import InvalidDataError

__all__ = [
    "EvalTargets",
    "TrialTarget",
    "as_target",
    "evaluation_split",
    "evaluation_targets",
    "finite_rows",
    "target_label",
    "target_samples",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialTarget:
    """A per-trial value decoded at an event time (a dataset card's ``{trials: ..., at: ...}``).

    Parameters
    ----------
    column : str
        Column of the interval table holding the value (``tp``, ``is_short``).
    at : str
        Time column of the table holding the event time the model is queried at
        (``set_time``).
    kind : {"regression", "class"}
        A number (scored by R^2) or a category (scored by balanced accuracy).
    table : str
        The interval table (``trials``).
    """

    column: str
    at: str
    kind: Literal["regression", "class"] = "regression"
    table: str = "trials"

    @property
    def label(self) -> str:
        """``tp@set_time``, with `` (class)`` for a category."""
        return f"{self.column}@{self.at}" + (" (class)" if self.kind == "class" else "")

    @property
    def is_class(self) -> bool:
        return self.kind == "class"


def as_target(value: Any) -> str | TrialTarget:
    """A target as the layers below the specs use it: a series name or a :class:`TrialTarget`.

    Parameters
    ----------
    value : str, TrialTarget, dict or a card's ``TrialTargetSpec``
        A dict may use the card's keys (``trials``, ``at``, ``kind``, ``table``) or the
        dataclass's (``column`` instead of ``trials``), as a checkpoint stores it.

    Returns
    -------
    str or TrialTarget

    Raises
    ------
    InvalidDataError
        Anything else.
    """
    if isinstance(value, str | TrialTarget):
        return value
    if hasattr(value, "model_dump"):  # the card's pydantic model
        value = value.model_dump()
    if isinstance(value, dict) and ("column" in value or "trials" in value) and "at" in value:
        return TrialTarget(
            column=str(value.get("column", value.get("trials"))),
            at=str(value["at"]),
            kind=value.get("kind", "regression"),
            table=str(value.get("table") or "trials"),
        )
    raise InvalidDataError(
        f"a decoding target is a series name or {{trials: <column>, at: <time column>}}, got "
        f"{value!r}"
    )


def target_label(target: Any) -> str:
    """How reports name a target: ``hand_vel``, ``tp@set_time``."""
    target = as_target(target)
    return target if isinstance(target, str) else target.label


def target_as_dict(target: str | TrialTarget) -> str | dict[str, str]:
    """Plain types for a checkpoint (a string, or the dataclass's fields)."""
    return target if isinstance(target, str) else dataclasses.asdict(target)


def finite_rows(values: np.ndarray) -> np.ndarray:
    """Rows of a (T,) or (T, D) numeric array whose every value is finite."""
    values = np.asarray(values)
    if values.dtype.kind not in "fc":
        return np.ones(len(values), dtype=bool)
    ok = np.isfinite(values)
    return ok.all(axis=tuple(range(1, ok.ndim))) if ok.ndim > 1 else ok


def target_samples(rec: Recording, target: Any) -> tuple[np.ndarray, np.ndarray]:
    """The target's points in ``rec`` (a recording or a window of one), unfiltered.

    Parameters
    ----------
    rec : Recording
        The recording (times from its start) or an in-memory window (times relative to it).
    target : str or TrialTarget
        A series name, or a per-trial value at an event time.

    Returns
    -------
    (ndarray, ndarray)
        Times ``(T,)`` in seconds and values: ``(T, D)`` floats for a series or a regression
        target, ``(T,)`` strings for a class target (its labels, ``str`` of each value). Trials
        without an event time (NaN) have no point.

    Raises
    ------
    InvalidDataError
        The series or the table is missing, or a column of a per-trial target is (the message
        lists what there is).
    """
    target = as_target(target)
    if isinstance(target, str):
        if target not in rec:
            raise InvalidDataError(
                f"recording {rec.id!r} has no target signal {target!r} (has {sorted(rec.signals)})"
            )
        series = rec[target].load()
        if series.kind not in ("regular", "irregular"):
            raise InvalidDataError(
                f"recording {rec.id!r}: the target {target!r} is {series.kind}, not a behaviour "
                "series; decode a per-trial value with {trials: <column>, at: <time column>}"
            )
        values = series.data if series.kind == "regular" else series.values
        return np.asarray(series.timestamps, dtype=np.float64), np.asarray(values)
    if target.table not in rec:
        raise InvalidDataError(
            f"recording {rec.id!r} has no {target.table!r} table for the target "
            f"{target.label} (has {sorted(rec.signals)})"
        )
    table = rec[target.table].load()
    for column in (target.column, target.at):
        if column not in table.columns:
            raise InvalidDataError(
                f"recording {rec.id!r}: {target.table!r} has no column {column!r} for the "
                f"target {target.label} (columns: {', '.join(sorted(table.columns))})"
            )
    times = np.asarray(table.columns[target.at], dtype=np.float64)
    raw = np.asarray(table.columns[target.column])
    has_time = np.isfinite(times)
    times, raw = times[has_time], raw[has_time]
    if target.is_class:
        return times, class_labels(raw)
    if raw.dtype.kind not in "biuf":
        raise InvalidDataError(
            f"recording {rec.id!r}: {target.table}.{target.column} holds {raw.dtype} values, "
            "not numbers; decode it as a category (kind: class)"
        )
    return times, raw.astype(np.float64).reshape(-1, 1)


def class_labels(values: np.ndarray) -> np.ndarray:
    """Labels of a category column as strings (``"True"``, ``"1"``, ``"R"``); NaN -> ``""``."""
    values = np.asarray(values)
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values.tolist()):
        if isinstance(v, bytes):
            v = v.decode()
        out[i] = "" if isinstance(v, float) and not np.isfinite(v) else str(v)
    return out


@dataclass
class EvalTargets:
    """The target's points inside an evaluation domain of one recording."""

    recording_id: str
    timestamps: np.ndarray  # (T,) seconds from the recording's start
    values: np.ndarray  # (T, D) in the target's units; (T,) labels for a class target
    n_masked: int = 0  # points inside the domain left out: not finite (or no class label)


def evaluation_targets(
    rec: Recording, target: Any, split: str = "test", domain: Intervals | None = None
) -> EvalTargets:
    """The points every decoder is scored on for ``rec`` and ``split`` (or ``domain``).

    Points whose value is not finite (or, for a class target, empty) are left out and counted
    in :attr:`EvalTargets.n_masked`.

    Raises
    ------
    InvalidDataError
        If the recording has no ``<split>_domain`` or no ``target``.
    """
    target = as_target(target)
    domain_name = f"{split}_domain"
    needed = [target if isinstance(target, str) else target.table]
    for name in needed if domain is not None else [*needed, domain_name]:
        if name not in rec:
            raise InvalidDataError(
                f"recording {rec.id!r} has no signal {name!r} (has {sorted(rec.signals)}); "
                "ingest it with a dataset card that defines the splits"
            )
    times, values = target_samples(rec, target)
    domain = domain if domain is not None else rec[domain_name].load()
    inside = domain.contains(times)
    times, values = times[inside], values[inside]
    if isinstance(target, TrialTarget) and target.is_class:
        ok = values != ""
    else:
        ok = finite_rows(values)
    n_masked = int((~ok).sum())
    if n_masked:
        log.info(
            "recording %r: %d of %d %s points in %s are masked (not finite)",
            rec.id,
            n_masked,
            len(ok),
            target_label(target),
            domain_name,
        )
        times, values = times[ok], values[ok]
    return EvalTargets(rec.id, times, values, n_masked)


def evaluation_split(recordings: Any) -> str:
    """The split ``evaluate`` scores by default: what the recordings' dataset card said.

    Parameters
    ----------
    recordings : iterable of Recording
        Recordings of one catalog; the card's ``splits.evaluate_on`` is stored in each one's
        metadata at ingest (``evaluate_on``).

    Returns
    -------
    str
        ``test`` unless the card said otherwise (or the recordings disagree).
    """
    said = {rec.metadata.extra.get("evaluate_on") for rec in recordings}
    said.discard(None)
    return said.pop() if len(said) == 1 else "test"
