"""The dandiset replicas themselves (``neurofm.testing.replicas``): the layout of the real files
and their quirks, checked with pynwb and h5py (never with neurofm's reader), their ground
truth, their size and determinism, their serving under the card's dandiset id; and, where an
environment with nlb_tools is available, the official NLB reader on the NLB replicas.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from neurofm.specs import load_card
from neurofm.testing.replicas import NWB_REPLICAS, build_replica, serve_replicas

REPO = Path(__file__).resolve().parents[2]
NLB = ["mc_maze", "mc_maze_large", "mc_maze_medium", "mc_maze_small", "mc_rtt", "area2_bump"]
NLB += ["dmfc_rsg"]

#: The asset paths of each dandiset (DANDI structure listings and public code).
ASSETS = {
    "mc_maze": [
        "sub-Jenkins/sub-Jenkins_ses-full_desc-test_ecephys.nwb",
        "sub-Jenkins/sub-Jenkins_ses-full_desc-train_behavior+ecephys.nwb",
    ],
    "mc_maze_large": [
        "sub-Jenkins/sub-Jenkins_ses-large_desc-test_ecephys.nwb",
        "sub-Jenkins/sub-Jenkins_ses-large_desc-train_behavior+ecephys.nwb",
    ],
    "mc_maze_medium": [
        "sub-Jenkins/sub-Jenkins_ses-medium_desc-test_ecephys.nwb",
        "sub-Jenkins/sub-Jenkins_ses-medium_desc-train_behavior+ecephys.nwb",
    ],
    "mc_maze_small": [
        "sub-Jenkins/sub-Jenkins_ses-small_desc-test_ecephys.nwb",
        "sub-Jenkins/sub-Jenkins_ses-small_desc-train_behavior+ecephys.nwb",
    ],
    "mc_rtt": [
        "sub-Indy/sub-Indy_desc-test_ecephys.nwb",
        "sub-Indy/sub-Indy_desc-train_behavior+ecephys.nwb",
    ],
    "area2_bump": [
        "sub-Han/sub-Han_desc-test_ecephys.nwb",
        "sub-Han/sub-Han_desc-train_behavior+ecephys.nwb",
    ],
    "dmfc_rsg": [
        "sub-Haydn/sub-Haydn_desc-test_ecephys.nwb",
        "sub-Haydn/sub-Haydn_desc-train_ecephys.nwb",
    ],
    "churchland_2012": [
        "sub-Jenkins/sub-Jenkins_ses-20090912_behavior+ecephys.nwb",
        "sub-Nitschke/sub-Nitschke_ses-20090910_behavior+ecephys.nwb",
    ],
    "perich_miller_2018": [
        "sub-C/sub-C_ses-CO-20131003_behavior+ecephys.nwb",
        "sub-C/sub-C_ses-RT-20131009_behavior+ecephys.nwb",
        "sub-M/sub-M_ses-CO-20150610_behavior+ecephys.nwb",
    ],
}


def _read(path: Path):
    from pynwb import NWBHDF5IO

    io = NWBHDF5IO(str(path), "r")
    return io, io.read()


def _spike_trains(nwb) -> list[np.ndarray]:
    units = nwb.units
    return [np.asarray(units["spike_times"][i]) for i in range(len(units.id))]


def test_every_public_nwb_card_has_a_replica():
    cards = {p.stem: load_card(p) for p in (REPO / "datasets").glob("*.yaml")}
    public = {n for n, c in cards.items() if c.source.dandi and c.source.dandi != "000000"}
    assert public == set(NWB_REPLICAS) == set(ASSETS)


@pytest.mark.parametrize("name", sorted(NWB_REPLICAS))
def test_replica_matches_its_truth_and_layout(name, replica):
    truth = replica(name)
    card = load_card(REPO / "datasets" / f"{name}.yaml")
    assert truth.dandiset_id == card.source.dandi
    assert sorted(truth.files) == ASSETS[name]
    on_disk = sorted(p.relative_to(truth.folder).as_posix() for p in truth.folder.rglob("*.nwb"))
    assert on_disk == ASSETS[name]
    for rel, f in truth.files.items():
        path = truth.folder / rel
        assert path.stat().st_size < 4_000_000, f"{rel}: a replica file is a few MB at most"
        io, nwb = _read(path)
        try:
            trains = _spike_trains(nwb)
            assert {str(i): len(t) for i, t in zip(nwb.units.id[:], trains, strict=True)} == (
                f.unit_spikes
            )
            assert len(nwb.trials) == f.n_trials
            np.testing.assert_array_equal(nwb.trials["start_time"][:], f.trials["start_time"])
            behaviour = {}
            for module in nwb.processing.values():
                for obj in module.data_interfaces.values():
                    inner = getattr(obj, "spatial_series", None) or getattr(
                        obj, "time_series", None
                    )
                    for ts in inner.values() if isinstance(inner, dict) else [obj]:
                        if ts.neurodata_type in ("TimeSeries", "SpatialSeries"):
                            behaviour[ts.name] = len(ts.data)
            assert behaviour == f.behaviour
            if f.test_only:  # NLB test files: spikes and test trials only
                assert not nwb.processing
                assert set(nwb.trials["split"][:]) == {"test"}
                assert not nwb.units["heldout"][:].any()
            # every spike of an NLB file lies in its unit's observation intervals
            if "obs_intervals" in nwb.units.colnames:
                for i, train in enumerate(trains):
                    obs = np.asarray(nwb.units["obs_intervals"][i])
                    inside = ((train[:, None] >= obs[:, 0]) & (train[:, None] < obs[:, 1])).any(1)
                    assert inside.all(), (rel, i)
        finally:
            io.close()


def test_replicas_are_deterministic_per_seed(tmp_path):
    a = build_replica("dmfc_rsg", tmp_path / "a", seed=3)
    b = build_replica("dmfc_rsg", tmp_path / "b", seed=3)
    c = build_replica("dmfc_rsg", tmp_path / "c", seed=4)
    for rel in a.files:
        assert a.files[rel].unit_spikes == b.files[rel].unit_spikes
        for key, values in a.files[rel].trials.items():
            np.testing.assert_array_equal(values, b.files[rel].trials[key])
        io1, n1 = _read(a.folder / rel)
        io2, n2 = _read(b.folder / rel)
        try:
            for t1, t2 in zip(_spike_trains(n1), _spike_trains(n2), strict=True):
                np.testing.assert_array_equal(t1, t2)
        finally:
            io1.close()
            io2.close()
    rel = "sub-Haydn/sub-Haydn_desc-train_ecephys.nwb"
    assert a.files[rel].unit_spikes != c.files[rel].unit_spikes


# --------------------------------------------------------------------------------------------
# the quirks, one dandiset at a time
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mc_maze", "mc_maze_small"])
def test_maze_quirks(name, replica):
    truth = replica(name)
    rel = next(p for p in truth.files if "desc-train" in p)
    with h5py.File(truth.folder / rel, "r") as f:
        vel = f["processing/behavior/hand_vel"]
        assert vel["data"].attrs["conversion"] == pytest.approx(0.001)  # mm/s stored, m/s unit
        assert vel["data"].attrs["unit"] == "m/s"
        t = vel["timestamps"][()]
        steps = np.diff(t)
        assert np.allclose(steps[steps < 0.0015], 0.001)
        gaps = steps[steps > 0.0015]  # samples missing between trials, not NaN
        assert len(gaps) == len(f["intervals/trials/start_time"]) - 1
        assert not np.isnan(vel["data"][()]).any()
        trials = f["intervals/trials"]
        assert trials["success"].dtype == bool and trials["success"][()].all()
        assert "barrier_pos_index" in trials and "target_pos_index" in trials
        assert set(trials["split"].asstr()[()]) == {"train", "val"}
        assert f["units/heldout"].dtype == bool and f["units/heldout"][()].any()
        assert "electrodes_index" in f["units"]
    assert truth.files[rel].quirks["missing_samples_between_trials"] > 0


def test_rtt_quirks(replica):
    truth = replica("mc_rtt")
    rel = "sub-Indy/sub-Indy_desc-train_behavior+ecephys.nwb"
    ftruth = truth.files[rel]
    with h5py.File(truth.folder / rel, "r") as f:
        start = f["intervals/trials/start_time"][()]
        stop = f["intervals/trials/stop_time"][()]
        late = np.flatnonzero(stop[:-1] > start[1:])
        assert (
            late.size
            and [[int(i), int(i) + 1] for i in late] == ftruth.quirks["float_noise_overlaps"]
        )
        assert (stop[late] - start[late + 1]).max() < 1e-9  # float noise, not a real overlap
        vel = f["processing/behavior/finger_vel"]
        assert "timestamps" not in vel and vel["starting_time"].attrs["rate"] == 1000.0
        data = vel["data"][()]
        t = np.arange(len(data)) / 1000.0
        nan = np.isnan(data).any(axis=1)
        in_gap = np.zeros(len(t), bool)
        for a, b in ftruth.quirks["nan_gaps"]:
            in_gap |= (t >= a - 1e-9) & (t < b - 1e-9)
        np.testing.assert_array_equal(nan, in_gap)  # NaN exactly where data was removed
        assert nan.sum() == ftruth.nan_samples["finger_vel"] > 0
        assert f["processing/behavior/finger_pos/data"].shape[1] == 3


def test_area2_quirks(replica):
    truth = replica("area2_bump")
    rel = "sub-Han/sub-Han_desc-train_behavior+ecephys.nwb"
    with h5py.File(truth.folder / rel, "r") as f:
        trials = f["intervals/trials"]
        result = trials["result"].asstr()[()]
        assert set(result) == {"R", "A", "I", "F"}  # strings: all truthy
        assert trials["ctr_hold_bump"].dtype == bool
        bump = trials["ctr_hold_bump"][()]
        assert np.isnan(trials["bump_time"][()][~bump]).all()
        assert np.isfinite(trials["bump_time"][()][bump]).all()
        assert (trials["split"].asstr()[()][result != "R"] == "none").all()
        for name in ("force", "joint_ang", "joint_vel", "muscle_len", "muscle_vel", "hand_vel"):
            assert f[f"processing/behavior/{name}"].attrs["neurodata_type"] == "TimeSeries"
        assert f["processing/behavior/hand_pos"].attrs["neurodata_type"] == "SpatialSeries"


def test_dmfc_quirks(replica):
    truth = replica("dmfc_rsg")
    for rel in truth.files:
        with h5py.File(truth.folder / rel, "r") as f:
            assert "processing" not in f or not len(f["processing"])  # no behaviour at all
            assert (
                "electrodes" not in f["units"] and "electrodes" in f["general/extracellular_ephys"]
            )
            assert f["units/id"].dtype == np.int32
    rel = "sub-Haydn/sub-Haydn_desc-train_ecephys.nwb"
    with h5py.File(truth.folder / rel, "r") as f:
        trials = f["intervals/trials"]
        for name in ("is_eye", "is_short", "is_outlier"):
            assert trials[name].dtype == bool
        outlier = trials["is_outlier"][()]
        assert sorted(np.flatnonzero(outlier)) == truth.files[rel].quirks["outlier_trials"]
        ts, tp = trials["ts"][()], trials["tp"][()]
        assert ts.min() >= 480 and ts.max() <= 1200  # ms
        set_t, ready, go = (trials[k][()] for k in ("set_time", "ready_time", "go_time"))
        np.testing.assert_allclose((set_t - ready) * 1000, ts, atol=1.5)
        np.testing.assert_allclose((go - set_t) * 1000, tp, atol=1.5)
        assert set(trials["theta"][()]) <= {0.0, 180.0}


def test_churchland_quirks(replica):
    truth = replica("churchland_2012")
    clean = "sub-Jenkins/sub-Jenkins_ses-20090912_behavior+ecephys.nwb"
    faulty = "sub-Nitschke/sub-Nitschke_ses-20090910_behavior+ecephys.nwb"
    for rel in (clean, faulty):
        with h5py.File(truth.folder / rel, "r") as f:
            trials = f["intervals/trials"]
            for name in ("task_success", "discard_trial", "correct_reach", "novel_maze"):
                assert trials[name].dtype == np.uint8
            assert trials["hit_target_position"].shape[1:] == (2,)
            assert "timeseries_index" in trials and "barrier_info_index" in trials
            assert set(f["processing/behavior/Position"]) == {"Cursor", "Eye", "Hand"}
            assert (
                f["processing/ecephys/Processed/A001"].attrs["neurodata_type"] == "ElectricalSeries"
            )
            assert "electrode_group" in f["units"] and "obs_intervals" in f["units"]
    io, nwb = _read(truth.folder / faulty)
    try:
        unsorted = [str(i) for i, t in enumerate(_spike_trains(nwb)) if (np.diff(t) < 0).any()]
        start = nwb.trials["start_time"][:]
        stop = nwb.trials["stop_time"][:]
        overlaps = [[i, i + 1] for i in np.flatnonzero(stop[:-1] > start[1:] + 0.01).tolist()]
        t = nwb.processing["behavior"]["Position"]["Cursor"].timestamps[:]
    finally:
        io.close()
    assert unsorted == truth.files[faulty].quirks["unsorted_units"] == ["3", "11"]
    assert overlaps == truth.files[faulty].quirks["overlapping_trials"]
    assert (np.diff(t) > 0).all()  # the behaviour clock stays monotonic (see the module notes)
    assert not truth.files[clean].quirks


def test_perich_quirks(replica):
    truth = replica("perich_miller_2018")
    for rel in truth.files:
        with h5py.File(truth.folder / rel, "r") as f:
            units = f["units"]
            assert "waveforms_index_index" in units and "obs_intervals" not in units
            assert units["waveforms"].shape[1:] == (1,) and units["waveforms"].dtype == np.int16
            assert len(units["waveforms_index"]) == len(units["spike_times"])
            behavior = f["processing/behavior"]
            assert set(behavior) == {"Acceleration", "Position", "Velocity"}
            assert "cursor_vel" in behavior["Velocity"]
            trials = f["intervals/trials"]
            assert set(trials["result"].asstr()[()]) <= {"R", "A", "F", "I"}
            if "_ses-RT-" in rel:
                assert trials["go_cue_time_array"].shape[1:] == (4,)
                assert trials["num_targets"].dtype == np.uint8
            else:
                assert trials["target_corners"].shape[1:] == (4,)
            electrodes = f["general/extracellular_ephys/electrodes"]
            assert {"bank", "label", "pin"} <= set(electrodes) and "x" not in electrodes


def test_replicas_are_served_under_their_dandiset_and_version(replica, monkeypatch):
    from neurofm.sources import dandi

    monkeypatch.setenv("DANDI_NO_ET", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    truths = [replica("mc_rtt"), replica("churchland_2012")]
    with serve_replicas(truths) as server:
        for truth in truths:
            card = load_card(REPO / "datasets" / f"{truth.card}.yaml")
            resolved = dandi.resolve(card.source.ref, server.api_url)
            assert resolved.version == (card.source.version or "draft")
            listed = sorted(a.path for a in dandi.list_assets(resolved, card.source.include))
            assert listed == sorted(f.path for f in truth.selected(card.source.include))
            assert all("desc-test" not in p for p in listed)


# --------------------------------------------------------------------------------------------
# the official NLB reader
# --------------------------------------------------------------------------------------------


def _nlb_python() -> str | None:
    """A Python with nlb_tools: $NEUROFM_NLB_PYTHON, else the benchmark venv if it has it."""
    candidates = [os.environ.get("NEUROFM_NLB_PYTHON", ""), str(REPO / ".venv-bench/bin/python")]
    for python in filter(None, candidates):
        if Path(python).is_file():
            probe = subprocess.run([python, "-c", "import nlb_tools"], capture_output=True)
            if probe.returncode == 0:
                return python
    return None


def test_the_official_nlb_reader_reads_the_nlb_replicas(replica):
    python = _nlb_python()
    if python is None:
        pytest.skip(
            "nlb_tools is not installed: set NEUROFM_NLB_PYTHON to a Python with "
            "`pip install --no-deps nlb-tools==0.0.4` (and numpy, pandas, scipy, h5py, pynwb)"
        )
    args = []
    for name in NLB:
        truth = replica(name)
        train = next(p for p in truth.files if "desc-train" in p)
        args += [name, str(truth.folder / train)]
    script = Path(__file__).with_name("nlb_reader_check.py")
    proc = subprocess.run([python, str(script), *args], capture_output=True, text=True)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert [d["dataset"] for d in lines] == NLB
    for d in lines:
        truth = replica(d["dataset"])
        train = next(f for f in truth.files.values() if not f.test_only)
        n_train = train.split_counts["train"]
        heldout = d["train"]["train_spikes_heldout"][2]
        assert d["train"]["train_spikes_heldin"][0] == n_train
        assert d["train"]["train_spikes_heldin"][2] + heldout == train.n_units
        assert d["eval"]["eval_spikes_heldin"][0] == train.split_counts["val"]
        assert d["train"]["train_behavior"][0] == n_train
    assert sys.version_info >= (3, 10)
