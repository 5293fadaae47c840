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
from neurofm.data.targets import as_target, evaluation_split, target_label
from neurofm.errors import NeuroFMError
from neurofm.evaluation.background import BackgroundBaselines, BaselineRequest
from neurofm.evaluation.baselines import (
    SAMBA_BASELINES,
    SPIKE_BASELINES,
    evaluate_ridge,
    score_baselines,
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

__all__ = [
    "evaluate_checkpoint",
    "evaluate_poyo_checkpoint",
    "evaluate_samba_checkpoint",
    "poyo_sessions",
    "select_recordings",
]


def select_recordings(
    catalog: Path | Catalog,
    recordings: list[str] | None = None,
    subjects: list[str] | None = None,
) -> list[str] | None:
    """The catalog's recordings that ``neurofm evaluate --recordings/--subject`` ask for.

    Parameters
    ----------
    catalog : Path or Catalog
        The catalog.
    recordings : list of str, optional
        Recording ids (each must be in the catalog).
    subjects : list of str, optional
        Subject labels (``S0``, ``01``): their recordings.

    Returns
    -------
    list of str or None
        The ids (catalog order), or None when neither filter is given (all recordings).

    Raises
    ------
    NeuroFMError
        An id not in the catalog, or a filter that leaves nothing.
    """
    if not recordings and not subjects:
        return None
    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    chosen = cat.ids
    if recordings:
        unknown = [r for r in recordings if r not in cat]
        if unknown:
            raise NeuroFMError(
                f"{cat.path}: no recording {', '.join(map(repr, unknown))} "
                f"(has {', '.join(cat.ids)})"
            )
        chosen = [r for r in chosen if r in recordings]
    if subjects:
        of_subjects = {e["id"] for e in cat.select(subject_id=list(subjects))}
        if not of_subjects:
            have = sorted({str(e["subject_id"]) for e in cat.entries})
            raise NeuroFMError(
                f"{cat.path}: no recording of subject {', '.join(subjects)} "
                f"(subjects: {', '.join(have)})"
            )
        chosen = [r for r in chosen if r in of_subjects]
    if not chosen:
        raise NeuroFMError(
            f"{cat.path}: no recording is both among {recordings} and of subject {subjects}"
        )
    return chosen


def poyo_sessions(
    model: Any,
    catalog: Path,
    split: str,
    recordings: list[str] | None = None,
    required: list[str] | tuple[str, ...] = (),
) -> tuple[list[str], dict[str, str]]:
    """Which recordings a POYO model can score on a split, and why the others cannot.

    A model scores a session it was trained on (its session and units are in the model's
    vocabularies) that has a non-empty ``<split>_domain``; a session held out of training
    needs fine-tuning first (``neurofm finetune``).

    Parameters
    ----------
    model : POYO
        The trained model.
    catalog : Path
        The catalog.
    split : str
        ``train``, ``valid`` or ``test``.
    recordings : list of str, optional
        Candidates (default every recording of the catalog).
    required : sequence of str
        Recordings asked for by name: one the model cannot score is an error, not a skip.

    Returns
    -------
    (list of str, dict of str to str)
        The recordings to score (at least one), and the skipped ones with the reason.

    Raises
    ------
    NeuroFMError
        No recording can be scored, or a required one cannot (each with the reason).
    """
    from neurofm.tokenizers.spikes import unit_keys

    cat = Catalog(catalog)
    scored: list[str] = []
    skipped: dict[str, str] = {}
    evaluate_on: set[str] = set()  # what the recordings' dataset card says to score
    for rid in recordings or cat.ids:
        if rid not in model.session_emb:
            skipped[rid] = (
                "not a session the model was trained on; `neurofm adapt CKPT FILE` adapts it "
                "to a new session"
            )
            continue
        with cat.open(rid) as rec:
            domain = f"{split}_domain"
            evaluate_on.add(str(rec.metadata.extra.get("evaluate_on") or "test"))
            if domain not in rec:
                skipped[rid] = f"no {domain} (ingested without splits)"
            elif not len(rec[domain]):
                skipped[rid] = f"its {domain} is empty"
            elif "spikes" not in rec:
                skipped[rid] = "no spikes"
            else:
                keys = unit_keys(rid, rec["spikes"].units.ids)
                unknown = [k for k in keys if k not in model.unit_emb]
                if unknown:
                    skipped[rid] = (
                        f"{len(unknown)} of its {len(keys)} units are not in the model's "
                        "vocabulary (re-ingested since training?)"
                    )
                else:
                    scored.append(rid)
    refused = {rid: why for rid, why in skipped.items() if rid in required}
    if refused:
        raise NeuroFMError(
            "; ".join(f"{rid}: cannot be scored: {why}" for rid, why in refused.items())
        )
    if not scored:
        why = "; ".join(f"{rid}: {reason}" for rid, reason in skipped.items())
        card = evaluate_on.pop() if len(evaluate_on) == 1 else split
        hint = f"; the dataset card evaluates on {card}: use that split" if card != split else ""
        raise NeuroFMError(
            f"{cat.path}: no recording the model can score on the {split} split ({why}){hint}"
        )
    return scored, skipped


def evaluate_checkpoint(
    checkpoint: Path,
    catalog: Path,
    options: EvaluateStep,
    work: Path,
    target: str | None = None,
    recordings: list[str] | None = None,
    background: BackgroundBaselines | None = None,
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
    recordings : list of str, optional
        Only these recordings (default all; POYO scores only the sessions it knows and says
        which it skipped and why).
    background : BackgroundBaselines, optional
        POYO's spike baselines, started in a second process while the model trained; used
        when they are the ones asked for (else fitted here, and the process stopped).

    Returns
    -------
    tuple of (EvaluateReport, list of str)
        The report and the summary lines to print.

    Raises
    ------
    NeuroFMError
        A missing or foreign checkpoint, or baselines of the other model kind.
    """
    if options.split is None:  # what the catalog's dataset card says to evaluate on
        options = options.model_copy(update={"split": _card_split(catalog)})
    if is_samba_checkpoint(checkpoint):
        return evaluate_samba_checkpoint(checkpoint, catalog, options, work, recordings)
    return evaluate_poyo_checkpoint(
        checkpoint, catalog, options, work, target, recordings, background
    )


def _card_split(catalog: Path) -> str:
    cat = Catalog(catalog)
    recs = [cat.open(rid) for rid in cat.ids]
    try:
        return evaluation_split(recs)
    finally:
        for rec in recs:
            rec.close()


def evaluate_poyo_checkpoint(
    checkpoint: Path,
    catalog: Path,
    options: EvaluateStep,
    work: Path,
    target: str | None = None,
    recordings: list[str] | None = None,
    background: BackgroundBaselines | None = None,
) -> tuple[EvaluateReport, list[str]]:
    """Stitched R^2 of POYO and the spike baselines (default Wiener and GRU) on one split.

    Only the sessions in the model's vocabulary are scored (others, e.g. held out for
    fine-tuning, are not known to it), and the baselines are scored on the same ones. A
    per-trial target is scored alone (R^2, or balanced accuracy for a class target): the
    baselines decode behaviour series. See :func:`evaluate_checkpoint` for the parameters.
    """
    if options.split is None:
        options = options.model_copy(update={"split": _card_split(catalog)})
    names = list(SPIKE_BASELINES) if options.baselines is None else list(options.baselines)
    if "ridge" in names:
        raise NeuroFMError("evaluate: the ridge baseline is for SAMBA (EEG-fMRI), not POYO")
    model, scaler, cfg = load_poyo(checkpoint)
    target = as_target(target or cfg.target)
    per_trial = not isinstance(target, str)
    if per_trial:  # the baselines decode behaviour series, sample by sample
        if options.baselines:
            raise NeuroFMError(
                f"evaluate: baselines {options.baselines} decode behaviour series; the target "
                f"{target_label(target)} is one value per trial (give baselines: [] or none)"
            )
        names = []
    report = EvaluateReport(options.split)
    sessions, skipped = poyo_sessions(model, catalog, options.split, recordings)
    poyo = evaluate_poyo(model, scaler, catalog, target, options.split, recordings=sessions)
    report.r2["POYO"] = poyo.scores  # R^2, or balanced accuracy for a class target
    report.metrics.update(metric=poyo.metric, target=poyo.target, masked=poyo.n_masked)
    baselines = None
    if background is not None:  # fitted while the model trained, if they are these ones
        request = BaselineRequest.of(
            catalog, str(target), options.split, names, sessions, options.baseline_options
        )
        baselines = background.scores(request)
    if names and baselines is None:  # early-stopped and tuned on valid; how goes beside
        baselines = score_baselines(
            catalog, target, options.split, names, sessions, options.baseline_options
        )
    if baselines is not None:
        report.r2.update(baselines.r2)
        report.metrics["baselines"] = baselines.to_json()
        write_json(report.metrics["baselines"], work / f"baselines_{options.split}.json")
    if options.plot:
        report.plots += plot_poyo(poyo, work / "plots")
    write_json(report.r2, work / f"results_{options.split}.json")
    lines = [
        f"evaluate: stitched {poyo.metric_name}{f' of {poyo.target}' if per_trial else ''} "
        f"on the {options.split} split",
        results_table(report.r2),
    ]
    if baselines is not None:
        lines += baselines.lines()
        lines.append(f"baseline tuning: {work / f'baselines_{options.split}.json'}")
    if poyo.n_masked:
        lines.append(f"masked: {poyo.n_masked} evaluation points with a non-finite target")
    if per_trial and options.baselines is None:
        lines.append("baselines: none (Wiener and GRU decode behaviour series, not trials)")
    lines += [f"skipped {rid}: {why}" for rid, why in skipped.items()]
    lines += [f"plot: {p}" for p in report.plots]
    return report, lines


def evaluate_samba_checkpoint(
    checkpoint: Path,
    catalog: Path,
    options: EvaluateStep,
    work: Path,
    recordings: list[str] | None = None,
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
    report = evaluate_samba(bundle, catalog, options.split, recordings=recordings)
    baselines: dict[str, dict[str, dict[str, Any]]] = {}
    if names:
        ridge = evaluate_ridge(catalog, options.split, eeg=bundle.cfg.eeg, bold=bundle.cfg.bold)
        baselines["Ridge"] = {r: s for r, s in ridge.items() if r in report.per_recording}
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
