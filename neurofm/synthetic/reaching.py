"""Synthetic centre-out reaching sessions with known ground truth, written as DANDI-style NWB.

The generator imitates the public motor-cortex reaching datasets (DANDI 000128 MC_Maze,
000688 Perich-Miller): monkeys make delayed centre-out reaches to 8 targets while Utah arrays
in M1 (and PMd) record sorted units. Because every number is drawn from a known model, a reader,
a tokenizer or a decoder can be checked against the truth.

Model, in brief
---------------
* Behaviour: minimum-jerk reaches ``x(t) = x0 + (x1 - x0)(10 tau^3 - 15 tau^4 + 6 tau^5)``
  from the centre to a target on a circle of radius 0.08 m, then a return to the centre, plus
  smooth positional noise (~0.3 mm). Hand position and velocity are sampled on a regular grid;
  the cursor is sampled at irregular ~60 Hz display frames.
* Neurons: each subject has a pool of neurons; a session records a random subset whose
  parameters drift a little from session to session. The rate of a tuned unit is
  ``r(t) = s(b + g v(t+lag).u_pd / v_ref + g_s |v(t+lag)| / v_ref + g_p prep(t).u_pd) * f(t)``
  with ``s`` a softplus (1 Hz scale) so rates stay non-negative, ``u_pd = [cos pd, sin pd]``,
  ``prep`` a delay-period signal pointing at the cued target and ``f`` a slow multiplicative
  fluctuation. Untuned units keep only ``b`` and ``f``.
* Spikes: inhomogeneous Poisson on a 5 ms rate grid at 1/30000 s resolution, followed by an
  exact 2 ms dead time; the Poisson rate is raised by ``1 / (1 - r * 2 ms)`` so the rate after
  the dead time matches ``r``.

Corpus knobs: ``pool_factor`` sets unit turnover (each subject's pool holds
``ceil(pool_factor * max units)`` neurons and a session records a random subset, so a larger
factor means fewer neurons shared between two sessions) and ``drift_scale`` multiplies every
session-to-session drift step. Their defaults (1.5 and 1.0) give exactly the files of earlier
versions; a pretraining corpus of several subjects with more turnover and drift is e.g.
``generate_reaching_dataset(out, n_subjects=3, n_sessions=5, pool_factor=2.5, drift_scale=1.5)``.

Seeds: everything derives from ``numpy.random.SeedSequence(seed, spawn_key=...)`` with keys
``(subject,)``-prefixed, so a session depends only on ``(seed, subject_index, session_index,
n_trials, n_units_range, behavior_rate, pool_factor, drift_scale)`` and not on how many sessions
are generated.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurofm.errors import InvalidDataError

__all__ = [
    "ReachingSession",
    "SessionInfo",
    "generate_reaching_dataset",
    "session_ground_truth",
    "simulate_session",
    "write_session_nwb",
]

logger = logging.getLogger(__name__)

# --- constants of the task and the recording --------------------------------------------------
SPIKE_RESOLUTION = 1.0 / 30000.0  # s; Blackrock/Cerebus sampling clock
TICKS_PER_SECOND = 30000
REFRACTORY = 0.002  # s, absolute refractory period (dead time)
TARGET_RADIUS = 0.08  # m
N_TARGETS = 8
CHANNELS_PER_ARRAY = 96  # Utah array: 10 x 10 grid without the corners
DANDISET_ID = "000000"
SPECIES = "Macaca mulatta"

_RATE_HZ = 200  # spikes are drawn on this piecewise-constant rate grid
_RATE_DT = 1.0 / _RATE_HZ
_FINE_DT = 0.0005  # s; kinematics grid used for per-unit lags (exact for whole-ms lags)
_VEL_REF = 0.3  # m/s; velocity that drives a unit by its full gain (~ peak reach speed)
_MAX_RATE = 200.0  # Hz; hard ceiling keeps the dead-time compensation finite
_LEAD_IN = 1.0  # s of rest before the first trial
_LEAD_OUT = 1.0  # s of rest after the last return
_HAND_NOISE = 0.0003  # m, sd of the smooth positional noise
_HAND_NOISE_TIMESCALE = 0.04  # s, sd of the Gaussian kernel that smooths it
_FLUCT_KNOT = 2.0  # s between knots of the slow rate fluctuations
_FAIL_PROB = 0.05
_SPLIT_FRACTIONS = {"valid": 0.1, "test": 0.2}  # the rest is 'train'
_BASE_DATE = dt.datetime(2024, 3, 4, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=-6)))
# seed-sequence sub-keys below (subject_index, KEY, ...)
_KEY_POOL, _KEY_DRIFT, _KEY_SESSION, _KEY_UUID = 0, 1, 2, 3

# drift between consecutive sessions (random walk; session 0 equals the pool)
_DRIFT_GLOBAL_ROT_SD = 0.03  # rad, shared rotation of all preferred directions
_DRIFT_PD_SD = 0.06  # rad, per-neuron rotation
_DRIFT_LOG_GAIN_SD = 0.08
_DRIFT_LOG_BASELINE_SD = 0.08


@dataclass(frozen=True)
class SessionInfo:
    """Summary of one written session.

    Attributes
    ----------
    subject_id, session_id : str
        DANDI entities (letters and digits only), e.g. ``"S0"`` and ``"20240304"``.
    path : Path
        The NWB file.
    n_units, n_spikes : int
        Units in the Units table and spikes over all of them.
    duration : float
        Session length in seconds (the observation interval is ``[0, duration]``).
    """

    subject_id: str
    session_id: str
    path: Path
    n_units: int
    n_spikes: int
    duration: float


@dataclass
class ReachingSession:
    """One simulated session held in memory (times in seconds from the session start).

    Attributes
    ----------
    subject_id, session_id : str
        DANDI entities.
    seed, subject_index, session_index : int
        Where the session sits in the seed hierarchy.
    session_start_time : datetime
        Time-zone aware start of the session.
    identifier : str
        Deterministic UUID used as the NWB identifier.
    duration : float
        Session length in seconds.
    behavior_rate : float
        Sampling rate of ``hand_pos`` and ``hand_vel`` (sample ``i`` is at ``i / rate``).
    hand_pos, hand_vel : ndarray, shape (T, 2)
        Hand position (m) and velocity (m/s), x right and y up, origin at the centre target.
    cursor_timestamps : ndarray, shape (M,)
        Irregular display-frame times of the cursor.
    cursor_pos : ndarray, shape (M, 2)
        Cursor position (m) at those frames.
    trials : dict of str to ndarray
        One entry per trial column (see :func:`simulate_session`).
    spike_times : list of ndarray
        Sorted spike times of each unit, in Units-table order.
    units : dict of str to ndarray
        Ground truth per unit (``pd``, ``baseline``, ``gain``, ``lag``, ``tuned``, ...).
    drift : dict
        Session-level drift parameters (per-unit drift lives in ``units``).
    electrodes : dict of str to ndarray
        ``area`` per electrode of the recording arrays (row order of the electrodes table).
    areas : tuple of str
        Implanted areas, one Utah array each.
    subject : dict
        Subject metadata (``sex``, ``age``, ``description``, ``species``).
    params : dict
        Generation parameters (n_trials, n_units_range, behavior_rate, and pool_factor and
        drift_scale when not at their defaults).
    rates : ndarray or None, shape (n_units, N)
        Ground-truth rates (Hz) on the rate grid (bin ``k`` covers ``[k, k+1) * rate_dt``),
        only when asked for with ``return_rates=True``.
    rate_dt : float
        Bin width of ``rates``.
    """

    subject_id: str
    session_id: str
    seed: int
    subject_index: int
    session_index: int
    session_start_time: dt.datetime
    identifier: str
    duration: float
    behavior_rate: float
    hand_pos: np.ndarray
    hand_vel: np.ndarray
    cursor_timestamps: np.ndarray
    cursor_pos: np.ndarray
    trials: dict[str, np.ndarray]
    spike_times: list[np.ndarray]
    units: dict[str, np.ndarray]
    drift: dict[str, Any]
    electrodes: dict[str, np.ndarray]
    areas: tuple[str, ...]
    subject: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)
    rates: np.ndarray | None = None
    rate_dt: float = _RATE_DT

    @property
    def n_units(self) -> int:
        """Number of units."""
        return len(self.spike_times)

    @property
    def spike_counts(self) -> np.ndarray:
        """Spikes per unit, shape (n_units,)."""
        return np.array([len(s) for s in self.spike_times], dtype=np.int64)

    @property
    def n_spikes(self) -> int:
        """Spikes over all units."""
        return int(self.spike_counts.sum())

    @property
    def behavior_timestamps(self) -> np.ndarray:
        """Times of the ``hand_pos``/``hand_vel`` samples."""
        return np.arange(len(self.hand_pos)) / self.behavior_rate


# --- argument checks ---------------------------------------------------------------------------


def _check_args(
    seed: int,
    n_trials: int,
    n_units_range: Sequence[int],
    behavior_rate: float,
    **indices: int,
) -> tuple[int, int]:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidDataError(f"seed: expected a non-negative integer, got {seed!r}")
    for name, value in indices.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise InvalidDataError(f"{name}: expected a non-negative integer, got {value!r}")
    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise InvalidDataError(f"n_trials: expected a positive integer, got {n_trials!r}")
    try:
        lo, hi = (int(v) for v in n_units_range)
    except (TypeError, ValueError):
        raise InvalidDataError(
            f"n_units_range: expected (low, high) integers, got {n_units_range!r}"
        ) from None
    if not 1 <= lo <= hi:
        raise InvalidDataError(f"n_units_range: expected 1 <= low <= high, got {(lo, hi)!r}")
    if not np.isfinite(behavior_rate) or behavior_rate < 100.0:
        raise InvalidDataError(
            f"behavior_rate: expected a finite rate >= 100 Hz, got {behavior_rate!r}"
        )
    return lo, hi


def _rng(seed: int, *key: int) -> np.random.Generator:
    # spawn_key=(i, ...) is what SeedSequence(seed).spawn would give child i, so the streams are
    # independent and each is addressable without generating the others.
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


# --- subject pool and drift --------------------------------------------------------------------


def _subject_areas(subject_index: int) -> tuple[str, ...]:
    # Like Perich-Miller: some monkeys have M1 and PMd arrays, others M1 only.
    return ("M1", "PMd") if subject_index % 2 == 0 else ("M1",)


def _subject_pool(seed: int, subject_index: int, pool_size: int) -> dict[str, Any]:
    """Neuron parameters of one subject, before any session drift."""
    rng = _rng(seed, subject_index, _KEY_POOL)
    areas = _subject_areas(subject_index)
    n_electrodes = CHANNELS_PER_ARRAY * len(areas)
    electrode = rng.integers(0, n_electrodes, pool_size)
    area = np.asarray(areas)[electrode // CHANNELS_PER_ARRAY]
    pd = rng.uniform(-np.pi, np.pi, pool_size)
    # log-normal baselines, median 8 Hz, kept in the 2-30 Hz range of sorted M1 units
    baseline = np.clip(np.exp(rng.normal(np.log(8.0), 0.6, pool_size)), 2.0, 30.0)
    tuned = rng.random(pool_size) >= 0.15
    gain = np.clip(np.exp(rng.normal(np.log(20.0), 0.45, pool_size)), 4.0, None)
    speed_gain = gain * rng.uniform(0.0, 0.5, pool_size)
    # delay-period (preparatory) tuning is common in PMd and rarer in M1
    p_prep = np.where(area == "PMd", 0.6, 0.2)
    prep_gain = np.where(
        rng.random(pool_size) < p_prep, gain * rng.uniform(0.2, 0.6, pool_size), 0.0
    )
    lag = np.round(rng.uniform(0.05, 0.15, pool_size), 3)  # whole ms: exact on the fine grid
    fluct_sd = np.where(
        tuned, rng.uniform(0.05, 0.15, pool_size), rng.uniform(0.15, 0.35, pool_size)
    )
    gain, speed_gain, prep_gain = (np.where(tuned, x, 0.0) for x in (gain, speed_gain, prep_gain))
    # cap the peak rate (|v| reaches ~1.3 v_ref on fast reaches) near 85 Hz
    peak = baseline + 1.3 * (gain + speed_gain) + prep_gain
    scale = np.where(peak > 85.0, (85.0 - baseline) / np.maximum(peak - baseline, 1e-9), 1.0)
    gain, speed_gain, prep_gain = gain * scale, speed_gain * scale, prep_gain * scale
    subject = {
        "species": SPECIES,
        "sex": str(rng.choice(["M", "F"], p=[0.7, 0.3])),
        "age": f"P{int(rng.integers(6, 13))}Y",
        "description": (
            "Synthetic rhesus macaque trained on a delayed centre-out reaching task; "
            f"Utah array(s) in {' and '.join(areas)} (contralateral to the reaching arm)."
        ),
    }
    return {
        "areas": areas,
        "electrode": electrode,
        "area": area,
        "pd": pd,
        "baseline": baseline,
        "tuned": tuned,
        "gain": gain,
        "speed_gain": speed_gain,
        "prep_gain": prep_gain,
        "lag": lag,
        "fluct_sd": fluct_sd,
        "subject": subject,
    }


def _session_drift(
    seed: int, subject_index: int, session_index: int, pool_size: int, scale: float = 1.0
) -> dict:
    """Cumulative random-walk drift of the pool parameters up to ``session_index``; ``scale``
    multiplies every step's standard deviation (1.0: the historical drift, bit for bit)."""
    global_rot = 0.0
    pd_shift = np.zeros(pool_size)
    log_gain = np.zeros(pool_size)
    log_base = np.zeros(pool_size)
    for k in range(1, session_index + 1):
        rng = _rng(seed, subject_index, _KEY_DRIFT, k)
        step_rot = rng.normal(0.0, scale * _DRIFT_GLOBAL_ROT_SD)
        global_rot += step_rot
        pd_shift += step_rot + rng.normal(0.0, scale * _DRIFT_PD_SD, pool_size)
        log_gain += rng.normal(0.0, scale * _DRIFT_LOG_GAIN_SD, pool_size)
        log_base += rng.normal(0.0, scale * _DRIFT_LOG_BASELINE_SD, pool_size)
    return {
        "global_rotation": float(global_rot),
        "pd_shift": pd_shift,
        "gain_scale": np.exp(log_gain),
        "baseline_scale": np.exp(log_base),
    }


