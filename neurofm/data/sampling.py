"""Window samplers: which ``(recording, start, end)`` windows a model sees, in which order.

Samplers yield :class:`Window` descriptors, not data, so a dataset can read each window lazily
from its recording (see :meth:`neurofm.data.Recording.window`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple, TypeVar

import numpy as np

from neurofm.data.signals import Intervals
from neurofm.errors import InvalidDataError

__all__ = ["RandomWindowSampler", "SequentialWindowSampler", "Window", "rank_share", "share_length"]

T = TypeVar("T")


class Window(NamedTuple):
    """A half-open window ``[start, end)`` of one recording."""

    recording_id: str
    start: float
    end: float


def _check(length: float, domains: Mapping[str, Intervals]) -> None:
    if not length > 0:
        raise InvalidDataError(f"window length must be > 0 s, got {length}")
    if not domains:
        raise InvalidDataError("no sampling domains given (no recording has a matching split)")


class RandomWindowSampler:
    """Non-overlapping windows tiling each domain interval from a random offset, shuffled.

    Each interval holds ``floor(span / length)`` windows; every epoch (:meth:`set_epoch`, called
    by Lightning before each epoch) draws where the leftover slack goes, so window edges move from
    epoch to epoch. Intervals shorter than a window are skipped.

    Parameters
    ----------
    domains : mapping of recording id to Intervals
        Where windows may lie (e.g. each recording's ``train_domain``).
    length : float
        Window length in seconds.
    seed : int
        Seed; combined with the epoch (:meth:`set_epoch`) so runs are reproducible.
    """

    def __init__(self, domains: Mapping[str, Intervals], length: float, seed: int = 0) -> None:
        _check(length, domains)
        self.domains, self.length, self.seed, self.epoch = dict(domains), float(length), seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def windows(self) -> list[Window]:
        rng = np.random.default_rng([self.seed, self.epoch])
        out: list[Window] = []
        for rid, dom in self.domains.items():
            for s, e in zip(dom.start, dom.end, strict=True):
                n = int((e - s) // self.length)
                if n == 0:
                    continue
                # The slack left by n whole windows moves their tiling each epoch; the count
                # never changes, so a DataLoader's length is the same every epoch.
                offset = rng.uniform(0, (e - s) - n * self.length)
                starts = s + offset + self.length * np.arange(n)
                out.extend(Window(rid, float(a), float(a + self.length)) for a in starts)
        order = rng.permutation(len(out))
        return [out[i] for i in order]

    def __iter__(self) -> Iterator[Window]:
        return iter(self.windows())

    def __len__(self) -> int:
        return sum(
            int((e - s) // self.length)
            for dom in self.domains.values()
            for s, e in zip(dom.start, dom.end, strict=True)
        )


class SequentialWindowSampler:
    """Overlapping windows covering every domain interval, in order (for evaluation).

    Windows start every ``step`` seconds; a last window is aligned to the interval's end so the
    whole interval is covered. An interval shorter than a window gets one window starting at
    its start (it extends past the interval; predictions outside it are not scored).
    """

    def __init__(
        self, domains: Mapping[str, Intervals], length: float, step: float | None = None
    ) -> None:
        _check(length, domains)
        self.domains, self.length = dict(domains), float(length)
        self.step = float(step) if step is not None else self.length / 2
        if not self.step > 0:
            raise InvalidDataError(f"window step must be > 0 s, got {step}")

    def windows(self) -> list[Window]:
        out: list[Window] = []
        for rid, dom in self.domains.items():
            for s, e in zip(dom.start, dom.end, strict=True):
                starts = list(np.arange(s, max(s, e - self.length) + 1e-9, self.step))
                if e - self.length > starts[-1] + 1e-9:
                    starts.append(e - self.length)
                out.extend(Window(rid, float(a), float(a + self.length)) for a in starts)
        return out

    def __iter__(self) -> Iterator[Window]:
        return iter(self.windows())

    def __len__(self) -> int:
        return len(self.windows())


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise InvalidDataError(f"rank {rank} of world size {world_size}: need 0 <= rank < size")


def share_length(n: int, rank: int, world_size: int, drop_last: bool) -> int:
    """How many of ``n`` items :func:`rank_share` gives ``rank``.

    Parameters
    ----------
    n : int
        Items in the global list.
    rank, world_size : int
        This process's global rank and the number of processes.
    drop_last : bool
        As in :func:`rank_share`.

    Returns
    -------
    int
    """
    _check_rank(rank, world_size)
    if drop_last:
        return n // world_size
    return max(0, (n - rank + world_size - 1) // world_size)


def rank_share(items: Sequence[T], rank: int, world_size: int, drop_last: bool) -> list[T]:
    """This rank's share of a global list of items (windows): every ``world_size``-th item,
    from position ``rank``.

    Every rank must pass the same list (samplers draw it from ``(seed, epoch)``, so they do):
    the shares are then disjoint, and consecutive batches of the ranks together are the
    consecutive items of the global list, as one process with ``world_size`` times the batch
    would see them.

    Parameters
    ----------
    items : sequence
        The global list, the same on every rank.
    rank, world_size : int
        This process's global rank and the number of processes.
    drop_last : bool
        True (training): the last ``len(items) % world_size`` items are left out, so every
        rank gets the same count (DDP steps in lockstep; nothing is repeated). False
        (evaluation): nothing is left out and nothing repeated, so the ranks together cover
        every item exactly once; counts differ by at most one.

    Returns
    -------
    list
    """
    _check_rank(rank, world_size)
    stop = (len(items) // world_size) * world_size if drop_last else len(items)
    return list(items[rank:stop:world_size])
