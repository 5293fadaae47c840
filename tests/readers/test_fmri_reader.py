"""Tests of neurofm.readers.fmri.read_fmri: parcel time series against the synthetic ground
truth, TR sources, standardisation, confound regression (fMRIPrep layout), probabilistic maps,
and bad fMRI input through the API and the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from neurofm.cli import main
from neurofm.errors import InvalidDataError, ReaderError
from neurofm.readers.fmri import read_fmri
from neurofm.synthetic.eeg_fmri import generate_eeg_fmri_dataset, load_ground_truth

N_PARCELS = 8


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = (a - a.mean(0)) / a.std(0)
    b = (b - b.mean(0)) / b.std(0)
    return (a * b).mean(0)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict:
    """One noiseless, drift-free run (50 volumes at TR 2 s) with its atlas and truth."""
    root = tmp_path_factory.mktemp("fmri") / "bids"
    (info,) = generate_eeg_fmri_dataset(
        root, n_subjects=1, duration=100.0, n_parcels=N_PARCELS, seed=5, progress=False,
        bold_noise=0.0, drift=0.0, eeg_noise=0.0,
    )  # fmt: skip
    atlas = next((root / "derivatives").rglob("*_dseg.nii.gz"))
    return {"root": root, "bold": info.bold, "atlas": atlas, "truth": load_ground_truth(info.truth)}


# --------------------------------------------------------------------------------------------
# recovery of the known parcel series
# --------------------------------------------------------------------------------------------


def test_recovers_known_parcel_series(clean):
    rec = read_fmri(clean["bold"], clean["atlas"])
    bold = rec["bold"]
    truth = clean["truth"]
    assert bold.data.shape == truth["bold_percent"].shape == (50, N_PARCELS)
    r = _corr(bold.data.astype(float), truth["bold_percent"])
    assert r.min() > 0.99, r
    assert bold.rate == 0.5 and bold.start == 0.0 and bold.unit == "a.u."
    # raw parcel means: around the ~1000 baseline, not standardised
    assert 900 < bold.data.mean() < 1100
    # parcels named and placed from the atlas' dseg.tsv and geometry
    table = pd.read_csv(str(clean["atlas"]).replace(".nii.gz", ".tsv"), sep="\t")
    assert list(bold.channels) == list(table["name"])
    info = bold.channel_info
    assert list(info["label"]) == list(range(1, N_PARCELS + 1))
    np.testing.assert_allclose(
        np.column_stack([info["x"], info["y"], info["z"]]),
        truth["centroids_mni"],
        atol=1e-6,
    )
    labels = np.asarray(nib.load(clean["atlas"]).dataobj)
    assert list(info["n_voxels"]) == [int((labels == k).sum()) for k in range(1, N_PARCELS + 1)]
    prov = rec.provenance.extra
    assert prov["repetition_time_source"].endswith("_bold.json:RepetitionTime")
    assert prov["masker"] == "NiftiLabelsMasker" and prov["atlas_resampled"] is False
    assert rec.metadata.extra["repetition_time_s"] == 2.0
    assert rec.id == "sub-01_ses-01_task-stim_run-1"
    assert (rec.metadata.subject_id, rec.metadata.task) == ("01", "stim")
    # BIDS events beside the BOLD, relative to its first volume
    np.testing.assert_allclose(
        rec["events"].start, truth["event_onset"] - truth["lead_in_s"], atol=1e-9
    )
    assert list(rec["events"].labels) == list(truth["event_type"])


def test_a_lookup_table_naming_some_parcels_is_pointed_out(clean, tmp_path, caplog):
    import shutil

    atlas = tmp_path / clean["atlas"].name
    shutil.copy(clean["atlas"], atlas)
    table = pd.read_csv(str(clean["atlas"]).replace(".nii.gz", ".tsv"), sep="\t")
    lut = Path(str(atlas).replace(".nii.gz", ".tsv"))
    table.head(3).to_csv(lut, sep="\t", index=False)
    with caplog.at_level("WARNING", logger="neurofm"):
        bold = read_fmri(clean["bold"], atlas)["bold"]
    assert list(bold.channels[:3]) == list(table["name"][:3])
    assert list(bold.channels[3:5]) == ["parcel-004", "parcel-005"]
    assert f"{lut}: names 3 of the atlas's {N_PARCELS} parcels; the others keep numbered" in (
        caplog.text
    )


def test_standardize_as_nilearn_names_it(clean):
    truth = clean["truth"]["bold_percent"]
    z = read_fmri(clean["bold"], clean["atlas"], standardize="zscore_sample")["bold"]
    np.testing.assert_allclose(z.data.mean(0), 0.0, atol=1e-4)  # float32
    np.testing.assert_allclose(z.data.std(0, ddof=1), 1.0, atol=1e-4)
    assert z.unit == "z"
    assert read_fmri(clean["bold"], clean["atlas"], standardize=True)["bold"].unit == "z"
    psc = read_fmri(clean["bold"], clean["atlas"], standardize="psc")["bold"]
    # percent signal change of the parcel mean is the truth times the parcel's mean coupling
    # (1 +- 0.15 per voxel, averaged over tens of voxels)
    slope = (psc.data * truth).sum(0) / (truth**2).sum(0)
    np.testing.assert_allclose(slope, 1.0, atol=0.1)
    with pytest.raises(InvalidDataError) as err:
        read_fmri(clean["bold"], clean["atlas"], standardize="minmax")
    assert str(err.value) == (
        f"{clean['bold']}: standardize: expected False, True or one of "
        "['zscore_sample', 'zscore', 'psc'], got 'minmax'"
    )


def test_repetition_time_from_header_and_argument(clean, tmp_path, caplog):
    img = nib.load(clean["bold"])
    plain = tmp_path / "plain.nii.gz"
    nib.save(img, plain)  # no sidecar: the header's pixdim[4] (2 s)
    rec = read_fmri(plain, clean["atlas"])
    assert rec["bold"].rate == 0.5 and rec.provenance.extra["repetition_time_source"] == (
        "header pixdim[4]"
    )
    assert rec.id == "plain"
    msec = nib.Nifti1Image(np.asarray(img.dataobj), img.affine)
    msec.header.set_xyzt_units("mm", "msec")
    msec.header.set_zooms((6.0, 6.0, 6.0, 2000.0))
    nib.save(msec, tmp_path / "msec.nii.gz")
    assert read_fmri(tmp_path / "msec.nii.gz", clean["atlas"])["bold"].rate == 0.5
    assert read_fmri(plain, clean["atlas"], t_r=1.5)["bold"].rate == pytest.approx(1 / 1.5)
    # the BIDS sidecar wins over a disagreeing header, with a warning
    (tmp_path / "plain.json").write_text(json.dumps({"RepetitionTime": 2.5}))
    with caplog.at_level(logging.WARNING):
        assert read_fmri(plain, clean["atlas"])["bold"].rate == pytest.approx(0.4)
    assert "RepetitionTime 2.5 s differs from the NIfTI header's 2.0 s" in caplog.text
    zero = nib.Nifti1Image(np.asarray(img.dataobj), img.affine)
    zero.header.set_zooms((6.0, 6.0, 6.0, 0.0))
    nib.save(zero, tmp_path / "zero.nii.gz")
    with pytest.raises(ReaderError) as err:
        read_fmri(tmp_path / "zero.nii.gz", clean["atlas"])
    assert str(err.value) == (  # what to do, from the command line as from Python
        f"{tmp_path / 'zero.nii.gz'}: RepetitionTime: no BIDS sidecar with RepetitionTime and "
        "the header's pixdim[4] is 0; write the TR into zero.json as "
        '{"RepetitionTime": <seconds>}, or pass read_fmri(t_r=...)'
    )
    (tmp_path / "zero.json").write_text('{"RepetitionTime": 2.0}')  # the advice works
    assert read_fmri(tmp_path / "zero.nii.gz", clean["atlas"])["bold"].rate == 0.5


def test_probabilistic_maps(clean, tmp_path):
    """A 4-D atlas goes through NiftiMapsMasker; one-hot maps give the labels' parcel means."""
    labels_img = nib.load(clean["atlas"])
    labels = np.asarray(labels_img.dataobj)
    maps = np.stack([(labels == k).astype(np.float32) for k in range(1, N_PARCELS + 1)], -1)
    path = tmp_path / "maps.nii.gz"
    nib.save(nib.Nifti1Image(maps, labels_img.affine), path)
    rec = read_fmri(clean["bold"], path, labels=[f"map{k}" for k in range(N_PARCELS)])
    bold = rec["bold"]
    assert rec.provenance.extra["masker"] == "NiftiMapsMasker"
    assert list(bold.channels) == [f"map{k}" for k in range(N_PARCELS)]
    assert _corr(bold.data.astype(float), clean["truth"]["bold_percent"]).min() > 0.99
    np.testing.assert_allclose(bold.channel_info["x"], clean["truth"]["centroids_mni"][:, 0])


