"""Datasets of windows over a catalog, for PyTorch DataLoaders and Lightning.

:class:`OpenRecordings` opens each recording of a catalog once per process and keeps it open;
the training path shares one of them from the first look at the splits to the last batch, so a
catalog is read once and every recording opened once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, Sampler

from neurofm.data.catalog import Catalog
from neurofm.data.recording import Recording
from neurofm.data.sampling import Window, rank_share, share_length
from neurofm.data.signals import Intervals
from neurofm.errors import InvalidDataError

__all__ = [
    "OpenRecordings",
    "ShardedSampler",
    "WindowDataset",
    "iter_recordings",
    "process_group",
    "split_domains_of",
]


class OpenRecordings:
    """The recordings of one catalog, each opened lazily once per process and kept open.

    HDF5 handles must not cross a fork: in a forked DataLoader worker the parent's handles are
    forgotten (never closed) and the worker opens its own; pickling (spawned workers, DDP
    spawn) drops them too.

    Parameters
    ----------
    catalog : str, Path or Catalog
        The catalog (its index is read once, here).
    """

    def __init__(self, catalog: str | Path | Catalog) -> None:
        self.catalog = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
        self._open: dict[str, Recording] = {}
        self._pid = os.getpid()

    @classmethod
    def of(cls, catalog: str | Path | Catalog | OpenRecordings) -> OpenRecordings:
        """``catalog`` itself if it already is an :class:`OpenRecordings`, else a new one.

        Parameters
        ----------
        catalog : str, Path, Catalog or OpenRecordings
            The catalog.

        Returns
        -------
        OpenRecordings
        """
        return catalog if isinstance(catalog, OpenRecordings) else cls(catalog)

    @property
    def path(self) -> Path:
        """The catalog folder."""
        return self.catalog.path

    def get(self, recording_id: str) -> Recording:
        """The recording, opened on first use in this process.

        Parameters
        ----------
        recording_id : str
            Its id in the catalog.

        Returns
        -------
        Recording
            Lazy; owned by this object (closed by :meth:`close`, not by the caller).
        """
        if self._pid != os.getpid():  # in a forked worker: never reuse the parent's handles
            self._open, self._pid = {}, os.getpid()
        rec = self._open.get(recording_id)
        if rec is None:
            rec = self._open[recording_id] = self.catalog.open(recording_id)
        return rec

    def close(self) -> None:
        """Close every recording this process opened (they reopen on the next :meth:`get`)."""
        if self._pid == os.getpid():
            for rec in self._open.values():
                rec.close()
        self._open = {}

    def __enter__(self) -> OpenRecordings:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"] = {}  # h5py handles do not pickle (spawned workers reopen them)
        return state


def iter_recordings(
    catalog: Catalog | OpenRecordings, recording_ids: Sequence[str]
) -> Iterator[tuple[str, Recording]]:
    """``(id, recording)`` for each id: from an :class:`OpenRecordings` as it keeps them, from a
    :class:`Catalog` opened one at a time and closed before the next.

    Parameters
    ----------
    catalog : Catalog or OpenRecordings
        Where the recordings are.
    recording_ids : sequence of str
        Which, in this order.

    Yields
    ------
    (str, Recording)
    """
    for rid in recording_ids:
        if isinstance(catalog, OpenRecordings):
            yield rid, catalog.get(rid)
        else:
            with catalog.open(rid) as rec:
                yield rid, rec


class WindowDataset(Dataset):
    """Reads and tokenizes :class:`Window` items from a catalog's recordings.

    Recordings are opened lazily, once per process, and kept open (see
    :class:`OpenRecordings`); datasets given the same :class:`OpenRecordings` share them.

    Parameters
    ----------
    catalog : str, Path, Catalog or OpenRecordings
        The catalog.
    transform : callable
        Turns a window (an in-memory :class:`Recording`) into an item, e.g. a tokenizer.
    """

    def __init__(
        self, catalog: str | Path | Catalog | OpenRecordings, transform: Callable[[Recording], Any]
    ) -> None:
        self.recordings = OpenRecordings.of(catalog)
        self.catalog_path = self.recordings.path
        self.transform = transform

    def recording(self, recording_id: str) -> Recording:
        """The (lazy, kept open) recording of that id."""
        return self.recordings.get(recording_id)

    def __getitem__(self, window: Window) -> Any:
        rec = self.recording(window.recording_id)
        # A transform that says which signals it reads (a tokenizer's ``signals``) gets only
        # those windowed (~30% of the input path on a recording with eight signals); if the
        # recording lacks one, it gets them all, so that its own error lists what there is.
        names = getattr(self.transform, "signals", None)
        if names is not None and not all(name in rec.signals for name in names):
            names = None
        return self.transform(rec.window(window.start, window.end, signals=names))

    def __len__(self) -> int:  # pragma: no cover - indexed by windows, not integers
        raise TypeError("WindowDataset is indexed by Window items from a sampler")


def process_group() -> tuple[int, int]:
    """``(global rank, world size)`` of this process: ``(0, 1)`` unless a
    :mod:`torch.distributed` process group is up (Lightning starts one for DDP, on one node or
    many, under ``torchrun``, SLURM or its own launcher)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardedSampler(Sampler):
    """This process's share of a sampler's windows, for DDP across processes and nodes.

    Used instead of torch's DistributedSampler, which indexes integers. The wrapped sampler
    draws every epoch's global window list from ``(seed, epoch)``, the same on every rank;
    rank ``r`` of ``n`` takes items ``r, r + n, r + 2n, ...``
    (:func:`~neurofm.data.sampling.rank_share`). Training (``drop_last=True``) leaves out the
    last ``len % n`` windows so all ranks step in lockstep; evaluation (``drop_last=False``)
    leaves out nothing and repeats nothing, so every window is scored exactly once across
    ranks.

    Parameters
    ----------
    sampler : iterable
        The global sampler (with ``len``; ``set_epoch`` if it has epochs).
    rank, world_size : int, optional
        Default: from the :mod:`torch.distributed` process group when it is up, at each
        iteration (so a loader built before Lightning starts the group is sharded too), else
        ``(0, 1)``.
    drop_last : bool
        Equal shares (training) or every window once (evaluation).
    """

    def __init__(
        self,
        sampler: Any,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = True,
    ) -> None:
        self.sampler, self.rank, self.world_size = sampler, rank, world_size
        self.drop_last = drop_last

    def _group(self) -> tuple[int, int]:
        if self.rank is not None and self.world_size is not None:
            return self.rank, self.world_size
        rank, size = process_group()
        return (self.rank if self.rank is not None else rank), (self.world_size or size)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Window]:
        rank, size = self._group()
        return iter(rank_share(list(self.sampler), rank, size, self.drop_last))

    def __len__(self) -> int:
        rank, size = self._group()
        return share_length(len(self.sampler), rank, size, self.drop_last)


