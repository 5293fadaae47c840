"""Figures of the analyses: learning regimes (rich vs lazy) and bias-only RNNs.

Each function takes the rows the analysis wrote (one mapping per run) and returns a matplotlib
Figure; given ``path``, it also saves the figure as a PNG, atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from neurofm.viz.figures import pyplot, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PathLike = str | os.PathLike[str]

__all__ = [
    "plot_generation",
    "plot_linear_theory",
    "plot_lorenz",
    "plot_multitask",
    "plot_rank_sweep",
    "plot_width_sweep",
]


_METRICS = (
    ("weight_change", "||dW_rec||_F  (richer: up)"),
    ("kernel_alignment", "NTK alignment  (lazier: up)"),
    ("representation_alignment", "representation alignment"),
    ("sign_similarity", "sign similarity"),
)
_MARKERS = {"aligned": "*", "experimental": "D", "shuffled": "X", "decay": "s"}


def plot_rank_sweep(
    rows: Sequence[Mapping[str, Any]], task: str, path: PathLike | None = None
) -> Figure:
    """Rich/lazy metrics against the effective rank (participation ratio) of ``W_rec(0)``.

    SVD-truncation conditions are joined by a line (mean +- sd over seeds); other inits
    (aligned, experimental, its shuffled control, spectral decay) are markers.

    Parameters
    ----------
    rows : sequence of mapping
        One per run, with ``task``, ``init``, ``param``, ``participation_ratio`` and the
        metrics ``weight_change``, ``kernel_alignment``, ``representation_alignment``,
        ``sign_similarity``.
    task : str
        The task whose runs are drawn.
    path : str or Path, optional
        Where to save a PNG (written atomically); the figure is returned either way.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    rows = [r for r in rows if r["task"] == task]
    labels = list(dict.fromkeys(r["init"] for r in rows))
    for ax, (metric, title) in zip(axes, _METRICS, strict=True):
        for label in labels:
            sub = [r for r in rows if r["init"] == label]
            params = list(dict.fromkeys(r["param"] for r in sub))
            xs, ys, es = [], [], []
            for p in params:
                grp = [r for r in sub if r["param"] == p or (p != p and r["param"] != r["param"])]
                xs.append(np.mean([r["participation_ratio"] for r in grp]))
                vals = np.asarray([r[metric] for r in grp], float)
                ys.append(np.nanmean(vals) if np.isfinite(vals).any() else np.nan)
                es.append(np.nanstd(vals) if np.isfinite(vals).any() else np.nan)
            style = "o-" if label == "svd" else _MARKERS.get(label, "^")
            ax.errorbar(xs, ys, yerr=es, fmt=style, capsize=3, label=label, ms=7)
        ax.set_xscale("log")
        ax.set_xlabel("participation ratio of W_rec(0)")
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7, frameon=False)
    fig.suptitle(f"rich vs lazy learning: {task}")
    fig.tight_layout()
    save_png(fig, path)
    return fig


