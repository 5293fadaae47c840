"""Predicted vs true decoding traces: channel names, units, each panel's own R^2, trials."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np
import pytest

from neurofm.errors import InvalidDataError
from neurofm.viz.decoding import channel_label, plot_predictions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _session(rid: str, seed: int, dims: int = 2, **extra) -> SimpleNamespace:
    """Three evaluation trials of 10 samples at 100 Hz, 1 s apart; the prediction of
    dimension 1 is much noisier than that of dimension 0, so their R^2 differ."""
    rng = np.random.default_rng(seed)
    t = np.concatenate([start + 0.01 * np.arange(10) for start in (0.0, 1.0, 2.0)])
    truth = rng.standard_normal((30, dims)).astype(np.float32)
    noise = np.linspace(0.2, 1.0, dims, dtype=np.float32)
    pred = truth + noise * rng.standard_normal((30, dims)).astype(np.float32)
    return SimpleNamespace(
        recording_id=rid, timestamps=t, truth=truth, prediction=pred, r2=0.8, **extra
    )


def _result(n: int, **extra) -> SimpleNamespace:
    sessions = {f"s{i}": _session(f"s{i}", i, **extra) for i in range(n)}
    return SimpleNamespace(split="test", target="hand_vel", sessions=sessions)


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    y, p = y.astype(float), p.astype(float)
    return 1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum()


def test_panels_are_named_by_channel_with_their_own_r2_and_unit(tmp_path):
    result = _result(4, channels=("x", "y"), unit="m/s")
    path = tmp_path / "pred.png"
    fig = plot_predictions(result, path, max_sessions=3, max_segments=2)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert len(fig.axes) == 3 * 2
    for row, rid in enumerate(["s0", "s1", "s2"]):
        s = result.sessions[rid]
        r2 = [_r2(s.truth[:, d], s.prediction[:, d]) for d in range(2)]
        assert abs(r2[0] - r2[1]) > 0.05  # not one number repeated
        for d, name in enumerate(["x", "y"]):
            ax = fig.axes[2 * row + d]
            assert ax.get_title() == f"{rid}\nhand_vel {name}: R² {r2[d]:.2f}"
            assert ax.get_ylabel() == f"hand_vel {name} (m/s)"
    assert fig.axes[-1].get_xlabel() == "time in the test trials shown, end to end (s)"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["true", "predicted", "trial boundary"]


def test_trials_laid_end_to_end_in_seconds_with_boundaries():
    result = _result(1, channels=("x", "y"), unit="m/s")
    s = result.sessions["s0"]
    fig = plot_predictions(result, max_segments=2)
    ax = fig.axes[1]  # dimension y
    truth_line, pred_line, boundary = ax.get_lines()
    x = truth_line.get_xdata()
    # two trials of 10 samples, and one NaN point between them (no sample is lost)
    assert len(x) == len(pred_line.get_ydata()) == 21
    np.testing.assert_allclose(x[:10], 0.01 * np.arange(10), atol=1e-12)
    np.testing.assert_allclose(x[11:], 0.1 + 0.01 * np.arange(10), atol=1e-12)
    assert np.isnan(truth_line.get_ydata()[10]) and np.isnan(pred_line.get_ydata()[10])
    np.testing.assert_allclose(truth_line.get_ydata()[:10], s.truth[:10, 1])
    np.testing.assert_allclose(truth_line.get_ydata()[11:], s.truth[10:20, 1])
    np.testing.assert_allclose(pred_line.get_ydata()[11:], s.prediction[10:20, 1])
    assert boundary.get_xdata()[0] == pytest.approx(0.095)  # between the two trials
    assert boundary.get_label() == "trial boundary"


def test_all_segments_when_fewer_than_asked():
    fig = plot_predictions(_result(1), max_segments=10)
    assert len(fig.axes) == 2
    assert len(fig.axes[0].get_lines()[0].get_ydata()) == 30 + 2
    assert len(fig.axes[0].get_lines()) == 2 + 2  # truth, prediction, two boundaries


def test_without_channel_names():
    fig = plot_predictions(_result(1))
    ax = fig.axes[0]
    assert ax.get_title().startswith("s0\nhand_vel dim 0: R² ")
    assert ax.get_ylabel() == "hand_vel dim 0"  # no unit known: none shown


def test_channel_label():
    assert channel_label(("x", "y"), 1) == "y"
    assert channel_label(("0", "1"), 1) == "channel 1"  # a bare index is said to be one
    assert channel_label((), 0) == "dim 0"
    assert channel_label(None, 2) == "dim 2"


def test_no_sessions_is_a_clear_error():
    with pytest.raises(InvalidDataError, match="the result has no sessions"):
        plot_predictions(SimpleNamespace(split="test", sessions={}))


def test_nothing_is_clipped_or_overlapping(laid_out):
    laid_out(plot_predictions(_result(3, channels=("x", "y"), unit="m/s")))


def test_few_shot_curve_mean_line_per_mode_and_every_seed(tmp_path):
    from neurofm.viz.decoding import plot_few_shot

    rows = [
        {"mode": m, "trials": k, "seed": s, "r2": base + 0.01 * k + 0.02 * s}
        for m, base in (("unit-id", 0.5), ("scratch", 0.0))
        for k in (5, 10, 20)
        for s in (0, 1)
    ]
    fig = plot_few_shot(rows, tmp_path / "fs.png")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"unit-id", "scratch"}
    np.testing.assert_allclose(lines["unit-id"].get_xdata(), [5, 10, 20])
    # the line is the mean over seeds: base + 0.01 k + 0.01
    np.testing.assert_allclose(lines["unit-id"].get_ydata(), [0.56, 0.61, 0.71])
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(rows)  # every seed a dot
    assert (tmp_path / "fs.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(InvalidDataError, match=r"rows\[0\] has no r2"):
        plot_few_shot([{"mode": "full", "trials": 5}])
    with pytest.raises(InvalidDataError, match="no rows"):
        plot_few_shot([])
