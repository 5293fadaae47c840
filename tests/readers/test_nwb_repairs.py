"""Units whose spike times go back in time (Churchland 2012's sessions): refused by default with
the unit named, dropped or sorted when the card's repairs say so, and the repair recorded."""

from __future__ import annotations

import numpy as np
import nwb_factory as fac
import pytest

from neurofm.data import Recording
from neurofm.errors import InvalidDataError
from neurofm.readers import nwb as nwb_reader
from neurofm.readers.nwb import read_nwb

# Units 1 and 3 go back in time; 0 and 2 are sorted.
TRAINS = [
    [0.1, 0.2, 0.3],
    [0.5, 0.4, 0.6, 0.7],
    [0.05, 1.0],
    [2.0, 1.5, 1.7, 3.0, 2.5],
]


@pytest.fixture
def unsorted_nwb(tmp_path):
    """The trains above, with per-unit obs_intervals ([u, u + 10) for unit u)."""
    nwb = fac.new_nwbfile()
    for u, train in enumerate(TRAINS):
        nwb.add_unit(spike_times=np.asarray(train), obs_intervals=[[float(u), u + 10.0]])
    fac.add_behavior(nwb)
    return fac.write(tmp_path / "unsorted.nwb", nwb)


@pytest.fixture(params=["in_memory", "staged"])
def where(request, monkeypatch):
    if request.param == "staged":  # every file counts as large: the on-disk path
        monkeypatch.setattr(nwb_reader, "IN_MEMORY_SPIKES", 0)
    return request.param


def test_refused_without_a_policy_naming_the_units_and_the_repair(unsorted_nwb, where):
    with pytest.raises(InvalidDataError) as err:
        read_nwb(unsorted_nwb)
    text = str(err.value)
    assert "units.spike_times of unit '1': must be sorted in time (spike 1: 0.4 < 0.5)" in text
    assert "repairs: {unsorted_spikes: drop_units}" in text
    if where == "in_memory":  # one vectorised pass finds them all
        assert "2 of 4 units go back in time ('1', '3')" in text


def test_drop_units_removes_exactly_the_offending_units(unsorted_nwb, where, tmp_path, caplog):
    with read_nwb(unsorted_nwb, unsorted_spikes="drop_units", tmp_dir=tmp_path) as rec:
        spikes = rec["spikes"].load()
        assert list(spikes.units.ids) == ["0", "2"]
        kept = sorted(TRAINS[0] + TRAINS[2])
        np.testing.assert_array_equal(spikes.timestamps, kept)
        # unit_index points at the kept units' rows: 0.05 and 1.0 are unit '2' (row 1)
        np.testing.assert_array_equal(spikes.unit_index, [1, 0, 0, 0, 1])
        assert len(spikes) == sum(map(len, TRAINS)) - len(TRAINS[1]) - len(TRAINS[3])
        obs = rec["obs_intervals"].load()  # the dropped units' intervals go, the rest renumber
        np.testing.assert_array_equal(obs.start, [0.0, 2.0])
        np.testing.assert_array_equal(obs.columns["unit_index"], [0, 1])
        assert rec.provenance.extra["repairs"] == {
            "unsorted_spikes": {
                "policy": "drop_units",
                "n_units": 2,
                "units": ["1", "3"],
                "n_spikes": 9,
            }
        }
    assert "2 of 4 units had spike times going back in time (1, 3)" in caplog.text
    # no temporary copy of the repaired trains is left behind
    assert not list(tmp_path.glob(".neurofm-repair-*"))


def test_sort_keeps_every_spike_in_time_order(unsorted_nwb, where, tmp_path):
    with read_nwb(unsorted_nwb, unsorted_spikes="sort", tmp_dir=tmp_path) as rec:
        spikes = rec["spikes"].load()
        assert list(spikes.units.ids) == ["0", "1", "2", "3"]
        np.testing.assert_array_equal(spikes.timestamps, sorted(sum(TRAINS, [])))
        for u, train in enumerate(TRAINS):  # each unit keeps its own spikes, sorted
            np.testing.assert_array_equal(spikes.timestamps[spikes.unit_index == u], sorted(train))
        entry = rec.provenance.extra["repairs"]["unsorted_spikes"]
        assert entry == {"policy": "sort", "n_units": 2, "units": ["1", "3"], "n_spikes": 9}
    assert not list(tmp_path.glob(".neurofm-repair-*"))


def test_a_policy_on_a_clean_file_changes_nothing_and_says_so(tmp_path):
    path = fac.with_spike_trains(tmp_path / "clean.nwb", [[0.1, 0.2], [0.15]])
    with read_nwb(path) as plain, read_nwb(path, unsorted_spikes="drop_units") as repaired:
        np.testing.assert_array_equal(plain["spikes"].timestamps, repaired["spikes"].timestamps)
        assert "repairs" not in plain.provenance.extra
        assert repaired.provenance.extra["repairs"]["unsorted_spikes"]["n_units"] == 0


def test_the_repair_survives_save_and_open(unsorted_nwb, tmp_path):
    with read_nwb(unsorted_nwb, unsorted_spikes="drop_units") as rec:
        rec.save(tmp_path / "rec.h5")
    with Recording.open(tmp_path / "rec.h5") as back:
        assert back.provenance.extra["repairs"]["unsorted_spikes"]["units"] == ["1", "3"]
        assert len(back["spikes"]) == 5


def test_dropping_every_unit_is_an_error(tmp_path):
    path = fac.with_spike_trains(tmp_path / "all_bad.nwb", [[0.2, 0.1], [0.5, 0.3]])
    with pytest.raises(InvalidDataError, match="every unit .2. goes back in time"):
        read_nwb(path, unsorted_spikes="drop_units")
