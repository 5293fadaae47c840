"""The ``train`` and ``evaluate`` steps of a pipeline spec (see :mod:`neurofm.specs`).

Each step takes its typed options (:class:`~neurofm.specs.TrainStep`,
:class:`~neurofm.specs.EvaluateStep`) and the pipeline's :class:`~neurofm.specs.DatasetCard`;
training is :mod:`neurofm.training`'s, scoring :mod:`neurofm.evaluation`'s.
"""

from __future__ import annotations

import logging
from pathlib import Path

from neurofm.errors import NeuroFMError, SpecError
from neurofm.evaluation.reports import EvaluateReport
from neurofm.specs import DatasetCard, EvaluateStep, TrainStep, read_yaml

log = logging.getLogger(__name__)

__all__ = ["EvaluateReport", "model_kind", "run_evaluate_step", "run_train_step"]


def model_kind(path: Path) -> str:
    """The ``model:`` tag of a model config file (``poyo`` when absent).

    Raises
    ------
    SpecError
        A tag other than ``poyo`` or ``samba`` (naming the file), or an unreadable file.
    """
    values = read_yaml(path) or {}
    kind = values.get("model", "poyo") if isinstance(values, dict) else None
    if kind not in ("poyo", "samba"):
        raise SpecError(f"{path}: model: expected 'poyo' or 'samba', got {kind!r}")
    return kind


def run_train_step(
    opts: TrainStep,
    card: DatasetCard,
    catalog: Path,
    work: Path,
    spec_dir: Path,
    progress: bool = True,
) -> tuple[Path, str]:
    """Train POYO or SAMBA as the step says (the model config's ``model:`` tag decides).

    Parameters
    ----------
    opts : TrainStep
        The step's options; ``opts.model`` is relative to ``spec_dir``.
    card : DatasetCard
        The pipeline's dataset card (its ``fields.target`` is what the model learns).
    catalog : Path
        The ingested catalog.
    work : Path
        The pipeline's work folder (the run goes to ``work / opts.out``).
    spec_dir : Path
        Folder of the pipeline file.
    progress : bool
        Show progress bars.

    Returns
    -------
    tuple of (Path, str)
        The checkpoint and a summary line.
    """
    from neurofm.models.poyo import POYOConfig
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
    opts: TrainStep,
    card: DatasetCard,
    catalog: Path,
    work: Path,
    model_path: Path,
    progress: bool,
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


def run_evaluate_step(
    opts: EvaluateStep, card: DatasetCard, catalog: Path, checkpoint: Path, work: Path
) -> tuple[EvaluateReport, list[str]]:
    """Score the trained model and the baselines on the same split.

    Parameters
    ----------
    opts : EvaluateStep
        Split (default the card's ``splits.evaluate_on``), baselines and plots.
    card : DatasetCard
        The pipeline's dataset card (POYO decodes its ``fields.target``).
    catalog : Path
        The ingested catalog.
    checkpoint : Path
        The train step's checkpoint (POYO or SAMBA).
    work : Path
        Where ``results_<split>.json`` and ``plots/`` go.

    Returns
    -------
    tuple of (EvaluateReport, list of str)
        The report and the summary lines.
    """
    from neurofm.evaluation.checkpoint import evaluate_checkpoint

    if opts.split is None:  # the card says which split has data to score (NLB: valid)
        opts = opts.model_copy(update={"split": card.splits.evaluate_on})
    return evaluate_checkpoint(checkpoint, catalog, opts, work, target=card.fields.target)
