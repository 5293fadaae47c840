"""Readers: raw formats -> :class:`~neurofm.data.Recording`, called by name from one table.

:data:`READERS` maps a format's name to its reader; :func:`format_of` names the format of a
file, so ``READERS[format_of(path)](path, ...)`` reads any file neurofm knows. Every reader
takes the thing it reads first and keyword options after (``sha256``, ``recording_id``,
``provenance``...), like MNE's ``read_raw_*``:

| name     | reader                       | reads                                      |
|----------|------------------------------|--------------------------------------------|
| nwb      | :func:`~.nwb.read_nwb`       | an NWB file (or an http(s) URL, streamed)  |
| eeg      | :func:`~.eeg.read_eeg`       | an EEG file in any format MNE reads        |
| fmri     | :func:`~.fmri.read_fmri`     | a 4-D BOLD NIfTI, reduced to atlas parcels |
| eeg-fmri | :func:`~.fmri.read_eeg_fmri` | an EEG file and a BOLD NIfTI together      |
| bids-run | :func:`~.fmri.read_bids_run` | one run of a BIDS dataset                  |
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from neurofm.data.recording import Recording
from neurofm.readers.eeg import read_eeg
from neurofm.readers.fmri import read_bids_run, read_eeg_fmri, read_fmri
from neurofm.readers.nwb import read_nwb
from neurofm.sources.bids import EEG_EXTENSIONS, NIFTI_EXTENSIONS, has_suffix

__all__ = [
    "READERS",
    "format_of",
    "read",
    "read_bids_run",
    "read_eeg",
    "read_eeg_fmri",
    "read_fmri",
    "read_nwb",
    "reader_for",
]

#: Every reader, by the name of what it reads.
READERS: dict[str, Callable[..., Recording]] = {
    "nwb": read_nwb,
    "eeg": read_eeg,
    "fmri": read_fmri,
    "eeg-fmri": read_eeg_fmri,
    "bids-run": read_bids_run,
}


def format_of(path: str | os.PathLike[str]) -> str:
    """The :data:`READERS` name for a file, from its name.

    EEG extensions (``.vhdr``, ``.edf``, ``.bdf``, ``.set``, ``.fif``...) are ``"eeg"``,
    ``.nii``/``.nii.gz`` ``"fmri"``; anything else is ``"nwb"``, whose reader says clearly
    what is wrong with a file that is not NWB.

    Parameters
    ----------
    path : str or Path
        The file (it need not exist).

    Returns
    -------
    str
    """
    if has_suffix(path, EEG_EXTENSIONS):
        return "eeg"
    if has_suffix(path, NIFTI_EXTENSIONS):
        return "fmri"
    return "nwb"


def reader_for(path: str | os.PathLike[str]) -> Callable[..., Recording]:
    """The reader of a file: ``READERS[format_of(path)]``.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    callable
        ``read_nwb``, ``read_eeg`` or ``read_fmri``.
    """
    return READERS[format_of(path)]


def read(path: str | os.PathLike[str], **options: Any) -> Recording:
    """Read any file neurofm knows into a :class:`~neurofm.data.Recording` (in memory).

    The reader is picked by the file's type (:func:`format_of`): an NWB file goes to
    :func:`~neurofm.readers.nwb.read_nwb`, an EEG file (``.vhdr``, ``.edf``, ``.bdf``,
    ``.set``, ``.fif``...) to :func:`~neurofm.readers.eeg.read_eeg`, a 4-D BOLD NIfTI to
    :func:`~neurofm.readers.fmri.read_fmri` (which needs ``atlas=``).

    Parameters
    ----------
    path : str or Path
        The file.
    **options
        Keyword options of that reader (``preprocessing=`` for EEG, ``atlas=`` for fMRI...).

    Returns
    -------
    Recording

    Raises
    ------
    ReaderError
        A missing or unreadable file, or one of no format neurofm reads (naming the file).

    Examples
    --------
    >>> import neurofm
    >>> rec = neurofm.read("raw/sub-S0/sub-S0_ses-20240304_ecephys.nwb")  # doctest: +SKIP
    """
    return reader_for(path)(path, **options)
