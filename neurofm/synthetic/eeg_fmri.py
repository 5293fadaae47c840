"""Synthetic simultaneous EEG-fMRI with known ground truth, written as a BIDS dataset.

The generator imitates the public simultaneous EEG-fMRI datasets (NATVIEW, the XP1/XP2
neurofeedback sets, the oddball set ds000116; see ``reference/samba.md`` 3): an MR-compatible
32-channel cap (30 EEG + EOG + ECG) at 250 Hz recorded during a BOLD run at TR 2 s, with the
scanner's ``R128`` volume markers in the EEG, and a block design of a few stimulus classes.
Every number comes from a known model, so readers, alignment and EEG->fMRI models can be
checked against the truth.

Model, in brief
---------------
* Parcels: k-means over the voxel coordinates of the MNI152 brain mask shipped with nilearn
  (ICBM152 2009a asymmetric), resampled to ``voxel_size`` mm; written as a labels NIfTI with a
  BIDS ``dseg.tsv`` look-up table. One current dipole per parcel sits at its centroid.
* Sources: in each parcel, three band-limited rhythms (alpha 8-12, beta 13-30, gamma 30-45 Hz)
  ``env_b(t) cos(phi_b(t))``: the carrier has unit amplitude and a slowly wandering frequency
  inside the band, so the analytic envelope of band ``b`` is exactly ``env_b``. Envelopes are
  ``a_b exp(0.3 z_b(t)) (1 + r_b g_kp m_k(t))``: a slow (< 0.1 Hz) log-normal fluctuation
  ``z``, and stimulus-locked modulation ``m_k`` (the class-``k`` blocks, 0.3 s ramps) weighted
  by the parcel's closeness ``g_kp`` to the class' cortical foci (visual: occipital pole;
  auditory: superior temporal; motor: precentral) and a band response ``r_b`` (alpha and beta
  desynchronise, gamma synchronises), as in the event-related (de)synchronisation literature.
* EEG: ``V = G S + noise``. ``G`` is MNE's forward solution for radial dipoles at the parcel
  centroids in a 3-shell spherical head fitted to the montage (MNI coordinates are taken to
  fsaverage's head frame with the montage's own fiducial transform); ``leadfield="random"``
  uses a random mixing matrix instead. Scaled so the median channel carries ``eeg_rms`` volts;
  white sensor noise (``eeg_noise`` x that) and 50 Hz line noise are added. EOG carries blinks
  and ECG heartbeats.
* BOLD: the envelope of ``bold_band`` in each parcel, averaged on a 0.1 s grid, convolved with
  nilearn's Glover HRF, sampled at each volume marker, scaled to ~``bold_percent`` % signal
  change. Each voxel is ``b_v (1 + w_v y_p(t) / 100)`` with a random baseline ``b_v`` (~1000)
  and coupling ``w_v``, plus a linear-and-cosine drift (``drift`` x ``b_v``) and noise
  (``bold_noise`` x ``b_v``: white per voxel, plus a fifth of it shared by the parcel's voxels).
  Drift and shared noise are spatially coherent (one component per parcel plus a voxel part),
  as scanner drift and physiological noise are, so they survive parcel averaging. Without
  noise and drift the parcel mean is an affine function of ``y_p``, so an extractor must
  recover it with correlation 1.
* Timing: the EEG starts ``lead_in`` s (3-6 s, drawn) before the first volume and ends 3 s after
  the last one. BIDS ``_scans.tsv`` gives both files' ``acq_time``.

Written (``generate_eeg_fmri_dataset``)::

    OUT/dataset_description.json, participants.tsv, README
    OUT/sub-01/ses-01/eeg/sub-01_ses-01_task-stim_run-1_eeg.vhdr|.eeg|.vmrk (+ mne-bids sidecars)
    OUT/sub-01/ses-01/func/sub-01_ses-01_task-stim_run-1_bold.nii.gz|.json, _events.tsv
    OUT/sub-01/ses-01/sub-01_ses-01_scans.tsv
    OUT/derivatives/neurofm-synth/atlas/atlas-kmeans<P>_space-MNI152NLin2009aAsym_res-<mm>_dseg.*
    OUT/derivatives/neurofm-synth/sub-01/ses-01/sub-01_ses-01_task-stim_run-1_desc-truth.npz|.json

Seeds: run ``(subject, run)`` draws from ``numpy.random.SeedSequence(seed, spawn_key=(subject,
run))``; the parcellation from ``seed`` alone, so it is shared by all subjects.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurofm.errors import InvalidDataError

log = logging.getLogger(__name__)

__all__ = [
    "BANDS",
    "CLASSES",
    "Parcellation",
    "RunInfo",
    "SimulatedRun",
    "generate_eeg_fmri_dataset",
    "load_ground_truth",
    "make_parcellation",
    "simulate_run",
    "to_raw",
    "write_bids",
]

#: Frequency bands (Hz) of the source rhythms.
BANDS: dict[str, tuple[float, float]] = {
    "alpha": (8.0, 12.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, 45.0),
}
#: Stimulus classes and their cortical foci (MNI mm).
CLASSES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "visual": ((0.0, -88.0, 4.0),),
    "auditory": ((-54.0, -22.0, 8.0), (54.0, -22.0, 8.0)),
    "motor": ((-36.0, -22.0, 56.0), (36.0, -22.0, 56.0)),
}
#: Relative envelope change of each band at a class' focus during its blocks.
BAND_RESPONSE = {"alpha": -0.5, "beta": -0.3, "gamma": 1.0}
#: Resting amplitude of each band (relative; alpha dominates as in awake EEG).
BAND_AMPLITUDE = {"alpha": 1.0, "beta": 0.5, "gamma": 0.25}
#: 30 EEG electrodes of a 10-20 MR cap (FCz is the cap's reference), plus EOG and ECG.
EEG_CHANNELS = (
    "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "FC5", "FC1", "FC2", "FC6", "T7", "C3", "Cz",
    "C4", "T8", "TP9", "CP5", "CP1", "CP2", "CP6", "TP10", "P7", "P3", "Pz", "P4", "P8", "O1",
    "Oz", "O2",
)  # fmt: skip
SPACE = "MNI152NLin2009aAsym"  # nilearn's template: ICBM152 2009a asymmetric
TASK = "stim"
VOLUME_MARKER = "R128"
LINE_FREQ = 50.0
DERIVATIVE = "neurofm-synth"
_FOCUS_SD = 25.0  # mm: how far a class' modulation reaches from its focus
_GRID_DT = 0.1  # s: grid of slow quantities (envelope fluctuations, HRF convolution)
_BLOCK = 6.0  # s: stimulus block length
_ISI = (8.0, 14.0)  # s: gap between blocks
_RAMP = 0.3  # s: raised-cosine on/off ramps of a block
_LEAD_OUT = 3.0
_BASE_DATE = dt.datetime(2024, 5, 6, 10, 0, tzinfo=dt.timezone.utc)


# --------------------------------------------------------------------------------------------
# parcellation
# --------------------------------------------------------------------------------------------


@dataclass
class Parcellation:
    """A labels image of the MNI152 brain mask cut into parcels.

    Attributes
    ----------
    labels_img : nibabel.Nifti1Image
        int32 labels 1..P (0 outside the brain) on a ``voxel_size`` mm grid.
    names : list of str
        Parcel names, label ``k`` is ``names[k - 1]``.
    centroids : ndarray, shape (P, 3)
        Parcel centroids, MNI mm.
    voxel_size : float
        Grid spacing in mm.
    """

    labels_img: Any
    names: list[str]
    centroids: np.ndarray
    voxel_size: float

    @property
    def n_parcels(self) -> int:
        return len(self.names)

    @property
    def labels(self) -> np.ndarray:
        """The label volume as an int32 array."""
        return np.asarray(self.labels_img.dataobj, dtype=np.int32)


def make_parcellation(n_parcels: int = 20, voxel_size: float = 6.0, seed: int = 0) -> Parcellation:
    """Cut nilearn's MNI152 brain mask into ``n_parcels`` compact parcels (k-means on voxel
    coordinates), on a ``voxel_size`` mm grid. Offline: the mask ships with nilearn.

    Parcels are numbered by their centroid, left to right then back to front, so numbering
    does not depend on k-means' internal order.
    """
    import nibabel as nib
    from nilearn import datasets, image
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    if not 2 <= n_parcels <= 500:
        raise InvalidDataError(f"n_parcels: expected 2..500, got {n_parcels}")
    if not 2.0 <= voxel_size <= 12.0:
        raise InvalidDataError(f"voxel_size: expected 2..12 mm, got {voxel_size}")
    mask = datasets.load_mni152_brain_mask(resolution=2)
    extent = np.asarray(mask.shape) * np.abs(np.diag(mask.affine)[:3])
    shape = tuple(int(np.ceil(e / voxel_size)) for e in extent)
    affine = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    affine[:3, 3] = mask.affine[:3, 3]
    coarse = image.resample_img(
        mask,
        target_affine=affine,
        target_shape=shape,
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    ijk = np.argwhere(np.asarray(coarse.dataobj) > 0)
    if len(ijk) < n_parcels:
        raise InvalidDataError(f"n_parcels: {n_parcels} parcels for {len(ijk)} brain voxels")
    xyz = nib.affines.apply_affine(affine, ijk)
    # One thread: on a busy 2-core machine OpenMP's spinning threads made this 0.2 s fit take
    # 2-6 s; the problem (~10k points, 3-D) is far too small to gain from threads.
    with threadpool_limits(limits=1):
        km = KMeans(n_clusters=n_parcels, n_init=4, random_state=seed).fit(xyz)
    centres = km.cluster_centers_
    order = np.lexsort((centres[:, 1], np.round(centres[:, 0] / 20.0)))
    rank = np.empty(n_parcels, dtype=np.int32)
    rank[order] = np.arange(1, n_parcels + 1)
    labels = np.zeros(shape, dtype=np.int32)
    labels[tuple(ijk.T)] = rank[km.labels_]
    img = nib.Nifti1Image(labels, affine)
    img.header.set_xyzt_units("mm")
    cents = np.stack([xyz[labels[tuple(ijk.T)] == k].mean(axis=0) for k in range(1, n_parcels + 1)])
    names = [
        f"{'L' if c[0] < -5 else 'R' if c[0] > 5 else 'M'}-parcel-{k:02d}"
        for k, c in enumerate(cents, start=1)
    ]
    return Parcellation(img, names, cents, float(voxel_size))


# --------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------


@dataclass
class SimulatedRun:
    """One simulated EEG-fMRI run, in memory. Times are seconds on the EEG's clock.

    Attributes
    ----------
    subject, session, task, run : str
        BIDS entities.
    eeg_rate, tr, lead_in : float
        EEG sampling rate (Hz), repetition time (s) and EEG time of the first volume (s).
    ch_names, ch_types : list of str
        EEG channels (30 EEG + EOG + ECG).
    eeg : ndarray, shape (T, C)
        EEG in volts, noise included.
    sources : ndarray, shape (T, P)
        Parcel source activity in A*m (what the lead field mixes).
    envelopes : ndarray, shape (3, T, P)
        Analytic envelope of each band (``BANDS`` order) in each parcel, in source units.
    leadfield : ndarray, shape (n_eeg, P)
        V per A*m, EEG channels only; ``leadfield_kind`` says how it was made.
    events : dict of str to ndarray
        ``onset``, ``duration`` (s, EEG clock) and ``trial_type`` of the stimulus blocks.
    volume_onsets : ndarray, shape (V,)
        EEG time of each volume marker.
    bold_band : str
        The band whose envelope drives BOLD.
    hrf : ndarray
        The HRF on a ``hrf_dt`` grid (sums to 1).
    bold_percent : ndarray, shape (V, P)
        Clean parcel BOLD, % signal change: the truth a parcel extractor must recover.
    bold : ndarray, shape (x, y, z, V)
        The voxel volumes written to NIfTI (float32), noise and drift included.
    """

    subject: str
    session: str
    task: str
    run: str
    eeg_rate: float
    tr: float
    lead_in: float
    ch_names: list[str]
    ch_types: list[str]
    eeg: np.ndarray
    sources: np.ndarray
    envelopes: np.ndarray
    leadfield: np.ndarray
    leadfield_kind: str
    source_pos_head: np.ndarray
    events: dict[str, np.ndarray]
    volume_onsets: np.ndarray
    bold_band: str
    hrf: np.ndarray
    hrf_dt: float
    bold_percent: np.ndarray
    bold: np.ndarray
    affine: np.ndarray
    meas_date: dt.datetime
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_volumes(self) -> int:
        return len(self.volume_onsets)

    @property
    def entities(self) -> str:
        return f"sub-{self.subject}_ses-{self.session}_task-{self.task}_run-{self.run}"


def _slow_noise(
    rng: np.random.Generator, n: int, cutoff: float, shape: tuple[int, ...]
) -> np.ndarray:
    """Unit-variance Gaussian noise low-passed at ``cutoff`` Hz on the ``_GRID_DT`` grid
    (FFT brick-wall: exact band limit, no filter transients on short runs)."""
    white = rng.standard_normal((n, *shape))
    spec = np.fft.rfft(white, axis=0)
    freqs = np.fft.rfftfreq(n, _GRID_DT)
    spec[freqs > cutoff] = 0.0
    out = np.fft.irfft(spec, n=n, axis=0)
    return (out - out.mean(axis=0)) / (out.std(axis=0) + 1e-12)


def _to_rate(grid_values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Slow grid values (axis 0 on ``_GRID_DT``) interpolated linearly at times ``t``."""
    pos = t / _GRID_DT
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, len(grid_values) - 2)
    frac = (pos - i0).reshape((-1,) + (1,) * (grid_values.ndim - 1))
    return grid_values[i0] * (1 - frac) + grid_values[i0 + 1] * frac


