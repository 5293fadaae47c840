"""Training SAMBA with Lightning, on a catalog of EEG-fMRI recordings.

Data take the same path as POYO's::

    sampler (VolumeWindow items) -> PairedRunDataset (the runs, loaded once)
        -> MultimodalTokenizer (band energies cached per run) -> collate_windows

(:class:`~neurofm.tokenizers.multimodal.VolumeWindow`,
:class:`~neurofm.tokenizers.multimodal.MultimodalTokenizer`). Windows of
``W`` volumes are drawn from each recording's ``train_domain`` (every start, shuffled per epoch,
:class:`ShuffledVolumeSampler`), validated on ``valid_domain``; a recording with no training
volumes (a held-out subject) is only ever evaluated. The wavelet band energies of each run are
computed once by the model's own :class:`~neurofm.models.samba.WaveletAttention` (the DWT has no
parameters) and cached by the tokenizer, so an epoch costs only the learned layers.
Connectivity graphs and z-scoring come from the training data and are stored in the checkpoint
with everything else needed to use the model.

Evaluation (stitching, per-parcel scores, controls, stimulus decoding) is
:mod:`neurofm.evaluation.samba`.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import lightning.pytorch as pl
import numpy as np
import torch
from pydantic import Field
from torch.utils.data import DataLoader, Dataset

from neurofm import display
from neurofm.data.catalog import Catalog
from neurofm.display import config_html, config_repr
from neurofm.errors import InvalidDataError, NeuroFMError
from neurofm.models.samba import Samba, SambaConfig, connectivity_graph
from neurofm.specs import check_fields, validate
from neurofm.tokenizers.multimodal import (
    FeatureTransform,
    MultimodalScaler,
    MultimodalTokenizer,
    PairedRun,
    VolumeWindow,
    collate_windows,
    load_paired_run,
)
from neurofm.training.checkpoints import (
    check_resumable,
    checkpoint_format,
    load_checkpoint,
    load_weights,
    malformed_section,
    read_checkpoint,
    resume_point,
)
from neurofm.training.datasets import ShardedSampler
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

CHECKPOINT_FORMAT = "neurofm.samba"

__all__ = [
    "PairedRunDataset",
    "SambaBundle",
    "SambaModule",
    "SambaTrainConfig",
    "ShuffledVolumeSampler",
    "band_energy_transform",
    "build_samba",
    "check_montage",
    "is_samba_checkpoint",
    "load_runs",
    "load_samba",
    "samba_tokenizer",
    "train_samba",
    "volume_windows",
]


@dataclass
class SambaTrainConfig:
    """How to train SAMBA (the ``train`` step of a pipeline with a SAMBA model).

    Ranges are checked when a config is made, in Python as from a pipeline.

    Attributes
    ----------
    epochs : int
        Passes over the training windows (>= 1).
    batch_size : int
        Windows per optimisation step (>= 1).
    lr : float
        Learning rate (AdamW; the HRF parameters use ``SambaConfig.hrf_lr_scale`` times it).
    weight_decay : float
        AdamW weight decay.
    seed : int
        Seed of initialisation and window sampling.
    eeg : str
        Name of the recordings' EEG signal.
    bold : str
        Name of the recordings' parcel BOLD signal (the target).
    events : str or None
        Interval signal whose labels are the stimulus classes; None: no stimulus head.
    label_lag : float
        Seconds: a volume is labelled with the stimulus block active this long before it
        (the hemodynamic delay).
    recordings : list of str
        Recordings to train on; empty: every one with a train_domain.
    """

    epochs: Annotated[int, Field(ge=1)] = 30
    batch_size: Annotated[int, Field(ge=1)] = 16
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 3e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    seed: int = 0
    eeg: str = "eeg"
    bold: str = "bold"
    events: str | None = "events"
    # s: a volume shows the stimulus block active this long before it
    label_lag: Annotated[float, Field(ge=0)] = 5.0
    recordings: list[str] = field(default_factory=list)  # empty: all with a train_domain

    def __post_init__(self) -> None:
        check_fields(self)

    def __repr__(self) -> str:  # only the fields that differ from the defaults
        return config_repr(self)

    def _repr_html_(self) -> str:
        return config_html(self)


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def load_runs(
    catalog: str | Path,
    config: SambaConfig,
    cfg: SambaTrainConfig,
    ids: list[str] | None = None,
) -> list[PairedRun]:
    """Load the catalog's EEG-fMRI recordings (all, or ``ids``) for windowing."""
    catalog_ = Catalog(catalog)
    missing = sorted(set(ids or []) - set(catalog_.ids))
    if missing:
        raise InvalidDataError(
            f"{catalog}: no recordings {', '.join(missing)} (has {', '.join(catalog_.ids)})"
        )
    runs = []
    for rid in ids or catalog_.ids:
        with catalog_.open(rid) as rec:
            runs.append(
                load_paired_run(
                    rec,
                    config.geometry,
                    eeg=cfg.eeg,
                    bold=cfg.bold,
                    events=cfg.events,
                    classes=config.classes,
                    label_lag=cfg.label_lag,
                )
            )
    return runs


