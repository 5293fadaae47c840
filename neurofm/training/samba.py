"""Training and evaluating SAMBA with Lightning, on a catalog of EEG-fMRI recordings.

Windows of ``W`` volumes are drawn from each recording's ``train_domain`` (every start, shuffled
per epoch), validated on ``valid_domain``; a recording with no training volumes (a held-out
subject) is only ever evaluated. The wavelet band energies of each run are computed once by the
model's own :class:`~neurofm.models.samba.WaveletAttention` (the DWT has no parameters), so an
epoch costs only the learned layers. Connectivity graphs and z-scoring come from the training
data and are stored in the checkpoint with everything else needed to use the model.

Evaluation stitches overlapping windows into whole-domain predictions (mean over duplicates)
and scores each parcel: Pearson r (mean +- SD over parcels), R^2 and MSE in the BOLD's units;
the same model on time-shuffled EEG is the control.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from neurofm.data.catalog import Catalog
from neurofm.errors import InvalidDataError, NeuroFMError
from neurofm.models.samba import Samba, SambaConfig, connectivity_graph
from neurofm.tokenizers.multimodal import (
    NO_LABEL,
    MultimodalScaler,
    PairedRun,
    load_paired_run,
)
from neurofm.training.checkpoints import checkpoint_format, read_checkpoint
from neurofm.training.datasets import ShardedSampler
from neurofm.training.trainer import make_trainer

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "neurofm.samba"

__all__ = [
    "RunPrediction",
    "SambaModule",
    "SambaTrainConfig",
    "StimulusScores",
    "evaluate_samba",
    "is_samba_checkpoint",
    "load_runs",
    "load_samba",
    "predict_run",
    "train_samba",
]


@dataclass
class SambaTrainConfig:
    """How to train SAMBA (the ``train`` step of a pipeline with a SAMBA model)."""

    epochs: int = 30
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    eeg: str = "eeg"
    bold: str = "bold"
    events: str | None = "events"
    label_lag: float = 5.0  # s: a volume shows the stimulus block active this long before it
    recordings: list[str] = field(default_factory=list)  # empty: all with a train_domain


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
        raise InvalidDataError(f"{catalog}: no recordings {missing} (has {catalog_.ids})")
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


def _check_montage(runs: list[PairedRun], channels: list[str], parcels: list[str]) -> None:
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


class RunFeatures:
    """A run's z-scored BOLD and its band energies on the run's feature grid.

    Window ``v`` (volumes ``v .. v + W - 1``) uses grid steps ``v * g .. v * g + S - 1``.
    """

    def __init__(self, run: PairedRun, model: Samba, scaler: MultimodalScaler) -> None:
        g = model.config.geometry
        self.run = run
        offset = run.window_eeg_start(0, g)
        eeg = (run.eeg - scaler.eeg_mean[:, None]) / scaler.eeg_std[:, None]
        eeg = torch.from_numpy(eeg[:, offset:].astype(np.float32))[None]
        with torch.no_grad():
            energy = model.wavelet.band_energy(eeg.to(model.mapping.device))
        self.energy = energy[0].cpu().numpy()  # (C, S_run, K)
        self.bold = ((run.bold - scaler.bold_mean) / scaler.bold_std).astype(np.float32)
        self.steps, self.grid = g.n_steps, g.grid_per_tr
        self.window_trs = g.window_trs

    def window(self, start: int, eeg_start: int | None = None) -> dict[str, np.ndarray]:
        src = start if eeg_start is None else eeg_start
        s0 = src * self.grid
        return {
            "energy": self.energy[:, s0 : s0 + self.steps],
            "bold": self.bold[start : start + self.window_trs],
            "labels": self.run.labels[start : start + self.window_trs],
        }


class _Windows(Dataset):
    """``(run index, start[, eeg start])`` items -> tensors of one window."""

    def __init__(self, features: list[RunFeatures]) -> None:
        self.features = features

    def __getitem__(self, item: tuple[int, int, int | None]) -> dict[str, torch.Tensor]:
        run, start, eeg_start = item
        w = self.features[run].window(start, eeg_start)
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in w.items()}

    def __len__(self) -> int:  # pragma: no cover - indexed by sampler items
        raise TypeError("indexed by (run, start, eeg_start) items")


class _EpochShuffle:
    """Every window start of the given runs, shuffled by ``(seed, epoch)``."""

    def __init__(self, items: list[tuple[int, int, int | None]], seed: int) -> None:
        self.items, self.seed, self.epoch = items, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int, int | None]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.items))
        return iter([self.items[i] for i in order])

    def __len__(self) -> int:
        return len(self.items)


def _window_items(
    runs: list[PairedRun], split: str, window_trs: int, stride: int = 1
) -> list[tuple[int, int, int | None]]:
    return [
        (i, int(s), None)
        for i, run in enumerate(runs)
        for s in run.window_starts(split, window_trs, stride)
    ]


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
        torch.manual_seed(self.cfg.seed * 1_000_003 + self.global_step)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.model(
            energy=batch["energy"], bold=batch["bold"], teacher_forcing=self.teacher_forcing()
        )
        parts = self.model.loss(out, batch["bold"], batch["labels"])
        n = len(batch["bold"])
        for name, value in parts.items():
            self.log(f"train_{name}", value, prog_bar=name == "loss", batch_size=n)
        return parts["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self.model(energy=batch["energy"])
        parts = self.model.loss(out, batch["bold"], batch["labels"])
        self.log("val_loss", parts["loss"], prog_bar=True, batch_size=len(batch["bold"]))
        self._val.append((batch["bold"].numpy(), out["bold"].detach().cpu().numpy()))

    def on_validation_epoch_end(self) -> None:
        from neurofm.metrics import pearson_r

        if self._val:
            # r per parcel over every validation window's volumes (not stitched: a quick score)
            y = np.concatenate([v[0] for v in self._val]).reshape(-1, len(self.parcels))
            p = np.concatenate([v[1] for v in self._val]).reshape(-1, len(self.parcels))
            self.log("val_r", float(np.mean(pearson_r(y, p))), prog_bar=True)
        self._val = []

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.model.parameter_groups(self.cfg.lr, self.cfg.weight_decay))
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
    _check_montage(runs, channels, parcels)
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


def is_samba_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a neurofm SAMBA checkpoint (False for POYO's or a missing file)."""
    return checkpoint_format(path) == CHECKPOINT_FORMAT


