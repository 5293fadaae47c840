"""Per-rank shares of window lists (``rank_share``): disjoint, complete, deterministic."""

from __future__ import annotations

import pytest

from neurofm.data.sampling import RandomWindowSampler, rank_share, share_length
from neurofm.data.signals import Intervals
from neurofm.errors import InvalidDataError

DOMAINS = {
    "a": Intervals([0.0, 30.0], [20.5, 41.0]),  # 20 + 11 windows of 1 s
    "b": Intervals([0.0], [12.9]),  # 12
}  # 43 windows: not a multiple of 2 or 3


def _shares(items, world, drop_last):
    return [rank_share(items, r, world, drop_last) for r in range(world)]


@pytest.mark.parametrize("world", [2, 3])
def test_training_shares_are_disjoint_equal_and_miss_only_the_remainder(world):
    windows = RandomWindowSampler(DOMAINS, 1.0, seed=1).windows()
    assert len(windows) == 43
    shares = _shares(windows, world, drop_last=True)
    assert [len(s) for s in shares] == [43 // world] * world
    assert [share_length(43, r, world, True) for r in range(world)] == [43 // world] * world
    flat = [w for s in shares for w in s]
    assert len(set(flat)) == len(flat)  # disjoint
    # the union is the global list without its last 43 % world windows (dropped, not padded)
    assert set(flat) == set(windows[: 43 - 43 % world])
    # consecutive batches of the ranks together are consecutive windows of the global list
    batch = 2
    for step in range(len(shares[0]) // batch):
        together = {w for s in shares for w in s[step * batch : (step + 1) * batch]}
        assert together == set(windows[step * batch * world : (step + 1) * batch * world])


@pytest.mark.parametrize("world", [2, 3])
def test_evaluation_shares_cover_every_window_exactly_once(world):
    windows = RandomWindowSampler(DOMAINS, 1.0, seed=1).windows()
    shares = _shares(windows, world, drop_last=False)
    flat = [w for s in shares for w in s]
    assert sorted(flat) == sorted(windows)  # each exactly once: no padding duplicates
    lengths = [len(s) for s in shares]
    assert max(lengths) - min(lengths) <= 1
    assert lengths == [share_length(43, r, world, False) for r in range(world)]


@pytest.mark.parametrize("world", [2, 3])
def test_shares_are_reproducible_and_change_with_the_epoch(world):
    def epoch_shares(epoch):
        sampler = RandomWindowSampler(DOMAINS, 1.0, seed=7)
        sampler.set_epoch(epoch)  # what each rank does, in its own process
        return _shares(sampler.windows(), world, drop_last=True)

    assert epoch_shares(3) == epoch_shares(3)  # every rank draws the same global list
    assert epoch_shares(3) != epoch_shares(4)
    assert {w for s in epoch_shares(3) for w in s} != {w for s in epoch_shares(4) for w in s}


def test_one_rank_gets_everything_and_bad_ranks_are_refused():
    items = list(range(5))
    assert rank_share(items, 0, 1, drop_last=True) == items
    assert rank_share(items, 4, 6, drop_last=False) == [4]
    assert rank_share(items, 5, 6, drop_last=False) == [] == rank_share(items, 0, 6, True)
    assert share_length(5, 5, 6, False) == 0
    with pytest.raises(InvalidDataError, match="rank 2 of world size 2"):
        rank_share(items, 2, 2, drop_last=True)
