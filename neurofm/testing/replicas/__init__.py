"""Replicas of the public dandisets that neurofm's dataset cards name, for end-to-end tests.

Each replica is a handful of small NWB files written with pynwb in its dandiset's layout
(asset paths, group paths, container types, column names and dtypes) and with the quirks the
real files are known to have; the sources are cited in each module. :func:`build_replica`
writes one and returns its :class:`ReplicaTruth`; :func:`serve_replicas` serves replicas with
the local DANDI server, each under its card's dandiset id and published versions::

    from neurofm.testing.replicas import build_replica, serve_replicas

    truth = build_replica("mc_rtt", "replicas/000129", seed=0)
    with serve_replicas([truth]) as server:
        ...  # neurofm run pipelines/mc_rtt.yaml --api-url {server.api_url}

The library proper never imports this package.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from neurofm.testing.replicas.base import FileTruth, ReplicaTruth
from neurofm.testing.replicas.churchland import build_churchland_2012
from neurofm.testing.replicas.ds002336 import build_ds002336
from neurofm.testing.replicas.nlb import (
    build_area2_bump,
    build_dmfc_rsg,
    build_mc_maze,
    build_mc_rtt,
)
from neurofm.testing.replicas.perich import build_perich_miller_2018

__all__ = [
    "NWB_REPLICAS",
    "REPLICAS",
    "FileTruth",
    "ReplicaTruth",
    "build_replica",
    "serve_replicas",
]

#: card name -> builder(folder, seed) -> ReplicaTruth
REPLICAS: dict[str, Callable[..., ReplicaTruth]] = {
    "mc_maze": partial(build_mc_maze, card="mc_maze"),
    "mc_maze_large": partial(build_mc_maze, card="mc_maze_large"),
    "mc_maze_medium": partial(build_mc_maze, card="mc_maze_medium"),
    "mc_maze_small": partial(build_mc_maze, card="mc_maze_small"),
    "mc_rtt": build_mc_rtt,
    "area2_bump": build_area2_bump,
    "dmfc_rsg": build_dmfc_rsg,
    "churchland_2012": build_churchland_2012,
    "perich_miller_2018": build_perich_miller_2018,
    "ds002336": build_ds002336,
}
#: The replicas of DANDI dandisets (NWB), served by the local DANDI server; ds002336 is a BIDS
#: folder read from disk.
NWB_REPLICAS = tuple(name for name in REPLICAS if name != "ds002336")


def build_replica(card: str, folder: str | os.PathLike[str], seed: int = 0) -> ReplicaTruth:
    """Write the replica of a card's dandiset into ``folder`` (deterministic per seed).

    Parameters
    ----------
    card : str
        A card name with a replica (see :data:`REPLICAS`).
    folder : path-like
        The dandiset folder to write (asset paths are relative to it).
    seed : int
        Seed of every random draw.

    Returns
    -------
    ReplicaTruth
        What the files hold and which quirks they carry.

    Raises
    ------
    KeyError
        If the card has no replica.
    """
    if card not in REPLICAS:
        raise KeyError(f"no replica for card {card!r} (replicas: {', '.join(sorted(REPLICAS))})")
    return REPLICAS[card](Path(folder), seed=seed)


def serve_replicas(truths: Iterable[ReplicaTruth], **kwargs: object):  # noqa: ANN201
    """A :class:`~neurofm.testing.dandi_server.LocalDandiServer` serving each replica under
    its dandiset id with its published versions (use it as a context manager)."""
    from neurofm.testing.dandi_server import DandisetSpec, LocalDandiServer

    specs = {
        t.dandiset_id: DandisetSpec(t.folder, published_versions=list(t.published_versions))
        for t in truths
    }
    return LocalDandiServer(specs, **kwargs)