def load_samba(path: str | Path) -> SambaBundle:
    """Load a SAMBA checkpoint (``weights_only=True``).

    Raises
    ------
    NeuroFMError
        If the file is not a neurofm SAMBA checkpoint.
    """
    meta, state = read_checkpoint(path, CHECKPOINT_FORMAT, "SAMBA")
    config = SambaConfig(**meta["model_config"])
    try:
        model = Samba(config, state["eeg_gat.edge_index"], state["fmri_gat.edge_index"])
        model.load_state_dict(state)
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise NeuroFMError(
            f"{path}: its weights do not fit this version's SAMBA ({first}); it was written "
            "by another neurofm version: retrain it"
        ) from None
    model.eval()
    return SambaBundle(
        model,
        MultimodalScaler.from_dict(meta["scaler"]),
        SambaTrainConfig(**meta["train_config"]),
        list(meta["channels"]),
        list(meta["parcels"]),
    )


def train_samba(
    catalog: str | Path,
    config: SambaConfig,
    cfg: SambaTrainConfig,
    out_dir: str | Path,
    *,
    progress: bool = True,
    accelerator: str = "cpu",
    max_steps: int = -1,
    resume: str | Path | None = None,
    stop_after_epochs: int | None = None,
) -> tuple[SambaModule, Path]:
    """Train SAMBA on a catalog's train domains; returns the module and ``last.ckpt``.

    Writes CSV and TensorBoard logs and a checkpoint every epoch to ``out_dir``.
    ``stop_after_epochs`` ends the run early while keeping the schedules of ``cfg.epochs``;
    ``resume`` (a ``last.ckpt``) continues it exactly: window order, dropout and teacher
    forcing draw from ``(seed, epoch)`` and ``(seed, step)``, not from the run's history.
    """
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    bundle, runs = build_samba(catalog, config, cfg)
    model = bundle.model
    features = [RunFeatures(r, model, bundle.scaler) for r in runs]
    w = model.config.window_trs
    train_items = _window_items(runs, "train", w)
    if not train_items:
        raise InvalidDataError(f"{catalog}: no train_domain holds a whole window of {w} volumes")
    valid_items = _window_items(runs, "valid", w, stride=max(1, w // 2))
    steps_per_epoch = max(1, len(train_items) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs if max_steps < 0 else max_steps
    module = SambaModule(model, bundle.scaler, cfg, bundle.channels, bundle.parcels, total)
    data = _Windows(features)
    train_loader = DataLoader(
        data,
        batch_size=cfg.batch_size,
        sampler=ShardedSampler(_EpochShuffle(train_items, cfg.seed)),
        drop_last=True,
    )
    valid_loader = (
        DataLoader(data, batch_size=cfg.batch_size, sampler=valid_items) if valid_items else None
    )
    trainer = make_trainer(
        out_dir,
        max_epochs=stop_after_epochs or cfg.epochs,
        steps_per_epoch=steps_per_epoch,
        max_steps=max_steps,
        accelerator=accelerator,
        progress=progress,
        limit_val_batches=1.0 if valid_loader is not None else 0,
    )
    trainer.fit(
        module,
        train_loader,
        valid_loader,
        ckpt_path=str(resume) if resume is not None else None,
        weights_only=True,
    )
    model.eval()
    return module, Path(out_dir) / "last.ckpt"


# --------------------------------------------------------------------------------------------
# prediction and evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class RunPrediction:
    """Stitched predictions of one run over a split's volumes."""

    recording_id: str
    volumes: np.ndarray  # (V,) volume indices
    timestamps: np.ndarray  # (V,) s
    true: np.ndarray  # (V, P) BOLD units
    pred: np.ndarray  # (V, P) BOLD units
    hidden: np.ndarray  # (V, P * h) decoder states, mean over the windows covering a volume
    logits: np.ndarray | None  # (V, K)
    labels: np.ndarray  # (V,)
    alpha: np.ndarray  # (K_bands,) mean attention over wavelet scales


def predict_run(
    bundle: SambaBundle,
    run: PairedRun,
    split: str,
    *,
    stride: int | None = None,
    shuffle_eeg: bool = False,
    seed: int = 0,
    batch_size: int = 32,
    features: RunFeatures | None = None,
) -> RunPrediction:
    """Predict the volumes of ``run`` inside ``<split>_domain``, stitching overlapping windows.

    ``shuffle_eeg`` pairs every window's BOLD with the EEG of another window of the same split
    (a random derangement): the time-shuffled control.
    """
    model = bundle.model
    model.eval()
    _check_montage([run], bundle.channels, bundle.parcels)
    w = model.config.window_trs
    starts = run.window_starts(split, w, stride or max(1, w // 2))
    if len(starts) == 0:
        raise InvalidDataError(
            f"recording {run.recording_id!r}: {split}_domain holds no whole window of {w} volumes"
        )
    eeg_starts: list[int | None] = [None] * len(starts)
    if shuffle_eeg and len(starts) > 1:
        # a random derangement: window idx[i] takes the EEG of window idx[i + 1]
        idx = np.random.default_rng(seed).permutation(len(starts))
        perm = np.empty(len(starts), dtype=np.int64)
        perm[idx] = np.roll(idx, -1)
        eeg_starts = [int(starts[j]) for j in perm]
    feats = features if features is not None else RunFeatures(run, model, bundle.scaler)
    n_vol, p = run.bold.shape
    h = model.config.hidden
    k = len(model.config.classes)
    acc = {
        "pred": np.zeros((n_vol, p)),
        "hidden": np.zeros((n_vol, p * h)),
        "logits": np.zeros((n_vol, max(k, 1))),
    }
    count = np.zeros(n_vol)
    alpha_sum, alpha_n = 0.0, 0
    items = list(zip(starts.tolist(), eeg_starts, strict=True))
    with torch.no_grad():
        for i in range(0, len(items), batch_size):
            chunk = items[i : i + batch_size]
            energy = torch.from_numpy(np.stack([feats.window(s, e)["energy"] for s, e in chunk]))
            out = model(energy=energy.to(model.mapping.device))
            alpha_sum = alpha_sum + out["alpha"].mean(dim=(0, 1, 2)).cpu().numpy() * len(chunk)
            alpha_n += len(chunk)
            for j, (s, _) in enumerate(chunk):
                sl = slice(s, s + w)
                acc["pred"][sl] += out["bold"][j].cpu().numpy()
                acc["hidden"][sl] += out["hidden"][j].reshape(w, -1).cpu().numpy()
                if "logits" in out:
                    acc["logits"][sl] += out["logits"][j].cpu().numpy()
                count[sl] += 1
    vols = np.flatnonzero(count > 0)
    vols = vols[np.isin(vols, run.volumes_in(split))]
    c = count[vols][:, None]
    return RunPrediction(
        recording_id=run.recording_id,
        volumes=vols,
        timestamps=run.bold_times[vols],
        true=run.bold[vols].astype(np.float64),
        pred=bundle.scaler.bold_inverse(acc["pred"][vols] / c),
        hidden=acc["hidden"][vols] / c,
        logits=acc["logits"][vols] / c if k else None,
        labels=run.labels[vols],
        alpha=np.asarray(alpha_sum) / max(alpha_n, 1),
    )


def parcel_scores(true: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Per-parcel Pearson r (mean, SD, all), R^2 (mean over parcels) and MSE."""
    from neurofm.metrics import pearson_r, r2_score

    r = pearson_r(true, pred)
    return {
        "r_mean": float(np.mean(r)),
        "r_sd": float(np.std(r)),
        "r2": r2_score(true, pred),
        "mse": float(np.mean((true - pred) ** 2)),
        "r_per_parcel": r,
    }


@dataclass
class StimulusScores:
    """Stimulus decoding from decoder states on labelled held-out volumes.

    Plain accuracy is compared with the majority-class rate, balanced accuracy (the mean of
    per-class recalls) with ``1 / K``: held-out stretches are short, so their class mix is
    uneven and balanced accuracy is the fairer score.
    """

    accuracy: float
    balanced_accuracy: float
    majority_chance: float
    chance: float
    n_volumes: int


def _stimulus_scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> StimulusScores:
    from sklearn.metrics import balanced_accuracy_score

    return StimulusScores(
        accuracy=float(np.mean(y_true == y_pred)),
        balanced_accuracy=float(balanced_accuracy_score(y_true, y_pred)),
        majority_chance=float(np.bincount(y_true).max() / len(y_true)),
        chance=1.0 / n_classes,
        n_volumes=len(y_true),
    )


def _labelled(preds: list[RunPrediction], attr: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([getattr(p, attr) for p in preds])
    y = np.concatenate([p.labels for p in preds])
    return x[y != NO_LABEL], y[y != NO_LABEL]


def _probe_scores(
    train: list[RunPrediction], test: list[RunPrediction], n_classes: int
) -> StimulusScores | None:
    """Linear probe (logistic regression) on decoder states, fitted on training volumes."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if not train or not test:
        return None
    x_tr, y_tr = _labelled(train, "hidden")
    x_te, y_te = _labelled(test, "hidden")
    if len(np.unique(y_tr)) < 2 or len(y_te) == 0:
        return None
    # the penalty is picked by 3-fold cross-validation on the training volumes
    probe = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(
            Cs=6, cv=3, max_iter=2000, class_weight="balanced", scoring="balanced_accuracy"
        ),
    )
    with warnings.catch_warnings():  # scikit-learn 1.8 announces changed defaults we don't use
        warnings.simplefilter("ignore", FutureWarning)
        probe.fit(x_tr, y_tr)
    return _stimulus_scores(y_te, probe.predict(x_te), n_classes)


@dataclass
class SambaReport:
    """Scores of one split: per recording, pooled, controls and the stimulus classifier."""

    split: str
    per_recording: dict[str, dict[str, Any]] = field(default_factory=dict)
    shuffled: dict[str, dict[str, Any]] = field(default_factory=dict)
    predictions: dict[str, RunPrediction] = field(default_factory=dict)
    probe: StimulusScores | None = None  # linear probe on decoder states
    head: StimulusScores | None = None  # the model's end-to-end stimulus head
    alpha: np.ndarray | None = None  # mean attention per wavelet band
    hrf_peaks: np.ndarray | None = None  # s, per parcel

    @property
    def r_mean(self) -> float:
        return float(np.mean([s["r_mean"] for s in self.per_recording.values()]))

    @property
    def shuffled_r_mean(self) -> float:
        return float(np.mean([s["r_mean"] for s in self.shuffled.values()]))


def evaluate_samba(
    bundle: SambaBundle,
    catalog: str | Path,
    split: str = "test",
    *,
    recordings: list[str] | None = None,
    shuffled_control: bool = True,
) -> SambaReport:
    """Score a trained SAMBA on a split of every recording that has one.

    Returns per-recording parcel scores (:func:`parcel_scores`), the time-shuffled control,
    stimulus decoding on the split's labelled volumes (:class:`StimulusScores` of a linear
    probe fitted on the training recordings' train volumes, and of the end-to-end head), the
    mean attention over wavelet bands and the learned HRF peaks.
    """
    cfg = bundle.cfg
    runs = load_runs(catalog, bundle.model.config, cfg, recordings)
    report = SambaReport(split)
    train_preds, alphas = [], []
    for run in runs:
        if len(run.window_starts(split, bundle.model.config.window_trs)) == 0:
            continue
        feats = RunFeatures(run, bundle.model, bundle.scaler)  # one DWT per run, used 3 times
        pred = predict_run(bundle, run, split, features=feats)
        report.predictions[run.recording_id] = pred
        report.per_recording[run.recording_id] = parcel_scores(pred.true, pred.pred)
        alphas.append(pred.alpha)
        if shuffled_control:
            ctrl = predict_run(bundle, run, split, shuffle_eeg=True, seed=cfg.seed, features=feats)
            report.shuffled[run.recording_id] = parcel_scores(ctrl.true, ctrl.pred)
        if bundle.model.config.classes and len(
            run.window_starts("train", bundle.model.config.window_trs)
        ):
            train_preds.append(predict_run(bundle, run, "train", features=feats))
    if not report.per_recording:
        raise InvalidDataError(f"{catalog}: no recording has a {split}_domain of a whole window")
    report.alpha = np.mean(alphas, axis=0)
    report.hrf_peaks = bundle.model.hrf.peaks()
    classes = bundle.model.config.classes
    if classes:
        tests = list(report.predictions.values())
        report.probe = _probe_scores(train_preds, tests, len(classes))
        logits, y = _labelled([p for p in tests if p.logits is not None], "logits")
        if len(y):
            report.head = _stimulus_scores(y, logits.argmax(axis=1), len(classes))
    return report
