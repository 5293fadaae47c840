"""Which channels of an EEG series a model may use: one rule for SAMBA and its baseline.

A channel is used when its type (``channel_info["type"]``, as the EEG reader stores it from
MNE or a BIDS ``_channels.tsv``) is one of the wanted types and it is not marked bad
(``channel_info["bad"]``). A series without types is taken to be all EEG; one without a ``bad``
column has no bad channel. Channels keep the series' order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from neurofm.data.signals import RegularSeries
from neurofm.errors import InvalidDataError

log = logging.getLogger(__name__)

__all__ = ["eeg_channels"]


def eeg_channels(
    series: RegularSeries, types: Sequence[str] = ("eeg",), *, where: str = "EEG"
) -> np.ndarray:
    """Column indices of the channels of ``series`` to use: of the given types, not bad.

    Parameters
    ----------
    series : RegularSeries
        An EEG series; its ``channel_info`` may hold ``type`` (str per channel) and ``bad``
        (bool per channel) columns.
    types : sequence of str
        Channel types to keep (default EEG only: EOG, ECG, EMG... are not brain signals).
    where : str
        What the series is, for the error message (e.g. ``"recording 'sub-01': 'eeg'"``).

    Returns
    -------
    numpy.ndarray
        Sorted int64 indices into the series' channels.

    Raises
    ------
    InvalidDataError
        If no channel is left: none of the wanted types, or all of them marked bad.
    """
    n = series.data.shape[1]
    keep = np.ones(n, dtype=bool)
    info = getattr(series, "channel_info", None) or {}
    if "type" in info:
        keep &= np.isin(np.asarray(info["type"]).astype(str), list(types))
    else:
        log.debug("%s has no channel types: every channel is taken as %s", where, list(types))
    if "bad" in info:
        keep &= ~np.asarray(info["bad"], dtype=bool)
    if not keep.any():
        found = sorted(set(np.asarray(info["type"]).astype(str))) if "type" in info else []
        bad = int(np.sum(np.asarray(info["bad"], dtype=bool))) if "bad" in info else 0
        raise InvalidDataError(
            f"{where}: no channel of type {list(types)} left to use (types found: {found}, "
            f"{bad} marked bad)"
        )
    return np.flatnonzero(keep)
