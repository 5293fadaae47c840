"""Stitching overlapping windows into whole-recording predictions."""

from __future__ import annotations

import numpy as np
import pytest

from neurofm.evaluation.stitching import OverlapMean, stitch
from neurofm.metrics import r2_score


def test_stitch_means_duplicates_and_r2():
    times = np.array([0.0, 0.01, 0.01, 0.02, 0.02 + 1e-9])
    values = np.array([[1.0], [2.0], [4.0], [5.0], [7.0]])
    t, v = stitch(times, values)
    np.testing.assert_allclose(t, [0.0, 0.01, 0.02])
    np.testing.assert_allclose(v[:, 0], [1.0, 3.0, 6.0])
    y = np.random.default_rng(0).normal(size=(50, 2))
    assert r2_score(y, y) == 1.0
    assert r2_score(y, np.zeros_like(y) + y.mean(0)) == pytest.approx(0.0)


def test_overlap_mean_averages_the_windows_covering_each_point():
    acc = OverlapMean(10, {"pred": 2, "hidden": 3})
    acc.add(0, {"pred": np.ones((4, 2)), "hidden": np.zeros((4, 3))})
    acc.add(2, {"pred": 3 * np.ones((4, 2)), "hidden": np.ones((4, 3))})
    points = acc.covered()
    np.testing.assert_array_equal(points, np.arange(6))  # points 6-9: no window
    np.testing.assert_allclose(acc.mean("pred", points)[:, 1], [1, 1, 2, 2, 3, 3])
    np.testing.assert_allclose(acc.mean("hidden", points)[:, 0], [0, 0, 0.5, 0.5, 1, 1])
    # the same as stitching by time on a grid of one point per second
    times = np.r_[np.arange(0, 4), np.arange(2, 6)].astype(float)
    _, by_time = stitch(times, np.r_[np.ones(4), 3 * np.ones(4)])
    np.testing.assert_allclose(acc.mean("pred", points)[:, 0], by_time[:, 0])