# --- behaviour ---------------------------------------------------------------------------------


def _simulate_trials(rng: np.random.Generator, n_trials: int) -> tuple[dict, dict, float]:
    """Trial table, reach/return segments and session end time."""
    n = n_trials
    centre_hold = rng.uniform(0.3, 0.5, n)
    delay = rng.uniform(0.2, 0.8, n)
    reaction = rng.uniform(0.25, 0.40, n)
    move_dur = rng.uniform(0.40, 0.70, n)
    failed = rng.random(n) < _FAIL_PROB
    target_hold = np.where(failed, rng.uniform(0.05, 0.15, n), rng.uniform(0.3, 0.5, n))
    pause = rng.uniform(0.1, 0.3, n)  # reward / feedback before the return
    return_dur = rng.uniform(0.5, 0.8, n)
    iti = rng.uniform(0.2, 0.5, n)
    # targets in shuffled blocks of 8, as rigs balance conditions
    blocks = [rng.permutation(N_TARGETS) for _ in range(-(-n // N_TARGETS))]
    target_idx = np.concatenate(blocks)[:n]
    target_dir = target_idx * (2.0 * np.pi / N_TARGETS)
    target = TARGET_RADIUS * np.stack([np.cos(target_dir), np.sin(target_dir)], axis=1)
    # successful reaches land near the target; failures undershoot or go the wrong way
    scatter = rng.normal(0.0, 0.003, (n, 2))
    undershoot = rng.random(n) < 0.5
    amplitude = rng.uniform(0.3, 0.6, n)
    wrong_dir = target_dir + rng.choice([-1.0, 1.0], n) * rng.uniform(0.5, 1.0, n)
    fail_end = np.where(
        undershoot[:, None],
        amplitude[:, None] * target,
        TARGET_RADIUS * np.stack([np.cos(wrong_dir), np.sin(wrong_dir)], axis=1),
    )
    endpoint = np.where(failed[:, None], fail_end, target + scatter)

    length = centre_hold + delay + reaction + move_dur + target_hold + pause + return_dur + iti
    start = _LEAD_IN + np.concatenate([[0.0], np.cumsum(length[:-1])])
    target_on = start + centre_hold
    go_cue = target_on + delay
    move_onset = go_cue + reaction
    move_end = move_onset + move_dur
    stop = move_end + target_hold
    return_onset = stop + pause
    end = float(start[-1] + length[-1] + _LEAD_OUT)

    # split assigned at random with fixed proportions
    n_valid = round(_SPLIT_FRACTIONS["valid"] * n)
    n_test = round(_SPLIT_FRACTIONS["test"] * n)
    split = np.array(["train"] * (n - n_valid - n_test) + ["valid"] * n_valid + ["test"] * n_test)
    split = split[rng.permutation(n)]

    trials = {
        "start_time": start,
        "stop_time": stop,
        "target_on_time": target_on,
        "go_cue_time": go_cue,
        "move_onset_time": move_onset,
        "move_end_time": move_end,
        "target_x": target[:, 0],
        "target_y": target[:, 1],
        "target_dir": target_dir,
        "is_success": ~failed,
        "split": split.astype(object),
    }
    centre = np.zeros((n, 2))
    # reaches and returns alternate, so the segments are already sorted in time
    segments = {
        "t0": np.stack([move_onset, return_onset], axis=1).ravel(),
        "dur": np.stack([move_dur, return_dur], axis=1).ravel(),
        "p0": np.stack([centre, endpoint], axis=1).reshape(-1, 2),
        "p1": np.stack([endpoint, centre], axis=1).reshape(-1, 2),
    }
    return trials, segments, end


def _min_jerk(segments: dict, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free hand position and velocity at times ``t`` (vectorised over samples)."""
    i = np.searchsorted(segments["t0"], t, side="right") - 1
    before = i < 0
    i = np.maximum(i, 0)
    dur = segments["dur"][i]
    tau = np.clip((t - segments["t0"][i]) / dur, 0.0, 1.0)
    s = tau**3 * (10.0 - 15.0 * tau + 6.0 * tau**2)
    ds = 30.0 * tau**2 * (1.0 - tau) ** 2 / dur  # d s / d t
    delta = segments["p1"][i] - segments["p0"][i]
    pos = segments["p0"][i] + s[:, None] * delta
    vel = ds[:, None] * delta
    pos[before] = segments["p0"][0]
    vel[before] = 0.0
    return pos, vel


def _smooth_noise(rng: np.random.Generator, n: int, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-smoothed white noise (n, 2) with sd ``_HAND_NOISE`` and its time derivative."""
    sigma = _HAND_NOISE_TIMESCALE / step
    half = int(np.ceil(4 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    kernel /= np.sqrt(np.sum(kernel**2))  # unit variance after filtering
    white = rng.standard_normal((n + 2 * half, 2))
    noise = np.stack([np.convolve(white[:, c], kernel, mode="valid") for c in range(2)], axis=1)
    noise *= _HAND_NOISE
    # the derivative of the same samples keeps hand_vel consistent with hand_pos
    return noise, np.gradient(noise, step, axis=0)


def _interp2(t: np.ndarray, grid_step: float, values: np.ndarray) -> np.ndarray:
    grid = np.arange(len(values)) * grid_step
    return np.stack([np.interp(t, grid, values[:, c]) for c in range(values.shape[1])], axis=1)


def _cursor_frames(rng: np.random.Generator, duration: float) -> np.ndarray:
    """Display frame times: ~60 Hz with jitter and ~1% dropped frames."""
    n = int(duration * 60 * 1.1) + 10
    intervals = np.clip(rng.normal(1.0 / 60.0, 0.0015, n), 0.010, 0.025)
    intervals = np.where(rng.random(n) < 0.01, 2.0 * intervals, intervals)
    t = rng.uniform(0.0, 1.0 / 60.0) + np.concatenate([[0.0], np.cumsum(intervals)])
    t = np.round(t * TICKS_PER_SECOND) / TICKS_PER_SECOND  # frames stamped on the neural clock
    return t[t <= duration]


def _prep_signal(trials: dict, t: np.ndarray) -> np.ndarray:
    """Delay-period signal (len(t), 2): unit vector to the cued target times an envelope.

    It rises after target onset (100 ms time constant) and decays after movement onset, the
    way preparatory activity in PMd/M1 does.
    """
    i = np.searchsorted(trials["target_on_time"], t, side="right") - 1
    valid = i >= 0
    i = np.maximum(i, 0)
    since_on = t - trials["target_on_time"][i]
    since_move = t - trials["move_onset_time"][i]
    rise = 1.0 - np.exp(-np.maximum(since_on, 0.0) / 0.1)
    at_move = 1.0 - np.exp(-(trials["move_onset_time"][i] - trials["target_on_time"][i]) / 0.1)
    env = np.where(since_move < 0.0, rise, at_move * np.exp(-np.maximum(since_move, 0.0) / 0.1))
    env = np.where(valid, env, 0.0)
    theta = trials["target_dir"][i]
    return env[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)


# --- neurons -----------------------------------------------------------------------------------


def _slow_fluctuations(rng: np.random.Generator, n_units: int, duration: float) -> np.ndarray:
    """Unit-variance AR(1) knots every ``_FLUCT_KNOT`` s (time constant ~9 s), (U, K)."""
    n_knots = int(np.ceil(duration / _FLUCT_KNOT)) + 2
    rho = 0.8
    eps = rng.standard_normal((n_units, n_knots))
    z = np.empty_like(eps)
    z[:, 0] = eps[:, 0]
    for k in range(1, n_knots):
        z[:, k] = rho * z[:, k - 1] + np.sqrt(1.0 - rho**2) * eps[:, k]
    return z


def _dead_time(ticks: np.ndarray, unit: np.ndarray, dead: int) -> np.ndarray:
    """Mask of spikes kept by an exact dead time, for spikes sorted by (unit, tick).

    A spike is dropped iff it falls within ``dead`` ticks of the previous *kept* spike of its
    unit. A spike that does not violate against its current predecessor is kept for good
    (removing earlier spikes only lengthens its interval), so each pass drops the violators
    whose predecessor is such a spike, and the loop ends after the longest burst chain.
    """
    keep = np.ones(len(ticks), dtype=bool)
    while True:
        idx = np.flatnonzero(keep)
        t, u = ticks[idx], unit[idx]
        viol = np.zeros(len(idx), dtype=bool)
        viol[1:] = (u[1:] == u[:-1]) & (t[1:] - t[:-1] < dead)
        if not viol.any():
            return keep
        prev_ok = np.ones(len(idx), dtype=bool)
        prev_ok[1:] = ~viol[:-1]
        keep[idx[viol & prev_ok]] = False


def _simulate_spikes(
    rng: np.random.Generator,
    units: dict[str, np.ndarray],
    v_fine: np.ndarray,
    prep: np.ndarray,
    duration: float,
    return_rates: bool,
    chunk: int = 64,
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Spike times per unit (seconds, 1/30000 s grid) and optionally the rates."""
    n_units = len(units["pd"])
    n_bins = int(round(duration / _RATE_DT))
    centres = (np.arange(n_bins) + 0.5) * _RATE_DT
    fine_per_bin = int(round(_RATE_DT / _FINE_DT))
    centre_idx = fine_per_bin * np.arange(n_bins) + fine_per_bin // 2
    lag_steps = np.rint(units["lag"] / _FINE_DT).astype(np.int64)
    ticks_per_bin = int(round(_RATE_DT * TICKS_PER_SECOND))
    dead = int(round(REFRACTORY * TICKS_PER_SECOND))
    # slow fluctuations, linearly interpolated from the knots to the rate grid
    knots = _slow_fluctuations(rng, n_units, duration)
    pos = centres / _FLUCT_KNOT
    k0 = np.floor(pos).astype(np.int64)
    frac = pos - k0

    spikes: list[np.ndarray] = []
    rates = np.empty((n_units, n_bins), dtype=np.float32) if return_rates else None
    for lo in range(0, n_units, chunk):
        sl = slice(lo, min(lo + chunk, n_units))
        cos_pd = np.cos(units["pd"][sl])[:, None]
        sin_pd = np.sin(units["pd"][sl])[:, None]
        # activity leads movement: the rate at t follows the hand velocity at t + lag
        idx = centre_idx[None, :] + lag_steps[sl, None]
        vx = v_fine[idx, 0] / _VEL_REF
        vy = v_fine[idx, 1] / _VEL_REF
        drive = (
            units["baseline"][sl, None]
            + units["gain"][sl, None] * (vx * cos_pd + vy * sin_pd)
            + units["speed_gain"][sl, None] * np.hypot(vx, vy)
            + units["prep_gain"][sl, None] * (prep[None, :, 0] * cos_pd + prep[None, :, 1] * sin_pd)
        )
        sd = units["fluct_sd"][sl, None]
        z = knots[sl][:, k0] * (1.0 - frac) + knots[sl][:, k0 + 1] * frac
        rate = np.logaddexp(0.0, drive) * np.exp(sd * z - 0.5 * sd**2)  # softplus keeps r >= 0
        rate = np.minimum(rate, _MAX_RATE)
        if rates is not None:
            rates[sl] = rate
        # raise the Poisson rate so the rate after the dead time equals `rate`
        lam = rate * _RATE_DT / (1.0 - rate * REFRACTORY)
        counts = rng.poisson(lam)
        flat = np.repeat(np.arange(counts.size), counts.ravel())
        unit_local, kbin = np.divmod(flat, n_bins)
        ticks = kbin * ticks_per_bin + rng.integers(0, ticks_per_bin, flat.size)
        order = np.lexsort((ticks, unit_local))
        ticks, unit_local = ticks[order], unit_local[order]
        keep = _dead_time(ticks, unit_local, dead)
        ticks, unit_local = ticks[keep], unit_local[keep]
        bounds = np.searchsorted(unit_local, np.arange(sl.stop - sl.start + 1))
        for j in range(sl.stop - sl.start):
            spikes.append(ticks[bounds[j] : bounds[j + 1]] / TICKS_PER_SECOND)
    return spikes, rates


# --- public: simulate --------------------------------------------------------------------------


def _pool_size(n_units_range: tuple[int, int], pool_factor: float = 1.5) -> int:
    # pool_factor x the largest population (1.5 by default), so sessions share some but not
    # all neurons; the larger the factor, the more turnover between sessions
    return int(np.ceil(pool_factor * n_units_range[1]))


def _check_corpus_args(pool_factor: float, drift_scale: float) -> tuple[float, float]:
    for name, value, low in (("pool_factor", pool_factor, 1.0), ("drift_scale", drift_scale, 0.0)):
        number = isinstance(value, (int, float, np.integer, np.floating))
        ok = number and not isinstance(value, bool)
        if not ok or not np.isfinite(value) or value < low:
            raise InvalidDataError(f"{name}: expected a finite number >= {low:g}, got {value!r}")
    return float(pool_factor), float(drift_scale)


def simulate_session(
    seed: int = 0,
    subject_index: int = 0,
    session_index: int = 0,
    *,
    n_trials: int = 60,
    n_units_range: tuple[int, int] = (50, 200),
    behavior_rate: float = 200.0,
    return_rates: bool = False,
    pool_factor: float = 1.5,
    drift_scale: float = 1.0,
) -> ReachingSession:
    """Simulate one centre-out reaching session in memory.

    The result is exactly the session that :func:`generate_reaching_dataset` writes for the
    same ``seed``, indices and parameters.

    Parameters
    ----------
    seed : int
        Root seed of the dataset.
    subject_index, session_index : int
        Position of the session; subject ``i`` is ``"S{i}"``, and session ``k`` of a subject is
        recorded ``7 k`` days after its first.
    n_trials : int
        Trials in the session.
    n_units_range : (int, int)
        Inclusive range from which the number of units is drawn uniformly.
    behavior_rate : float
        Sampling rate (Hz, >= 100) of hand position and velocity.
    return_rates : bool
        Also return the ground-truth rates on the 5 ms grid (``n_units x duration / 5 ms``
        float32 values).
    pool_factor : float
        Unit turnover: the subject's pool holds ``ceil(pool_factor * n_units_range[1])``
        neurons (>= 1; 1.5 by default) and each session records a random subset.
    drift_scale : float
        Multiplies the standard deviation of every session-to-session drift step (>= 0; 0: no
        drift, 1: the default).

    Returns
    -------
    ReachingSession
        Behaviour, trials (columns ``start_time, stop_time, target_on_time, go_cue_time,
        move_onset_time, move_end_time, target_x, target_y, target_dir, is_success, split``),
        spike times, per-unit ground truth and drift.

    Raises
    ------
    InvalidDataError
        If an argument is out of range.
    """
    lo, hi = _check_args(
        seed,
        n_trials,
        n_units_range,
        behavior_rate,
        subject_index=subject_index,
        session_index=session_index,
    )
    pool_factor, drift_scale = _check_corpus_args(pool_factor, drift_scale)
    seed, subject_index, session_index = int(seed), int(subject_index), int(session_index)
    behavior_rate = float(behavior_rate)
    pool_size = _pool_size((lo, hi), pool_factor)
    pool = _subject_pool(seed, subject_index, pool_size)
    drift = _session_drift(seed, subject_index, session_index, pool_size, drift_scale)
    rng = _rng(seed, subject_index, _KEY_SESSION, session_index)

    # population: a random subset of the pool, ordered by electrode like a sorter's output
    n_units = int(rng.integers(lo, hi + 1))
    chosen = rng.choice(pool_size, size=n_units, replace=False)
    chosen = chosen[np.lexsort((chosen, pool["electrode"][chosen]))]
    units: dict[str, np.ndarray] = {
        "pool_index": chosen,
        "electrode": pool["electrode"][chosen],
        "area": pool["area"][chosen],
        "tuned": pool["tuned"][chosen],
        "pd_pool": pool["pd"][chosen],
        "pd": np.angle(np.exp(1j * (pool["pd"][chosen] + drift["pd_shift"][chosen]))),
        "baseline": pool["baseline"][chosen] * drift["baseline_scale"][chosen],
        "gain": pool["gain"][chosen] * drift["gain_scale"][chosen],
        "speed_gain": pool["speed_gain"][chosen] * drift["gain_scale"][chosen],
        "prep_gain": pool["prep_gain"][chosen] * drift["gain_scale"][chosen],
        "lag": pool["lag"][chosen],
        "fluct_sd": pool["fluct_sd"][chosen],
        "pd_shift": drift["pd_shift"][chosen],
        "gain_scale": drift["gain_scale"][chosen],
        "baseline_scale": drift["baseline_scale"][chosen],
    }

    trials, segments, end = _simulate_trials(rng, n_trials)
    duration = float(np.ceil(end * _RATE_HZ - 1e-9)) / _RATE_HZ
    n_noise = int(round(duration / _RATE_DT)) + 80  # covers the largest lag
    noise_pos, noise_vel = _smooth_noise(rng, n_noise, _RATE_DT)

    n_samples = int(np.floor(duration * behavior_rate + 1e-9)) + 1
    t_beh = np.arange(n_samples) / behavior_rate
    hand_pos, hand_vel = _min_jerk(segments, t_beh)
    hand_pos += _interp2(t_beh, _RATE_DT, noise_pos)
    hand_vel += _interp2(t_beh, _RATE_DT, noise_vel)

    cursor_t = _cursor_frames(rng, duration)
    cursor_pos = _min_jerk(segments, cursor_t)[0] + _interp2(cursor_t, _RATE_DT, noise_pos)

    # velocity on the fine grid that the per-unit lags index into
    n_fine = int(round(duration / _FINE_DT)) + int(np.ceil(0.2 / _FINE_DT))
    t_fine = np.arange(n_fine) * _FINE_DT
    v_fine = _min_jerk(segments, t_fine)[1] + _interp2(t_fine, _RATE_DT, noise_vel)
    centres = (np.arange(int(round(duration / _RATE_DT))) + 0.5) * _RATE_DT
    prep = _prep_signal(trials, centres)
    spike_times, rates = _simulate_spikes(rng, units, v_fine, prep, duration, return_rates)

    empty = np.array([len(s) == 0 for s in spike_times])
    if empty.any():  # practically impossible with baselines >= 2 Hz, but NWB must not see it
        logger.warning("dropping %d unit(s) without spikes", int(empty.sum()))
        spike_times = [s for s, e in zip(spike_times, empty, strict=True) if not e]
        units = {k: v[~empty] for k, v in units.items()}
        rates = rates[~empty] if rates is not None else None

    start_time = _BASE_DATE + dt.timedelta(days=7 * session_index + subject_index)
    ident = uuid.UUID(
        bytes=np.random.SeedSequence(seed, spawn_key=(subject_index, _KEY_UUID, session_index))
        .generate_state(4, np.uint32)
        .tobytes(),
        version=4,
    )
    areas = pool["areas"]
    return ReachingSession(
        subject_id=f"S{subject_index}",
        session_id=start_time.strftime("%Y%m%d"),
        seed=seed,
        subject_index=subject_index,
        session_index=session_index,
        session_start_time=start_time,
        identifier=str(ident),
        duration=duration,
        behavior_rate=behavior_rate,
        hand_pos=hand_pos,
        hand_vel=hand_vel,
        cursor_timestamps=cursor_t,
        cursor_pos=cursor_pos,
        trials=trials,
        spike_times=spike_times,
        units=units,
        drift={
            "session_index": session_index,
            "global_rotation": drift["global_rotation"],
            "pd_step_sd": drift_scale * _DRIFT_PD_SD,
            "global_rotation_step_sd": drift_scale * _DRIFT_GLOBAL_ROT_SD,
            "log_gain_step_sd": drift_scale * _DRIFT_LOG_GAIN_SD,
            "log_baseline_step_sd": drift_scale * _DRIFT_LOG_BASELINE_SD,
        },
        electrodes={"area": np.repeat(np.asarray(areas), CHANNELS_PER_ARRAY)},
        areas=areas,
        subject=dict(pool["subject"]),
        params={
            "n_trials": n_trials,
            "n_units_range": [lo, hi],
            "behavior_rate": behavior_rate,
            **_corpus_params(pool_factor, drift_scale),
        },
        rates=rates,
    )


def _corpus_params(pool_factor: float, drift_scale: float) -> dict[str, float]:
    # Only non-default knobs are recorded, so default datasets stay byte-identical to those of
    # earlier versions (their ground-truth JSON included).
    out = {}
    if pool_factor != 1.5:
        out["pool_factor"] = pool_factor
    if drift_scale != 1.0:
        out["drift_scale"] = drift_scale
    return out


# --- ground truth ------------------------------------------------------------------------------


def session_ground_truth(session: ReachingSession, nwb_path: str | None = None) -> dict[str, Any]:
    """JSON-ready ground truth of a session.

    Parameters
    ----------
    session : ReachingSession
        A simulated session.
    nwb_path : str, optional
        Path of the NWB file, recorded as given (relative paths keep the folder movable).

    Returns
    -------
    dict
        ``units`` (one entry per Units-table row: ``index``, ``unit_id``, ``pool_index``,
        ``electrode``, ``area``, ``preferred_direction``, ``baseline``, ``gain``, ...,
        ``n_spikes``), ``drift``, ``spike_counts``, ``n_spikes``, ``seed`` and the model
        constants.
    """
    u = session.units
    counts = session.spike_counts
    units = []
    for i in range(session.n_units):
        units.append(
            {
                "index": i,
                "unit_id": i,  # NWB ids are 0..n-1 and mean nothing across sessions
                "pool_index": int(u["pool_index"][i]),
                "electrode": int(u["electrode"][i]),
                "area": str(u["area"][i]),
                "tuned": bool(u["tuned"][i]),
                "preferred_direction": float(u["pd"][i]),
                "preferred_direction_pool": float(u["pd_pool"][i]),
                "baseline": float(u["baseline"][i]),
                "gain": float(u["gain"][i]),
                "speed_gain": float(u["speed_gain"][i]),
                "prep_gain": float(u["prep_gain"][i]),
                "lag": float(u["lag"][i]),
                "fluctuation_sd": float(u["fluct_sd"][i]),
                "drift_pd_shift": float(u["pd_shift"][i]),
                "drift_gain_scale": float(u["gain_scale"][i]),
                "drift_baseline_scale": float(u["baseline_scale"][i]),
                "n_spikes": int(counts[i]),
            }
        )
    return {
        "seed": session.seed,
        "subject_id": session.subject_id,
        "session_id": session.session_id,
        "subject_index": session.subject_index,
        "session_index": session.session_index,
        "nwb_path": nwb_path,
        "identifier": session.identifier,
        "duration": session.duration,
        "n_units": session.n_units,
        "n_spikes": session.n_spikes,
        "n_trials": len(session.trials["start_time"]),
        "spike_counts": counts.tolist(),
        "params": session.params,
        "model": {
            "rate": (
                "r(t) = softplus(baseline + gain * v(t+lag).u_pd / v_ref + speed_gain * "
                "|v(t+lag)| / v_ref + prep_gain * prep(t).u_pd) * exp(sd * z(t) - sd^2 / 2)"
            ),
            "v_ref": _VEL_REF,
            "softplus_scale_hz": 1.0,
            "rate_dt": _RATE_DT,
            "refractory": REFRACTORY,
            "spike_resolution": SPIKE_RESOLUTION,
            "target_radius": TARGET_RADIUS,
            "fluctuation_knot_spacing": _FLUCT_KNOT,
            "angles": "radians, counter-clockwise from +x",
        },
        "drift": {
            **session.drift,
            "reference": "subject pool; session_index 0 has no drift",
        },
        "units": units,
    }


# --- writing -----------------------------------------------------------------------------------


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _build_nwbfile(session: ReachingSession) -> Any:
    from hdmf.common import DynamicTableRegion, ElementIdentifiers, VectorData, VectorIndex
    from pynwb import NWBFile, TimeSeries
    from pynwb.behavior import Position, SpatialSeries
    from pynwb.file import Subject
    from pynwb.misc import Units

    from neurofm import __version__

    nwb = NWBFile(
        session_description=(
            "Delayed centre-out reaching to 8 targets (synthetic): target onset, instructed "
            "delay, go cue, reach, hold, return; sorted units from Utah arrays."
        ),
        identifier=session.identifier,
        session_start_time=session.session_start_time,
        # a fixed creation date keeps the files byte-identical for a seed (so re-pulls skip)
        file_create_date=[session.session_start_time],
        session_id=session.session_id,
        experimenter=["Generator, Synthetic"],
        lab="neurofm synthetic lab",
        institution="neurofm",
        experiment_description=(
            "Synthetic dataset with known ground truth, shaped like the public motor-cortex "
            "reaching datasets (DANDI 000128, 000688). Generated by neurofm.synthetic.reaching "
            f"with seed={session.seed}."
        ),
        keywords=["motor cortex", "M1", "PMd", "reaching", "center-out", "synthetic"],
        protocol="center-out reaching",
        notes="Ground truth (tuning, lags, drift) is stored in ground_truth/ beside the files.",
        was_generated_by=[["neurofm", __version__]],
    )
    nwb.subject = Subject(
        subject_id=session.subject_id,
        species=session.subject["species"],
        sex=session.subject["sex"],
        age=session.subject["age"],
        description=session.subject["description"],
    )

    groups = {}
    model = nwb.create_device_model(
        name="UtahArray96",
        manufacturer="Blackrock Microsystems",
        model_number="Utah array, 96 channels",
        description="10 x 10 grid without corners, 400 um pitch, 1.5 mm electrodes.",
    )
    for area in session.areas:
        device = nwb.create_device(
            name=f"array_{area}",
            description=f"96-channel Utah array implanted in {area}.",
            model=model,
        )
        groups[area] = nwb.create_electrode_group(
            name=f"{area}_array",
            description=f"Electrodes of the Utah array in {area}.",
            location=area,
            device=device,
        )
    for area in session.electrodes["area"]:
        nwb.add_electrode(group=groups[str(area)], location=str(area))

    # Whole numpy columns instead of add_unit() per unit: hdmf converts list data element by
    # element, which costs seconds for a few hundred thousand spikes.
    n_units = session.n_units
    spike_times = VectorData(
        name="spike_times",
        description="Spike times of each unit in seconds from the session start.",
        data=np.concatenate(session.spike_times) if n_units else np.zeros(0),
    )
    obs_intervals = VectorData(
        name="obs_intervals",
        description="Observation intervals of each unit (the whole session).",
        data=np.tile([[0.0, session.duration]], (n_units, 1)),
    )
    electrodes = DynamicTableRegion(
        name="electrodes",
        description="The electrode on which each unit was recorded.",
        data=session.units["electrode"].astype(np.int64),
        table=nwb.electrodes,
    )
    nwb.units = Units(
        name="units",
        description=(
            "Synthetic sorted units: inhomogeneous Poisson spikes from velocity-tuned rates "
            "with a 2 ms dead time, on a 30 kHz clock."
        ),
        resolution=SPIKE_RESOLUTION,
        id=ElementIdentifiers(name="id", data=np.arange(n_units)),
        columns=[
            spike_times,
            VectorIndex(
                name="spike_times_index",
                data=np.cumsum(session.spike_counts),
                target=spike_times,
            ),
            obs_intervals,
            VectorIndex(
                name="obs_intervals_index",
                data=np.arange(1, n_units + 1),
                target=obs_intervals,
            ),
            electrodes,
            VectorIndex(name="electrodes_index", data=np.arange(1, n_units + 1), target=electrodes),
            VectorData(
                name="electrode_group",
                description="The electrode group (Utah array) of each unit.",
                data=[groups[str(a)] for a in session.units["area"]],
            ),
        ],
    )

    behavior = nwb.create_processing_module(
        name="behavior", description="Hand and cursor kinematics of the reaching task."
    )
    frame = "origin at the centre target; x to the right, y away from the subject (meters)"
    position = Position(name="Position")
    position.add_spatial_series(
        SpatialSeries(
            name="hand_pos",
            description="Hand position (x, y) in the workspace plane.",
            data=session.hand_pos,
            reference_frame=frame,
            unit="meters",
            starting_time=0.0,
            rate=session.behavior_rate,
        )
    )
    behavior.add(position)
    behavior.add(
        TimeSeries(
            name="hand_vel",
            description="Hand velocity (x, y), the time derivative of hand_pos.",
            data=session.hand_vel,
            unit="m/s",
            starting_time=0.0,
            rate=session.behavior_rate,
        )
    )
    behavior.add(
        TimeSeries(
            name="cursor_pos",
            description=(
                "Cursor position (x, y) shown on the display, one sample per display frame "
                "(~60 Hz with jitter and dropped frames); " + frame + "."
            ),
            data=session.cursor_pos,
            unit="meters",
            timestamps=session.cursor_timestamps,
        )
    )

    tr = session.trials
    descriptions = {
        "target_on_time": "Time the reach target appears (s).",
        "go_cue_time": "Time of the go cue, after the instructed delay (s).",
        "move_onset_time": "Time the hand starts moving (s).",
        "move_end_time": "Time the reach ends (s).",
        "target_x": "Target x position (m).",
        "target_y": "Target y position (m).",
        "target_dir": "Target direction (radians, counter-clockwise from +x).",
        "is_success": "True when the reach reached and held the target.",
        "split": "Data split of the trial: 'train', 'valid' or 'test'.",
    }
    for name, text in descriptions.items():
        nwb.add_trial_column(name=name, description=text)
    for i in range(len(tr["start_time"])):
        row = {k: tr[k][i] for k in ("start_time", "stop_time", *descriptions)}
        row = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        nwb.add_trial(**row)
    return nwb


@contextlib.contextmanager
def _seeded_object_ids(seed_text: str) -> Iterator[None]:
    """Derive hdmf's per-object UUIDs from the session, not from the OS's entropy.

    hdmf gives every container a random ``object_id``; with these seeded, a seed gives a
    byte-identical file, so checksums (and DANDI re-pulls) are reproducible. hdmf has no option
    for this, hence the patch of its module-level ``uuid4`` for the duration of the build.
    """
    import hdmf.container

    counter = itertools.count()
    original = hdmf.container.uuid4

    def seeded() -> uuid.UUID:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"{seed_text}/{next(counter)}")

    hdmf.container.uuid4 = seeded
    try:
        yield
    finally:
        hdmf.container.uuid4 = original


def write_session_nwb(path: str | os.PathLike, session: ReachingSession) -> SessionInfo:
    """Write a simulated session as an NWB file.

    The file is written to a hidden temporary name in the same folder and renamed when
    complete, so a failure never leaves a partial ``.nwb`` behind. An existing file is replaced.

    Layout: Subject; one Device, DeviceModel and ElectrodeGroup per Utah array (location
    ``"M1"``/``"PMd"``) and 96 electrodes each; ``units`` (resolution 1/30000 s) with
    ``spike_times``, ``obs_intervals``, ``electrodes`` and ``electrode_group``;
    ``processing/behavior`` with ``Position/hand_pos`` (SpatialSeries), ``hand_vel`` (both
    rate-based) and ``cursor_pos`` (explicit timestamps); ``trials`` with the task columns.

    Parameters
    ----------
    path : path-like
        Destination ``.nwb`` file; its folder is created if needed.
    session : ReachingSession
        From :func:`simulate_session`.

    Returns
    -------
    SessionInfo
        What was written.
    """
    from pynwb import NWBHDF5IO

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _seeded_object_ids(session.identifier):
        nwbfile = _build_nwbfile(session)
    # hidden and still *.nwb, so neither pynwb nor a DANDI upload picks it up by mistake
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.nwb")
    try:
        with NWBHDF5IO(str(tmp), mode="w") as io:
            io.write(nwbfile)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    logger.debug("wrote %s (%d units, %d spikes)", path, session.n_units, session.n_spikes)
    return SessionInfo(
        subject_id=session.subject_id,
        session_id=session.session_id,
        path=path,
        n_units=session.n_units,
        n_spikes=session.n_spikes,
        duration=session.duration,
    )


def _dandiset_yaml(seed: int) -> dict[str, Any]:
    return {
        "identifier": f"DANDI:{DANDISET_ID}",
        "name": "neurofm synthetic centre-out reaching",
        "description": (
            "Synthetic multi-subject, multi-session centre-out reaching dataset with sorted "
            "units from M1/PMd Utah arrays and known ground truth (tuning, lags, drift), "
            f"generated by neurofm.synthetic.reaching with seed {seed}."
        ),
        "license": ["spdx:CC-BY-4.0"],
        "keywords": ["motor cortex", "reaching", "synthetic", "ground truth"],
        "contributor": [
            {
                "schemaKey": "Person",
                "name": "Generator, Synthetic",
                "roleName": ["dcite:Creator", "dcite:ContactPerson"],
                "includeInCitation": True,
            }
        ],
    }


def generate_reaching_dataset(
    out_dir: str | os.PathLike,
    n_subjects: int = 2,
    n_sessions: int = 3,
    seed: int = 0,
    n_trials: int = 60,
    n_units_range: tuple[int, int] = (50, 200),
    behavior_rate: float = 200.0,
    progress: bool = True,
    pool_factor: float = 1.5,
    drift_scale: float = 1.0,
) -> list[SessionInfo]:
    """Write a synthetic centre-out reaching dataset in DANDI layout.

    Creates ``out_dir/dandiset.yaml``,
    ``out_dir/sub-<subject>/sub-<subject>_ses-<session>_ecephys.nwb`` for every subject and
    session, ``out_dir/ground_truth/sub-<subject>_ses-<session>.json`` (see
    :func:`session_ground_truth`) and ``out_dir/ground_truth/summary.json``. Subjects are
    ``S0, S1, ...``; session ids are recording dates ``YYYYMMDD``.

    Parameters
    ----------
    out_dir : path-like
        Destination folder, created if needed; existing files of the same names are replaced.
    n_subjects, n_sessions : int
        Subjects, and sessions per subject.
    seed : int
        Root seed; the whole dataset is a deterministic function of it and the other arguments.
    n_trials : int
        Trials per session (60 gives ~3.5 minutes).
    n_units_range : (int, int)
        Inclusive range of the number of units per session.
    behavior_rate : float
        Sampling rate (Hz, >= 100) of hand position and velocity.
    progress : bool
        Show a progress bar over sessions.
    pool_factor, drift_scale : float
        Unit turnover and drift strength (see :func:`simulate_session`); the defaults give the
        files of earlier versions.

    Returns
    -------
    list of SessionInfo
        One per session, subjects outer, sessions inner.

    Raises
    ------
    InvalidDataError
        If an argument is out of range.
    """
    import yaml

    from neurofm import __version__
    from neurofm.progress import progress_bar

    lo, hi = _check_args(
        seed,
        n_trials,
        n_units_range,
        behavior_rate,
        n_subjects=n_subjects,
        n_sessions=n_sessions,
    )
    pool_factor, drift_scale = _check_corpus_args(pool_factor, drift_scale)
    out = Path(out_dir)
    gt_dir = out / "ground_truth"
    gt_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(out / "dandiset.yaml", yaml.safe_dump(_dandiset_yaml(seed), sort_keys=False))

    infos: list[SessionInfo] = []
    summary_sessions = []
    pairs = [(i, k) for i in range(n_subjects) for k in range(n_sessions)]
    for i, k in progress_bar(pairs, desc="sessions", unit="session", disable=not progress):
        session = simulate_session(
            seed,
            i,
            k,
            n_trials=n_trials,
            n_units_range=(lo, hi),
            behavior_rate=behavior_rate,
            pool_factor=pool_factor,
            drift_scale=drift_scale,
        )
        sub, ses = session.subject_id, session.session_id
        rel = Path(f"sub-{sub}") / f"sub-{sub}_ses-{ses}_ecephys.nwb"
        info = write_session_nwb(out / rel, session)
        gt_rel = Path("ground_truth") / f"sub-{sub}_ses-{ses}.json"
        truth = session_ground_truth(session, nwb_path=rel.as_posix())
        _atomic_write_text(out / gt_rel, json.dumps(truth, indent=1))
        infos.append(info)
        summary_sessions.append(
            {
                "subject_id": sub,
                "session_id": ses,
                "path": rel.as_posix(),
                "ground_truth": gt_rel.as_posix(),
                "n_units": info.n_units,
                "n_spikes": info.n_spikes,
                "n_trials": n_trials,
                "duration": info.duration,
            }
        )
        logger.info(
            "%s: %d units, %d spikes, %.1f s", rel, info.n_units, info.n_spikes, info.duration
        )
    summary = {
        "generator": "neurofm.synthetic.reaching",
        "neurofm_version": __version__,
        "seed": int(seed),
        "params": {
            "n_subjects": n_subjects,
            "n_sessions": n_sessions,
            "n_trials": n_trials,
            "n_units_range": [lo, hi],
            "behavior_rate": float(behavior_rate),
            **_corpus_params(pool_factor, drift_scale),
        },
        "sessions": summary_sessions,
    }
    _atomic_write_text(gt_dir / "summary.json", json.dumps(summary, indent=1))
    return infos
