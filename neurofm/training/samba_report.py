"""The evaluate step for SAMBA: scores, the ridge baseline, the controls and the plots."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from neurofm.atomic import atomic_path
from neurofm.data.catalog import Catalog
from neurofm.training.samba import SambaBundle, SambaReport, evaluate_samba, load_samba

log = logging.getLogger(__name__)

__all__ = ["band_ranges", "run_samba_evaluation", "samba_results_table"]


def band_ranges(eeg_rate: float, levels: int) -> list[str]:
    """Frequency range of each wavelet band, finest detail first (``D1 32-64 Hz`` ...)."""
    out = []
    for j in range(1, levels + 1):
        out.append(f"D{j} {eeg_rate / 2 ** (j + 1):g}-{eeg_rate / 2**j:g} Hz")
    out.append(f"A{levels} 0-{eeg_rate / 2 ** (levels + 1):g} Hz")
    return out


def samba_results_table(
    report: SambaReport, baselines: dict[str, dict[str, dict[str, Any]]]
) -> str:
    """Per-recording table: SAMBA's r (mean +- SD over parcels), R^2, the shuffled-EEG
    control, and each baseline's r and R^2; a mean row last."""
    names = list(report.per_recording)
    head = f"{'recording':<34} {'SAMBA r':>14} {'R^2':>6} {'shuffled r':>10}"
    for b in baselines:
        head += f" {b + ' r':>14} {'R^2':>6}"
    rows = [head]

    def cells(scores: dict[str, Any] | None) -> str:
        if scores is None:
            return f" {'-':>14} {'-':>6}"
        return f" {scores['r_mean']:>7.3f} +- {scores['r_sd']:.2f} {scores['r2']:>6.3f}"

    for rid in names:
        s = report.per_recording[rid]
        shuf = report.shuffled.get(rid)
        row = f"{rid:<34}" + cells(s) + f" {shuf['r_mean'] if shuf else float('nan'):>10.3f}"
        for b in baselines.values():
            row += cells(b.get(rid))
        rows.append(row)
    mean = f"{'mean':<34} {report.r_mean:>14.3f} {'':>6}"
    mean += f" {report.shuffled_r_mean if report.shuffled else float('nan'):>10.3f}"
    for b in baselines.values():
        vals = [b[r]["r_mean"] for r in names if r in b]
        mean += f" {np.mean(vals) if vals else float('nan'):>14.3f} {'':>6}"
    rows.append(mean)
    return "\n".join(rows)


def _atlas_of(catalog: Path, recording_id: str) -> tuple[str | None, list[int] | None]:
    with Catalog(catalog).open(recording_id) as rec:
        atlas = rec.provenance.extra.get("fmri", {}).get("atlas")
        info = getattr(rec["bold"], "channel_info", None) or {}
        labels = [int(v) for v in info["label"]] if "label" in info else None
    return (atlas if atlas and Path(atlas).is_file() else None), labels


def _plots(report: SambaReport, bundle: SambaBundle, catalog: Path, out: Path) -> list[Path]:
    from neurofm.viz.brain import plot_bold_predictions, plot_parcel_map

    plots = []
    for rid, pred in report.predictions.items():
        path = out / f"samba_{report.split}_{rid}_bold.png"
        plot_bold_predictions(
            pred.timestamps, pred.true, pred.pred, bundle.parcels, path=path, title=rid
        )
        plots.append(path)
    first = next(iter(report.per_recording))
    atlas, labels = _atlas_of(catalog, first)
    if atlas is not None:
        r = np.mean([s["r_per_parcel"] for s in report.per_recording.values()], axis=0)
        path = out / f"samba_{report.split}_r_map.png"
        plot_parcel_map(r, atlas, path, title=f"SAMBA per-parcel r ({report.split})", labels=labels)
        plots.append(path)
    else:
        log.info("no atlas recorded in %s: no brain map", first)
    return plots


def run_samba_evaluation(
    opts: Any, catalog: Path, checkpoint: Path, work: Path
) -> tuple[Any, list[str]]:
    """Score a SAMBA checkpoint and the ridge baseline; write ``results_<split>.json`` and
    the plots; return the pipeline's report and summary lines."""
    from neurofm.baselines.hrf_ridge import HRFRidge
    from neurofm.pipeline.steps import EvaluateReport

    bundle = load_samba(checkpoint)
    report = evaluate_samba(bundle, catalog, opts.split)
    names = ["ridge"] if opts.baselines is None else list(opts.baselines)
    wrong = sorted(set(names) - {"ridge"})
    if wrong:
        from neurofm.errors import NeuroFMError

        raise NeuroFMError(f"evaluate: baselines {wrong} are for spikes (POYO), not SAMBA")
    baselines: dict[str, dict[str, dict[str, Any]]] = {}
    if names:
        cat = Catalog(catalog)
        recs = [cat.open(rid) for rid in cat.ids]
        try:
            ridge = HRFRidge(eeg=bundle.cfg.eeg, target=bundle.cfg.bold).fit(recs)
            baselines["Ridge"] = ridge.evaluate(recs, opts.split)
        finally:
            for rec in recs:
                rec.close()
    out = EvaluateReport(opts.split)
    out.r2["SAMBA"] = {rid: s["r2"] for rid, s in report.per_recording.items()}
    for name, scores in baselines.items():
        out.r2[name] = {rid: s["r2"] for rid, s in scores.items()}
    config = bundle.model.config
    bands = band_ranges(config.eeg_rate, config.levels)
    summary = {
        "split": opts.split,
        "samba": {rid: _plain(s) for rid, s in report.per_recording.items()},
        "samba_shuffled_eeg": {rid: _plain(s) for rid, s in report.shuffled.items()},
        "baselines": {n: {r: _plain(s) for r, s in b.items()} for n, b in baselines.items()},
        "stimulus": {
            "classes": config.classes,
            "linear_probe": dataclasses.asdict(report.probe) if report.probe else None,
            "head": dataclasses.asdict(report.head) if report.head else None,
        },
        "wavelet_attention": dict(zip(bands, np.asarray(report.alpha).tolist(), strict=True)),
        "hrf_peak_s": np.asarray(report.hrf_peaks).tolist(),
    }
    out.metrics = summary
    if opts.plot:
        out.plots = _plots(report, bundle, catalog, work / "plots")
    with atomic_path(work / f"results_{opts.split}.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    peaks = np.asarray(report.hrf_peaks)
    lines = [
        f"evaluate: SAMBA on the {opts.split} split (stitched; per-parcel Pearson r, mean +- SD)",
        samba_results_table(report, baselines),
        "wavelet attention: "
        + ", ".join(f"{b} {a:.2f}" for b, a in zip(bands, report.alpha, strict=True)),
        f"learned HRF peak: median {np.median(peaks):.2f} s "
        f"(parcels {peaks.min():.2f}-{peaks.max():.2f} s)",
    ]
    for name, sc in (("linear probe", report.probe), ("end-to-end head", report.head)):
        if sc is not None:
            lines.append(
                f"stimulus ({name} on decoder states, {sc.n_volumes} volumes): balanced "
                f"accuracy {sc.balanced_accuracy:.2f} (chance {sc.chance:.2f}), accuracy "
                f"{sc.accuracy:.2f} (majority class {sc.majority_chance:.2f})"
            )
    lines += [f"plot: {p}" for p in out.plots]
    return out, lines


def _plain(scores: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v) for k, v in scores.items()
    }
