"""Readers notice short files (issue 14.6, failure 5): truncated EDF/BDF, control characters in
EDF header strings, NWB datasets shorter than their index declares, NIfTI data shorter than its
header."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import mne
import nibabel as nib
import numpy as np
import nwb_factory as fac
import pytest
from faultkit import run_main

from neurofm.data import Catalog
from neurofm.errors import InvalidDataError, ReaderError
from neurofm.readers.eeg import read_eeg
from neurofm.readers.fmri import read_fmri
from neurofm.readers.nwb import read_nwb

CHANNELS = ["Fp1", "Fp2", "Cz", "O1"]


def write_eeg(path: Path, seconds: float = 20.0, rate: float = 100.0) -> np.ndarray:
    """A 4-channel EEG exported by MNE (EDF or BDF, by the extension); returns the samples."""
    data = np.random.default_rng(0).normal(0, 2e-5, (len(CHANNELS), int(seconds * rate)))
    raw = mne.io.RawArray(data, mne.create_info(CHANNELS, rate, "eeg"), verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mne.export.export_raw(path, raw, overwrite=True, verbose=False)
    return data


def edf_layout(path: Path) -> tuple[int, int, int]:
    """(header bytes, number of data records, bytes per record) from the file's own header."""
    head = path.read_bytes()[:256]
    n_signals, header_bytes = int(head[252:256]), int(head[184:192])
    body = path.read_bytes()[256 : 256 + 256 * n_signals]
    samples = body[216 * n_signals : 224 * n_signals]
    per_record = sum(int(samples[8 * i : 8 * i + 8]) for i in range(n_signals))
    width = 3 if path.suffix.lower() == ".bdf" else 2
    return header_bytes, int(head[236:244]), per_record * width


