"""EEG files -> :class:`~neurofm.data.Recording` through MNE-Python; back with
:func:`neurofm.writers.to_mne`.

Any format ``mne.io.read_raw`` reads (EDF/BDF, BrainVision ``.vhdr``, FIF, EEGLAB ``.set``,
GDF, CNT...) is read; a file inside a BIDS dataset is read through ``mne_bids.read_raw_bids``,
which applies its sidecars (channel types and bad channels from ``_channels.tsv``, electrode
positions from ``_electrodes.tsv``, events from ``_events.tsv``).

What the Recording holds:

* ``eeg``: a :class:`RegularSeries` (time x channels, volts, float32 by default) of every
  non-stimulus channel, with per-channel ``channel_info``: ``type`` (eeg, eog, ecg, emg,
  misc...), electrode position ``x``, ``y``, ``z`` (metres, MNE head frame; NaN when unknown)
  and ``bad``;
* ``events``: every annotation and trigger (stimulus channels are turned into events) as
  :class:`Intervals` labelled by their description;
* ``volumes``: the scanner's volume markers (annotations matching ``volume_marker``, e.g.
  BrainVision ``R128``), kept apart so EEG and fMRI can be aligned on them.

A preprocessing chain (:class:`EEGPreprocessing`: bad channels, notch, band-pass,
re-reference, resample) is run by MNE before the data is stored, and every step with its
parameters is recorded in ``recording.provenance.extra["preprocessing"]``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
import unicodedata
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

import neurofm
from neurofm.data.recording import Metadata, Recording, provenance_from
from neurofm.data.signals import Intervals, RegularSeries, Signal
from neurofm.errors import InvalidDataError, NeuroFMError, ReaderError
from neurofm.readers.boundary import reader_boundary
from neurofm.sources.bids import (
    EEG_EXTENSIONS,
    bids_root_of,
    eeg_companions,
    entities_of,
    entity_string,
    files_sha256,
)
from neurofm.specs import EEGPreprocessing, load_yaml

log = logging.getLogger(__name__)

__all__ = [
    "EEG_EXTENSIONS",
    "VOLUME_MARKER",
    "EEGPreprocessing",
    "from_mne",
    "load_preprocessing",
    "read_eeg",
]

#: Default pattern (a regular expression, matched against the whole description) of scanner
#: volume markers: BrainVision's ``R128`` as MNE names it (``Response/R128``, or
#: ``Comment/R128`` after MNE's own BrainVision export), ``Volume/...`` and ``Scanner/...``
#: marker types, and the plain names used in BIDS events files.
VOLUME_MARKER = r"((Response|Comment|Stimulus)/)?R\s*128|(Volume|Scanner)(/.*)?|TR|volume|scanner"

# Channel names that give away a non-EEG channel in formats that store no channel types
# (EDF, BrainVision): MNE reads every channel of those as 'eeg'.
_NAME_TYPES = (
    (re.compile(r"^(ECG|EKG)\d*$", re.I), "ecg"),
    (re.compile(r"^([HV]?EOG\d*|EOG[LRHV]?\d*)$", re.I), "eog"),
    (re.compile(r"^EMG\d*$", re.I), "emg"),
)
_SKIP_TYPES = ("stim", "syst")


# --------------------------------------------------------------------------------------------
# preprocessing configuration
# --------------------------------------------------------------------------------------------


def _preprocessing(value: Any, where: str) -> EEGPreprocessing:
    if value is None:
        return EEGPreprocessing()
    if isinstance(value, EEGPreprocessing):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if not isinstance(value, Mapping):
        raise InvalidDataError(f"{where}: preprocessing must be a mapping, got {value!r}")
    try:
        return EEGPreprocessing.model_validate(dict(value))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = "".join(f".{p}" for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise InvalidDataError(f"{where}: preprocessing{loc}: {msg}") from None


def load_preprocessing(path: str | os.PathLike[str]) -> EEGPreprocessing:
    """Read an :class:`EEGPreprocessing` from a YAML file (a mapping of its fields).

    Raises
    ------
    SpecError
        Not YAML, not a mapping, or an unknown or invalid key; the message names the file and
        the key.
    """
    return load_yaml(path, EEGPreprocessing)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


@reader_boundary("EEG")
def read_eeg(
    path: str | os.PathLike[str],
    *,
    preprocessing: EEGPreprocessing | Mapping[str, Any] | None = None,
    recording_id: str | None = None,
    require_type: str = "eeg",
    channel_types: Mapping[str, str] | None = None,
    montage: str | os.PathLike[str] | None = "auto",
    volume_marker: str = VOLUME_MARKER,
    dtype: Any = np.float32,
    sha256: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    allow_truncated: bool = False,
) -> Recording:
    """Read an EEG file (any format MNE reads, or a BIDS EEG file) into a Recording.

    Parameters
    ----------
    path : str or Path
        ``.vhdr`` (BrainVision), ``.edf``, ``.bdf``, ``.fif``, ``.set`` (EEGLAB), ``.gdf``,
        ``.cnt``... A file named ``sub-*_eeg.*`` inside a BIDS dataset is read with mne-bids.
    preprocessing : EEGPreprocessing or dict, optional
        The MNE preprocessing chain to run (see :class:`EEGPreprocessing`); none by default.
    recording_id : str, optional
        Default: the BIDS entities (``sub-01_ses-01_task-rest_run-1``), else the file stem.
    require_type : str
        Channel type the file must have at least one of (``"eeg"``); else an error.
    channel_types : mapping of str to str, optional
        Channel name -> MNE type, applied after reading (``{"EKG": "ecg"}``). Without it,
        channels named like ECG/EKG, EOG/HEOG/VEOG, EMG are typed so in formats that store no
        types (EDF, BrainVision outside BIDS).
    montage : str, path or None
        Electrode positions when the file has none: ``"auto"`` (MNE's template 10-05 montage
        on the fsaverage head, matched case-insensitively; channels it lacks stay without
        position), a built-in montage name, a montage file (``read_custom_montage``), or None.
    volume_marker : str
        Regular expression matching the whole description of the scanner's volume markers.
    dtype : numpy dtype
        Storage type of the samples. float32 holds 24 bits of mantissa, the resolution of the
        best EEG amplifiers and more than EDF (16 bit) or BrainVision's float32 store.
    sha256 : str, optional
        Fingerprint of the source, when the caller computed it.
    provenance : mapping, optional
        Extra provenance fields.
    allow_truncated : bool
        Read an EDF/BDF file that holds fewer data records than its header declares, or a
        BrainVision data file cut short (part of a sample, markers past its end): MNE reads
        the complete samples, and the shortfall is recorded in
        ``provenance.extra["reader_warnings"]``. By default such a file is an error.

    Returns
    -------
    Recording
        In memory: ``eeg``, ``events`` and, if any markers are found, ``volumes``. Header
        strings with control characters (e.g. a NUL in an EDF channel label) are cleaned, and
        each change is listed in ``provenance.extra["cleaned_strings"]``; MNE's warnings about
        the file are kept in ``provenance.extra["reader_warnings"]``.

    Raises
    ------
    ReaderError
        Missing file, a format MNE cannot read, a truncated EDF/BDF file, channel names that
        control characters make unusable, or no channel of ``require_type``.
    InvalidDataError
        A preprocessing step that does not fit the file (unknown bad channel, a band edge at
        or above the Nyquist frequency, interpolation without electrode positions).
    """
    import mne

    path = Path(path)
    if path.is_dir():
        raise ReaderError(
            f"{path}: is a folder, expected an EEG file ({', '.join(EEG_EXTENSIONS)})"
        )
    if not path.is_file():
        raise ReaderError(f"{path}: no such file")
    config = _preprocessing(preprocessing, str(path))
    bids_root = bids_root_of(path)
    shortfall = _check_edf_size(path, allow_truncated) + _check_brainvision_size(
        path, allow_truncated
    )
    _check_fif_chain(path)
    raw, how, mne_warnings = _read_raw(path, bids_root)
    notes: dict[str, Any] = {"read_with": how}
    if shortfall or mne_warnings:
        notes["reader_warnings"] = shortfall + mne_warnings
    cleaned = _clean_strings(raw, path)
    if cleaned:
        notes["cleaned_strings"] = cleaned
    if channel_types:
        unknown = sorted(set(channel_types) - set(raw.ch_names))
        if unknown:
            raise InvalidDataError(
                f"{path}: channel_types: no channel {unknown[0]!r} in the file "
                f"(channels: {', '.join(raw.ch_names[:8])}{'...' if len(raw.ch_names) > 8 else ''})"
            )
        raw.set_channel_types(dict(channel_types), on_unit_change="ignore")
    elif how == "mne.io.read_raw" and set(raw.get_channel_types()) <= {"eeg", "stim", "misc"}:
        inferred = _types_from_names(raw.ch_names, raw.get_channel_types())
        if inferred:
            raw.set_channel_types(inferred, on_unit_change="ignore")
            notes["channel_types_from_names"] = inferred
    _stim_to_annotations(raw, path)
    picks = [i for i, t in enumerate(raw.get_channel_types()) if t not in _SKIP_TYPES]
    types = raw.get_channel_types()
    if not any(types[i] == require_type for i in picks):
        counts = {t: types.count(t) for t in sorted(set(types))}
        found = ", ".join(f"{t} x{n}" for t, n in counts.items()) or "none"
        raise ReaderError(
            f"{path}: channel types: no channel of type {require_type!r} (found: {found})"
        )
    raw.pick(picks)
    notes["montage"] = _apply_montage(raw, montage, path)
    steps = _run_preprocessing(raw, config, path)
    rec_id = recording_id or _default_id(path, bids_root)
    signals = _signals(raw, path, volume_marker, dtype)
    entities = entities_of(path) if bids_root is not None else {}
    meta = _metadata(raw, entities)
    prov = provenance_from(
        {
            "source_path": str(path.resolve()),
            "sha256": sha256 or files_sha256(eeg_companions(path)),
            "reader": "neurofm.readers.eeg",
            "neurofm_version": neurofm.__version__,
            "mne_version": mne.__version__,
            "format": _format_name(path),
            "preprocessing": steps,
            "volume_marker": volume_marker,
            **({"bids_root": str(bids_root), "bids_entities": entities} if bids_root else {}),
            **notes,
            **(dict(provenance) if provenance else {}),
        }
    )
    return Recording(
        rec_id, signals, duration=raw.n_times / raw.info["sfreq"], metadata=meta, provenance=prov
    )


def from_mne(
    raw: Any,
    *,
    recording_id: str,
    preprocessing: EEGPreprocessing | Mapping[str, Any] | None = None,
    volume_marker: str = VOLUME_MARKER,
    dtype: Any = np.float32,
    provenance: Mapping[str, Any] | None = None,
) -> Recording:
    """A Recording from an ``mne.io.Raw`` already in memory (e.g. after custom artefact removal).

    The raw object is copied, never modified. Parameters as in :func:`read_eeg`.
    """
    import mne

    raw = raw.copy().load_data()
    where = f"<mne.io.Raw {recording_id}>"
    config = _preprocessing(preprocessing, where)
    _stim_to_annotations(raw, Path(where))
    raw.pick([i for i, t in enumerate(raw.get_channel_types()) if t not in _SKIP_TYPES])
    if not len(raw.ch_names):
        raise ReaderError(f"{where}: channel types: no data channels")
    steps = _run_preprocessing(raw, config, Path(where))
    prov = provenance_from(
        {
            "reader": "neurofm.readers.eeg.from_mne",
            "neurofm_version": neurofm.__version__,
            "mne_version": mne.__version__,
            "preprocessing": steps,
            "volume_marker": volume_marker,
            **(dict(provenance) if provenance else {}),
        }
    )
    return Recording(
        recording_id,
        _signals(raw, Path(where), volume_marker, dtype),
        duration=raw.n_times / raw.info["sfreq"],
        metadata=_metadata(raw, {}),
        provenance=prov,
    )


def _format_name(path: Path) -> str:
    name = path.name.lower()
    for ext, fmt in (
        (".vhdr", "BrainVision"),
        (".edf", "EDF"),
        (".bdf", "BDF"),
        (".set", "EEGLAB"),
        (".fif", "FIF"),
        (".fif.gz", "FIF"),
        (".gdf", "GDF"),
        (".cnt", "CNT"),
    ):
        if name.endswith(ext):
            return fmt
    return path.suffix.lstrip(".")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _check_edf_size(path: Path, allow_truncated: bool) -> list[str]:
    """Compare an EDF/BDF file's size with what its header declares, before MNE reads it.

    MNE counts data records from the file size when the header's count does not fit, so a
    truncated file would otherwise be read, silently, as a shorter recording.

    Returns
    -------
    list of str
        Warnings for provenance (a file cut short when ``allow_truncated``, bytes after the
        last record); other formats give [].

    Raises
    ------
    ReaderError
        A header that cannot be parsed, or a file shorter than its header declares.
    """
    width = {".edf": 2, ".bdf": 3}.get(path.suffix.lower())
    if width is None:
        return []
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(256)
        if len(head) < 256:
            raise ReaderError(
                f"{path}: truncated: {size} bytes, shorter than the 256-byte EDF/BDF header"
            )

        def number(lo: int, hi: int, field: str) -> int:
            text = head[lo:hi].decode("ascii", "replace").strip()
            try:
                return int(text)
            except ValueError:
                raise ReaderError(
                    f"{path}: cannot read as EEG (EDF/BDF header: field {field!r} must be an "
                    f"integer, got {text!r})"
                ) from None

        header_bytes = number(184, 192, "number of bytes in header")
        n_records = number(236, 244, "number of data records")
        n_signals = number(252, 256, "number of signals")
        if n_signals <= 0 or header_bytes != 256 * (n_signals + 1):
            raise ReaderError(
                f"{path}: cannot read as EEG (EDF/BDF header: {n_signals} signals need a "
                f"header of {256 * (n_signals + 1)} bytes, the header declares {header_bytes})"
            )
        fh.seek(256 + 216 * n_signals)
        field = fh.read(8 * n_signals)
    if len(field) < 8 * n_signals:
        raise ReaderError(
            f"{path}: truncated: {size} bytes, shorter than its {header_bytes}-byte header"
        )
    try:
        samples = [int(field[8 * i : 8 * i + 8].decode("ascii")) for i in range(n_signals)]
    except (UnicodeDecodeError, ValueError):
        raise ReaderError(
            f"{path}: cannot read as EEG (EDF/BDF header: field 'number of samples in each "
            f"data record' must hold integers, got {field[:64]!r})"
        ) from None
    if min(samples) < 0 or sum(samples) == 0:
        raise ReaderError(
            f"{path}: cannot read as EEG (EDF/BDF header: samples per data record must be "
            f">= 0 with at least one > 0, got {samples[:8]})"
        )
    record = sum(samples) * width
    complete = max(size - header_bytes, 0) // record
    if n_records == -1:  # allowed while recording: MNE counts the records from the size
        leftover = max(size - header_bytes, 0) - complete * record
        return [f"{path}: the header does not say how many data records; {complete} read"] + (
            [f"{path}: {leftover} bytes after the last complete data record ignored"]
            if leftover
            else []
        )
    if n_records < 0:
        raise ReaderError(
            f"{path}: cannot read as EEG (EDF/BDF header: field 'number of data records' must "
            f"be >= 0, got {n_records})"
        )
    expected = header_bytes + n_records * record
    if size < expected:
        if not allow_truncated:
            raise ReaderError(
                f"{path}: truncated: the header declares {n_records} data records of {record} "
                f"bytes ({expected} bytes in all) but the file has {size} bytes ({complete} "
                "complete records)"
            )
        return [
            f"{path}: truncated: read {complete} of {n_records} data records ({size} of "
            f"{expected} bytes); the rest of the recording is missing"
        ]
    if size > expected:
        return [f"{path}: {size - expected} bytes after the last declared data record ignored"]
    return []


#: Bytes per value of BrainVision's binary formats.
_BV_BYTES = {"IEEE_FLOAT_32": 4, "INT_16": 2, "UINT_16": 2, "INT_32": 4}


def _vhdr_fields(path: Path) -> dict[str, str]:
    """``Key=Value`` lines of a BrainVision header or marker file, sections and comments
    dropped (the first of a repeated key wins). Not configparser: a BrainVision file's first
    line is not a section header."""
    fields: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith((";", "[")):
            fields.setdefault(key.strip(), value.strip())
    return fields


def _whole(text: str) -> int | None:
    """``text`` as a non-negative integer written in ASCII digits, else None."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _check_brainvision_size(path: Path, allow_truncated: bool) -> list[str]:
    """Compare a BrainVision recording's data file with its header and markers, before MNE
    reads it: MNE counts samples from the data file's size, so a file cut short would be read
    as a shorter recording and the markers past its end dropped with a warning only.

    Returns
    -------
    list of str
        Warnings for provenance (a file cut short when ``allow_truncated``); other formats and
        text (ASCII) data give [].

    Raises
    ------
    ReaderError
        A data file that is not a whole number of samples, or markers past its end.
    """
    if path.suffix.lower() != ".vhdr":
        return []
    header = _vhdr_fields(path)
    width = _BV_BYTES.get(header.get("BinaryFormat", "").upper())
    n_channels = header.get("NumberOfChannels", "")
    if header.get("DataFormat", "BINARY").upper() != "BINARY" or not width:
        return []  # ASCII data, or a header MNE itself will reject with its own message
    data = path.parent / header.get("DataFile", "")
    channels = _whole(n_channels)
    if channels is None or channels < 1 or not data.is_file():
        return []  # MNE names what is missing
    sample = channels * width
    size = data.stat().st_size
    n_samples = size // sample
    problems = []
    if size % sample:
        problems.append(
            f"{path}: DataFile {data.name}: {size} bytes is not a whole number of samples "
            f"({n_channels} channels x {width} bytes); the file looks truncated"
        )
    markers = path.parent / header.get("MarkerFile", "")
    if header.get("MarkerFile") and markers.is_file():
        positions = []
        for key, value in _vhdr_fields(markers).items():
            fields = value.split(",")
            position = _whole(fields[2]) if key.startswith("Mk") and len(fields) > 2 else None
            if position is not None:
                positions.append(position)  # 1-based data point
        if positions and max(positions) > n_samples:
            past = sum(p > n_samples for p in positions)
            problems.append(
                f"{path}: DataFile {data.name} holds {n_samples} samples but {markers.name} "
                f"has {past} marker(s) after them (up to sample {max(positions)}); the data "
                "file looks truncated"
            )
    if problems and not allow_truncated:
        raise ReaderError(problems[0])
    return problems


