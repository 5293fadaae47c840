"""Training POYO with Lightning: data module, Lightning module, checkpoints, ``train_poyo``.

Recipe (shared/reference/poyo.md section 2): random 1 s windows from the train domains, unit
dropout, weighted MSE on z-scored targets (weighted cross-entropy for a class target; samples
with a NaN value weigh 0), AdamW with a flat learning rate for the first half of training then
cosine decay, R^2 (balanced accuracy for classes) on the valid domains. The window sampler
draws from ``(seed, epoch)`` and torch from ``(seed, step)``, so a run resumed from a
checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import lightning.pytorch as pl
import numpy as np
import torch
from pydantic import AfterValidator, Field
from torch.utils.data import DataLoader

from neurofm.data.catalog import Catalog
from neurofm.data.sampling import RandomWindowSampler, SequentialWindowSampler
from neurofm.data.targets import TrialTarget, as_target, finite_rows, target_samples
from neurofm.display import config_html, config_repr
from neurofm.errors import InvalidDataError, NeuroFMError
from neurofm.models.poyo import POYO, POYOConfig
from neurofm.specs import check_fields, validate
from neurofm.tokenizers.spikes import (
    ClassEncoder,
    SpikeTokenizer,
    TargetScaler,
    collate,
    encoding_from_dict,
    unit_keys,
)
from neurofm.training.card import CARD_KEY
from neurofm.training.checkpoints import (
    ResumePoint,
    check_resumable,
    load_checkpoint,
    load_weights,
    malformed_section,
    read_checkpoint,
    resume_point,
)
from neurofm.training.datasets import (
    OpenRecordings,
    ShardedSampler,
    WindowDataset,
    iter_recordings,
    split_domains_of,
)
from neurofm.training.resume import ResumableSampler
from neurofm.training.run_folder import claim_run_folder, warn_if_replacing
from neurofm.training.trainer import (
    adamw,
    after_fit,
    all_gather_objects,
    make_trainer,
    rank_seed,
    seed_step,
)

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "neurofm.poyo"

__all__ = [
    "POYODataModule",
    "LoadedPOYO",
    "POYOModule",
    "TrainConfig",
    "fit_poyo",
    "load_poyo",
    "train_poyo",
]


def _dropout_order(value: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
    if value is not None and not 1 <= value[0] <= value[1] <= value[2]:
        raise ValueError("must be (min, mode, max) with 1 <= min <= mode <= max")
    return value


@dataclass
class TrainConfig:
    """How to train (the ``train`` step of a pipeline).

    Attributes
    ----------
    target : str or TrialTarget
        What to decode: a behaviour series' name (``"hand_vel"``) or a per-trial target (a
        :class:`~neurofm.data.targets.TrialTarget`, or a card's ``{trials: ..., at: ...}``).
    epochs : int
        Passes over the training windows (>= 1).
    batch_size : int
        Windows per optimisation step (>= 1).
    lr : float
        Peak learning rate (AdamW).
    weight_decay : float
        AdamW weight decay.
    flat_fraction : float
        Share of the steps at the flat learning rate, before the cosine decay (0 to 1).
    unit_dropout : (int, int, int) or None
        ``(min, mode, max)`` units kept per training window, drawn from a triangular
        distribution (1 <= min <= mode <= max); None keeps every unit.
    seed : int
        Seed of initialisation, window sampling and dropout.
    num_workers : int
        DataLoader worker processes (0: load in the training process).
    recordings : list of str
        Recordings to train on; empty: every recording of the catalog with a train split.
    """

    target: str | TrialTarget = "hand_vel"
    epochs: Annotated[int, Field(ge=1)] = 30
    batch_size: Annotated[int, Field(ge=1)] = 32
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 2e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    # flat learning rate for this share of steps, then cosine
    flat_fraction: Annotated[float, Field(ge=0, le=1)] = 0.5
    # (min, mode, max) units kept per window, 1 <= min <= mode <= max; None: no unit dropout
    unit_dropout: Annotated[tuple[int, int, int] | None, AfterValidator(_dropout_order)] = (
        30,
        100,
        300,
    )
    seed: int = 0
    num_workers: Annotated[int, Field(ge=0)] = 0
    recordings: list[str] = field(default_factory=list)  # empty: every recording with splits

    def __post_init__(self) -> None:
        check_fields(self)  # the ranges above, for configs made in Python too
        # A card's target model or a checkpoint's dict becomes the plain dataclass.
        self.target = as_target(self.target)

    def __repr__(self) -> str:  # only the fields that differ from the defaults
        return config_repr(self)

    def _repr_html_(self) -> str:
        return config_html(self)


def fit_scaler(
    catalog: Catalog | OpenRecordings, ids: list[str], target: Any, domains: dict
) -> TargetScaler | ClassEncoder:
    """Mean and standard deviation of the target over the training domains (or its classes).

    Samples with a non-finite value (NaN gaps) are left out, so a gap inside a training
    window cannot poison the scaler.

    Parameters
    ----------
    catalog : Catalog or OpenRecordings
        The catalog (an :class:`OpenRecordings` does not reopen its recordings).
    ids : list of str
        The training recordings.
    target : str or TrialTarget
        Name of the target signal, or a per-trial target.
    domains : dict of str to Intervals
        Each recording's train domain.

    Returns
    -------
    TargetScaler or ClassEncoder
        A class target gets its classes: the labels seen in training, sorted.

    Raises
    ------
    InvalidDataError
        A recording without the target, no finite training sample, or fewer than two classes.
    """
    target = as_target(target)
    name = target if isinstance(target, str) else target.label
    chunks = []
    for rid, rec in iter_recordings(catalog, ids):
        if isinstance(target, str) and target not in rec:
            raise InvalidDataError(
                f"{catalog.path}: recording {rid!r} has no target {target!r} "
                f"(has {sorted(rec.signals)})"
            )
        times, values = target_samples(rec, target)
        chunks.append(values[domains[rid].contains(times)])
    stacked = np.concatenate(chunks)
    if isinstance(target, TrialTarget) and target.is_class:
        classes = sorted(set(stacked.tolist()) - {""})
        if len(classes) < 2:
            raise InvalidDataError(
                f"{catalog.path}: the class target {name} has {len(classes)} class(es) in the "
                f"train domains ({classes}); a classifier needs at least two"
            )
        return ClassEncoder(tuple(classes))
    ok = finite_rows(stacked)
    if not ok.all():  # only then: the plain path stays bit-identical for finite targets
        log.info("%d of %d training samples of %s are not finite", (~ok).sum(), len(ok), name)
        stacked = stacked[ok]
    if not len(stacked):
        raise InvalidDataError(
            f"{catalog.path}: no finite sample of {name} in the train domains of {ids}"
        )
    return TargetScaler(stacked.mean(axis=0), stacked.std(axis=0) + 1e-8)


def catalog_vocab(catalog: Catalog | OpenRecordings, ids: list[str]) -> tuple[list[str], list[str]]:
    """Namespaced unit keys and session keys of the given recordings.

    Parameters
    ----------
    catalog : Catalog or OpenRecordings
        The catalog.
    ids : list of str
        The recordings.

    Returns
    -------
    (list of str, list of str)
        Unit keys (``<recording>/<unit>``) and session keys (the recording ids).
    """
    cat = catalog.catalog if isinstance(catalog, OpenRecordings) else catalog
    by_recording = cat.unit_ids(ids, "spikes")  # from the catalog's index: nothing is opened
    units: list[str] = []
    for rid in ids:
        if rid not in by_recording:
            raise InvalidDataError(f"{cat.path}: recording {rid!r} has no 'spikes' signal")
        units.extend(unit_keys(rid, by_recording[rid]))
    return units, list(ids)


class POYODataModule(pl.LightningDataModule):
    """Random training windows and sequential validation windows from a catalog's splits.

    Both loaders read through one :class:`OpenRecordings` (``catalog`` itself when it is one),
    so each recording is opened once per process.
    """

    def __init__(
        self,
        catalog: str | Path | Catalog | OpenRecordings,
        model: POYO,
        scaler: TargetScaler,
        cfg: TrainConfig,
        train_domains: dict | None = None,
        valid_domains: dict | None = None,
        resume: ResumePoint | None = None,
    ):
        super().__init__()
        self.resume = resume  # where a resumed run's first epoch starts
        self.recordings = OpenRecordings.of(catalog)
        self._owns_recordings = self.recordings is not catalog
        self.catalog_path = self.recordings.path
        self.model, self.scaler, self.cfg = model, scaler, cfg
        ids = cfg.recordings or None
        self.train_domains = train_domains or split_domains_of(self.recordings, "train", ids)
        self.valid_domains = valid_domains or split_domains_of(self.recordings, "valid", ids)

    def tokenizer(self, augment: bool) -> SpikeTokenizer:
        c = self.model.config
        return SpikeTokenizer(
            self.model.unit_emb.index,
            self.model.session_emb.index,
            c.window_length,
            c.latent_step,
            c.num_latents_per_step,
            target=self.cfg.target,
            scaler=self.scaler,
            unit_dropout=self.cfg.unit_dropout if augment else None,
            seed=self.cfg.seed,
        )

    def _loader(self, sampler: Any, augment: bool) -> DataLoader:
        # This rank's share (the process group's, under DDP): equal shares of the training
        # windows, and every validation window exactly once across ranks.
        sampler = ShardedSampler(sampler, drop_last=augment)
        if augment:  # training: a resumed epoch skips the batches already trained
            sampler = ResumableSampler(sampler, self.cfg.batch_size, self.resume)
        return DataLoader(
            WindowDataset(self.recordings, self.tokenizer(augment)),
            batch_size=self.cfg.batch_size,
            sampler=sampler,
            collate_fn=collate,
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        sampler = RandomWindowSampler(
            self.train_domains, self.model.config.window_length, seed=self.cfg.seed
        )
        # Lightning calls sampler.set_epoch(epoch) before every epoch (also after a resume).
        return self._loader(sampler, augment=True)

    def val_dataloader(self) -> DataLoader:
        sampler = SequentialWindowSampler(self.valid_domains, self.model.config.window_length)
        return self._loader(sampler, augment=False)

    def teardown(self, stage: str) -> None:
        # Recordings this module opened itself are closed; a caller's stay open for the caller.
        if self._owns_recordings:
            self.recordings.close()


class POYOModule(pl.LightningModule):
    """POYO plus its training recipe, and what a checkpoint must carry to be used later."""

    def __init__(
        self, model: POYO, scaler: TargetScaler, cfg: TrainConfig, total_steps: int = 1
    ) -> None:
        super().__init__()
        self.model, self.scaler, self.cfg = model, scaler, cfg
        self.total_steps = max(1, total_steps)
        # per validation batch: targets, predictions, summed weighted error, summed weight
        self._val: list[tuple[np.ndarray, np.ndarray, float, float]] = []
        #: Extra fields of the model card (``description``, ``adapted_from``...): plain values.
        self.card_extra: dict[str, Any] = {}
        self._card_data: tuple[dict[str, Any], dict[str, Any]] | None = None

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.model(**batch)

    def _loss(
        self, batch: dict[str, Any], pred: torch.Tensor | None = None, synced: bool = False
    ) -> torch.Tensor:
        pred = self.model(**batch) if pred is None else pred
        weights = batch["output_weights"] * batch["output_mask"]
        loss = self.model.readout.loss(pred, batch["output_values"], weights)
        if synced and self._trainer is not None and self.trainer.world_size > 1:
            # DDP averages the ranks' gradients. Weighting each rank's mean loss by its share
            # of the global batch's weight makes that average the gradient of the global
            # batch's weighted mean, exactly what one process with the whole batch computes
            # (ranks' windows hold different numbers of target samples).
            local = weights.sum().detach()
            mean = self.trainer.strategy.reduce(local.clone(), reduce_op="mean")
            loss = loss * (local / mean.clamp_min(1e-8))
        return loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Dropout masks depend only on (seed, step, rank), not on whatever else drew random
        # numbers before (DataLoader iterators do): a resumed run repeats them exactly.
        seed_step(rank_seed(self.cfg.seed, self.global_step, self.global_rank), self.device)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch, synced=True)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["session_index"]))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        pred = self.model(**batch)
        mask = batch["output_mask"] & (batch["output_weights"] > 0)  # no padding, no NaN gap
        weight = float((batch["output_weights"] * batch["output_mask"]).sum())
        loss = float(self._loss(batch, pred))
        # .float(): under bf16/16-bit precision the predictions are half floats, unknown to numpy
        self._val.append(
            (
                batch["output_values"][mask].cpu().numpy(),
                pred[mask].float().cpu().numpy(),
                loss * weight,
                weight,
            )
        )

    def on_validation_epoch_end(self) -> None:
        from neurofm.metrics import balanced_accuracy, r2_score

        # Under DDP each rank scored its own share of the windows, each window once across
        # ranks: the scores are over all of them, the same on every rank (sync_dist: the mean
        # of equal values, which Lightning asks for in DDP).
        parts = [v for rank in all_gather_objects(self._val) for v in rank]
        self._val = []
        if not parts:
            return
        weight = sum(v[3] for v in parts)
        if weight > 0:  # the weighted mean over every validation sample
            self.log("val_loss", sum(v[2] for v in parts) / weight, prog_bar=True, sync_dist=True)
        y = np.concatenate([v[0] for v in parts])
        p = np.concatenate([v[1] for v in parts])
        if self.model.readout.kind == "class":
            if len(y):
                with warnings.catch_warnings():  # classes predicted but absent from y
                    warnings.simplefilter("ignore", UserWarning)
                    score = balanced_accuracy(y[:, 0].round().astype(int), p.argmax(axis=-1))
                self.log("val_balanced_accuracy", score, prog_bar=True, sync_dist=True)
        elif len(y) >= 2:  # a per-trial target may have few valid trials per epoch
            self.log("val_r2", r2_score(y, p), prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> Any:
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:  # frozen (fine-tuning): not even handed to the optimizer
                continue
            (no_decay if p.ndim < 2 or name.endswith("emb.weight") else decay).append(p)
        opt = adamw(
            [
                {"params": decay, "weight_decay": self.cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.cfg.lr,
        )
        flat = int(self.cfg.flat_fraction * self.total_steps)
        span = max(1, self.total_steps - flat)

        def factor(step: int) -> float:  # flat, then cosine down to 1e-4 of the peak
            if step < flat:
                return 1.0
            progress = min(1.0, (step - flat) / span)
            return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Everything needed to rebuild the model, as plain types (loadable with weights_only).
        checkpoint["neurofm"] = {
            "format": CHECKPOINT_FORMAT,
            "model_config": dataclasses.asdict(self.model.config),
            "train_config": _plain(dataclasses.asdict(self.cfg)),
            "scaler": self.scaler.to_dict(),
            "total_steps": self.total_steps,
            CARD_KEY: self.model_card(),
        }

    def model_card(self) -> dict[str, Any]:
        """The model card written into every checkpoint (:mod:`neurofm.training.card`):
        config, vocabularies, target, training data and settings, last validation score,
        versions and time, as plain values."""
        from neurofm.training import card as mc

        trainer = self._trainer  # None outside a fit (Lightning's property would raise)
        data = getattr(trainer, "datamodule", None) if trainer is not None else None
        if self._card_data is None and isinstance(data, POYODataModule):
            # Once per run: the training recordings do not change between checkpoints.
            ids = sorted(data.train_domains)
            recs = [data.recordings.get(rid) for rid in ids]
            self._card_data = (
                mc.data_section(
                    str(data.catalog_path),
                    (mc.recording_entry(rid, rec) for rid, rec in zip(ids, recs, strict=True)),
                ),
                mc.target_section(self.cfg.target, self.scaler, recs[0] if recs else None),
            )
        section, target = self._card_data or (
            mc.data_section("", []),
            mc.target_section(self.cfg.target, self.scaler),
        )
        scores: dict[str, Any] = {}
        metrics = trainer.callback_metrics if trainer is not None else {}
        for key, name in (("val_r2", "r2"), ("val_balanced_accuracy", "balanced_accuracy")):
            if key in metrics:
                scores.setdefault("valid", {})[name] = float(metrics[key])
        card = {
            "card_version": mc.CARD_VERSION,
            "model": "POYO",
            "format": CHECKPOINT_FORMAT,
            "created": mc.now(),
            "description": "",
            "versions": mc.versions(),
            "config": dataclasses.asdict(self.model.config),
            "target": target,
            "vocabulary": mc.vocabulary_section(self.model),
            "training": {
                "settings": mc.plain(self.cfg),
                "total_steps": self.total_steps,
                # 0-based, as Lightning's own "epoch" key: an epoch-end checkpoint says the
                # epoch that just ended (and one written when fitting ends, the next one)
                "epoch": int(self.current_epoch) if trainer is not None else 0,
                # whole epochs trained, wherever the checkpoint is written: Lightning counts an
                # epoch as processed before its end-of-epoch hooks run
                "epochs_done": (
                    int(trainer.fit_loop.epoch_progress.current.processed)
                    if trainer is not None
                    else 0
                ),
                "global_step": int(self.global_step) if trainer is not None else 0,
                "mode": _training_mode(self.model),
            },
            "data": section,
            "scores": scores,
        }
        card.update(mc.plain(self.card_extra))
        return card


def _training_mode(model: POYO) -> str:
    """``train`` when every parameter trains, ``unit-id`` when only the unit and session
    embeddings do (fine-tuning with a frozen backbone), else ``partial``."""
    parts = {name.split(".")[0] for name, _ in model.named_parameters()}
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    if trainable == parts:
        return "train"
    return "unit-id" if trainable <= {"unit_emb", "session_emb"} else "partial"


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


class LoadedPOYO(NamedTuple):
    """What :func:`load_poyo` returns; unpacks like a tuple (``model, scaler, cfg = ...``).

    Attributes
    ----------
    model : POYO
        The trained model, with its unit and session vocabularies.
    scaler : TargetScaler or ClassEncoder
        The target's encoding fitted on the training data (z-scoring, or class labels).
    config : TrainConfig
        How it was trained (its ``target`` is what it decodes).
    """

    model: POYO
    scaler: TargetScaler | ClassEncoder
    config: TrainConfig


def load_poyo(path: str | Path) -> LoadedPOYO:
    """Load a POYO checkpoint (``weights_only=True``: nothing is unpickled but tensors and
    plain containers).

    The checkpoint is checked before use: its weights' digest, its ``neurofm`` section
    (model and training configs, target scaling) and every tensor's presence and shape.

    Returns
    -------
    LoadedPOYO
        ``(model, scaler, config)``, also by name: ``loaded.model``.

    Raises
    ------
    NeuroFMError
        If the file is not a neurofm POYO checkpoint, or is incomplete, damaged or modified
        (the message names the file and what is missing or mismatched).
    """
    meta, state = read_checkpoint(
        path, CHECKPOINT_FORMAT, "POYO", required=("model_config", "train_config", "scaler")
    )
    config = validate(POYOConfig, meta["model_config"], f"{path}: model_config")
    with malformed_section(path, "scaler"):
        encoding = encoding_from_dict(meta["scaler"])
    model = POYO(config, readout=_readout_kind(encoding))
    load_weights(model, state, path, "POYO")
    with malformed_section(path, "train_config"):
        train = dict(meta["train_config"])
        if train.get("unit_dropout") is not None:
            train["unit_dropout"] = tuple(train["unit_dropout"])
        cfg = TrainConfig(**train)
    return LoadedPOYO(model, encoding, cfg)


def _readout_kind(encoding: TargetScaler | ClassEncoder) -> str:
    return "class" if isinstance(encoding, ClassEncoder) else "regression"


def build_poyo(
    catalog: str | Path | Catalog | OpenRecordings,
    model_config: POYOConfig,
    cfg: TrainConfig,
    train_domains: dict | None = None,
) -> tuple[POYO, TargetScaler, dict]:
    """A fresh POYO whose vocabularies cover the catalog's training recordings.

    Parameters
    ----------
    catalog : str, Path, Catalog or OpenRecordings
        The catalog; pass an :class:`OpenRecordings` to keep the recordings open for training.
    model_config : POYOConfig
        The architecture (``dim_out`` is set from the target).
    cfg : TrainConfig
        Target, seed and recordings.
    train_domains : dict, optional
        Each recording's train domain, when the caller already read them.

    Returns
    -------
    (POYO, TargetScaler, dict)
        The model, the target's scaler and the train domains.
    """
    if isinstance(catalog, str | Path):
        catalog = Catalog(catalog)
    if train_domains is None:
        train_domains = _train_domains(catalog, cfg)
    ids = sorted(train_domains)
    units, sessions = catalog_vocab(catalog, ids)
    scaler = fit_scaler(catalog, ids, cfg.target, train_domains)
    model_config = dataclasses.replace(model_config, dim_out=scaler.width)
    torch.manual_seed(cfg.seed)
    return POYO(model_config, units, sessions, _readout_kind(scaler)), scaler, train_domains


def _train_domains(catalog: Catalog | OpenRecordings, cfg: TrainConfig) -> dict:
    train_domains = split_domains_of(catalog, "train", cfg.recordings or None)
    if not train_domains:
        raise InvalidDataError(f"{catalog.path}: no recording has a non-empty train_domain")
    return train_domains


def train_poyo(
    catalog: str | Path,
    model_config: POYOConfig,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    resume: str | Path | None = None,
    accelerator: str = "auto",
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | int = "32-true",
    checkpoint_every_n_steps: int = 0,
    progress: bool = True,
    max_steps: int = -1,
    stop_after_epochs: int | None = None,
) -> tuple[POYOModule, Path]:
    """Train POYO on a catalog's train domains; returns the module and the final checkpoint.

    Writes CSV and TensorBoard logs, ``losses.csv`` (every step's loss) and ``last.ckpt`` to
    ``out_dir``: at the end of every epoch, every ``checkpoint_every_n_steps`` steps if given,
    each time atomically. ``resume`` (a ``last.ckpt``, e.g. of a killed run) continues that run
    exactly, mid-epoch too: with the same settings, its losses are those of a run that never
    stopped; it takes model and scaler from the checkpoint and builds no model of its own.
    ``stop_after_epochs`` ends the run early while keeping the learning-rate schedule of
    ``cfg.epochs``. ``accelerator`` (``auto``: a GPU when there is one), ``devices`` (per
    node), ``num_nodes``, ``strategy`` and ``precision`` are Lightning's: with ``devices *
    num_nodes > 1`` it trains with DDP, each rank on its own share of every epoch's windows
    (``cfg.batch_size`` is per rank), under Lightning's launcher, ``torchrun`` or SLURM's
    ``srun``. The catalog's index is read once and each recording opened once, for the whole
    run.

    Raises
    ------
    NeuroFMError
        Before training: a window that fits no training interval, settings that would train
        zero steps, or a checkpoint to resume that is damaged or was trained with other
        settings.
    """
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    warn_if_replacing(out_dir, resume)
    with OpenRecordings(catalog) as recordings:
        train_domains = _train_domains(recordings, cfg)
        if resume is None:
            model, scaler, _ = build_poyo(recordings, model_config, cfg, train_domains)
        else:
            model, scaler, saved = load_poyo(resume)
            _check_same_run(resume, model.config, saved, model_config, cfg)
        return fit_poyo(
            model,
            scaler,
            recordings,
            cfg,
            out_dir,
            train_domains=train_domains,
            resume=resume,
            accelerator=accelerator,
            devices=devices,
            num_nodes=num_nodes,
            strategy=strategy,
            precision=precision,
            checkpoint_every_n_steps=checkpoint_every_n_steps,
            progress=progress,
            max_steps=max_steps,
            stop_after_epochs=stop_after_epochs,
        )


#: Settings a resumed run must share with the run it continues (others, e.g. num_workers, may
#: change): they decide which batches come when, and the learning-rate schedule.
_SAME_ON_RESUME = (
    "target",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "flat_fraction",
    "unit_dropout",
    "seed",
    "recordings",
)


def _check_same_run(
    path: str | Path,
    saved_model: POYOConfig,
    saved: TrainConfig,
    model_config: POYOConfig,
    cfg: TrainConfig,
) -> None:
    """Refuse to resume a checkpoint with settings other than those it was trained with."""
    old, new = _plain(dataclasses.asdict(saved)), _plain(dataclasses.asdict(cfg))
    diffs = [
        f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in _SAME_ON_RESUME if old.get(k) != new.get(k)
    ]
    old_m, new_m = dataclasses.asdict(saved_model), dataclasses.asdict(model_config)
    diffs += [
        f"model {k} {old_m[k]!r} -> {new_m[k]!r}"
        for k in old_m
        if k != "dim_out" and old_m[k] != new_m.get(k)  # dim_out comes from the data
    ]
    if diffs:
        raise NeuroFMError(
            f"{path}: cannot resume: the run was started with other settings ({'; '.join(diffs)}); "
            "resume with the settings it was started with, or start over without resuming"
        )


def _check_trainable(
    where: Path, domains: dict, window: float, batch_size: int, world_size: int
) -> int:
    """Training steps per epoch, after checking that the window fits the training data.

    Raises
    ------
    InvalidDataError
        A window not shorter than the shortest training recording, no training interval that
        holds a whole window, or so few windows that an epoch would train zero steps.
    """
    spans = {rid: float(d.end.max() - d.start.min()) for rid, d in domains.items()}
    shortest = min(spans, key=spans.__getitem__)
    if window >= spans[shortest]:
        raise InvalidDataError(
            f"{where}: window_length {window:g} s is not shorter than recording {shortest!r}, "
            f"whose train domain spans {spans[shortest]:.4g} s (the shortest of {len(spans)}); "
            "use a shorter window_length in the model config"
        )
    counts = {rid: int(((d.end - d.start) // window).sum()) for rid, d in domains.items()}
    empty = sorted(rid for rid, n in counts.items() if n == 0)
    longest = {rid: float((d.end - d.start).max()) for rid, d in domains.items()}
    if len(empty) == len(counts):
        best = max(longest, key=longest.__getitem__)
        raise InvalidDataError(
            f"{where}: no train interval holds a whole window of {window:g} s (the longest is "
            f"{longest[best]:.4g} s, in recording {best!r}): training would run zero steps; "
            "use a shorter window_length in the model config"
        )
    if empty:
        log.warning(
            "%s: %d recording(s) have no train interval as long as the %g s window and are "
            "left out of training: %s",
            where,
            len(empty),
            window,
            ", ".join(empty),
        )
    per_rank = sum(counts.values()) // world_size
    if per_rank == 0:
        raise InvalidDataError(
            f"{where}: {sum(counts.values())} training window(s) of {window:g} s for "
            f"{world_size} devices: training would run zero steps; use fewer devices"
        )
    return math.ceil(per_rank / batch_size)


def fit_poyo(
    model: POYO,
    scaler: TargetScaler,
    catalog: str | Path | Catalog | OpenRecordings,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    train_domains: dict | None = None,
    valid_domains: dict | None = None,
    callbacks: list[Any] | None = None,
    resume: str | Path | None = None,
    accelerator: str = "auto",
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | int = "32-true",
    checkpoint_every_n_steps: int = 0,
    checkpoint_every_epoch: bool = True,
    progress: bool = True,
    max_steps: int = -1,
    stop_after_epochs: int | None = None,
    card: dict[str, Any] | None = None,
) -> tuple[POYOModule, Path]:
    """Run the training loop on a given model (fresh, resumed or being fine-tuned).

    ``catalog`` may be an :class:`OpenRecordings` already holding the recordings open (as in
    :func:`train_poyo`); otherwise the data module opens them, once, and closes them after.
    ``card`` adds or replaces fields of the model card every checkpoint carries (e.g.
    ``{"adapted_from": ..., "training": ...}``, plain values). ``checkpoint_every_epoch=False``
    writes ``last.ckpt`` only when training ends (and every ``checkpoint_every_n_steps`` steps
    if given). Other options as :func:`train_poyo`'s.
    """
    if max_steps == 0:
        raise InvalidDataError("max_steps is 0: nothing would be trained (use -1 for no limit)")
    world = devices * num_nodes  # DDP ranks; cfg.batch_size is each rank's
    point = None
    if resume:
        saved = load_checkpoint(resume)
        check_resumable(resume, saved, world)
        point = resume_point(saved)
    data = POYODataModule(catalog, model, scaler, cfg, train_domains, valid_domains, point)
    _check_trainable(
        data.catalog_path, data.train_domains, model.config.window_length, cfg.batch_size, world
    )
    # each rank's equal share of the windows, in batches; the last, partial batch trains too
    # (the DataLoader keeps it), so it counts in the learning-rate schedule
    share = len(RandomWindowSampler(data.train_domains, model.config.window_length)) // world
    steps_per_epoch = max(1, math.ceil(share / cfg.batch_size))
    total = steps_per_epoch * cfg.epochs if max_steps < 0 else max_steps
    module = POYOModule(model, scaler, cfg, total_steps=total)
    module.card_extra = dict(card or {})
    trainer = make_trainer(
        out_dir,
        max_epochs=stop_after_epochs or cfg.epochs,
        steps_per_epoch=steps_per_epoch,
        max_steps=max_steps,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        checkpoint_every_n_steps=checkpoint_every_n_steps,
        checkpoint_every_epoch=checkpoint_every_epoch,
        progress=progress,
        callbacks=callbacks,
    )
    with claim_run_folder(out_dir):
        trainer.fit(
            module, datamodule=data, ckpt_path=str(resume) if resume else None, weights_only=True
        )
    after_fit(module, trainer, Path(out_dir) / "last.ckpt")  # ddp_spawn/ddp_fork: reattach
    return module, Path(out_dir) / "last.ckpt"
