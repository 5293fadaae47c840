"""Recording -> MNE: :func:`to_mne` gives back what :func:`neurofm.readers.eeg.read_eeg` read."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from neurofm.data.recording import Recording
from neurofm.data.signals import RegularSeries
from neurofm.errors import InvalidDataError

log = logging.getLogger(__name__)

__all__ = ["to_mne"]


def to_mne(
    recording: Recording,
    signal: str = "eeg",
    annotations: Sequence[str] = ("events", "volumes"),
) -> Any:
    """An ``mne.io.RawArray`` of a Recording's EEG, with channel types, positions, bad
    channels and annotations: what :func:`read_eeg` read, back in MNE's hands.

    Parameters
    ----------
    recording : Recording
        In memory or lazy (the signal is loaded), or a window of one.
    signal : str
        The :class:`RegularSeries` to convert.
    annotations : sequence of str
        Interval signals that become annotations (missing ones are skipped); their labels are
        the descriptions.

    Returns
    -------
    mne.io.RawArray
        Data in float64 volts, ``info["sfreq"]`` the series' rate; annotations count from the
        series' first sample, as in the original file.
    """
    import mne

    if signal not in recording:
        regular = [n for n in recording if recording[n].kind == "regular"]
        hint = (
            f"; its sampled series: {', '.join(regular)} (pass signal=NAME)"
            if regular
            else "; it holds no sampled series, so there is nothing for MNE"
        )
        raise InvalidDataError(
            f"recording {recording.id!r}: to_mne converts an EEG-like RegularSeries, and there "
            f"is no signal {signal!r} (signals: {', '.join(recording)}){hint}"
        )
    series = recording[signal].load()
    if not isinstance(series, RegularSeries):
        raise InvalidDataError(
            f"recording {recording.id!r}: signal {signal!r} is a {type(series).__name__}, "
            "expected a RegularSeries"
        )
    info_cols = series.channel_info
    names = [str(c) for c in series.channels]
    types = [str(t) for t in info_cols.get("type", ["eeg"] * len(names))]
    info = mne.create_info(names, series.rate, types)
    if recording.metadata.extra.get("line_freq") is not None:
        info["line_freq"] = float(recording.metadata.extra["line_freq"])
    data = np.asarray(series.data, dtype=np.float64).T
    raw = mne.io.RawArray(data, info, verbose=False)
    if all(k in info_cols for k in ("x", "y", "z")):
        pos = np.column_stack([info_cols["x"], info_cols["y"], info_cols["z"]]).astype(float)
        ch_pos = {
            n: p
            for n, p, t in zip(names, pos, types, strict=True)
            if np.isfinite(p).all() and t in ("eeg", "seeg", "ecog", "dbs")
        }
        if ch_pos:
            raw.set_montage(
                mne.channels.make_dig_montage(ch_pos=ch_pos, coord_frame="head"),
                on_missing="ignore",
                verbose=False,
            )
    if "bad" in info_cols:
        raw.info["bads"] = [n for n, b in zip(names, info_cols["bad"], strict=True) if bool(b)]
    onsets, durations, descriptions = [], [], []
    for name in annotations:
        if name not in recording:
            continue
        table = recording[name].load()
        onsets.append(table.start - series.start)
        durations.append(table.end - table.start)
        labels = table.labels if table.labels is not None else np.full(len(table), name)
        descriptions.append(np.asarray(labels, dtype=str))
    if onsets:
        onset = np.concatenate(onsets)
        order = np.argsort(onset, kind="stable")
        raw.set_annotations(
            mne.Annotations(
                onset[order], np.concatenate(durations)[order], np.concatenate(descriptions)[order]
            )
        )
    meas = recording.metadata.session_start_time
    if meas:
        try:
            when = dt.datetime.fromisoformat(meas)
            raw.set_meas_date(when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc))
        except (ValueError, RuntimeError):
            log.info(
                "recording %s: session_start_time %r not used as meas_date", recording.id, meas
            )
    return raw