# --------------------------------------------------------------------------------------------
# confounds
# --------------------------------------------------------------------------------------------


def _fmriprep_run(clean: dict, folder: Path) -> tuple[Path, np.ndarray]:
    """An fMRIPrep-named copy of the BOLD contaminated by head motion, with its confounds."""
    img = nib.load(clean["bold"])
    data = np.asarray(img.dataobj).astype(np.float64)
    n = data.shape[-1]
    rng = np.random.default_rng(0)
    motion = rng.standard_normal((n, 6)) * 0.4  # jerky head motion, mm and degrees
    labels = np.asarray(nib.load(clean["atlas"]).dataobj)
    # Motion moves whole regions: a weight per parcel (plus a voxel part) so parcel means
    # carry the artefact, ~1 % of the signal.
    per_parcel = np.vstack([np.zeros(6), rng.standard_normal((N_PARCELS, 6))])[labels]
    weights = (per_parcel + 0.3 * rng.standard_normal(per_parcel.shape)) * (labels > 0)[..., None]
    data += 30.0 * np.einsum("xyzk,tk->xyzt", weights, motion)
    func = folder / "derivatives" / "fmriprep" / "sub-01" / "func"
    func.mkdir(parents=True)
    stem = "sub-01_task-stim"
    bold = func / f"{stem}_space-MNI152NLin2009aAsym_desc-preproc_bold.nii.gz"
    out = nib.Nifti1Image(data.astype(np.float32), img.affine, img.header)
    nib.save(out, bold)
    names = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    cols = {}
    for i, name in enumerate(names):
        x = motion[:, i]
        d = np.concatenate([[np.nan], np.diff(x)])
        cols.update({name: x, f"{name}_derivative1": d, f"{name}_power2": x**2,
                     f"{name}_derivative1_power2": d**2})  # fmt: skip
    pd.DataFrame(cols).to_csv(func / f"{stem}_desc-confounds_timeseries.tsv", sep="\t",
                              index=False, na_rep="n/a")  # fmt: skip
    (func / f"{stem}_desc-confounds_timeseries.json").write_text("{}")
    return bold, motion