def plot_linear_theory(rows: Sequence[Mapping[str, Any]], path: PathLike | None = None) -> Figure:
    """Two-layer linear theory: kernel alignment and weight change vs rank (mean over teachers).

    Parameters
    ----------
    rows : sequence of mapping
        One per run, with ``init`` (``"svd"`` or ``"aligned"``), ``rank``,
        ``kernel_alignment`` and ``weight_change``.
    path : str or Path, optional
        Where to save a PNG (written atomically); the figure is returned either way.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, metric in zip(axes, ("kernel_alignment", "weight_change"), strict=True):
        svd = [r for r in rows if r["init"] == "svd"]
        ranks = sorted({r["rank"] for r in svd})
        means = [np.mean([r[metric] for r in svd if r["rank"] == k]) for k in ranks]
        ax.plot(ranks, means, "o-", label="random rank r")
        aligned = [r[metric] for r in rows if r["init"] == "aligned"]
        if aligned:
            ax.plot([1], [np.mean(aligned)], "*", ms=12, label="aligned rank 1")
        ax.set_xscale("log")
        ax.set_xlabel("rank of W1(0)")
        ax.set_title(metric.replace("_", " "), fontsize=9)
    axes[0].legend(fontsize=7, frameon=False)
    fig.suptitle("two-layer linear network (mean over teachers)")
    fig.tight_layout()
    save_png(fig, path)
    return fig


def plot_width_sweep(rows: Sequence[Mapping[str, Any]], path: PathLike | None = None) -> Figure:
    """Test accuracy against hidden width, bias-only vs fully trained, with chance.

    Parameters
    ----------
    rows : sequence of mapping
        One per run, with ``mode`` (``"bias"`` or ``"full"``), ``width``, ``accuracy`` and
        ``chance``.
    path : str or Path, optional
        Where to save a PNG (written atomically); the figure is returned either way.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for mode in dict.fromkeys(r["mode"] for r in rows):
        widths = sorted({r["width"] for r in rows if r["mode"] == mode})
        acc = [
            np.mean([r["accuracy"] for r in rows if r["mode"] == mode and r["width"] == w])
            for w in widths
        ]
        ax.plot(widths, acc, "o-", label="biases only" if mode == "bias" else "fully trained")
    ax.axhline(rows[0]["chance"], color="0.5", ls="--", lw=1, label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("hidden width")
    ax.set_ylabel("digits test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
    return fig


def plot_multitask(
    rows: Sequence[Mapping[str, Any]],
    clusters: Mapping[str, Any],
    path: PathLike | None = None,
) -> Figure:
    """Per-task accuracy of the bias bank and the task-variance cluster profiles.

    Parameters
    ----------
    rows : sequence of mapping
        One per task, with ``task``, ``accuracy``, ``chance`` and optionally
        ``full_accuracy``.
    clusters : mapping
        ``profiles`` (clusters x tasks, normalised task variance in [0, 1]), ``tasks`` and
        ``sizes`` (units per cluster).
    path : str or Path, optional
        Where to save a PNG (written atomically); the figure is returned either way.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = [r["task"] for r in rows]
    x = np.arange(len(rows))
    ax1.bar(x - 0.2, [r["accuracy"] for r in rows], 0.4, label="one bias vector per task")
    if "full_accuracy" in rows[0]:
        ax1.bar(x + 0.2, [r["full_accuracy"] for r in rows], 0.4, label="fully trained")
    ax1.scatter(x, [r["chance"] for r in rows], marker="_", s=400, c="k", label="chance")
    ax1.set_xticks(x, names)
    ax1.set_ylim(0, 1)
    ax1.set_ylabel("test accuracy")
    ax1.legend(frameon=False, fontsize=7)
    prof = np.asarray(clusters["profiles"])
    im = ax2.imshow(prof, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax2.set_xticks(range(len(clusters["tasks"])), clusters["tasks"])
    ax2.set_yticks(
        range(len(prof)), [f"cluster {i} ({n} units)" for i, n in enumerate(clusters["sizes"])]
    )
    ax2.set_title("normalised task variance", fontsize=9)
    fig.colorbar(im, ax=ax2)
    fig.tight_layout()
    save_png(fig, path)
    return fig


def plot_generation(
    rows: Sequence[Mapping[str, Any]],
    traces: Mapping[str, np.ndarray],
    path: PathLike | None = None,
) -> Figure:
    """Generated trajectories of bias-only (and fully trained) RNNs at each gain.

    Parameters
    ----------
    rows : sequence of mapping
        One per run, with ``target``, ``mode``, ``gain`` and ``mse``.
    traces : mapping of str to ndarray, shape (T, D)
        The target trajectory under its name, and each run's output under
        ``"{target}/{mode}/g={gain:g}"``.
    path : str or Path, optional
        Where to save a PNG (written atomically); the figure is returned either way.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = pyplot()
    targets = list(dict.fromkeys(r["target"] for r in rows))
    fig, axes = plt.subplots(len(targets), 1, figsize=(8, 2.6 * len(targets)), squeeze=False)
    for ax, name in zip(axes[:, 0], targets, strict=True):
        ax.plot(traces[name][:, 0], "k", lw=2, label="target")
        for r in rows:
            if r["target"] != name:
                continue
            key = f"{name}/{r['mode']}/g={r['gain']:g}"
            ls = "-" if r["mode"] == "bias" else ":"
            ax.plot(
                traces[key][:, 0],
                ls,
                lw=1,
                label=f"{r['mode']} g={r['gain']:g} (mse {r['mse']:.2g})",
            )
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7, frameon=False, loc="upper right")
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    save_png(fig, path)
    return fig


def plot_lorenz(
    rows: Sequence[Mapping[str, Any]],
    traces: Mapping[str, np.ndarray],
    path: PathLike | None = None,
) -> Figure:
    """Lorenz forecasts: teacher-forced and free-running against the truth.

    Parameters
    ----------
    rows : sequence of mapping
        One per run, with ``mode``, ``gain``, ``mse_teacher_forced`` and
        ``mse_free_running``.
    traces : mapping of str to ndarray, shape (T,)
        ``"truth"``, and each run's forecasts under ``"{mode}/g={gain:g}/teacher_forced"``
        and ``"{mode}/g={gain:g}/free_running"``.
    path : str or Path, optional
        Where to save a PNG (written atomically); the figure is returned either way.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = pyplot()
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 2.4 * len(rows)), squeeze=False)
    truth = traces["truth"]
    for ax, r in zip(axes[:, 0], rows, strict=True):
        key = f"{r['mode']}/g={r['gain']:g}"
        ax.plot(truth, "k", lw=2, label="x(t + tau)")
        ax.plot(traces[f"{key}/teacher_forced"], lw=1, label="teacher-forced")
        ax.plot(traces[f"{key}/free_running"], lw=1, label="free-running")
        ax.set_title(
            f"{r['mode']} g={r['gain']:g}: mse {r['mse_teacher_forced']:.2g} teacher-forced, "
            f"{r['mse_free_running']:.2g} free-running",
            fontsize=9,
        )
        ax.legend(fontsize=7, frameon=False, loc="upper right")
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    save_png(fig, path)
    return fig