#: Tags a FIF file may hold, at most (a raw file has a few per second of data).
_MAX_FIF_TAGS = 10_000_000


def _check_fif_chain(path: Path) -> None:
    """Walk a FIF file's chain of tags before MNE does: a damaged chain must be an error.

    When a FIF file's tag directory is damaged, MNE walks the chain of tags (each header says
    where the next one is) with no guard, and a chain that points back to a tag already seen
    makes it loop forever (found by fuzzing). Walking it here costs one 16-byte read per tag.

    The same walk finds a file cut short (a copy that stopped early), which MNE reports as
    "cannot reshape array" or "buffer size must be a multiple of element size": a tag that the
    next one follows, whose data runs past the end of the file. (Uncompressed files only: a
    ``.fif.gz`` has no size to compare with short of decompressing it.)

    Raises
    ------
    ReaderError
        A chain that loops back on itself, or absurdly long; a tag past the end of the file.
    """
    import gzip
    import struct

    name = path.name.lower()
    if not name.endswith((".fif", ".fif.gz")):
        return
    opener = gzip.open if name.endswith(".gz") else open
    file_size = None if name.endswith(".gz") else path.stat().st_size
    seen: set[int] = set()
    pos: int | None = 0
    try:
        with opener(path, "rb") as fh:
            while pos is not None and pos >= 0:
                if pos in seen:
                    raise ReaderError(
                        f"{path}: cannot read as EEG (damaged FIF file: the chain of tags loops "
                        f"back to byte {pos})"
                    )
                if len(seen) >= _MAX_FIF_TAGS:
                    raise ReaderError(
                        f"{path}: cannot read as EEG (damaged FIF file: more than "
                        f"{_MAX_FIF_TAGS} tags)"
                    )
                seen.add(pos)
                fh.seek(pos)
                header = fh.read(16)
                if file_size is not None and 0 < len(header) < 16:
                    _truncated(path, pos, file_size)
                if len(header) != 16:
                    return
                _, _, size, following = struct.unpack(">iIii", header)
                # a tag followed by the next one (MNE writes raw files so) must fit the file
                if file_size is not None and following == 0 and pos + 16 + size > file_size:
                    _truncated(path, pos, file_size, size)
                if following == 0:  # FIFFV_NEXT_SEQ: the next tag follows this one
                    pos = pos + 16 + size
                else:
                    pos = following if following > 0 else None
    except (OSError, EOFError) as exc:  # unreadable or a damaged gzip stream: MNE says more
        log.debug("%s: FIF tag walk stopped (%s)", path, exc)


