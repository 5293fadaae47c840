"""Predicted vs true decoding traces."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np
import pytest

from neurofm.errors import InvalidDataError
from neurofm.viz.decoding import plot_predictions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _session(rid: str, seed: int, dims: int = 2) -> SimpleNamespace:
    """Three evaluation trials of 10 samples at 100 Hz, 1 s apart."""
    rng = np.random.default_rng(seed)
    t = np.concatenate([start + 0.01 * np.arange(10) for start in (0.0, 1.0, 2.0)])
    truth = rng.standard_normal((30, dims)).astype(np.float32)
    pred = truth + 0.3 * rng.standard_normal((30, dims)).astype(np.float32)
    return SimpleNamespace(recording_id=rid, timestamps=t, truth=truth, prediction=pred, r2=0.8)


def _result(n: int) -> SimpleNamespace:
    return SimpleNamespace(split="test", sessions={f"s{i}": _session(f"s{i}", i) for i in range(n)})


def test_rows_are_sessions_columns_dimensions(tmp_path):
    result = _result(4)
    path = tmp_path / "pred.png"
    fig = plot_predictions(result, path, max_sessions=3, max_segments=2)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert len(fig.axes) == 3 * 2
    s0 = result.sessions["s0"]
    ax = fig.axes[1]  # session s0, dimension 1
    assert ax.get_title() == "s0 dim 1  (R^2 0.80)"
    truth, pred = (line.get_ydata() for line in ax.get_lines()[:2])
    # two segments shown (20 samples), the first sample of the second blanked so the
    # segments are not joined by a line
    assert len(truth) == len(pred) == 20
    assert np.isnan(truth[10]) and np.isnan(pred[10])
    keep = np.arange(20) != 10
    np.testing.assert_allclose(truth[keep], s0.truth[:20, 1][keep])
    np.testing.assert_allclose(pred[keep], s0.prediction[:20, 1][keep])


def test_all_segments_when_fewer_than_asked():
    fig = plot_predictions(_result(1), max_segments=10)
    assert len(fig.axes) == 2
    assert len(fig.axes[0].get_lines()[0].get_ydata()) == 30


def test_no_sessions_is_a_clear_error():
    with pytest.raises(InvalidDataError, match="the result has no sessions"):
        plot_predictions(SimpleNamespace(split="test", sessions={}))
