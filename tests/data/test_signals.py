"""Signals: validation at construction and window semantics."""

from __future__ import annotations

import numpy as np
import pytest

from neurofm.data import Intervals, IrregularSeries, RegularSeries, Spikes, Units
from neurofm.data.signals import regular_index_range
from neurofm.errors import InvalidDataError


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"timestamps": [0.1, np.nan], "unit_index": [0, 0]},
            r"spikes\.timestamps: must be finite",
        ),
        ({"timestamps": [-0.5, 0.1], "unit_index": [0, 0]}, r"spikes\.timestamps: must be >= 0"),
        ({"timestamps": [0.2, 0.1], "unit_index": [0, 0]}, r"spikes\.timestamps: must be sorted"),
        ({"timestamps": [0.1, 0.2], "unit_index": [0, 2]}, r"spikes\.unit_index: .*\[0, 2\)"),
        ({"timestamps": [0.1, 0.2], "unit_index": [0, -1]}, r"spikes\.unit_index: .*found -1"),
        ({"timestamps": [0.1, 0.2], "unit_index": [0]}, r"spikes\.unit_index: length 1"),
    ],
)
def test_spikes_validation(kwargs, message):
    with pytest.raises(InvalidDataError, match=message):
        Spikes(units=["a", "b"], **kwargs)


def test_units_must_be_unique_and_columns_aligned():
    with pytest.raises(InvalidDataError, match=r"units\.ids: must be unique \(duplicate id 'a'\)"):
        Units(["a", "b", "a"])
    with pytest.raises(InvalidDataError, match=r"units\.area: length 1 does not match ids \(2\)"):
        Units(["a", "b"], {"area": ["M1"]})


def test_regular_series_validation_names_signal_and_field():
    with pytest.raises(InvalidDataError, match=r"eeg\.rate: must be a finite number > 0"):
        RegularSeries(np.zeros((4, 2)), rate=0, name="eeg")
    with pytest.raises(InvalidDataError, match=r"eeg\.start: must be finite and >= 0"):
        RegularSeries(np.zeros((4, 2)), rate=10, start=-1, name="eeg")
    with pytest.raises(InvalidDataError, match=r"eeg\.channels: length 3"):
        RegularSeries(np.zeros((4, 2)), rate=10, channels=["a", "b", "c"], name="eeg")
    with pytest.raises(InvalidDataError, match=r"eeg\.data: expected shape \(time, channels\)"):
        RegularSeries(np.zeros((4, 2, 2)), rate=10, name="eeg")


def test_irregular_series_validation():
    with pytest.raises(InvalidDataError, match=r"cursor\.values: length 2 does not match"):
        IrregularSeries([0.0, 0.1, 0.2], np.zeros((2, 2)), name="cursor")
    with pytest.raises(InvalidDataError, match=r"cursor\.timestamps: must be sorted"):
        IrregularSeries([0.0, 0.2, 0.1], np.zeros((3, 2)), name="cursor")


def test_intervals_validation():
    with pytest.raises(InvalidDataError, match=r"trials\.end: must be >= start \(interval 1"):
        Intervals([0.0, 2.0], [1.0, 1.5], name="trials")
    with pytest.raises(InvalidDataError, match=r"trials\.start: must be sorted"):
        Intervals([2.0, 0.0], [3.0, 1.0], name="trials")
    with pytest.raises(InvalidDataError, match=r"trials\.time_columns: 'go' is not a column"):
        Intervals([0.0], [1.0], time_columns=["go"], name="trials")


def test_spikes_window_is_half_open_and_relative():
    spikes = Spikes([0.5, 1.0, 1.5, 2.0, 2.5], [0, 1, 0, 1, 0], ["a", "b"])
    win = spikes.window(1.0, 2.0)
    np.testing.assert_array_equal(win.timestamps, [0.0, 0.5])  # 1.0 in, 2.0 out
    np.testing.assert_array_equal(win.unit_index, [1, 0])
    assert win.units is spikes.units
    assert len(spikes.window(3.0, 4.0)) == 0
    assert len(spikes.window(1.2, 1.2)) == 0
    with pytest.raises(InvalidDataError, match="end .* must be >= start"):
        spikes.window(2.0, 1.0)
    np.testing.assert_array_equal(spikes.counts(), [3, 2])


def test_regular_series_window_keeps_sample_grid():
    series = RegularSeries(np.arange(10.0), rate=10.0, start=0.05)  # samples at 0.05, 0.15, ...
    win = series.window(0.2, 0.5)
    np.testing.assert_array_equal(win.data[:, 0], [2.0, 3.0, 4.0])  # 0.25, 0.35, 0.45
    assert win.start == pytest.approx(0.05)  # first sample 0.25 is 0.05 s after the window start
    empty = series.window(5.0, 6.0)
    assert len(empty) == 0 and empty.start == 0.0
    assert series.end == pytest.approx(1.05)


def test_regular_index_range_exact_at_sample_times():
    # Window edges that coincide with sample times: the left one is in, the right one out.
    lo, hi = regular_index_range(0.0, 3.0, 30, 1.0, 2.0)  # samples at k/3
    assert (lo, hi) == (3, 6)
    assert regular_index_range(0.0, 3.0, 30, -5.0, -1.0) == (0, 0)
    assert regular_index_range(0.0, 3.0, 30, 50.0, 60.0) == (30, 30)


def test_intervals_window_keeps_overlapping_unclipped_and_shifts_time_columns():
    trials = Intervals(
        [0.0, 1.0, 1.2, 5.0],
        [4.0, 1.5, 1.2, 6.0],  # a long interval nesting the others, and a zero-length one
        labels=["long", "a", "point", "late"],
        columns={"go_time": [0.5, 1.1, 1.2, 5.5], "target": [1, 2, 3, 4]},
        time_columns=["go_time"],
        name="trials",
    )
    win = trials.window(1.2, 3.0)
    assert list(win.labels) == ["long", "a", "point"]
    np.testing.assert_allclose(win.start, [-1.2, -0.2, 0.0])
    np.testing.assert_allclose(win.columns["go_time"], [-0.7, -0.1, 0.0])
    np.testing.assert_array_equal(win.columns["target"], [1, 2, 3])
    assert list(trials.window(4.5, 5.0).labels) == []  # [5, 6) starts at the window's end
    mask = trials.contains(np.array([0.5, 4.5, 5.5]))
    np.testing.assert_array_equal(mask, [True, False, True])
