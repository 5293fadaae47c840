"""What ``neurofm adapt`` and ``neurofm predict`` write: the adaptation report (Markdown,
JSON, a plot of predicted vs true behaviour on held-out trials) and decoded series (CSV, NWB).
Every file is written to a temporary name and renamed when complete."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from neurofm.atomic import atomic_path
from neurofm.data.signals import IrregularSeries, RegularSeries
from neurofm.errors import NeuroFMError
from neurofm.evaluation.reports import write_json

__all__ = [
    "adaptation_summary",
    "check_predictions_path",
    "plot_decoded",
    "write_adaptation_report",
    "write_predictions",
]


def adaptation_summary(adapted: Any) -> dict[str, Any]:
    """The adaptation's facts as plain values: recording, mode, trials, held-out score per
    dimension, checkpoint, and the adapted model's card."""
    card = adapted.card
    a = card.adaptation or {}
    score = card.scores.get("adaptation", {})
    per_dim: dict[str, float] = {}
    if adapted.evaluation is not None and a.get("recording") in adapted.evaluation.sessions:
        from neurofm.metrics import r2_score

        s = adapted.evaluation.sessions[a["recording"]]
        names = list(s.channels) or [str(d) for d in range(s.truth.shape[1])]
        per_dim = {
            names[d]: float(r2_score(s.truth[:, d], s.prediction[:, d]))
            for d in range(s.truth.shape[1])
        }
    return {
        "recording": a.get("recording"),
        "source": a.get("source"),
        "mode": a.get("mode"),
        "trials": a.get("trials"),
        "held_out_trials": score.get("n"),
        "r2": score.get("r2"),
        "r2_per_dimension": per_dim,
        "new_units": a.get("new_units"),
        "kept_units": a.get("kept_units"),
        "epochs": a.get("epochs"),
        "target": card.target.get("name"),
        "checkpoint": str(adapted.path) if adapted.path else None,
        "card": card.to_dict(),
    }


def write_adaptation_report(adapted: Any, out: str | os.PathLike[str]) -> list[Path]:
    """Write ``report.json``, ``report.md`` and ``predictions.png`` (predicted vs true
    behaviour on a few held-out trials) into ``out``.

    Parameters
    ----------
    adapted : PretrainedPOYO
        What :meth:`~neurofm.pretrained.PretrainedPOYO.adapt` returned.
    out : path-like
        The folder.

    Returns
    -------
    list of Path
        The files written.
    """
    from neurofm.viz.decoding import plot_predictions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = adaptation_summary(adapted)
    files = [write_json(s, out / "report.json")]
    rows = "\n".join(f"| {k} | {v:.3f} |" for k, v in s["r2_per_dimension"].items())
    text = f"""# Adaptation of a pretrained POYO to {s["recording"]}

- source: `{s["source"]}`
- mode: {s["mode"]}, {s["trials"]} labelled trials, {s["epochs"]} epochs
- vocabulary: {s["new_units"]} new units, {s["kept_units"]} already known
- checkpoint: `{s["checkpoint"]}`

## Held-out score ({s["held_out_trials"]} trials not used for adaptation, stitched)

{s["target"]} R^2: **{s["r2"]:.3f}**

| dimension | R^2 |
|---|---|
{rows}

![predicted vs true](predictions.png)
"""
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(text)
    files.append(out / "report.md")
    if adapted.evaluation is not None and adapted.evaluation.sessions:
        plot_predictions(adapted.evaluation, out / "predictions.png")
        files.append(out / "predictions.png")
    return files


