"""Training POYO with Lightning: data module, Lightning module, checkpoints, ``train_poyo``.

Recipe (shared/reference/poyo.md section 2): random 1 s windows from the train domains, unit
dropout, weighted MSE on z-scored targets, AdamW with a flat learning rate for the first half of
training then cosine decay, R^2 on the valid domains. The window sampler draws from
``(seed, epoch)`` and torch from ``(seed, step)``, so a run resumed from a checkpoint continues
exactly as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader

from neurofm.data.catalog import Catalog
from neurofm.data.sampling import RandomWindowSampler, SequentialWindowSampler
from neurofm.errors import InvalidDataError
from neurofm.models.poyo import POYO, POYOConfig
from neurofm.tokenizers.spikes import SpikeTokenizer, TargetScaler, collate, unit_keys
from neurofm.training.checkpoints import read_checkpoint
from neurofm.training.datasets import (
    OpenRecordings,
    ShardedSampler,
    WindowDataset,
    iter_recordings,
    split_domains_of,
)
from neurofm.training.trainer import make_trainer

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "neurofm.poyo"

__all__ = [
    "POYODataModule",
    "POYOModule",
    "TrainConfig",
    "fit_poyo",
    "load_poyo",
    "train_poyo",
]


@dataclass
class TrainConfig:
    """How to train (the ``train`` step of a pipeline)."""

    target: str = "hand_vel"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    flat_fraction: float = 0.5  # flat learning rate for this share of steps, then cosine
    unit_dropout: tuple[int, int, int] | None = (30, 100, 300)
    seed: int = 0
    num_workers: int = 0
    recordings: list[str] = field(default_factory=list)  # empty: every recording with splits


def fit_scaler(
    catalog: Catalog | OpenRecordings, ids: list[str], target: str, domains: dict
) -> TargetScaler:
    """Mean and standard deviation of the target over the training domains.

    Parameters
    ----------
    catalog : Catalog or OpenRecordings
        The catalog (an :class:`OpenRecordings` does not reopen its recordings).
    ids : list of str
        The training recordings.
    target : str
        Name of the target signal.
    domains : dict of str to Intervals
        Each recording's train domain.

    Returns
    -------
    TargetScaler
    """
    chunks = []
    for rid, rec in iter_recordings(catalog, ids):
        if target not in rec:
            raise InvalidDataError(
                f"{catalog.path}: recording {rid!r} has no target {target!r} "
                f"(has {sorted(rec.signals)})"
            )
        series = rec[target].load()
        values = series.data if series.kind == "regular" else series.values
        chunks.append(np.asarray(values)[domains[rid].contains(series.timestamps)])
    stacked = np.concatenate(chunks)
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
    units: list[str] = []
    for rid, rec in iter_recordings(catalog, ids):
        units.extend(unit_keys(rid, rec["spikes"].units.ids))
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
    ):
        super().__init__()
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
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            sampler = ShardedSampler(sampler, trainer.global_rank, trainer.world_size)
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
        self._val: list[tuple[np.ndarray, np.ndarray]] = []

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.model(**batch)

    def _loss(self, batch: dict[str, Any]) -> torch.Tensor:
        pred = self.model(**batch)
        weights = batch["output_weights"] * batch["output_mask"]
        err = ((pred - batch["output_values"]) ** 2).mean(dim=-1)
        return (err * weights).sum() / weights.sum().clamp_min(1e-8)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Dropout masks depend only on (seed, step), not on whatever else drew random numbers
        # before (DataLoader iterators do): a resumed run repeats them exactly.
        torch.manual_seed(self.cfg.seed * 1_000_003 + self.global_step)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["session_index"]))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        pred = self.model(**batch)
        mask = batch["output_mask"]
        self._val.append((batch["output_values"][mask].cpu().numpy(), pred[mask].cpu().numpy()))
        loss = self._loss(batch)
        self.log(
            "val_loss", loss, prog_bar=True, batch_size=len(batch["session_index"]), sync_dist=True
        )

    def on_validation_epoch_end(self) -> None:
        from neurofm.metrics import r2_score

        if self._val:
            y = np.concatenate([v[0] for v in self._val])
            p = np.concatenate([v[1] for v in self._val])
            self.log("val_r2", r2_score(y, p), prog_bar=True, sync_dist=True)
        self._val = []

    def configure_optimizers(self) -> Any:
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:  # frozen (fine-tuning): not even handed to the optimizer
                continue
            (no_decay if p.ndim < 2 or name.endswith("emb.weight") else decay).append(p)
        opt = torch.optim.AdamW(
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
        }


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def load_poyo(path: str | Path) -> tuple[POYO, TargetScaler, TrainConfig]:
    """Load a POYO checkpoint (``weights_only=True``: nothing is unpickled but tensors and
    plain containers).

    Raises
    ------
    NeuroFMError
        If the file is not a neurofm POYO checkpoint.
    """
    meta, state = read_checkpoint(path, CHECKPOINT_FORMAT, "POYO")
    config = POYOConfig(**meta["model_config"])
    model = POYO(config)
    model.load_state_dict(state)
    train = dict(meta["train_config"])
    if train.get("unit_dropout") is not None:
        train["unit_dropout"] = tuple(train["unit_dropout"])
    return model, TargetScaler.from_dict(meta["scaler"]), TrainConfig(**train)


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
    model_config = dataclasses.replace(model_config, dim_out=len(scaler.mean))
    torch.manual_seed(cfg.seed)
    return POYO(model_config, units, sessions), scaler, train_domains


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
    accelerator: str = "cpu",
    devices: int = 1,
    strategy: str = "auto",
    progress: bool = True,
    max_steps: int = -1,
    stop_after_epochs: int | None = None,
) -> tuple[POYOModule, Path]:
    """Train POYO on a catalog's train domains; returns the module and the final checkpoint.

    Writes CSV and TensorBoard logs and checkpoints (``last.ckpt``, every epoch) to
    ``out_dir``. ``stop_after_epochs`` ends the run early while keeping the learning-rate
    schedule of ``cfg.epochs`` (resume later with ``resume=out_dir / "last.ckpt"``): a resumed
    run takes model and scaler from the checkpoint and builds no model of its own.
    The catalog's index is read once and each recording opened once, for the whole run.
    """
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    with OpenRecordings(catalog) as recordings:
        train_domains = _train_domains(recordings, cfg)
        if resume is None:
            model, scaler, _ = build_poyo(recordings, model_config, cfg, train_domains)
        else:
            model, scaler, _ = load_poyo(resume)
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
            strategy=strategy,
            progress=progress,
            max_steps=max_steps,
            stop_after_epochs=stop_after_epochs,
        )


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
    accelerator: str = "cpu",
    devices: int = 1,
    strategy: str = "auto",
    progress: bool = True,
    max_steps: int = -1,
    stop_after_epochs: int | None = None,
) -> tuple[POYOModule, Path]:
    """Run the training loop on a given model (fresh, resumed or being fine-tuned).

    ``catalog`` may be an :class:`OpenRecordings` already holding the recordings open (as in
    :func:`train_poyo`); otherwise the data module opens them, once, and closes them after.
    """
    data = POYODataModule(catalog, model, scaler, cfg, train_domains, valid_domains)
    steps_per_epoch = max(
        1,
        len(RandomWindowSampler(data.train_domains, model.config.window_length))
        // (cfg.batch_size * devices),
    )
    total = steps_per_epoch * cfg.epochs if max_steps < 0 else max_steps
    module = POYOModule(model, scaler, cfg, total_steps=total)
    trainer = make_trainer(
        out_dir,
        max_epochs=stop_after_epochs or cfg.epochs,
        steps_per_epoch=steps_per_epoch,
        max_steps=max_steps,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        progress=progress,
        callbacks=callbacks,
    )
    trainer.fit(
        module, datamodule=data, ckpt_path=str(resume) if resume else None, weights_only=True
    )
    return module, Path(out_dir) / "last.ckpt"