def split_domains_of(
    catalog: Catalog | OpenRecordings, split: str, recording_ids: Sequence[str] | None = None
) -> dict[str, Intervals]:
    """``{recording id: <split>_domain}`` for the catalog's recordings that have that split.

    Parameters
    ----------
    catalog : Catalog or OpenRecordings
        The catalog (an :class:`OpenRecordings` keeps the recordings open for later use).
    split : str
        ``train``, ``valid`` or ``test``.
    recording_ids : sequence of str, optional
        Default every recording of the catalog.

    Returns
    -------
    dict of str to Intervals
        Recordings whose domain is empty are left out.

    Raises
    ------
    InvalidDataError
        A recording without the ``<split>_domain`` signal.
    """
    cat = catalog.catalog if isinstance(catalog, OpenRecordings) else catalog
    name = f"{split}_domain"
    ids = list(recording_ids or cat.ids)
    found = cat.domains(split, ids)  # from the catalog's index: no recording is opened
    out: dict[str, Intervals] = {}
    for rid in ids:
        if rid not in found:
            raise InvalidDataError(
                f"{cat.path}: recording {rid!r} has no {name!r} (it was ingested without "
                "train/valid/test splits); re-ingest with splits: `neurofm ingest SRC --out "
                f"{cat.path} --force --splits random` (or --splits column|time, or --card "
                "datasets/<card>.yaml)"
            )
        if len(found[rid]):
            out[rid] = found[rid]
    return out
