"""Datasets of windows over a catalog, for PyTorch DataLoaders and Lightning."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, Sampler

from neurofm.data.catalog import Catalog
from neurofm.data.recording import Recording
from neurofm.data.sampling import Window
from neurofm.data.signals import Intervals
from neurofm.errors import InvalidDataError

__all__ = ["ShardedSampler", "WindowDataset", "split_domains_of"]


class WindowDataset(Dataset):
    """Reads and tokenizes :class:`Window` items from a catalog's recordings.

    Recordings are opened lazily, once per process (DataLoader workers each open their own
    handles: HDF5 handles must not cross a fork), and kept open.
    """

    def __init__(self, catalog: str | Path, transform: Callable[[Recording], Any]) -> None:
        self.catalog_path = Path(catalog)
        self.transform = transform
        self._open: dict[str, Recording] = {}
        self._pid = os.getpid()
        self._catalog = Catalog(self.catalog_path)

    def recording(self, recording_id: str) -> Recording:
        if self._pid != os.getpid():  # in a forked worker: never reuse the parent's handles
            self._open, self._pid = {}, os.getpid()
        rec = self._open.get(recording_id)
        if rec is None:
            rec = self._open[recording_id] = self._catalog.open(recording_id)
        return rec

    def __getitem__(self, window: Window) -> Any:
        rec = self.recording(window.recording_id)
        return self.transform(rec.window(window.start, window.end))

    def __len__(self) -> int:  # pragma: no cover - indexed by windows, not integers
        raise TypeError("WindowDataset is indexed by Window items from a sampler")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"] = {}  # h5py handles do not pickle (spawned workers reopen them)
        return state


class ShardedSampler(Sampler):
    """Gives each of ``world_size`` processes its own, equally long share of a sampler's windows.

    Used for DDP instead of torch's DistributedSampler, which indexes integers; windows of every
    epoch are drawn once (same seed on every rank) and dealt out round-robin.
    """

    def __init__(self, sampler: Any, rank: int = 0, world_size: int = 1) -> None:
        self.sampler, self.rank, self.world_size = sampler, rank, world_size

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Window]:
        windows = list(self.sampler)
        n = len(windows) // self.world_size
        return iter(windows[self.rank : n * self.world_size : self.world_size])

    def __len__(self) -> int:
        return len(self.sampler) // self.world_size


def split_domains_of(
    catalog: Catalog, split: str, recording_ids: Sequence[str] | None = None
) -> dict[str, Intervals]:
    """``{recording id: <split>_domain}`` for the catalog's recordings that have that split."""
    out: dict[str, Intervals] = {}
    for rid in recording_ids or catalog.ids:
        with catalog.open(rid) as rec:
            name = f"{split}_domain"
            if name not in rec:
                raise InvalidDataError(
                    f"{catalog.path}: recording {rid!r} has no {name!r}; ingest it with a "
                    "dataset card that defines splits (neurofm run pipelines/...yaml)"
                )
            dom = rec[name].load()
        if len(dom):
            out[rid] = dom
    return out
