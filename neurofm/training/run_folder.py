"""One training at a time in a run folder.

Two trainings started into one folder (a second terminal, a job submitted twice) would both
write ``last.ckpt``, ``losses.csv`` and the logs: the folder would end up holding one run's
model beside the other's scores, and both would report success. The first to start holds an
exclusive lock on ``.neurofm-train.lock`` in the folder (``flock``: released by the kernel
when the process ends, however it ends) and the second is refused, naming the first.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from neurofm.errors import NeuroFMError

__all__ = ["LOCK_NAME", "claim_run_folder", "warn_if_replacing"]

log = logging.getLogger(__name__)

LOCK_NAME = ".neurofm-train.lock"


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def claim_run_folder(out_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``out_dir`` for one training while the block runs.

    Only the process of global rank 0 takes it (DDP ranks that Lightning forks inherit it;
    ranks that ``torchrun`` or ``srun`` start are that run's, not a second one).

    Raises
    ------
    NeuroFMError
        Another training holds the folder.
    """
    from neurofm.training.trainer import global_rank

    if global_rank() != 0:
        yield
        return
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if not _try_lock(fd):
            try:
                holder = json.loads(path.read_text())
                who = f"process {holder['pid']} on {holder['host']}, since {holder['since']}"
            except (OSError, ValueError, KeyError, TypeError):
                who = "another process"
            raise NeuroFMError(
                f"{out_dir}: another training is writing to this folder ({who}); wait for it "
                "to end, or train into another folder (--workdir, or the train step's out)"
            )
        since = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def warn_if_replacing(out_dir: str | os.PathLike[str], resume: object) -> None:
    """Say so when a training that does not resume will replace an earlier run's
    ``last.ckpt`` (it does: a re-run without ``--resume`` starts over)."""
    last = Path(out_dir) / "last.ckpt"
    if resume is None and last.is_file():
        log.warning(
            "%s: an earlier run's checkpoint; this run starts over and replaces it (--resume "
            "continues it instead)",
            last,
        )
