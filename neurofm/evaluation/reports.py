"""What an evaluation leaves behind, for POYO and SAMBA alike: text tables, JSON and plots.

:class:`EvaluateReport` is the outcome of an evaluate step (R^2 per model and session, the plots,
model-specific extras); the tables are the lines ``neurofm run`` and ``neurofm evaluate`` print;
``results_<split>.json`` beside them holds the numbers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neurofm import display
from neurofm.atomic import atomic_path
from neurofm.data.catalog import Catalog

if TYPE_CHECKING:  # for annotations only: this module imports neither torch nor Lightning
    from neurofm.evaluation.poyo import EvalResult
    from neurofm.evaluation.samba import SambaReport

log = logging.getLogger(__name__)

__all__ = [
    "EvaluateReport",
    "band_ranges",
    "plot_poyo",
    "plot_samba",
    "results_table",
    "samba_lines",
    "samba_results_table",
    "samba_summary",
    "write_json",
]


@dataclass
class EvaluateReport:
    """R^2 per session of every model scored, and where the plots went."""

    split: str
    r2: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> session -> R^2
    plots: list[Path] = field(default_factory=list)
    ok: bool = True
    metrics: dict[str, Any] = field(default_factory=dict)  # model-specific extras (SAMBA)

    def __repr__(self) -> str:
        means = ", ".join(
            f"{model} {display.number(sum(per.values()) / len(per) if per else float('nan'))}"
            for model, per in self.r2.items()
        )
        state = "" if self.ok else "; NOT ok"
        return f"<EvaluateReport {self.split} split: mean R^2 {means or 'none'}{state}>"

    def _repr_html_(self) -> str:
        models = list(self.r2)
        sessions = list(dict.fromkeys(rid for per in self.r2.values() for rid in per))
        rows = [
            [rid, *(display.number(self.r2[m].get(rid, float("nan"))) for m in models)]
            for rid in sessions
        ]
        caption = f"EvaluateReport: R^2 per session, {self.split} split"
        return display.html_table(caption, rows, ["session", *models])


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


def results_table(rows: dict[str, dict[str, float]]) -> str:
    """A text table: one row per session, one column per model (R^2), plus the mean.

    Parameters
    ----------
    rows : dict
        Model name -> session id -> R^2 (a session a model lacks shows ``nan``).
    """
    models = list(rows)
    sessions = sorted({s for r in rows.values() for s in r})
    width = max([7, *map(len, sessions)])
    lines = [f"{'session':<{width}}  " + "  ".join(f"{m:>8}" for m in models)]
    lines.append("-" * len(lines[0]))
    for s in sessions:
        cells = [f"{rows[m].get(s, float('nan')):>8.3f}" for m in models]
        lines.append(f"{s:<{width}}  " + "  ".join(cells))
    means = [f"{np.nanmean([rows[m].get(s, np.nan) for s in sessions]):>8.3f}" for m in models]
    lines.append(f"{'mean':<{width}}  " + "  ".join(means))
    return "\n".join(lines)


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
    control, and each baseline's r and R^2; a mean row last.

    Parameters
    ----------
    report : SambaReport
        From :func:`~neurofm.evaluation.samba.evaluate_samba`.
    baselines : dict
        Table label -> recording id -> scores (``r_mean``, ``r_sd``, ``r2``).
    """
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


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def _plain(scores: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v) for k, v in scores.items()
    }


def samba_summary(
    report: SambaReport,
    baselines: dict[str, dict[str, dict[str, Any]]],
    classes: list[str],
    bands: list[str],
) -> dict[str, Any]:
    """Everything a SAMBA evaluation found, as plain JSON values.

    Parameters
    ----------
    report : SambaReport
        The model's scores.
    baselines : dict
        Table label -> recording id -> scores.
    classes : list of str
        The stimulus classes.
    bands : list of str
        Wavelet band names (:func:`band_ranges`), keys of the attention weights.

    Returns
    -------
    dict
        ``split``, ``samba``, ``samba_shuffled_eeg``, ``baselines``, ``stimulus``,
        ``wavelet_attention`` and ``hrf_peak_s``.
    """
    return {
        "split": report.split,
        "samba": {rid: _plain(s) for rid, s in report.per_recording.items()},
        "samba_shuffled_eeg": {rid: _plain(s) for rid, s in report.shuffled.items()},
        "baselines": {n: {r: _plain(s) for r, s in b.items()} for n, b in baselines.items()},
        "stimulus": {
            "classes": classes,
            "linear_probe": dataclasses.asdict(report.probe) if report.probe else None,
            "head": dataclasses.asdict(report.head) if report.head else None,
        },
        "wavelet_attention": dict(zip(bands, np.asarray(report.alpha).tolist(), strict=True)),
        "hrf_peak_s": np.asarray(report.hrf_peaks).tolist(),
    }


def write_json(values: Any, path: Path) -> Path:
    """Write ``values`` as indented JSON, atomically (never a half-written file)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(values, indent=1))
    return path


# --------------------------------------------------------------------------------------------
# summary lines
# --------------------------------------------------------------------------------------------


def samba_lines(
    report: SambaReport,
    baselines: dict[str, dict[str, dict[str, Any]]],
    bands: list[str],
    plots: list[Path],
) -> list[str]:
    """The lines ``neurofm run`` and ``neurofm evaluate`` print for a SAMBA evaluation."""
    peaks = np.asarray(report.hrf_peaks)
    lines = [
        f"evaluate: SAMBA on the {report.split} split (stitched; per-parcel Pearson r, mean +- SD)",
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
    lines += [f"plot: {p}" for p in plots]
    return lines


# --------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------


def plot_poyo(result: EvalResult, out: Path) -> list[Path]:
    """Predicted vs true behaviour of a POYO evaluation: ``out/poyo_<split>.png``."""
    from neurofm.viz.decoding import plot_predictions

    path = out / f"poyo_{result.split}.png"
    plot_predictions(result, path)
    return [path]


def _atlas_of(catalog: Path, recording_id: str) -> tuple[str | None, list[int] | None]:
    with Catalog(catalog).open(recording_id) as rec:
        atlas = rec.provenance.extra.get("fmri", {}).get("atlas")
        info = getattr(rec["bold"], "channel_info", None) or {}
        labels = [int(v) for v in info["label"]] if "label" in info else None
    return (atlas if atlas and Path(atlas).is_file() else None), labels


def plot_samba(report: SambaReport, parcels: list[str], catalog: Path, out: Path) -> list[Path]:
    """True vs predicted BOLD per recording, and the per-parcel r on a brain map when the
    catalog's recordings name their atlas; returns the PNGs written to ``out``."""
    from neurofm.viz.brain import plot_bold_predictions, plot_parcel_map

    plots = []
    for rid, pred in report.predictions.items():
        path = out / f"samba_{report.split}_{rid}_bold.png"
        plot_bold_predictions(pred.timestamps, pred.true, pred.pred, parcels, path=path, title=rid)
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