def check_predictions_path(
    path: str | os.PathLike[str], source: str | os.PathLike[str] | None = None
) -> Path:
    """What :func:`write_predictions` would refuse, said before anything is decoded: a suffix
    other than ``.csv`` or ``.nwb``, or NWB output without an NWB source to copy.

    Raises
    ------
    NeuroFMError
        Naming the output and what to write instead.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".nwb"):
        raise NeuroFMError(
            f"{path}: --out must end in .csv or .nwb (got {path.suffix or 'none'!r})"
        )
    if suffix == ".nwb" and (source is None or Path(source).suffix.lower() != ".nwb"):
        raise NeuroFMError(
            f"{path}: NWB output copies the source NWB file and adds the predictions; the "
            f"recording {source} is not an NWB file (write a .csv)"
        )
    return path


def write_predictions(
    series: RegularSeries | IrregularSeries,
    path: str | os.PathLike[str],
    source: str | os.PathLike[str] | None = None,
) -> Path:
    """Write decoded behaviour as CSV (``time`` then one column per channel) or NWB (a copy
    of the NWB ``source`` with a ``neurofm`` processing module holding the series).

    Raises
    ------
    NeuroFMError
        Another suffix than ``.csv`` or ``.nwb``, an NWB output without an NWB source, or an
        NWB writer that is not available.
    """
    path = check_predictions_path(path, source)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        times = np.asarray(series.timestamps, dtype=np.float64)
        data = series.data if isinstance(series, RegularSeries) else series.values
        data = np.asarray(data, dtype=np.float64).reshape(len(times), -1)
        header = ",".join(["time", *(str(c) for c in series.channels)])
        with atomic_path(path) as tmp:
            np.savetxt(
                tmp,
                np.column_stack([times, data]),
                delimiter=",",
                header=header,
                comments="",
                fmt="%.9g",
            )
        return path
    # .nwb (check_predictions_path took every other suffix)
    from neurofm import writers

    nwb = getattr(writers, "nwb", None)
    if nwb is None:
        import importlib

        nwb = importlib.import_module("neurofm.writers.nwb")
    if not hasattr(nwb, "add_predictions"):
        raise NeuroFMError(
            f"{path}: NWB output is not available in this neurofm (no "
            "neurofm.writers.nwb.add_predictions); write a .csv"
        )
    return nwb.add_predictions(
        source,
        path,
        {series.name: series},
        name="neurofm",
        description=f"{series.name} decoded by a neurofm POYO",
    )


def plot_decoded(
    series: RegularSeries | IrregularSeries,
    recording: Any,
    domain: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    max_segments: int = 4,
) -> Any:
    """Plot decoded behaviour (:meth:`~neurofm.pretrained.PretrainedPOYO.predict`) against the
    recording's own, on the first few intervals of ``domain`` (e.g. held-out trials).

    Parameters
    ----------
    series : RegularSeries or IrregularSeries
        The decoded target, named like the recording's signal.
    recording : Recording
        Holds the true signal of that name.
    domain : Intervals
        Where to compare (each interval a panel segment).
    path : path-like, optional
        PNG to write (atomically).
    max_segments : int
        Intervals shown.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from types import SimpleNamespace

    from neurofm.metrics import r2_score
    from neurofm.viz.decoding import plot_predictions

    truth = recording[series.name].load()
    times = np.asarray(truth.timestamps, dtype=np.float64)
    inside = np.zeros(len(times), dtype=bool)
    for s, e in zip(domain.start, domain.end, strict=True):
        inside |= (times >= s) & (times < e)
    true = np.asarray(truth.data if isinstance(truth, RegularSeries) else truth.values)[inside]
    pred_all = series.data if isinstance(series, RegularSeries) else series.values
    pred_times = np.asarray(series.timestamps, dtype=np.float64)
    idx = np.clip(np.searchsorted(pred_times, times[inside] - 1e-9), 0, len(pred_times) - 1)
    pred = np.asarray(pred_all)[idx]
    ok = np.isfinite(pred).all(axis=1) & np.isfinite(true).all(axis=1)
    session = SimpleNamespace(
        recording_id=recording.id,
        timestamps=times[inside][ok],
        truth=true[ok],
        prediction=pred[ok],
        channels=tuple(str(c) for c in series.channels),
        unit=series.unit,
        r2=float(r2_score(true[ok], pred[ok])) if ok.sum() > 1 else float("nan"),
    )
    result = SimpleNamespace(split="held-out", target=series.name, sessions={recording.id: session})
    return plot_predictions(result, path, max_segments=max_segments)
