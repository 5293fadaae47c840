"""The synthetic EEG-fMRI generator: its files say what its ground truth says (lead-field
mixing, band envelopes, HRF convolution, stimulus modulation, timing), it is deterministic, and
it refuses bad arguments without leaving output."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.signal import hilbert

import neurofm.synthetic.eeg_fmri as synth
from neurofm.cli import main
from neurofm.errors import InvalidDataError
from neurofm.readers.eeg import read_eeg
from neurofm.synthetic.eeg_fmri import (
    BANDS,
    EEG_CHANNELS,
    generate_eeg_fmri_dataset,
    load_ground_truth,
    make_parcellation,
    simulate_run,
)


@pytest.fixture(scope="module")
def parcellation():
    return make_parcellation(12, 6.0, seed=2)


@pytest.fixture(scope="module")
def noiseless(tmp_path_factory) -> dict:
    """A 60 s run without sensor or voxel noise, written as BIDS."""
    root = tmp_path_factory.mktemp("synth") / "bids"
    (info,) = generate_eeg_fmri_dataset(
        root, n_subjects=1, duration=60.0, n_parcels=12, seed=2, progress=False,
        eeg_noise=0.0, bold_noise=0.0, drift=0.0,
    )  # fmt: skip
    return {"root": root, "info": info, "truth": load_ground_truth(info.truth)}


def test_parcellation_of_the_mni_mask(parcellation):
    labels = parcellation.labels
    assert labels.shape == (33, 39, 32) and labels.dtype == np.int32
    assert sorted(np.unique(labels)) == list(range(13))
    sizes = np.bincount(labels.ravel())[1:]
    assert sizes.min() > 0.3 * sizes.mean()  # k-means parcels are of comparable size
    ijk = np.argwhere(labels == 1)
    xyz = nib.affines.apply_affine(parcellation.labels_img.affine, ijk)
    np.testing.assert_allclose(parcellation.centroids[0], xyz.mean(0))
    assert parcellation.names[0].endswith("parcel-01")
    again = make_parcellation(12, 6.0, seed=2)
    np.testing.assert_array_equal(again.labels, labels)


def test_eeg_in_the_file_is_the_leadfield_mixing_of_the_sources(noiseless):
    truth = noiseless["truth"]
    rec = read_eeg(noiseless["info"].eeg)
    eeg = rec["eeg"].data[:, :30].astype(np.float64)  # the EEG channels, volts
    gain = truth["leadfield"]
    assert gain.shape == (30, 12)
    mixed = truth["sources"].astype(np.float64) @ gain.T
    line = eeg - mixed  # what is left is the 50 Hz line noise, 1.5 uV
    assert np.abs(line).max() < 1.6e-6
    assert _band_power_fraction(line[:, 0], 250.0, 49.0, 51.0) > 0.99
    # the brain signal: ~20 uV median channel RMS, as configured
    assert np.median(mixed.std(0)) == pytest.approx(20e-6, rel=1e-3)
    # a radial dipole in the occipital parcel is seen best by occipital electrodes
    occipital = int(np.argmin(truth["centroids_mni"][:, 1]))
    best = EEG_CHANNELS[int(np.argmax(np.abs(gain[:, occipital])))]
    assert best in {"O1", "Oz", "O2", "P7", "P8", "PO9", "PO10"}, best


def _band_power_fraction(x: np.ndarray, rate: float, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spec[(freqs >= lo) & (freqs <= hi)].sum() / spec.sum())


def test_band_envelopes_are_the_analytic_envelopes(noiseless):
    """Each band's carrier has unit amplitude and stays inside its band, so an ideal band-pass
    of the source followed by the Hilbert transform gives back the band's envelope."""
    truth = noiseless["truth"]
    sources = truth["sources"].astype(np.float64)
    freqs = np.fft.rfftfreq(len(sources), 1 / 250.0)
    spec = np.fft.rfft(sources, axis=0)
    # carriers wander over 80 % of each band: alpha 8.4-11.6 Hz, gamma 31.5-43.5 Hz
    for b, (lo, hi) in ((0, (6.5, 13.5)), (2, (29.0, 46.0))):
        band = np.fft.irfft(np.where(((freqs >= lo) & (freqs <= hi))[:, None], spec, 0),
                            n=len(sources), axis=0)  # fmt: skip
        env = np.abs(hilbert(band, axis=0))[500:-500]
        want = truth["envelopes"][b][500:-500]
        r = [np.corrcoef(env[:, p], want[:, p])[0, 1] for p in range(12)]
        assert min(r) > 0.9, (list(BANDS)[b], r)
        np.testing.assert_allclose(np.median(env / want, axis=0), 1.0, atol=0.05)


