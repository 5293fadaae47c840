"""Recording: metadata, provenance and named signals; saved as one HDF5 file, opened lazily."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from neurofm import display
from neurofm.atomic import atomic_path
from neurofm.data.signals import Intervals, IrregularSeries, RegularSeries, Signal, Spikes
from neurofm.data.signals import facts as signal_facts
from neurofm.data.storage import (
    LazyIrregularSeries,
    LazyRegularSeries,
    LazySignal,
    LazySpikes,
    attrs_json,
    check_checksums,
    open_signal,
    probe_hdf5,
    write_checksums,
    write_signal,
)
from neurofm.errors import InvalidDataError, NeuroFMError, ReaderError

FORMAT_NAME = "neurofm.recording"
#: How reprs name each kind of signal (lazy or in memory alike).
_KIND_NAMES = {
    "spikes": "Spikes",
    "regular": "RegularSeries",
    "irregular": "IrregularSeries",
    "intervals": "Intervals",
}
FORMAT_VERSION = 1

__all__ = [
    "Integrity",
    "Metadata",
    "Provenance",
    "Recording",
    "check_integrity",
    "verify_recording",
]


@dataclass
class Metadata:
    """Who and what was recorded.

    Attributes mirror NWB's subject/session fields so readers can fill them one to one.
    """

    subject_id: str = ""
    session_id: str = ""
    species: str = ""
    sex: str = ""
    age: str = ""
    task: str = ""
    modality: str = ""
    session_start_time: str = ""
    institution: str = ""
    lab: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Provenance:
    """Where the data came from, so a result can be traced back to bytes."""

    source_path: str = ""
    source_url: str = ""
    sha256: str = ""
    dandiset_id: str = ""
    dandiset_version: str = ""
    asset_path: str = ""
    reader: str = ""
    neurofm_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def provenance_from(values: Mapping[str, Any]) -> Provenance:
    """A :class:`Provenance` from a dict; unknown keys go to ``extra``."""
    return _from_dict(Provenance, values)


def _from_dict(cls: type, values: Mapping[str, Any] | None) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    values = dict(values or {})
    extra = {k: values.pop(k) for k in list(values) if k not in known}
    obj = cls(**values)
    obj.extra.update(extra)
    return obj


class Recording:
    """One recording session: metadata, provenance and named signals.

    Parameters
    ----------
    id : str
        Identifier, unique within a catalog (``read_nwb`` uses ``sub-<subject>_ses-<session>``
        for DANDI-layout files, else the file name).
    signals : mapping of str to Signal
        Named signals, e.g. ``{"spikes": Spikes(...), "hand_vel": RegularSeries(...),
        "trials": Intervals(...)}``.
    duration : float, optional
        Length in seconds; by default the latest time of any signal.
    metadata, provenance : Metadata or dict, optional
        Descriptive fields (see :class:`Metadata`, :class:`Provenance`).
    absolute_start : float
        Where time 0 of this object lies in the original recording; a window of a window keeps
        adding up, so predictions can be stitched back.

    Examples
    --------
    >>> rec = Recording.open("catalog/S0_1.h5")          # lazy: nothing big is read
    >>> win = rec.window(10.0, 11.0)                     # in memory, times in [0, 1)
    >>> win.spikes.timestamps, win.absolute_start
    """

    def __init__(
        self,
        id: str,
        signals: Mapping[str, Signal],
        duration: float | None = None,
        metadata: Metadata | Mapping[str, Any] | None = None,
        provenance: Provenance | Mapping[str, Any] | None = None,
        absolute_start: float = 0.0,
    ) -> None:
        if not isinstance(id, str) or not id or "/" in id:
            raise InvalidDataError(f"recording.id: must be a non-empty string without '/' ({id!r})")
        self.id = id
        self.signals: dict[str, Signal] = {}
        for name, signal in signals.items():
            if not isinstance(signal, Signal):
                raise InvalidDataError(
                    f"recording {id!r}: signal {name!r} is a {type(signal).__name__}, "
                    "expected Spikes, RegularSeries, IrregularSeries or Intervals"
                )
            self.signals[name] = signal
        self.metadata = (
            metadata if isinstance(metadata, Metadata) else _from_dict(Metadata, metadata)
        )
        self.provenance = (
            provenance if isinstance(provenance, Provenance) else _from_dict(Provenance, provenance)
        )
        self.absolute_start = float(absolute_start)
        self.duration = float(duration) if duration is not None else self._latest_time()
        if not (np.isfinite(self.duration) and self.duration >= 0):
            raise InvalidDataError(f"recording {id!r}: duration must be >= 0 ({self.duration})")
        self._file: h5py.File | None = None
        # Callbacks that release resources backing lazy signals (e.g. a staging file).
        self._closers: list[Callable[[], None]] = []

    # ---- access ---------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Signal:
        try:
            return self.signals[name]
        except KeyError:
            raise self._no_signal(name) from None

    def _no_signal(self, name: str) -> KeyError:
        has = sorted(self.signals)
        return KeyError(f"recording {self.id!r} has no signal {name!r} (has {has})")

    def __getattr__(self, name: str) -> Signal:
        # Only called when normal lookup fails: lets users write rec.spikes, rec.hand_vel.
        signals = self.__dict__.get("signals")
        if signals is not None and name in signals:
            return signals[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute or signal {name!r}")

    def __contains__(self, name: str) -> bool:
        return name in self.signals

    def __iter__(self) -> Iterator[str]:
        return iter(self.signals)

    def __repr__(self) -> str:
        # Built from what is in memory: a lazy signal contributes its length, names and two
        # elements for its time range, never its data.
        lines = [f"<Recording {self.id!r}: {self._headline()}"]
        for name, sig in self.signals.items():
            pairs = signal_facts(sig)
            rest = "; ".join(f"{k} {v}" for k, v in pairs[1:])
            lines.append(f"  {name} ({_KIND_NAMES[sig.kind]}): {pairs[0][1]}; {rest}")
        return "\n".join(lines) + ">"

    def _repr_html_(self) -> str:
        rows = []
        for name, sig in self.signals.items():
            pairs = dict(signal_facts(sig))
            details = "; ".join(f"{k} {v}" for k, v in pairs.items() if k not in ("size", "time"))
            rows.append((name, _KIND_NAMES[sig.kind], pairs["size"], pairs["time"], details))
        return display.html_table(
            f"Recording {self.id!r}: {self._headline()}",
            rows,
            ("signal", "kind", "size", "time", "details"),
        )

    def _headline(self) -> str:
        """Duration, who, what and where from, in one line (for the reprs)."""
        meta, parts = self.metadata, [display.seconds(self.duration)]
        if meta.subject_id:
            parts.append(f"subject {meta.subject_id}")
        if meta.session_id:
            parts.append(f"session {meta.session_id}")
        parts += [w for w in (meta.modality, meta.task) if w]
        if self.absolute_start:
            parts.append(f"from {self.absolute_start:g} s of the original")
        if self._file is not None:
            parts.append(f"lazy, {Path(self._file.filename).name}")
        if self.provenance.dandiset_id:
            parts.append(f"dandi:{self.provenance.dandiset_id}")
        return "; ".join(parts)

    def _latest_time(self) -> float:
        latest = 0.0
        for sig in self.signals.values():
            if isinstance(sig, RegularSeries | LazyRegularSeries):
                latest = max(latest, sig.end)
            elif isinstance(sig, LazySpikes | LazyIrregularSeries):
                latest = max(latest, sig.last_time)
            elif isinstance(sig, Spikes | IrregularSeries) and len(sig):
                latest = max(latest, float(sig.timestamps[-1]))
            elif isinstance(sig, Intervals) and len(sig):
                latest = max(latest, float(sig.end.max()))
        return latest

    # ---- windows --------------------------------------------------------------------------

    def window(self, start: float, end: float, signals: Iterable[str] | None = None) -> Recording:
        """The half-open window ``[start, end)`` in memory, times relative to ``start``.

        On a lazily opened recording only the window's bytes are read. The result's
        ``absolute_start`` is ``self.absolute_start + start``. ``signals`` picks the signals
        to window (default: all); naming one the recording lacks raises ``KeyError``.
        """
        names = list(self.signals) if signals is None else list(dict.fromkeys(signals))
        for name in names:
            if name not in self.signals:
                raise self._no_signal(name)
        return Recording(
            self.id,
            {name: self.signals[name].window(start, end) for name in names},
            duration=end - start,
            metadata=self.metadata,
            provenance=self.provenance,
            absolute_start=self.absolute_start + start,
        )

    def load(self) -> Recording:
        """Read every signal into memory (the file may be closed afterwards)."""
        return Recording(
            self.id,
            {name: sig.load() for name, sig in self.signals.items()},
            self.duration,
            self.metadata,
            self.provenance,
            self.absolute_start,
        )

    # ---- persistence ----------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the recording to one HDF5 file, atomically.

        The file is written under a temporary name in the destination folder and renamed into
        place only when complete, so a crash or an error never leaves a partial file behind.
        Before the rename, a sha256 of every dataset is stored in the file
        (:func:`neurofm.data.storage.write_checksums`), so :func:`verify_recording` can tell
        later whether any byte changed.
        """
        path = Path(path)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.attrs.update(
                format=FORMAT_NAME,
                format_version=FORMAT_VERSION,
                id=self.id,
                duration=self.duration,
                absolute_start=self.absolute_start,
                metadata=attrs_json(dataclasses.asdict(self.metadata)),
                provenance=attrs_json(dataclasses.asdict(self.provenance)),
            )
            group = f.create_group("signals", track_order=True)  # keep the signals' order
            for name, signal in self.signals.items():
                write_signal(group, name, signal)
            f.flush()
            write_checksums(f)
        return path

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Recording:
        """Open a saved recording lazily: metadata is read, signal data stays on disk.

        Raises
        ------
        ReaderError
            If ``path`` is missing, not HDF5 or not a neurofm recording.
        """
        path = Path(path)
        if not path.is_file():
            raise ReaderError(f"{path}: no such recording file")
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise ReaderError(f"{path}: not a readable HDF5 file ({exc})") from None
        try:
            if f.attrs.get("format") != FORMAT_NAME:
                raise ReaderError(
                    f"{path}: not a neurofm recording (attribute 'format' is "
                    f"{f.attrs.get('format')!r}, expected {FORMAT_NAME!r})"
                )
            version = int(f.attrs.get("format_version", -1))
            if version > FORMAT_VERSION:
                raise ReaderError(
                    f"{path}: format_version {version} is newer than this neurofm "
                    f"understands ({FORMAT_VERSION}); upgrade neurofm"
                )
            signals = {name: open_signal(g, name) for name, g in f["signals"].items()}
            rec = cls(
                str(f.attrs["id"]),
                signals,
                float(f.attrs["duration"]),
                json.loads(f.attrs["metadata"]),
                json.loads(f.attrs["provenance"]),
                float(f.attrs.get("absolute_start", 0.0)),
            )
        except NeuroFMError:
            f.close()
            raise
        except Exception as exc:  # damaged attributes or groups: h5py, json, unicode errors
            f.close()
            raise ReaderError(f"{path}: damaged recording file ({_reason(exc)})") from None
        except BaseException:
            f.close()
            raise
        rec._file = f
        return rec

    def add_closer(self, fn: Callable[[], None]) -> None:
        """Have :meth:`close` call ``fn``: it releases what backs a lazy signal of this recording.

        A reader that stages data in a temporary file (the NWB reader's large spike streams)
        registers that file's removal here; callbacks run once, last registered first.

        Parameters
        ----------
        fn : callable
            Called without arguments; should be safe to call more than once.
        """
        self._closers.append(fn)

    def with_signals(self, signals: Mapping[str, Signal]) -> Recording:
        """This recording with ``signals`` added (same names replaced); it takes over the files.

        Metadata and provenance objects are shared. The new recording owns what backs the lazy
        signals (the open file, the registered closers), so closing it releases them and closing
        this one afterwards does nothing.

        Parameters
        ----------
        signals : mapping of str to Signal
            Signals to add or replace, e.g. ``{"train_domain": Intervals(...)}``.

        Returns
        -------
        Recording
        """
        out = Recording(
            self.id,
            {**self.signals, **signals},
            self.duration,
            self.metadata,
            self.provenance,
            self.absolute_start,
        )
        out._file, self._file = self._file, None
        out._closers, self._closers = self._closers, []
        return out

    def close(self) -> None:
        """Close the files backing a lazily read recording (no-op for one in memory)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_lazy(self) -> bool:
        return any(isinstance(s, LazySignal) for s in self.signals.values())

    # ---- conversions ----------------------------------------------------------------------

    def to_pynapple(self) -> dict[str, Any]:
        """Every signal as a pynapple object: spikes -> ``TsGroup`` (units table as metadata),
        series -> ``Tsd``/``TsdFrame``, intervals -> ``IntervalSet``.

        Needs the optional extra: ``pip install neurofm[pynapple]``. See
        :func:`neurofm.data.pynapple_io.to_pynapple` for the details.

        Returns
        -------
        dict of str to pynapple object
            Keyed by signal name.

        Raises
        ------
        MissingExtraError
            pynapple is not installed.
        """
        from neurofm.data.pynapple_io import to_pynapple

        return to_pynapple(self)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description: signals, duration, units, spike counts, trials, provenance."""
        signals: dict[str, Any] = {}
        for name, sig in self.signals.items():
            entry: dict[str, Any] = {"kind": sig.kind, "length": len(sig)}
            if sig.kind == "spikes":
                entry["n_units"] = len(sig.units)
                entry["n_spikes"] = len(sig)
            elif sig.kind == "regular":
                entry.update(rate=sig.rate, start=sig.start, channels=list(map(str, sig.channels)))
                entry["unit"] = sig.unit
            elif sig.kind == "irregular":
                entry.update(channels=list(map(str, sig.channels)), unit=sig.unit)
            elif sig.kind == "intervals":
                table = sig.load()
                entry["columns"] = sorted(table.columns)
            signals[name] = entry
        return {
            "id": self.id,
            "duration_s": self.duration,
            "signals": signals,
            "metadata": dataclasses.asdict(self.metadata),
            "provenance": dataclasses.asdict(self.provenance),
        }


