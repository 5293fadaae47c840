"""Data efficiency of adapting to a new session: fine-tuning scores, few-shot curves and
prequential code length.

Prequential (online) coding (Blier & Ollivier, 2018; seed 3 of shared/reference/seeds.md): the
session's trials are sent in order; each block of trials is encoded with a model fitted on all
trials before it, so a learner that adapts from fewer trials pays fewer bits. Blocks double in
size (1, 1, 2, 4, 8, ... trials), the standard schedule that needs only log(T) refits. A sample's
code is the Gaussian code of its z-scored residual (unit variance) at a fixed quantisation
``eps``: ``D * (-log2 eps) + sum_d [0.5 log2(2 pi) + r_d^2 / (2 ln 2)]`` bits.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurofm import display
from neurofm.data.catalog import Catalog
from neurofm.evaluation.poyo import evaluate_poyo
from neurofm.models.poyo import POYO
from neurofm.tokenizers.spikes import TargetScaler
from neurofm.training.datasets import split_domains_of
from neurofm.training.finetune import finetune, first_trials, prepare_for_session
from neurofm.training.poyo import load_poyo

log = logging.getLogger(__name__)

__all__ = [
    "CodeLength",
    "few_shot_curve",
    "gaussian_code_bits",
    "prequential_code_length",
    "session_r2",
]


def session_r2(
    model: POYO,
    scaler: TargetScaler,
    catalog: str | Path,
    target: str,
    recording_id: str,
    split: str = "test",
) -> dict[str, float]:
    """Stitched R^2 of one session on its ``split``: the score
    :func:`~neurofm.training.finetune.finetune` reports when given ``score=session_r2``.

    Returns
    -------
    dict
        ``{recording_id: R^2}``.
    """
    return evaluate_poyo(model, scaler, catalog, target, split, [recording_id]).r2


def gaussian_code_bits(residuals: np.ndarray, eps: float = 0.01) -> float:
    """Bits to send z-scored residuals under a unit Gaussian, quantised at ``eps``."""
    r = np.asarray(residuals, dtype=np.float64)
    per_value = -math.log2(eps) + 0.5 * math.log2(2 * math.pi) + r**2 / (2 * math.log(2))
    return float(per_value.sum())


@dataclass
class CodeLength:
    """Prequential code length of one session's behaviour under one adaptation method."""

    mode: str
    bits: float
    samples: int
    blocks: list[tuple[int, int, float]] = field(default_factory=list)  # (first, stop, bits)

    @property
    def bits_per_sample(self) -> float:
        return self.bits / max(1, self.samples)

    def __repr__(self) -> str:
        return (
            f"<CodeLength {self.mode}: {self.bits:,.0f} bits for "
            f"{display.count(self.samples, 'sample')} ({display.number(self.bits_per_sample)} "
            f"bits/sample) in {display.count(len(self.blocks), 'block')}>"
        )


def _block_edges(n_trials: int) -> list[int]:
    edges, k = [0, 1], 1
    while edges[-1] < n_trials:
        k *= 2
        edges.append(min(n_trials, k))
    return sorted(set(edges))


def prequential_code_length(
    checkpoint: str | Path,
    catalog: str | Path,
    out_dir: str | Path,
    *,
    mode: str = "unit-id",
    recording_id: str | None = None,
    n_trials: int = 16,
    epochs: int = 20,
    eps: float = 0.01,
    seed: int = 0,
    **settings: Any,
) -> CodeLength:
    """Bits to encode the first ``n_trials`` train trials of a session, adapting online.

    Parameters
    ----------
    checkpoint : str or Path
        The pretrained POYO.
    catalog : str or Path
        Catalog holding the new session.
    out_dir : str or Path
        Where each block's fine-tuned checkpoint goes.
    mode : str
        Fine-tuning mode (``unit-id``, ``full``, ``gradual``) or ``scratch``.
    recording_id : str, optional
        The session (default the catalog's first).
    n_trials : int
        Train trials to encode.
    epochs : int
        Fine-tuning epochs per block.
    eps : float
        Quantisation of the z-scored targets.
    seed : int
        Fine-tuning seed.
    **settings
        Further fine-tuning settings for :func:`~neurofm.training.finetune.finetune` (``lr``,
        ``min_steps``, ``batch_size``...).

    Returns
    -------
    CodeLength
        Total bits, samples and the bits of each block.
    """
    cat = Catalog(catalog)
    rid = recording_id or cat.ids[0]
    trials = first_trials(split_domains_of(cat, "train", [rid])[rid], n_trials)
    out_dir = Path(out_dir)
    result = CodeLength(mode, 0.0, 0)
    edges = _block_edges(len(trials))
    for first, stop in zip(edges[:-1], edges[1:], strict=True):
        if first == 0:  # nothing seen yet: the untrained model for this session
            model, scaler, _ = load_poyo(checkpoint)
            if mode == "scratch":
                model = POYO(model.config)
            with cat.open(rid) as rec:
                prepare_for_session(model, rid, list(rec["spikes"].units.ids))
        else:
            fitted = finetune(
                checkpoint,
                cat.path,
                out_dir / f"{mode}_{first}",
                recording_id=rid,
                mode=mode,
                trials=first,
                epochs=epochs,
                seed=seed,
                progress=False,
                **settings,
            )
            model, scaler, _ = load_poyo(fitted.checkpoint)
        block = trials.take(np.arange(first, stop))
        target = load_poyo(checkpoint)[2].target
        ev = evaluate_poyo(model, scaler, cat.path, target, domains={rid: block})
        s = ev.sessions[rid]
        residuals = scaler.forward(s.truth) - scaler.forward(s.prediction)
        bits = gaussian_code_bits(residuals, eps)
        result.blocks.append((first, stop, bits))
        result.bits += bits
        result.samples += len(residuals)
        log.info("%s: trials [%d, %d) cost %.0f bits", mode, first, stop, bits)
    return result


def few_shot_curve(
    checkpoint: str | Path,
    catalog: str | Path,
    out_dir: str | Path,
    *,
    trials: tuple[int | None, ...] = (5, 10, 20, None),
    modes: tuple[str, ...] = ("unit-id", "full", "scratch"),
    seeds: tuple[int, ...] = (0, 1, 2),
    epochs: int = 30,
    recording_id: str | None = None,
    progress: bool = True,
    **settings: Any,
) -> list[dict[str, object]]:
    """Test R^2 of each adaptation mode for each number of labelled trials and seed.

    ``settings`` go to :func:`~neurofm.training.finetune.finetune` (``lr``, ``min_steps``...).

    Returns
    -------
    list of dict
        One row per run: ``mode``, ``trials``, ``seed`` and the stitched test ``r2``.
    """
    from neurofm.progress import progress_bar

    runs = [(m, k, s) for k in trials for m in modes for s in seeds]
    rows = []
    for mode, k, seed in progress_bar(runs, desc="few-shot", disable=not progress):
        res = finetune(
            checkpoint,
            catalog,
            Path(out_dir) / f"{mode}_{k or 'all'}_{seed}",
            recording_id=recording_id,
            mode=mode,
            trials=k,
            epochs=epochs,
            seed=seed,
            progress=False,
            score=session_r2,
            **settings,
        )
        rows.append({"mode": mode, "trials": res.n_trials, "seed": seed, "r2": res.mean_r2})
    return rows
