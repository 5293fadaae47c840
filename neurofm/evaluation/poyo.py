"""POYO's stitched evaluation: overlapping windows -> whole-session predictions -> a score per
session: R^2 for a regression target, balanced accuracy for a class target.

Windows of the evaluation domain overlap by half (POYO's protocol); every target point gets the
mean of the predictions (values, or class logits) of all windows that contain it
(:func:`~neurofm.evaluation.stitching.stitch`). Scores are computed on
:func:`~neurofm.data.targets.evaluation_targets`, the points every decoder (the baselines
included) is scored on; points with a non-finite value are masked there and counted.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from neurofm import display
from neurofm.data.sampling import SequentialWindowSampler
from neurofm.data.signals import Intervals
from neurofm.data.targets import TrialTarget, as_target, evaluation_targets, target_label
from neurofm.errors import InvalidDataError
from neurofm.evaluation.stitching import stitch
from neurofm.metrics import balanced_accuracy, r2_score
from neurofm.models.poyo import POYO
from neurofm.tokenizers.spikes import ClassEncoder, SpikeTokenizer, TargetScaler, collate
from neurofm.training.datasets import OpenRecordings, WindowDataset, split_domains_of

__all__ = ["EvalResult", "SessionPrediction", "evaluate_poyo"]

log = logging.getLogger(__name__)

#: How reports name each metric.
METRIC_NAMES = {"r2": "R^2", "balanced_accuracy": "balanced accuracy"}


@dataclass
class SessionPrediction:
    """Stitched predictions of one recording on the evaluation points.

    For a class target ``truth`` and ``prediction`` hold class indices, shape ``(T, 1)``
    (-1 for a true label the model never saw), ``r2`` is NaN and ``score`` the balanced
    accuracy.
    """

    recording_id: str
    timestamps: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray
    r2: float
    n_masked: int = 0  # evaluation points left out (non-finite target)
    score: float = float("nan")  # the result's metric (R^2 or balanced accuracy)
    channels: tuple[str, ...] = ()  # names of the target's channels (plots), when it has them
    unit: str = ""  # the target's unit (plots), e.g. "m/s"

    def __post_init__(self) -> None:
        if np.isnan(self.score) and not np.isnan(self.r2):
            self.score = self.r2

    def __repr__(self) -> str:
        shape = np.shape(self.truth)
        dims = f" x {shape[1]} ({display.names(self.channels)})" if len(shape) > 1 else ""
        unit = f", {self.unit}" if self.unit else ""
        masked = f", {self.n_masked:,} masked" if self.n_masked else ""
        return (
            f"<SessionPrediction {self.recording_id!r}: score {display.number(self.score)} on "
            f"{display.count(len(self.timestamps), 'point')}{dims}{unit}{masked}>"
        )


@dataclass
class EvalResult:
    """A score per session (R^2, or balanced accuracy for a class target), with the stitched
    predictions for plots."""

    split: str
    sessions: dict[str, SessionPrediction] = field(default_factory=dict)
    metric: str = "r2"  # or "balanced_accuracy"
    target: str = ""  # how reports name the target
    classes: tuple[str, ...] = ()  # a class target's classes

    @property
    def r2(self) -> dict[str, float]:
        """R^2 of each session (NaN for a class target: see :attr:`scores`)."""
        return {rid: s.r2 for rid, s in self.sessions.items()}

    @property
    def mean_r2(self) -> float:
        """Mean R^2 over sessions (NaN when there is none)."""
        return float(np.mean(list(self.r2.values()))) if self.sessions else float("nan")

    @property
    def scores(self) -> dict[str, float]:
        """The metric of each session (:attr:`metric` says which)."""
        return {rid: s.score for rid, s in self.sessions.items()}

    @property
    def mean_score(self) -> float:
        """Mean of :attr:`scores` over sessions (NaN when there is none)."""
        return float(np.mean(list(self.scores.values()))) if self.sessions else float("nan")

    @property
    def metric_name(self) -> str:
        """``R^2`` or ``balanced accuracy``."""
        return METRIC_NAMES[self.metric]

    @property
    def n_masked(self) -> int:
        """Evaluation points left out over all sessions (non-finite target values)."""
        return sum(s.n_masked for s in self.sessions.values())

    def _headline(self) -> str:
        what = f"{self.target} " if self.target else ""
        return (
            f"{self.split} split, {what}{self.metric_name}: mean "
            f"{display.number(self.mean_score)} over {display.count(len(self.sessions), 'session')}"
        )

    def __repr__(self) -> str:
        per = ", ".join(f"{rid} {display.number(v)}" for rid, v in self.scores.items())
        return f"<EvalResult {self._headline()}{' (' + per + ')' if per else ''}>"

    def _repr_html_(self) -> str:
        rows = [
            (rid, display.number(s.score), f"{len(s.timestamps):,}", f"{s.n_masked:,}")
            for rid, s in self.sessions.items()
        ]
        header = ("session", self.metric_name, "points", "masked")
        return display.html_table(f"EvalResult: {self._headline()}", rows, header)


@torch.no_grad()
def evaluate_poyo(
    model: POYO,
    scaler: TargetScaler | ClassEncoder,
    catalog: str | Path,
    target: Any,
    split: str = "test",
    recordings: list[str] | None = None,
    step: float | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    domains: dict[str, Intervals] | None = None,
) -> EvalResult:
    """Predict every window of ``split`` and score the stitched predictions per session.

    Parameters
    ----------
    model : POYO
        A trained model (its unit and session vocabularies must hold the recordings).
    scaler : TargetScaler or ClassEncoder
        The target's z-scoring (or a class target's classes), saved with the model.
    catalog : str or Path
        Catalog folder.
    target : str or TrialTarget
        Behaviour signal to decode (e.g. ``"hand_vel"``), or a per-trial target.
    split : str
        Whose ``<split>_domain`` to score.
    recordings : list of str, optional
        Only these recordings (default: every one with a non-empty split).
    step : float, optional
        Window step in seconds (default half a window).
    batch_size : int
        Windows per forward pass.
    device : str or torch.device
        Where the model runs.
    domains : dict of str to Intervals, optional
        Replace the split's domains (e.g. single trials, for prequential coding).

    Returns
    -------
    EvalResult
        R^2 per session (balanced accuracy for a class target) and the stitched predictions.
        A session with fewer than two points to score (all masked, or no trial) is left out,
        with a warning.

    Raises
    ------
    InvalidDataError
        No recording has the split (naming the dataset card and its ``evaluate_on``), or some
        evaluation point is covered by no window. Recordings whose units or session are not
        in the model's vocabulary raise an error too (use fine-tuning to add them).
    """
    target = as_target(target)
    is_class = isinstance(target, TrialTarget) and target.is_class
    if is_class != isinstance(scaler, ClassEncoder):
        raise InvalidDataError(
            f"the target {target_label(target)} is "
            f"{'a class' if is_class else 'a regression'} target but the model was trained on "
            f"{'classes' if isinstance(scaler, ClassEncoder) else 'values'}"
        )
    with OpenRecordings(catalog) as recs:  # each recording opened once, for everything below
        if domains is None:
            domains = split_domains_of(recs, split, recordings)
        if not domains:
            raise InvalidDataError(_empty_split_message(recs, split, recordings))
        stitched = _stitched_predictions(
            model, scaler, recs, domains, target, step, batch_size, device
        )
        result = EvalResult(
            split,
            metric="balanced_accuracy" if is_class else "r2",
            target=target_label(target),
            classes=scaler.classes if isinstance(scaler, ClassEncoder) else (),
        )
        for rid, (times, preds) in stitched.items():
            truth = evaluation_targets(recs.get(rid), target, split, domains[rid])
            if len(truth.timestamps) < 2:
                log.warning(
                    "%s: not scored on the %s split: %d %s point(s) to score (%d masked)",
                    rid,
                    split,
                    len(truth.timestamps),
                    target_label(target),
                    truth.n_masked,
                )
                continue
            # Window times are float32 relative times plus a float64 start: match on the sample
            # grid, allowing for that rounding.
            idx = np.searchsorted(times, truth.timestamps)
            idx = np.clip(idx, 1, len(times) - 1)
            left_closer = np.abs(times[idx - 1] - truth.timestamps) <= np.abs(
                times[idx] - truth.timestamps
            )
            idx = np.where(left_closer, idx - 1, idx)
            if np.abs(times[idx] - truth.timestamps).max(initial=0) > 1e-4:
                raise InvalidDataError(
                    f"{rid}: some evaluation points were not covered by a window"
                )
            if isinstance(scaler, ClassEncoder):
                guess = preds[idx].argmax(axis=1)  # the stitched (mean) logits' best class
                true_index = scaler.encode(truth.values)
                with warnings.catch_warnings():  # "y_pred contains classes not in y_true"
                    warnings.simplefilter("ignore", UserWarning)
                    score = balanced_accuracy(truth.values.astype(str), scaler.decode(guess))
                result.sessions[rid] = SessionPrediction(
                    rid,
                    truth.timestamps,
                    true_index.astype(np.float64)[:, None],
                    guess.astype(np.float64)[:, None],
                    float("nan"),
                    truth.n_masked,
                    score,
                )
                continue
            predicted = scaler.inverse(preds[idx])
            signal = recs.get(rid)[target] if isinstance(target, str) else None
            names = getattr(signal, "channels", None)
            result.sessions[rid] = SessionPrediction(
                rid,
                truth.timestamps,
                truth.values,
                predicted,
                r2_score(truth.values, predicted),
                truth.n_masked,
                channels=() if names is None else tuple(str(c) for c in names),
                unit=str(getattr(signal, "unit", "") or ""),
            )
        if not result.sessions:
            raise InvalidDataError(
                f"{recs.path}: no recording has two or more {target_label(target)} points to "
                f"score in its {split}_domain"
            )
    return result


def _empty_split_message(recs: OpenRecordings, split: str, recordings: list[str] | None) -> str:
    """No recording has the split: name the dataset card, and the split it would evaluate."""
    ids = recordings or recs.catalog.ids
    cards: set[str] = set()
    said: set[str] = set()
    for rid in ids:
        extra = recs.get(rid).metadata.extra
        cards.add(str(extra.get("dataset_card") or ""))
        said.add(str(extra.get("evaluate_on") or ""))
    cards.discard("")
    said.discard("")
    card = f"dataset card {', '.join(sorted(cards))!r}" if cards else "no dataset card"
    text = f"{recs.path}: no recording has a non-empty {split}_domain ({card})"
    if said and said != {split}:
        text += f"; the card evaluates on {', '.join(sorted(said))}: use that split"
    else:
        text += (
            f"; the card's splits leave {split} empty: evaluate another split (--split valid) "
            "or set splits.evaluate_on in the card"
        )
    return text


def _stitched_predictions(
    model: POYO,
    scaler: TargetScaler | ClassEncoder,
    recs: OpenRecordings,
    domains: dict[str, Intervals],
    target: str | TrialTarget,
    step: float | None,
    batch_size: int,
    device: str | torch.device,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{recording id: (times, z-scored predictions)}``, stitched over every window of the
    domains (sampler -> dataset -> tokenizer -> collate, as in training)."""
    c = model.config
    tokenizer = SpikeTokenizer(
        model.unit_emb.index,
        model.session_emb.index,
        c.window_length,
        c.latent_step,
        c.num_latents_per_step,
        target=target,
        scaler=scaler,
    )
    loader = DataLoader(
        WindowDataset(recs, tokenizer),
        batch_size=batch_size,
        sampler=SequentialWindowSampler(domains, c.window_length, step),
        collate_fn=collate,
    )
    was_training = model.training
    model.eval().to(device)
    pieces: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {rid: [] for rid in domains}
    for batch in loader:
        tensors = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        pred = model(**tensors).cpu().numpy()
        mask = batch["output_mask"].numpy()
        times = batch["output_timestamps"].numpy().astype(np.float64)
        for i, rid in enumerate(batch["recording_id"]):
            abs_times = times[i, mask[i]] + float(batch["absolute_start"][i])
            pieces[rid].append((abs_times, pred[i, mask[i]]))
    model.train(was_training)
    return {
        rid: stitch(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        for rid, parts in pieces.items()
    }