def _block_design(
    rng: np.random.Generator, first: float, last: float, rate: float
) -> dict[str, np.ndarray]:
    names = list(CLASSES)
    onsets, kinds = [], []
    t = first + rng.uniform(2.0, 6.0)
    while t + _BLOCK < last:
        onsets.append(t)
        kinds.append(
            names[len(kinds) % len(names)] if len(kinds) < len(names) else rng.choice(names)
        )
        t += _BLOCK + rng.uniform(*_ISI)
    # Stimulus software logs onsets as markers on the EEG's sample clock.
    onset = np.round(np.asarray(onsets) * rate) / rate
    return {
        "onset": onset,
        "duration": np.full(len(onset), _BLOCK),
        "trial_type": np.asarray(kinds, dtype=object),
    }


def _boxcar(t: np.ndarray, onsets: np.ndarray, length: float) -> np.ndarray:
    """1 inside each block, 0 outside, with raised-cosine ramps of ``_RAMP`` s."""
    out = np.zeros_like(t)
    for on in onsets:
        rise = np.clip((t - on) / _RAMP, 0.0, 1.0)
        fall = np.clip((on + length - t) / _RAMP, 0.0, 1.0)
        out = np.maximum(out, 0.5 - 0.5 * np.cos(np.pi * np.minimum(rise, fall)))
    return out