def check_montage(runs: Sequence[PairedRun], channels: list[str], parcels: list[str]) -> None:
    """Raise :class:`InvalidDataError` unless every run has the model's channels and parcels.

    Parameters
    ----------
    runs : sequence of PairedRun
        Loaded runs.
    channels, parcels : list of str
        The model's EEG channels (same names, same order) and BOLD parcels.
    """
    for run in runs:
        if run.channels != channels:
            raise InvalidDataError(
                f"recording {run.recording_id!r}: EEG channels {run.channels} differ from the "
                f"model's {channels}; SAMBA needs one montage (same channels, same order)"
            )
        if run.parcels != parcels:
            raise InvalidDataError(
                f"recording {run.recording_id!r}: BOLD parcels differ from the model's "
                f"({len(run.parcels)} vs {len(parcels)}); use one atlas for all recordings"
            )


def _stimulus_classes(catalog: Catalog, ids: list[str], events: str | None) -> list[str]:
    names: set[str] = set()
    for rid in ids:
        with catalog.open(rid) as rec:
            if events is not None and events in rec:
                labels = rec[events].load().labels
                if labels is not None:
                    names.update(str(v) for v in labels)
    return sorted(names)


def band_energy_transform(model: Samba) -> FeatureTransform:
    """The model's wavelet band energies as a tokenizer's per-run feature transform.

    Maps a whole run's z-scored EEG (C, N) float32 to its band energies on the feature grid
    (C, S, K) with :meth:`~neurofm.models.samba.WaveletAttention.band_energy` (no gradients:
    the DWT has no parameters, so the energies can be computed once per run).
    """

    def transform(eeg: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            energy = model.wavelet.band_energy(torch.from_numpy(eeg)[None].to(model.mapping.device))
        return energy[0].cpu().numpy()

    return transform


def samba_tokenizer(model: Samba, scaler: MultimodalScaler) -> MultimodalTokenizer:
    """The tokenizer SAMBA trains and evaluates with: z-scored windows of cached band energies."""
    return MultimodalTokenizer(model.config.geometry, scaler, band_energy_transform(model))


class PairedRunDataset(Dataset):
    """Tokenized windows of EEG-fMRI runs held in memory (SAMBA's ``WindowDataset``).

    Indexed by :class:`~neurofm.tokenizers.multimodal.VolumeWindow` items from a sampler; each
    is cut out of its run by the tokenizer (which caches the costly per-run features).

    Parameters
    ----------
    runs : sequence of PairedRun
        The runs, loaded once (:func:`load_runs`).
    tokenizer : MultimodalTokenizer
        Cuts and z-scores a window (:func:`samba_tokenizer`).
    """

    def __init__(self, runs: Sequence[PairedRun], tokenizer: MultimodalTokenizer) -> None:
        self.runs = {run.recording_id: run for run in runs}
        self.tokenizer = tokenizer

    def __getitem__(self, window: VolumeWindow) -> dict[str, Any]:
        return self.tokenizer(self.runs[window.recording_id], window.start, window.eeg_start)

    def __len__(self) -> int:  # pragma: no cover - indexed by windows, not integers
        raise TypeError("PairedRunDataset is indexed by VolumeWindow items from a sampler")


def volume_windows(
    runs: Sequence[PairedRun], split: str, window_trs: int, stride: int = 1
) -> list[VolumeWindow]:
    """Every window of ``window_trs`` volumes inside each run's split, every ``stride`` volumes
    (plus the last of each stretch), run by run in order: a sequential sampler."""
    return [
        VolumeWindow(run.recording_id, int(s))
        for run in runs
        for s in run.window_starts(split, window_trs, stride)
    ]


def _longest_stretch(runs: Sequence[PairedRun], split: str) -> int:
    """The most consecutive volumes inside one run's ``split``."""
    longest = 0
    for run in runs:
        inside = run.volumes_in(split)
        if len(inside):
            stretches = np.split(inside, np.flatnonzero(np.diff(inside) != 1) + 1)
            longest = max(longest, *(len(s) for s in stretches))
    return longest


class ShuffledVolumeSampler:
    """The given windows, in an order shuffled by ``(seed, epoch)`` (SAMBA's training sampler).

    Lightning calls :meth:`set_epoch` before each epoch (through
    :class:`~neurofm.training.datasets.ShardedSampler`), so a resumed run sees the same order.
    """

    def __init__(self, windows: list[VolumeWindow], seed: int) -> None:
        self.windows, self.seed, self.epoch = windows, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[VolumeWindow]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.windows))
        return iter([self.windows[i] for i in order])

    def __len__(self) -> int:
        return len(self.windows)


