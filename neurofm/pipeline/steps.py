"""The ``train`` and ``evaluate`` steps of a pipeline spec (see :mod:`neurofm.specs`).

Each step takes its typed options (:class:`~neurofm.specs.TrainStep`,
:class:`~neurofm.specs.EvaluateStep`) and the pipeline's :class:`~neurofm.specs.DatasetCard`;
training is :mod:`neurofm.training`'s, scoring :mod:`neurofm.evaluation`'s.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurofm.errors import NeuroFMError, SpecError
from neurofm.evaluation.reports import EvaluateReport
from neurofm.specs import DatasetCard, EvaluateStep, TrainStep, read_yaml

if TYPE_CHECKING:
    from neurofm.evaluation.background import BackgroundBaselines

log = logging.getLogger(__name__)

__all__ = [
    "EvaluateReport",
    "model_kind",
    "run_evaluate_step",
    "run_train_step",
    "start_baselines_during_training",
]


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
    from neurofm.data.catalog import Catalog
    from neurofm.models.poyo import POYOConfig
    from neurofm.training.poyo import TrainConfig, train_poyo

    if not Catalog.is_catalog(catalog):
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
    run = _run_options(opts, work / opts.out)
    module, ckpt = train_poyo(catalog, model_config, cfg, work / opts.out, progress=progress, **run)
    val = module.trainer.callback_metrics.get("val_r2")
    if val is None:  # nothing left to train (a finished run resumed): the last one recorded
        val = _recorded_valid_r2(ckpt)
    # over the validation windows as they come: `evaluate` stitches overlapping windows
    val_text = f", valid R^2 {float(val):.3f} (per window)" if val is not None else ""
    return ckpt, (
        f"train: POYO {model_path.name}, {module.global_step} steps{val_text}"
        f"{_where(module, run, ckpt)}"
    )


def _recorded_valid_r2(ckpt: Path) -> float | None:
    """The valid R^2 a POYO checkpoint's card recorded at its last validation, if any."""
    from neurofm.training.card import CARD_KEY
    from neurofm.training.checkpoints import load_checkpoint

    card = (load_checkpoint(ckpt).get("neurofm") or {}).get(CARD_KEY) or {}
    value = ((card.get("scores") or {}).get("valid") or {}).get("r2")
    return float(value) if isinstance(value, int | float) else None


def _run_options(opts: TrainStep, out: Path) -> dict[str, Any]:
    """The step's device, checkpoint and resume options, as the training functions take them.

    With ``resume: true`` the run continues from ``out/last.ckpt`` if there is one (a first
    run, or one killed before its first checkpoint, starts from the beginning).
    """
    resume = None
    if opts.resume:
        last = out / "last.ckpt"
        if last.is_file():
            resume = last
        else:
            log.warning("%s: no checkpoint to resume from; training from the start", last)
    return {
        "resume": resume,
        "accelerator": opts.accelerator,
        "devices": opts.devices,
        "num_nodes": opts.num_nodes,
        "strategy": opts.strategy,
        "precision": opts.precision,
        "checkpoint_every_n_steps": opts.checkpoint_every_n_steps,
    }


def _where(module: Any, run: dict[str, Any], ckpt: Path) -> str:
    """``, trained on cpu (precision 32-true), resumed from X -> last.ckpt``: the end of a
    summary line."""
    from neurofm.training.trainer import device_summary

    if not ckpt.is_file():  # never expected: the trainer writes it after every epoch
        raise NeuroFMError(f"{ckpt}: training ended without writing its checkpoint")
    resumed = f", resumed from {run['resume']}" if run["resume"] is not None else ""
    return f", trained on {device_summary(module.trainer)}{resumed} -> {ckpt}"


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
    run = _run_options(opts, work / opts.out)
    module, ckpt = train_samba(
        catalog, SambaConfig.from_yaml(model_path), cfg, work / opts.out, progress=progress, **run
    )
    val = module.trainer.callback_metrics.get("val_r")
    val_text = f", valid r {float(val):.3f}" if val is not None else ""
    return ckpt, (
        f"train: SAMBA {model_path.name}, {module.global_step} steps{val_text}"
        f"{_where(module, run, ckpt)}"
    )


def run_evaluate_step(
    opts: EvaluateStep,
    card: DatasetCard,
    catalog: Path,
    checkpoint: Path,
    work: Path,
    background: BackgroundBaselines | None = None,
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
    background : BackgroundBaselines, optional
        The baselines started beside the train step (:func:`start_baselines_during_training`).

    Returns
    -------
    tuple of (EvaluateReport, list of str)
        The report and the summary lines.
    """
    from neurofm.evaluation.checkpoint import evaluate_checkpoint

    if opts.split is None:  # the card says which split has data to score (NLB: valid)
        opts = opts.model_copy(update={"split": card.splits.evaluate_on})
    return evaluate_checkpoint(
        checkpoint, catalog, opts, work, target=card.fields.target, background=background
    )


def start_baselines_during_training(
    train: TrainStep,
    evaluate: EvaluateStep,
    card: DatasetCard,
    catalog: Path,
    spec_dir: Path,
) -> BackgroundBaselines | None:
    """Start the evaluate step's spike baselines in a second process, to run beside the train
    step (:mod:`neurofm.evaluation.background`); None where that cannot help or cannot be
    known before training.

    It starts when the evaluate step's ``baselines_during_training`` is on, the machine has a
    core to spare (two or more that no other process is running on now, and more than a thread
    count the user fixed with ``NEUROFM_NUM_THREADS``: a fixed count does not make room, and
    processes competing for the same cores collapse), the train step trains POYO in one
    process (no DDP) on a behaviour series, and the evaluate step has spike baselines. The
    sessions are those the trained model will score: the catalog's recordings with a train
    domain (the train step's ``recordings`` when given) whose domain of the evaluated split is
    not empty.
    """
    from neurofm.data.catalog import Catalog
    from neurofm.data.targets import as_target
    from neurofm.evaluation.background import BackgroundBaselines, BaselineRequest
    from neurofm.evaluation.baselines import SPIKE_BASELINES
    from neurofm.threads import idle_cores, requested_threads
    from neurofm.training.datasets import split_domains_of

    names = list(SPIKE_BASELINES) if evaluate.baselines is None else list(evaluate.baselines)
    target = as_target(card.fields.target)
    if (
        not evaluate.baselines_during_training
        or train.devices * train.num_nodes > 1
        or os.environ.get("WORLD_SIZE", "1") not in ("", "1")  # a rank of torchrun or srun
        or not isinstance(target, str)
        or not names
        or not set(names) <= set(SPIKE_BASELINES)
    ):
        return None
    idle = idle_cores()  # looked at last: it samples the machine for ~10 ms
    if idle < 2 or (requested_threads() or 1) >= idle:
        return None
    split = evaluate.split or card.splits.evaluate_on
    try:
        if model_kind((spec_dir / train.model).resolve()) != "poyo":
            return None
        cat = Catalog(catalog)
        trained = split_domains_of(cat, "train", list(train.recordings) or None)
        scored = cat.domains(split, list(trained))
    except NeuroFMError:  # the train step will say what is wrong
        return None
    sessions = [rid for rid in cat.ids if rid in trained and len(scored.get(rid, ()))]
    if not sessions:
        return None
    request = BaselineRequest.of(catalog, target, split, names, sessions, evaluate.baseline_options)
    return BackgroundBaselines(request)