def _montage() -> Any:
    import mne

    builtin = mne.channels.get_builtin_montages()
    return mne.channels.make_standard_montage(
        "fsaverage_1005" if "fsaverage_1005" in builtin else "standard_1005"
    )


def _leadfield(
    centroids_mm: np.ndarray, kind: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, str]:
    """EEG lead field (n_eeg, P) in V/(A*m), source positions in the head frame (m), and kind.

    The sphere model is MNE's: ``make_sphere_model`` fitted to the electrodes,
    ``setup_volume_source_space(pos=...)`` with one radial dipole per parcel, and
    ``make_forward_solution``. It needs no MRI, so it works offline.
    """
    import mne

    montage = _montage()
    info = mne.create_info(list(EEG_CHANNELS), 250.0, "eeg")
    info.set_montage(montage, verbose=False)
    # The montage lives in fsaverage's MRI space (MNI305, within a few mm of MNI152); its
    # fiducials give the transform to MNE's head frame, exactly as set_montage uses it.
    to_head = mne.channels.compute_native_head_t(montage)
    pos = mne.transforms.apply_trans(to_head, centroids_mm / 1000.0)
    if kind == "random":
        return rng.standard_normal((len(EEG_CHANNELS), len(pos))) * 1e-3 / 3, pos, "random"
    try:
        sphere = mne.make_sphere_model("auto", "auto", info, verbose=False)
        r0 = np.asarray(sphere["r0"])
        inner = float(sphere["layers"][0]["rad"])
        radial = pos - r0
        dist = np.linalg.norm(radial, axis=1, keepdims=True)
        # The 3-shell sphere is a crude head: parcels near the skull could fall outside its
        # innermost shell, where no forward solution exists. Pull them in radially.
        pos = r0 + radial * np.minimum(1.0, 0.85 * inner / dist)
        nn = radial / dist
        src = mne.setup_volume_source_space(pos={"rr": pos, "nn": nn}, sphere=sphere, verbose=False)
        fwd = mne.make_forward_solution(
            info, trans=None, src=src, bem=sphere, eeg=True, meg=False, verbose=False
        )
        fwd = mne.convert_forward_solution(
            fwd, force_fixed=True, surf_ori=True, use_cps=False, verbose=False
        )
        gain = np.asarray(fwd["sol"]["data"])
        if gain.shape != (len(EEG_CHANNELS), len(pos)):
            raise RuntimeError(f"forward solution kept {gain.shape[1]} of {len(pos)} sources")
        return gain, pos, "sphere"
    except Exception as exc:  # fall back rather than fail: the mixing is what matters here
        log.warning("spherical forward model failed (%s); using a random mixing matrix", exc)
        return rng.standard_normal((len(EEG_CHANNELS), len(pos))) * 1e-3 / 3, pos, "random"