# --------------------------------------------------------------------------------------------
# Lightning
# --------------------------------------------------------------------------------------------


class SambaModule(pl.LightningModule):
    """SAMBA, its losses and schedules, and what a checkpoint must carry."""

    def __init__(
        self,
        model: Samba,
        scaler: MultimodalScaler,
        cfg: SambaTrainConfig,
        channels: list[str],
        parcels: list[str],
        total_steps: int = 1,
    ) -> None:
        super().__init__()
        self.model, self.scaler, self.cfg = model, scaler, cfg
        self.channels, self.parcels = channels, parcels
        self.total_steps = max(1, total_steps)
        self._val: list[tuple[np.ndarray, np.ndarray]] = []

    def teacher_forcing(self) -> float:
        """Probability of feeding the true previous volume: decays to 0 at mid-training."""
        progress = self.global_step / self.total_steps
        return self.model.config.teacher_forcing * max(0.0, 1.0 - 2.0 * progress)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Dropout and teacher-forcing draws depend only on (seed, step): resumes repeat them.
        seed_step(rank_seed(self.cfg.seed, self.global_step, self.global_rank), self.device)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.model(
            energy=batch["energy"], bold=batch["bold"], teacher_forcing=self.teacher_forcing()
        )
        parts = self.model.loss(out, batch["bold"], batch["labels"])
        n = len(batch["bold"])
        for name, value in parts.items():
            self.log(f"train_{name}", value, prog_bar=name == "loss", batch_size=n)
        loss = parts["loss"]
        if "logits" in out and "ce" not in parts and self._trainer is not None:
            if self.trainer.world_size > 1:
                # No labelled window in this rank's batch: the classifier would get no gradient
                # here while other ranks' do, and DDP would wait for it forever. A zero term
                # keeps it in the graph (one process keeps its plain loss, bit for bit).
                loss = loss + 0.0 * out["logits"].sum()
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self.model(energy=batch["energy"])
        parts = self.model.loss(out, batch["bold"], batch["labels"])
        # (under DDP: the mean of the ranks' means)
        self.log(
            "val_loss", parts["loss"], prog_bar=True, batch_size=len(batch["bold"]), sync_dist=True
        )
        # .float().cpu(): the scores are numpy's, whatever device and precision trained
        self._val.append(
            (batch["bold"].float().cpu().numpy(), out["bold"].detach().float().cpu().numpy())
        )

    def on_validation_epoch_end(self) -> None:
        from neurofm.metrics import pearson_r

        # Under DDP each rank scored its share of the windows (each once across ranks).
        parts = [v for rank in all_gather_objects(self._val) for v in rank]
        if parts:
            # r per parcel over every validation window's volumes (not stitched: a quick score)
            y = np.concatenate([v[0] for v in parts]).reshape(-1, len(self.parcels))
            p = np.concatenate([v[1] for v in parts]).reshape(-1, len(self.parcels))
            self.log("val_r", float(np.mean(pearson_r(y, p))), prog_bar=True, sync_dist=True)
        self._val = []

    def configure_optimizers(self) -> Any:
        opt = adamw(self.model.parameter_groups(self.cfg.lr, self.cfg.weight_decay), self.cfg.lr)
        # Flat for the first half, then cosine decay (as POYO's recipe).
        flat = self.total_steps // 2
        sched = torch.optim.lr_scheduler.SequentialLR(
            opt,
            [
                torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=flat),
                torch.optim.lr_scheduler.CosineAnnealingLR(
                    opt, T_max=max(1, self.total_steps - flat), eta_min=self.cfg.lr * 1e-3
                ),
            ],
            milestones=[flat],
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["neurofm"] = {
            "format": CHECKPOINT_FORMAT,
            "model_config": dataclasses.asdict(self.model.config),
            "train_config": dataclasses.asdict(self.cfg),
            "scaler": self.scaler.to_dict(),
            "channels": list(self.channels),
            "parcels": list(self.parcels),
            "total_steps": self.total_steps,
        }


