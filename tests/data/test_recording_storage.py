"""Recording: HDF5 round trip, atomic save, lazy windows equal eager ones, bounded reads."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurofm.data import (
    Intervals,
    IrregularSeries,
    Recording,
    RegularSeries,
    Spikes,
    Units,
    storage,
)
from neurofm.errors import InvalidDataError, ReaderError

DURATION = 60.0


def make_recording(seed: int = 0, duration: float = DURATION, n_units: int = 20) -> Recording:
    rng = np.random.default_rng(seed)
    n = rng.poisson(duration * n_units * 8)
    times = np.sort(rng.uniform(0, duration, n))
    units = Units(
        [f"elec{i // 4}/unit{i}" for i in range(n_units)],
        {
            "area": np.where(np.arange(n_units) < n_units // 2, "M1", "PMd"),
            "snr": rng.random(n_units),
        },
    )
    starts = np.arange(0.5, duration - 2, 2.0)
    return Recording(
        "sub-A_ses-1",
        {
            "spikes": Spikes(times, rng.integers(0, n_units, n), units),
            "hand_vel": RegularSeries(
                rng.normal(size=(int(duration * 100), 2)), 100.0, 0.003, ["x", "y"], unit="m/s"
            ),
            "cursor": IrregularSeries(
                np.sort(rng.uniform(0, duration, 500)), rng.normal(size=(500, 2)), ["x", "y"]
            ),
            "trials": Intervals(
                starts,
                starts + 1.5,
                labels=[f"t{i}" for i in range(len(starts))],
                columns={"go_cue_time": starts + 0.5, "target": rng.integers(0, 8, len(starts))},
                time_columns=["go_cue_time"],
            ),
        },
        duration=duration,
        metadata={"subject_id": "A", "session_id": "1", "species": "Macaca mulatta"},
        provenance={"source_path": "/data/x.nwb", "sha256": "ab" * 32, "custom": 3},
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    rec = make_recording()
    path = rec.save(tmp_path_factory.mktemp("rec") / "rec.h5")
    return rec, path


def assert_signals_equal(a, b):
    assert a.kind == b.kind
    if a.kind == "spikes":
        np.testing.assert_array_equal(a.timestamps, b.timestamps)
        np.testing.assert_array_equal(a.unit_index, b.unit_index)
        assert list(a.units.ids) == list(b.units.ids)
        for key in a.units.columns:
            np.testing.assert_array_equal(a.units.columns[key], b.units.columns[key])
    elif a.kind == "regular":
        np.testing.assert_array_equal(a.data, b.data)
        assert a.data.shape == b.data.shape
        assert (a.rate, a.start, list(a.channels)) == (b.rate, b.start, list(b.channels))
    elif a.kind == "irregular":
        np.testing.assert_array_equal(a.timestamps, b.timestamps)
        np.testing.assert_array_equal(a.values, b.values)
    else:
        np.testing.assert_array_equal(a.start, b.start)
        np.testing.assert_array_equal(a.end, b.end)
        assert (a.labels is None) == (b.labels is None)
        if a.labels is not None:
            assert list(a.labels) == list(b.labels)
        assert sorted(a.columns) == sorted(b.columns)
        for key in a.columns:
            np.testing.assert_array_equal(a.columns[key], b.columns[key])


def test_round_trip_every_value(saved):
    rec, path = saved
    with Recording.open(path) as lazy:
        assert lazy.is_lazy
        assert lazy.id == rec.id and lazy.duration == rec.duration
        assert lazy.metadata == rec.metadata
        assert lazy.provenance.extra == {"custom": 3}
        loaded = lazy.load()
    assert not loaded.is_lazy
    for name in rec:
        assert_signals_equal(rec[name], loaded[name])


def test_save_is_atomic_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    rec = make_recording()
    target = tmp_path / "out.h5"
    calls = []

    def failing(parent, name, signal):
        calls.append(name)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return original(parent, name, signal)

    original = storage.write_signal
    monkeypatch.setattr("neurofm.data.recording.write_signal", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        rec.save(target)
    assert os.listdir(tmp_path) == []
    # An earlier complete file is not clobbered by a failed rewrite.
    monkeypatch.setattr("neurofm.data.recording.write_signal", original)
    rec.save(target)
    before = target.read_bytes()
    calls.clear()
    monkeypatch.setattr("neurofm.data.recording.write_signal", failing)
    with pytest.raises(RuntimeError):
        rec.save(target)
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["out.h5"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start=st.floats(-5.0, DURATION + 5.0, allow_nan=False),
    length=st.one_of(st.just(0.0), st.floats(0.0, 8.0, allow_nan=False)),
)
def test_lazy_window_equals_eager_window(saved, start, length):
    rec, path = saved
    with Recording.open(path) as lazy:
        a = rec.window(start, start + length)
        b = lazy.window(start, start + length)
    assert b.absolute_start == start and b.duration == pytest.approx(length)
    for name in rec:
        assert_signals_equal(a[name], b[name])
    # and both agree with a brute-force selection on the full arrays
    t = rec.spikes.timestamps
    np.testing.assert_array_equal(
        a.spikes.timestamps, t[(t >= start) & (t < start + length)] - start
    )


def test_window_at_exact_spike_times(saved):
    rec, path = saved
    t = rec.spikes.timestamps
    a, b = float(t[100]), float(t[400])
    with Recording.open(path) as lazy:
        win = lazy.window(a, b)
    assert len(win.spikes) == 300
    assert win.spikes.timestamps[0] == 0.0


def test_window_of_window_keeps_absolute_start(saved):
    rec, _ = saved
    inner = rec.window(10.0, 20.0).window(2.0, 3.0)
    assert inner.absolute_start == 12.0
    np.testing.assert_allclose(
        inner.spikes.timestamps, rec.window(12.0, 13.0).spikes.timestamps, atol=1e-12
    )


class CountingDataset:
    """Wraps an h5py dataset and counts the elements read through it."""

    def __init__(self, ds):
        self.ds, self.elements = ds, 0
        self.shape, self.dtype = ds.shape, ds.dtype

    def __getitem__(self, key):
        out = self.ds[key]
        self.elements += np.size(out)
        return out


def test_lazy_window_reads_only_its_span(tmp_path):
    """A 1 s window of a 1 h recording reads a few seconds of spikes, not the recording."""
    rng = np.random.default_rng(1)
    n = 3600 * 200
    rec = Recording(
        "long",
        {
            "spikes": Spikes(
                np.sort(rng.uniform(0, 3600, n)),
                rng.integers(0, 20, n),
                list("abcdefghijklmnopqrst"),
            )
        },
    )
    rec.save(tmp_path / "long.h5")
    with Recording.open(tmp_path / "long.h5") as lazy:
        events = lazy.spikes._events
        counting = CountingDataset(events.timestamps)
        events.timestamps = counting
        for start in rng.uniform(0, 3599, 50):
            lazy.window(start, start + 1.0)
    # ~200 spikes per second; the 1 s index grid means at most ~3 s are read per window.
    assert counting.elements < 50 * 200 * 3.5


def test_open_rejects_foreign_files_with_clear_errors(tmp_path):
    with pytest.raises(ReaderError, match="no such recording file"):
        Recording.open(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ReaderError, match=r"text\.h5: not a readable HDF5 file"):
        Recording.open(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something"
    with pytest.raises(ReaderError, match=r"other\.h5: not a neurofm recording"):
        Recording.open(tmp_path / "other.h5")


def test_recording_validation_and_access():
    rec = make_recording()
    assert rec.spikes is rec["spikes"]
    with pytest.raises(KeyError, match="has no signal 'lfp'"):
        rec["lfp"]
    with pytest.raises(AttributeError, match="lfp"):
        rec.lfp  # noqa: B018
    with pytest.raises(InvalidDataError, match="recording.id"):
        Recording("a/b", {})
    with pytest.raises(InvalidDataError, match="signal 'x' is a list"):
        Recording("a", {"x": [1, 2]})
    assert Recording("a", {"t": Intervals([0.0], [7.5])}).duration == 7.5


def test_summary_describes_signals(saved):
    rec, path = saved
    with Recording.open(path) as lazy:
        summary = lazy.summary()
    assert summary["signals"]["spikes"]["n_spikes"] == len(rec.spikes)
    assert summary["signals"]["spikes"]["n_units"] == 20
    assert summary["signals"]["hand_vel"]["rate"] == 100.0
    assert summary["signals"]["trials"]["columns"] == ["go_cue_time", "target"]
    assert summary["provenance"]["sha256"] == "ab" * 32


def test_closers_and_with_signals_hand_over_the_files(saved):
    rec, path = saved
    calls: list[str] = []
    lazy = Recording.open(path)
    lazy.add_closer(lambda: calls.append("first"))
    lazy.add_closer(lambda: calls.append("second"))
    extra = Intervals([1.0], [2.0], name="train_domain")
    out = lazy.with_signals({"train_domain": extra})
    assert out["train_domain"] is extra and out.spikes is lazy.spikes
    assert (out.id, out.duration, out.metadata) == (lazy.id, lazy.duration, lazy.metadata)
    lazy.close()  # handed over: nothing to release here, the file stays readable
    assert calls == []
    np.testing.assert_array_equal(
        out.spikes.window(0.0, 1.0).timestamps, rec.spikes.window(0.0, 1.0).timestamps
    )
    out.close()
    assert calls == ["second", "first"]  # last registered, first called; once
    out.close()
    assert calls == ["second", "first"]
    assert "train_domain" not in lazy and out._file is None


def test_a_lazy_interval_table_gives_the_same_dataframe(saved):
    rec, path = saved
    import pandas as pd

    with Recording.open(path) as lazy:
        for name, signal in rec.signals.items():
            if signal.kind == "intervals":
                pd.testing.assert_frame_equal(lazy[name].to_dataframe(), signal.to_dataframe())