def test_fmriprep_confounds_are_regressed(clean, tmp_path):
    bold, _ = _fmriprep_run(clean, tmp_path)
    truth = clean["truth"]["bold_percent"]
    raw = read_fmri(bold, clean["atlas"], t_r=2.0)["bold"].data.astype(float)
    cleaned_rec = read_fmri(
        bold,
        clean["atlas"],
        t_r=2.0,
        confounds="fmriprep",
        confound_strategy=("motion",),
        confound_options={"motion": "basic"},
    )
    cleaned = cleaned_rec["bold"].data.astype(float)
    r_raw, r_clean = _corr(raw, truth), _corr(cleaned, truth)
    assert r_raw.mean() < 0.8  # the artefact hurts...
    assert r_clean.mean() > 0.9  # ...and regressing the 6 motion parameters removes it
    assert cleaned_rec.provenance.extra["confounds"] == (
        "fmriprep load_confounds strategy=['motion'] motion=basic (6 columns)"
    )
    full = read_fmri(bold, clean["atlas"], t_r=2.0, confounds="fmriprep",
                     confound_strategy=("motion",))  # fmt: skip
    assert full.provenance.extra["confounds"].endswith("(24 columns)")


def test_confounds_table_and_row_mismatch(clean, tmp_path):
    bold, motion = _fmriprep_run(clean, tmp_path)
    tsv = tmp_path / "motion.tsv"
    pd.DataFrame(motion, columns=list("abcdef")).to_csv(tsv, sep="\t", index=False)
    rec = read_fmri(bold, clean["atlas"], t_r=2.0, confounds=tsv)
    assert _corr(rec["bold"].data.astype(float), clean["truth"]["bold_percent"]).mean() > 0.9
    short = tmp_path / "short.tsv"
    pd.DataFrame(motion[:-3], columns=list("abcdef")).to_csv(short, sep="\t", index=False)
    with pytest.raises(InvalidDataError) as err:
        read_fmri(bold, clean["atlas"], t_r=2.0, confounds=short)
    assert str(err.value) == f"{bold}: confounds: 47 rows but the image has 50 volumes"
    with pytest.raises(ReaderError) as err:  # raw BIDS, not fMRIPrep: no nilearn internals
        read_fmri(clean["bold"], clean["atlas"], confounds="fmriprep")
    assert str(err.value).startswith(f"{clean['bold']}: confounds 'fmriprep' are the ones fMRIPrep")
    assert "--confounds FILE.tsv" in str(err.value) and "Invalid file type" not in str(err.value)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_3d_image_is_refused(clean, tmp_path):
    img = nib.load(clean["bold"])
    vol = tmp_path / "anat.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[..., 0], img.affine), vol)
    with pytest.raises(ReaderError) as err:
        read_fmri(vol, clean["atlas"])
    assert str(err.value) == (
        f"{vol}: dimensions: expected a 4-D image (x, y, z, time), got 3-D shape (33, 39, 32)"
    )
    out = tmp_path / "catalog"
    code, _, stderr = run_main(
        "ingest", str(vol), "--out", str(out), "--atlas", str(clean["atlas"])
    )
    assert code == 1
    assert stderr.strip().splitlines()[-1] == f"neurofm: error: {err.value}"
    assert not out.exists()