@dataclass
class SambaBundle:
    """A trained SAMBA and what it needs to be applied: scaler, montage, parcels, config."""

    model: Samba
    scaler: MultimodalScaler
    cfg: SambaTrainConfig
    channels: list[str]
    parcels: list[str]

    def __repr__(self) -> str:  # the model's own repr is pages of layers
        n = sum(p.numel() for p in self.model.parameters())
        return (
            f"<SambaBundle: {n:,} parameters; EEG {len(self.channels)} channels "
            f"({display.names(self.channels, 4)}) -> BOLD {len(self.parcels)} parcels "
            f"({display.names(self.parcels, 3)}); {config_repr(self.model.config)}>"
        )


def build_samba(
    catalog: str | Path, config: SambaConfig, cfg: SambaTrainConfig
) -> tuple[SambaBundle, list[PairedRun]]:
    """A fresh SAMBA sized, graphed and scaled from the catalog's training data."""
    catalog_ = Catalog(catalog)
    ids = cfg.recordings or catalog_.ids
    config = dataclasses.replace(config, classes=_stimulus_classes(catalog_, ids, cfg.events))
    runs = [r for r in load_runs(catalog, config, cfg, ids) if len(r.volumes_in("train"))]
    if not runs:
        raise InvalidDataError(f"{catalog}: no recording has a non-empty train_domain")
    channels, parcels = runs[0].channels, runs[0].parcels
    check_montage(runs, channels, parcels)
    scaler = MultimodalScaler.fit(runs)
    # every 5th EEG sample is plenty for correlations
    parts = [run.split_data("train", eeg_step=5) for run in runs]
    bold_parts = [b for b, _ in parts]
    eeg_parts = [e.T for _, e in parts]
    config = dataclasses.replace(config, n_channels=len(channels), n_parcels=len(parcels))
    torch.manual_seed(cfg.seed)
    model = Samba(
        config,
        connectivity_graph(np.concatenate(eeg_parts), config.graph_k),
        connectivity_graph(np.concatenate(bold_parts), config.graph_k),
    )
    return SambaBundle(model, scaler, cfg, list(channels), list(parcels)), runs


