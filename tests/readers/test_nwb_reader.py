"""Tests of neurofm.readers.nwb.read_nwb and of `neurofm ingest` on good and bad NWB files.

Ground truth is what pynwb (or h5py) reads from the file itself, never neurofm's own output.
"""

from __future__ import annotations

import gc
import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import nwb_factory as fac
import pytest

import neurofm
import neurofm.readers.nwb as nwb_reader
from neurofm.cli import main
from neurofm.data import Intervals, IrregularSeries, Recording, RegularSeries, Spikes
from neurofm.data.storage import LazySpikes
from neurofm.errors import InvalidDataError, NeuroFMError, ReaderError
from neurofm.readers.nwb import default_recording_id, read_nwb
from neurofm.synthetic.reaching import generate_reaching_dataset

SMALL = {"n_trials": 10, "n_units_range": (50, 60), "progress": False}

# pynwb itself warns when it reads the series whose timestamps were cut short on purpose.
pytestmark = pytest.mark.filterwarnings(
    "ignore:TimeSeries 'cursor_pos'.*does not match:UserWarning"
)


@pytest.fixture(scope="session")
def reaching(tmp_path_factory) -> list[Path]:
    """Two small synthetic sessions (one subject), as NWB files."""
    out = tmp_path_factory.mktemp("reader_reaching")
    infos = generate_reaching_dataset(out, n_subjects=1, n_sessions=2, seed=11, **SMALL)
    return [info.path for info in infos]


@pytest.fixture(scope="session")
def good_nwb(reaching) -> Path:
    return reaching[0]


@pytest.fixture(scope="session")
def truth(reaching) -> dict[Path, dict]:
    return {p: fac.read_with_pynwb(p) for p in reaching}


@pytest.fixture(scope="session")
def in_memory(reaching) -> dict[Path, Recording]:
    return {p: read_nwb(p) for p in reaching}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def assert_columns_equal(a: dict, b: dict, where: str) -> None:
    assert sorted(a) == sorted(b), where
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        assert x.shape == y.shape, f"{where}.{key}"
        if x.dtype == object or y.dtype == object or x.dtype.kind in "US":
            assert [str(v) for v in x] == [str(v) for v in y], f"{where}.{key}"
        else:
            np.testing.assert_array_equal(x, y, err_msg=f"{where}.{key}")
            assert x.dtype.kind == y.dtype.kind, f"{where}.{key}"


def assert_recordings_equal(a: Recording, b: Recording) -> None:
    """Every field and every array of two recordings equal (lazy ones are loaded)."""
    assert a.id == b.id
    assert a.duration == b.duration
    assert a.absolute_start == b.absolute_start
    assert a.metadata == b.metadata
    assert a.provenance == b.provenance
    assert sorted(a.signals) == sorted(b.signals)  # HDF5 lists groups by name
    for name in a.signals:
        x, y = a[name].load(), b[name].load()
        assert type(x) is type(y), name
        if isinstance(x, Spikes):
            np.testing.assert_array_equal(x.timestamps, y.timestamps)
            np.testing.assert_array_equal(x.unit_index, y.unit_index)
            assert x.timestamps.dtype == y.timestamps.dtype == np.float64
            assert x.unit_index.dtype == y.unit_index.dtype
            assert list(x.units.ids) == list(y.units.ids)
            assert_columns_equal(x.units.columns, y.units.columns, f"{name}.units")
        elif isinstance(x, RegularSeries):
            np.testing.assert_array_equal(x.data, y.data)
            assert x.data.dtype == y.data.dtype
            assert (x.rate, x.start, x.unit) == (y.rate, y.start, y.unit)
            assert list(x.channels) == list(y.channels)
        elif isinstance(x, IrregularSeries):
            np.testing.assert_array_equal(x.timestamps, y.timestamps)
            np.testing.assert_array_equal(x.values, y.values)
            assert x.unit == y.unit
            assert list(x.channels) == list(y.channels)
        else:
            assert isinstance(x, Intervals)
            np.testing.assert_array_equal(x.start, y.start)
            np.testing.assert_array_equal(x.end, y.end)
            assert (x.labels is None) == (y.labels is None)
            if x.labels is not None:
                assert list(x.labels) == list(y.labels)
            assert tuple(x.time_columns) == tuple(y.time_columns)
            assert_columns_equal(x.columns, y.columns, name)