def test_bold_is_the_hrf_convolved_band_envelope(noiseless):
    from nilearn.glm.first_level import glover_hrf

    truth = noiseless["truth"]
    assert truth["bold_band"] == "gamma"
    env = truth["envelopes"][2].astype(np.float64)  # gamma
    drive = env[: len(env) // 25 * 25].reshape(-1, 25, 12).mean(1)  # 0.1 s grid
    hrf = glover_hrf(t_r=2.0, oversampling=20, time_length=32.0)
    np.testing.assert_allclose(truth["hrf"], hrf)
    # the run starts in steady state: the drive before the EEG is its mean, not zero
    level = drive.mean(0)
    conv = np.stack([np.convolve(drive[:, p] - level[p], hrf)[: len(drive)] for p in range(12)], 1)
    grid = (np.arange(len(drive)) + 0.5) * 0.1
    at = np.stack([np.interp(truth["volume_onsets"], grid, conv[:, p]) for p in range(12)], 1)
    y = truth["bold_percent"]
    for p in range(12):
        assert np.corrcoef(at[:, p], y[:, p])[0, 1] > 0.9999
    assert np.mean(y.std(0)) == pytest.approx(1.5)  # % signal change, as configured
    # the NIfTI: voxels of a parcel follow its series (noise and drift are off here)
    img = nib.load(noiseless["info"].bold)
    assert img.shape == (33, 39, 32, 30) and img.header.get_zooms() == (6.0, 6.0, 6.0, 2.0)
    assert img.header.get_xyzt_units() == ("mm", "sec")
    labels = np.asarray(nib.load(next(noiseless["root"].rglob("*_dseg.nii.gz"))).dataobj)
    vox = np.asarray(img.dataobj)[labels == 3]
    assert np.corrcoef(vox.mean(0), y[:, 2])[0, 1] > 0.999
    assert (np.asarray(img.dataobj)[labels == 0] == 0).all()


def test_stimulus_blocks_modulate_the_bands(noiseless):
    truth = noiseless["truth"]
    visual = int(np.argmin(np.linalg.norm(truth["centroids_mni"] - [0, -88, 4], axis=1)))
    t = np.arange(truth["envelopes"].shape[1]) / 250.0
    inside = np.zeros(len(t), bool)
    for on, dur, kind in zip(truth["event_onset"], truth["event_duration"], truth["event_type"],
                             strict=True):  # fmt: skip
        if kind == "visual":
            inside |= (t >= on + 0.5) & (t < on + dur - 0.5)
    assert inside.any()
    alpha, gamma = truth["envelopes"][0][:, visual], truth["envelopes"][2][:, visual]
    assert gamma[inside].mean() > 1.3 * gamma[~inside].mean()  # gamma synchronises
    assert alpha[inside].mean() < 0.85 * alpha[~inside].mean()  # alpha desynchronises


def test_timing_sidecars_and_events(noiseless):
    root, truth = noiseless["root"], noiseless["truth"]
    sub = root / "sub-01" / "ses-01"
    scans = pd.read_csv(next(sub.glob("*_scans.tsv")), sep="\t")
    times = pd.to_datetime(scans["acq_time"]).to_list()
    assert scans["filename"].str.startswith("eeg/").iloc[0]
    assert (times[1] - times[0]).total_seconds() == pytest.approx(truth["lead_in_s"], abs=1e-6)
    side = json.loads(noiseless["info"].bold.with_name(
        noiseless["info"].bold.name.replace(".nii.gz", ".json")).read_text())  # fmt: skip
    assert side["RepetitionTime"] == 2.0 and side["TaskName"] == "stim"
    func_events = pd.read_csv(next((sub / "func").glob("*_events.tsv")), sep="\t")
    np.testing.assert_allclose(func_events["onset"] + truth["lead_in_s"], truth["event_onset"])
    channels = pd.read_csv(next((sub / "eeg").glob("*_channels.tsv")), sep="\t")
    assert list(channels["type"][-2:]) == ["EOG", "ECG"]
    desc = json.loads((root / "dataset_description.json").read_text())
    assert desc["GeneratedBy"][0]["Name"] == "neurofm"


def test_volume_markers_are_written_as_a_scanner_writes_them(noiseless, tmp_path):
    from mne_bids.copyfiles import copyfile_brainvision

    vhdr = noiseless["info"].eeg
    onsets = np.asarray(noiseless["truth"]["volume_onsets"])
    markers = [line for line in vhdr.with_suffix(".vmrk").read_text().splitlines()
               if line.startswith("Mk")]  # fmt: skip
    volumes = [m for m in markers if m.split("=")[1].startswith("Response,R128,")]
    assert len(volumes) == len(onsets) and len(markers) > len(volumes)  # + the stimulus blocks
    # Read on its own (no BIDS events.tsv), the .vhdr still gives the volumes
    alone = tmp_path / "run.vhdr"
    copyfile_brainvision(vhdr, alone, verbose=False)
    rec = read_eeg(alone)
    np.testing.assert_allclose(rec["volumes"].start, onsets, atol=1.5 / rec["eeg"].rate)
    assert not any("R128" in str(label) for label in rec["events"].labels)


def test_deterministic_and_seeded(parcellation):
    a = simulate_run(parcellation, duration=24.0, seed=4)
    b = simulate_run(parcellation, duration=24.0, seed=4)
    c = simulate_run(parcellation, duration=24.0, seed=4, subject_index=1)
    np.testing.assert_array_equal(a.eeg, b.eeg)
    np.testing.assert_array_equal(a.bold, b.bold)
    assert not np.array_equal(a.bold_percent, c.bold_percent)
    r = simulate_run(parcellation, duration=24.0, seed=4, leadfield="random")
    assert r.leadfield_kind == "random" and a.leadfield_kind == "sphere"


def test_bad_arguments(parcellation, tmp_path):
    with pytest.raises(InvalidDataError) as err:
        simulate_run(parcellation, bold_band="delta")
    assert str(err.value) == "bold_band: expected one of ['alpha', 'beta', 'gamma'], got 'delta'"
    with pytest.raises(InvalidDataError) as err:
        simulate_run(parcellation, duration=10.0)
    assert str(err.value) == "duration: 10.0 s gives 5 volumes at TR 2.0 s; need >= 10"
    with pytest.raises(InvalidDataError, match=r"^n_parcels: expected 2\.\.500, got 1$"):
        make_parcellation(1)


def test_never_leaves_partial_output(tmp_path, monkeypatch):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["synth", "eeg-fmri", "--out", str(foreign), "--duration", "20"])
    assert code == 1
    assert err.getvalue().strip() == (
        f"neurofm: error: {foreign}: exists and is not an empty folder or a dataset written by "
        "this generator"
    )
    assert [p.name for p in foreign.iterdir()] == ["thesis.tex"]

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synth, "write_bids", broken)
    target = tmp_path / "new"
    with pytest.raises(RuntimeError, match="disk full"):
        generate_eeg_fmri_dataset(target, n_subjects=1, duration=20.0, n_parcels=4,
                                  progress=False)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no target, no temp folder


def test_regenerating_replaces_a_generated_dataset(tmp_path):
    root = tmp_path / "d"
    generate_eeg_fmri_dataset(root, n_subjects=1, duration=20.0, n_parcels=4, progress=False)
    (root / "stale.txt").write_text("x")
    generate_eeg_fmri_dataset(root, n_subjects=1, duration=20.0, n_parcels=4, progress=False)
    assert not (root / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert isinstance(root, Path)
