"""How many threads neurofm computes with: a fair share of the cores, not a collapse.

torch's intra-op pool (OpenMP) and numpy's BLAS pool start one thread per core. On a machine
nobody else uses that is the fastest choice, but lab machines are shared: when a CPU-bound
neighbour takes one of two cores, a two-thread step waits at every barrier for the thread the
kernel has descheduled, and OpenMP spins while it waits. We measured training at 0.2-2 steps/s
instead of 17 next to two other jobs (10x slower, where a fair share would be 3x).

The policy (:class:`ThreadPolicy`): use the cores nobody else is running on, at least one, at
most the ceiling the process started with; look again every few seconds while training and
follow the machine (a change must be seen twice in a row, so a short burst of work next door
does not make the pool flap). What others run is read from the kernel's instantaneous count of
runnable threads (``/proc/loadavg``, fourth field), minus this process's own runnable threads
(``/proc/self/task/*/stat``). Where ``/proc`` is missing the policy keeps the ceiling.

A change neurofm itself makes (its second process for the baselines ending) is announced with
:func:`look_again`: the next look comes at once and is followed without a second one, so the
training takes the freed core without waiting ~2 looks (3-6 s at one thread instead of two).

``NEUROFM_NUM_THREADS`` (or ``neurofm --threads N``) fixes the count and turns the policy off;
so does ``OMP_NUM_THREADS``, and so does a count the caller set with ``torch.set_num_threads``
below the number of cores (a lower ceiling is respected).
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ENV_THREADS",
    "ThreadChoice",
    "ThreadPolicy",
    "choose_threads",
    "cpu_cores",
    "idle_cores",
    "look_again",
    "other_runnable",
    "requested_threads",
]

log = logging.getLogger(__name__)

ENV_THREADS = "NEUROFM_NUM_THREADS"

# Set by look_again, cleared by the policy that acts on it.
_LOOK_NOW = threading.Event()


def look_again() -> None:
    """Tell this process's thread policy that the machine has just changed for a known reason
    (a process of this one's ended): the next :meth:`ThreadPolicy.recheck` looks at once and
    follows what it sees without waiting for a second look. One announcement serves one look
    (the first policy to recheck, or a :meth:`ThreadPolicy.start`, consumes it). Safe from any
    thread."""
    _LOOK_NOW.set()


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count and why it was chosen."""

    threads: int
    reason: str

    def __str__(self) -> str:
        return f"{self.threads} thread{'s' if self.threads != 1 else ''} ({self.reason})"


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def requested_threads(environ: dict[str, str] | None = None) -> int | None:
    """The count the user fixed: ``NEUROFM_NUM_THREADS``, else ``OMP_NUM_THREADS``, else None.

    Raises
    ------
    ValueError
        When ``NEUROFM_NUM_THREADS`` is not a positive integer (the message names it).
    """
    env = os.environ if environ is None else environ
    value = env.get(ENV_THREADS, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{ENV_THREADS}={value!r}: expected a positive integer")
        return int(value)
    omp = env.get("OMP_NUM_THREADS", "").strip()
    return int(omp) if omp.isdigit() and int(omp) > 0 else None


def choose_threads(
    cores: int, others: float | None, ceiling: int, requested: int | None = None
) -> ThreadChoice:
    """The thread count for a process given what else the machine runs.

    Parameters
    ----------
    cores : int
        Cores this process may use.
    others : float or None
        Threads of other processes running or waiting to run right now (None: unknown).
    ceiling : int
        The most threads to use (the count the process started with).
    requested : int or None
        A count the user fixed; it wins over everything else.

    Returns
    -------
    ThreadChoice
        ``threads = clip(cores - round(others), 1, ceiling)``: the free cores, at least one.
    """
    if requested is not None:
        return ThreadChoice(requested, f"{ENV_THREADS}/OMP_NUM_THREADS/--threads")
    ceiling = max(1, min(ceiling, cores))
    if others is None:
        return ThreadChoice(ceiling, f"{cores} cores, load unknown")
    threads = max(1, min(ceiling, _free(cores, others)))
    return ThreadChoice(threads, f"{cores} cores, {others:g} other runnable threads")


def _free(cores: int, others: float) -> int:
    """Cores left by ``others`` runnable threads of other processes (rounded), at least 0."""
    return max(0, cores - int(others + 0.5))


def idle_cores() -> int:
    """Cores of this process's that no other process is running on now (all of them where
    ``/proc`` cannot be read)."""
    cores, others = cpu_cores(), other_runnable()
    return cores if math.isnan(others) else _free(cores, others)


def _own_runnable(proc: Path) -> int:
    running = 0
    for stat in (proc / "self" / "task").glob("*/stat"):
        try:
            # "pid (comm) S ...": the state follows the last ')' (comm may hold spaces)
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        running += state == "R"
    return running


def other_runnable(samples: int = 5, interval: float = 0.002, proc: Path = Path("/proc")) -> float:
    """Threads of other processes running or runnable now (median of a few quick samples);
    ``nan`` where ``/proc`` cannot be read."""
    counts = []
    for i in range(samples):
        try:
            runnable = int((proc / "loadavg").read_text().split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            return float("nan")
        counts.append(max(0, runnable - _own_runnable(proc)))
        if i + 1 < samples:
            time.sleep(interval)
    return float(statistics.median(counts))


class ThreadPolicy:
    """Chooses torch's (and BLAS's) thread count now, and again every ``every`` seconds.

    Parameters
    ----------
    every : float
        Seconds between two looks at the machine during :meth:`recheck`.
    environ : dict, optional
        Environment to read the user's fixed count from (default ``os.environ``).
    """

    def __init__(self, every: float = 3.0, environ: dict[str, str] | None = None) -> None:
        import torch

        self.every = every
        self.cores = cpu_cores()
        self.requested = requested_threads(environ)
        self.initial = torch.get_num_threads()
        self.ceiling = min(self.initial, self.cores)
        self.threads = self.initial
        self._pending: int | None = None
        self._last = 0.0
        self._blas = None

    def _measure(self) -> ThreadChoice:
        others = other_runnable()
        known = None if math.isnan(others) else others
        return choose_threads(self.cores, known, self.ceiling, self.requested)

    def _set(self, threads: int) -> None:
        import torch

        try:
            from threadpoolctl import threadpool_limits

            if self._blas is not None:
                self._blas.restore_original_limits()
            self._blas = threadpool_limits(limits=threads, user_api="blas")
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            pass
        # last: BLAS libraries built on OpenMP (MKL) share torch's pool
        torch.set_num_threads(threads)
        self.threads = threads

    def start(self) -> ThreadChoice:
        """Choose the count for what follows and log it (once per training run)."""
        _LOOK_NOW.clear()  # this look is the one asked for
        choice = self._measure()
        self._set(choice.threads)
        self._last = time.monotonic()
        log.info("computing with %s; set %s to fix it", choice, ENV_THREADS)
        return choice

    def recheck(self) -> int:
        """Follow the machine: a new count is applied once two looks in a row agree, or at
        the first look after :func:`look_again`."""
        if self.requested is not None:
            return self.threads
        told = _LOOK_NOW.is_set()
        if not told and time.monotonic() - self._last < self.every:
            return self.threads
        _LOOK_NOW.clear()
        self._last = time.monotonic()
        choice = self._measure()
        if choice.threads == self.threads:
            self._pending = None
        elif told or choice.threads == self._pending:
            log.debug("threads %d -> %s", self.threads, choice)
            self._set(choice.threads)
            self._pending = None
        else:
            self._pending = choice.threads
        return self.threads

    def stop(self) -> None:
        """Give the process back the count it had before :meth:`start`."""
        import torch

        if self._blas is not None:
            self._blas.restore_original_limits()
            self._blas = None
        torch.set_num_threads(self.initial)
