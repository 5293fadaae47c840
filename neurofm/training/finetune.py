"""Fine-tune a pretrained POYO on a new recording session (new, unmatched units).

``unit-id`` (POYO's unit identification): the backbone stays frozen, only embeddings for the new
units and the new session are learned from a few labelled trials. ``full``: everything trains
from the start. ``gradual``: unit-id for the first epochs, then everything. ``scratch``: the same
architecture, randomly initialised and fully trained on the same trials (the baseline that
pretraining must beat).

Default schedule: ``unit-id``, with gradual unfreezing available but not the default. Measured
with the shipped ``poyo-tiny-synthetic`` backbone on 3 held-out synthetic sessions
(benchmarks/finetune_bench.py, 100 steps, mean of 3): unit-id scored R^2 0.80 / 0.90 / 0.89 /
0.91 with 5 / 10 / 20 / all (39) trials, unit-id-then-full 0.77 / 0.85 / 0.88 / 0.90 (never
better, and noisier: unfreezing lets the few trials pull the backbone away from what it
learned), full fine-tuning 0.32 / 0.27 / 0.25 / 0.34 and scratch 0.06 / 0.07 / 0.04 / 0.08.

The vocabularies are extended with fresh rows for the new keys (``"<recording id>/<unit id>"``,
so they never collide with pretrained units) and then cut down to just them, so the checkpoint
written here holds only what the new session needs and loads like any other POYO checkpoint.

Training never scores: a caller that wants the new session's test score passes ``score`` (e.g.
:func:`neurofm.evaluation.fewshot.session_r2`), which :func:`finetune` calls on the tuned model.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np

from neurofm import display
from neurofm.data.catalog import Catalog
from neurofm.data.sampling import RandomWindowSampler
from neurofm.data.signals import Intervals
from neurofm.errors import InvalidDataError, check_counts
from neurofm.models.poyo import POYO
from neurofm.tokenizers.spikes import TargetScaler, unit_keys
from neurofm.training.card import CARD_KEY, card_summary, plain
from neurofm.training.checkpoints import load_checkpoint, write_checkpoint
from neurofm.training.datasets import split_domains_of
from neurofm.training.trainer import global_rank

log = logging.getLogger(__name__)

Mode = Literal["unit-id", "full", "gradual", "scratch"]
#: ``score(model, scaler, catalog, target, recording_id) -> {recording id: score}``: how a
#: caller scores the fine-tuned model (e.g. :func:`neurofm.evaluation.fewshot.session_r2`).
Scorer = Callable[[POYO, TargetScaler, Path, str, str], dict[str, float]]
#: What unit identification trains; everything else (latents included) stays frozen.
UNIT_ID_TRAINABLE = ("unit_emb.", "session_emb.")
#: Default peak learning rate of each mode, chosen from measurements on a held-out synthetic
#: session (20 trials, 100 steps) with the shipped ``poyo-tiny-synthetic`` backbone
#: (benchmarks/finetune_bench.py measures the whole grid). Unit identification learns fresh
#: embeddings (init scale 1) through a frozen backbone: at 3e-3 they are still half-learned
#: after 100 steps (R^2 0.06 on a half-trained backbone), 1e-2 gives 0.34, 3e-2 0.51 and 1e-1
#: overshoots (0.17); on the final backbone 3e-2 gives 0.91. A backbone that trains needs a
#: low rate, or it forgets what pretraining learned: ``full`` scored 0.56 at 1e-3 and 0.26 at
#: 3e-3, so ``full`` and the backbone phase of ``gradual`` use 1e-3; ``scratch`` uses the
#: pretraining rate.
DEFAULT_LR = {"unit-id": 3e-2, "gradual": 3e-2, "full": 1e-3, "scratch": 3e-3}
#: Learning rate of the backbone once ``gradual`` unfreezes it.
GRADUAL_BACKBONE_LR = 1e-3
#: Recommended least number of optimizer steps of a few-shot adaptation (``min_steps``): with
#: 5-20 trials an epoch is 1-5 steps; 100 steps at :data:`DEFAULT_LR` learn the embeddings.
MIN_STEPS = 100

__all__ = [
    "DEFAULT_LR",
    "MIN_STEPS",
    "FinetuneResult",
    "GradualUnfreezing",
    "Scorer",
    "finetune",
    "first_trials",
    "prepare_for_session",
    "set_trainable",
]


@dataclass
class FinetuneResult:
    """Outcome of :func:`finetune` (``r2`` and ``mean_r2`` are filled when it was given a
    ``score``)."""

    checkpoint: Path
    recording_id: str
    mode: str
    n_trials: int
    trainable: list[str]
    r2: dict[str, float] = field(default_factory=dict)
    mean_r2: float = float("nan")

    def __repr__(self) -> str:
        score = f"; R^2 {display.number(self.mean_r2)}" if self.r2 else "; not scored"
        return (
            f"<FinetuneResult {self.recording_id!r}: {self.mode} on "
            f"{display.count(self.n_trials, 'trial')}; trains "
            f"{display.names(self.trainable, 3)}{score}; {self.checkpoint.name}>"
        )

    def _repr_html_(self) -> str:
        rows = [
            ("session", self.recording_id),
            ("mode", self.mode),
            ("labelled trials", self.n_trials),
            ("trains", ", ".join(self.trainable)),
            *((f"R^2 {rid}", display.number(v)) for rid, v in self.r2.items()),
            ("checkpoint", str(self.checkpoint)),
        ]
        return display.html_table(f"FinetuneResult {self.recording_id!r}", rows)


def prepare_for_session(model: POYO, recording_id: str, unit_ids: list[str]) -> None:
    """Give ``model`` fresh embeddings for a new session and its units, dropping the others.

    Raises
    ------
    InvalidDataError
        If the session is already in the model's vocabulary (its units would silently reuse
        pretrained rows).
    """
    if recording_id in model.session_emb:
        raise InvalidDataError(
            f"session {recording_id!r} is already in the checkpoint's vocabulary: fine-tuning is "
            "for new sessions (evaluate it directly, or give the recording a new id)"
        )
    keys = unit_keys(recording_id, unit_ids)
    model.unit_emb.extend(keys)
    model.unit_emb.subset(keys)
    model.session_emb.extend([recording_id])
    model.session_emb.subset([recording_id])


def set_trainable(model: POYO, mode: str) -> list[str]:
    """Freeze what ``mode`` keeps fixed; returns the names of the parameters that train."""
    for name, p in model.named_parameters():
        p.requires_grad = mode == "full" or name.startswith(UNIT_ID_TRAINABLE)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def first_trials(domain: Intervals, k: int | None) -> Intervals:
    """The first ``k`` intervals (trials) of a domain; all of them if ``k`` is None."""
    if k is None:
        return domain
    if k < 1:
        raise InvalidDataError(f"--trials must be >= 1, got {k}")
    if k > len(domain):
        raise InvalidDataError(
            f"asked for {k} labelled trials (--trials) but the train domain has only {len(domain)}"
        )
    return domain.take(np.arange(k))


def finetune(
    checkpoint: str | Path,
    catalog: str | Path,
    out_dir: str | Path,
    *,
    recording_id: str | None = None,
    mode: Mode = "unit-id",
    trials: int | None = None,
    epochs: int = 30,
    batch_size: int = 8,
    lr: float | None = None,
    unfreeze_epoch: int | None = None,
    seed: int = 0,
    min_steps: int = 0,
    progress: bool = True,
    score: Scorer | None = None,
    accelerator: str = "auto",
    devices: int = 1,
    precision: str | int = "32-true",
) -> FinetuneResult:
    """Adapt a pretrained POYO checkpoint to a new session of a catalog.

    Parameters
    ----------
    checkpoint : str or Path
        A POYO checkpoint (``neurofm train``).
    catalog : str or Path
        Catalog holding the new recording, with train/valid/test domains.
    out_dir : str or Path
        Where the fine-tuned checkpoint and logs go.
    recording_id : str, optional
        The new session; default the catalog's only recording.
    mode : {"unit-id", "full", "gradual", "scratch"}
        What trains (see the module docstring).
    trials : int, optional
        Use only the first ``trials`` labelled trials of the train domain (few-shot).
    epochs, batch_size, seed : int, int, int
        Training settings.
    lr : float, optional
        Peak learning rate; default :data:`DEFAULT_LR` of the mode.
    unfreeze_epoch : int, optional
        For ``gradual``: the epoch from which everything trains (default: half the epochs).
    min_steps : int
        At least this many optimizer steps: ``epochs`` is raised when the labelled trials give
        too few steps per epoch (5 trials are ~1 batch, so 30 epochs would be 30 steps, too
        few for new embeddings to learn). :data:`MIN_STEPS` is the recommended value (the
        benchmark's); the default 0 keeps ``epochs`` exact.
    score : callable, optional
        Called as ``score(model, scaler, catalog, target, recording_id)`` on the fine-tuned
        model; its ``{recording id: score}`` fills the result's ``r2`` and ``mean_r2`` (e.g.
        :func:`neurofm.evaluation.fewshot.session_r2`, the stitched test R^2). Default: no
        score.
    accelerator, devices, precision : str, int, str
        Lightning's: what trains (``auto``: a GPU when there is one), on how many devices,
        in which precision.

    Raises
    ------
    InvalidDataError
        A target whose dimension differs from the checkpoint's readout, a session already in
        the vocabulary, too few trials, or a recording without splits.
    """
    from neurofm.training.poyo import fit_poyo, load_poyo

    if mode not in ("unit-id", "full", "gradual", "scratch"):
        raise InvalidDataError(f"mode must be unit-id, full, gradual or scratch, got {mode!r}")
    check_counts("finetune", trials=trials, epochs=epochs, batch_size=batch_size)
    if lr is None:
        lr = DEFAULT_LR[mode]
    model, scaler, pre_cfg = load_poyo(checkpoint)
    import torch

    # The new rows' initial values (and a scratch model's weights) come from torch's global
    # generator: seeded here, a fine-tune does not depend on what ran before it in the process.
    torch.manual_seed(seed)
    if mode == "scratch":
        model = POYO(model.config)  # same shape and target scaling, nothing pretrained
    cat = Catalog(catalog)
    if recording_id is None:
        if len(cat) != 1:
            raise InvalidDataError(
                f"{cat.path}: holds {len(cat)} recordings; say which one to fine-tune on "
                f"(--recording ID, or recording_id= in Python; one of {', '.join(cat.ids)})"
            )
        recording_id = cat.ids[0]
    with cat.open(recording_id) as rec:
        target = pre_cfg.target
        if target not in rec:
            raise InvalidDataError(
                f"{recording_id}: no target signal {target!r} (the checkpoint decodes {target!r})"
            )
        dim = len(rec[target].channels)
        if dim != model.config.dim_out:
            raise InvalidDataError(
                f"{recording_id}: target {target!r} has {dim} dimensions but the checkpoint's "
                f"readout predicts {model.config.dim_out}"
            )
        unit_ids = list(rec["spikes"].units.ids)
    prepare_for_session(model, recording_id, unit_ids)
    trainable = set_trainable(model, "full" if mode in ("full", "scratch") else "unit-id")
    log.info("fine-tuning (%s) trains: %s", mode, ", ".join(trainable))
    train_domains = split_domains_of(cat, "train", [recording_id])
    if recording_id not in train_domains:
        raise InvalidDataError(f"{recording_id}: the train domain is empty")
    try:
        train_domains[recording_id] = first_trials(train_domains[recording_id], trials)
    except InvalidDataError as exc:
        raise InvalidDataError(f"{recording_id}: trials: {exc}") from None
    cfg = replace(
        pre_cfg,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        recordings=[recording_id],
        flat_fraction=0.5,
    )
    per_epoch = max(
        1, len(RandomWindowSampler(train_domains, model.config.window_length)) // batch_size
    )
    epochs = max(epochs, math.ceil(min_steps / per_epoch))
    cfg = replace(cfg, epochs=epochs)
    if unfreeze_epoch is None:
        unfreeze_epoch = epochs // 2
    callbacks = (
        [GradualUnfreezing(unfreeze_epoch, backbone_lr=GRADUAL_BACKBONE_LR)]
        if mode == "gradual"
        else []
    )
    # The card says where the model came from and that only the new session is in it.
    card = {
        "description": (
            f"fine-tuned ({mode}) on {recording_id} from {Path(checkpoint).name}; the vocabulary "
            "holds this session and its units only"
        ),
        "adapted_from": card_summary(_stored_card(checkpoint)),
    }
    with warnings.catch_warnings():
        # no validation pass each epoch: nothing uses it (no early stopping) and it cost as much
        # as the training steps of a few-shot run; callers score with ``score``. Lightning
        # warns about the empty validation loader this takes.
        warnings.filterwarnings("ignore", message="Total length of `DataLoader`")
        no_valid = {recording_id: Intervals(np.zeros(0), np.zeros(0), name="valid_domain")}
        module, ckpt = fit_poyo(
            model,
            scaler,
            cat.path,
            cfg,
            out_dir,
            train_domains=train_domains,
            valid_domains=no_valid,
            callbacks=callbacks,
            progress=progress,
            accelerator=accelerator,
            devices=devices,
            precision=precision,
            card=card,
        )
    result = FinetuneResult(
        ckpt,
        recording_id,
        mode,
        len(train_domains[recording_id]),
        [n for n, p in model.named_parameters() if p.requires_grad],
    )
    if score is not None:
        result.r2 = dict(score(model, scaler, cat.path, target, recording_id))
        result.mean_r2 = float(np.mean(list(result.r2.values()))) if result.r2 else float("nan")
        if result.r2 and global_rank() == 0:  # the score goes into the checkpoint's card too
            _record_score(ckpt, "test", {"r2": result.mean_r2})
    return result


def _stored_card(checkpoint: str | Path) -> dict[str, Any]:
    """The model card stored in a checkpoint (empty for a checkpoint written before cards)."""
    card = load_checkpoint(checkpoint).get("neurofm", {}).get(CARD_KEY)
    return dict(card) if isinstance(card, dict) else {}


def _record_score(checkpoint: Path, split: str, score: dict[str, Any]) -> None:
    """Add ``{split: score}`` to the scores of the card in ``checkpoint`` (rewritten
    atomically and resealed)."""
    stored = load_checkpoint(checkpoint)
    card = stored.get("neurofm", {}).get(CARD_KEY)
    if not isinstance(card, dict):
        return
    card["scores"] = {**(card.get("scores") or {}), split: plain(score)}
    write_checkpoint(stored, checkpoint)


class GradualUnfreezing(pl.Callback):
    """From ``epoch`` on, every parameter trains (the backbone joins the optimizer), at
    ``backbone_lr`` (default: the embeddings' learning rate), following the same schedule."""

    def __init__(self, epoch: int, backbone_lr: float | None = None) -> None:
        self.epoch = epoch
        self.backbone_lr = backbone_lr

    def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
        if trainer.current_epoch != self.epoch:
            return
        frozen = [p for p in module.model.parameters() if not p.requires_grad]
        for p in frozen:
            p.requires_grad = True
        opt = trainer.optimizers[0]
        base = self.backbone_lr if self.backbone_lr is not None else module.cfg.lr
        opt.add_param_group(
            {
                "params": frozen,
                "weight_decay": module.cfg.weight_decay,
                # where the schedule is now, scaled to the backbone's rate
                "lr": opt.param_groups[0]["lr"] * base / module.cfg.lr,
                "initial_lr": base,
            }
        )
        # The schedule scales every group: extend it to the new one.
        sched = trainer.lr_scheduler_configs[0].scheduler
        sched.base_lrs.append(base)
        sched.lr_lambdas.append(sched.lr_lambdas[0])
        log.info("gradual fine-tuning: backbone unfrozen at epoch %d", self.epoch)
