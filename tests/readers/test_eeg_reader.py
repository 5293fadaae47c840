"""Tests of neurofm.readers.eeg: read_eeg on every format MNE's exporters write, to_mne, the MNE
preprocessing chain, and bad EEG input through the API and the CLI.

Ground truth is the synthetic run itself (the samples, channels and annotations that were
exported) and what MNE reads from the exported file, never neurofm's own output.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import mne
import numpy as np
import pytest

from neurofm.cli import main
from neurofm.data import Recording
from neurofm.errors import InvalidDataError, ReaderError, SpecError
from neurofm.readers.eeg import EEGPreprocessing, load_preprocessing, read_eeg
from neurofm.synthetic.eeg_fmri import make_parcellation, simulate_run, to_raw
from neurofm.writers import to_mne

FORMATS = {  # format -> (extension, relative precision of a sample, or None for 16-bit EDF)
    "brainvision": (".vhdr", 2.4e-7),  # float32: two float32 epsilons of the channel's peak
    "eeglab": (".set", 2.4e-7),
    "fif": ("_raw.fif", 2.4e-7),
    "edf": (".edf", None),
}


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run():
    """A 40 s synthetic run (20 volumes): 30 EEG + EOG + ECG at 250 Hz, with markers."""
    return simulate_run(make_parcellation(8, 6.0, seed=3), duration=40.0, seed=3)


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory) -> dict[str, Path]:
    """The run written by MNE's exporters (and FIF by Raw.save)."""
    folder = tmp_path_factory.mktemp("eeg_export")
    raw = to_raw(run)
    paths = {}
    for fmt, (ext, _) in FORMATS.items():
        path = folder / f"run{ext}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "converting to float32" and friends
            if fmt == "fif":
                raw.save(path, overwrite=True, verbose=False)
            else:
                mne.export.export_raw(path, raw, fmt=fmt, overwrite=True, verbose=False)
        paths[fmt] = path
    return paths


# --------------------------------------------------------------------------------------------
# round trips: exporter -> read_eeg -> Recording -> to_mne
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_round_trip_keeps_data_channels_rate_events(fmt, run, exported, tmp_path):
    path = exported[fmt]
    rec = read_eeg(path)
    # through the HDF5 file too: what a catalog holds must convert back the same
    rec.save(tmp_path / "r.h5")
    with Recording.open(tmp_path / "r.h5") as lazy:
        back = to_mne(lazy)  # a lazily opened recording converts too
    n = len(run.eeg)
    data = back.get_data()
    truth = run.eeg.T
    # EDF pads the last data record with zeros: the original samples come first
    assert data.shape[1] >= n and data.shape[1] - n < run.eeg_rate
    err = np.abs(data[:, :n] - truth).max(axis=1)
    peak = np.abs(truth).max(axis=1)
    _, rel = FORMATS[fmt]
    if rel is None:  # 16 bits over each channel's physical range: one LSB at most
        lsb = (truth.max(axis=1) - truth.min(axis=1)) / (2**16 - 1)
        assert (err <= lsb).all(), (err / lsb).max()
    else:
        assert (err <= rel * peak).all(), (err / peak).max()
    assert back.ch_names == run.ch_names
    assert back.info["sfreq"] == run.eeg_rate
    assert back.get_channel_types() == run.ch_types  # ECG/EOG typed from their names
    # events: what MNE itself reads from the file, description for description
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # EEGLAB: MNE's head-radius guess about the montage
        ref = mne.io.read_raw(path, verbose=False)
    shift = ref.first_time if ref.annotations.orig_time is not None else 0.0
    assert list(back.annotations.description) == list(ref.annotations.description)
    np.testing.assert_allclose(back.annotations.onset, ref.annotations.onset - shift, atol=1e-9)
    np.testing.assert_allclose(back.annotations.duration, ref.annotations.duration, atol=1e-9)
    # and against the truth: every stimulus block and volume marker at its time
    np.testing.assert_allclose(rec["volumes"].start, run.volume_onsets, atol=0.5 / run.eeg_rate)
    events = rec["events"]
    # MNE marks EDF's zero-padded last record BAD_ACQ_SKIP: an annotation of the file, not ours
    stim = np.flatnonzero([not lab.startswith("BAD_") for lab in events.labels])
    assert len(stim) == len(run.events["onset"]) >= 2
    np.testing.assert_allclose(events.start[stim], run.events["onset"], atol=0.5 / run.eeg_rate)
    assert [events.labels[i].split("/")[-1] for i in stim] == list(run.events["trial_type"])


