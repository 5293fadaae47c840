"""The ``train`` and ``evaluate`` steps of a pipeline spec (see :mod:`neurofm.specs`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurofm.atomic import atomic_path
from neurofm.data.catalog import Catalog
from neurofm.errors import NeuroFMError, SpecError
from neurofm.models.poyo import POYOConfig

log = logging.getLogger(__name__)

__all__ = ["EvaluateReport", "run_evaluate_step", "run_train_step"]


def model_kind(path: Path) -> str:
    """The ``model:`` tag of a model config file (``poyo`` when absent)."""
    from neurofm.specs import read_yaml

    values = read_yaml(path) or {}
    kind = values.get("model", "poyo") if isinstance(values, dict) else None
    if kind not in ("poyo", "samba"):
        raise SpecError(f"{path}: model: expected 'poyo' or 'samba', got {kind!r}")
    return kind


def run_train_step(
    opts: Any, card: Any, catalog: Path, work: Path, spec_dir: Path, progress: bool = True
) -> tuple[Path, str]:
    """Train POYO or SAMBA as the step says; returns the checkpoint and a summary line."""
    from neurofm.training.poyo import TrainConfig, train_poyo

    if not (catalog / "catalog.json").is_file():
        raise NeuroFMError(f"{catalog}: no catalog to train on; run the ingest step first")
    model_path = (spec_dir / opts.model).resolve()
    if model_kind(model_path) == "samba":
        return _train_samba(opts, card, catalog, work, model_path, progress)
    model_config = POYOConfig.from_yaml(model_path)
    cfg = TrainConfig(
        target=card.fields.target,
        epochs=opts.epochs,
        batch_size=opts.batch_size,
        lr=opts.lr,
        weight_decay=opts.weight_decay,
        unit_dropout=opts.unit_dropout,
        seed=opts.seed,
        num_workers=opts.num_workers,
        recordings=list(opts.recordings),
    )
    module, ckpt = train_poyo(catalog, model_config, cfg, work / opts.out, progress=progress)
    val = module.trainer.callback_metrics.get("val_r2")
    val_text = f", valid R^2 {float(val):.3f}" if val is not None else ""
    return ckpt, f"train: POYO {model_path.name}, {module.global_step} steps{val_text} -> {ckpt}"


def _train_samba(
    opts: Any, card: Any, catalog: Path, work: Path, model_path: Path, progress: bool
) -> tuple[Path, str]:
    from neurofm.models.samba import SambaConfig
    from neurofm.training.samba import SambaTrainConfig, train_samba

    if opts.unit_dropout is not None:
        raise NeuroFMError(f"{model_path}: unit_dropout is a POYO option; SAMBA has no units")
    cfg = SambaTrainConfig(
        epochs=opts.epochs,
        batch_size=opts.batch_size,
        lr=opts.lr,
        weight_decay=opts.weight_decay,
        seed=opts.seed,
        bold=card.fields.target or "bold",
        recordings=list(opts.recordings),
    )
    module, ckpt = train_samba(
        catalog, SambaConfig.from_yaml(model_path), cfg, work / opts.out, progress=progress
    )
    val = module.trainer.callback_metrics.get("val_r")
    val_text = f", valid r {float(val):.3f}" if val is not None else ""
    return ckpt, f"train: SAMBA {model_path.name}, {module.global_step} steps{val_text} -> {ckpt}"


@dataclass
class EvaluateReport:
    """R^2 per session of every model scored, and where the plots went."""

    split: str
    r2: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> session -> R^2
    plots: list[Path] = field(default_factory=list)
    ok: bool = True
    metrics: dict[str, Any] = field(default_factory=dict)  # model-specific extras (SAMBA)


def run_evaluate_step(
    opts: Any, card: Any, catalog: Path, checkpoint: Path, work: Path
) -> tuple[EvaluateReport, list[str]]:
    """Score the trained model and the baselines on the same split; returns the report and
    summary lines."""
    from neurofm.training.evaluate import evaluate_poyo, results_table
    from neurofm.training.poyo import load_poyo
    from neurofm.training.samba import is_samba_checkpoint

    if is_samba_checkpoint(checkpoint):
        from neurofm.training.samba_report import run_samba_evaluation

        return run_samba_evaluation(opts, catalog, checkpoint, work)
    target = card.fields.target
    model, scaler, _ = load_poyo(checkpoint)
    report = EvaluateReport(opts.split)
    # The sessions the model was trained on (others, e.g. held out for fine-tuning, are not
    # in its vocabulary); the baselines are scored on the same ones.
    sessions = [rid for rid in Catalog(catalog).ids if rid in model.session_emb]
    poyo = evaluate_poyo(model, scaler, catalog, target, opts.split, recordings=sessions)
    report.r2["POYO"] = poyo.r2
    baselines = ["wiener", "gru"] if opts.baselines is None else opts.baselines
    if "ridge" in baselines:
        raise NeuroFMError("evaluate: the ridge baseline is for SAMBA (EEG-fMRI), not POYO")
    report.r2.update(evaluate_baselines(catalog, target, opts.split, baselines, sessions))
    if opts.plot:
        from neurofm.viz.decoding import plot_predictions

        plot = work / "plots" / f"poyo_{opts.split}.png"
        plot_predictions(poyo, plot)
        report.plots.append(plot)
    with atomic_path(work / f"results_{opts.split}.json") as tmp:
        tmp.write_text(json.dumps(report.r2, indent=1))
    lines = [f"evaluate: stitched R^2 on the {opts.split} split", results_table(report.r2)]
    lines += [f"plot: {p}" for p in report.plots]
    return report, lines


def evaluate_baselines(
    catalog: Path, target: str, split: str, names: list[str], sessions: list[str] | None = None
) -> dict[str, dict[str, float]]:
    """Fit the named baselines on the train split and score them like POYO."""
    from neurofm.baselines.decoders import GRUDecoder, WienerFilter

    classes = {"wiener": ("Wiener", WienerFilter), "gru": ("GRU", GRUDecoder)}
    cat = Catalog(catalog)
    recordings = [cat.open(rid) for rid in (sessions or cat.ids)]
    try:
        out = {}
        for name in names:
            label, cls = classes[name]
            out[label] = cls().fit(recordings, target).evaluate(recordings, target, split)
        return out
    finally:
        for rec in recordings:
            rec.close()