def _check_same_run(
    path: str | Path, saved: SambaBundle, config: SambaConfig, cfg: SambaTrainConfig
) -> None:
    """Refuse to resume a checkpoint with settings other than those it was trained with."""
    old, new = dataclasses.asdict(saved.cfg), dataclasses.asdict(cfg)
    diffs = [f"{k} {old[k]!r} -> {new[k]!r}" for k in old if old[k] != new.get(k)]
    old_m, new_m = dataclasses.asdict(saved.model.config), dataclasses.asdict(config)
    diffs += [
        f"model {k} {old_m[k]!r} -> {new_m[k]!r}"
        for k in old_m
        if k not in ("n_channels", "n_parcels", "classes") and old_m[k] != new_m.get(k)
    ]  # (those three come from the data)
    if diffs:
        raise NeuroFMError(
            f"{path}: cannot resume: the run was started with other settings "
            f"({'; '.join(diffs)}); resume with the settings it was started with, or start over "
            "without resuming"
        )


def is_samba_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a neurofm SAMBA checkpoint (False for POYO's or a missing file)."""
    return checkpoint_format(path) == CHECKPOINT_FORMAT


def load_samba(path: str | Path) -> SambaBundle:
    """Load a SAMBA checkpoint (``weights_only=True``).

    The checkpoint is checked before use: its weights' digest, its ``neurofm`` section and
    every tensor's presence and shape.

    Raises
    ------
    NeuroFMError
        If the file is not a neurofm SAMBA checkpoint, or is incomplete, damaged or modified
        (the message names the file and what is missing or mismatched).
    """
    meta, state = read_checkpoint(
        path,
        CHECKPOINT_FORMAT,
        "SAMBA",
        required=("model_config", "train_config", "scaler", "channels", "parcels"),
    )
    config = validate(SambaConfig, meta["model_config"], f"{path}: model_config")
    graphs = [state.get(f"{name}.edge_index") for name in ("eeg_gat", "fmri_gat")]
    if not all(isinstance(g, torch.Tensor) and g.ndim == 2 and len(g) == 2 for g in graphs):
        raise NeuroFMError(
            f"{path}: its weights do not fit a SAMBA: the graphs (eeg_gat.edge_index, "
            "fmri_gat.edge_index, each 2 x edges) are missing or malformed: the file is damaged "
            "or was written by another neurofm version"
        )
    with malformed_section(path, "model_config"):
        model = Samba(config, *graphs)
    load_weights(model, state, path, "SAMBA")
    model.eval()
    with malformed_section(path, "scaler, train_config, channels or parcels"):
        return SambaBundle(
            model,
            MultimodalScaler.from_dict(meta["scaler"]),
            SambaTrainConfig(**meta["train_config"]),
            [str(c) for c in meta["channels"]],
            [str(p) for p in meta["parcels"]],
        )


def train_samba(
    catalog: str | Path,
    config: SambaConfig,
    cfg: SambaTrainConfig,
    out_dir: str | Path,
    *,
    progress: bool = True,
    accelerator: str = "auto",
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | int = "32-true",
    checkpoint_every_n_steps: int = 0,
    max_steps: int = -1,
    resume: str | Path | None = None,
    stop_after_epochs: int | None = None,
) -> tuple[SambaModule, Path]:
    """Train SAMBA on a catalog's train domains; returns the module and ``last.ckpt``.

    Writes CSV and TensorBoard logs, ``losses.csv`` (every step's loss) and ``last.ckpt`` to
    ``out_dir``: at the end of every epoch, every ``checkpoint_every_n_steps`` steps if given,
    each time atomically. ``stop_after_epochs`` ends the run early while keeping the schedules
    of ``cfg.epochs``; ``resume`` (a ``last.ckpt``, e.g. of a killed run) continues it exactly,
    mid-epoch too: window order, dropout and teacher forcing draw from ``(seed, epoch)`` and
    ``(seed, step)``, not from the run's history. ``accelerator`` (``auto``: a GPU when there
    is one), ``devices`` (per node), ``num_nodes``, ``strategy`` and ``precision`` are
    Lightning's; under DDP each rank trains on its share of every epoch's windows
    (``cfg.batch_size`` is per rank).

    Raises
    ------
    NeuroFMError
        Before training: no training window, settings that would train zero steps, or a
        checkpoint to resume that is damaged or was trained with other settings.
    """
    if max_steps == 0:
        raise InvalidDataError("max_steps is 0: nothing would be trained (use -1 for no limit)")
    point = None
    if resume is not None:
        saved = load_samba(resume)  # checked before anything trains
        _check_same_run(resume, saved, config, cfg)
        checkpoint = load_checkpoint(resume)
        check_resumable(resume, checkpoint, devices * num_nodes)
        point = resume_point(checkpoint)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    warn_if_replacing(out_dir, resume)
    bundle, runs = build_samba(catalog, config, cfg)
    model = bundle.model
    tokenizer = samba_tokenizer(model, bundle.scaler)
    for run in runs:  # band energies of every run once, before training, where the model is
        tokenizer.run_features(run)
    w = model.config.window_trs
    train_windows = volume_windows(runs, "train", w)
    if not train_windows:
        raise InvalidDataError(f"{catalog}: no train_domain holds a whole window of {w} volumes")
    valid_windows = volume_windows(runs, "valid", w, stride=max(1, w // 2))
    if not valid_windows:
        # Said here, in the data's terms, rather than by Lightning's "no val_dataloader".
        log.warning(
            "%s: no valid_domain holds a whole window of %d volumes (the longest stretch of "
            "valid volumes in a run is %d): training without validation, so no val_loss or "
            "val_r; a longer recording, or a card whose splits give valid blocks of at least "
            "%d volumes, validates",
            catalog,
            w,
            _longest_stretch(runs, "valid"),
            w,
        )
    world = devices * num_nodes  # DDP ranks; cfg.batch_size is each rank's
    if len(train_windows) // world < cfg.batch_size:  # full batches only (drop_last)
        raise InvalidDataError(
            f"{catalog}: {len(train_windows)} training window(s) of {w} volumes"
            + (f" over {world} devices" if world > 1 else "")
            + f" fill no batch of {cfg.batch_size}: training would run zero steps; use a "
            "smaller batch_size (or window_trs)"
        )
    steps_per_epoch = max(1, len(train_windows) // world // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs if max_steps < 0 else max_steps
    module = SambaModule(model, bundle.scaler, cfg, bundle.channels, bundle.parcels, total)
    data = PairedRunDataset(runs, tokenizer)
    train_loader = DataLoader(
        data,
        batch_size=cfg.batch_size,
        sampler=ResumableSampler(
            ShardedSampler(ShuffledVolumeSampler(train_windows, cfg.seed)), cfg.batch_size, point
        ),
        collate_fn=collate_windows,
        drop_last=True,
    )
    valid_loader = (
        DataLoader(
            data,
            batch_size=cfg.batch_size,
            # every validation window once across DDP ranks
            sampler=ShardedSampler(valid_windows, drop_last=False),
            collate_fn=collate_windows,
        )
        if valid_windows
        else None
    )
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
        progress=progress,
        limit_val_batches=1.0 if valid_loader is not None else 0,
    )
    with warnings.catch_warnings(), claim_run_folder(out_dir):
        # no valid windows: said above; Lightning's own words would name only its dataloader
        warnings.filterwarnings("ignore", "You defined a `validation_step` but have no")
        trainer.fit(
            module,
            train_loader,
            valid_loader,
            ckpt_path=str(resume) if resume is not None else None,
            weights_only=True,
        )
    after_fit(module, trainer, Path(out_dir) / "last.ckpt")  # ddp_spawn/ddp_fork: reattach
    model.eval()
    return module, Path(out_dir) / "last.ckpt"