def _truncated(path: Path, pos: int, file_size: int, size: int | None = None) -> None:
    what = "a tag header" if size is None else f"a tag of {size:,} bytes"
    raise ReaderError(
        f"{path}: cannot read as EEG (the FIF file looks truncated or damaged: {what} at byte "
        f"{pos:,} runs past its end at byte {file_size:,}; copy the file again)"
    )


def _clean_text(text: str) -> str:
    return "".join(c for c in text if unicodedata.category(c) != "Cc").strip()


def _clean_strings(raw: Any, path: Path) -> list[dict[str, str]]:
    """Remove control characters (NUL, ...) from channel names and annotation descriptions.

    HDF5 cannot store a NUL inside a string, and a control character in a label is a damaged
    header, never meant. Returns the changes, for provenance.

    Raises
    ------
    ReaderError
        If cleaned channel names are empty or no longer unique.
    """
    changes: list[dict[str, str]] = []
    names = {n: _clean_text(n) for n in raw.ch_names if _clean_text(n) != n}
    if names:
        after = [names.get(n, n) for n in raw.ch_names]
        if "" in after or len(set(after)) != len(after):
            raise ReaderError(
                f"{path}: channel names: {sorted(names)!r} hold control characters, and without "
                "them the names are empty or no longer unique"
            )
        raw.rename_channels(names, verbose=False)
        changes += [{"field": "channel name", "was": a, "now": b} for a, b in names.items()]
    descriptions = raw.annotations.description
    for i, text in enumerate(list(descriptions)):
        clean = _clean_text(str(text))
        if clean != text:
            descriptions[i] = clean
            changes.append({"field": "annotation", "was": str(text), "now": clean})
    subject = raw.info.get("subject_info") or {}
    for key in ("his_id", "first_name", "last_name"):
        value = subject.get(key)
        if isinstance(value, str) and _clean_text(value) != value:
            subject[key] = _clean_text(value)
            changes.append({"field": f"subject_info.{key}", "was": value, "now": subject[key]})
    for change in changes:
        log.warning("%s: %s %r had control characters; read as %r", path, *change.values())
    return changes