def simulate_run(
    parcellation: Parcellation,
    *,
    subject_index: int = 0,
    run_index: int = 0,
    duration: float = 240.0,
    tr: float = 2.0,
    eeg_rate: float = 250.0,
    bold_band: str = "gamma",
    eeg_rms: float = 20e-6,
    eeg_noise: float = 0.2,
    bold_percent: float = 1.5,
    bold_noise: float = 0.01,
    drift: float = 0.01,
    leadfield: str = "sphere",
    seed: int = 0,
) -> SimulatedRun:
    """Simulate one EEG-fMRI run (see the module docstring for the model).

    Parameters
    ----------
    parcellation : Parcellation
        From :func:`make_parcellation`.
    subject_index, run_index : int
        Position in the dataset (subject ``subject_index + 1``, run ``run_index + 1``).
    duration : float
        Scanning time in seconds (``duration // tr`` volumes).
    tr, eeg_rate : float
        Repetition time (s) and EEG sampling rate (Hz).
    bold_band : str
        Band (``"alpha"``, ``"beta"``, ``"gamma"``) whose envelope drives BOLD.
    eeg_rms, eeg_noise : float
        Median channel RMS of the brain signal (V), and white sensor noise relative to it.
    bold_percent, bold_noise, drift : float
        Mean parcel BOLD standard deviation (% signal change), voxel noise SD and drift
        amplitude as fractions of the voxel baseline.
    leadfield : str
        ``"sphere"`` (MNE's spherical head model) or ``"random"``.
    seed : int
        Root seed.
    """
    from nilearn.glm.first_level import glover_hrf

    if bold_band not in BANDS:
        raise InvalidDataError(f"bold_band: expected one of {list(BANDS)}, got {bold_band!r}")
    if leadfield not in ("sphere", "random"):
        raise InvalidDataError(f"leadfield: expected 'sphere' or 'random', got {leadfield!r}")
    if not (tr > 0 and eeg_rate >= 4 * max(hi for _, hi in BANDS.values())):
        raise InvalidDataError(f"tr must be > 0 and eeg_rate >= 180 Hz (got {tr}, {eeg_rate})")
    n_vol = int(duration // tr)
    if n_vol < 10:
        raise InvalidDataError(
            f"duration: {duration} s gives {n_vol} volumes at TR {tr} s; need >= 10"
        )
    for name, value in (("eeg_noise", eeg_noise), ("bold_noise", bold_noise), ("drift", drift)):
        if not (np.isfinite(value) and value >= 0):
            raise InvalidDataError(f"{name}: must be >= 0, got {value}")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(subject_index, run_index)))
    n_par = parcellation.n_parcels
    lead_in = round(float(rng.uniform(3.0, 6.0)) * eeg_rate) / eeg_rate
    n_samp = int(round((lead_in + n_vol * tr + _LEAD_OUT) * eeg_rate))
    t = np.arange(n_samp) / eeg_rate
    n_grid = int(np.ceil(n_samp / eeg_rate / _GRID_DT)) + 2
    volume_onsets = lead_in + np.arange(n_vol) * tr
    events = _block_design(rng, lead_in, lead_in + n_vol * tr - 10.0, eeg_rate)

    # ---- envelopes: resting amplitude x slow fluctuation x stimulus modulation -------------
    cents = parcellation.centroids
    gains = np.zeros((len(CLASSES), n_par))
    for k, foci in enumerate(CLASSES.values()):
        d2 = np.min([np.sum((cents - np.asarray(f)) ** 2, axis=1) for f in foci], axis=0)
        gains[k] = np.exp(-d2 / (2 * _FOCUS_SD**2)) * rng.uniform(0.8, 1.2)
    posterior = 1.0 / (1.0 + np.exp((cents[:, 1] + 40.0) / 15.0))  # alpha is posterior
    t_grid = np.arange(n_grid) * _GRID_DT
    blocks = np.stack(
        [_boxcar(t_grid, events["onset"][events["trial_type"] == name], _BLOCK) for name in CLASSES]
    )  # (K, n_grid)
    fluct = _slow_noise(rng, n_grid, 0.1, (len(BANDS), n_par))  # (n_grid, B, P)
    env_grid = np.empty((len(BANDS), n_grid, n_par))
    for b, band in enumerate(BANDS):
        base = BAND_AMPLITUDE[band] * (1.0 + (1.5 * posterior if band == "alpha" else 0.0))
        modulation = 1.0 + BAND_RESPONSE[band] * (blocks.T @ gains)  # (n_grid, P)
        env_grid[b] = base * np.exp(0.3 * fluct[:, b, :]) * np.clip(modulation, 0.2, None)

    # ---- carriers of unit amplitude with a wandering in-band frequency -------------------
    wander = np.tanh(_slow_noise(rng, n_grid, 2.0, (len(BANDS), n_par)))
    envelopes = np.empty((len(BANDS), n_samp, n_par))
    sources = np.zeros((n_samp, n_par))
    for b, (lo, hi) in enumerate(BANDS.values()):
        freq = 0.5 * (lo + hi) + 0.5 * (hi - lo) * 0.8 * _to_rate(wander[:, b, :], t)
        phase = 2 * np.pi * np.cumsum(freq, axis=0) / eeg_rate + rng.uniform(0, 2 * np.pi, n_par)
        envelopes[b] = _to_rate(env_grid[b], t)
        sources += envelopes[b] * np.cos(phase)

    # ---- EEG: lead-field mixing + sensor noise + line noise; EOG blinks; ECG beats --------
    gain, pos_head, lf_kind = _leadfield(cents, leadfield, rng)
    brain = sources @ gain.T
    scale = eeg_rms / float(np.median(brain.std(axis=0)))
    brain *= scale
    sources *= scale
    envelopes *= scale
    noise = eeg_noise * eeg_rms * rng.standard_normal(brain.shape)
    line = 1.5e-6 * np.sin(
        2 * np.pi * LINE_FREQ * t[:, None] + rng.uniform(0, 2 * np.pi, brain.shape[1])
    )
    eeg_part = brain + noise + line
    blinks = np.zeros(n_samp)
    for tb in np.cumsum(rng.exponential(4.0, int(n_samp / eeg_rate / 2) + 4)):
        if tb < t[-1]:
            blinks += 100e-6 * np.exp(-0.5 * ((t - tb) / 0.08) ** 2)
    eog = blinks + 5e-6 * rng.standard_normal(n_samp)
    ecg = np.zeros(n_samp)
    for tb in np.cumsum(rng.normal(0.9, 0.04, int(n_samp / eeg_rate / 0.8) + 4)):
        if tb < t[-1] + 1:
            ecg += 1e-3 * np.exp(-0.5 * ((t - tb) / 0.012) ** 2)
            ecg += 0.25e-3 * np.exp(-0.5 * ((t - tb - 0.28) / 0.045) ** 2)
    ecg += 10e-6 * rng.standard_normal(n_samp)
    eeg = np.column_stack([eeg_part, eog, ecg])

    # ---- BOLD: band envelope -> Glover HRF -> sampled at the volume markers --------------
    b_idx = list(BANDS).index(bold_band)
    per_grid = int(round(_GRID_DT * eeg_rate))
    n_full = n_samp // per_grid
    drive = envelopes[b_idx, : n_full * per_grid].reshape(n_full, per_grid, n_par).mean(axis=1)
    hrf = glover_hrf(t_r=tr, oversampling=int(round(tr / _GRID_DT)), time_length=32.0)
    # Before the EEG starts the brain was already active: take the drive's mean as its past
    # (zeros would make every run's BOLD ramp up over its first ~25 s).
    level = drive.mean(axis=0)
    conv = (
        np.stack([np.convolve(drive[:, p] - level[p], hrf)[:n_full] for p in range(n_par)], axis=1)
        + level * hrf.sum()
    )
    # grid cell i covers [i, i+1) * _GRID_DT: its centre is (i + 0.5) * _GRID_DT
    at_volumes = np.stack(
        [
            np.interp(volume_onsets, (np.arange(n_full) + 0.5) * _GRID_DT, conv[:, p])
            for p in range(n_par)
        ],
        axis=1,
    )
    centred = at_volumes - at_volumes.mean(axis=0)
    y = bold_percent * centred / float(np.mean(centred.std(axis=0)))

    labels = parcellation.labels
    ijk = np.argwhere(labels > 0)
    parcel_of = labels[tuple(ijk.T)] - 1
    n_vox = len(ijk)
    baseline = 1000.0 * rng.uniform(0.85, 1.15, n_vox)
    coupling = 1.0 + 0.15 * rng.standard_normal(n_vox)
    frames = np.arange(n_vol)
    ramp = np.linspace(-1.0, 1.0, n_vol)
    slow = np.cos(2 * np.pi * frames * tr / 150.0 + rng.uniform(0, 2 * np.pi))
    # Scanner drift and physiological noise are spatially coherent: one component shared by
    # a parcel's voxels plus a voxel-specific one (which averages out in the parcel mean).
    shared = rng.standard_normal((2, n_par))[:, parcel_of] + 0.5 * rng.standard_normal((2, n_vox))
    drift_v = drift * (np.outer(ramp, shared[0]) + np.outer(slow, shared[1]))
    voxels = baseline * (1.0 + coupling * y[:, parcel_of] / 100.0 + drift_v)
    if bold_noise > 0:
        coherent = rng.standard_normal((n_vol, n_par))[:, parcel_of]
        white = rng.standard_normal(voxels.shape)
        voxels += bold_noise * baseline * (white + 0.2 * coherent)
    bold = np.zeros((*labels.shape, n_vol), dtype=np.float32)
    bold[tuple(ijk.T)] = voxels.T.astype(np.float32)

    return SimulatedRun(
        subject=f"{subject_index + 1:02d}",
        session="01",
        task=TASK,
        run=str(run_index + 1),
        eeg_rate=float(eeg_rate),
        tr=float(tr),
        lead_in=lead_in,
        ch_names=[*EEG_CHANNELS, "EOG", "ECG"],
        ch_types=["eeg"] * len(EEG_CHANNELS) + ["eog", "ecg"],
        eeg=eeg,
        sources=sources,
        envelopes=envelopes,
        leadfield=gain * 1.0,
        leadfield_kind=lf_kind,
        source_pos_head=pos_head,
        events=events,
        volume_onsets=volume_onsets,
        bold_band=bold_band,
        hrf=hrf,
        hrf_dt=_GRID_DT,
        bold_percent=y,
        bold=bold,
        affine=parcellation.labels_img.affine.copy(),
        meas_date=_BASE_DATE + dt.timedelta(days=7 * subject_index, hours=run_index),
        params={
            "seed": seed,
            "subject_index": subject_index,
            "run_index": run_index,
            "duration": duration,
            "eeg_rms": eeg_rms,
            "eeg_noise": eeg_noise,
            "bold_percent_sd": bold_percent,
            "bold_noise": bold_noise,
            "drift": drift,
            "source_scale_am": scale,
            "class_gains": gains.tolist(),
        },
    )


