"""Replica of Churchland et al. (2012), DANDI 000070 (brainsets' churchland_shenoy_neural_2012).

Where the layout comes from (public descriptions only):

* The DANDI structure listing (magland/ai_generated_dandiset_summaries,
  ``dandisets/000070/summary_prompt.md``): nine files of two monkeys; electrode groups named
  ``1`` (PMd) and ``2`` (M1) on devices ``Utah Array(PMd)`` / ``Utah Array(M1)``, the
  electrodes table with ``gain`` and ``offset`` columns; Units of threshold crossings (one per
  electrode) with an ``electrode_group`` column, a ragged ``electrodes`` region and
  ``obs_intervals``; a trials table whose flags are uint8 (``task_success``,
  ``discard_trial``, ``correct_reach``, ``novel_maze``, ``proto_trial``, ...), with ragged
  ``barrier_info`` / ``frame_details`` / ``target_positions``, a 2-column
  ``hit_target_position`` and a ``timeseries`` reference column; behaviour as
  ``processing/behavior/Position/{Cursor, Eye, Hand}`` SpatialSeries; LFP as ElectricalSeries
  in ``processing/ecephys/Processed`` (FilteredEphys).
* brainsets' pipeline (``brainsets_pipelines/churchland_shenoy_neural_2012/pipeline.py``):
  asset paths ``sub-<Name>/sub-<Name>_ses-<YYYYMMDD>_behavior+ecephys.nwb``; Cursor, Hand and
  Eye share their timestamps, sampled at 1 kHz and only within trials; each unit's
  ``obs_intervals`` are the trials' bounds; in sessions nitschke 2009-09-10 and 2009-09-20
  the first artefact of the trials table is two overlapping trials (brainsets drops both)
  and units whose spike times go back in time are skipped; valid trials are
  ``task_success == 1`` and ``discard_trial == 0``.
* Issue 13 of this project: "in some sessions a few units' spike times go back in time and
  some trials overlap".

Not replicated: brainsets also re-times whole blocks of the faulty sessions whose clocks
restart (behaviour timestamps going back in time); the replica keeps behaviour monotonic, so
the only repairs its cards need are the ones issue 13 names.
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

__all__ = ["SESSIONS", "build_churchland_2012"]

RATE = 1000.0
#: asset path -> (subject, date, trials, units whose spike times go back in time, a pair of
#: trials that overlap). The second session is one of the two brainsets repairs.
SESSIONS: dict[str, tuple[str, dt.date, int, tuple[str, ...], tuple[int, int] | None]] = {
    "sub-Jenkins/sub-Jenkins_ses-20090912_behavior+ecephys.nwb": (
        "Jenkins",
        dt.date(2009, 9, 12),
        30,
        (),
        None,
    ),
    "sub-Nitschke/sub-Nitschke_ses-20090910_behavior+ecephys.nwb": (
        "Nitschke",
        dt.date(2009, 9, 10),
        28,
        ("3", "11"),
        (6, 7),
    ),
}

UINT8_COLUMNS = {
    "correct_reach": "tells you the result of our algorithm for determining whether this reach "
    "looked like the other reaches for this condition",
    "discard_trial": "flag that will usually be 0, but is set to 1 if there was a photo box "
    "problem or we had a hand tracking error during the movement. In general, throw those "
    "trials away.",
    "maze_condition": "The set of 27 (or 108) mazes included was composed of 3 (or 12) subsets",
    "maze_num_barriers": "number of barriers presented",
    "maze_num_targets": "number of targets presented",
    "novel_maze": "novel maze",
    "proto_trial": "whether that trial was used as the prototype trial for figuring out which "
    "trials were consistent",
    "target_size": "half width of the targets",
    "task_success": "indicates whether the monkey was successful on this trial",
    "trial_type": "trial type",
    "trial_version": "should be 0 for a truly random maze (two random barriers)",
}


def _session(
    path: Path,
    rel: str,
    subject: str,
    date: dt.date,
    n_trials: int,
    unsorted: tuple[str, ...],
    overlap: tuple[int, int] | None,
    rng: np.random.Generator,
) -> FileTruth:
    from pynwb.behavior import Position
    from pynwb.ecephys import ElectricalSeries, FilteredEphys

    start = dt.datetime(date.year, date.month, date.day, tzinfo=dt.timezone(dt.timedelta(hours=-7)))
    nwb = new_nwbfile(
        f"churchland-{subject}-{date:%Y%m%d}",
        start,
        subject,
        description="",
        experimenter=["Matthew T. Kaufman", "Mark M. Churchland"],
        institution="Stanford University",
        related_publications=["10.1038/nature11129"],
    )
    per_array = 8  # the real arrays have 96 electrodes each; 8 keep the replica small
    groups = add_electrodes(
        nwb,
        [
            ("1", "Utah Array(PMd)", "96 channel utah array", "PMd", per_array),
            ("2", "Utah Array(M1)", "96 channel utah array", "M1", per_array),
        ],
        extra=("gain", "offset"),
    )

    # Trials: delayed reaches, 1.4 - 2.2 s, separated by short gaps; one pair overlaps.
    starts, stops, times, pos, vel = [], [], [], [], []
    cols: dict[str, list[Any]] = {
        k: []
        for k in (
            "go_cue_time",
            "move_begins_time",
            "move_ends_time",
            "reaction_time",
            "target_presentation_time",
            *UINT8_COLUMNS,
        )
    }
    ragged: dict[str, list[np.ndarray]] = {
        "barrier_info": [],
        "frame_details": [],
        "target_positions": [],
    }
    hit, reaches = [], []
    t0 = 1.0
    for i in range(n_trials):
        success = rng.random() > 0.15
        discard = rng.random() < 0.08
        target_on = round(t0 + rng.uniform(0.3, 0.5), 3)
        go = round(target_on + rng.choice([0.0, 0.3, 0.5, 0.7]), 3)
        rt = round(rng.uniform(0.25, 0.4), 3)
        begins = round(go + rt, 3) if success else np.nan
        ends = round(begins + 0.45, 3) if success else np.nan
        stop = round((ends if success else go + 0.6) + 0.4, 3)
        angle = rng.uniform(0, 2 * np.pi)
        target = rng.uniform(80, 130) * np.array([np.cos(angle), np.sin(angle)])
        t = np.arange(round(t0 * RATE), round(stop * RATE)) / RATE
        if success:
            p, v = minimum_jerk_reach(t, begins, 0.45, target)
        else:
            p, v = np.zeros((len(t), 2)), np.zeros((len(t), 2))
        reaches.append((begins, target))
        starts.append(t0)
        stops.append(stop)
        times.append(t)
        pos.append(p)
        vel.append(v)
        n_targets = int(rng.choice([1, 3]))
        cols["go_cue_time"].append(go)
        cols["move_begins_time"].append(begins)
        cols["move_ends_time"].append(ends)
        cols["reaction_time"].append(rt * 1000 if success else np.nan)
        cols["target_presentation_time"].append(target_on)
        for name, value in (
            ("correct_reach", int(success and rng.random() > 0.1)),
            ("discard_trial", int(discard)),
            ("maze_condition", int(rng.integers(1, 28))),
            ("maze_num_barriers", int(rng.integers(0, 6))),
            ("maze_num_targets", n_targets),
            ("novel_maze", 0),
            ("proto_trial", int(i == 2)),
            ("target_size", 8),
            ("task_success", int(success)),
            ("trial_type", int(rng.integers(1, 28))),
            ("trial_version", int(rng.integers(0, 3))),
        ):
            cols[name].append(np.uint8(value))
        ragged["barrier_info"].append(rng.uniform(-100, 100, (int(rng.integers(1, 5)), 4)))
        ragged["frame_details"].append(rng.integers(-150, 150, (5, 1, 1)).astype(np.int16))
        ragged["target_positions"].append(rng.integers(0, 255, (n_targets, 2)).astype(np.uint8))
        hit.append(np.round(target).astype(np.int16))
        t0 = round(stop + rng.uniform(0.05, 0.3), 3)
    starts_a, stops_a = np.asarray(starts), np.asarray(stops)
    truth = FileTruth(rel)
    if overlap is not None:
        a, b = overlap
        # Trial a runs 0.35 s into trial b (brainsets: "the first artifact corresponds to two
        # overlapping trials"); its behaviour is sampled once on the union of the two.
        stops_a[a] = round(starts_a[b] + 0.35, 3)
        times[a] = np.arange(round(starts_a[a] * RATE), round(stops_a[a] * RATE)) / RATE
        begins, target = reaches[a]
        if np.isfinite(begins):
            pos[a], vel[a] = minimum_jerk_reach(times[a], begins, 0.45, target)
        else:
            pos[a], vel[a] = np.zeros((len(times[a]), 2)), np.zeros((len(times[a]), 2))
        truth.quirks["overlapping_trials"] = [[a, b]]
    # One behaviour clock: each sample once, in time order (the first trial's value wins).
    t_beh, first = np.unique(np.concatenate(times), return_index=True)
    cursor = np.concatenate(pos)[first]
    cursor_vel = np.concatenate(vel)[first]

    # Units: threshold crossings, one per electrode; spikes only within trials.
    n_units = 2 * per_array
    units = Units.random(rng, n_units)
    spikes = poisson_spikes(rng, t_beh, units.rates(cursor_vel, 400.0), 1.0 / RATE)
    nwb.add_unit_column(
        name="electrode_group", description="the electrode group that each spike unit came from"
    )
    obs = np.c_[starts_a, stops_a]
    for u in range(n_units):
        times_u = spikes[u]
        if str(u) in unsorted:
            # A block of the unit's spikes written out of order: its times go back in time.
            half = len(times_u) // 2
            times_u = np.concatenate([times_u[half:], times_u[:half]])
        group = groups["1" if u < per_array else "2"]
        nwb.add_unit(spike_times=times_u, obs_intervals=obs, electrodes=[u], electrode_group=group)
        truth.unit_spikes[str(u)] = len(times_u)
    if unsorted:
        truth.quirks["unsorted_units"] = list(unsorted)

    module = nwb.create_processing_module(
        name="behavior", description="contains monkey movement data"
    )
    from hdmf.backends.hdf5.h5_utils import H5DataIO

    position = Position(name="Position")
    cursor_series = position.create_spatial_series(
        name="Cursor",
        data=H5DataIO(cursor, compression="gzip"),
        timestamps=H5DataIO(t_beh, compression="gzip"),
        reference_frame="screen",
        description="no description",
    )
    eye = cursor * 0.8 + np.round(rng.normal(0, 2, cursor.shape), 1)
    for name, data in (("Eye", eye), ("Hand", cursor + 1.0)):
        position.create_spatial_series(
            name=name,
            data=H5DataIO(data, compression="gzip"),
            timestamps=cursor_series,  # shared timestamps, as brainsets found them
            reference_frame="screen",
            description="no description",
        )
    module.add(position)
    for name in ("Cursor", "Eye", "Hand"):
        truth.behaviour[name] = len(t_beh)
        truth.nan_samples[name] = 0

    for name, description in UINT8_COLUMNS.items():
        nwb.add_trial_column(name=name, description=description)
    for name in (
        "go_cue_time",
        "move_begins_time",
        "move_ends_time",
        "reaction_time",
        "target_presentation_time",
    ):
        nwb.add_trial_column(name=name, description=name.replace("_", " "))
    nwb.add_trial_column(name="barrier_info", description="(x,y,halfwidth,halfheight)", index=True)
    nwb.add_trial_column(
        name="frame_details", description="(frameLeft,right,bottom,top, width)", index=True
    )
    nwb.add_trial_column(
        name="hit_target_position", description="x,y position on screen of the target hit"
    )
    nwb.add_trial_column(
        name="target_positions",
        description="x,y position on screen of all targets presented",
        index=True,
    )
    series = [position["Cursor"], position["Eye"], position["Hand"]]
    for i in range(n_trials):
        row = {name: values[i] for name, values in cols.items()}
        row.update({name: values[i] for name, values in ragged.items()})
        nwb.add_trial(
            start_time=float(starts_a[i]),
            stop_time=float(stops_a[i]),
            hit_target_position=hit[i],
            timeseries=series,
            **row,
        )
    truth.n_trials = n_trials
    truth.trials = {
        "start_time": starts_a,
        "stop_time": stops_a,
        **{k: np.asarray(v) for k, v in cols.items()},
    }

    # LFP segments (skipped by decoders; here so a reader meets an ElectricalSeries container).
    ecephys = nwb.create_processing_module(
        name="ecephys",
        description="Intermediate data from extracellular electrophysiology recordings, e.g., LFP.",
    )
    filtered = FilteredEphys(name="Processed")
    ecephys.add(filtered)
    for array, rows in (("A", range(per_array)), ("B", range(per_array, 2 * per_array))):
        region = nwb.create_electrode_table_region(list(rows), "electrode_table_region")
        filtered.add_electrical_series(
            ElectricalSeries(
                name=f"{array}001",
                data=rng.normal(0, 20, (500, per_array)).astype(np.int16),
                electrodes=region,
                rate=1000.0,
                starting_time=0.0,
                description=f"LFP signal for array {array}, segment 1. Ignore the starting times.",
            )
        )
    write_nwb(path, nwb)
    return truth


def build_churchland_2012(folder: Path, seed: int = 0) -> ReplicaTruth:
    """A replica of DANDI 000070: one clean session, and one (Nitschke 2009-09-10) with two
    overlapping trials and two units whose spike times go back in time."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    write_dandiset_yaml(
        folder,
        "Neural population dynamics during reaching (replica)",
        "Monkeys recordings of Motor Cortex (M1) and dorsal Premotor Cortex (PMd) using two 96 "
        "channel high density Utah Arrays while performing reaching tasks with right hand.",
    )
    truth = ReplicaTruth("churchland_2012", "000070", folder, [], seed=seed)
    for rel, (subject, date, n_trials, unsorted, overlap) in SESSIONS.items():
        truth.files[rel] = _session(
            folder / rel, rel, subject, date, n_trials, unsorted, overlap, rng
        )
    return truth