@pytest.mark.parametrize("ext", [".edf", ".bdf"])
def test_truncated_edf_is_an_error_naming_the_file(ext, tmp_path):
    full = tmp_path / f"run{ext}"
    write_eeg(full, seconds=20.0)
    header, n_records, record = edf_layout(full)
    assert full.stat().st_size == header + n_records * record
    assert read_eeg(full).duration == pytest.approx(20.0)
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(full.read_bytes()[: header + 6 * record + record // 2])  # 6.5 of 20 records
    with pytest.raises(ReaderError) as err:
        read_eeg(cut)
    assert str(err.value) == (
        f"{cut}: truncated: the header declares {n_records} data records of {record} bytes "
        f"({header + n_records * record} bytes in all) but the file has "
        f"{cut.stat().st_size} bytes (6 complete records)"
    )
    # through the CLI: one line, and nothing written to the catalog
    code, out, err_text = run_main("ingest", str(cut), "--out", str(tmp_path / "cat"))
    assert code == 1
    assert f"{cut}: truncated" in err_text and "Traceback" not in err_text
    assert not (tmp_path / "cat").exists() or not list((tmp_path / "cat").glob("*.h5"))


def test_truncated_edf_can_be_read_on_purpose_with_a_provenance_warning(tmp_path):
    full = tmp_path / "run.edf"
    data = write_eeg(full, seconds=20.0)
    header, n_records, record = edf_layout(full)
    cut = tmp_path / "cut.edf"
    cut.write_bytes(full.read_bytes()[: header + 6 * record])
    rec = read_eeg(cut, allow_truncated=True)
    assert rec.duration == pytest.approx(6.0)
    np.testing.assert_allclose(rec.eeg.data[:, 0], data[0, :600], atol=2e-8)
    warnings_seen = rec.provenance.extra["reader_warnings"]
    assert any("truncated" in w and "6 of 20 data records" in w for w in warnings_seen)


def test_nul_in_an_edf_label_is_cleaned_at_read_time(tmp_path):
    path = tmp_path / "nul.edf"
    write_eeg(path, seconds=5.0)
    raw = bytearray(path.read_bytes())
    raw[256 + 2] = 0  # "Fp1" -> "Fp\0" in the first channel label
    raw[8 + 3] = 1  # a control character in the patient field
    path.write_bytes(bytes(raw))
    rec = read_eeg(path)
    assert list(rec.eeg.channels) == ["Fp", "Fp2", "Cz", "O1"]
    cleaned = rec.provenance.extra["cleaned_strings"]
    assert {"field": "channel name", "was": "Fp\x001", "now": "Fp"} in cleaned or any(
        c["now"] == "Fp" for c in cleaned
    )
    # and it saves: no HDF5 "VLEN strings" error
    code, out, err = run_main("ingest", str(path), "--out", str(tmp_path / "cat"))
    assert code == 0, err
    with Catalog(tmp_path / "cat").open("nul") as stored:
        assert list(stored.eeg.channels) == ["Fp", "Fp2", "Cz", "O1"]


def test_control_characters_that_collide_are_refused(tmp_path):
    path = tmp_path / "clash.edf"
    write_eeg(path, seconds=5.0)
    raw = bytearray(path.read_bytes())
    raw[256 + 2 : 256 + 4] = b"\x012"  # "Fp1" -> "Fp\x012", which cleans to "Fp2": taken
    path.write_bytes(bytes(raw))
    with pytest.raises(ReaderError, match=rf"{path}: channel names: .*control characters"):
        read_eeg(path)


# --------------------------------------------------------------------------------------------
# NWB and NIfTI
# --------------------------------------------------------------------------------------------


def test_nwb_spike_index_beyond_the_data_is_an_error(tmp_path):
    path = fac.with_spike_trains(tmp_path / "short.nwb", [[0.1, 0.2, 0.3], [0.15, 0.25]])
    with h5py.File(path, "r") as f:
        times = f["units/spike_times"][()]
    fac.replace_dataset(path, "units/spike_times", times[:3])  # index still says 5
    with pytest.raises(InvalidDataError) as err:
        read_nwb(path)
    assert str(err.value) == (
        f"{path}: units.spike_times_index: offsets must be non-decreasing and <= 3 (the number "
        "of spike times)"
    )


def test_truncated_nwb_is_an_error(tmp_path):
    path = fac.with_spike_trains(tmp_path / "full.nwb", [[0.1, 0.2, 0.3], [0.15, 0.25]])
    size = path.stat().st_size
    for keep in (size // 3, size // 2, size - 100):
        cut = fac.truncated_copy(path, tmp_path / f"cut{keep}.nwb", keep)
        with pytest.raises(ReaderError, match=rf"^{cut}: "):
            read_nwb(cut)


def tiny_bold(folder: Path, n_vols: int = 12, gz: bool = False) -> tuple[Path, Path]:
    """A 6x6x4 BOLD run (TR 2 s) and a 2-parcel labels atlas on the same grid."""
    rng = np.random.default_rng(1)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    bold = nib.Nifti1Image((1000 + rng.normal(0, 5, (6, 6, 4, n_vols))).astype(np.float32), affine)
    bold.header.set_xyzt_units("mm", "sec")
    bold.header["pixdim"][4] = 2.0
    labels = np.zeros((6, 6, 4), np.int16)
    labels[:3] = 1
    labels[3:] = 2
    ext = ".nii.gz" if gz else ".nii"
    paths = folder / f"bold{ext}", folder / f"atlas{ext}"
    nib.save(bold, paths[0])
    nib.save(nib.Nifti1Image(labels, affine), paths[1])
    return paths


@pytest.mark.parametrize("gz", [False, True], ids=["nii", "nii.gz"])
def test_nifti_shorter_than_its_header_is_an_error(gz, tmp_path):
    bold, atlas = tiny_bold(tmp_path, gz=gz)
    assert len(read_fmri(bold, atlas).bold) == 12
    cut = tmp_path / ("cut.nii.gz" if gz else "cut.nii")
    cut.write_bytes(bold.read_bytes()[: int(bold.stat().st_size * 0.6)])
    with pytest.raises(ReaderError) as err:
        read_fmri(cut, atlas)
    assert str(err.value).startswith(f"{cut}: truncated")