# --------------------------------------------------------------------------------------------
# integrity
# --------------------------------------------------------------------------------------------


@dataclass
class Integrity:
    """What re-reading a saved recording found.

    Attributes
    ----------
    path : Path
        The recording file.
    problems : list of str
        One line per damaged part, naming the dataset (``"signals/spikes/timestamps: content
        changed since it was written"``); empty when the file is healthy.
    checked : bool
        False when the file holds no checksums (written before neurofm stored them): it opens
        and its structure is sound, but changed values could not be detected.
    """

    path: Path
    problems: list[str] = field(default_factory=list)
    checked: bool = True

    @property
    def ok(self) -> bool:
        return not self.problems


def check_integrity(path: str | os.PathLike[str], probe: bool = True) -> Integrity:
    """Re-read a saved recording and compare every dataset with the checksums it was saved with.

    Parameters
    ----------
    path : str or Path
        A ``.h5`` written by :meth:`Recording.save`.
    probe : bool
        Walk the file in a child process first (:func:`~neurofm.data.storage.probe_hdf5`), so
        damage that crashes the HDF5 library is reported instead; pass False when the caller
        probed it already.

    Returns
    -------
    Integrity
        Never raises for a damaged file: what is wrong is in ``problems``.
    """
    path = Path(path)
    if not path.is_file():
        return Integrity(path, [f"{path}: no such recording file"])
    crashed = probe_hdf5([path]).get(str(path)) if probe else None
    if crashed is not None:
        return Integrity(path, [f"{path}: {crashed}"])
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        return Integrity(path, [f"{path}: not a readable HDF5 file ({_reason(exc)})"])
    try:
        with f:
            problems = check_checksums(f)
    except Exception as exc:  # damage the checks themselves trip over
        return Integrity(path, [f"{path}: unreadable ({_reason(exc)})"])
    if problems:
        return Integrity(path, problems)
    try:  # the structure must also open as a recording
        Recording.open(path).close()
    except NeuroFMError as exc:
        return Integrity(path, [str(exc)], checked=problems is not None)
    except Exception as exc:
        return Integrity(path, [f"{path}: cannot open ({_reason(exc)})"], problems is not None)
    return Integrity(path, [], checked=problems is not None)


def verify_recording(path: str | os.PathLike[str]) -> list[str]:
    """The problems :func:`check_integrity` finds in a saved recording ([] when healthy)."""
    return check_integrity(path).problems


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]