def test_atlas_on_another_grid_is_resampled_with_a_warning(clean, tmp_path, caplog):
    from nilearn.image import resample_img

    atlas = nib.load(clean["atlas"])
    fine = resample_img(
        atlas, target_affine=np.diag([3.0, 3.0, 3.0]), interpolation="nearest",
        force_resample=True, copy_header=True,
    )  # fmt: skip
    path = tmp_path / "atlas_3mm.nii.gz"
    nib.save(fine, path)
    with caplog.at_level(logging.WARNING):
        rec = read_fmri(clean["bold"], path)
    assert f"{path}: atlas grid (shape {fine.shape}) differs from {clean['bold']}" in caplog.text
    assert "resampling the atlas to the image" in caplog.text
    assert rec.provenance.extra["atlas_resampled"] is True
    assert _corr(rec["bold"].data.astype(float), clean["truth"]["bold_percent"]).min() > 0.95


def test_constant_parcels_are_pointed_out(clean, tmp_path, caplog):
    # two parcels on voxels that never change (as an atlas off the brain puts them on the
    # zeros around it)
    img = nib.load(clean["bold"])
    data = np.asarray(img.dataobj).copy()
    labels = np.asarray(nib.load(clean["atlas"]).dataobj)
    data[np.isin(labels, [1, 2])] = 0.0
    flat_bold = tmp_path / "flat_bold.nii.gz"
    nib.save(nib.Nifti1Image(data, img.affine, img.header), flat_bold)
    with caplog.at_level("WARNING", logger="neurofm"):
        bold = read_fmri(flat_bold, clean["atlas"], t_r=2.0)["bold"]
    assert (np.ptp(bold.data, axis=0) == 0).sum() == 2
    assert (
        f"2 of {N_PARCELS} parcel(s) of {clean['atlas']} are constant over the run "
        f"({bold.channels[0]}, {bold.channels[1]}): voxels outside the brain" in caplog.text
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="neurofm"):
        read_fmri(clean["bold"], clean["atlas"])
    assert "constant over the run" not in caplog.text  # every parcel of the run varies


def test_atlas_in_another_space_is_an_error(clean, tmp_path):
    atlas = nib.load(clean["atlas"])
    moved = atlas.affine.copy()
    moved[:3, 3] += 1000.0  # e.g. voxel coordinates read as millimetres
    path = tmp_path / "elsewhere.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(atlas.dataobj), moved), path)
    with pytest.raises(ReaderError) as err:
        read_fmri(clean["bold"], path)
    assert str(err.value) == (
        f"{path}: atlas space: no parcel voxel lies in the field of view of {clean['bold']} "
        "(atlas shape (33, 39, 32), image shape (33, 39, 32); affines differ): a different "
        "space?"
    )
    out = tmp_path / "catalog"
    code, _, stderr = run_main(
        "ingest", str(clean["bold"]), "--out", str(out), "--atlas", str(path)
    )
    assert code == 1 and stderr.strip().splitlines()[-1] == f"neurofm: error: {err.value}"
    assert not out.exists()


def test_other_bad_atlases_and_files(clean, tmp_path):
    atlas = nib.load(clean["atlas"])
    frac = tmp_path / "frac.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(atlas.dataobj) * 0.5, atlas.affine), frac)
    with pytest.raises(ReaderError) as err:
        read_fmri(clean["bold"], frac)
    assert str(err.value) == (
        f"{frac}: atlas values: a 3-D labels image must hold integer labels (probabilistic "
        "atlases are 4-D, one map per region)"
    )
    empty = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(atlas.shape, np.int32), atlas.affine), empty)
    with pytest.raises(ReaderError, match=r"the atlas holds no parcel \(every voxel is 0\)$"):
        read_fmri(clean["bold"], empty)
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(ReaderError, match=rf"^{junk}: not a readable NIfTI BOLD image \("):
        read_fmri(junk, clean["atlas"])
    with pytest.raises(ReaderError) as err:
        read_fmri(clean["bold"], tmp_path / "nope.nii.gz")
    assert str(err.value) == f"{tmp_path / 'nope.nii.gz'}: no such atlas file"
    with pytest.raises(InvalidDataError, match=r"labels: 3 names for 8 parcels$"):
        read_fmri(clean["bold"], clean["atlas"], labels=["a", "b", "c"])


def test_nifti_without_atlas_via_cli(clean, tmp_path):
    out = tmp_path / "catalog"
    code, _, stderr = run_main("ingest", str(clean["bold"]), "--out", str(out))
    assert code == 1
    assert stderr.strip().splitlines()[-1] == (
        f"neurofm: error: {clean['bold']}: atlas: a NIfTI file is reduced to parcels, pass an "
        "atlas (--atlas)"
    )
    assert not out.exists()