def _read_raw(path: Path, bids_root: Path | None) -> tuple[Any, str, list[str]]:
    """The file as a preloaded mne Raw, and MNE's warnings about the file (also logged)."""
    import mne

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if bids_root is not None:
                from mne_bids import BIDSPath, get_bids_path_from_fname, read_raw_bids

                # The file name gives the entities; the root makes mne-bids find the sidecars
                # (channels, electrodes, events) that hold types, positions and events.
                parsed = get_bids_path_from_fname(path, check=False, verbose=False)
                bp = BIDSPath(
                    **parsed.entities,
                    datatype=parsed.datatype,
                    suffix=parsed.suffix,
                    extension=parsed.extension,
                    root=bids_root,
                    check=False,
                )
                try:
                    raw = read_raw_bids(bp, verbose=False)
                except RuntimeError as exc:
                    if "Channel mismatch" in str(exc):
                        _channel_mismatch(path, bp)
                    raise
                how = "mne_bids.read_raw_bids"
                # the sidecar BIDS inheritance gives this file (beside it or further up)
                sidecar = bp.find_matching_sidecar(extension=".json", on_error="ignore")
                if sidecar is not None:
                    _check_sidecar(Path(sidecar), path, raw)
            else:
                raw = mne.io.read_raw(path, preload=False, verbose=False)
                how = "mne.io.read_raw"
            raw.load_data(verbose=False)
        except NeuroFMError:
            raise
        except Exception as exc:  # MNE raises many types for unreadable or unsupported files
            raise ReaderError(f"{path}: cannot read as EEG ({_reason(exc)})") from None
    for w in caught:
        log.info("%s: mne: %s", path, w.message)
    if raw.n_times == 0:
        raise ReaderError(f"{path}: data: the recording holds no samples")
    texts = list(dict.fromkeys(" ".join(str(w.message).split())[:300] for w in caught))
    return raw, how, [f"{path}: mne: {t}" for t in texts]