def stage_dirs(folder: Path) -> list[Path]:
    return sorted(folder.glob(".neurofm-stage-*"))


def all_files(folder: Path) -> set[str]:
    """Every entry below ``folder`` (hidden ones included), relative."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


# --------------------------------------------------------------------------------------------
# 1. NWB -> Recording, against pynwb
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1])
def test_spikes_and_units_match_pynwb(reaching, truth, in_memory, index):
    path = reaching[index]
    t, rec = truth[path], in_memory[path]
    spikes = rec.spikes
    assert isinstance(spikes, Spikes)
    n_units = len(t["unit_ids"])
    assert list(spikes.units.ids) == [str(i) for i in t["unit_ids"]]
    assert len(spikes) == sum(len(s) for s in t["spike_times"]) == fac.count_spikes(path)
    # one globally sorted stream ...
    assert np.all(np.diff(spikes.timestamps) >= 0)
    assert spikes.unit_index.min() == 0 and spikes.unit_index.max() == n_units - 1
    # ... whose per-unit trains are exactly pynwb's
    for u in range(n_units):
        np.testing.assert_array_equal(
            spikes.timestamps[spikes.unit_index == u], t["spike_times"][u], err_msg=f"unit {u}"
        )
    np.testing.assert_array_equal(spikes.counts(), [len(s) for s in t["spike_times"]])
    cols = spikes.units.columns
    assert list(cols["area"]) == list(t["location"])
    assert set(cols["area"]) <= {"M1", "PMd"}
    np.testing.assert_array_equal(cols["electrode"], t["electrode"])
    assert list(cols["electrode_group"]) == list(t["group_name"])
    # obs_intervals: one [0, duration] row per unit, tagged with its unit
    obs = rec["obs_intervals"]
    expected = np.concatenate(t["obs_intervals"])
    order = np.argsort(expected[:, 0], kind="stable")
    np.testing.assert_array_equal(obs.start, expected[order, 0])
    np.testing.assert_array_equal(obs.end, expected[order, 1])
    np.testing.assert_array_equal(np.sort(obs.columns["unit_index"]), np.arange(n_units))


@pytest.mark.parametrize("index", [0, 1])
def test_behaviour_and_trials_match_pynwb(reaching, truth, in_memory, index):
    path = reaching[index]
    t, rec = truth[path], in_memory[path]
    for name in ("hand_pos", "hand_vel"):
        sig, ref = rec[name], t["series"][name]
        assert isinstance(sig, RegularSeries), name
        np.testing.assert_array_equal(sig.data, ref["data"])
        assert sig.rate == ref["rate"] == 200.0
        assert sig.start == ref["starting_time"] == 0.0
        assert sig.unit == ref["unit"]
    assert list(rec.hand_pos.channels) == ["x", "y"]  # SpatialSeries
    assert list(rec.hand_vel.channels) == ["x", "y"]  # a TimeSeries named as a velocity
    assert list(rec.cursor_pos.channels) == ["x", "y"]
    cursor, ref = rec["cursor_pos"], t["series"]["cursor_pos"]
    assert isinstance(cursor, IrregularSeries)
    np.testing.assert_array_equal(cursor.timestamps, ref["timestamps"])
    np.testing.assert_array_equal(cursor.values, ref["data"])
    assert cursor.unit == "meters"

    trials, ref = rec["trials"], t["trials"]
    assert isinstance(trials, Intervals)
    np.testing.assert_array_equal(trials.start, ref["start_time"])
    np.testing.assert_array_equal(trials.end, ref["stop_time"])
    assert len(trials) == SMALL["n_trials"]
    other = [c for c in ref if c not in ("start_time", "stop_time")]
    assert sorted(trials.columns) == sorted(other)
    for col in other:
        if ref[col].dtype.kind in "OUS":
            assert [str(v) for v in trials.columns[col]] == [str(v) for v in ref[col]], col
        else:
            np.testing.assert_array_equal(trials.columns[col], ref[col], err_msg=col)
    assert set(trials.time_columns) == {c for c in other if c.endswith("_time")}
    assert set(trials.time_columns) == {
        "target_on_time",
        "go_cue_time",
        "move_onset_time",
        "move_end_time",
    }
    assert trials.columns["is_success"].dtype == bool
    assert set(trials.columns["split"]) <= {"train", "valid", "test"}


@pytest.mark.parametrize("index", [0, 1])
def test_metadata_and_provenance(reaching, truth, in_memory, index):
    path = reaching[index]
    t, rec = truth[path], in_memory[path]
    assert rec.id == path.name.removesuffix("_ecephys.nwb")
    meta = rec.metadata
    assert meta.subject_id == t["subject_id"] == "S0"
    assert meta.session_id == t["session_id"]
    assert meta.species == t["species"] == "Macaca mulatta"
    assert (meta.sex, meta.age) == (t["sex"], t["age"])
    assert meta.session_start_time == t["session_start_time"].isoformat()
    assert (meta.institution, meta.lab) == (t["institution"], t["lab"])
    assert meta.description == t["session_description"]
    assert meta.modality == "ecephys"
    prov = rec.provenance
    assert prov.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov.source_path == str(path.resolve())
    assert prov.reader == "neurofm.readers.nwb"
    assert prov.neurofm_version == neurofm.__version__
    assert prov.extra == {"nwb_identifier": t["identifier"]}
    # duration: the latest time of any signal (behaviour runs one sample past the last spike)
    latest = max(rec.hand_pos.end, rec.spikes.timestamps[-1], rec.trials.end.max())
    assert rec.duration == latest


def test_recording_id_and_sha256_arguments(good_nwb):
    rec = read_nwb(good_nwb, recording_id="custom", sha256="f" * 64)
    assert rec.id == "custom"
    assert rec.provenance.sha256 == "f" * 64


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sub-S0_ses-1_ecephys.nwb", "sub-S0_ses-1"),
        ("sub-S0_ses-20240304_ecephys.nwb", "sub-S0_ses-20240304"),
        ("sub-S0_ses-1.nwb", "sub-S0_ses-1"),
        ("session_7.nwb", "session_7"),
        ("plain.nwb", "plain"),
    ],
)
def test_default_recording_id(name, expected):
    assert default_recording_id(Path(name)) == expected


def test_conversion_offset_containers_epochs_and_ties(tmp_path):
    """What the synthetic files do not exercise: NWB conversion/offset, series inside a
    BehavioralTimeSeries container, two series of the same name, epoch tags, equal spike times."""
    from pynwb import TimeSeries
    from pynwb.behavior import BehavioralTimeSeries

    nwb = fac.new_nwbfile()
    nwb.add_unit(spike_times=[0.5, 1.0, 2.0])
    nwb.add_unit(spike_times=[0.25, 1.0])
    module = nwb.create_processing_module(name="behavior", description="b")
    raw = np.arange(12, dtype=np.int16).reshape(6, 2)
    module.add(
        TimeSeries(
            name="pressure",
            data=raw,
            unit="Pa",
            rate=10.0,
            starting_time=1.5,
            conversion=2.0,
            offset=0.5,
        )
    )
    container = BehavioralTimeSeries(name="licks")
    container.add_timeseries(
        TimeSeries(name="lick", data=np.ones(4), unit="a.u.", timestamps=[0.1, 0.2, 0.4, 0.8])
    )
    module.add(container)
    other = nwb.create_processing_module(name="other", description="o")
    other.add(TimeSeries(name="pressure", data=np.full(3, 7.0), unit="Pa", rate=1.0))
    nwb.add_epoch(start_time=1.0, stop_time=2.0, tags=["run"])
    nwb.add_epoch(start_time=0.0, stop_time=1.0, tags=["rest", "dark"])
    path = fac.write(tmp_path / "misc.nwb", nwb)

    rec = read_nwb(path)
    assert rec.id == "misc"
    np.testing.assert_array_equal(rec.spikes.timestamps, [0.25, 0.5, 1.0, 1.0, 2.0])
    np.testing.assert_array_equal(rec.spikes.unit_index, [1, 0, 0, 1, 0])  # ties: unit order
    pressure = rec["pressure"]
    np.testing.assert_array_equal(pressure.data, raw * 2.0 + 0.5)
    assert (pressure.rate, pressure.start, pressure.unit) == (10.0, 1.5, "Pa")
    np.testing.assert_array_equal(rec["other_pressure"].data[:, 0], [7.0, 7.0, 7.0])
    lick = rec["lick"]
    assert isinstance(lick, IrregularSeries)
    np.testing.assert_array_equal(lick.timestamps, [0.1, 0.2, 0.4, 0.8])
    epochs = rec["epochs"]
    np.testing.assert_array_equal(epochs.start, [0.0, 1.0])  # sorted by start
    assert list(epochs.labels) == ["rest,dark", "run"]
    assert rec.duration == 3.0  # pressure: 1.5 s + 6 samples at 10 Hz; other: 3 s at 1 Hz


def test_require_units_false_reads_behaviour(tmp_path):
    path = fac.behavior_only(tmp_path / "beh.nwb")
    rec = read_nwb(path, require_units=False)
    assert "spikes" not in rec
    assert rec.metadata.modality == "behavior"
    assert rec.metadata.subject_id == "T0" and rec.metadata.session_id == "ses1"
    assert len(rec["hand_vel"]) == 20


# --------------------------------------------------------------------------------------------
# 1b. Recording -> HDF5 -> lazy open
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1])
def test_save_open_load_round_trip(reaching, in_memory, tmp_path, index):
    rec = in_memory[reaching[index]]
    path = rec.save(tmp_path / "rec.h5")
    assert all_files(tmp_path) == {"rec.h5"}  # no temporary left beside it
    with Recording.open(path) as lazy:
        assert lazy.is_lazy
        assert isinstance(lazy.spikes, LazySpikes)
        assert_recordings_equal(lazy, rec)  # signal by signal, loaded
        loaded = lazy.load()
        # a window read lazily equals the same window of the in-memory recording
        assert_recordings_equal(lazy.window(3.25, 9.5), rec.window(3.25, 9.5))
    assert not loaded.is_lazy
    assert_recordings_equal(loaded, rec)  # still readable after the file is closed


# --------------------------------------------------------------------------------------------
# 2. The large-file path: spikes merged block by block into a staging HDF5 file
# --------------------------------------------------------------------------------------------


def test_staged_spikes_identical_to_in_memory(good_nwb, in_memory, tmp_path, monkeypatch):
    monkeypatch.setattr(nwb_reader, "IN_MEMORY_SPIKES", 0)
    monkeypatch.setattr(nwb_reader, "BLOCK_SPIKES", 5000)
    stage = tmp_path / "stage"
    stage.mkdir()
    reported: list[int] = []
    rec = read_nwb(good_nwb, tmp_dir=stage, progress=reported.append)
    try:
        ref = in_memory[good_nwb]
        n = len(ref.spikes)
        assert n > 4 * 5000  # enough spikes for several blocks
        assert isinstance(rec.spikes, LazySpikes)
        assert len(stage_dirs(stage)) == 1  # the staging folder, beside the destination
        assert len(reported) >= 4 and sum(reported) == n  # progress once per block
        assert_recordings_equal(rec, ref)
        rec.save(tmp_path / "staged.h5")
        ref.save(tmp_path / "memory.h5")
    finally:
        rec.close()
    assert stage_dirs(stage) == []  # close() removed the staging folder
    assert list(stage.iterdir()) == []
    with (
        h5py.File(tmp_path / "staged.h5", "r") as a,
        h5py.File(tmp_path / "memory.h5", "r") as b,
    ):
        ga, gb = a["signals/spikes"], b["signals/spikes"]
        assert ga.attrs["kind"] == gb.attrs["kind"] == "spikes"
        for key in ("timestamps", "unit_index", "time_index"):
            assert ga[key].dtype == gb[key].dtype, key
            np.testing.assert_array_equal(ga[key][()], gb[key][()], err_msg=key)
        assert ga["time_index"].attrs["step"] == gb["time_index"].attrs["step"]
        assert sorted(ga["units/columns"]) == sorted(gb["units/columns"])
        assert list(ga["units/ids"].asstr()[()]) == list(gb["units/ids"].asstr()[()])
        # time_index[k] is the first spike at or after k seconds
        ts, index = gb["timestamps"][()], gb["time_index"][()]
        k = np.arange(len(index))
        np.testing.assert_array_equal(index, np.searchsorted(ts, k * 1.0, side="left"))
        assert index[-1] == n and len(index) == int(np.floor(ts[-1])) + 2
    with Recording.open(tmp_path / "staged.h5") as staged:
        assert_recordings_equal(staged, ref)


def test_staging_removed_when_recording_is_garbage_collected(good_nwb, tmp_path, monkeypatch):
    monkeypatch.setattr(nwb_reader, "IN_MEMORY_SPIKES", 0)
    monkeypatch.setattr(nwb_reader, "BLOCK_SPIKES", 5000)
    rec = read_nwb(good_nwb, tmp_dir=tmp_path)
    assert len(stage_dirs(tmp_path)) == 1
    del rec
    gc.collect()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["mismatch", "recording_id"])
def test_staging_removed_when_reading_fails(good_nwb, tmp_path, monkeypatch, bad):
    """An error after the spikes were staged (a later signal, the Recording itself) cleans up."""
    monkeypatch.setattr(nwb_reader, "IN_MEMORY_SPIKES", 0)
    monkeypatch.setattr(nwb_reader, "BLOCK_SPIKES", 5000)
    stage = tmp_path / "stage"
    stage.mkdir()
    src = make_mismatch(tmp_path) if bad == "mismatch" else good_nwb
    with pytest.raises(InvalidDataError):
        read_nwb(src, tmp_dir=stage, recording_id="a/b" if bad == "recording_id" else None)
    assert list(stage.iterdir()) == []


# --------------------------------------------------------------------------------------------
# 3. Bad input: a NeuroFMError naming the file and the problem, from read_nwb and the CLI
# --------------------------------------------------------------------------------------------


def make_not_hdf5(folder: Path) -> Path:
    path = folder / "x.nwb"
    path.write_text("this is not an HDF5 file\n")
    return path


def make_empty_file(folder: Path) -> Path:
    path = folder / "empty.nwb"
    path.write_bytes(b"")
    return path


def make_truncated(fraction: float) -> Callable[[Path, Path], Path]:
    def build(folder: Path, good: Path) -> Path:
        n = int(good.stat().st_size * fraction) if fraction < 1 else int(fraction)
        return fac.truncated_copy(good, folder / "cut.nwb", n)

    return build


def make_mismatch(folder: Path, good: Path | None = None) -> Path:
    """A synthetic session whose cursor_pos timestamps lost their last 5 entries."""
    if good is None:  # a small session of our own
        nwb = fac.new_nwbfile()
        nwb.add_unit(spike_times=np.arange(0, 60, 0.002))  # 30000 spikes: several blocks
        fac.add_behavior(nwb)
        from pynwb import TimeSeries

        nwb.processing["behavior"].add(
            TimeSeries(
                name="cursor_pos", data=np.zeros((10, 2)), unit="m", timestamps=np.arange(10.0)
            )
        )
        path = fac.write(folder / "mismatch.nwb", nwb)
    else:
        path = fac.copy(good, folder / "mismatch.nwb")
    name = "processing/behavior/cursor_pos/timestamps"
    with h5py.File(path, "r") as f:
        stamps = f[name][()]
    fac.replace_dataset(path, name, stamps[:-5])
    return path


# (id, builder(folder, good) -> path, error class, key words of the message)
BAD_INPUTS = [
    ("not_hdf5", lambda d, g: make_not_hdf5(d), ReaderError, ["not an HDF5 file"]),
    ("empty_file", lambda d, g: make_empty_file(d), ReaderError, ["not an HDF5 file"]),
    ("truncated_60pct", make_truncated(0.6), ReaderError, ["truncated or corrupt HDF5 file"]),
    ("truncated_2kib", make_truncated(2048), ReaderError, ["truncated or corrupt HDF5 file"]),
    (
        "no_units",
        lambda d, g: fac.behavior_only(d / "behaviour.nwb"),
        ReaderError,
        ["no Units table", "spike_times"],
    ),
    (
        "nan_spike_times",
        lambda d, g: fac.with_spike_trains(d / "nan.nwb", [[0.1, 0.2], [0.3, np.nan, 0.5]]),
        InvalidDataError,
        ["units.spike_times", "unit '1'", "must be finite", "nan", "spike 1"],
    ),
    (
        "negative_spike_times",
        lambda d, g: fac.with_spike_trains(d / "neg.nwb", [[0.1, 0.2], [-0.25, 0.5]]),
        InvalidDataError,
        ["units.spike_times", "unit '1'", ">= 0", "-0.25"],
    ),
    (
        "unsorted_spike_times",
        lambda d, g: fac.with_spike_trains(d / "unsorted.nwb", [[0.1, 0.2], [0.5, 0.4]]),
        InvalidDataError,
        ["units.spike_times", "unit '1'", "sorted", "0.4 < 0.5"],
    ),
    (
        "series_length_mismatch",
        lambda d, g: make_mismatch(d, g),
        InvalidDataError,
        ["processing/behavior/cursor_pos", "timestamps"],
    ),
]


def _bad_params() -> list:
    return [pytest.param(b, e, w, id=i) for i, b, e, w in BAD_INPUTS]


@pytest.mark.parametrize(("build", "error", "words"), _bad_params())
def test_bad_file_read_nwb(good_nwb, tmp_path, build, error, words):
    path = build(tmp_path, good_nwb)
    before = all_files(tmp_path)
    with pytest.raises(error) as info:
        read_nwb(path, tmp_dir=tmp_path)
    assert isinstance(info.value, NeuroFMError)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    for word in words:
        assert word in message, (word, message)
    assert "\n" not in message
    assert all_files(tmp_path) == before


def test_series_length_mismatch_counts(good_nwb, tmp_path):
    path = make_mismatch(tmp_path, good_nwb)
    with h5py.File(good_nwb, "r") as f:
        n = f["processing/behavior/cursor_pos/data"].shape[0]
    with pytest.raises(InvalidDataError) as info:
        read_nwb(path)
    assert str(info.value) == (
        f"{path}: processing/behavior/cursor_pos: data has {n} samples but timestamps has {n - 5}"
    )


def test_missing_and_folder_read_nwb(tmp_path):
    with pytest.raises(ReaderError, match="no such file"):
        read_nwb(tmp_path / "missing.nwb")
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(ReaderError) as info:
        read_nwb(empty)
    assert str(info.value) == f"{empty}: is a folder, expected an .nwb file"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("neurofm: error: ")]


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """The system temp folder, redirected to a folder the test can check is left empty."""
    folder = tmp_path / "system_tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.parametrize(("build", "error", "words"), _bad_params())
def test_bad_file_cli_ingest(
    good_nwb, tmp_path, private_tmp, monkeypatch, capsys, build, error, words
):
    # Force the staging path too, so a file that fails after its spikes were staged is covered.
    monkeypatch.setattr(nwb_reader, "IN_MEMORY_SPIKES", 0)
    monkeypatch.setattr(nwb_reader, "BLOCK_SPIKES", 5000)
    src = tmp_path / "src"
    src.mkdir()
    path = build(src, good_nwb)
    before = all_files(src)
    out = tmp_path / "catalog"
    assert main(["ingest", str(path), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    lines = error_lines(captured.err)
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"neurofm: error: {path}: ")
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "Traceback" not in captured.err
    assert "0 ingested, 0 up to date, 1 failed" in captured.out
    assert not out.exists()
    assert all_files(src) == before
    assert list(private_tmp.iterdir()) == []


def test_empty_folder_cli_ingest(tmp_path, private_tmp, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no NWB here")
    out = tmp_path / "catalog"
    assert main(["ingest", str(empty), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    (line,) = error_lines(captured.err)  # EEG users read it too: every format is named
    assert line.startswith(
        f"neurofm: error: {empty}: folder contains no recordings to ingest (.nwb,"
    )
    assert ".vhdr" in line and ".edf" in line and "NIfTI" in line and "dataset_description" in line
    assert not out.exists()
    assert all_files(tmp_path) == {"empty", "empty/notes.txt", "system_tmp"}
    assert list(private_tmp.iterdir()) == []


def test_bad_file_cli_subprocess(tmp_path):
    """The real command line: exit status 1 and one error line, no traceback."""
    import subprocess
    import sys

    bad = make_not_hdf5(tmp_path)
    out = tmp_path / "catalog"
    proc = subprocess.run(
        [sys.executable, "-m", "neurofm.cli", "ingest", str(bad), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert error_lines(proc.stderr) == [
        f"neurofm: error: {bad}: not an HDF5 file (NWB files must use the HDF5 backend)"
    ]
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    assert all_files(tmp_path) == {"x.nwb"}


def test_folder_with_good_and_bad_files(reaching, tmp_path, private_tmp, monkeypatch, capsys):
    monkeypatch.setattr(nwb_reader, "IN_MEMORY_SPIKES", 0)  # stage spikes: check clean-up too
    monkeypatch.setattr(nwb_reader, "BLOCK_SPIKES", 5000)
    src = tmp_path / "dandiset"
    (src / "sub-S0").mkdir(parents=True)
    good = fac.copy(reaching[0], src / "sub-S0" / reaching[0].name)
    bad = fac.with_spike_trains(src / "sub-S0" / "sub-S0_ses-bad_ecephys.nwb", [[0.1, np.nan]])
    out = tmp_path / "catalog"
    rec_id = good.name.removesuffix("_ecephys.nwb")

    assert main(["ingest", str(src), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert f"ingested  {good} -> {rec_id}" in captured.out
    assert "1 ingested, 0 up to date, 1 failed" in captured.out
    lines = error_lines(captured.err)
    assert len(lines) == 1 and lines[0].startswith(f"neurofm: error: {bad}: ")
    assert "must be finite" in lines[0]
    assert all_files(out) == {"catalog.sqlite", f"{rec_id}.h5"}
    assert list(private_tmp.iterdir()) == []
    inode = (out / f"{rec_id}.h5").stat().st_ino
    with Recording.open(out / f"{rec_id}.h5") as rec:
        assert rec.provenance.sha256 == hashlib.sha256(good.read_bytes()).hexdigest()
        assert len(rec.spikes) == fac.count_spikes(good)

    # again: the good file is up to date (same sha256), the bad one still fails
    assert main(["ingest", str(src), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert f"skipped   {good} (up to date: {rec_id})" in captured.out
    assert "0 ingested, 1 up to date, 1 failed" in captured.out
    assert len(error_lines(captured.err)) == 1
    assert (out / f"{rec_id}.h5").stat().st_ino == inode  # not rewritten

    # --force re-ingests it (atomic rename: a new file)
    assert main(["ingest", str(src), "--out", str(out), "--force"]) == 1
    captured = capsys.readouterr()
    assert f"ingested  {good} -> {rec_id}" in captured.out
    assert "1 ingested, 0 up to date, 1 failed" in captured.out
    assert (out / f"{rec_id}.h5").stat().st_ino != inode
    assert all_files(out) == {"catalog.sqlite", f"{rec_id}.h5"}  # staged next to it, then removed
    assert list(private_tmp.iterdir()) == []

    # without the bad file: exit status 0
    bad.unlink()
    assert main(["ingest", str(src), "--out", str(out)]) == 0
    assert "0 ingested, 1 up to date, 0 failed" in capsys.readouterr().out

    # a changed source (new sha256) is no longer up to date
    with h5py.File(good, "a") as f:
        f.attrs["touched"] = 1
    assert main(["ingest", str(src), "--out", str(out)]) == 0
    assert "1 ingested, 0 up to date, 0 failed" in capsys.readouterr().out
    with Recording.open(out / f"{rec_id}.h5") as rec:
        assert rec.provenance.sha256 == hashlib.sha256(good.read_bytes()).hexdigest()


def test_two_sources_with_the_same_id_are_not_merged_silently(tmp_path, capsys):
    from neurofm.cli import main
    from neurofm.synthetic.reaching import generate_reaching_dataset

    src = tmp_path / "src"
    generate_reaching_dataset(
        src, n_subjects=1, n_sessions=2, n_trials=4, n_units_range=(50, 52), progress=False
    )
    first, second = sorted(src.rglob("*.nwb"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first.rename(tmp_path / "a" / "x.nwb")
    second.rename(tmp_path / "b" / "x.nwb")
    out = tmp_path / "cat"
    assert main(["ingest", str(tmp_path / "a"), "--out", str(out)]) == 0
    assert main(["ingest", str(tmp_path / "b"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "recording id 'x' is already taken" in err and str(tmp_path / "b" / "x.nwb") in err


def test_compressed_spike_times_staged_equal_in_memory(tmp_path, monkeypatch):
    """gzip-chunked spike_times (common on DANDI) take the copy-once path and merge the same."""
    rng = np.random.default_rng(5)
    trains = [np.sort(rng.uniform(0, 30, rng.integers(200, 3000))).tolist() for _ in range(12)]
    plain = fac.with_spike_trains(tmp_path / "plain.nwb", trains)
    packed = tmp_path / "packed.nwb"
    fac.copy(plain, packed)
    with h5py.File(packed, "r+") as f:
        data = f["units/spike_times"][()]
        attrs = dict(f["units/spike_times"].attrs)
        del f["units/spike_times"]
        ds = f.create_dataset(
            "units/spike_times", data=data, chunks=(1000,), compression="gzip", shuffle=True
        )
        ds.attrs.update(attrs)
    ref = read_nwb(plain)
    monkeypatch.setattr(nwb_reader, "IN_MEMORY_SPIKES", 0)
    monkeypatch.setattr(nwb_reader, "BLOCK_SPIKES", 2000)
    staged = read_nwb(packed, tmp_dir=tmp_path)
    try:
        assert isinstance(staged.spikes, LazySpikes)
        np.testing.assert_array_equal(staged.spikes.load().timestamps, ref.spikes.timestamps)
        np.testing.assert_array_equal(staged.spikes.load().unit_index, ref.spikes.unit_index)
    finally:
        staged.close()
