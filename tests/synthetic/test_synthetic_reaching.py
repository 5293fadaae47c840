"""Tests of neurofm.synthetic.reaching: DANDI layout, NWB content, ground truth."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from neurofm.errors import InvalidDataError
from neurofm.synthetic import (
    SessionInfo,
    generate_reaching_dataset,
    simulate_session,
    write_session_nwb,
)

SEED = 7
SMALL = {"n_trials": 12, "n_units_range": (50, 60)}
NWB_NAME = re.compile(r"^sub-([A-Za-z0-9]+)_ses-([A-Za-z0-9]+)_ecephys\.nwb$")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, list[SessionInfo]]:
    out = tmp_path_factory.mktemp("reaching")
    infos = generate_reaching_dataset(
        out, n_subjects=2, n_sessions=2, seed=SEED, progress=False, **SMALL
    )
    return out, infos


def _truth(out: Path, info: SessionInfo) -> dict:
    path = out / "ground_truth" / f"sub-{info.subject_id}_ses-{info.session_id}.json"
    return json.loads(path.read_text())


def _read_nwb(path: Path) -> dict:
    """The parts of an NWB file the tests look at, as plain Python/numpy values."""
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), mode="r") as io:
        nwb = io.read()
        units = nwb.units
        index = units["spike_times"]  # a VectorIndex: cumulative counts into the flat times
        ends = np.asarray(index.data[:])
        flat = np.asarray(index.target.data[:])
        starts = np.concatenate([[0], ends[:-1]])
        behavior = nwb.processing["behavior"]
        hand_pos = behavior["Position"]["hand_pos"]
        hand_vel = behavior["hand_vel"]
        cursor = behavior["cursor_pos"]
        electrodes = nwb.electrodes.to_dataframe()
        return {
            "spike_times": [flat[a:b] for a, b in zip(starts, ends, strict=True)],
            "resolution": units.resolution,
            "obs_intervals": [np.asarray(x) for x in units["obs_intervals"][:]],
            "unit_electrodes": np.asarray(units["electrodes"].target.data[:]),
            "electrode_location": electrodes["location"].to_numpy(),
            "electrode_group": electrodes["group_name"].to_numpy(),
            "hand_pos": np.asarray(hand_pos.data[:]),
            "hand_pos_rate": hand_pos.rate,
            "hand_pos_start": hand_pos.starting_time,
            "hand_pos_unit": hand_pos.unit,
            "hand_vel": np.asarray(hand_vel.data[:]),
            "hand_vel_rate": hand_vel.rate,
            "cursor_pos": np.asarray(cursor.data[:]),
            "cursor_timestamps": np.asarray(cursor.timestamps[:]),
            "cursor_rate": cursor.rate,
            "trials": nwb.trials.to_dataframe(),
            "subject": {
                "subject_id": nwb.subject.subject_id,
                "species": nwb.subject.species,
                "sex": nwb.subject.sex,
                "age": nwb.subject.age,
            },
            "session_id": nwb.session_id,
            "identifier": nwb.identifier,
            "session_start_time": nwb.session_start_time,
            "experimenter": list(nwb.experimenter),
        }


@pytest.fixture(scope="module")
def first(dataset) -> tuple[dict, dict]:
    out, infos = dataset
    return _read_nwb(infos[0].path), _truth(out, infos[0])


def test_dandi_layout(dataset):
    out, infos = dataset
    assert len(infos) == 4
    assert [i.subject_id for i in infos] == ["S0", "S0", "S1", "S1"]
    meta = yaml.safe_load((out / "dandiset.yaml").read_text())
    assert re.fullmatch(r"DANDI:\d{6}", meta["identifier"])
    assert meta["license"] == ["spdx:CC-BY-4.0"]
    assert meta["name"] and meta["description"] and meta["contributor"]
    summary = json.loads((out / "ground_truth" / "summary.json").read_text())
    assert summary["seed"] == SEED
    assert len(summary["sessions"]) == len(infos)
    for info, entry in zip(infos, summary["sessions"], strict=True):
        assert isinstance(info, SessionInfo)
        assert info.path.is_file()
        assert info.path.parent == out / f"sub-{info.subject_id}"
        match = NWB_NAME.match(info.path.name)
        assert match and match.groups() == (info.subject_id, info.session_id)
        assert (out / entry["path"]) == info.path
        assert (out / entry["ground_truth"]).is_file()
        assert (entry["n_units"], entry["n_spikes"]) == (info.n_units, info.n_spikes)
        assert 50 <= info.n_units <= 60
        assert info.duration > 12 * 2.0
    # sessions of one subject are distinct recordings
    assert len({(i.subject_id, i.session_id) for i in infos}) == len(infos)
    # nothing half-written or hidden is left behind
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def test_deterministic_for_a_seed(dataset, tmp_path):
    out, infos = dataset
    # a session depends on its seed and indices only, not on how many sessions are generated
    again = generate_reaching_dataset(
        tmp_path, n_subjects=1, n_sessions=2, seed=SEED, progress=False, **SMALL
    )
    assert [(i.n_units, i.n_spikes) for i in again] == [(i.n_units, i.n_spikes) for i in infos[:2]]
    a, b = _read_nwb(infos[0].path), _read_nwb(again[0].path)
    assert all(
        np.array_equal(x, y) for x, y in zip(a["spike_times"], b["spike_times"], strict=True)
    )
    np.testing.assert_array_equal(a["hand_pos"], b["hand_pos"])
    assert a["identifier"] == b["identifier"]
    # in memory: the same session as the file; another seed gives another session
    session = simulate_session(SEED, 0, 0, **SMALL)
    assert session.spike_counts.tolist() == _truth(out, infos[0])["spike_counts"]
    other = simulate_session(SEED + 1, 0, 0, **SMALL)
    assert (other.n_units, other.n_spikes) != (session.n_units, session.n_spikes)
    assert other.identifier != session.identifier


def test_spike_counts_match_ground_truth(dataset):
    out, infos = dataset
    for info in infos:
        data, truth = _read_nwb(info.path), _truth(out, info)
        counts = [len(s) for s in data["spike_times"]]
        assert counts == truth["spike_counts"] == [u["n_spikes"] for u in truth["units"]]
        assert sum(counts) == info.n_spikes == truth["n_spikes"]
        assert min(counts) > 0
        assert [u["index"] for u in truth["units"]] == list(range(info.n_units))


def test_spikes_sorted_refractory_and_on_the_clock(first):
    data, truth = first
    assert data["resolution"] == pytest.approx(1 / 30000)
    for spikes in data["spike_times"]:
        ticks = spikes * 30000
        np.testing.assert_allclose(ticks, np.round(ticks), atol=1e-6)
        # no inter-spike interval below the 2 ms dead time (60 ticks of the 30 kHz clock)
        assert np.all(np.diff(np.round(ticks).astype(np.int64)) >= 60)
        assert spikes[0] >= 0 and spikes[-1] <= truth["duration"]


def test_behaviour_series(first):
    data, truth = first
    rate = data["hand_pos_rate"]
    assert rate == data["hand_vel_rate"] == 200.0
    assert data["hand_pos_start"] == 0.0
    assert data["hand_pos_unit"] == "meters"
    pos, vel = data["hand_pos"], data["hand_vel"]
    assert pos.shape == vel.shape and pos.shape[1] == 2
    assert (len(pos) - 1) / rate == pytest.approx(truth["duration"], abs=1 / rate)
    # hand_vel is the derivative of hand_pos
    peak = np.hypot(vel[:, 0], vel[:, 1]).max()
    assert 0.15 < peak < 0.6
    assert np.abs(np.gradient(pos, 1 / rate, axis=0) - vel).max() < 0.01 * peak
    # the cursor is an irregular series close to the hand
    ts = data["cursor_timestamps"]
    assert data["cursor_rate"] is None
    steps = np.diff(ts)
    assert np.all(steps > 0) and 0.014 < steps.mean() < 0.019 and steps.std() > 5e-4
    hand_at_frames = np.stack(
        [np.interp(ts, np.arange(len(pos)) / rate, pos[:, c]) for c in (0, 1)]
    )
    assert np.abs(hand_at_frames.T - data["cursor_pos"]).max() < 0.005


def test_trials_and_movement(first):
    data, truth = first
    trials = data["trials"]
    assert len(trials) == truth["n_trials"] == 12
    expected = {
        "start_time",
        "stop_time",
        "target_x",
        "target_y",
        "target_dir",
        "go_cue_time",
        "move_onset_time",
        "is_success",
        "split",
    }
    assert expected <= set(trials.columns)
    assert set(trials["split"]) == {"train", "valid", "test"}
    assert trials["is_success"].dtype == bool
    assert np.all(trials["start_time"] < trials["go_cue_time"])
    assert np.all(trials["stop_time"].to_numpy()[:-1] < trials["start_time"].to_numpy()[1:])
    reaction = trials["move_onset_time"] - trials["go_cue_time"]
    assert reaction.between(0.25, 0.40).all()
    radius = np.hypot(trials["target_x"], trials["target_y"])
    np.testing.assert_allclose(radius, 0.08)
    angle = np.mod(np.arctan2(trials["target_y"], trials["target_x"]), 2 * np.pi)
    np.testing.assert_allclose(np.angle(np.exp(1j * (angle - trials["target_dir"]))), 0, atol=1e-9)
    # movement onset comes before the speed peak, and the hand is still at onset
    t = np.arange(len(data["hand_vel"])) / data["hand_vel_rate"]
    speed = np.hypot(data["hand_vel"][:, 0], data["hand_vel"][:, 1])
    for onset, stop in zip(trials["move_onset_time"], trials["stop_time"], strict=True):
        window = (t >= onset) & (t <= stop)
        t_peak = t[window][np.argmax(speed[window])]
        assert onset + 0.1 < t_peak < onset + 0.5
        assert speed[np.searchsorted(t, onset)] < 0.05
        assert speed[window].max() > 0.1


def test_units_metadata(dataset, first):
    data, truth = first
    duration = truth["duration"]
    for obs in data["obs_intervals"]:
        np.testing.assert_allclose(obs, [[0.0, duration]])
    assert set(data["electrode_location"]) <= {"M1", "PMd"}
    # units sit on the ground-truth electrode, in the ground-truth area
    electrodes = data["unit_electrodes"]
    assert electrodes.tolist() == [u["electrode"] for u in truth["units"]]
    areas = data["electrode_location"][electrodes]
    assert areas.tolist() == [u["area"] for u in truth["units"]]
    assert data["subject"]["subject_id"] == "S0"
    assert data["subject"]["species"] == "Macaca mulatta"
    assert data["subject"]["sex"] in {"M", "F"}
    assert re.fullmatch(r"P\d+Y", data["subject"]["age"])
    assert data["session_id"] == truth["session_id"]
    assert data["identifier"] == truth["identifier"]
    assert data["session_start_time"].tzinfo is not None
    assert data["experimenter"]


def test_preferred_directions_recoverable(first):
    data, truth = first
    trials = data["trials"]
    theta = trials["target_dir"].to_numpy()
    onset = trials["move_onset_time"].to_numpy()
    # spikes from 100 ms before to 400 ms after movement onset (activity leads movement)
    counts = np.array(
        [
            np.searchsorted(s, onset + 0.4) - np.searchsorted(s, onset - 0.1)
            for s in data["spike_times"]
        ]
    )  # (units, trials)
    design = np.stack([np.ones_like(theta), np.cos(theta), np.sin(theta)], axis=1)
    beta = np.linalg.lstsq(design, counts.T, rcond=None)[0]
    pd_est = np.arctan2(beta[2], beta[1])
    pd_true = np.array([u["preferred_direction"] for u in truth["units"]])
    gain = np.array([u["gain"] for u in truth["units"]])
    tuned = np.array([u["tuned"] for u in truth["units"]])
    error = np.abs(np.angle(np.exp(1j * (pd_est - pd_true))))
    strong = tuned & (gain > 15.0)
    assert strong.sum() >= 5
    assert error[strong].mean() < 0.35
    # firing correlates with cos(target_dir - pd) for tuned units, not for untuned ones
    corr = np.array(
        [np.corrcoef(c, np.cos(theta - p))[0, 1] for c, p in zip(counts, pd_true, strict=True)]
    )
    assert np.nanmean(corr[strong]) > 0.6
    if (~tuned).sum() >= 3:
        assert np.nanmean(corr[~tuned]) < 0.4


def test_drift_and_populations_across_sessions(dataset):
    out, infos = dataset
    first, second = _truth(out, infos[0]), _truth(out, infos[1])
    assert first["drift"]["session_index"] == 0 and first["drift"]["global_rotation"] == 0.0
    assert all(u["drift_pd_shift"] == 0.0 for u in first["units"])
    shifts = np.array([u["drift_pd_shift"] for u in second["units"]])
    assert np.all(shifts != 0.0) and np.abs(shifts).max() < 0.5
    for u in second["units"]:
        wrapped = np.angle(np.exp(1j * (u["preferred_direction_pool"] + u["drift_pd_shift"])))
        assert u["preferred_direction"] == pytest.approx(wrapped)
    # both sessions sample the same subject pool, but not the same neurons in the same order
    pool_a = [u["pool_index"] for u in first["units"]]
    pool_b = [u["pool_index"] for u in second["units"]]
    assert set(pool_a) & set(pool_b) and pool_a != pool_b
    shared = set(pool_a) & set(pool_b)
    for p in list(shared)[:5]:
        ua = next(u for u in first["units"] if u["pool_index"] == p)
        ub = next(u for u in second["units"] if u["pool_index"] == p)
        assert ua["lag"] == ub["lag"] and ua["tuned"] == ub["tuned"]
        assert ub["gain"] == pytest.approx(ua["gain"] * ub["drift_gain_scale"])


def test_rates_match_spike_counts():
    # the dead-time compensation keeps the spike rate equal to the ground-truth rate
    session = simulate_session(SEED, 1, 0, return_rates=True, **SMALL)
    assert session.rates is not None and session.rates.shape[0] == session.n_units
    expected = session.rates.sum(axis=1) * session.rate_dt
    counts = session.spike_counts
    assert counts.sum() == pytest.approx(expected.sum(), rel=0.03)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected) + 5)
    assert 20.0 < np.percentile(session.rates, 99.9) < 100.0


def test_nwbinspector_finds_no_problems(first, dataset):
    from nwbinspector import inspect_nwbfile

    _, infos = dataset
    messages = list(inspect_nwbfile(nwbfile_path=str(infos[0].path)))
    serious = [
        f"{m.importance.name} {m.check_function_name} at {m.location}: {m.message}"
        for m in messages
        if m.importance.name in ("CRITICAL", "BEST_PRACTICE_VIOLATION", "PYNWB_VALIDATION")
    ]
    assert not serious, "\n".join(serious)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    import pynwb

    session = simulate_session(SEED, 0, 0, **SMALL)

    def broken_write(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pynwb.NWBHDF5IO, "write", broken_write)
    target = tmp_path / "sub-S0" / "sub-S0_ses-1_ecephys.nwb"
    with pytest.raises(OSError, match="disk full"):
        write_session_nwb(target, session)
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": -1},
        {"n_trials": 0},
        {"n_units_range": (10, 5)},
        {"n_units_range": (0, 5)},
        {"behavior_rate": 50.0},
        {"session_index": -1},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(InvalidDataError):
        simulate_session(**kwargs)


def test_same_seed_gives_byte_identical_files(tmp_path):
    """Reproducible checksums: a re-generated dandiset is recognised as unchanged."""
    kwargs = dict(n_subjects=1, n_sessions=1, n_trials=4, n_units_range=(50, 51), progress=False)
    a = generate_reaching_dataset(tmp_path / "a", seed=3, **kwargs)[0].path
    b = generate_reaching_dataset(tmp_path / "b", seed=3, **kwargs)[0].path
    assert a.read_bytes() == b.read_bytes()


def test_corpus_knobs_turnover_and_drift():
    """pool_factor (unit turnover) and drift_scale: defaults are the historical sessions, bit
    for bit; more turnover shares fewer neurons; drift_scale scales the drift, 0 removes it."""
    tiny = {"n_trials": 4, "n_units_range": (20, 24)}
    default = simulate_session(SEED, 0, 2, **tiny)
    # digest of this session as generated before the knobs existed (neurofm 0.1.0)
    digest = hashlib.sha256(
        np.concatenate(default.spike_times).tobytes() + default.hand_vel.tobytes()
    ).hexdigest()
    assert digest[:16] == "ec3e4d720993798f"
    assert "pool_factor" not in default.params and "drift_scale" not in default.params

    def shared(**knobs) -> float:
        a, b = (simulate_session(SEED, 0, k, **knobs, **tiny) for k in (0, 1))
        pa, pb = set(a.units["pool_index"]), set(b.units["pool_index"])
        return len(pa & pb) / min(len(pa), len(pb))

    assert shared(pool_factor=4.0) < shared(pool_factor=1.0)
    wide = simulate_session(SEED, 0, 1, pool_factor=4.0, **tiny)
    assert wide.units["pool_index"].max() >= 24 and wide.params["pool_factor"] == 4.0
    still = simulate_session(SEED, 0, 3, drift_scale=0.0, **tiny)
    assert np.allclose(still.units["pd_shift"], 0.0) and np.allclose(still.units["gain_scale"], 1)
    doubled = simulate_session(SEED, 0, 3, drift_scale=2.0, **tiny)
    base = simulate_session(SEED, 0, 3, **tiny)
    assert doubled.drift["global_rotation"] == pytest.approx(2 * base.drift["global_rotation"])
    for bad in ({"pool_factor": 0.5}, {"drift_scale": -1.0}, {"pool_factor": float("nan")}):
        name = next(iter(bad))
        with pytest.raises(InvalidDataError, match=f"{name}: expected a finite number"):
            simulate_session(SEED, 0, 0, **bad, **tiny)
