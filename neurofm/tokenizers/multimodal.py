"""Aligned EEG / fMRI windows from one simultaneous EEG-fMRI Recording (SAMBA's input).

A window is ``W`` consecutive BOLD volumes (the targets, parcels x TRs) and the EEG that precedes
and spans them: from ``history_s`` before the first volume to the last one. The EEG is cut on
the model's feature grid (``grid_per_tr`` steps per TR) so that the centre of grid step
``H + k * grid_per_tr`` falls exactly on volume ``k`` of the window (``H = history_s / dt``):
the model reads the hemodynamic response of volume ``k`` out of that step.

Both modalities are z-scored with statistics of the training data (:class:`MultimodalScaler`,
saved in the checkpoint), so predictions map back to the BOLD's units.

A run is loaded into memory once (:func:`load_paired_run`): a 20-minute 64-channel run at
128 Hz is 40 MB of float32, and SAMBA draws hundreds of overlapping windows from it per epoch.
SAMBA trains and evaluates through the same path as POYO: a sampler yields
:class:`VolumeWindow` items, a dataset of runs hands each to :class:`MultimodalTokenizer`
(which computes a run's costly features once and caches them) and :func:`collate_windows`
stacks the windows into a batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np

from neurofm.data.channels import eeg_channels
from neurofm.data.recording import Recording
from neurofm.data.signals import Intervals
from neurofm.errors import InvalidDataError

__all__ = [
    "MultimodalScaler",
    "MultimodalTokenizer",
    "PairedRun",
    "FeatureTransform",
    "VolumeWindow",
    "WindowGeometry",
    "collate_windows",
    "load_paired_run",
]

NO_LABEL = -1


@dataclass(frozen=True)
class WindowGeometry:
    """Time geometry shared by the tokenizer and the model.

    Attributes
    ----------
    window_trs : int
        Volumes per window.
    history_s : float
        EEG before the first volume of a window (must cover the HRF, ~20-30 s).
    grid_per_tr : int
        Feature-grid steps per TR (grid step ``dt = tr / grid_per_tr``).
    eeg_rate : float
        EEG sampling rate the model expects (the run is resampled to it when different).
    tr : float
        Repetition time, s.
    """

    window_trs: int = 16
    history_s: float = 24.0
    grid_per_tr: int = 2
    eeg_rate: float = 128.0
    tr: float = 2.0

    @property
    def dt(self) -> float:
        return self.tr / self.grid_per_tr

    @property
    def history_steps(self) -> int:
        return int(round(self.history_s / self.dt))

    @property
    def n_steps(self) -> int:
        """Grid steps of a window's EEG."""
        return self.history_steps + (self.window_trs - 1) * self.grid_per_tr + 1

    @property
    def samples_per_step(self) -> int:
        return int(round(self.eeg_rate * self.dt))

    @property
    def n_samples(self) -> int:
        return self.n_steps * self.samples_per_step

    @property
    def readout_steps(self) -> np.ndarray:
        """Grid step of each volume of the window."""
        return self.history_steps + self.grid_per_tr * np.arange(self.window_trs)

    def check(self) -> None:
        """Raise :class:`InvalidDataError` if the geometry is inconsistent."""
        spg = self.eeg_rate * self.dt
        if self.window_trs < 2 or self.grid_per_tr < 1 or self.tr <= 0 or self.history_s < 0:
            raise InvalidDataError(f"window geometry: bad values {self}")
        if abs(spg - round(spg)) > 1e-6:
            raise InvalidDataError(
                f"window geometry: eeg_rate * tr / grid_per_tr = {spg:g} must be a whole "
                "number of EEG samples per grid step"
            )


