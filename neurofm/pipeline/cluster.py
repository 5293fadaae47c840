"""Ingestion on a Dask cluster: one task per asset, the catalog index merged by the client.

Dask (``dask.distributed``) does the distribution; nothing here schedules, queues or retries on
its own. :func:`dask_client` opens a client on a :class:`~distributed.LocalCluster` of ``N``
single-threaded worker processes (``--workers N``) or on an existing scheduler
(``--scheduler ADDRESS``: a ``dask-jobqueue`` SLURMCluster, ``dask scheduler`` on a login
node...). :func:`map_tasks` submits one task per item and, on the client, hands each result to a
callback as its future completes, with one progress bar over the items; a failed item is
listed with its one-line error and never stops the others.

The tasks themselves (pull, read, write one recording to its final name) are
:mod:`neurofm.pipeline.ingest`'s; they never touch the catalog index. The client indexes each
written recording as its task finishes (``Catalog.register``), so a job killed halfway leaves
a valid catalog, and a rerun skips what is up to date. A worker that dies mid-task (a node
lost, a process killed) is the scheduler's to retry, ``distributed.scheduler.allowed-failures``
times (default 3), then the item fails with ``KilledWorker``; a retry first removes what the
killed attempt staged.

Workers must see the same file system as the client (the catalog folder and, when pulling,
the download folder): a cluster's shared file system, or one machine.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from neurofm.errors import NeuroFMError

log = logging.getLogger(__name__)

__all__ = [
    "ClusterError",
    "dask_client",
    "map_tasks",
    "one_line",
    "pull_on_client",
]

#: One task: (name shown in reports, function, positional arguments).
Task = tuple[str, Callable[..., Any], tuple[Any, ...]]


class ClusterError(NeuroFMError):
    """The Dask cluster cannot be started or reached, or its options are contradictory."""


def _check_address(scheduler: str) -> None:
    """A scheduler address distributed can parse, before a Client is made of it (a Client
    half-made of a bad address hangs ~40 s on its way out)."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(scheduler)
        get_backend(scheme)
        if scheme != "inproc":
            parse_host_port(location)
    except ValueError as exc:
        raise ClusterError(
            f"--scheduler {scheduler}: not a scheduler address ({exc}); give it as "
            "`dask scheduler` prints it, e.g. tcp://10.0.0.5:8786"
        ) from None


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` for ``workers`` local processes or a running ``scheduler``.

    Parameters
    ----------
    workers : int, optional
        Start a :class:`~distributed.LocalCluster` of this many worker processes, one thread
        each (neurofm's readers hold the GIL much of the time: processes, not threads, scale).
    scheduler : str, optional
        Address of an existing scheduler, e.g. ``tcp://10.0.0.5:8786``.

    Yields
    ------
    distributed.Client or None
        None when neither is given: the caller's serial path.

    Raises
    ------
    ClusterError
        Both given, ``workers < 1``, or the scheduler cannot be reached.
    """
    if workers is None and scheduler is None:
        yield None
        return
    if workers is not None and scheduler is not None:
        raise ClusterError("give --workers N (a local cluster) or --scheduler ADDRESS, not both")
    if workers is not None and workers < 1:
        raise ClusterError(f"--workers must be at least 1, got {workers}")
    from distributed import Client, LocalCluster

    # Dask logs its start, stop and every failed task at INFO/WARNING through its own loggers;
    # neurofm reports each failed asset once, in one line (map_tasks), so Dask speaks here
    # only of errors, unless debug logging is on (`neurofm -vv`).
    debug = log.isEnabledFor(logging.DEBUG)
    dask_log = logging.getLogger("distributed")
    level = dask_log.level
    if not debug:
        dask_log.setLevel(logging.ERROR)
    cluster = None
    try:
        if scheduler is not None:
            _check_address(scheduler)
            try:
                client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise ClusterError(
                    f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({exc})"
                ) from None
        else:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                # A failed task is reported once, in one line, by map_tasks; the workers'
                # own tracebacks only with `neurofm -vv` (debug logging).
                silence_logs=logging.WARNING if debug else logging.CRITICAL,
            )
            client = Client(cluster)
    except BaseException:
        if cluster is not None:
            cluster.close()
        dask_log.setLevel(level)
        raise
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        dask_log.setLevel(level)


def one_line(exc: BaseException, name: str) -> str:
    """An exception as one line that names the item (``KilledWorker`` and the like typed)."""
    text = " ".join(str(exc).split())
    if not isinstance(exc, NeuroFMError):
        text = f"{type(exc).__name__}: {text}"
    return text if name in text else f"{name}: {text}"


def map_tasks(
    client: Any,
    tasks: Sequence[Task],
    on_done: Callable[[str, Any], None],
    *,
    desc: str = "tasks",
    unit: str = "file",
    progress: bool = True,
    already: int = 0,
) -> list[tuple[str, str]]:
    """Run one Dask task per item; call ``on_done(name, result)`` here as each one finishes.

    Parameters
    ----------
    client : distributed.Client
        Where the tasks run.
    tasks : sequence of (name, function, args)
        One per item; ``function(*args)`` runs on a worker.
    on_done : callable
        Called on the client, in completion order, with the item's name and its task's
        result (e.g. to index the recording the task wrote). An error raised here fails
        that item only.
    desc, unit : str
        The progress bar's label and unit.
    progress : bool
        Show the bar (one step per finished item).
    already : int
        Items done before any task ran (e.g. up to date): the bar starts there.

    Returns
    -------
    list of (name, reason)
        The items that failed, with their one-line error, in completion order.
    """
    from distributed import as_completed

    from neurofm.progress import progress_bar

    run = uuid.uuid4().hex[:8]
    futures: dict[Any, str] = {}
    for i, (name, function, args) in enumerate(tasks):
        # A key of our own: Dask would otherwise key by the function name and arguments.
        key = f"neurofm-{desc}-{run}-{i}"
        futures[client.submit(function, *args, key=key, pure=False)] = name
    failed: list[tuple[str, str]] = []
    bar = progress_bar(total=len(futures) + already, desc=desc, unit=unit, disable=not progress)
    if already:
        bar.update(already)
    try:
        for future in as_completed(futures):
            name = futures[future]
            try:
                on_done(name, future.result())
            except Exception as exc:  # an item's failure never stops the others
                log.debug("%s failed", name, exc_info=True)
                failed.append((name, one_line(exc, name)))
            finally:
                future.release()
            bar.set_postfix_str(PurePosixPath(name).name)
            bar.update(1)
    except BaseException:  # interrupted: leave nothing running on the cluster
        client.cancel(list(futures))
        raise
    finally:
        bar.close()
    return failed


# --------------------------------------------------------------------------------------------
# pull
# --------------------------------------------------------------------------------------------


def _pull_asset(asset: Any, to: str, api_url: str) -> Any:
    """One asset pulled (verified) on a worker; a failure raises its one-line reason."""
    from neurofm.errors import SourceError
    from neurofm.sources import dandi

    report = dandi.pull_asset(asset, to, api_url=api_url)
    if report.failed:
        raise SourceError(report.failed[0][1])
    return report


def pull_on_client(
    client: Any,
    ref: str,
    to: str | os.PathLike[str],
    *,
    include: str | Sequence[str] | None = None,
    api_url: str | None = None,
    progress: bool = True,
) -> Any:
    """:func:`neurofm.sources.dandi.pull` with one Dask task per asset.

    Every asset is downloaded and verified on a worker (resuming a partial file, skipping a
    verified one) into ``to``, which the workers must share with this machine.

    Returns
    -------
    PullReport
        Merged over the assets; a failed asset is listed with its reason.
    """
    from neurofm.errors import SourceError
    from neurofm.sources import dandi

    dandiset = dandi.resolve(ref, api_url)
    assets = dandi.list_assets(dandiset, include)
    if not assets:
        raise SourceError(
            f"{dandiset.ref}: no NWB assets in version {dandiset.version}"
            + (f" match {include!r}" if include else "")
        )
    to = Path(to)
    merged = dandi.PullReport(dandiset.ref.dandiset_id, dandiset.version, to)
    for asset in assets:
        merged.assets[str(to / asset.path)] = asset

    def done(name: str, report: Any) -> None:
        merged.downloaded += report.downloaded
        merged.skipped += report.skipped
        merged.bytes_transferred += report.bytes_transferred

    # Each asset travels without its HTTP client; the task asks the server for its own.
    tasks = [
        (a.path, _pull_asset, (dataclasses.replace(a, remote=None), str(to), dandiset.api_url))
        for a in assets
    ]
    merged.failed = map_tasks(client, tasks, done, desc="pull", unit="asset", progress=progress)
    merged.downloaded.sort()
    merged.skipped.sort()
    return merged
