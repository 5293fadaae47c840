"""neurofm.training.datasets: recordings opened once, windows read lazily, DDP shards, splits."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from neurofm.data import Catalog, Intervals, Recording, Spikes
from neurofm.data.sampling import SequentialWindowSampler, Window
from neurofm.errors import InvalidDataError
from neurofm.training import datasets
from neurofm.training.datasets import (
    OpenRecordings,
    ShardedSampler,
    WindowDataset,
    iter_recordings,
    split_domains_of,
)


def _recording(rid: str, seed: int, domains: bool = True) -> Recording:
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0, 10, 500))
    signals = {"spikes": Spikes(times, rng.integers(0, 3, len(times)), ["a", "b", "c"])}
    if domains:
        signals["train_domain"] = Intervals([0.0, 5.0], [4.0, 8.0])
        signals["valid_domain"] = Intervals([], [])  # empty: left out of the split
    return Recording(rid, signals, duration=10.0)


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    cat = Catalog(tmp_path / "cat", create=True)
    for i, rid in enumerate(["r0", "r1", "r2"]):
        cat.add(_recording(rid, i))
    return Catalog(tmp_path / "cat")


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """Ids of the recordings opened from disk, in order."""
    calls: list[str] = []
    real = Recording.open.__func__

    def spy(cls, path):
        calls.append(path.stem)
        return real(cls, path)

    monkeypatch.setattr(Recording, "open", classmethod(spy))
    return calls


def test_open_recordings_opens_each_once_and_closes(catalog, opened):
    with OpenRecordings(catalog) as recs:
        first = recs.get("r1")
        assert recs.get("r1") is first and recs.path == catalog.path
        recs.get("r0")
        assert opened == ["r1", "r0"]
        assert OpenRecordings.of(recs) is recs
    assert first._file is None  # closed on exit
    assert recs.get("r1") is not first  # and reopened on demand
    recs.close()


def test_open_recordings_reopen_in_a_forked_process_and_pickle_without_handles(
    catalog, opened, monkeypatch
):
    recs = OpenRecordings(catalog.path)
    parent = recs.get("r0")
    clone = pickle.loads(pickle.dumps(recs))  # what a spawned worker receives
    assert clone.get("r0") is not parent and opened == ["r0", "r0"]
    monkeypatch.setattr(datasets.os, "getpid", lambda: -1)  # as in a forked worker
    child = recs.get("r0")
    assert child is not parent and parent._file is not None  # the parent's handle is untouched
    recs.close()
    clone.close()
    parent.close()


def test_iter_recordings_closes_catalog_recordings_keeps_open_ones(catalog, opened):
    seen = [(rid, rec) for rid, rec in iter_recordings(catalog, ["r2", "r0"])]
    assert [rid for rid, _ in seen] == ["r2", "r0"] == opened
    assert all(rec._file is None for _, rec in seen)  # each closed before the next
    with OpenRecordings(catalog) as recs:
        kept = [rec for _, rec in iter_recordings(recs, ["r2", "r2"])]
        assert kept[0] is kept[1] and kept[0]._file is not None
    assert opened == ["r2", "r0", "r2"]


def test_window_dataset_reads_windows_through_shared_recordings(catalog, opened):
    with OpenRecordings(catalog) as recs:
        train = WindowDataset(recs, lambda win: win)
        valid = WindowDataset(recs, lambda win: len(win.spikes))
        win = train[Window("r1", 2.0, 3.0)]
        want = recs.get("r1").window(2.0, 3.0)
        np.testing.assert_array_equal(win.spikes.timestamps, want.spikes.timestamps)
        assert win.absolute_start == 2.0
        assert valid[Window("r1", 2.0, 3.0)] == len(want.spikes)
        assert opened == ["r1"]  # one open for both datasets
    own = WindowDataset(catalog.path, lambda win: win.id)  # a path still works
    assert own[Window("r0", 0.0, 1.0)] == "r0" and own.catalog_path == catalog.path
    own.recordings.close()


def test_sharded_sampler_deals_equal_shares():
    domains = {"r": Intervals([0.0], [10.0])}
    base = SequentialWindowSampler(domains, 1.0, step=1.0)  # 10 windows
    shards = [ShardedSampler(base, rank, 3) for rank in range(3)]
    got = [list(s) for s in shards]
    assert [len(g) for g in got] == [3, 3, 3] == [len(s) for s in shards]
    assert sorted(w.start for g in got for w in g) == [float(i) for i in range(9)]

    class Epochs(list):
        epoch = None

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

    inner = Epochs([1, 2])
    ShardedSampler(inner, 0, 1).set_epoch(4)
    assert inner.epoch == 4
    ShardedSampler([1, 2], 0, 1).set_epoch(4)  # samplers without epochs are fine


def test_split_domains_of(catalog, opened):
    train = split_domains_of(catalog, "train")
    assert sorted(train) == ["r0", "r1", "r2"]
    np.testing.assert_array_equal(train["r1"].end, [4.0, 8.0])
    assert split_domains_of(catalog, "valid") == {}  # empty domains are left out
    assert sorted(split_domains_of(catalog, "train", ["r2"])) == ["r2"]
    with OpenRecordings(catalog) as recs:
        assert sorted(split_domains_of(recs, "train")) == ["r0", "r1", "r2"]
        split_domains_of(recs, "valid")
    assert opened == []  # splits come from the catalog's index: no recording is opened


def test_split_domains_of_names_a_recording_without_splits(tmp_path):
    cat = Catalog(tmp_path / "cat", create=True)
    cat.add(_recording("bare", 0, domains=False))
    with pytest.raises(InvalidDataError, match=r"cat: recording 'bare' has no 'train_domain'"):
        split_domains_of(Catalog(tmp_path / "cat"), "train")