def to_raw(run: SimulatedRun, markers: bool = True) -> Any:
    """The run's EEG as an ``mne.io.RawArray``: channel types, the template montage (the one
    the lead field was computed with), line frequency, measurement date, and annotations for
    the stimulus blocks and (with ``markers``) the scanner's ``R128`` volume markers."""
    import mne

    info = mne.create_info(run.ch_names, run.eeg_rate, run.ch_types)
    info["line_freq"] = LINE_FREQ
    raw = mne.io.RawArray(run.eeg.T, info, verbose=False)
    raw.set_montage(_montage(), on_missing="ignore", verbose=False)
    raw.set_meas_date(run.meas_date)
    onset = list(run.events["onset"])
    dur = list(run.events["duration"])
    desc = [str(x) for x in run.events["trial_type"]]
    if markers:
        onset += list(run.volume_onsets)
        dur += [0.0] * run.n_volumes
        desc += [VOLUME_MARKER] * run.n_volumes
    order = np.argsort(onset, kind="stable")
    raw.set_annotations(
        mne.Annotations(
            np.asarray(onset)[order],
            np.asarray(dur)[order],
            np.asarray(desc)[order],
            orig_time=run.meas_date,
        )
    )
    return raw


# --------------------------------------------------------------------------------------------
# BIDS
# --------------------------------------------------------------------------------------------


