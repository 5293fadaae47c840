"""Child processes that end with their parent.

neurofm starts processes of its own: the baselines' second process while a model trains
(:mod:`neurofm.evaluation.background`) and Lightning's DDP ranks under ``ddp_fork`` or
``ddp_spawn``. When the parent ends normally it stops them; killed (``kill -9``, the OOM
killer, a closed SSH session), it cannot, and they would run on: DDP ranks finishing the
training and rewriting ``last.ckpt`` beside a user's resumed run. Linux can tie a child's
life to its parent's (``prctl(PR_SET_PDEATHSIG)``, which nothing in Python's standard library
or in multiprocessing exposes: hence ctypes); elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

__all__ = ["die_with_parent"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> bool:
    """Have the kernel kill this process (SIGKILL) when ``parent`` ends.

    Called first thing in the child. SIGKILL, not SIGTERM: the child's work is lost either
    way, and what it writes is written atomically (a temporary name, then a rename), so a
    kill leaves the previous file whole. The signal comes when the *thread* that started the
    child ends, so start children from a thread that lives as long as the process (the main
    thread, as neurofm does).

    Parameters
    ----------
    parent : int
        The parent's process id, as the parent saw it (``os.getpid()`` before starting the
        child): if it has already ended, this process exits at once.

    Returns
    -------
    bool
        Whether the tie was made (False off Linux, or where ``prctl`` is refused).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            log.debug("prctl(PR_SET_PDEATHSIG) refused: errno %d", ctypes.get_errno())
            return False
    except (OSError, AttributeError):  # no libc to load, or no prctl in it
        return False
    if os.getppid() != parent:  # the parent ended before the tie was made
        os._exit(1)
    return True
