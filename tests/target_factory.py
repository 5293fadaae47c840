"""Small catalogs with known answers for the decoding-target tests (tokenizer, training,
evaluation): behaviour with NaN gaps, and per-trial values that the spikes encode."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurofm.data import Catalog, Intervals, IrregularSeries, Recording, RegularSeries, Spikes

UNITS = [f"u{i}" for i in range(6)]


def gap_recording(rid: str = "gap", seed: int = 0) -> Recording:
    """20 s of random spikes and a 2-D velocity at 100 Hz with NaN gaps: rows 300-349 (both
    channels) and 1250-1259 (x only); train [0, 12), valid [12, 15), test [15, 20)."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 20, 3000))
    vel = rng.normal(size=(2000, 2)) * [2.0, 0.5] + [1.0, -3.0]
    vel[300:350] = np.nan
    vel[1250:1260, 0] = np.nan
    return Recording(
        rid,
        {
            "spikes": Spikes(t, rng.integers(0, 6, 3000), UNITS),
            "hand_vel": RegularSeries(vel, 100.0),
            "train_domain": Intervals([0.0], [12.0]),
            "valid_domain": Intervals([12.0], [15.0]),
            "test_domain": Intervals([15.0], [20.0]),
        },
    )


def trial_recording(rid: str = "rsg", n_trials: int = 60, seed: int = 0) -> Recording:
    """DMFC_RSG-like trials: trial i is [2i, 2i + 1.5) with its set at 2i + 1.0; ``is_short``
    (bool) and ``tp`` (0.6 s short, 1.0 s long, +- 0.02) are encoded by a burst of 15 spikes of
    unit u0 (short) or u1 (long) in the 0.3 s before the set. Units u2-u5 fire at random.
    Trials 0-39 train, 40-49 valid, 50-59 test. Trial 7 has no set (NaN); ``eye`` is a string
    column; ``ts`` a timestamped behaviour series is absent (DMFC has none)."""
    rng = np.random.default_rng(seed)
    start = 2.0 * np.arange(n_trials)
    end = start + 1.5
    set_time = start + 1.0
    set_time[7] = np.nan
    short = rng.random(n_trials) < 0.5
    tp = np.where(short, 0.6, 1.0) + rng.normal(0, 0.02, n_trials)
    times, units = (
        [rng.uniform(0, 2.0 * n_trials, 4 * n_trials)],
        [rng.integers(2, 6, 4 * n_trials)],
    )
    for i in range(n_trials):
        if np.isfinite(set_time[i]):
            times.append(set_time[i] - rng.uniform(0.0, 0.3, 15))
            units.append(np.full(15, 0 if short[i] else 1))
    t = np.concatenate(times)
    order = np.argsort(t)
    split = (np.arange(n_trials) >= 40).astype(int) + (np.arange(n_trials) >= 50)
    domains = {
        name: Intervals(start[split == k], end[split == k])
        for k, name in enumerate(("train_domain", "valid_domain", "test_domain"))
    }
    trials = Intervals(
        start,
        end,
        columns={
            "set_time": set_time,
            "is_short": short,
            "tp": tp,
            "eye": np.where(short, "left", "right").astype(object),
        },
        time_columns=["set_time"],
        name="trials",
    )
    return Recording(
        rid,
        {
            "spikes": Spikes(t[order], np.concatenate(units)[order], UNITS),
            "trials": trials,
            # a behaviour series too, so the same recording serves series targets
            "hand_vel": IrregularSeries(start + 0.5, np.c_[tp, -tp]),
            **domains,
        },
    )


def make_catalog(path: Path, recordings: list[Recording]) -> Path:
    cat = Catalog(path, create=True)
    for rec in recordings:
        cat.add(rec)
    return cat.path