def _channel_mismatch(path: Path, bp: Any) -> None:
    """Say which names differ when a BIDS ``_channels.tsv`` and its data file disagree
    (mne-bids says only that they do, and how to call it to go on)."""
    import mne

    tsv = bp.find_matching_sidecar(suffix="channels", extension=".tsv", on_error="ignore")
    try:
        listed = [row.split("\t")[0] for row in Path(tsv).read_text().splitlines()[1:] if row]
        held = mne.io.read_raw(path, preload=False, verbose=False).ch_names
    except Exception:  # noqa: BLE001 - the original error is clearer than a second one
        return
    extra = [n for n in listed if n not in held]
    missing = [n for n in held if n not in listed]
    raise ReaderError(
        f"{tsv}: name: the channels listed differ from those of {path.name}"
        + (f"; listed, not in the data: {', '.join(extra)}" if extra else "")
        + (f"; in the data, not listed: {', '.join(missing)}" if missing else "")
        + ("" if extra or missing else "; the same names in another order")
        + "; make the name column list the data file's channels"
    )


def _check_sidecar(sidecar: Path, path: Path, raw: Any) -> None:
    """A BIDS EEG file's ``_eeg.json`` sidecar against its data (mne-bids reads the data's own
    rate and channels and compares neither): another ``SamplingFrequency`` means one of the
    two describes another recording (an error); another ``EEGChannelCount`` is a common
    slip of hand-written sidecars (a warning; the channels read are the data's)."""
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # mne-bids has read (or rejected) the sidecar itself
    if not isinstance(meta, dict):
        return
    declared, sfreq = meta.get("SamplingFrequency"), float(raw.info["sfreq"])
    if isinstance(declared, int | float) and not math.isclose(declared, sfreq, rel_tol=1e-6):
        raise ReaderError(
            f"{sidecar}: SamplingFrequency: {declared:g} Hz, but {path.name} holds data at "
            f"{sfreq:g} Hz"
        )
    count, n_eeg = meta.get("EEGChannelCount"), raw.get_channel_types().count("eeg")
    if isinstance(count, int) and not isinstance(count, bool) and count != n_eeg:
        log.warning(
            "%s: EEGChannelCount is %d but %s holds %d EEG channels; reading those",
            sidecar,
            count,
            path.name,
            n_eeg,
        )


