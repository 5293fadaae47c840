"""Score a saved checkpoint: the evaluate step of a pipeline and ``neurofm evaluate``.

The checkpoint's format says which model it holds; POYO is scored by stitched R^2 beside the
spike baselines, SAMBA by per-parcel r beside the ridge baseline, its shuffled-EEG control and
stimulus decoding. Both write ``results_<split>.json`` (and, when asked, plots) to a work folder
and return an :class:`~neurofm.evaluation.reports.EvaluateReport` with the lines to print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neurofm.data.catalog import Catalog
from neurofm.errors import NeuroFMError
from neurofm.evaluation.baselines import (
    SAMBA_BASELINES,
    SPIKE_BASELINES,
    evaluate_baselines,
    evaluate_ridge,
)
from neurofm.evaluation.poyo import evaluate_poyo
from neurofm.evaluation.reports import (
    EvaluateReport,
    band_ranges,
    plot_poyo,
    plot_samba,
    results_table,
    samba_lines,
    samba_summary,
    write_json,
)
from neurofm.evaluation.samba import evaluate_samba
from neurofm.specs import EvaluateStep
from neurofm.training.poyo import load_poyo
from neurofm.training.samba import is_samba_checkpoint, load_samba

__all__ = ["evaluate_checkpoint", "evaluate_poyo_checkpoint", "evaluate_samba_checkpoint"]


def evaluate_checkpoint(
    checkpoint: Path,
    catalog: Path,
    options: EvaluateStep,
    work: Path,
    target: str | None = None,
) -> tuple[EvaluateReport, list[str]]:
    """Score a POYO or SAMBA checkpoint (told apart by its format) and its baselines.

    Parameters
    ----------
    checkpoint : Path
        A ``.ckpt`` written by ``neurofm train``.
    catalog : Path
        Catalog folder with split domains.
    options : EvaluateStep
        Split, baselines (None: the model's default ones) and whether to plot.
    work : Path
        Where ``results_<split>.json`` and ``plots/`` go.
    target : str, optional
        POYO's behaviour signal (default: the one it was trained on); SAMBA's comes from its
        checkpoint.

    Returns
    -------
    tuple of (EvaluateReport, list of str)
        The report and the summary lines to print.

    Raises
    ------
    NeuroFMError
        A missing or foreign checkpoint, or baselines of the other model kind.
    """
    if is_samba_checkpoint(checkpoint):
        return evaluate_samba_checkpoint(checkpoint, catalog, options, work)
    return evaluate_poyo_checkpoint(checkpoint, catalog, options, work, target)


def evaluate_poyo_checkpoint(
    checkpoint: Path,
    catalog: Path,
    options: EvaluateStep,
    work: Path,
    target: str | None = None,
) -> tuple[EvaluateReport, list[str]]:
    """Stitched R^2 of POYO and the spike baselines (default Wiener and GRU) on one split.

    Only the sessions in the model's vocabulary are scored (others, e.g. held out for
    fine-tuning, are not known to it), and the baselines are scored on the same ones. See
    :func:`evaluate_checkpoint` for the parameters.
    """
    names = list(SPIKE_BASELINES) if options.baselines is None else list(options.baselines)
    if "ridge" in names:
        raise NeuroFMError("evaluate: the ridge baseline is for SAMBA (EEG-fMRI), not POYO")
    model, scaler, cfg = load_poyo(checkpoint)
    target = target or cfg.target
    report = EvaluateReport(options.split)
    sessions = [rid for rid in Catalog(catalog).ids if rid in model.session_emb]
    poyo = evaluate_poyo(model, scaler, catalog, target, options.split, recordings=sessions)
    report.r2["POYO"] = poyo.r2
    report.r2.update(evaluate_baselines(catalog, target, options.split, names, sessions))
    if options.plot:
        report.plots += plot_poyo(poyo, work / "plots")
    write_json(report.r2, work / f"results_{options.split}.json")
    lines = [f"evaluate: stitched R^2 on the {options.split} split", results_table(report.r2)]
    lines += [f"plot: {p}" for p in report.plots]
    return report, lines


def evaluate_samba_checkpoint(
    checkpoint: Path, catalog: Path, options: EvaluateStep, work: Path
) -> tuple[EvaluateReport, list[str]]:
    """SAMBA's scores, the ridge baseline (the default), the shuffled-EEG control, stimulus
    decoding, wavelet attention and learned HRF peaks on one split.

    The report's ``metrics`` hold everything written to ``results_<split>.json``. See
    :func:`evaluate_checkpoint` for the parameters.
    """
    names = list(SAMBA_BASELINES) if options.baselines is None else list(options.baselines)
    wrong = sorted(set(names) - set(SAMBA_BASELINES))
    if wrong:
        raise NeuroFMError(f"evaluate: baselines {wrong} are for spikes (POYO), not SAMBA")
    bundle = load_samba(checkpoint)
    report = evaluate_samba(bundle, catalog, options.split)
    baselines: dict[str, dict[str, dict[str, Any]]] = {}
    if names:
        baselines["Ridge"] = evaluate_ridge(
            catalog, options.split, eeg=bundle.cfg.eeg, bold=bundle.cfg.bold
        )
    out = EvaluateReport(options.split)
    out.r2["SAMBA"] = {rid: s["r2"] for rid, s in report.per_recording.items()}
    for name, scores in baselines.items():
        out.r2[name] = {rid: s["r2"] for rid, s in scores.items()}
    config = bundle.model.config
    bands = band_ranges(config.eeg_rate, config.levels)
    out.metrics = samba_summary(report, baselines, config.classes, bands)
    if options.plot:
        out.plots = plot_samba(report, bundle.parcels, catalog, work / "plots")
    write_json(out.metrics, work / f"results_{options.split}.json")
    return out, samba_lines(report, baselines, bands, out.plots)
