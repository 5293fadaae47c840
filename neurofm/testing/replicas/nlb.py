"""Replicas of the Neural Latents Benchmark '21 dandisets: MC_Maze (000128) and its Large /
Medium / Small sessions (000138 / 000139 / 000140), MC_RTT (000129), Area2_Bump (000127) and
DMFC_RSG (000130).

Where the layout comes from (public descriptions only; no file was downloaded):

* The DANDI structure listings of each dandiset (magland/ai_generated_dandiset_summaries,
  ``dandisets/<id>/summary_prompt.md``, generated from the published versions 000127
  0.220113.0359, 000128 0.220113.0400, 000130 0.220113.0407, 000140 0.220113.0408 and the
  000129 draft): two files per dandiset, a train file (``*_desc-train_behavior+ecephys.nwb``;
  DMFC_RSG's is ``*_desc-train_ecephys.nwb``) and a test file (``*_desc-test_ecephys.nwb``:
  spikes of the held-in units and test trials only); the Units table with ``spike_times``,
  a ragged ``electrodes`` region (none at all in DMFC_RSG, whose unit ids are int32), a bool
  ``heldout`` column and ``obs_intervals`` (one per trial in the maze files, a few continuous
  segments in the RTT / Area2 / DMFC train files); the trials columns with their dtypes
  (maze: ragged ``barrier_pos`` / ``target_pos``, bool ``success``; Area2: ``result`` strings
  R / A / I / F, bool ``ctr_hold_bump``; DMFC: bool ``is_eye`` / ``is_short`` /
  ``is_outlier``, float ``theta`` / ``ts`` / ``tp`` in ms and the task's event times); the
  behaviour series directly in ``processing/behavior`` (SpatialSeries for positions,
  TimeSeries for velocities, forces, joints and muscles), sampled at 1 kHz.
* nlb_tools (neurallatents/nlb_tools, ``nwb_interface.py`` and ``make_tensors.py``): how the
  benchmark reads these files (every series on a 1 ms grid, ``obs_intervals`` for the data's
  extent, ``heldout`` to split units, a series' channel names from ``columns=[...]`` in its
  ``comments``) and what it decodes (hand_vel, finger_vel, or DMFC's trials columns ``is_eye,
  theta, is_short, ts, tp`` with ``is_outlier`` trials masked; RTT's 600 ms trials with overlap
  allowed).
* brainsets (neuro-galaxy/brainsets, ``brainsets_pipelines/pei_pandarinath_nlb_2021``):
  MC_Maze_Small's hand_vel read with its ``timestamps``; MC_RTT's series rebuilt from
  ``cursor_pos``'s ``rate`` and ``starting_time`` (rate-based), and its trial bounds rounded to
  0.1 s before use (``np.round(trials.end, 1)``): the raw bounds carry float noise.
* Issue 13 of this project, which lists what stopped real runs: RTT trials whose end is a
  hair past the next start, NaN gaps in ``finger_vel``, missing behaviour samples between maze
  trials, an NWB ``conversion`` on the maze hand series, Area2's string ``result``.

Sizes are scaled down (a dozen units, tens of trials, seconds of behaviour; fewer joint and
muscle columns in Area2) so each replica is a few MB at most.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from neurofm.testing.replicas.base import (
    NLB_RATE,
    FileTruth,
    ReplicaTruth,
    Units,
    add_electrodes,
    minimum_jerk_reach,
    new_nwbfile,
    poisson_spikes,
    set_column_dtype,
    write_dandiset_yaml,
    write_nwb,
)

__all__ = [
    "MAZE_SESSIONS",
    "build_area2_bump",
    "build_dmfc_rsg",
    "build_mc_maze",
    "build_mc_rtt",
]

DT = 1.0 / NLB_RATE
HELDOUT_DESCRIPTION = (
    "Whether the unit is held out in the test data (True) or not (False) in the Neural "
    "Latents Benchmark"
)
SPLIT_DESCRIPTION = (
    'Trial split that the trial belongs to for the Neural Latents Benchmark. Can be "train", '
    '"val", "test", or "none"'
)

#: card name -> (dandiset id, session label in the file names, pinned version, trials in the
#: train file, session date). The versions are the ones the NLB'21 releases were published as.
MAZE_SESSIONS: dict[str, tuple[str, str, str, int, dt.date]] = {
    "mc_maze": ("000128", "full", "0.220113.0400", 40, dt.date(2009, 9, 25)),
    "mc_maze_large": ("000138", "large", "0.220113.0407", 32, dt.date(2009, 9, 23)),
    "mc_maze_medium": ("000139", "medium", "0.220113.0408", 24, dt.date(2009, 9, 29)),
    "mc_maze_small": ("000140", "small", "0.220113.0408", 16, dt.date(2009, 9, 28)),
}


def _ms(t: np.ndarray | float) -> np.ndarray:
    """Round times to the 1 ms grid the NLB files use."""
    return np.round(np.asarray(t, dtype=np.float64), 3)


def _grid(start: float, stop: float) -> np.ndarray:
    """1 kHz sample times in ``[start, stop)`` (both on the ms grid)."""
    return np.arange(round(start * NLB_RATE), round(stop * NLB_RATE)) / NLB_RATE


def _gzip(data: np.ndarray) -> Any:
    from hdmf.backends.hdf5.h5_utils import H5DataIO

    return H5DataIO(data, compression="gzip", compression_opts=4)


def _session(date: dt.date, tz_hours: int) -> dt.datetime:
    return dt.datetime(
        date.year, date.month, date.day, tzinfo=dt.timezone(dt.timedelta(hours=tz_hours))
    )


def _add_units(
    nwb: Any,
    spikes: list[np.ndarray],
    heldout: np.ndarray,
    obs: list[list[float]],
    electrodes: np.ndarray | None,
    truth: FileTruth,
) -> None:
    """One row per unit: spike_times, obs_intervals, heldout and (unless None) a ragged
    electrodes region."""
    nwb.add_unit_column(name="heldout", description=HELDOUT_DESCRIPTION)
    for u, times in enumerate(spikes):
        row: dict[str, Any] = {
            "spike_times": times,
            "obs_intervals": np.asarray(obs, dtype=np.float64),
            "heldout": bool(heldout[u]),
        }
        if electrodes is not None:
            row["electrodes"] = [int(electrodes[u])]
        nwb.add_unit(**row)
        truth.unit_spikes[str(u)] = len(times)


def _add_trials(
    nwb: Any,
    start: np.ndarray,
    stop: np.ndarray,
    columns: dict[str, tuple[str, Any]],
    truth: FileTruth,
    ragged: tuple[str, ...] = (),
) -> None:
    """Trials from columns ``name -> (description, values)``; values keep their numpy dtype
    (bool, int64, int16, float64, str)."""
    for name, (description, _) in columns.items():
        nwb.add_trial_column(name=name, description=description, index=name in ragged)
    for i in range(len(start)):
        row = {name: values[i] for name, (_, values) in columns.items()}
        nwb.add_trial(start_time=float(start[i]), stop_time=float(stop[i]), **row)
    truth.n_trials = len(start)
    truth.trials = {"start_time": np.asarray(start), "stop_time": np.asarray(stop)}
    for name, (_, values) in columns.items():
        if name not in ragged:
            truth.trials[name] = np.asarray(values)
    if "split" in columns:
        labels, counts = np.unique(np.asarray(columns["split"][1]), return_counts=True)
        truth.split_counts = {str(k): int(v) for k, v in zip(labels, counts, strict=True)}


def _add_series(
    module: Any,
    truth: FileTruth,
    name: str,
    data: np.ndarray,
    *,
    spatial: bool,
    unit: str,
    description: str,
    timestamps: np.ndarray | None = None,
    rate: float | None = None,
    conversion: float = 1.0,
    columns: str = "",
) -> None:
    """A behaviour series directly in processing/behavior, timestamped or rate-based."""
    from pynwb import TimeSeries
    from pynwb.behavior import SpatialSeries

    timing: dict[str, Any] = (
        {"timestamps": _gzip(timestamps)}
        if timestamps is not None
        else {"rate": float(rate or NLB_RATE), "starting_time": 0.0}
    )
    kwargs: dict[str, Any] = dict(
        name=name,
        data=_gzip(data),
        unit=unit,
        conversion=conversion,
        description=description,
        comments=f"columns=[{columns}]" if columns else "no comments",
        **timing,
    )
    if spatial:
        series = SpatialSeries(reference_frame="origin at the centre target", **kwargs)
    else:
        series = TimeSeries(**kwargs)
    module.add(series)
    truth.behaviour[name] = len(data)
    truth.nan_samples[name] = int(np.isnan(data).any(axis=1).sum()) if data.ndim == 2 else 0
    if conversion != 1.0:
        truth.quirks.setdefault("conversion", {})[name] = conversion


def _split_labels(rng: np.random.Generator, n: int, val_fraction: float = 0.25) -> np.ndarray:
    labels = np.array(["train"] * n, dtype=object)
    n_val = max(2, int(round(val_fraction * n)))
    labels[rng.choice(n, n_val, replace=False)] = "val"
    return labels


def _test_file(
    path: Path,
    nwb: Any,
    rng: np.random.Generator,
    units: Units,
    held_in: int,
    starts: np.ndarray,
    stops: np.ndarray,
    extra: dict[str, tuple[str, Any]],
    electrodes: np.ndarray | None,
    rel: str,
) -> FileTruth:
    """An NLB test file: the held-in units' spikes within the test trials, test trials, no
    behaviour (its heldout column is all False: held-out units are not in it)."""
    truth = FileTruth(rel, test_only=True)
    t = np.concatenate([_grid(a, b) for a, b in zip(starts, stops, strict=True)])
    sub = Units(units.baseline[:held_in], units.gain[:held_in], units.direction[:held_in])
    spikes = poisson_spikes(rng, t, sub.rates(np.zeros((len(t), 2)), 1.0), DT)
    obs = [[float(a), float(b)] for a, b in zip(starts, stops, strict=True)]
    _add_units(nwb, spikes, np.zeros(held_in, bool), obs, electrodes, truth)
    columns = {**extra, "split": (SPLIT_DESCRIPTION, np.array(["test"] * len(starts), object))}
    _add_trials(nwb, starts, stops, columns, truth)
    write_nwb(path, nwb)
    return truth


# --------------------------------------------------------------------------------------------
# MC_Maze, Large, Medium, Small
# --------------------------------------------------------------------------------------------


def build_mc_maze(folder: Path, card: str = "mc_maze", seed: int = 0) -> ReplicaTruth:
    """A replica of MC_Maze (``card="mc_maze"``) or one of its scaling sessions
    (``mc_maze_large``, ``mc_maze_medium``, ``mc_maze_small``).

    Quirks kept: behaviour only inside trials (missing samples between trials, not NaNs), an
    NWB ``conversion`` of 0.001 on hand_pos / hand_vel (stored in mm and mm/s, so a reader that
    applies it gets m and m/s), a bool ``success`` column that is all True, ragged trials
    columns, and the held-out test file.
    """
    dandiset, label, version, n_trials, date = MAZE_SESSIONS[card]
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    write_dandiset_yaml(
        folder,
        f"{card.upper()}: macaque primary motor and dorsal premotor cortex spiking activity "
        "during delayed reaching (replica)",
        "Sorted unit spiking times and behavioural data from a macaque performing a delayed "
        "centre-out reaching task with maze barriers; Neural Latents Benchmark replica.",
    )
    truth = ReplicaTruth(card, dandiset, folder, [version], seed=seed)
    start = _session(date, -7)
    n_units, n_heldout = 14, 4
    units = Units.random(rng, n_units)

    def nwbfile(kind: str) -> tuple[Any, np.ndarray]:
        nwb = new_nwbfile(
            f"{card}-{kind}-{seed}",
            start,
            "Jenkins",
            session_id=label,
            description=(
                "Data from monkey Jenkins performing center-out delayed reaching task. This "
                f"file contains {'trials' if kind == 'train' else 'segments of trials'} from "
                f"the {label} session."
            ),
            experiment_description="Center-out delayed reaching task with maze barriers",
            experimenter=["Mark M. Churchland", "Matthew T. Kaufman"],
            institution="Stanford University",
            lab="Shenoy",
            keywords=["motor cortex", "premotor cortex", "reaching", "macaque"],
            related_publications=["https://doi.org/10.1016/j.neuron.2010.09.015"],
        )
        add_electrodes(
            nwb,
            [
                (
                    "electrode_group_M1",
                    "electrode_array_M1",
                    "96-electrode Utah array in M1",
                    "M1",
                    96,
                ),
                (
                    "electrode_group_PMd",
                    "electrode_array_PMd",
                    "96-electrode Utah array in PMd",
                    "PMd",
                    96,
                ),
            ],
        )
        return nwb, rng.choice(192, n_units, replace=False)

    # ---- the train file: trials separated by inter-trial gaps without behaviour samples
    starts, stops, cols = (
        [],
        [],
        {
            k: []
            for k in (
                "active_target",
                "barrier_pos",
                "delay",
                "go_cue_time",
                "maze_id",
                "move_onset_time",
                "num_barriers",
                "num_targets",
                "rt",
                "success",
                "target_on_time",
                "target_pos",
                "trial_type",
                "trial_version",
            )
        },
    )
    t0, times, pos, vel = 0.5, [], [], []
    for _ in range(n_trials):
        version_i = int(rng.integers(0, 3))
        n_targets = 3 if version_i == 2 else 1
        n_barriers = 0 if version_i == 0 else int(rng.integers(1, 6))
        target_on = _ms(t0 + rng.uniform(0.2, 0.3))
        delay = int(rng.choice([0, 100, 200, 300]))
        go = _ms(target_on + delay / 1000)
        rt = int(rng.integers(250, 400))
        onset = _ms(go + rt / 1000)
        stop = _ms(onset + 0.8)  # nlb_tools reads behaviour up to 570 ms after onset
        angle = rng.uniform(0, 2 * np.pi)
        target = rng.uniform(80, 120) * np.array([np.cos(angle), np.sin(angle)])
        t = _grid(t0, stop)
        p, v = minimum_jerk_reach(t, onset, 0.45, target)
        times.append(t)
        pos.append(np.round(p + rng.normal(0, 0.05, p.shape), 2))  # a tracker's 0.01 mm steps
        vel.append(v)
        starts.append(t0)
        stops.append(stop)
        targets = np.vstack([target, rng.uniform(-120, 120, (n_targets - 1, 2))]).astype(np.int16)
        cols["active_target"].append(np.int64(0))
        cols["barrier_pos"].append(rng.integers(-100, 100, (max(n_barriers, 1), 4)))
        cols["delay"].append(np.int64(delay))
        cols["go_cue_time"].append(go)
        cols["maze_id"].append(np.int64(rng.integers(1, 109)))
        cols["move_onset_time"].append(onset)
        cols["num_barriers"].append(np.int64(n_barriers))
        cols["num_targets"].append(np.int64(n_targets))
        cols["rt"].append(np.int64(rt))
        cols["success"].append(np.True_)
        cols["target_on_time"].append(target_on)
        cols["target_pos"].append(targets if card == "mc_maze" else targets.astype(np.int64))
        cols["trial_type"].append(np.int64(rng.integers(1, 28)))
        cols["trial_version"].append(np.int64(version_i))
        t0 = _ms(stop + rng.uniform(0.2, 0.4))  # no behaviour samples in the gap
    starts_a, stops_a = np.asarray(starts), np.asarray(stops)
    t_all = np.concatenate(times)
    hand_pos, hand_vel = np.concatenate(pos), np.concatenate(vel)

    rel = f"sub-Jenkins/sub-Jenkins_ses-{label}_desc-train_behavior+ecephys.nwb"
    nwb, electrodes = nwbfile("train")
    ftruth = FileTruth(rel)
    spikes = poisson_spikes(rng, t_all, units.rates(hand_vel, 300.0), DT)
    heldout = np.zeros(n_units, bool)
    heldout[-n_heldout:] = True
    obs = [[float(a), float(b)] for a, b in zip(starts_a, stops_a, strict=True)]
    _add_units(nwb, spikes, heldout, obs, electrodes, ftruth)
    descriptions = {
        "active_target": "Which target is reachable and was hit. Value is the index of the "
        "target in target_pos list",
        "barrier_pos": "Array with rows containing barrier location information",
        "delay": "Delay between target presentation and go cue, in ms",
        "go_cue_time": "Time of go cue delivery, as detected by the photobox",
        "maze_id": "A unique identifier for each maze, lumping all 3 `trial_version`s",
        "move_onset_time": "Time of movement onset, calculated offline using a robust algorithm",
        "num_barriers": "The number of barriers for the trial",
        "num_targets": "The number of targets for the trial",
        "rt": "Delay between go cue and movement onset",
        "success": "If the monkey was successful on the trial. In these benchmark files, all "
        "unsuccessful trials have been removed",
        "target_on_time": "Time of target presentation, as detected by the photobox",
        "target_pos": "Array with rows containing x and y coordinates of target location",
        "trial_type": "A number representing the maze that was used for the trial",
        "trial_version": "A number 0-2 indicating which variant of the maze is presented",
    }
    columns: dict[str, tuple[str, Any]] = {}
    for name in sorted(cols):
        values = cols[name]
        columns[name] = (
            descriptions[name],
            values if name in ("barrier_pos", "target_pos") else np.asarray(values),
        )
    columns["split"] = (SPLIT_DESCRIPTION, _split_labels(rng, n_trials))
    _add_trials(
        nwb,
        starts_a,
        stops_a,
        dict(sorted(columns.items())),
        ftruth,
        ragged=("barrier_pos", "target_pos"),
    )
    module = nwb.create_processing_module(name="behavior", description="Processed behavioral data")
    xy = "x,y"
    _add_series(
        module,
        ftruth,
        "cursor_pos",
        hand_pos + 2.0,
        spatial=True,
        unit="mm",
        description="Cursor position in mm. First column x, second column y",
        timestamps=t_all,
        columns=xy,
    )
    eye = np.repeat(
        np.asarray([c[0] for c in cols["target_pos"]], float), [len(t) for t in times], axis=0
    )
    _add_series(
        module,
        ftruth,
        "eye_pos",
        np.round(eye + rng.normal(0, 3, eye.shape), 1),
        spatial=True,
        unit="mm",
        description="Monkey eye position in mm. First column x, second column y",
        timestamps=t_all,
        columns=xy,
    )
    # Stored in mm and mm/s like the benchmark's numbers, with conversion 0.001 to metres:
    # nlb_tools and brainsets read .data (mm/s); a reader applying NWB's conversion gets m/s.
    _add_series(
        module,
        ftruth,
        "hand_pos",
        hand_pos,
        spatial=True,
        unit="m",
        conversion=0.001,
        description="Monkey hand position in mm. First column x, second column y",
        timestamps=t_all,
        columns=xy,
    )
    _add_series(
        module,
        ftruth,
        "hand_vel",
        hand_vel,
        spatial=False,
        unit="m/s",
        conversion=0.001,
        description="Monkey hand velocity in mm/s, calculated from monkey hand position. First "
        "column x, second column y",
        timestamps=t_all,
        columns=xy,
    )
    ftruth.quirks["missing_samples_between_trials"] = int(
        round((stops_a[-1] - starts_a[0]) * NLB_RATE) - len(t_all)
    )
    write_nwb(folder / rel, nwb)
    truth.files[rel] = ftruth

    # ---- the test file: later trials of the session, spikes only
    n_test = max(4, n_trials // 4)
    t_starts = _ms(stops_a[-1] + 0.5 + 1.4 * np.arange(n_test))
    t_stops = _ms(t_starts + 1.1)
    onset = _ms(t_starts + 0.6)
    rel_test = f"sub-Jenkins/sub-Jenkins_ses-{label}_desc-test_ecephys.nwb"
    nwb, electrodes = nwbfile("test")
    truth.files[rel_test] = _test_file(
        folder / rel_test,
        nwb,
        rng,
        units,
        n_units - n_heldout,
        t_starts,
        t_stops,
        {
            "move_onset_time": (
                "Time of movement onset, calculated offline using a robust algorithm",
                onset,
            )
        },
        electrodes[: n_units - n_heldout],
        rel_test,
    )
    return truth


# --------------------------------------------------------------------------------------------
# MC_RTT
# --------------------------------------------------------------------------------------------

#: Segments, trials per segment, trial length (s) and gap between segments (s) of the replica.
RTT_SEGMENTS, RTT_TRIALS_PER_SEGMENT, RTT_TRIAL, RTT_GAP = 3, 10, 0.6, 1.8


def build_mc_rtt(folder: Path, seed: int = 0) -> ReplicaTruth:
    """A replica of MC_RTT (000129).

    Quirks kept: 600 ms trials back to back in continuous segments, each trial's bounds
    computed as in floating point so some end a few ULPs after the next trial starts; the
    behaviour rate-based at 1 kHz from t = 0 with NaN where the benchmark removed data (the
    gaps between segments, which hold the test trials); the held-out test file. No NaN falls
    inside a trial: nlb_tools drops NaN samples from a trial and then cannot stack trials of
    unequal length, so the benchmark's files cannot have any there.
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    write_dandiset_yaml(
        folder,
        "MC_RTT: macaque motor cortex spiking activity during self-paced reaching (replica)",
        "Sorted unit spiking times and behavioural data from a macaque performing a "
        "self-paced reaching task; Neural Latents Benchmark replica.",
    )
    truth = ReplicaTruth("mc_rtt", "000129", folder, ["0.241017.1444"], seed=seed)
    start = _session(dt.date(2017, 2, 2), -8)
    n_units, n_heldout = 14, 4
    units = Units.random(rng, n_units)

    def nwbfile(kind: str) -> tuple[Any, np.ndarray]:
        nwb = new_nwbfile(
            f"mc_rtt-{kind}-{seed}",
            start,
            "Indy",
            session_id="20170202_02",
            description="Data from monkey Indy performing self-paced random target reaching "
            f"task ({kind} file).",
            experiment_description="Self-paced reaches to targets arranged in a grid without "
            "gaps or pre-movement delay intervals",
            experimenter=["Joseph E. O'Doherty"],
            institution="University of California, San Francisco",
            lab="Sabes",
            keywords=["motor cortex", "reaching", "macaque"],
            related_publications=["https://doi.org/10.1088/1741-2552/aa9e95"],
        )
        add_electrodes(
            nwb, [("electrode_group", "electrode_array", "96-electrode Utah array", "M1", 96)]
        )
        return nwb, rng.choice(96, n_units, replace=False)

    seg_len = RTT_TRIALS_PER_SEGMENT * RTT_TRIAL
    seg_starts = 0.3 + np.arange(RTT_SEGMENTS) * (seg_len + RTT_GAP)
    seg_stops = seg_starts + seg_len
    # Trial bounds as a converter computes them: start = segment start + k * 0.6 (then
    # rounded to the ms), end = start + 0.6 in floating point: some ends land a few ULPs past
    # the next start. brainsets rounds the bounds to 0.1 s; nlb_tools allows the overlap.
    starts = np.concatenate(
        [_ms(s + RTT_TRIAL * np.arange(RTT_TRIALS_PER_SEGMENT)) for s in seg_starts]
    )
    stops = starts + RTT_TRIAL
    noise = [[i, i + 1] for i in range(len(starts) - 1) if stops[i] > starts[i + 1]]
    if not noise:  # make sure the quirk is there whatever the numbers: one end a hair late
        i = 3
        stops[i] = np.nextafter(np.nextafter(starts[i + 1], np.inf), np.inf)
        noise = [[i, i + 1]]

    # Continuous random-target reaching over the whole file, at 1 kHz from t = 0.
    total = float(seg_stops[-1])
    t = _grid(0.0, total)
    finger = np.zeros((len(t), 3))
    finger_vel = np.zeros((len(t), 2))
    target = np.zeros((len(t), 2))
    here, t_move = np.zeros(2), 0.0
    while t_move < total:
        dur = rng.uniform(0.45, 0.7)
        goal = rng.integers(-4, 4, 2) * 12.0 + 6.0  # an 8 x 8 grid of targets, 12 mm apart
        sel = t >= t_move
        p, v = minimum_jerk_reach(t[sel], t_move + 0.05, dur - 0.1, goal - here)
        finger[sel, :2] = here + p
        finger_vel[sel] = v
        target[sel] = goal
        here, t_move = goal, t_move + dur
    finger[:, 2] = -20.0 + rng.normal(0, 0.1, len(t))
    cursor = finger[:, :2].copy()

    in_segment = np.zeros(len(t), bool)
    for a, b in zip(seg_starts, seg_stops, strict=True):
        in_segment |= (t >= a) & (t < b)
    t_spk = t[in_segment]
    spikes_all = poisson_spikes(rng, t_spk, units.rates(finger_vel[in_segment], 150.0), DT)

    removed = ~in_segment  # the benchmark removed the test trials' data: NaN in the train file
    for series in (finger, finger_vel, cursor, target):
        series[removed] = np.nan

    rel = "sub-Indy/sub-Indy_desc-train_behavior+ecephys.nwb"
    nwb, electrodes = nwbfile("train")
    ftruth = FileTruth(rel)
    heldout = np.zeros(n_units, bool)
    heldout[-n_heldout:] = True
    obs = [[float(a), float(b)] for a, b in zip(seg_starts, seg_stops, strict=True)]
    _add_units(nwb, spikes_all, heldout, obs, electrodes, ftruth)
    _add_trials(
        nwb, starts, stops, {"split": (SPLIT_DESCRIPTION, _split_labels(rng, len(starts)))}, ftruth
    )
    ftruth.quirks["float_noise_overlaps"] = noise
    ftruth.quirks["nan_gaps"] = [
        [float(a), float(b)] for a, b in zip(seg_stops[:-1], seg_starts[1:], strict=True)
    ]
    ftruth.quirks["nan_gaps"].insert(0, [0.0, float(seg_starts[0])])
    module = nwb.create_processing_module(name="behavior", description="Processed behavioral data")
    _add_series(
        module,
        ftruth,
        "cursor_pos",
        cursor,
        spatial=True,
        unit="mm",
        description="The position of the cursor in Cartesian coordinates (x, y) in mm. Recorded "
        "at 250 Hz and upsampled to 1 kHz",
        rate=NLB_RATE,
        columns="x,y",
    )
    _add_series(
        module,
        ftruth,
        "finger_pos",
        finger,
        spatial=True,
        unit="mm",
        description="The position of the working fingertip in Cartesian coordinates (x, y, z), as "
        "reported by the hand tracker in mm. Recorded at 250 Hz and upsampled to 1 kHz",
        rate=NLB_RATE,
        columns="x,y,z",
    )
    _add_series(
        module,
        ftruth,
        "finger_vel",
        finger_vel,
        spatial=False,
        unit="mm/s",
        description="The x and y velocity of the finger in mm/s. Calculated offline from "
        "upsampled finger position",
        rate=NLB_RATE,
        columns="x,y",
    )
    _add_series(
        module,
        ftruth,
        "target_pos",
        target,
        spatial=True,
        unit="mm",
        description="The position of the target in Cartesian coordinates (x, y) in mm. Recorded "
        "at 250 Hz and upsampled to 1 kHz",
        rate=NLB_RATE,
        columns="x,y",
    )
    write_nwb(folder / rel, nwb)
    truth.files[rel] = ftruth

    # The test trials fill the gaps the train file's behaviour is NaN in.
    per_gap = int(RTT_GAP // RTT_TRIAL)
    t_starts = np.concatenate([_ms(b + RTT_TRIAL * np.arange(per_gap)) for b in seg_stops[:-1]])
    rel_test = "sub-Indy/sub-Indy_desc-test_ecephys.nwb"
    nwb, electrodes = nwbfile("test")
    truth.files[rel_test] = _test_file(
        folder / rel_test,
        nwb,
        rng,
        units,
        n_units - n_heldout,
        t_starts,
        _ms(t_starts + RTT_TRIAL),
        {},
        electrodes[: n_units - n_heldout],
        rel_test,
    )
    return truth


# --------------------------------------------------------------------------------------------
# Area2_Bump
# --------------------------------------------------------------------------------------------


def build_area2_bump(folder: Path, seed: int = 0) -> ReplicaTruth:
    """A replica of Area2_Bump (000127).

    Quirks kept: ``result`` is a string column (R reward, A abort, I incomplete, F fail), so
    a truthiness test keeps every trial; ``ctr_hold_bump`` bool; bump and go-cue times NaN on
    trials without them; timestamped behaviour only inside the continuous segments; the
    held-out test file. The real file has more joint and muscle channels than the replica.
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    write_dandiset_yaml(
        folder,
        "Area2_Bump: macaque somatosensory area 2 spiking activity during reaching with "
        "perturbations (replica)",
        "Sorted unit spiking times and behavioural data from a macaque performing a reaching "
        "task with perturbations; Neural Latents Benchmark replica.",
    )
    truth = ReplicaTruth("area2_bump", "000127", folder, ["0.220113.0359"], seed=seed)
    start = _session(dt.date(2017, 12, 7), -5)
    n_units, n_heldout = 14, 4
    units = Units.random(rng, n_units)

    def nwbfile(kind: str) -> tuple[Any, np.ndarray]:
        nwb = new_nwbfile(
            f"area2_bump-{kind}-{seed}",
            start,
            "Han",
            session_id="20171207",
            description="Data from monkey Han performing center-out active-passive task "
            f"({kind} file).",
            experiment_description="Center out reaching task with perturbations during center "
            "hold period before reach",
            experimenter=["Raeed H. Chowdhury"],
            institution="Northwestern University",
            lab="Miller",
            keywords=["somatosensory cortex", "reaching", "macaque"],
            related_publications=["https://doi.org/10.7554/eLife.48198"],
        )
        add_electrodes(
            nwb,
            [("electrode_group", "electrode_array", "96-electrode Utah array", "area 2", 96)],
        )
        return nwb, rng.choice(96, n_units, replace=False)

    n_segments, per_segment = 3, 6
    rows: dict[str, list[Any]] = {
        k: []
        for k in (
            "bump_dir",
            "bump_time",
            "cond_dir",
            "ctr_hold",
            "ctr_hold_bump",
            "go_cue_time",
            "move_onset_time",
            "result",
            "target_dir",
            "target_on_time",
        )
    }
    starts, stops, times, pos, vel = [], [], [], [], []
    seg_bounds = []
    t0 = 0.5
    results = np.array(["R"] * 13 + ["A", "A", "I", "F", "F"], dtype=object)
    rng.shuffle(results)
    for s in range(n_segments):
        seg_start = t0
        for k in range(per_segment):
            i = s * per_segment + k
            result = results[i]
            ctr_hold = float(_ms(rng.uniform(0.5, 0.8)))
            bump = bool(rng.random() < 0.4) and result != "A"
            target_dir = float(rng.choice(np.arange(0, 360, 45)))
            target_on = _ms(t0 + 0.1)
            t_hold = _ms(target_on + 0.05)
            bump_time = _ms(t_hold + rng.uniform(0.1, ctr_hold - 0.15)) if bump else np.nan
            bump_dir = float(rng.choice(np.arange(0, 360, 45))) if bump else np.nan
            if result == "A":
                go, onset, stop = np.nan, np.nan, _ms(t_hold + 0.3)
            else:
                go = _ms(t_hold + ctr_hold)
                onset = _ms(bump_time + 0.03) if bump else _ms(go + rng.uniform(0.15, 0.25))
                stop = _ms(max(go, onset) + 0.7)
            t = _grid(t0, stop)
            p = np.zeros((len(t), 2))
            v = np.zeros((len(t), 2))
            if bump:  # a 125 ms push of the handle, and back
                d = 2.0 * np.array([np.cos(np.radians(bump_dir)), np.sin(np.radians(bump_dir))])
                p1, v1 = minimum_jerk_reach(t, bump_time, 0.125, d)
                p2, v2 = minimum_jerk_reach(t, bump_time + 0.125, 0.125, -d)
                p, v = p + p1 + p2, v + v1 + v2
            if result in ("R", "F") and np.isfinite(go):
                reach_onset = onset if not bump else _ms(go + 0.2)
                d = 10.0 * np.array(
                    [np.cos(np.radians(target_dir)), np.sin(np.radians(target_dir))]
                )
                scale = 1.0 if result == "R" else 0.5  # a failed reach falls short
                p1, v1 = minimum_jerk_reach(t, reach_onset, 0.4, scale * d)
                p, v = p + p1, v + v1
            times.append(t)
            pos.append(p)
            vel.append(v)
            starts.append(t0)
            stops.append(stop)
            rows["bump_dir"].append(bump_dir)
            rows["bump_time"].append(float(bump_time))
            rows["cond_dir"].append(bump_dir if bump else target_dir)
            rows["ctr_hold"].append(ctr_hold)
            rows["ctr_hold_bump"].append(np.bool_(bump))
            rows["go_cue_time"].append(float(go))
            rows["move_onset_time"].append(float(onset))
            rows["result"].append(str(result))
            rows["target_dir"].append(target_dir)
            rows["target_on_time"].append(float(target_on))
            t0 = _ms(stop + 0.05)
        seg_bounds.append([seg_start, float(stops[-1])])
        t0 = _ms(stops[-1] + 2.5)  # the gap holds the test file's trials
    starts_a, stops_a = np.asarray(starts), np.asarray(stops)
    t_all = np.concatenate(times)
    hand_pos, hand_vel = np.concatenate(pos), np.concatenate(vel)

    rel = "sub-Han/sub-Han_desc-train_behavior+ecephys.nwb"
    nwb, electrodes = nwbfile("train")
    ftruth = FileTruth(rel)
    spikes = poisson_spikes(rng, t_all, units.rates(hand_vel, 20.0), DT)
    heldout = np.zeros(n_units, bool)
    heldout[-n_heldout:] = True
    _add_units(nwb, spikes, heldout, seg_bounds, electrodes, ftruth)
    descriptions = {
        "bump_dir": "Angle (in degrees) of bump direction, if there was one",
        "bump_time": "Time of bump delivery, if there was one",
        "cond_dir": "Direction of bump for passive trials and target direction for active trials",
        "ctr_hold": "Required hold time on center before reach, in seconds",
        "ctr_hold_bump": "Whether there was bump during center hold",
        "go_cue_time": "Time of go cue delivery",
        "move_onset_time": "Time of move onset around bump for passive trials and after go cue "
        "for active trials",
        "result": "Result of the trial, either 'R' (reward), 'A' (abort), 'I' (incomplete) or "
        "'F' (fail)",
        "target_dir": "Direction of target, in degrees",
        "target_on_time": "Time of target presentation",
    }
    columns: dict[str, tuple[str, Any]] = {
        name: (descriptions[name], np.asarray(values, dtype=object if name == "result" else None))
        for name, values in rows.items()
    }
    # Trials that are not rewarded belong to no benchmark split: nlb_tools aligns every
    # train / val trial on its move onset, which an aborted trial does not have.
    labels = _split_labels(rng, len(starts))
    labels[results != "R"] = "none"
    columns["split"] = (SPLIT_DESCRIPTION, labels)
    _add_trials(nwb, starts_a, stops_a, dict(sorted(columns.items())), ftruth)
    ftruth.quirks["result_counts"] = {k: int((results == k).sum()) for k in "RAIF"}
    module = nwb.create_processing_module(name="behavior", description="Processed behavioral data")
    n = len(t_all)
    smooth = np.cumsum(rng.normal(0, 0.01, (n, 1)), axis=0)
    _add_series(
        module,
        ftruth,
        "force",
        np.hstack([hand_vel * 0.05, smooth * np.ones((1, 4))]),
        spatial=False,
        unit="N",
        description="Interface forces and torques between the hand and the manipulandum handle, "
        "in Newtons or Newton-meters. Sampled at 1 kHz",
        timestamps=t_all,
        columns="x,y,z,mx,my,mz",
    )
    _add_series(
        module,
        ftruth,
        "hand_pos",
        hand_pos,
        spatial=True,
        unit="cm",
        description="Hand position in Cartesian coordinates, in cm. Sampled at 1 kHz, low-pass "
        "filtered at 100 Hz cutoff",
        timestamps=t_all,
        columns="x,y",
    )
    _add_series(
        module,
        ftruth,
        "hand_vel",
        hand_vel,
        spatial=False,
        unit="cm/s",
        description="Hand velocity, in cm/s. Sampled at 1 kHz, low-pass filtered at 100 Hz cutoff",
        timestamps=t_all,
        columns="x,y",
    )
    joints = "shoulder_adduction,shoulder_rotation,shoulder_flexion,elbow_flexion"
    muscles = "brachialis,tricep_lat,deltoid_ant,bicep_sh"
    mix = rng.normal(0, 1, (2, 4))
    _add_series(
        module,
        ftruth,
        "joint_ang",
        30 + hand_pos @ mix,
        spatial=False,
        unit="degrees",
        description="Angle of monkey arm joints in degrees, calculated from motion tracking data",
        timestamps=t_all,
        columns=joints,
    )
    _add_series(
        module,
        ftruth,
        "joint_vel",
        hand_vel @ mix,
        spatial=False,
        unit="degrees/s",
        description="Velocity of monkey arm joints in degrees/s, calculated from motion tracking "
        "data",
        timestamps=t_all,
        columns=joints,
    )
    _add_series(
        module,
        ftruth,
        "muscle_len",
        0.1 + 0.001 * hand_pos @ mix,
        spatial=False,
        unit="m",
        description="Length of various monkey arm muscles in m, calculated from motion tracking "
        "data",
        timestamps=t_all,
        columns=muscles,
    )
    _add_series(
        module,
        ftruth,
        "muscle_vel",
        0.001 * hand_vel @ mix,
        spatial=False,
        unit="m/s",
        description="Velocity of various monkey arm muscles in m/s, calculated from motion "
        "tracking data",
        timestamps=t_all,
        columns=muscles,
    )
    write_nwb(folder / rel, nwb)
    truth.files[rel] = ftruth

    t_starts = np.concatenate([_ms(b[1] + 0.3 + 1.1 * np.arange(2)) for b in seg_bounds[:-1]])
    rel_test = "sub-Han/sub-Han_desc-test_ecephys.nwb"
    nwb, electrodes = nwbfile("test")
    truth.files[rel_test] = _test_file(
        folder / rel_test,
        nwb,
        rng,
        units,
        n_units - n_heldout,
        t_starts,
        _ms(t_starts + 1.0),
        {"move_onset_time": (descriptions["move_onset_time"], _ms(t_starts + 0.5))},
        electrodes[: n_units - n_heldout],
        rel_test,
    )
    return truth


# --------------------------------------------------------------------------------------------
# DMFC_RSG
# --------------------------------------------------------------------------------------------

SHORT_PRIOR_MS = np.array([480.0, 560.0, 640.0, 720.0, 800.0])
LONG_PRIOR_MS = np.array([800.0, 900.0, 1000.0, 1100.0, 1200.0])


def build_dmfc_rsg(folder: Path, seed: int = 0) -> ReplicaTruth:
    """A replica of DMFC_RSG (000130).

    Quirks kept: no behaviour module at all (the per-trial behaviour is in the trials table:
    ``ts`` and ``tp`` in ms, bool ``is_eye`` / ``is_short`` / ``is_outlier``, ``theta`` 0 or
    180); no ``electrodes`` column in the Units table (the electrodes table exists); int32
    unit ids; NaN ``reward_time`` / ``bad_time`` on the trials without them; the test file.
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    write_dandiset_yaml(
        folder,
        "DMFC_RSG: macaque dorsomedial frontal cortex spiking activity during time interval "
        "reproduction task (replica)",
        "Sorted unit spiking times from a macaque performing a time-interval reproduction "
        "task; Neural Latents Benchmark replica.",
    )
    truth = ReplicaTruth("dmfc_rsg", "000130", folder, ["0.220113.0407"], seed=seed)
    start = _session(dt.date(2016, 12, 11), -5)
    n_units, n_heldout = 14, 4

    def nwbfile(kind: str) -> Any:
        nwb = new_nwbfile(
            f"dmfc_rsg-{kind}-{seed}",
            start,
            "Haydn",
            session_id="20161211",
            description="Data from monkey Haydn performing ready-set-go time interval "
            f"reproduction task ({kind} file).",
            experiment_description="Cognitive timing task in which subject attempts to "
            "reproduce interval between two cues",
            experimenter=["Hansem Sohn"],
            institution="Massachusetts Institute of Technology",
            lab="Jazayeri",
            keywords=["frontal cortex", "cognitive", "macaque"],
            related_publications=["http://dx.doi.org/10.1016/j.neuron.2019.06.012"],
        )
        add_electrodes(
            nwb,
            [
                (
                    f"electrode_group_{k}",
                    f"electrode_probe_{k}",
                    "Linear probe with 24 recording channels",
                    "DMFC",
                    24,
                )
                for k in (1, 2, 3)
            ],
        )
        return nwb

    n_segments, per_segment = 3, 10
    cols: dict[str, list[float]] = {
        k: []
        for k in (
            "bad_time",
            "fix_on_time",
            "fix_time",
            "fix_time_dur",
            "go_time",
            "is_eye",
            "is_outlier",
            "is_short",
            "iti",
            "ready_time",
            "reward_dur",
            "reward_time",
            "set_time",
            "target_acq_time",
            "target_on_time",
            "target_time_dur",
            "theta",
            "tp",
            "ts",
        )
    }
    starts, stops, seg_bounds = [], [], []
    outliers = set(rng.choice(n_segments * per_segment, 3, replace=False).tolist())
    t0 = 0.5
    for s in range(n_segments):
        seg_start = t0
        is_short = s % 2 == 0  # the prior alternates in blocks
        for k in range(per_segment):
            i = s * per_segment + k
            ts = float(rng.choice(SHORT_PRIOR_MS if is_short else LONG_PRIOR_MS))
            outlier = i in outliers
            tp = ts * (2.3 if outlier else 1.0 + rng.normal(0, 0.06))
            tp = float(np.round(tp))
            fix_on = _ms(t0 + 0.1)
            fix = _ms(fix_on + rng.uniform(0.2, 0.4))
            fix_dur = float(np.round(rng.uniform(400, 600)))
            target_on = _ms(fix + fix_dur / 1000)
            target_dur = float(np.round(rng.uniform(450, 550)))
            ready = _ms(target_on + target_dur / 1000)
            set_t = _ms(ready + ts / 1000)
            go = _ms(set_t + tp / 1000)
            rewarded = abs(tp - ts) < 0.25 * ts
            reward = _ms(go + 0.1) if rewarded else np.nan
            bad = np.nan if rewarded else float(go)
            iti = 500.0 if is_short else 1220.0
            stop = _ms(go + 0.4)
            starts.append(t0)
            stops.append(stop)
            for name, value in (
                ("bad_time", bad),
                ("fix_on_time", fix_on),
                ("fix_time", fix),
                ("fix_time_dur", fix_dur),
                ("go_time", go),
                ("is_eye", (i // 5) % 2 == 0),
                ("is_outlier", outlier),
                ("is_short", is_short),
                ("iti", iti),
                ("ready_time", ready),
                ("reward_dur", 120.0 if rewarded else np.nan),
                ("reward_time", reward),
                ("set_time", set_t),
                ("target_acq_time", _ms(go + 0.05)),
                ("target_on_time", target_on),
                ("target_time_dur", target_dur),
                ("theta", float(rng.choice([0.0, 180.0]))),
                ("tp", tp),
                ("ts", ts),
            ):
                cols[name].append(value)
            t0 = _ms(stop + iti / 1000)
        seg_bounds.append([seg_start, float(stops[-1])])
        t0 = _ms(stops[-1] + 4.0)  # the gap holds the test file's trials
    starts_a, stops_a = np.asarray(starts), np.asarray(stops)

    # Timing neurons: during Ready-Set each unit's rate ramps at its own slope, so the rate
    # just before Set encodes ts (and so tp); after Set it ramps towards Go at a speed set by tp.
    baseline = rng.uniform(5.0, 20.0, n_units)
    slope = rng.uniform(-8.0, 25.0, n_units)  # Hz per second of elapsed interval
    t_all = np.concatenate([_grid(a, b) for a, b in seg_bounds])
    rates = np.tile(baseline, (len(t_all), 1))
    ready_a, set_a, go_a = (np.asarray(cols[k]) for k in ("ready_time", "set_time", "go_time"))
    for r, st, g in zip(ready_a, set_a, go_a, strict=True):
        during = (t_all >= r) & (t_all < st)
        rates[during] += np.outer(t_all[during] - r, slope)
        after = (t_all >= st) & (t_all < g)
        frac = (t_all[after] - st) / (g - st)
        rates[after] += np.outer(1.0 - frac, slope * (st - r))
    rates = np.clip(rates, 0.0, None)

    rel = "sub-Haydn/sub-Haydn_desc-train_ecephys.nwb"
    nwb = nwbfile("train")
    ftruth = FileTruth(rel)
    spikes = poisson_spikes(rng, t_all, rates, DT)
    heldout = np.zeros(n_units, bool)
    heldout[-n_heldout:] = True
    _add_units(nwb, spikes, heldout, seg_bounds, None, ftruth)  # no electrodes column
    descriptions = {
        "bad_time": "Time of trial failure, if the trial was unsuccessful",
        "fix_on_time": "Time when the fixation cue on the display turns on",
        "fix_time": "Time when the animal fixates on the fixation cue",
        "fix_time_dur": "Time between animal fixation and target onset, in ms",
        "go_time": "Time of monkey response, either with an eye saccade or joystick movement",
        "is_eye": "Whether motion to target was with hand (False) or eye (True)",
        "is_outlier": "Whether a trial's tp is considered an outlier using probabilistic "
        "mixture model",
        "is_short": "Whether short prior (True) or long prior (False)",
        "iti": "Inter-trial interval, in ms",
        "ready_time": "Time of ready cue delivery",
        "reward_dur": "Duration of reward, in ms",
        "reward_time": "Time of monkey reward, if there was one",
        "set_time": "Time of set cue presentation",
        "target_acq_time": "Time of target acquisition",
        "target_on_time": "Time of target presentation",
        "target_time_dur": "Time between target onset and ready, in ms",
        "theta": "Whether the target was on the right (0) or left (180)",
        "tp": "Time between set stimulus and monkey go response, in ms",
        "ts": "Time between ready and set stimuli, in ms",
    }
    columns: dict[str, tuple[str, Any]] = {}
    for name, values in cols.items():
        dtype = bool if name.startswith("is_") else np.float64
        columns[name] = (descriptions[name], np.asarray(values, dtype=dtype))
    columns["split"] = (SPLIT_DESCRIPTION, _split_labels(rng, len(starts)))
    _add_trials(nwb, starts_a, stops_a, dict(sorted(columns.items())), ftruth)
    ftruth.quirks["outlier_trials"] = sorted(outliers)
    ftruth.quirks["no_electrodes_column"] = True
    write_nwb(folder / rel, nwb)
    set_column_dtype(folder / rel, "units/id", np.int32)
    truth.files[rel] = ftruth

    t_starts = np.concatenate([_ms(b[1] + 0.5 + 3.0 * np.arange(1)) for b in seg_bounds[:-1]])
    rel_test = "sub-Haydn/sub-Haydn_desc-test_ecephys.nwb"
    nwb = nwbfile("test")
    units = Units(
        baseline[: n_units - n_heldout],
        np.zeros(n_units - n_heldout),
        np.zeros((n_units - n_heldout, 2)),
    )
    truth.files[rel_test] = _test_file(
        folder / rel_test,
        nwb,
        rng,
        units,
        n_units - n_heldout,
        t_starts,
        _ms(t_starts + 2.8),
        {"go_time": (descriptions["go_time"], _ms(t_starts + 2.4))},
        None,
        rel_test,
    )
    set_column_dtype(folder / rel_test, "units/id", np.int32)
    return truth
