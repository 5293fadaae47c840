"""neurofm.writers.nwb: write_nwb round trips through read_nwb, nwbinspector finds nothing
critical, writes are atomic, and add_predictions puts predicted series into a copy of the source
NWB file that pynwb (and read_nwb) read back."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from neurofm.data import Intervals, IrregularSeries, Recording, RegularSeries, Spikes, Units
from neurofm.errors import InvalidDataError, ReaderError
from neurofm.readers.nwb import read_nwb
from neurofm.writers import add_predictions, write_nwb


@pytest.fixture(scope="module")
def source_nwb(tmp_path_factory) -> Path:
    """A small synthetic reaching session, written by the generator with pynwb."""
    from neurofm.synthetic.reaching import simulate_session, write_session_nwb

    path = tmp_path_factory.mktemp("nwb") / "sub-S0_ses-1_ecephys.nwb"
    write_session_nwb(path, simulate_session(0, 0, 0, n_trials=6, n_units_range=(8, 12)))
    return path


def built_recording() -> Recording:
    """A recording NWB has no field for much of: string unit ids, channel names, labels with
    commas, a non-``_time`` time column, float32 EEG with positions, domains, extra metadata."""
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0, 10, 300))
    units = Units(
        ["elec1/a", "elec1/b", "elec7/a"],
        {"area": ["M1", "M1", "PMd"], "quality": [0.9, 0.5, 0.7], "good": [True, False, True]},
    )
    eeg = RegularSeries(
        rng.standard_normal((500, 3)).astype(np.float32),
        rate=50.0,
        start=0.5,
        channels=["Fz", "Cz", "Pz"],
        name="eeg",
        unit="V",
        channel_info={"type": ["eeg"] * 3, "x": [0.0, 0.01, 0.02], "bad": [False, True, False]},
    )
    return Recording(
        "built",
        {
            "spikes": Spikes(times, rng.integers(0, 3, len(times)), units),
            "eeg": eeg,
            "gaze": IrregularSeries(
                np.sort(rng.uniform(0, 10, 40)), rng.random((40, 2)), ["h", "v"], "gaze", "deg"
            ),
            "trials": Intervals(
                [0.0, 3.0, 6.0],
                [2.5, 5.5, 9.0],
                labels=["left", "right,fast", ""],
                columns={"cue_at": [0.5, 3.5, 6.5], "kind": ["a", "b", "a"]},
                time_columns=["cue_at"],
                name="trials",
            ),
            "train_domain": Intervals([0.0, 6.0], [5.5, 9.0], name="train_domain"),
        },
        duration=12.0,
        metadata={
            "subject_id": "P1",
            "species": "Homo sapiens",
            "age": "P30Y",  # sex unknown: written as NWB's "U", read back as ""
            "modality": "eeg",
            "extra": {"line_freq": 50.0},
        },
        provenance={"source_path": "/data/p1.vhdr", "sha256": "ab" * 32, "reader": "test"},
    )


def assert_same_recording(back: Recording, rec: Recording) -> None:
    """Every field of every signal, the metadata and the duration are equal."""
    assert back.id == rec.id
    assert back.duration == pytest.approx(rec.duration)
    assert dataclasses.asdict(back.metadata) == dataclasses.asdict(rec.metadata)
    assert set(back) == set(rec)
    for name in rec:
        a, b = rec[name].load(), back[name].load()
        assert type(b) is type(a), name
        if isinstance(a, Spikes):
            np.testing.assert_array_equal(b.timestamps, a.timestamps)
            np.testing.assert_array_equal(b.unit_index, a.unit_index)
            assert list(b.units.ids) == list(a.units.ids)
            assert set(b.units.columns) == set(a.units.columns)
            for key, col in a.units.columns.items():
                assert list(b.units.columns[key]) == list(col), key
        elif isinstance(a, RegularSeries):
            np.testing.assert_array_equal(b.data, a.data)
            assert b.data.dtype == a.data.dtype
            assert (b.rate, b.start, b.unit) == (a.rate, a.start, a.unit)
            assert list(b.channels) == list(a.channels)
            assert {k: list(v) for k, v in b.channel_info.items()} == {
                k: list(v) for k, v in a.channel_info.items()
            }
        elif isinstance(a, IrregularSeries):
            np.testing.assert_array_equal(b.timestamps, a.timestamps)
            np.testing.assert_array_equal(b.values, a.values)
            assert (list(b.channels), b.unit) == (list(a.channels), a.unit)
        else:
            np.testing.assert_array_equal(b.start, a.start)
            np.testing.assert_array_equal(b.end, a.end)
            assert (None if b.labels is None else list(b.labels)) == (
                None if a.labels is None else list(a.labels)
            )
            assert set(b.columns) == set(a.columns) and b.time_columns == a.time_columns
            for key, col in a.columns.items():
                assert list(b.columns[key]) == list(col), f"{name}.{key}"


def critical_findings(path: Path) -> list[str]:
    from nwbinspector import Importance, inspect_nwbfile

    return [
        f"{m.check_function_name}: {m.message}"
        for m in inspect_nwbfile(nwbfile_path=str(path))
        if m.importance == Importance.CRITICAL
    ]


def test_an_nwb_session_round_trips(source_nwb, tmp_path):
    rec = read_nwb(source_nwb)
    assert {"spikes", "obs_intervals", "hand_pos", "hand_vel", "cursor_pos", "trials"} <= set(rec)
    out = write_nwb(rec, tmp_path / f"{rec.id}.nwb")
    back = read_nwb(out)
    assert_same_recording(back, rec)
    # the re-read points at the new file; the original provenance travels with it
    assert back.provenance.source_path == str(out.resolve())
    assert back.provenance.extra["derived_from"] == dataclasses.asdict(rec.provenance)
    assert critical_findings(out) == []


def test_a_built_recording_round_trips_with_what_nwb_has_no_field_for(tmp_path):
    rec = built_recording()
    out = write_nwb(rec, tmp_path / "built.nwb")
    back = read_nwb(out)
    assert_same_recording(back, rec)
    assert back.provenance.extra["derived_from"]["sha256"] == "ab" * 32
    assert critical_findings(out) == []
    # string unit ids that are not integers ride in a column pynwb itself sees
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(out), "r") as io:
        units = io.read().units.to_dataframe()
    assert list(units["neurofm_unit_id"]) == ["elec1/a", "elec1/b", "elec7/a"]


def test_a_recording_without_spikes_round_trips(tmp_path):
    rec = built_recording()
    eeg_only = Recording(
        "eeg_only",
        {k: rec[k] for k in ("eeg", "trials")},
        rec.duration,
        rec.metadata,
        rec.provenance,
    )
    out = write_nwb(eeg_only, tmp_path / "eeg_only.nwb")
    with pytest.raises(ReaderError, match="no Units table"):
        read_nwb(out)  # spiking data is what read_nwb expects by default
    assert_same_recording(read_nwb(out, require_units=False), eeg_only)


def test_the_reader_looks_for_the_writers_marker():
    from neurofm.readers import nwb as reader
    from neurofm.writers import nwb as writer

    assert reader.EXPORT_MARKER == writer.EXPORT_MARKER


def test_a_lazy_recording_is_exported_too(source_nwb, tmp_path):
    rec = read_nwb(source_nwb)
    rec.save(tmp_path / "rec.h5")
    with Recording.open(tmp_path / "rec.h5") as lazy:
        out = write_nwb(lazy, tmp_path / f"{rec.id}.nwb")
    assert_same_recording(read_nwb(out), rec)


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import pynwb

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pynwb.NWBHDF5IO, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        write_nwb(built_recording(), tmp_path / "x.nwb")
    assert list(tmp_path.iterdir()) == []


def test_two_spike_signals_are_refused_by_name(tmp_path):
    rec = built_recording()
    two = rec.with_signals({"more_spikes": rec["spikes"]})
    with pytest.raises(InvalidDataError, match=r"one units table.*spikes, more_spikes"):
        write_nwb(two, tmp_path / "x.nwb")
    assert not (tmp_path / "x.nwb").exists()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_predictions_go_into_a_copy_of_the_source(source_nwb, tmp_path):
    from pynwb import NWBHDF5IO

    before = _sha(source_nwb)
    rec = read_nwb(source_nwb)
    truth = rec["hand_vel"]
    pred = RegularSeries(
        truth.data[::4] * 0.9, truth.rate / 4, truth.start, truth.channels, "hand_vel", truth.unit
    )
    out = add_predictions(
        source_nwb,
        tmp_path / "with_pred.nwb",
        {"hand_vel": pred},
        description="POYO tiny, test split",
    )
    assert _sha(source_nwb) == before  # the source is untouched
    with NWBHDF5IO(str(out), "r") as io:
        nwb = io.read()
        module = nwb.processing["neurofm"]
        assert module.description == "POYO tiny, test split"
        series = module["hand_vel"]
        np.testing.assert_array_equal(series.data[()], pred.data)
        assert (series.rate, series.starting_time, series.unit) == (pred.rate, pred.start, "m/s")
        assert len(nwb.units) == len(rec.spikes.units) and len(nwb.trials) == len(rec.trials)
    back = read_nwb(out)
    # everything recorded is still there, and the prediction beside it
    np.testing.assert_array_equal(back["hand_vel"].data, truth.data)
    np.testing.assert_array_equal(back["neurofm_hand_vel"].data, pred.data)
    np.testing.assert_array_equal(back.spikes.timestamps, rec.spikes.timestamps)
    assert critical_findings(out) == []


def test_add_predictions_refuses_bad_requests(source_nwb, tmp_path):
    pred = {"y": RegularSeries(np.zeros((5, 1)), 10.0)}
    with pytest.raises(InvalidDataError, match="must differ from the source"):
        add_predictions(source_nwb, source_nwb, pred)
    with pytest.raises(InvalidDataError, match=r"processing module 'behavior' already exists"):
        add_predictions(source_nwb, tmp_path / "x.nwb", pred, name="behavior")
    with pytest.raises(InvalidDataError, match=r"predictions\['y'\]: expected a RegularSeries"):
        add_predictions(source_nwb, tmp_path / "x.nwb", {"y": np.zeros(5)})
    bad = tmp_path / "bad.nwb"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ReaderError, match=r"bad.nwb: cannot read as NWB"):
        add_predictions(bad, tmp_path / "x.nwb", pred)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.nwb"]
