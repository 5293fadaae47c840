"""SAMBA's evaluation: stitched BOLD predictions, per-parcel scores, controls, stimulus decoding.

Windows take the training path (sampler -> :class:`~neurofm.training.samba.PairedRunDataset` ->
:class:`~neurofm.tokenizers.multimodal.MultimodalTokenizer` -> ``collate_windows``), half
overlapping; every volume gets the mean over the windows that contain it
(:class:`~neurofm.evaluation.stitching.OverlapMean`). Each parcel is scored by Pearson r (mean
+- SD over parcels), R^2 and MSE in the BOLD's units; the same model on time-shuffled EEG is the
control. The stimulus is decoded from the decoder's hidden states by a linear probe and by the
model's own head, scored by balanced accuracy.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from neurofm import display
from neurofm.errors import InvalidDataError
from neurofm.evaluation.stitching import OverlapMean
from neurofm.metrics import balanced_accuracy, pearson_r, r2_score
from neurofm.tokenizers.multimodal import (
    NO_LABEL,
    MultimodalTokenizer,
    PairedRun,
    VolumeWindow,
    collate_windows,
)
from neurofm.training.samba import (
    PairedRunDataset,
    SambaBundle,
    check_montage,
    load_runs,
    samba_tokenizer,
    volume_windows,
)

__all__ = [
    "RunPrediction",
    "SambaReport",
    "StimulusScores",
    "evaluate_samba",
    "parcel_scores",
    "predict_run",
    "probe_scores",
    "shuffled_eeg",
    "stimulus_scores",
]


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


def shuffled_eeg(windows: list[VolumeWindow], seed: int = 0) -> list[VolumeWindow]:
    """The same windows, each paired with the EEG of another window of its run.

    A random derangement per run (window ``idx[i]`` takes the EEG of window ``idx[i + 1]``):
    BOLD and EEG from different moments, the time-shuffled control. A run with a single window
    keeps its own EEG.
    """
    out = list(windows)
    for rid in dict.fromkeys(w.recording_id for w in windows):
        pos = [i for i, w in enumerate(windows) if w.recording_id == rid]
        if len(pos) < 2:
            continue
        idx = np.random.default_rng(seed).permutation(len(pos))
        perm = np.empty(len(pos), dtype=np.int64)
        perm[idx] = np.roll(idx, -1)
        for j, i in enumerate(pos):
            out[i] = windows[i]._replace(eeg_start=int(windows[pos[perm[j]]].start))
    return out


def predict_run(
    bundle: SambaBundle,
    run: PairedRun,
    split: str,
    *,
    stride: int | None = None,
    shuffle_eeg: bool = False,
    seed: int = 0,
    batch_size: int = 32,
    tokenizer: MultimodalTokenizer | None = None,
) -> RunPrediction:
    """Predict the volumes of ``run`` inside ``<split>_domain``, stitching overlapping windows.

    Parameters
    ----------
    bundle : SambaBundle
        The trained model with its scaler, channels and parcels.
    run : PairedRun
        A loaded run with the model's montage.
    split : str
        Whose ``<split>_domain`` to predict.
    stride : int, optional
        Volumes between window starts (default half a window).
    shuffle_eeg : bool
        Pair every window's BOLD with the EEG of another window of the same split
        (:func:`shuffled_eeg`, drawn from ``seed``): the time-shuffled control.
    seed : int
        Seed of the shuffled control.
    batch_size : int
        Windows per forward pass.
    tokenizer : MultimodalTokenizer, optional
        Reuse a tokenizer (:func:`~neurofm.training.samba.samba_tokenizer`) whose cache already
        holds the run's band energies; default a fresh one.

    Returns
    -------
    RunPrediction
        Stitched predictions of the split's volumes, in the BOLD's units.

    Raises
    ------
    InvalidDataError
        A montage other than the model's, or a split without one whole window.
    """
    model = bundle.model
    model.eval()
    check_montage([run], bundle.channels, bundle.parcels)
    w = model.config.window_trs
    windows = volume_windows([run], split, w, stride or max(1, w // 2))
    if not windows:
        raise InvalidDataError(
            f"recording {run.recording_id!r}: {split}_domain holds no whole window of {w} volumes"
        )
    if shuffle_eeg:
        windows = shuffled_eeg(windows, seed)
    tokenizer = tokenizer if tokenizer is not None else samba_tokenizer(model, bundle.scaler)
    loader = DataLoader(
        PairedRunDataset([run], tokenizer),
        batch_size=batch_size,
        sampler=windows,
        collate_fn=collate_windows,
    )
    n_vol, p = run.bold.shape
    k = len(model.config.classes)
    widths = {"pred": p, "hidden": p * model.config.hidden} | ({"logits": k} if k else {})
    acc = OverlapMean(n_vol, widths)
    alpha_sum, alpha_n = 0.0, 0
    device = model.mapping.device
    with torch.no_grad():
        for batch in loader:
            out = model(energy=batch["energy"].to(device))
            n = len(batch["start"])
            alpha_sum = alpha_sum + out["alpha"].mean(dim=(0, 1, 2)).cpu().numpy() * n
            alpha_n += n
            for j, s in enumerate(batch["start"].tolist()):
                values = {
                    "pred": out["bold"][j].cpu().numpy(),
                    "hidden": out["hidden"][j].reshape(w, -1).cpu().numpy(),
                }
                if k:
                    values["logits"] = out["logits"][j].cpu().numpy()
                acc.add(s, values)
    vols = acc.covered()
    vols = vols[np.isin(vols, run.volumes_in(split))]
    return RunPrediction(
        recording_id=run.recording_id,
        volumes=vols,
        timestamps=run.bold_times[vols],
        true=run.bold[vols].astype(np.float64),
        pred=bundle.scaler.bold_inverse(acc.mean("pred", vols)),
        hidden=acc.mean("hidden", vols),
        logits=acc.mean("logits", vols) if k else None,
        labels=run.labels[vols],
        alpha=np.asarray(alpha_sum) / max(alpha_n, 1),
    )


def parcel_scores(true: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Per-parcel Pearson r (mean, SD, all), R^2 (mean over parcels) and MSE.

    Parameters
    ----------
    true, pred : numpy.ndarray
        (V, P) BOLD and its prediction, in the same units.

    Returns
    -------
    dict
        ``r_mean``, ``r_sd``, ``r2``, ``mse`` (floats) and ``r_per_parcel`` (P,).
    """
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