def test_recording_fields(run, exported):
    rec = read_eeg(exported["edf"])
    eeg = rec["eeg"]
    assert rec.id == "run"
    assert eeg.unit == "V" and eeg.data.dtype == np.float32 and eeg.rate == 250.0
    assert rec.duration == pytest.approx(len(eeg) / 250.0)
    info = eeg.channel_info
    assert list(info["type"]) == run.ch_types
    # EDF has no positions: the template montage gives them, in MNE's head frame (metres)
    raw = to_raw(run)
    for i, name in enumerate(run.ch_names[:30]):
        loc = raw.info["chs"][raw.ch_names.index(name)]["loc"][:3]
        np.testing.assert_allclose([info["x"][i], info["y"][i], info["z"][i]], loc, atol=1e-7)
    assert np.isnan(info["x"][30:]).all()  # EOG, ECG: no electrode position
    prov = rec.provenance
    assert prov.reader == "neurofm.readers.eeg"
    assert prov.extra["format"] == "EDF" and prov.extra["montage"] == "fsaverage_1005"
    assert prov.extra["channel_types_from_names"] == {"EOG": "eog", "ECG": "ecg"}
    assert len(prov.sha256) == 64
    assert rec.metadata.modality == "eeg"
    assert rec.metadata.extra["line_freq"] is None or rec.metadata.extra["line_freq"] == 50.0


def test_from_mne_matches_the_file_reader(run, exported):
    from neurofm.readers.eeg import from_mne

    raw = to_raw(run)
    rec = from_mne(raw, recording_id="mem", preprocessing={"resample": 125.0})
    assert raw.info["sfreq"] == 250.0  # the caller's object is not modified
    assert rec["eeg"].rate == 125.0 and rec.id == "mem"
    assert rec.provenance.extra["preprocessing"][0]["step"] == "resample"
    plain = from_mne(raw, recording_id="mem")
    from_file = read_eeg(exported["fif"])
    np.testing.assert_array_equal(plain["eeg"].data, from_file["eeg"].data)
    np.testing.assert_allclose(plain["volumes"].start, from_file["volumes"].start, atol=1e-6)


def test_stim_channel_becomes_events(tmp_path):
    """A FIF file with a trigger channel: its codes become events, the channel leaves the data."""
    info = mne.create_info(["C3", "C4", "STI 014"], 100.0, ["eeg", "eeg", "stim"])
    data = np.zeros((3, 1000))
    data[:2] = np.random.default_rng(0).standard_normal((2, 1000)) * 1e-5
    data[2, [100, 450, 800]] = [1, 2, 1]
    path = tmp_path / "trig_raw.fif"
    mne.io.RawArray(data, info, verbose=False).save(path, verbose=False)
    rec = read_eeg(path, montage=None)
    assert list(rec["eeg"].channels) == ["C3", "C4"]
    np.testing.assert_allclose(rec["events"].start, [1.0, 4.5, 8.0])
    assert list(rec["events"].labels) == ["1", "2", "1"]
    assert "volumes" not in rec
    back = to_mne(rec)
    assert list(back.annotations.description) == ["1", "2", "1"]


# --------------------------------------------------------------------------------------------
# preprocessing by MNE
# --------------------------------------------------------------------------------------------


def _power_at(x: np.ndarray, rate: float, lo: float, hi: float) -> float:
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    spec = np.abs(np.fft.rfft(x - x.mean(), axis=0)) ** 2
    return float(spec[(freqs >= lo) & (freqs <= hi)].sum())


