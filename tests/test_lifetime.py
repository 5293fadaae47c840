"""Child processes that end with their parent, killed or not (``neurofm.lifetime``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's prctl")

# A parent that starts a child, prints the child's pid and waits; the child ties itself to the
# parent (or not) and sleeps.
PARENT = textwrap.dedent(
    """
    import multiprocessing, os, sys, time
    from neurofm.lifetime import die_with_parent

    def child(parent, tie):
        if tie:
            assert die_with_parent(parent)
        time.sleep(60)

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("spawn")
        p = ctx.Process(target=child, args=(os.getpid(), sys.argv[1] == "tie"))
        p.start()
        print(p.pid, flush=True)
        time.sleep(60)
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended (its parent, pid 1 here, reaps it)


def _kill_parent_and_see_child(tmp_path: Path, tie: str) -> bool:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), tie], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    return alive


def test_a_tied_child_ends_when_its_parent_is_killed(tmp_path):
    assert not _kill_parent_and_see_child(tmp_path, "tie")


def test_an_untied_child_outlives_a_killed_parent(tmp_path):
    # what the tie is for: a daemon process is stopped by a parent that exits, not killed
    assert _kill_parent_and_see_child(tmp_path, "no")


def test_a_child_whose_parent_is_already_gone_exits_at_once(tmp_path):
    code = "from neurofm.lifetime import die_with_parent; die_with_parent(1); print('ran on')"
    # this process's parent is the test's, never pid 1: the tie finds another parent and exits
    done = subprocess.run([sys.executable, "-c", code.replace("(1)", "(999999999)")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1 and "ran on" not in done.stdout