def stimulus_scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> StimulusScores:
    """Accuracy, balanced accuracy and both chance levels of predicted stimulus classes.

    Parameters
    ----------
    y_true, y_pred : numpy.ndarray
        (V,) class indices (no :data:`~neurofm.tokenizers.multimodal.NO_LABEL`).
    n_classes : int
        Number of classes (chance of balanced accuracy is ``1 / n_classes``).
    """
    return StimulusScores(
        accuracy=float(np.mean(y_true == y_pred)),
        balanced_accuracy=balanced_accuracy(y_true, y_pred),
        majority_chance=float(np.bincount(y_true).max() / len(y_true)),
        chance=1.0 / n_classes,
        n_volumes=len(y_true),
    )


def _labelled(preds: list[RunPrediction], attr: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([getattr(p, attr) for p in preds])
    y = np.concatenate([p.labels for p in preds])
    return x[y != NO_LABEL], y[y != NO_LABEL]


def probe_scores(
    train: list[RunPrediction], test: list[RunPrediction], n_classes: int
) -> StimulusScores | None:
    """Linear probe (logistic regression) on decoder states, fitted on training volumes.

    The penalty is picked by 3-fold cross-validation on the training volumes (balanced
    accuracy, balanced class weights). Returns None without training runs, test volumes or at
    least two training classes.
    """
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if not train or not test:
        return None
    x_tr, y_tr = _labelled(train, "hidden")
    x_te, y_te = _labelled(test, "hidden")
    if len(np.unique(y_tr)) < 2 or len(y_te) == 0:
        return None
    probe = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(
            Cs=6, cv=3, max_iter=2000, class_weight="balanced", scoring="balanced_accuracy"
        ),
    )
    with warnings.catch_warnings():  # scikit-learn 1.8 announces changed defaults we don't use
        warnings.simplefilter("ignore", FutureWarning)
        probe.fit(x_tr, y_tr)
    return stimulus_scores(y_te, probe.predict(x_te), n_classes)


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
        """Mean over recordings of the mean per-parcel r."""
        return float(np.mean([s["r_mean"] for s in self.per_recording.values()]))

    @property
    def shuffled_r_mean(self) -> float:
        """The same for the time-shuffled control."""
        return float(np.mean([s["r_mean"] for s in self.shuffled.values()]))

    def _headline(self) -> str:
        n = len(self.per_recording)
        parts = [f"{self.split} split"]
        if n:
            parts.append(
                f"per-parcel r {display.number(self.r_mean)} over {display.count(n, 'recording')}"
            )
        if self.shuffled:
            parts.append(f"time-shuffled EEG {display.number(self.shuffled_r_mean)}")
        for name, s in (("probe", self.probe), ("head", self.head)):
            if s is not None:
                parts.append(
                    f"stimulus {name} balanced accuracy {display.number(s.balanced_accuracy)} "
                    f"(chance {display.number(s.chance)})"
                )
        return "; ".join(parts)

    def __repr__(self) -> str:
        return f"<SambaReport {self._headline()}>"

    def _repr_html_(self) -> str:
        rows = []
        for rid, s in self.per_recording.items():
            shuffled = self.shuffled.get(rid, {}).get("r_mean", float("nan"))
            rows.append(
                (
                    rid,
                    display.number(s["r_mean"]),
                    display.number(s.get("r_sd", float("nan"))),
                    display.number(s.get("r2", float("nan"))),
                    display.number(shuffled),
                )
            )
        header = ("recording", "mean r", "SD r", "R^2", "r, shuffled EEG")
        return display.html_table(f"SambaReport: {self._headline()}", rows, header)


