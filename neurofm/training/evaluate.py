"""Stitched evaluation: overlapping windows -> whole-session predictions -> R^2 per session.

Windows of the evaluation domain overlap by half (POYO's protocol); every target sample gets the
mean of the predictions of all windows that contain it, keyed by its absolute time (rounded to
the microsecond so float noise cannot split one sample in two).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from neurofm.data.catalog import Catalog
from neurofm.data.sampling import SequentialWindowSampler
from neurofm.data.signals import Intervals
from neurofm.errors import InvalidDataError
from neurofm.models.poyo import POYO
from neurofm.tokenizers.spikes import SpikeTokenizer, TargetScaler, collate
from neurofm.training.datasets import WindowDataset, split_domains_of
from neurofm.data.targets import evaluation_targets
from neurofm.metrics import r2_score

__all__ = ["EvalResult", "evaluate_poyo", "stitch"]

_KEY_SCALE = 1e6  # microseconds


def _keys(times: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(times, dtype=np.float64) * _KEY_SCALE).astype(np.int64)


def stitch(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` over duplicate ``times``; returns sorted unique times and means."""
    keys = _keys(times)
    uniq, inverse = np.unique(keys, return_inverse=True)
    values = np.asarray(values, dtype=np.float64).reshape(len(keys), -1)
    sums = np.zeros((len(uniq), values.shape[1]))
    np.add.at(sums, inverse, values)
    counts = np.bincount(inverse, minlength=len(uniq))[:, None]
    return uniq / _KEY_SCALE, sums / counts


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
        return {rid: s.r2 for rid, s in self.sessions.items()}

    @property
    def mean_r2(self) -> float:
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

    ``domains`` replaces the split's domains (e.g. single trials, for prequential coding).
    Recordings whose units or session are not in the model's vocabulary raise an error (use
    fine-tuning to add them).
    """
    catalog_ = Catalog(catalog)
    if domains is None:
        domains = split_domains_of(catalog_, split, recordings)
    if not domains:
        raise InvalidDataError(f"{catalog}: no recording has a non-empty {split}_domain")
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
        WindowDataset(catalog_.path, tokenizer),
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

    result = EvalResult(split)
    for rid, parts in pieces.items():
        times, preds = stitch(
            np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        )
        with catalog_.open(rid) as rec:
            truth = evaluation_targets(rec, target, split, domains[rid])
        # Window times are float32 relative times plus a float64 start: match on the sample
        # grid, allowing for that rounding.
        idx = np.searchsorted(times, truth.timestamps)
        idx = np.clip(idx, 1, len(times) - 1)
        left_closer = np.abs(times[idx - 1] - truth.timestamps) <= np.abs(
            times[idx] - truth.timestamps
        )
        idx = np.where(left_closer, idx - 1, idx)
        if np.abs(times[idx] - truth.timestamps).max(initial=0) > 1e-4:
            raise InvalidDataError(f"{rid}: some evaluation points were not covered by a window")
        predicted = scaler.inverse(preds[idx])
        result.sessions[rid] = SessionPrediction(
            rid, truth.timestamps, truth.values, predicted, r2_score(truth.values, predicted)
        )
    return result


def results_table(rows: dict[str, dict[str, float]]) -> str:
    """A text table: one row per session, one column per model (R^2), plus the mean."""
    models = list(rows)
    sessions = sorted({s for r in rows.values() for s in r})
    width = max([7, *map(len, sessions)])
    lines = [f"{'session':<{width}}  " + "  ".join(f"{m:>8}" for m in models)]
    lines.append("-" * len(lines[0]))
    for s in sessions:
        cells = [f"{rows[m].get(s, float('nan')):>8.3f}" for m in models]
        lines.append(f"{s:<{width}}  " + "  ".join(cells))
    means = [f"{np.nanmean([rows[m].get(s, np.nan) for s in sessions]):>8.3f}" for m in models]
    lines.append(f"{'mean':<{width}}  " + "  ".join(means))
    return "\n".join(lines)
