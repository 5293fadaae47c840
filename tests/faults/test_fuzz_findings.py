"""Each hole the fuzzer found, replayed as a fixed input (issue 14.7: "fix the readers where the
fuzz finds holes"). Every one of these was a traceback or a hang before its fix."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fuzzing import Mutation, write_seeds

from neurofm.errors import ReaderError
from neurofm.readers.eeg import read_eeg
from neurofm.readers.fmri import read_fmri
from neurofm.readers.nwb import read_nwb


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict:
    return {s.name: s for s in write_seeds(tmp_path_factory.mktemp("seeds"))}


def mutant(seeds: dict, folder: Path, mutation: Mutation) -> Path:
    """Write the seed's files into ``folder`` with ``mutation`` applied; returns the main file."""
    seed = seeds[mutation.seed]
    for name, data in seed.files.items():
        (folder / name).write_bytes(mutation.apply(data) if name == mutation.file else data)
    return folder / seed.main


@pytest.mark.parametrize(
    "span, reason",
    [
        ((71, 204), "KeyError: 'Unable to synchronously open object (bad object header"),
        ((134, 334), "RuntimeError: Unable to get group info (wrong B-tree signature)"),
    ],
)
def test_nwb_with_a_damaged_object_header(span, reason, seeds, tmp_path):
    """h5py raised KeyError/RuntimeError (not OSError) from the first look at the file."""
    path = mutant(seeds, tmp_path, Mutation("nwb", "seed.nwb", "zero_header", list(span), []))
    with pytest.raises(ReaderError) as err:
        read_nwb(path)
    assert str(err.value).startswith(f"{path}: truncated or corrupt HDF5 file ({reason}")


def test_fif_whose_tag_chain_loops_is_an_error_not_a_hang(seeds, tmp_path):
    """MNE walked a damaged FIF tag chain forever (the next tag pointing back)."""
    path = mutant(seeds, tmp_path, Mutation("fif", "seed_raw.fif", "zero_header", [51, 126], []))
    began = time.monotonic()
    with pytest.raises(ReaderError) as err:
        read_eeg(path)
    assert time.monotonic() - began < 10
    assert str(err.value) == (
        f"{path}: cannot read as EEG (damaged FIF file: the chain of tags loops back to byte 104)"
    )


def test_atlas_with_negative_labels(seeds, tmp_path):
    """Flipped header bytes (scaling) gave negative labels: an IndexError in the voxel counts."""
    flips = Mutation(
        "nifti",
        "atlas.nii",
        "flip",
        [75, 91, 160, 329, 390, 421],
        [0x08, 0x05, 0xC8, 0x27, 0x5D, 0xD1],
    )
    mutant(seeds, tmp_path, flips)
    with pytest.raises(ReaderError) as err:
        read_fmri(tmp_path / "bold.nii", tmp_path / "atlas.nii")
    assert str(err.value) == (
        f"{tmp_path / 'atlas.nii'}: atlas values: labels must be integers from 0 (background) "
        "to 2^31-1, got -12030 to 95"
    )


@pytest.mark.parametrize("cut", [383, 540])
def test_truncated_atlas(cut, seeds, tmp_path):
    """nibabel's OSError from a short atlas escaped (the data offset is 352, not vox_offset 0)."""
    mutant(seeds, tmp_path, Mutation("nifti", "atlas.nii", "truncate", [cut], []))
    with pytest.raises(ReaderError) as err:
        read_fmri(tmp_path / "bold.nii", tmp_path / "atlas.nii")
    assert str(err.value) == (
        f"{tmp_path / 'atlas.nii'}: truncated: the header declares 5x5x4 voxels of int16 from "
        f"byte 352 (552 bytes in all) but the file has {cut} bytes"
    )


@pytest.mark.parametrize(
    "flips",
    [
        (
            [1732, 8190, 18953, 22718, 29714, 32297, 43112],
            [0x72, 0xB1, 0x9F, 0xC7, 0xA3, 0x3F, 0xB5],
        ),
        ([1312, 9557, 12066, 12384, 43463], [0x06, 0x80, 0xD2, 0xC1, 0x63]),
    ],
    ids=["segfault", "endless-loop"],
)
def test_nwb_that_crashes_or_hangs_the_hdf5_library(flips, seeds, tmp_path, monkeypatch):
    """Damage in attribute storage made HDF5 segfault (the first) or loop forever in C (the
    second), in the reading process itself: no except clause can catch either. The file is now
    walked in a child process first (``probe_hdf5``)."""
    from neurofm.data import storage

    monkeypatch.setattr(storage, "PROBE_TIMEOUT", 5.0)
    path = mutant(seeds, tmp_path, Mutation("nwb", "seed.nwb", "flip", *flips))
    began = time.monotonic()
    with pytest.raises(ReaderError) as err:
        read_nwb(path)
    assert str(err.value).startswith(f"{path}: ")
    assert time.monotonic() - began < 60
    # and verify/info treat a damaged recording file the same way: reported, not fatal
    from neurofm.data.recording import check_integrity

    assert check_integrity(path).problems[0].startswith(f"{path}: ")
