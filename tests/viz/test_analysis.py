"""Figures of the learning-regime and bias-only analyses, on small hand-made result rows."""

from __future__ import annotations

import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np
import pytest

from neurofm.viz import analysis as plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _sweep_rows() -> list[dict]:
    rows = []
    for seed in (0, 1):
        for rank in (1, 4, 16):
            rows.append(
                {
                    "task": "flipflop",
                    "init": "svd",
                    "param": rank,
                    "seed": seed,
                    "participation_ratio": rank * 1.1,
                    "weight_change": 1.0 / rank + 0.1 * seed,
                    "kernel_alignment": 0.1 * rank,
                    "representation_alignment": 0.5,
                    "sign_similarity": 0.6,
                }
            )
        for init in ("aligned", "experimental"):
            rows.append({**rows[-1], "init": init, "param": float("nan")})
    rows.append({**rows[0], "task": "other"})
    return rows


def test_rank_sweep(tmp_path):
    path = tmp_path / "flipflop.png"
    fig = plots.plot_rank_sweep(_sweep_rows(), "flipflop", path)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert path.read_bytes()[:8] == PNG_MAGIC
    axes = fig.axes
    assert len(axes) == 4
    # the svd line: weight change averaged over the two seeds at each rank
    svd = axes[0].get_lines()[0]
    np.testing.assert_allclose(np.asarray(svd.get_xdata(), float), [1.1, 4.4, 17.6])
    np.testing.assert_allclose(np.asarray(svd.get_ydata(), float), [1.05, 0.3, 1 / 16 + 0.05])
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert labels == ["svd", "aligned", "experimental"]


def test_linear_theory(tmp_path):
    rows = [
        {"init": "svd", "rank": r, "kernel_alignment": 0.1 * r + t, "weight_change": 1.0 / r}
        for r in (1, 2, 8)
        for t in (0.0, 0.2)
    ]
    rows.append({"init": "aligned", "rank": 1, "kernel_alignment": 0.9, "weight_change": 0.05})
    fig = plots.plot_linear_theory(rows, tmp_path / "lt.png")
    assert isinstance(fig, matplotlib.figure.Figure)
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), [0.2, 0.3, 0.9])
    assert (tmp_path / "lt.png").read_bytes()[:8] == PNG_MAGIC


def test_width_sweep():
    rows = [
        {"mode": m, "width": w, "seed": s, "accuracy": acc + 0.1 * s, "chance": 0.1}
        for m, acc in (("bias", 0.5), ("full", 0.8))
        for w in (16, 64)
        for s in (0, 1)
    ]
    fig = plots.plot_width_sweep(rows)
    ax = fig.axes[0]
    bias, full = ax.get_lines()[:2]
    assert bias.get_label() == "biases only" and full.get_label() == "fully trained"
    np.testing.assert_allclose(bias.get_ydata(), [0.55, 0.55])
    np.testing.assert_allclose(full.get_ydata(), [0.85, 0.85])


def test_multitask():
    rows = [
        {"task": "go", "accuracy": 0.9, "full_accuracy": 0.95, "chance": 0.5},
        {"task": "anti", "accuracy": 0.7, "full_accuracy": 0.9, "chance": 0.5},
    ]
    clusters = {"profiles": [[1.0, 0.1], [0.2, 0.8]], "tasks": ["go", "anti"], "sizes": [30, 34]}
    fig = plots.plot_multitask(rows, clusters)
    assert isinstance(fig, matplotlib.figure.Figure)
    heights = [p.get_height() for p in fig.axes[0].patches]
    np.testing.assert_allclose(heights, [0.9, 0.7, 0.95, 0.9])


def test_generation_and_lorenz(tmp_path):
    t = np.linspace(0, 1, 50)
    rows = [{"target": "sine", "mode": m, "gain": 1.5, "mse": 0.01} for m in ("bias", "full")]
    traces = {"sine": np.sin(t)[:, None]}
    traces |= {f"sine/{m}/g=1.5": np.sin(t)[:, None] * 0.9 for m in ("bias", "full")}
    fig = plots.plot_generation(rows, traces, tmp_path / "gen.png")
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes[0].get_lines()) == 3
    assert (tmp_path / "gen.png").read_bytes()[:8] == PNG_MAGIC

    rows = [{"mode": "bias", "gain": 1.0, "mse_teacher_forced": 0.01, "mse_free_running": 0.2}]
    traces = {"truth": t, "bias/g=1/teacher_forced": t, "bias/g=1/free_running": t * 0.5}
    fig = plots.plot_lorenz(rows, traces)
    assert isinstance(fig, matplotlib.figure.Figure)
    np.testing.assert_allclose(fig.axes[0].get_lines()[2].get_ydata(), t * 0.5)