def _scanner_markers(vmrk: Path, n_volumes: int) -> None:
    """Write the volume markers as a scanner's BrainVision recorder does, ``Response,R128``.

    mne-bids exports every annotation as a ``Stimulus`` marker with a numeric code (``S  2``);
    the code of ``R128`` is read back from the marker that the run's events say is the first
    volume. The run's ``_events.tsv`` keeps ``R128`` rows either way."""
    events = vmrk.with_name(vmrk.name.replace("_eeg.vmrk", "_events.tsv"))
    rows = [r.split("\t") for r in events.read_text().splitlines()]
    col, value = rows[0].index("trial_type"), rows[0].index("value")
    (code,) = {r[value] for r in rows[1:] if r[col] == VOLUME_MARKER}
    stimulus = f"=Stimulus,S{code:>3},"
    lines = vmrk.read_text().splitlines()
    out = [line.replace(stimulus, "=Response,R128,") for line in lines]
    written = sum("=Response,R128," in line for line in out)
    if written != n_volumes:  # a change in mne-bids' export: better to fail here than later
        raise RuntimeError(f"{vmrk}: {written} volume markers rewritten, expected {n_volumes}")
    vmrk.write_text("\n".join(out) + "\n")


def atlas_name(parcellation: Parcellation) -> str:
    size = f"{parcellation.voxel_size:g}".replace(".", "p")
    return f"atlas-kmeans{parcellation.n_parcels}_space-{SPACE}_res-{size}_dseg"


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            value, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)
        )
        + "\n"
    )