@dataclass
class PairedRun:
    """One EEG-fMRI run in memory, EEG resampled and padded for the window geometry."""

    recording_id: str
    subject: str
    eeg: np.ndarray  # (C, N) float32, the recording's units
    eeg_t0: float  # time of eeg[:, 0], s (negative when padded before the recording)
    eeg_rate: float
    channels: list[str]
    bold: np.ndarray  # (V, P) float32
    bold_times: np.ndarray  # (V,) s
    parcels: list[str]
    labels: np.ndarray  # (V,) stimulus class index per volume, NO_LABEL where none
    domains: dict[str, Intervals] = field(default_factory=dict)

    def volumes_in(self, split: str) -> np.ndarray:
        """Indices of the volumes inside ``<split>_domain`` (empty if there is none)."""
        dom = self.domains.get(split)
        if dom is None or len(dom) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(dom.contains(self.bold_times))

    def split_data(self, split: str, eeg_step: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The split's BOLD volumes (V, P) and the EEG spanning them (C, n), every
        ``eeg_step``-th sample; both empty when the run has no such split."""
        idx = self.volumes_in(split)
        if len(idx) == 0:
            return self.bold[:0], self.eeg[:, :0]
        lo, hi = (int((self.bold_times[i] - self.eeg_t0) * self.eeg_rate) for i in idx[[0, -1]])
        return self.bold[idx], self.eeg[:, max(lo, 0) : hi : eeg_step]

    def window_eeg_start(self, volume: int, geometry: WindowGeometry) -> int:
        """EEG sample where the window starting at ``volume`` begins: ``history_s`` and half a
        grid step before that volume, so each volume sits at the centre of its grid step."""
        t = self.bold_times[volume] - geometry.history_steps * geometry.dt - geometry.dt / 2
        return int(round((t - self.eeg_t0) * self.eeg_rate))

    def window_starts(self, split: str, window_trs: int, stride: int = 1) -> np.ndarray:
        """First volumes of the windows lying wholly inside the split, every ``stride`` volumes,
        plus the last possible one of each contiguous stretch (so every volume is covered)."""
        inside = self.volumes_in(split)
        if len(inside) == 0:
            return inside
        breaks = np.flatnonzero(np.diff(inside) != 1) + 1
        starts: list[np.ndarray] = []
        for run in np.split(inside, breaks):
            if len(run) < window_trs:
                continue
            last = run[-1] - window_trs + 1
            s = np.arange(run[0], last + 1, stride)
            starts.append(s if s[-1] == last else np.append(s, last))
        return np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)


def _resample(data: np.ndarray, rate: float, new_rate: float) -> np.ndarray:
    """Polyphase resampling along time (axis 1) with scipy's anti-aliasing FIR."""
    from scipy.signal import resample_poly

    ratio = Fraction(new_rate / rate).limit_denominator(1000)
    if abs(float(ratio) * rate - new_rate) > 1e-6 * new_rate:
        raise InvalidDataError(f"cannot resample {rate:g} Hz to {new_rate:g} Hz exactly")
    if ratio == 1:
        return data
    return resample_poly(data, ratio.numerator, ratio.denominator, axis=1)


def _volume_labels(
    rec: Recording, events: str | None, times: np.ndarray, classes: list[str], lag: float
) -> np.ndarray:
    """Stimulus class of each volume: the block active ``lag`` s before it (the BOLD peak)."""
    labels = np.full(len(times), NO_LABEL, dtype=np.int64)
    if events is None or events not in rec or not classes:
        return labels
    ev = rec[events].load()
    if ev.labels is None:
        return labels
    for k, name in enumerate(classes):
        mask = np.asarray(ev.labels).astype(str) == name
        if mask.any():
            blocks = Intervals(ev.start[mask], ev.end[mask], validate=False)
            labels[blocks.contains(times - lag)] = k
    return labels


def load_paired_run(
    rec: Recording,
    geometry: WindowGeometry,
    *,
    eeg: str = "eeg",
    bold: str = "bold",
    events: str | None = "events",
    classes: list[str] | None = None,
    label_lag: float = 5.0,
    eeg_types: tuple[str, ...] = ("eeg",),
) -> PairedRun:
    """Load one EEG-fMRI Recording for windowing.

    The EEG's channels of ``eeg_types``, bad ones left out
    (:func:`~neurofm.data.channels.eeg_channels`, the rule the ridge baseline follows too), are
    resampled to ``geometry.eeg_rate`` and padded by mirroring at both ends, so every volume,
    including the first ones, has ``history_s`` of EEG before it (the mirrored EEG has the right
    spectrum; the first ~20 s of predictions of a run are approximate, as they are for any
    model).

    Parameters
    ----------
    rec : Recording
        From :func:`neurofm.readers.fmri.read_eeg_fmri` (``eeg``, ``bold``, ``events``) with
        the ``*_domain`` splits of a dataset card.
    geometry : WindowGeometry
        The model's geometry; ``geometry.tr`` must match the BOLD's TR.
    classes : list of str, optional
        Stimulus classes (event labels) to label volumes with; default none.
    label_lag : float
        A volume is labelled with the stimulus block active ``label_lag`` s before it.

    Raises
    ------
    InvalidDataError
        A missing signal, a TR other than the geometry's, or a run too short for one window.
    """
    where = f"recording {rec.id!r}"
    geometry.check()
    for name in (eeg, bold):
        if name not in rec:
            raise InvalidDataError(f"{where}: no signal {name!r} (has {sorted(rec.signals)})")
    eeg_series, bold_series = rec[eeg].load(), rec[bold].load()
    if eeg_series.kind != "regular" or bold_series.kind != "regular":
        raise InvalidDataError(f"{where}: {eeg!r} and {bold!r} must be regularly sampled series")
    tr = 1.0 / bold_series.rate
    if abs(tr - geometry.tr) > 1e-3 * geometry.tr:
        raise InvalidDataError(
            f"{where}: {bold!r} has TR {tr:g} s but the model's geometry expects {geometry.tr:g} s"
        )
    if len(bold_series) < geometry.window_trs:
        raise InvalidDataError(
            f"{where}: {bold!r} has {len(bold_series)} volumes, fewer than one window "
            f"({geometry.window_trs})"
        )
    cols = eeg_channels(eeg_series, eeg_types, where=f"{where}: {eeg!r}")
    data = _resample(
        np.asarray(eeg_series.data[:, cols], np.float64).T, eeg_series.rate, geometry.eeg_rate
    )
    fs = geometry.eeg_rate
    bold_times = np.asarray(bold_series.timestamps, np.float64)
    # Mirror-pad so the first volume has its history and the last its final grid step.
    need_before = bold_times[0] - geometry.history_s - geometry.dt - eeg_series.start
    need_after = bold_times[-1] + geometry.dt - (eeg_series.start + data.shape[1] / fs)
    before = max(0, math.ceil(need_before * -fs) + 1)
    after = max(0, math.ceil(need_after * fs) + 1)
    if max(before, after) >= data.shape[1]:
        raise InvalidDataError(f"{where}: the EEG is too short to cover the BOLD run")
    data = np.pad(data, ((0, 0), (before, after)), mode="reflect")
    domains = {
        name.removesuffix("_domain"): rec[name].load()
        for name in rec.signals
        if name.endswith("_domain")
    }
    return PairedRun(
        recording_id=rec.id,
        subject=rec.metadata.subject_id,
        eeg=data.astype(np.float32),
        eeg_t0=float(eeg_series.start) - before / fs,
        eeg_rate=fs,
        channels=[str(c) for c in np.asarray(eeg_series.channels)[cols]],
        bold=np.asarray(bold_series.data, np.float32),
        bold_times=bold_times,
        parcels=[str(c) for c in bold_series.channels],
        labels=_volume_labels(rec, events, bold_times, list(classes or []), label_lag),
        domains=domains,
    )


@dataclass
class MultimodalScaler:
    """Per-channel EEG and per-parcel BOLD means and SDs, from the training data."""

    eeg_mean: np.ndarray
    eeg_std: np.ndarray
    bold_mean: np.ndarray
    bold_std: np.ndarray

    @classmethod
    def fit(cls, runs: list[PairedRun], split: str = "train") -> MultimodalScaler:
        """Statistics over the split's volumes (BOLD) and the EEG spanning them."""
        parts = [run.split_data(split) for run in runs]
        bold_parts = [b for b, _ in parts if len(b)]
        eeg_parts = [e for b, e in parts if len(b)]
        if not bold_parts:
            raise InvalidDataError(f"no run has volumes in its {split}_domain")
        eeg = np.concatenate(eeg_parts, axis=1).astype(np.float64)
        bold = np.concatenate(bold_parts).astype(np.float64)
        return cls(eeg.mean(1), eeg.std(1) + 1e-12, bold.mean(0), bold.std(0) + 1e-12)

    def bold_inverse(self, values: np.ndarray) -> np.ndarray:
        """z-scored BOLD (..., P) back to the recording's units."""
        return values * self.bold_std + self.bold_mean

    def to_dict(self) -> dict[str, list[float]]:
        return {
            k: getattr(self, k).tolist() for k in ("eeg_mean", "eeg_std", "bold_mean", "bold_std")
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MultimodalScaler:
        return cls(
            *(
                np.asarray(d[k], np.float64)
                for k in ("eeg_mean", "eeg_std", "bold_mean", "bold_std")
            )
        )


class VolumeWindow(NamedTuple):
    """A window of ``W`` volumes of one run: what a SAMBA sampler yields and a dataset reads.

    ``start`` is the window's first volume; ``eeg_start``, when given, is the first volume of
    the window whose EEG is paired with this window's BOLD (the time-shuffled control).
    """

    recording_id: str
    start: int
    eeg_start: int | None = None


#: Features of a whole run's z-scored EEG (C, N) on the run's feature grid: (C, S_run, K).
FeatureTransform = Callable[[np.ndarray], np.ndarray]


@dataclass
class MultimodalTokenizer:
    """Cuts z-scored windows out of a :class:`PairedRun`.

    Without ``features`` a window carries its raw z-scored EEG (``eeg``). With ``features`` (a
    parameter-free transform of a run's EEG onto the feature grid, e.g. SAMBA's wavelet band
    energies), the transform runs once per run, on the whole run, and is cached here: a window
    is then a slice of that grid (``energy``), so an epoch over hundreds of overlapping windows
    costs no more transforms than there are runs.

    Parameters
    ----------
    geometry : WindowGeometry
        The model's geometry.
    scaler : MultimodalScaler
        z-scoring of both modalities.
    features : callable, optional
        ``(C, N) float32 z-scored EEG -> (C, S, K)`` features on the grid, where grid step
        ``m`` covers EEG samples ``[m * spg, (m + 1) * spg)`` from the EEG start of the run's
        first window (``spg`` = :attr:`WindowGeometry.samples_per_step`).
    """

    geometry: WindowGeometry
    scaler: MultimodalScaler
    features: FeatureTransform | None = None
    _cache: dict[str, tuple[PairedRun, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def run_features(self, run: PairedRun) -> np.ndarray:
        """The ``features`` of the whole run (C, S_run, K), computed on first use and cached.

        Grid step ``v * grid_per_tr`` is where the window starting at volume ``v`` begins (the
        run's volumes are regularly spaced by one TR).
        """
        if self.features is None:
            raise InvalidDataError("this tokenizer has no features transform (features=None)")
        hit = self._cache.get(run.recording_id)
        if hit is not None and hit[0] is run:
            return hit[1]
        offset = run.window_eeg_start(0, self.geometry)
        eeg = (run.eeg - self.scaler.eeg_mean[:, None]) / self.scaler.eeg_std[:, None]
        feats = np.asarray(self.features(eeg[:, offset:].astype(np.float32)))
        self._cache[run.recording_id] = (run, feats)
        return feats

    def __call__(self, run: PairedRun, start: int, eeg_start: int | None = None) -> dict[str, Any]:
        """The window of volumes ``start .. start + W - 1``.

        ``eeg_start`` takes the EEG from the window starting at another volume instead (the
        time-shuffled control: EEG and BOLD from different moments).

        Returns
        -------
        dict
            ``eeg`` (C, n_samples) float32 z-scored EEG, or with ``features`` ``energy``
            (C, n_steps, K) float32; ``bold`` (W, P) float32; ``labels`` (W,) int64;
            ``start`` int; ``recording_id`` str.
        """
        g = self.geometry
        w = g.window_trs
        if not 0 <= start <= len(run.bold) - w:
            raise IndexError(f"{run.recording_id}: window start {start} out of range")
        src = start if eeg_start is None else eeg_start
        item: dict[str, Any] = {}
        if self.features is not None:
            s0 = src * g.grid_per_tr
            energy = self.run_features(run)[:, s0 : s0 + g.n_steps]
            if energy.shape[1] != g.n_steps:  # pragma: no cover - load_paired_run pads
                raise InvalidDataError(f"{run.recording_id}: EEG does not cover window {src}")
            item["energy"] = energy
        else:
            i0 = run.window_eeg_start(src, g)
            eeg = run.eeg[:, i0 : i0 + g.n_samples]
            if i0 < 0 or eeg.shape[1] != g.n_samples:  # pragma: no cover - load_paired_run pads
                raise InvalidDataError(f"{run.recording_id}: EEG does not cover window {src}")
            eeg = (eeg - self.scaler.eeg_mean[:, None]) / self.scaler.eeg_std[:, None]
            item["eeg"] = eeg.astype(np.float32)
        bold = (run.bold[start : start + w] - self.scaler.bold_mean) / self.scaler.bold_std
        item["bold"] = bold.astype(np.float32)
        item["labels"] = run.labels[start : start + w].copy()
        item["start"] = start
        item["recording_id"] = run.recording_id
        return item


def collate_windows(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack windows (all of one geometry, so of one shape) into torch tensors.

    ``eeg`` or ``energy``, ``bold`` and ``labels`` are stacked, ``start`` becomes a tensor and
    ``recording_id`` a list.
    """
    import torch

    out: dict[str, Any] = {
        key: torch.from_numpy(np.stack([i[key] for i in items]))
        for key in ("eeg", "energy", "bold", "labels")
        if key in items[0]
    }
    out["start"] = torch.tensor([i["start"] for i in items])
    if "recording_id" in items[0]:
        out["recording_id"] = [i["recording_id"] for i in items]
    return out
