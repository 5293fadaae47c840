"""POYO's stitched evaluation: overlapping windows -> whole-session predictions -> R^2 per session.

Windows of the evaluation domain overlap by half (POYO's protocol); every target sample gets the
mean of the predictions of all windows that contain it
(:func:`~neurofm.evaluation.stitching.stitch`). Scores are computed on
:func:`~neurofm.data.targets.evaluation_targets`, the points every decoder (the baselines
included) is scored on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from neurofm.data.sampling import SequentialWindowSampler
from neurofm.data.signals import Intervals
from neurofm.data.targets import evaluation_targets
from neurofm.errors import InvalidDataError
from neurofm.evaluation.stitching import stitch
from neurofm.metrics import r2_score
from neurofm.models.poyo import POYO
from neurofm.tokenizers.spikes import SpikeTokenizer, TargetScaler, collate
from neurofm.training.datasets import OpenRecordings, WindowDataset, split_domains_of

__all__ = ["EvalResult", "SessionPrediction", "evaluate_poyo"]


@dataclass
class SessionPrediction:
    """Stitched predictions of one recording on the evaluation points."""

    recording_id: str
    timestamps: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray
    r2: float


@dataclass
class EvalResult:
    """R^2 per session and their mean, with the stitched predictions for plots."""

    split: str
    sessions: dict[str, SessionPrediction] = field(default_factory=dict)

    @property
    def r2(self) -> dict[str, float]:
        """R^2 of each session."""
        return {rid: s.r2 for rid, s in self.sessions.items()}

    @property
    def mean_r2(self) -> float:
        """Mean R^2 over sessions (NaN when there is none)."""
        return float(np.mean(list(self.r2.values()))) if self.sessions else float("nan")


@torch.no_grad()
def evaluate_poyo(
    model: POYO,
    scaler: TargetScaler,
    catalog: str | Path,
    target: str,
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
    scaler : TargetScaler
        The target's z-scoring, saved with the model.
    catalog : str or Path
        Catalog folder.
    target : str
        Behaviour signal to decode (e.g. ``"hand_vel"``).
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
        R^2 per session and the stitched predictions.

    Raises
    ------
    InvalidDataError
        No recording has the split, or some evaluation point is covered by no window.
        Recordings whose units or session are not in the model's vocabulary raise an error too
        (use fine-tuning to add them).
    """
    with OpenRecordings(catalog) as recs:  # each recording opened once, for everything below
        if domains is None:
            domains = split_domains_of(recs, split, recordings)
        if not domains:
            raise InvalidDataError(f"{recs.path}: no recording has a non-empty {split}_domain")
        stitched = _stitched_predictions(
            model, scaler, recs, domains, target, step, batch_size, device
        )
        result = EvalResult(split)
        for rid, (times, preds) in stitched.items():
            truth = evaluation_targets(recs.get(rid), target, split, domains[rid])
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
            predicted = scaler.inverse(preds[idx])
            result.sessions[rid] = SessionPrediction(
                rid, truth.timestamps, truth.values, predicted, r2_score(truth.values, predicted)
            )
    return result


def _stitched_predictions(
    model: POYO,
    scaler: TargetScaler,
    recs: OpenRecordings,
    domains: dict[str, Intervals],
    target: str,
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