def _write_tsv(path: Path, columns: dict[str, Any]) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(columns).to_csv(path, sep="\t", index=False, na_rep="n/a", float_format="%.6g")


def write_bids(
    root: str | os.PathLike[str], runs: list[SimulatedRun], parcellation: Parcellation
) -> list[Path]:
    """Write runs as a BIDS dataset under ``root`` (EEG through mne-bids as BrainVision, BOLD as
    NIfTI with sidecars, events tables, scans tables, the atlas and the ground truth under
    ``derivatives/neurofm-synth``). Returns the ground-truth files."""
    import mne_bids
    import nibabel as nib
    import pandas as pd

    from neurofm import __version__

    root = Path(root)
    deriv = root / "derivatives" / DERIVATIVE
    atlas_path = deriv / "atlas" / f"{atlas_name(parcellation)}.nii.gz"
    atlas_path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(parcellation.labels_img, atlas_path)
    _write_tsv(
        atlas_path.with_name(atlas_path.name.replace(".nii.gz", ".tsv")),
        {
            "index": np.arange(1, parcellation.n_parcels + 1),
            "name": parcellation.names,
            "x": parcellation.centroids[:, 0],
            "y": parcellation.centroids[:, 1],
            "z": parcellation.centroids[:, 2],
        },
    )
    _write_json(
        deriv / "dataset_description.json",
        {
            "Name": "neurofm synthetic EEG-fMRI ground truth",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "neurofm", "Version": __version__}],
        },
    )
    truths = []
    for run in runs:
        bp = mne_bids.BIDSPath(
            subject=run.subject,
            session=run.session,
            task=run.task,
            run=run.run,
            datatype="eeg",
            root=root,
        )
        with warnings.catch_warnings():
            # mne-bids warns that a preloaded RawArray is converted: that is the point here.
            warnings.simplefilter("ignore")
            mne_bids.write_raw_bids(
                to_raw(run),
                bp,
                format="BrainVision",
                allow_preload=True,
                overwrite=True,
                verbose=False,
            )
        _scanner_markers(bp.copy().update(suffix="eeg", extension=".vmrk").fpath, run.n_volumes)
        func = root / f"sub-{run.subject}" / f"ses-{run.session}" / "func"
        stem = f"{run.entities}_bold"
        func.mkdir(parents=True, exist_ok=True)
        img = nib.Nifti1Image(run.bold, run.affine)
        img.header.set_xyzt_units("mm", "sec")
        img.header.set_zooms((*[parcellation.voxel_size] * 3, run.tr))
        nib.save(img, func / f"{stem}.nii.gz")
        _write_json(
            func / f"{stem}.json",
            {
                "RepetitionTime": run.tr,
                "TaskName": run.task,
                "SkullStripped": True,
                "VolumeTiming_note": "volume i is sampled at EEG marker R128 number i",
            },
        )
        _write_tsv(
            func / f"{run.entities}_events.tsv",
            {
                "onset": run.events["onset"] - run.lead_in,  # BIDS: from the first volume
                "duration": run.events["duration"],
                "trial_type": run.events["trial_type"],
            },
        )
        scans = (
            root
            / f"sub-{run.subject}"
            / f"ses-{run.session}"
            / f"sub-{run.subject}_ses-{run.session}_scans.tsv"
        )
        table = pd.read_csv(scans, sep="\t", dtype=str)
        rel = f"func/{stem}.nii.gz"
        when = (run.meas_date + dt.timedelta(seconds=run.lead_in)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        table = table[table["filename"] != rel]
        table = pd.concat([table, pd.DataFrame({"filename": [rel], "acq_time": [when]})])
        table.to_csv(scans, sep="\t", index=False, na_rep="n/a")
        truth = (
            deriv / f"sub-{run.subject}" / f"ses-{run.session}" / f"{run.entities}_desc-truth.npz"
        )
        truth.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            truth,
            sources=run.sources.astype(np.float32),
            envelopes=run.envelopes.astype(np.float32),
            leadfield=run.leadfield,
            source_pos_head=run.source_pos_head,
            centroids_mni=parcellation.centroids,
            volume_onsets=run.volume_onsets,
            bold_percent=run.bold_percent,
            hrf=run.hrf,
            event_onset=run.events["onset"],
            event_duration=run.events["duration"],
            event_type=np.asarray(run.events["trial_type"], dtype=str),
        )
        _write_json(
            truth.with_suffix(".json"),
            {
                "eeg_rate_hz": run.eeg_rate,
                "repetition_time_s": run.tr,
                "lead_in_s": run.lead_in,
                "n_volumes": run.n_volumes,
                "bands_hz": BANDS,
                "band_response": BAND_RESPONSE,
                "band_amplitude": BAND_AMPLITUDE,
                "classes_mni_foci": CLASSES,
                "bold_band": run.bold_band,
                "hrf_model": f"nilearn glover_hrf(t_r={run.tr}), sampled every {run.hrf_dt} s",
                "hrf_dt_s": run.hrf_dt,
                "leadfield_kind": run.leadfield_kind,
                "parcel_names": parcellation.names,
                "atlas": str(atlas_path.relative_to(root)),
                "eeg_channels": run.ch_names,
                "eeg_types": run.ch_types,
                **run.params,
            },
        )
        truths.append(truth)
    _write_json(
        root / "dataset_description.json",
        {
            "Name": "neurofm synthetic simultaneous EEG-fMRI",
            "BIDSVersion": "1.9.0",
            "DatasetType": "raw",
            "GeneratedBy": [
                {
                    "Name": "neurofm",
                    "Version": __version__,
                    "Description": "neurofm.synthetic.eeg_fmri",
                }
            ],
        },
    )
    return truths


