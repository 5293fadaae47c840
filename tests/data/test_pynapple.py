"""Recording.to_pynapple(): every signal becomes the pynapple object that fits it, with the same
numbers; a missing pynapple is a clear error naming the extra to install."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from neurofm.data import Intervals, IrregularSeries, Recording, RegularSeries, Spikes, Units
from neurofm.errors import MissingExtraError

pytest.importorskip("pynapple")


def recording() -> Recording:
    rng = np.random.default_rng(1)
    times = np.sort(rng.uniform(0, 20, 500))
    units = Units(
        ["a", "b", "c", "silent"],
        {"area": ["M1", "M1", "PMd", "PMd"], "rate": [1.0, 2.0, 3.0, 0.0]},  # 'rate': reserved
    )
    unit_index = rng.integers(0, 3, len(times))  # unit 'silent' never fires
    return Recording(
        "r",
        {
            "spikes": Spikes(times, unit_index, units),
            "hand_vel": RegularSeries(rng.random((1000, 2)), 50.0, 0.2, ["x", "y"]),
            "lfp": RegularSeries(rng.random(400), 20.0, 0.0, ["ch0"]),
            "cursor": IrregularSeries(np.sort(rng.uniform(0, 20, 30)), rng.random((30, 2))),
            "trials": Intervals(
                [0.0, 5.0, 10.0],
                [4.0, 9.0, 15.0],
                labels=["l", "r", "l"],
                columns={"target": [1, 2, 1], "go_time": [1.0, 6.0, 11.0]},
                time_columns=["go_time"],
            ),
            "events": Intervals([1.0, 2.0], [1.0, 2.0], labels=["stim", "stim"]),
        },
        duration=20.0,
    )


def check(objs, rec: Recording) -> None:
    import pynapple as nap

    spikes = rec["spikes"]
    group = objs["spikes"]
    assert isinstance(group, nap.TsGroup) and list(group.keys()) == [0, 1, 2, 3]
    for u in range(4):
        np.testing.assert_array_equal(group[u].t, spikes.timestamps[spikes.unit_index == u])
    assert list(group["unit_id"]) == ["a", "b", "c", "silent"]
    assert list(group["area"]) == ["M1", "M1", "PMd", "PMd"]
    assert list(group["unit_rate"]) == [1.0, 2.0, 3.0, 0.0]  # renamed: pynapple owns 'rate'
    span = group.time_support.end[-1] - group.time_support.start[0]  # hand_vel runs past 20 s
    np.testing.assert_allclose(group["rate"], np.bincount(spikes.unit_index, minlength=4) / span)

    vel = objs["hand_vel"]
    assert isinstance(vel, nap.TsdFrame) and list(vel.columns) == ["x", "y"]
    np.testing.assert_array_equal(vel.t, rec["hand_vel"].timestamps)
    np.testing.assert_array_equal(vel.values, rec["hand_vel"].data)
    lfp = objs["lfp"]
    assert isinstance(lfp, nap.Tsd)
    np.testing.assert_array_equal(lfp.values, rec["lfp"].data[:, 0])
    cursor = objs["cursor"]
    np.testing.assert_array_equal(cursor.t, rec["cursor"].timestamps)
    np.testing.assert_array_equal(cursor.values, rec["cursor"].values)

    trials = objs["trials"]
    assert isinstance(trials, nap.IntervalSet)
    np.testing.assert_array_equal(trials.start, [0.0, 5.0, 10.0])
    np.testing.assert_array_equal(trials.end, [4.0, 9.0, 15.0])
    assert list(trials["label"]) == ["l", "r", "l"] and list(trials["target"]) == [1, 2, 1]
    # zero-length events cannot be an IntervalSet (pynapple drops them): a DataFrame instead
    assert list(objs["events"]["start"]) == [1.0, 2.0]
    assert list(objs["events"]["label"]) == ["stim", "stim"]
    assert objs["hand_vel"].time_support.end[-1] > 20.18  # past duration: stretched


def test_every_signal_converts_with_the_same_numbers():
    rec = recording()
    objs = rec.to_pynapple()
    assert list(objs) == list(rec)
    check(objs, rec)


def test_a_lazy_recording_converts_alike(tmp_path):
    rec = recording()
    rec.save(tmp_path / "r.h5")
    with Recording.open(tmp_path / "r.h5") as lazy:
        check(lazy.to_pynapple(), rec)


def test_without_pynapple_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynapple", None)  # `import pynapple` raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install neurofm\[pynapple\]"):
        recording().to_pynapple()
