"""Block-wise merge of per-unit spike trains, in memory and streamed to HDF5."""

from __future__ import annotations

import gc

import h5py
import numpy as np
import pytest

from neurofm.data import Recording, Spikes, Units
from neurofm.data.merge import (
    RaggedSpikeTrains,
    merge_spike_trains,
    stage_spike_trains,
    write_spikes_streaming,
)
from neurofm.data.storage import LazySpikes, write_units
from neurofm.errors import InvalidDataError


def ragged(seed: int = 0, n_units: int = 30, duration: float = 40.0):
    rng = np.random.default_rng(seed)
    # Uneven rates (a few very active units, one silent) stress the block planning.
    rates = np.concatenate([rng.uniform(1, 20, n_units - 3), [200.0, 150.0, 0.0]])
    trains = [np.sort(rng.uniform(0, duration, rng.poisson(r * duration))) for r in rates]
    trains[0][:5] = 3.0  # identical times inside a unit and across units (ties)
    trains[1][:3] = 3.0
    trains = [np.sort(t) for t in trains]
    ends = np.cumsum([len(t) for t in trains])
    return trains, np.concatenate(trains), ends


def reference(trains):
    times = np.concatenate(trains)
    units = np.repeat(np.arange(len(trains)), [len(t) for t in trains])
    order = np.argsort(times, kind="stable")
    return times[order], units[order]


@pytest.mark.parametrize("block_spikes", [50, 997, 10**9])
def test_blocks_equal_a_global_stable_sort(block_spikes):
    trains, flat, ends = ragged()
    rt = RaggedSpikeTrains(flat, ends, "x.nwb: units.spike_times", [str(i) for i in range(30)])
    plan = rt.scan(block_spikes)
    blocks = list(rt.blocks(plan))
    times = np.concatenate([b[0] for b in blocks])
    units = np.concatenate([b[1] for b in blocks])
    ref_t, ref_u = reference(trains)
    np.testing.assert_array_equal(times, ref_t)
    np.testing.assert_array_equal(units, ref_u)
    if block_spikes == 997:
        assert len(blocks) > 5
        # blocks stay near the target size even with very uneven firing
        assert max(len(b[0]) for b in blocks) < 3 * block_spikes


def test_streamed_group_equals_eagerly_written_group(tmp_path):
    trains, flat, ends = ragged(seed=3)
    ids = [f"u{i}" for i in range(30)]
    ref_t, ref_u = reference(trains)
    Recording("r", {"spikes": Spikes(ref_t, ref_u, ids)}).save(tmp_path / "eager.h5")

    rt = RaggedSpikeTrains(flat, ends, "x", ids)
    plan = rt.scan(500)
    with h5py.File(tmp_path / "stream.h5", "w") as f:
        group = f.create_group("spikes")
        eager = Spikes(ref_t, ref_u, ids)
        write_units(group, eager.units)
        write_spikes_streaming(group, rt.n_spikes, plan.t_max, rt.blocks(plan))
        with h5py.File(tmp_path / "eager.h5", "r") as g:
            for key in ("timestamps", "unit_index", "time_index"):
                np.testing.assert_array_equal(group[key][()], g["signals/spikes"][key][()])
        lazy = LazySpikes(group, "spikes")
        win = lazy.window(10.0, 12.5)
        ref = eager.window(10.0, 12.5)
        np.testing.assert_array_equal(win.timestamps, ref.timestamps)
        np.testing.assert_array_equal(win.unit_index, ref.unit_index)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.nan, "of unit 'u1': must be finite"),
        (-1.0, "of unit 'u1': must be >= 0"),
    ],
)
def test_bad_spike_times_name_the_unit(bad, message):
    trains, flat, ends = ragged(n_units=5)
    flat = flat.copy()
    flat[ends[0] + 2] = bad
    rt = RaggedSpikeTrains(flat, ends, "f.nwb: units.spike_times", [f"u{i}" for i in range(5)])
    with pytest.raises(InvalidDataError, match=f"f.nwb: units.spike_times {message}"):
        rt.scan(100)


def test_unsorted_train_and_bad_offsets_are_errors():
    flat = np.array([0.1, 0.3, 0.2, 0.5])
    with pytest.raises(InvalidDataError, match="of unit 'b': must be sorted in time"):
        RaggedSpikeTrains(flat, np.array([1, 4]), "f", ["a", "b"]).scan(10)
    with pytest.raises(InvalidDataError, match="offsets must be non-decreasing"):
        RaggedSpikeTrains(flat, np.array([3, 2]), "f", ["a", "b"])
    with pytest.raises(InvalidDataError, match="<= 4"):
        RaggedSpikeTrains(flat, np.array([1, 9]), "f", ["a", "b"])


# --------------------------------------------------------------------------------------------
# what readers call: merge_spike_trains (in memory), stage_spike_trains (a file it owns)
# --------------------------------------------------------------------------------------------


def test_merged_and_staged_spikes_equal_the_sorted_stream(tmp_path):
    trains, flat, ends = ragged(seed=5)
    units = Units([f"u{i}" for i in range(30)], {"area": ["M1"] * 30})
    ref_t, ref_u = reference(trains)
    merged = merge_spike_trains(flat, ends, units, "x", block_spikes=300)
    np.testing.assert_array_equal(merged.timestamps, ref_t)
    np.testing.assert_array_equal(merged.unit_index, ref_u)
    assert merged.units is units
    reported: list[int] = []
    staged = stage_spike_trains(
        flat, ends, units, "x", block_spikes=300, tmp_dir=tmp_path, progress=reported.append
    )
    assert isinstance(staged, LazySpikes) and staged.folder.parent == tmp_path
    assert sum(reported) == len(ref_t) and len(reported) > 1
    np.testing.assert_array_equal(staged.load().timestamps, ref_t)
    np.testing.assert_array_equal(staged.load().unit_index, ref_u)
    assert list(staged.units.columns["area"]) == ["M1"] * 30
    # saved into a recording like any other lazy signal, then the staging file goes
    rec = Recording("r", {"spikes": staged})
    rec.add_closer(staged.close)
    rec.save(tmp_path / "saved.h5")
    rec.close()
    assert list(tmp_path.glob(".neurofm-stage-*")) == []
    staged.close()  # again: nothing left to do
    with Recording.open(tmp_path / "saved.h5") as back:
        np.testing.assert_array_equal(back.spikes.load().timestamps, ref_t)


def test_staging_cleans_up_on_failure_and_garbage_collection(tmp_path):
    trains, flat, ends = ragged(n_units=5)
    bad = flat.copy()
    bad[3] = np.nan
    units = Units([f"u{i}" for i in range(5)])
    with pytest.raises(InvalidDataError, match="must be finite"):
        stage_spike_trains(bad, ends, units, "f.nwb: units.spike_times", tmp_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    staged = stage_spike_trains(flat, ends, units, "x", tmp_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    del staged
    gc.collect()
    assert list(tmp_path.iterdir()) == []