@dataclass(frozen=True)
class RunInfo:
    """Summary of one written run."""

    subject: str
    run: str
    eeg: Path
    bold: Path
    truth: Path
    n_volumes: int
    duration: float


def generate_eeg_fmri_dataset(
    out_dir: str | os.PathLike[str],
    n_subjects: int = 2,
    n_runs: int = 1,
    duration: float = 240.0,
    tr: float = 2.0,
    n_parcels: int = 20,
    voxel_size: float = 6.0,
    seed: int = 0,
    progress: bool = True,
    **run_options: Any,
) -> list[RunInfo]:
    """Write a synthetic simultaneous EEG-fMRI BIDS dataset with its ground truth.

    The dataset is built in a temporary folder beside ``out_dir`` and moved into place when
    complete, so a failure never leaves a partial dataset. An existing ``out_dir`` is replaced
    only if it is empty or was written by this generator.

    Parameters
    ----------
    out_dir : path-like
        Destination BIDS root.
    n_subjects, n_runs : int
        Subjects, and runs per subject (one session each).
    duration, tr : float
        Scanning time per run (s) and repetition time (s).
    n_parcels, voxel_size : int, float
        Parcellation of the MNI152 mask (shared by all subjects).
    seed : int
        Root seed: the dataset is a deterministic function of the arguments.
    progress : bool
        Show a progress bar over runs.
    **run_options
        Passed to :func:`simulate_run` (``bold_band``, ``eeg_noise``, ``bold_noise``,
        ``drift``, ``leadfield``...).

    Returns
    -------
    list of RunInfo
    """
    from neurofm.progress import progress_bar

    if not 1 <= n_subjects <= 99 or not 1 <= n_runs <= 9:
        raise InvalidDataError(
            f"n_subjects must be 1..99 and n_runs 1..9 (got {n_subjects}, {n_runs})"
        )
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not _is_ours(out))):
        raise InvalidDataError(
            f"{out}: exists and is not an empty folder or a dataset written by this generator"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    parcellation = make_parcellation(n_parcels, voxel_size, seed)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        runs = []
        combos = [(s, r) for s in range(n_subjects) for r in range(n_runs)]
        for s, r in progress_bar(combos, desc="synth eeg-fmri", unit="run", disable=not progress):
            runs.append(
                simulate_run(
                    parcellation,
                    subject_index=s,
                    run_index=r,
                    duration=duration,
                    tr=tr,
                    seed=seed,
                    **run_options,
                )
            )
        truths = write_bids(tmp, runs, parcellation)
        if out.exists():
            trash = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, trash)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    infos = []
    for run, truth in zip(runs, truths, strict=True):
        sub = out / f"sub-{run.subject}" / f"ses-{run.session}"
        infos.append(
            RunInfo(
                subject=run.subject,
                run=run.run,
                eeg=sub / "eeg" / f"{run.entities}_eeg.vhdr",
                bold=sub / "func" / f"{run.entities}_bold.nii.gz",
                truth=out / truth.relative_to(tmp),
                n_volumes=run.n_volumes,
                duration=len(run.eeg) / run.eeg_rate,
            )
        )
    log.info("wrote %d runs to %s", len(infos), out)
    return infos


def _is_ours(path: Path) -> bool:
    try:
        desc = json.loads((path / "dataset_description.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return any(
        g.get("Name") == "neurofm" for g in desc.get("GeneratedBy", []) if isinstance(g, dict)
    )


def load_ground_truth(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ground truth of one run: the ``_desc-truth.npz`` arrays plus its JSON parameters.

    Arrays: ``sources`` (T, P) A*m, ``envelopes`` (3, T, P), ``leadfield`` (30, P) V/(A*m),
    ``source_pos_head`` (P, 3) m, ``centroids_mni`` (P, 3) mm, ``volume_onsets`` (V,) s on the
    EEG clock, ``bold_percent`` (V, P), ``hrf``, ``event_onset``/``event_duration``/
    ``event_type``. Parameters: ``lead_in_s``, ``repetition_time_s``, ``bold_band``,
    ``hrf_dt_s`` (the spacing of ``hrf``), ...
    """
    path = Path(path)
    with np.load(path) as npz:
        out: dict[str, Any] = {k: npz[k] for k in npz.files}
    for key, value in json.loads(path.with_suffix(".json").read_text()).items():
        out.setdefault(key, value)  # the arrays win any name clash
    return out
