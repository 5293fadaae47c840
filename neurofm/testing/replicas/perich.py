"""Replica of Perich, Gallego & Miller (2018), DANDI 000688 (brainsets'
perich_miller_population_2018, POYO's pretraining set).

Where the layout comes from (public descriptions only):

* The DANDI structure listing (magland/ai_generated_dandiset_summaries,
  ``dandisets/000688/summary_prompt.md``): about a hundred files of four monkeys, centre-out
  (CO) and random-target (RT) sessions; electrode groups ``electrode_group_M1`` /
  ``electrode_group_PMd`` with ``bank`` / ``label`` / ``pin`` columns (no coordinates); Units
  with spike_times, a ragged ``electrodes`` region and doubly ragged int16 ``waveforms`` (48
  samples per spike), no ``obs_intervals``; CO trials with a string ``result`` (R / A / F / I),
  float ``target_id`` / ``target_dir``, a 4-column ``target_corners``, ``go_cue_time`` and
  ``target_on_time``; RT trials with a 4-column ``go_cue_time_array`` and ``target_id``, float
  ``num_attempted``, uint8 ``num_targets``; behaviour as ``Position/cursor_pos``
  (SpatialSeries), ``Velocity/cursor_vel`` and ``Acceleration/cursor_acc`` (TimeSeries in
  BehavioralTimeSeries containers).
* brainsets' pipeline (``brainsets_pipelines/perich_miller_population_2018/pipeline.py``):
  asset paths ``sub-<L>/sub-<L>_ses-<CO|RT>-<YYYYMMDD>_behavior+ecephys.nwb``; the three
  series share ``cursor_pos``'s timestamps; NaN ``target_on_time`` / ``target_id`` on some CO
  trials; valid trials are ``result == "R"``.

The behaviour is sampled at 100 Hz over the whole session (the lab's 10 ms bins; the real
rate is not in the listing).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from neurofm.testing.replicas.base import (
    FileTruth,
    ReplicaTruth,
    Units,
    add_electrodes,
    minimum_jerk_reach,
    new_nwbfile,
    poisson_spikes,
    write_dandiset_yaml,
    write_nwb,
)

__all__ = ["SESSIONS", "build_perich_miller_2018"]

RATE = 100.0
#: asset path -> (subject, task, date, arrays, trials, units)
SESSIONS: dict[str, tuple[str, str, dt.datetime, tuple[str, ...], int, int]] = {
    "sub-C/sub-C_ses-CO-20131003_behavior+ecephys.nwb": (
        "C",
        "CO",
        dt.datetime(2013, 10, 3, 12, 39, 8, 680000),
        ("M1",),
        24,
        10,
    ),
    "sub-M/sub-M_ses-CO-20150610_behavior+ecephys.nwb": (
        "M",
        "CO",
        dt.datetime(2015, 6, 10, 11, 2, 41, 120000),
        ("M1", "PMd"),
        20,
        12,
    ),
    "sub-C/sub-C_ses-RT-20131009_behavior+ecephys.nwb": (
        "C",
        "RT",
        dt.datetime(2013, 10, 9, 13, 2, 29, 468000),
        ("M1",),
        10,
        10,
    ),
}


def _session(
    path: Path,
    rel: str,
    subject: str,
    task: str,
    start: dt.datetime,
    arrays: tuple[str, ...],
    n_trials: int,
    n_units: int,
    rng: np.random.Generator,
) -> FileTruth:
    from pynwb import TimeSeries
    from pynwb.behavior import BehavioralTimeSeries, Position

    start = start.replace(tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    task_name = "center-out reaching" if task == "CO" else "random target reaching"
    nwb = new_nwbfile(
        f"perich-{subject}-{task}-{start:%Y%m%d}",
        start,
        subject,
        session_id=f"sub-{subject}_ses-{task}-{start:%Y%m%d}",
        description=f"Monkey {subject} performing {task_name} task.",
        experiment_description="Center-out delayed reaching task"
        if task == "CO"
        else "Random target reaching task",
        experimenter=["Perich, Matthew G."],
        institution="Northwestern University",
        lab="Miller",
        keywords=["motor cortex", "reaching", "neural data", "spike sorting"],
        related_publications=["doi: 10.1016/j.neuron.2018.09.030"],
    )
    add_electrodes(
        nwb,
        [
            (
                f"electrode_group_{a}",
                f"electrode_array_{a}",
                f"96-electrode Utah array in {a}",
                a,
                96,
            )
            for a in arrays
        ],
        coordinates=False,
        labels=True,
    )

    # Trials and the cursor path: CO reaches out from the centre and back; RT trials chain
    # four reaches to random targets.
    rows: dict[str, list[Any]] = {}
    starts, stops, reaches = [], [], []
    t0 = 0.5
    for i in range(n_trials):
        result = "R" if rng.random() > 0.25 else str(rng.choice(["A", "F", "I"]))
        if task == "CO":
            target_on = round(t0 + 0.2, 2) if rng.random() > 0.1 else np.nan
            go = round(t0 + rng.uniform(0.7, 1.1), 2) if result != "A" else np.nan
            stop = round((go if np.isfinite(go) else t0 + 0.6) + 0.9, 2)
            target_id = float(rng.integers(0, 8)) if np.isfinite(target_on) else np.nan
            direction = np.radians(45.0 * (0 if np.isnan(target_id) else target_id))
            if np.isfinite(go):
                reaches.append(
                    (go + 0.15, 0.5, 8.0 * np.array([np.cos(direction), np.sin(direction)]))
                )
            for name, value in (
                ("go_cue_time", go),
                ("result", result),
                ("target_corners", np.full(4, 2.0) * (i % 8)),
                ("target_dir", float(direction)),
                ("target_id", target_id),
                ("target_on_time", target_on),
            ):
                rows.setdefault(name, []).append(value)
        else:
            gos = np.round(t0 + 0.3 + 1.1 * np.arange(4), 2)
            attempted = 4 if result == "R" else int(rng.integers(1, 4))
            gos[attempted:] = np.nan
            for g in gos[:attempted]:
                reaches.append((g + 0.15, 0.6, rng.uniform(-8, 8, 2)))
            stop = round(t0 + 0.3 + 1.1 * attempted + 0.2, 2)
            for name, value in (
                ("go_cue_time_array", gos),
                ("num_attempted", float(attempted)),
                ("num_targets", np.uint8(4)),
                ("result", result),
                ("target_dir", np.nan),
                (
                    "target_id",
                    np.where(np.isnan(gos), np.nan, rng.integers(0, 64, 4).astype(float)),
                ),
                ("target_size", 2.0),
            ):
                rows.setdefault(name, []).append(value)
        starts.append(t0)
        stops.append(stop)
        t0 = round(stop + rng.uniform(0.1, 0.3), 2)
    t = np.arange(0.0, round(t0 + 0.5, 2), 1.0 / RATE)
    pos = np.zeros((len(t), 2))
    vel = np.zeros((len(t), 2))
    here = np.zeros(2)
    for onset, duration, goal in reaches:
        p, v = minimum_jerk_reach(t, onset, duration, goal - here)
        pos += p
        vel += v
        here = goal if task == "RT" else here
        if task == "CO":  # and back to the centre
            p, v = minimum_jerk_reach(t, onset + duration + 0.1, duration, -goal)
            pos += p
            vel += v
    acc = np.gradient(vel, t, axis=0)

    truth = FileTruth(rel)
    units = Units.random(rng, n_units)
    spikes = poisson_spikes(rng, t, units.rates(vel, 15.0), 1.0 / RATE)
    n_electrodes = 96 * len(arrays)
    electrodes = np.sort(rng.choice(n_electrodes, n_units, replace=False))
    counts = np.array([len(x) for x in spikes])
    shapes = (rng.normal(0, 20, (n_units, 48)) - 80 * np.hanning(48)).astype(np.int16)
    waveforms = np.repeat(shapes, counts, axis=0).reshape(-1, 1)  # 48 samples per spike
    nwb.units = _units_table(nwb, spikes, electrodes, waveforms)
    for u in range(n_units):
        truth.unit_spikes[str(u)] = int(counts[u])

    description = "Delayed center-out reaching trial." if task == "CO" else "experimental trials."
    from pynwb.epoch import TimeIntervals

    trials = TimeIntervals(name="trials", description=description)
    column_descriptions = {
        "go_cue_time": "time when the go cue is given",
        "go_cue_time_array": "time when the go cue is given",
        "num_attempted": "number of attempted targets",
        "num_targets": "number of targets",
        "result": "trial outcome, R: reward, A: abort, F: fail, I: incomplete",
        "target_corners": "target corners",
        "target_dir": "target direction",
        "target_id": "target id",
        "target_on_time": "time when the target is shown",
        "target_size": "target size",
    }
    for name in rows:
        trials.add_column(name=name, description=column_descriptions[name])
    for i in range(n_trials):
        trials.add_interval(
            start_time=float(starts[i]),
            stop_time=float(stops[i]),
            **{k: v[i] for k, v in rows.items()},
        )
    nwb.trials = trials
    truth.n_trials = n_trials
    truth.trials = {"start_time": np.asarray(starts), "stop_time": np.asarray(stops)}
    truth.trials.update(
        {k: np.asarray(v, dtype=object if k == "result" else None) for k, v in rows.items()}
    )

    module = nwb.create_processing_module(name="behavior", description="Processed Behavioral data")
    position = Position(name="Position")
    cursor_pos = position.create_spatial_series(
        name="cursor_pos",
        data=pos,
        timestamps=t,
        reference_frame="screen centre",
        unit="cm",
        description="Cursor position (x, y) on the screen.",
    )
    module.add(position)
    for container, name, data, unit, text in (
        ("Velocity", "cursor_vel", vel, "cm/s", "Cursor velocity (vx, vy)."),
        ("Acceleration", "cursor_acc", acc, "cm/s^2", "Cursor acceleration (ax, ay)."),
    ):
        holder = BehavioralTimeSeries(name=container)
        holder.add_timeseries(
            TimeSeries(name=name, data=data, unit=unit, timestamps=cursor_pos, description=text)
        )
        module.add(holder)
    for name in ("cursor_pos", "cursor_vel", "cursor_acc"):
        truth.behaviour[name] = len(t)
        truth.nan_samples[name] = 0
    truth.quirks["result_counts"] = {k: int(sum(r == k for r in rows["result"])) for k in "RAFI"}
    write_nwb(path, nwb)
    return truth


def _units_table(
    nwb: Any, spikes: list[np.ndarray], electrodes: np.ndarray, waveforms: np.ndarray
) -> Any:
    """The Units table built from its columns: spike_times, a ragged electrodes region and
    doubly ragged waveforms (48 samples x 1 channel per spike), as the real files have."""
    from hdmf.common import DynamicTableRegion, ElementIdentifiers, VectorData, VectorIndex
    from pynwb.misc import Units as UnitsTable

    counts = np.array([len(x) for x in spikes])
    times = VectorData(
        name="spike_times", description="the spike times for each unit", data=np.concatenate(spikes)
    )
    region = DynamicTableRegion(
        name="electrodes",
        description="the electrodes that each spike unit came from",
        data=electrodes.astype(np.int64),
        table=nwb.electrodes,
    )
    shapes = VectorData(
        name="waveforms",
        description="Individual waveforms for each spike. If the dataset is three-dimensional, the "
        "third dimension shows the response from different electrodes that all observe this unit "
        "simultaneously.",
        data=waveforms,
    )
    per_spike = VectorIndex(
        name="waveforms_index", data=np.arange(1, counts.sum() + 1) * 48, target=shapes
    )
    columns = [
        times,
        VectorIndex(name="spike_times_index", data=np.cumsum(counts), target=times),
        region,
        VectorIndex(name="electrodes_index", data=np.arange(1, len(counts) + 1), target=region),
        shapes,
        per_spike,
        VectorIndex(name="waveforms_index_index", data=np.cumsum(counts), target=per_spike),
    ]
    return UnitsTable(
        name="units",
        description="Autogenerated by NWBFile",
        id=ElementIdentifiers(name="id", data=np.arange(len(counts))),
        columns=columns,
        electrode_table=nwb.electrodes,
    )


def build_perich_miller_2018(folder: Path, seed: int = 0) -> ReplicaTruth:
    """A replica of DANDI 000688: two centre-out sessions (one M1 only, one M1 + PMd) and one
    random-target session."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    write_dandiset_yaml(
        folder,
        "Perich, Gallego and Miller (2018): a neural population mechanism for rapid learning "
        "(replica)",
        "Electrophysiology and behavioral data from macaques performing a center-out task or a "
        "continuous random target acquisition task.",
    )
    truth = ReplicaTruth("perich_miller_2018", "000688", folder, [], seed=seed)
    for rel, (subject, task, start, arrays, n_trials, n_units) in SESSIONS.items():
        truth.files[rel] = _session(
            folder / rel, rel, subject, task, start, arrays, n_trials, n_units, rng
        )
    return truth
