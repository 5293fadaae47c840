"""neurofm.readers: one table of readers, called by name; the format of a file from its name."""

from __future__ import annotations

import pytest

from neurofm.errors import ReaderError
from neurofm.readers import READERS, format_of, reader_for
from neurofm.readers.eeg import read_eeg
from neurofm.readers.fmri import read_bids_run, read_eeg_fmri, read_fmri
from neurofm.readers.nwb import read_nwb


def test_every_reader_is_in_the_table_by_name():
    assert READERS == {
        "nwb": read_nwb,
        "eeg": read_eeg,
        "fmri": read_fmri,
        "eeg-fmri": read_eeg_fmri,
        "bids-run": read_bids_run,
    }


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("sub-1_ses-2_ecephys.nwb", "nwb"),
        ("rec.vhdr", "eeg"),
        ("REC.EDF", "eeg"),
        ("raw.fif.gz", "eeg"),
        ("sub-01_task-rest_bold.nii.gz", "fmri"),
        ("bold.nii", "fmri"),
        ("notes.txt", "nwb"),  # anything else: the NWB reader says what is wrong with it
    ],
)
def test_format_of_a_file_name(name, fmt, tmp_path):
    assert format_of(tmp_path / name) == fmt
    assert reader_for(name) is READERS[fmt]


def test_fmri_without_an_atlas_names_the_file(tmp_path):
    bold = tmp_path / "bold.nii.gz"
    with pytest.raises(ReaderError) as err:
        read_fmri(bold, None)
    assert str(err.value) == (
        f"{bold}: atlas: a NIfTI file is reduced to parcels, pass an atlas (--atlas)"
    )