def test_preprocessing_chain_runs_and_is_recorded(exported):
    raw_rec = read_eeg(exported["fif"])
    config = {
        "bad_channels": ["Cz"],
        "notch": [50.0],
        "l_freq": 1.0,
        "h_freq": 40.0,
        "reference": "average",
        "resample": 125.0,
    }
    rec = read_eeg(exported["fif"], preprocessing=config)
    before, after = raw_rec["eeg"], rec["eeg"]
    assert after.rate == 125.0 and len(after) == len(before) // 2
    eeg = [i for i, t in enumerate(after.channel_info["type"]) if t == "eeg"]
    x0, x1 = before.data[:, eeg].astype(float), after.data[:, eeg].astype(float)
    # notch + low-pass: the 50 Hz line noise is gone (still below the new Nyquist, 62.5 Hz)
    assert _power_at(x1[:, 0], 125.0, 49, 51) < 1e-3 * _power_at(x0[:, 0], 250.0, 49, 51)
    # high-pass: no DC or slow drift left
    assert abs(x1[:, 0].mean()) < 0.05 * x1[:, 0].std()
    # average reference: EEG channels sum to zero at every sample
    assert np.abs(x1.mean(axis=1)).max() < 1e-3 * x1.std()
    # Cz was interpolated from its neighbours: close to the real Cz in the alpha band
    cz = list(after.channels).index("Cz")
    ref0 = mne.filter.filter_data(x0.T, 250.0, 8.0, 12.0, verbose=False)
    ref0 = ref0 - ref0.mean(axis=0)
    true_cz = mne.filter.resample(ref0[cz], down=2.0, verbose=False)
    got_cz = mne.filter.filter_data(x1[:, cz], 125.0, 8.0, 12.0, verbose=False)
    assert np.corrcoef(true_cz[200:-200], got_cz[200:-200])[0, 1] > 0.8
    assert not after.channel_info["bad"][cz]  # interpolated channels are good again
    steps = rec.provenance.extra["preprocessing"]
    assert [s["step"] for s in steps] == [
        "mark_bads",
        "notch",
        "filter",
        "interpolate_bads",
        "reference",
        "resample",
    ]
    assert steps[2] == {
        "step": "filter",
        "mne": "Raw.filter",
        "l_freq": 1.0,
        "h_freq": 40.0,
        "method": "fir",
        "phase": "zero",
    }
    assert steps[5]["from_hz"] == 250.0 and steps[5]["sfreq"] == 125.0
    # events keep their times through resampling
    np.testing.assert_allclose(rec["volumes"].start, raw_rec["volumes"].start, atol=0.008)


def test_bad_channels_dropped(exported):
    rec = read_eeg(
        exported["fif"], preprocessing={"bad_channels": ["T7", "T8"], "bad_channel_action": "drop"}
    )
    assert "T7" not in rec["eeg"].channels and len(rec["eeg"].channels) == 30
    assert rec.provenance.extra["preprocessing"][-1] == {
        "step": "drop_bads",
        "mne": "Raw.drop_channels",
        "channels": ["T7", "T8"],
    }


def test_preprocessing_errors_name_file_and_field(exported):
    path = exported["fif"]
    with pytest.raises(InvalidDataError) as err:
        read_eeg(path, preprocessing={"bad_channels": ["Nope"]})
    assert str(err.value) == f"{path}: preprocessing.bad_channels: no channel 'Nope' in the file"
    with pytest.raises(InvalidDataError) as err:
        read_eeg(path, preprocessing={"h_freq": 200.0})
    assert str(err.value) == (
        f"{path}: preprocessing.h_freq: 200.0 Hz is at or above the Nyquist frequency "
        "(125 Hz at 250 Hz)"
    )
    with pytest.raises(InvalidDataError) as err:
        read_eeg(path, preprocessing={"l_freq": 30.0, "h_freq": 10.0})
    assert str(err.value) == (f"{path}: preprocessing: l_freq (30.0) must be below h_freq (10.0)")
    with pytest.raises(InvalidDataError) as err:
        read_eeg(path, preprocessing={"notch_freq": [50]})
    assert str(err.value) == f"{path}: preprocessing.notch_freq: Extra inputs are not permitted"


def test_preprocessing_yaml(tmp_path):
    good = tmp_path / "prep.yaml"
    good.write_text("notch: [50, 100]\nl_freq: 0.5\nh_freq: 45\nreference: average\n")
    config = load_preprocessing(good)
    assert config == EEGPreprocessing(notch=[50, 100], l_freq=0.5, h_freq=45, reference="average")
    bad = tmp_path / "bad.yaml"
    bad.write_text("notch: [50]\nhigh_pass: 1\n")
    with pytest.raises(SpecError) as err:
        load_preprocessing(bad)
    assert str(err.value).startswith(f"{bad}: high_pass: unknown key (expected one of: ")


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def _no_eeg_file(tmp_path: Path) -> Path:
    info = mne.create_info(["ECG", "RESP", "M1"], 100.0, ["ecg", "resp", "misc"])
    raw = mne.io.RawArray(np.zeros((3, 500)), info, verbose=False)
    path = tmp_path / "physio_raw.fif"
    raw.save(path, verbose=False)
    return path


def test_no_channel_of_the_expected_type(tmp_path):
    path = _no_eeg_file(tmp_path)
    with pytest.raises(ReaderError) as err:
        read_eeg(path)
    assert str(err.value) == (
        f"{path}: channel types: no channel of type 'eeg' (found: ecg x1, misc x1, resp x1)"
    )
    rec = read_eeg(path, require_type="ecg", montage=None)  # asked for: fine
    assert list(rec["eeg"].channel_info["type"]) == ["ecg", "resp", "misc"]