def _types_from_names(names: Sequence[str], types: Sequence[str]) -> dict[str, str]:
    out = {}
    for name, kind in zip(names, types, strict=True):
        if kind != "eeg":
            continue
        for pattern, new in _NAME_TYPES:
            if pattern.match(name.strip()):
                out[name] = new
                break
    return out


def _stim_to_annotations(raw: Any, path: Path) -> None:
    """Trigger channels become annotations (labelled by their code) and are dropped from data."""
    import mne

    stim = [n for n, t in zip(raw.ch_names, raw.get_channel_types(), strict=True) if t == "stim"]
    if not stim:
        return
    try:
        events = mne.find_events(raw, stim_channel=stim, shortest_event=1, verbose=False)
    except Exception as exc:  # a malformed trigger channel must not hide the EEG
        log.warning("%s: trigger channels %s not decoded (%s)", path, stim, _reason(exc))
        return
    if len(events):
        found = mne.annotations_from_events(
            events,
            raw.info["sfreq"],
            first_samp=raw.first_samp,
            orig_time=raw.annotations.orig_time,
        )
        raw.set_annotations(raw.annotations + found)


def _apply_montage(raw: Any, montage: str | os.PathLike[str] | None, path: Path) -> str:
    """Give electrodes positions when the file has none; returns what was done (provenance)."""
    import mne

    eeg = [i for i, t in enumerate(raw.get_channel_types()) if t == "eeg"]
    locs = np.array([raw.info["chs"][i]["loc"][:3] for i in eeg]).reshape(-1, 3)
    have = np.isfinite(locs).all(axis=1) & (np.abs(locs).sum(axis=1) > 0)
    if montage is None:
        return "none"
    if montage == "auto":
        if have.any():
            return "from file"
        builtin = mne.channels.get_builtin_montages()
        # fsaverage_1005 (MNE >= 1.13) is the template the deprecated standard_1005 points to.
        montage = "fsaverage_1005" if "fsaverage_1005" in builtin else "standard_1005"
        on_missing = "ignore"
    else:
        on_missing = "warn"
    try:
        if isinstance(montage, str) and montage in mne.channels.get_builtin_montages():
            dig = mne.channels.make_standard_montage(montage)
        else:
            dig = mne.channels.read_custom_montage(montage)
    except Exception as exc:
        raise ReaderError(
            f"{path}: montage: cannot load {str(montage)!r} ({_reason(exc)})"
        ) from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw.set_montage(dig, match_case=False, on_missing=on_missing, verbose=False)
    for w in caught:
        log.info("%s: montage %s: %s", path, montage, w.message)
    return str(montage)


