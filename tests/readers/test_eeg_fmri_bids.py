"""Simultaneous EEG-fMRI from BIDS: finding and pairing runs, aligning BOLD on the scanner's
volume markers (or on acquisition times), bad BIDS input, and the command line
(`neurofm synth eeg-fmri`, `ingest`, `info`) end to end."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurofm.cli import main
from neurofm.data import Catalog, Recording
from neurofm.errors import InvalidDataError, ReaderError
from neurofm.readers.eeg import read_eeg
from neurofm.readers.fmri import read_bids_run, read_eeg_fmri
from neurofm.sources.bids import find_atlas, find_runs
from neurofm.synthetic.eeg_fmri import generate_eeg_fmri_dataset, load_ground_truth
from neurofm.writers import to_mne

N_PARCELS = 8
RUN_ID = "sub-01_ses-01_task-stim_run-1"


def error_lines(stderr: str) -> list[str]:
    """stderr without the progress bars."""
    return [line for line in stderr.splitlines() if line.startswith("neurofm: error: ")]


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("eegfmri") / "bids"
    infos = generate_eeg_fmri_dataset(
        root, n_subjects=2, duration=40.0, n_parcels=N_PARCELS, seed=7, progress=False
    )
    return {"root": root, "infos": infos, "atlas": find_atlas(root)}


@pytest.fixture
def copy(dataset, tmp_path) -> Path:
    """A copy of the dataset that a test may damage."""
    return Path(shutil.copytree(dataset["root"], tmp_path / "bids"))


def _events_tsv(root: Path) -> Path:
    return root / "sub-01" / "ses-01" / "eeg" / f"{RUN_ID}_events.tsv"


def _edit_sidecar(path: Path, field: str, change) -> object:
    """Set ``field`` of a JSON sidecar to ``change(old)``; returns the old value."""
    meta = json.loads(path.read_text())
    old = meta[field]
    meta[field] = change(old)
    path.write_text(json.dumps(meta))
    return old


def _ingest_fails_with(root: Path, tmp_path: Path, message: str) -> None:
    """``neurofm ingest`` of sub-01 fails with ``message`` and writes nothing."""
    out = tmp_path / "catalog"
    code, _, stderr = run_main("ingest", str(root), "--out", str(out), "--subject", "01")
    assert code == 1 and message in stderr and not out.exists()


# --------------------------------------------------------------------------------------------
# finding and pairing
# --------------------------------------------------------------------------------------------


def test_runs_are_paired_by_entities(dataset):
    root = dataset["root"]
    runs = find_runs(root)
    assert [r.recording_id for r in runs] == [RUN_ID, "sub-02_ses-01_task-stim_run-1"]
    for run, info in zip(runs, dataset["infos"], strict=True):
        assert run.kind == "eeg+fmri"
        assert run.eeg == info.eeg and run.bold == info.bold
        assert run.entities == {"subject": info.subject, "session": "01", "task": "stim",
                                "run": "1"}  # fmt: skip
    assert [r.recording_id for r in find_runs(root, subject="02")] == [
        "sub-02_ses-01_task-stim_run-1"
    ]
    assert dataset["atlas"].name == (
        f"atlas-kmeans{N_PARCELS}_space-MNI152NLin2009aAsym_res-6_dseg.nii.gz"
    )


def test_unpaired_files_are_runs_of_one_modality(copy, caplog):
    (copy / "sub-02" / "ses-01" / "func" / "sub-02_ses-01_task-stim_run-1_bold.nii.gz").unlink()
    with caplog.at_level("WARNING", logger="neurofm"):
        find_runs(copy)  # sub-01 still has its pair: sub-02's lost BOLD file is pointed out
    assert (
        "sub-02_ses-01_task-stim_run-1 has EEG but no BOLD file, unlike the other runs; it is "
        "read as a run of EEG only" in caplog.text
    )
    for f in (copy / "sub-01" / "ses-01" / "eeg").glob(f"{RUN_ID}_eeg.*"):
        f.unlink()
    caplog.clear()
    with caplog.at_level("WARNING", logger="neurofm"):
        runs = {r.recording_id: r for r in find_runs(copy)}
    assert "unlike the other runs" not in caplog.text  # no pair left: nothing to compare with
    assert runs[RUN_ID].kind == "fmri" and runs["sub-02_ses-01_task-stim_run-1"].kind == "eeg"
    rec = read_bids_run(runs[RUN_ID], find_atlas(copy))
    assert set(rec.signals) == {"bold", "events"} and rec.metadata.modality == "fmri"
    rec = read_bids_run(runs["sub-02_ses-01_task-stim_run-1"])  # EEG alone needs no atlas
    assert set(rec.signals) == {"eeg", "events", "volumes"}


def test_missing_subject_is_an_error(dataset):
    root = dataset["root"]
    with pytest.raises(ReaderError) as err:
        find_runs(root, subject="03")
    assert str(err.value) == f"{root}: subject: no sub-03 in this BIDS dataset (subjects: 01, 02)"


def test_missing_subject_via_cli_leaves_no_output(dataset, tmp_path):
    root, out = dataset["root"], tmp_path / "catalog"
    code, stdout, stderr = run_main("ingest", str(root), "--out", str(out), "--subject", "03")
    assert code == 1 and stdout == ""
    assert error_lines(stderr) == [
        f"neurofm: error: {root}: subject: no sub-03 in this BIDS dataset (subjects: 01, 02)"
    ]
    assert not out.exists()


def test_not_a_bids_folder(tmp_path):
    (tmp_path / "sub-01").mkdir()
    with pytest.raises(ReaderError) as err:
        find_runs(tmp_path)
    assert str(err.value) == f"{tmp_path}: not a BIDS dataset (no dataset_description.json)"


# --------------------------------------------------------------------------------------------
# alignment
# --------------------------------------------------------------------------------------------


def test_bold_is_placed_at_the_volume_markers(dataset):
    info = dataset["infos"][0]
    truth = load_ground_truth(info.truth)
    rec = read_eeg_fmri(info.eeg, info.bold, dataset["atlas"])
    bold, eeg = rec["bold"], rec["eeg"]
    assert bold.start == pytest.approx(truth["lead_in_s"], abs=1e-9)
    np.testing.assert_allclose(
        bold.timestamps, truth["volume_onsets"], atol=0.5 / eeg.rate
    )  # volume i at marker i
    np.testing.assert_allclose(rec["volumes"].start, truth["volume_onsets"], atol=1e-9)
    # the fMRI events (BIDS: from the first volume) land on the EEG's stimulus markers
    np.testing.assert_allclose(rec["bold_events"].start, rec["events"].start, atol=1e-6)
    np.testing.assert_allclose(rec["events"].start, truth["event_onset"], atol=1e-9)
    assert rec.metadata.modality == "eeg+fmri"
    assert rec.provenance.extra["alignment"] == {
        "method": "volume_markers",
        "n_markers": 20,
        "offset_s": pytest.approx(truth["lead_in_s"]),
        "first_volume_kept": 0,
    }
    assert rec.duration == pytest.approx(len(eeg) / eeg.rate)
    # a window holds both modalities on one clock
    win = rec.window(10.0, 20.0)
    assert len(win["bold"]) == 5 and len(win["eeg"]) == 2500


def test_without_markers_aligns_on_acquisition_times(copy, caplog):
    table = pd.read_csv(_events_tsv(copy), sep="\t")
    table[table["trial_type"] != "R128"].to_csv(_events_tsv(copy), sep="\t", index=False)
    run = find_runs(copy, subject="01")[0]
    truth = load_ground_truth(next(copy.rglob(f"{RUN_ID}_desc-truth.npz")))
    rec = read_bids_run(run, find_atlas(copy))
    assert "volumes" not in rec
    assert rec["bold"].start == pytest.approx(truth["lead_in_s"], abs=1e-6)
    assert rec.provenance.extra["alignment"]["method"] == "acq_time"
    # no markers and no scans table: assumed simultaneous, with a warning
    next(copy.glob("sub-01/ses-01/*_scans.tsv")).unlink()
    with caplog.at_level(logging.WARNING):
        rec = read_bids_run(run, find_atlas(copy))
    assert rec["bold"].start == 0.0
    assert rec.provenance.extra["alignment"]["method"] == "assumed_simultaneous_start"
    assert "no scanner volume markers and no acq_time" in caplog.text


def test_marker_count_must_match_volumes(copy, tmp_path):
    table = pd.read_csv(_events_tsv(copy), sep="\t")
    markers = np.flatnonzero(table["trial_type"] == "R128")
    table.drop(index=markers[-2:]).to_csv(_events_tsv(copy), sep="\t", index=False)
    eeg = copy / "sub-01" / "ses-01" / "eeg" / f"{RUN_ID}_eeg.vhdr"
    bold = copy / "sub-01" / "ses-01" / "func" / f"{RUN_ID}_bold.nii.gz"
    message = (
        f"{eeg}: volumes: 18 scanner volume markers in the EEG but {bold} has 20 volumes; "
        "they must match one to one"
    )
    with pytest.raises(InvalidDataError) as err:
        read_eeg_fmri(eeg, bold, find_atlas(copy))
    assert str(err.value) == message
    out = tmp_path / "catalog"
    code, stdout, stderr = run_main("ingest", str(copy), "--out", str(out), "--subject", "01")
    assert code == 1
    assert error_lines(stderr) == [f"neurofm: error: {message}"]
    assert not out.exists()  # nothing written: the only run failed


def test_marker_spacing_must_match_the_tr(copy, tmp_path):
    bold = copy / "sub-01" / "ses-01" / "func" / f"{RUN_ID}_bold.nii.gz"
    # the sidecar wins over the header: its TR now disagrees with the markers
    tr = _edit_sidecar(bold.parent / f"{RUN_ID}_bold.json", "RepetitionTime", lambda t: 1.5 * t)
    eeg = copy / "sub-01" / "ses-01" / "eeg" / f"{RUN_ID}_eeg.vhdr"
    message = (
        f"{eeg}: volumes: scanner volume markers are {tr:.4g} s apart but the TR of {bold} is "
        f"{1.5 * tr:.4g} s; they must agree (within 1%)"
    )
    with pytest.raises(InvalidDataError) as err:
        read_eeg_fmri(eeg, bold, find_atlas(copy))
    assert str(err.value) == message
    _ingest_fails_with(copy, tmp_path, message)


def test_channels_tsv_unlike_the_data_names_the_channels_that_differ(copy, tmp_path):
    eeg = copy / "sub-01" / "ses-01" / "eeg" / f"{RUN_ID}_eeg.vhdr"
    tsv = eeg.with_name(f"{RUN_ID}_channels.tsv")
    table = pd.read_csv(tsv, sep="\t", keep_default_na=False)
    first = table.loc[0, "name"]
    table.loc[0, "name"] = "X" + first
    table.to_csv(tsv, sep="\t", index=False)
    message = (
        f"{tsv}: name: the channels listed differ from those of {eeg.name}; listed, not in the "
        f"data: X{first}; in the data, not listed: {first}; make the name column list the "
        "data file's channels"
    )
    with pytest.raises(ReaderError) as err:
        read_eeg(eeg)  # the BIDS root is found from the path
    assert str(err.value) == message
    _ingest_fails_with(copy, tmp_path, message)


def test_sidecar_rate_must_be_the_data_rate(copy, tmp_path):
    eeg = copy / "sub-01" / "ses-01" / "eeg" / f"{RUN_ID}_eeg.vhdr"
    sidecar = eeg.with_suffix(".json")
    rate = _edit_sidecar(sidecar, "SamplingFrequency", lambda r: 2 * r)
    message = (
        f"{sidecar}: SamplingFrequency: {2 * rate:g} Hz, but {eeg.name} holds data at {rate:g} Hz"
    )
    with pytest.raises(ReaderError) as err:
        read_eeg(eeg)
    assert str(err.value) == message
    _ingest_fails_with(copy, tmp_path, message)


def test_sidecar_channel_count_that_disagrees_is_pointed_out(copy, caplog):
    eeg = copy / "sub-01" / "ses-01" / "eeg" / f"{RUN_ID}_eeg.vhdr"
    sidecar = eeg.with_suffix(".json")
    n_eeg = _edit_sidecar(sidecar, "EEGChannelCount", lambda _: 64)
    with caplog.at_level("WARNING", logger="neurofm"):
        rec = read_eeg(eeg)  # read all the same: the channels are the data's
    assert len(rec["eeg"].channels) >= n_eeg
    assert f"{sidecar}: EEGChannelCount is 64 but {eeg.name} holds {n_eeg} EEG channels" in (
        caplog.text
    )


def test_bold_without_atlas_is_reported(copy, tmp_path):
    shutil.rmtree(copy / "derivatives")
    out = tmp_path / "catalog"
    code, stdout, stderr = run_main("ingest", str(copy), "--out", str(out))
    assert code == 1
    lines = error_lines(stderr)
    assert len(lines) == 2
    assert lines[0].endswith("_bold.nii.gz: atlas: parcel time series need an atlas (none given, "
                             f"none found in {copy / 'derivatives'}); pass --atlas")  # fmt: skip
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# the command line, end to end (the acceptance line)
# --------------------------------------------------------------------------------------------


def test_synth_ingest_info(tmp_path):
    d, c = tmp_path / "D", tmp_path / "C"
    code, out, err = run_main(
        "synth", "eeg-fmri", "--out", str(d), "--subjects", "1", "--duration", "30",
        "--parcels", "6",
    )  # fmt: skip
    assert code == 0, err
    assert out.strip() == f"wrote 1 EEG-fMRI run (15 volumes, TR 2 s) as BIDS to {d}"
    code, out, err = run_main("ingest", str(d), "--out", str(c))
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"1 ingested, 0 up to date, 0 failed -> {c}"
    code, out, err = run_main("info", str(c))
    assert code == 0, err
    row = out.strip().splitlines()[-1].split()
    assert row[:4] == [RUN_ID, "01", "01", "eeg+fmri"]
    code, out, err = run_main("info", str(c / f"{RUN_ID}.h5"))
    assert code == 0, err
    assert "(30 eeg, 1 eog, 1 ecg)" in out and "x 32 ch at 250 Hz" in out
    assert "bold             regular    15 volumes x 6 parcels, TR 2 s (0.5 Hz)" in out
    assert "alignment        volume_markers, BOLD offset" in out
    code, out, err = run_main("info", str(c / f"{RUN_ID}.h5"), "--json")
    s = json.loads(out)
    assert s["signals"]["bold"]["n_parcels"] == 6 and s["signals"]["bold"]["tr_s"] == 2.0
    assert s["signals"]["eeg"]["channel_types"] == {"eeg": 30, "eog": 1, "ecg": 1}
    assert s["signals"]["eeg"]["rate"] == 250.0
    # a second ingest finds the run's files unchanged
    code, out, err = run_main("ingest", str(d), "--out", str(c))
    assert out.strip().splitlines()[-1] == f"0 ingested, 1 up to date, 0 failed -> {c}"


def test_ingested_recording_round_trips_to_mne(dataset, tmp_path):
    code, _, err = run_main("ingest", str(dataset["root"]), "--out", str(tmp_path / "C"))
    assert code == 0, err
    cat = Catalog(tmp_path / "C")
    assert cat.ids == [RUN_ID, "sub-02_ses-01_task-stim_run-1"]
    with cat.open(RUN_ID) as lazy, Recording.open(tmp_path / "C" / f"{RUN_ID}.h5") as again:
        raw = to_mne(lazy)
        direct = read_bids_run(find_runs(dataset["root"], subject="01")[0], dataset["atlas"])
        np.testing.assert_array_equal(raw.get_data(), direct["eeg"].data.T.astype(np.float64))
        assert list(raw.annotations.description).count("R128") == 20
        np.testing.assert_array_equal(again["bold"].load().data, direct["bold"].data)
        assert list(again["bold"].channel_info["label"]) == list(range(1, N_PARCELS + 1))


def test_eeg_preprocessing_from_yaml_via_cli(dataset, tmp_path):
    prep = tmp_path / "prep.yaml"
    prep.write_text("notch: [50]\nl_freq: 1.0\nh_freq: 40.0\nreference: average\nresample: 125\n")
    out = tmp_path / "C"
    code, _, err = run_main(
        "ingest", str(dataset["root"]), "--out", str(out), "--subject", "02",
        "--eeg-preprocessing", str(prep), "--standardize", "zscore_sample",
    )  # fmt: skip
    assert code == 0, err
    with Catalog(out).open("sub-02_ses-01_task-stim_run-1") as rec:
        assert rec["eeg"].rate == 125.0
        assert [s["step"] for s in rec.provenance.extra["preprocessing"]] == [
            "notch", "filter", "reference", "resample",
        ]  # fmt: skip
        np.testing.assert_allclose(rec["bold"].load().data.std(0, ddof=1), 1.0, atol=1e-3)
        assert rec["bold"].unit == "z"
    bad = tmp_path / "bad.yaml"
    bad.write_text("lowpass: 40\n")
    code, _, err = run_main(
        "ingest", str(dataset["root"]), "--out", str(tmp_path / "C2"), "--eeg-preprocessing",
        str(bad),
    )  # fmt: skip
    assert code == 1 and err.startswith(f"neurofm: error: {bad}: lowpass: unknown key")
    assert not (tmp_path / "C2").exists()