def test_no_eeg_channels_via_cli_leaves_no_output(tmp_path):
    path = _no_eeg_file(tmp_path)
    out = tmp_path / "catalog"
    code, stdout, stderr = run_main("ingest", str(path), "--out", str(out))
    assert code == 1
    assert stderr.strip().splitlines()[-1] == (
        f"neurofm: error: {path}: channel types: no channel of type 'eeg' "
        "(found: ecg x1, misc x1, resp x1)"
    )
    assert not out.exists()


def test_unreadable_and_missing_files(tmp_path):
    fake = tmp_path / "fake.edf"
    fake.write_bytes(b"not an EDF header at all" * 20)
    with pytest.raises(ReaderError, match=rf"^{fake}: cannot read as EEG \("):
        read_eeg(fake)
    with pytest.raises(ReaderError) as err:
        read_eeg(tmp_path / "missing.vhdr")
    assert str(err.value) == f"{tmp_path / 'missing.vhdr'}: no such file"
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello")
    with pytest.raises(ReaderError, match=rf"^{unknown}: cannot read as EEG"):
        read_eeg(unknown)


def test_a_brainvision_data_file_cut_short_is_an_error(exported, tmp_path):
    import shutil

    src = exported["brainvision"]
    for ext in (".vhdr", ".vmrk", ".eeg"):
        shutil.copy(src.with_suffix(ext), tmp_path / f"run{ext}")
    vhdr, data = tmp_path / "run.vhdr", tmp_path / "run.eeg"
    full = read_eeg(vhdr)
    whole = data.read_bytes()
    sample = len(full.signals["eeg"].channels) * 4  # float32, multiplexed
    n = len(whole) // sample
    last = max(e for e in full.signals["events"].start)  # seconds
    # cut on a sample boundary before the last marker: MNE alone would read it, shorter
    keep = int(last * full.signals["eeg"].rate) - 10
    data.write_bytes(whole[: keep * sample])
    with pytest.raises(
        ReaderError,
        match=rf"^{vhdr}: DataFile run.eeg holds {keep} samples but "
        r"run.vmrk has \d+ marker\(s\) after them .*looks truncated$",
    ):
        read_eeg(vhdr)
    cut = read_eeg(vhdr, allow_truncated=True)  # on request: what is there, and a note
    assert cut.duration == pytest.approx(keep / full.signals["eeg"].rate)
    assert "looks truncated" in " ".join(cut.provenance.extra["reader_warnings"])
    # part of a sample
    data.write_bytes(whole[: n // 2 * sample + 3])
    with pytest.raises(
        ReaderError,
        match=rf"^{vhdr}: DataFile run.eeg: {n // 2 * sample + 3} "
        r"bytes is not a whole number of samples \(\d+ channels x 4 bytes\)",
    ):
        read_eeg(vhdr)
    data.write_bytes(whole)
    assert read_eeg(vhdr).duration == full.duration  # the intact file reads as before


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_a_fif_file_cut_short_is_an_error_that_says_so(exported, tmp_path, keep):
    whole = exported["fif"].read_bytes()
    path = tmp_path / "cut_raw.fif"
    path.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(
        ReaderError,
        match=rf"^{path}: cannot read as EEG \(the FIF file looks truncated or damaged: a tag "
        rf".* at byte [\d,]+ runs past its end at byte {int(len(whole) * keep):,}; copy the "
        r"file again\)$",
    ):
        read_eeg(path)
    path.write_bytes(whole)
    assert read_eeg(path).duration == read_eeg(exported["fif"]).duration


def test_unknown_channel_type_mapping(exported):
    path = exported["fif"]
    with pytest.raises(InvalidDataError) as err:
        read_eeg(path, channel_types={"EKG": "ecg"})
    assert str(err.value).startswith(f"{path}: channel_types: no channel 'EKG' in the file")


def test_ingest_eeg_file_and_info(run, exported, tmp_path):
    out = tmp_path / "cat"
    code, stdout, stderr = run_main("ingest", str(exported["brainvision"]), "--out", str(out))
    assert code == 0, stderr
    code, stdout, _ = run_main("info", str(out / "run.h5"))
    assert code == 0
    n = len(run.eeg)
    assert f"eeg              regular    {n} samples x 32 ch at 250 Hz (30 eeg, 1 eog, 1 ecg)" in (
        stdout
    )
    assert "volumes          intervals  20 intervals" in stdout
