"""The spike baselines fitted in a second process while the model trains.

The Wiener filter and the GRU decoder need the catalog, not the model: the evaluate step's
baselines can be fitted while the train step runs. ``neurofm run`` does so where two or more
cores are idle (the evaluate step's ``baselines_during_training``, on by default): the
second process computes with one thread, and the training process's thread policy
(:mod:`neurofm.threads`) sees it and takes the other cores, all of them again once it ends.
Measured on ``make demo`` (2 cores): its train and evaluate steps took 109-114 s instead of 83 +
58 s one after the other; the scores are the same (each baseline is seeded per recording).

The evaluate step uses the result only when it asks for exactly what was fitted (catalog,
target, split, baselines, options and sessions); otherwise it fits them itself, as without a
second process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import traceback
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from neurofm.evaluation.baselines import BaselineScores, score_baselines
from neurofm.lifetime import die_with_parent
from neurofm.specs import BaselineOptions
from neurofm.threads import ENV_THREADS, look_again

__all__ = ["BackgroundBaselines", "BaselineRequest"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineRequest:
    """What :func:`~neurofm.evaluation.baselines.score_baselines` is asked to fit and score."""

    catalog: Path
    target: str
    split: str
    names: tuple[str, ...]
    sessions: tuple[str, ...]
    options: BaselineOptions

    @classmethod
    def of(
        cls,
        catalog: str | Path,
        target: str,
        split: str,
        names: list[str] | tuple[str, ...],
        sessions: list[str] | tuple[str, ...],
        options: BaselineOptions | None = None,
    ) -> BaselineRequest:
        return cls(
            Path(catalog).resolve(),
            target,
            split,
            tuple(names),
            tuple(sessions),
            options or BaselineOptions(),
        )


def _fit(conn: Any, request: BaselineRequest, parent: int) -> None:
    """The second process: fit and score with one thread, send the scores (or the error)."""
    die_with_parent(parent)  # a daemon ends with a parent that exits, not one that is killed
    os.environ[ENV_THREADS] = "1"  # the baselines' own thread policy: one thread, fixed
    try:
        scores = score_baselines(
            request.catalog,
            request.target,
            request.split,
            list(request.names),
            list(request.sessions),
            request.options,
            progress=False,
        )
        conn.send(("ok", scores))
    except Exception as exc:  # noqa: BLE001 - re-raised in the parent, as the fit would raise
        try:
            conn.send(("error", exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle: its text
            conn.send(("error", RuntimeError(traceback.format_exc())))
    finally:
        conn.close()


def _announce_end(sentinel: int) -> None:
    """Wait for a process to end (without reaping it: its owner joins it), then tell the
    thread policy (:func:`neurofm.threads.look_again`)."""
    wait([sentinel])
    look_again()


class BackgroundBaselines:
    """Fit and score spike baselines in a second (spawned) process.

    Parameters
    ----------
    request : BaselineRequest
        What to fit and score.

    Notes
    -----
    Use it as a context manager, or call :meth:`cancel`: a process whose result is not
    taken is stopped. It is also a daemon, stopped when this process exits, and tied to
    this process's life (:func:`neurofm.lifetime.die_with_parent`), so a ``kill -9`` of this
    one ends it too.
    """

    def __init__(self, request: BaselineRequest) -> None:
        self.request = request
        # spawn, not fork: a forked child of a process that has started OpenMP threads may hang
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=_fit,
            args=(child, request, os.getpid()),
            name="neurofm-baselines",
            daemon=True,
        )
        self._process.start()
        child.close()  # the child's end lives in the child: EOF here when it dies
        # When it ends, the training beside it should take the freed core at once.
        threading.Thread(target=_announce_end, args=(self._process.sentinel,), daemon=True).start()
        log.info(
            "fitting baselines %s on %d sessions in a second process (pid %d)",
            ", ".join(request.names),
            len(request.sessions),
            self._process.pid,
        )

    @property
    def running(self) -> bool:
        """Whether the second process is still at work."""
        return self._process.is_alive()

    def scores(self, request: BaselineRequest) -> BaselineScores | None:
        """The scores, waiting for them if needed; None when ``request`` is not what is being
        fitted (the process is stopped) or the process died without an answer (logged).

        Raises
        ------
        Exception
            What fitting the baselines raised in the second process.
        """
        if request != self.request:
            log.info("the evaluate step asks for other baselines than those being fitted")
            self.cancel()
            return None
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError):
            self._process.join()
            log.warning(
                "the baselines' second process ended without a result (exit code %s); "
                "fitting them here",
                self._process.exitcode,
            )
            return None
        finally:
            self._conn.close()
        self._process.join()
        if status == "error":
            raise value
        value.background = True
        return value

    def cancel(self) -> None:
        """Stop the second process (nothing happens when it has ended)."""
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._conn.close()

    def __enter__(self) -> BackgroundBaselines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()