def _run_preprocessing(raw: Any, config: EEGPreprocessing, path: Path) -> list[dict[str, Any]]:
    """Run the chain with MNE and return the steps as they were run (for provenance)."""
    steps: list[dict[str, Any]] = []
    if config.is_empty:
        return steps
    nyquist = raw.info["sfreq"] / 2
    for key in ("l_freq", "h_freq"):
        value = getattr(config, key)
        if value is not None and value >= nyquist:
            raise InvalidDataError(
                f"{path}: preprocessing.{key}: {value} Hz is at or above the Nyquist frequency "
                f"({nyquist:g} Hz at {raw.info['sfreq']:g} Hz)"
            )
    high_notch = [f for f in config.notch if f >= nyquist]
    if high_notch:
        raise InvalidDataError(
            f"{path}: preprocessing.notch: {high_notch[0]} Hz is at or above the Nyquist "
            f"frequency ({nyquist:g} Hz)"
        )
    bads = list(dict.fromkeys([*raw.info["bads"], *config.bad_channels]))
    unknown = [b for b in config.bad_channels if b not in raw.ch_names]
    if unknown:
        raise InvalidDataError(
            f"{path}: preprocessing.bad_channels: no channel {unknown[0]!r} in the file"
        )
    raw.info["bads"] = bads
    if bads:
        steps.append({"step": "mark_bads", "channels": bads})
    if config.notch:
        raw.notch_filter(config.notch, picks="all", verbose=False)
        steps.append({"step": "notch", "mne": "Raw.notch_filter", "freqs": list(config.notch)})
    if config.l_freq is not None or config.h_freq is not None:
        raw.filter(config.l_freq, config.h_freq, picks="all", verbose=False)
        steps.append(
            {
                "step": "filter",
                "mne": "Raw.filter",
                "l_freq": config.l_freq,
                "h_freq": config.h_freq,
                "method": "fir",
                "phase": "zero",
            }
        )
    if bads and config.bad_channel_action == "interpolate":
        eeg_bads = [b for b in bads if raw.get_channel_types([b])[0] == "eeg"]
        locs = np.array([raw.info["chs"][raw.ch_names.index(b)]["loc"][:3] for b in eeg_bads])
        if len(eeg_bads) and not (np.isfinite(locs).all() and (np.abs(locs).sum(axis=1) > 0).all()):
            raise InvalidDataError(
                f"{path}: preprocessing.bad_channel_action: cannot interpolate {eeg_bads} without "
                "electrode positions (set a montage, or use 'drop')"
            )
        raw.interpolate_bads(reset_bads=True, verbose=False)
        steps.append(
            {
                "step": "interpolate_bads",
                "mne": "Raw.interpolate_bads",
                "channels": bads,
                "method": "spline",
            }
        )
    elif bads and config.bad_channel_action == "drop":
        raw.drop_channels(bads)
        steps.append({"step": "drop_bads", "mne": "Raw.drop_channels", "channels": bads})
    if config.reference is not None:
        ref = config.reference
        missing = [] if ref == "average" else [c for c in ref if c not in raw.ch_names]
        if missing:
            raise InvalidDataError(
                f"{path}: preprocessing.reference: no channel {missing[0]!r} in the file"
            )
        raw.set_eeg_reference(ref, projection=False, verbose=False)
        steps.append({"step": "reference", "mne": "Raw.set_eeg_reference", "ref_channels": ref})
    if config.resample is not None:
        old = raw.info["sfreq"]
        raw.resample(config.resample, verbose=False)
        steps.append(
            {"step": "resample", "mne": "Raw.resample", "from_hz": old, "sfreq": config.resample}
        )
    return steps