def evaluate_samba(
    bundle: SambaBundle,
    catalog: str | Path,
    split: str = "test",
    *,
    recordings: list[str] | None = None,
    shuffled_control: bool = True,
) -> SambaReport:
    """Score a trained SAMBA on a split of every recording that has one.

    Parameters
    ----------
    bundle : SambaBundle
        From :func:`~neurofm.training.samba.load_samba`.
    catalog : str or Path
        Catalog of EEG-fMRI recordings with split domains.
    split : str
        Whose ``<split>_domain`` to score.
    recordings : list of str, optional
        Only these recordings (default all).
    shuffled_control : bool
        Also score the model on time-shuffled EEG.

    Returns
    -------
    SambaReport
        Per-recording parcel scores (:func:`parcel_scores`), the time-shuffled control,
        stimulus decoding on the split's labelled volumes (:class:`StimulusScores` of a linear
        probe fitted on the training recordings' train volumes, and of the end-to-end head), the
        mean attention over wavelet bands and the learned HRF peaks.

    Raises
    ------
    InvalidDataError
        No recording has a whole window in the split.
    """
    cfg = bundle.cfg
    runs = load_runs(catalog, bundle.model.config, cfg, recordings)
    # One tokenizer: each run's band energies are computed once and serve the split, the
    # shuffled control and the training volumes of the probe.
    tokenizer = samba_tokenizer(bundle.model, bundle.scaler)
    report = SambaReport(split)
    train_preds, alphas = [], []
    w = bundle.model.config.window_trs
    for run in runs:
        if len(run.window_starts(split, w)) == 0:
            continue
        pred = predict_run(bundle, run, split, tokenizer=tokenizer)
        report.predictions[run.recording_id] = pred
        report.per_recording[run.recording_id] = parcel_scores(pred.true, pred.pred)
        alphas.append(pred.alpha)
        if shuffled_control:
            ctrl = predict_run(
                bundle, run, split, shuffle_eeg=True, seed=cfg.seed, tokenizer=tokenizer
            )
            report.shuffled[run.recording_id] = parcel_scores(ctrl.true, ctrl.pred)
        if bundle.model.config.classes and len(run.window_starts("train", w)):
            train_preds.append(predict_run(bundle, run, "train", tokenizer=tokenizer))
    if not report.per_recording:
        raise InvalidDataError(f"{catalog}: no recording has a {split}_domain of a whole window")
    report.alpha = np.mean(alphas, axis=0)
    report.hrf_peaks = bundle.model.hrf.peaks()
    classes = bundle.model.config.classes
    if classes:
        tests = list(report.predictions.values())
        report.probe = probe_scores(train_preds, tests, len(classes))
        logits, y = _labelled([p for p in tests if p.logits is not None], "logits")
        if len(y):
            report.head = stimulus_scores(y, logits.argmax(axis=1), len(classes))
    return report