def _default_id(path: Path, bids_root: Path | None) -> str:
    if bids_root is not None:
        ident = entity_string(entities_of(path))
        if ident:
            return ident
    name = path.name
    for ext in EEG_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem


def _signals(raw: Any, path: Path, volume_marker: str, dtype: Any) -> dict[str, Signal]:
    sfreq = float(raw.info["sfreq"])
    types = raw.get_channel_types()
    locs = np.array([ch["loc"][:3] for ch in raw.info["chs"]], dtype=np.float64).reshape(-1, 3)
    # MNE stores "no position" as NaN or as all zeros.
    unknown = ~np.isfinite(locs).all(axis=1) | (np.abs(locs).sum(axis=1) == 0)
    locs[unknown] = np.nan
    info = {
        "type": np.asarray(types, dtype=object),
        "x": locs[:, 0],
        "y": locs[:, 1],
        "z": locs[:, 2],
        "bad": np.asarray([n in raw.info["bads"] for n in raw.ch_names]),
    }
    data = np.ascontiguousarray(raw.get_data().T, dtype=dtype)
    signals: dict[str, Signal] = {
        "eeg": RegularSeries(data, sfreq, 0.0, raw.ch_names, "eeg", "V", channel_info=info)
    }
    ann = raw.annotations
    # Onsets count from meas_date when the annotations carry it: subtract the first sample's
    # time so 0 is the recording's first sample, as everywhere in neurofm.
    shift = raw.first_time if ann.orig_time is not None else 0.0
    onset = np.asarray(ann.onset, dtype=np.float64) - shift
    duration = np.asarray(ann.duration, dtype=np.float64)
    desc = np.asarray([str(d) for d in ann.description], dtype=object)
    order = np.argsort(onset, kind="stable")
    onset, duration, desc = onset[order], duration[order], desc[order]
    try:
        pattern = re.compile(volume_marker)
    except re.error as exc:
        raise InvalidDataError(f"volume_marker: not a regular expression ({exc})") from None
    is_volume = np.asarray([bool(pattern.fullmatch(d)) for d in desc], dtype=bool)
    for name, keep in (("events", ~is_volume), ("volumes", is_volume)):
        if name == "volumes" and not keep.any():
            continue
        try:
            signals[name] = Intervals(
                onset[keep], onset[keep] + duration[keep], desc[keep], name=name
            )
        except InvalidDataError as exc:
            raise InvalidDataError(f"{path}: annotations: {exc}") from None
    return signals


def _metadata(raw: Any, entities: Mapping[str, str]) -> Metadata:
    info = raw.info
    subject = info.get("subject_info") or {}
    meas = info.get("meas_date")
    extra: dict[str, Any] = {
        "sampling_rate_hz": float(info["sfreq"]),
        "n_channels": len(raw.ch_names),
        "line_freq": info.get("line_freq"),
        "highpass_hz": float(info["highpass"]),
        "lowpass_hz": float(info["lowpass"]),
    }
    return Metadata(
        subject_id=str(entities.get("subject") or subject.get("his_id") or ""),
        session_id=str(entities.get("session") or ""),
        task=str(entities.get("task") or ""),
        modality="eeg",
        session_start_time=meas.isoformat() if isinstance(meas, dt.datetime) else "",
        description=str(info.get("description") or ""),
        extra=extra,
    )


# --------------------------------------------------------------------------------------------
# back to MNE
# --------------------------------------------------------------------------------------------
