"""README.md is executed documentation: every ```bash and ```python block runs, in order.

The blocks run in a temporary folder that holds the README's own relative paths (``pipelines/``,
``datasets/``, ``models/`` of this repository), on the data the README's own commands generate
(``neurofm synth ...``), with the ``neurofm`` console script of this environment. A block that
cannot run here says so in the README itself, just above it:
``<!-- readme-test: skip (why) -->``. Long work (training) runs with the quick overrides the
README documents (``--epochs 2``), so the whole file runs in about a minute.

Shell blocks run with ``bash -e -o pipefail`` in a process group of their own (a background
``neurofm serve`` is stopped even when a block fails); Python blocks run in this process (one
torch import for all of them), each in a fresh namespace, kept for the checks below.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: The README's relative paths that must exist where its blocks run.
SHARED = ("pipelines", "datasets", "models")
#: Seconds one block may take before the test gives up on it.
BLOCK_TIMEOUT = 300

_FENCE = re.compile(
    r"(?:<!--\s*readme-test:\s*skip\s*\((?P<why>[^)]*)\)\s*-->\s*\n)?"
    r"^```(?P<lang>bash|python)\n(?P<code>.*?)^```\s*$",
    re.MULTILINE | re.DOTALL,
)


@dataclass
class Block:
    """One fenced block of the README."""

    index: int
    line: int
    lang: str
    code: str
    skip: str | None = None
    # filled in when it runs
    ran: bool = False
    ok: bool = False
    out: str = ""
    err: str = ""
    seconds: float = 0.0
    namespace: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"block{self.index:02d}-{self.lang}-L{self.line}"


def parse_blocks(text: str) -> list[Block]:
    """Every ```bash / ```python block, with its line and its skip note (if any)."""
    return [
        Block(
            i,
            text.count("\n", 0, m.start("code")) + 1,
            m.group("lang"),
            m.group("code"),
            m.group("why"),
        )
        for i, m in enumerate(_FENCE.finditer(text))
    ]


BLOCKS = parse_blocks(README.read_text())


def _run_bash(block: Block, cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", "-c", block.code],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: background jobs are stopped below
    )
    try:
        block.out, block.err = proc.communicate(timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        block.err = f"timed out after {BLOCK_TIMEOUT} s"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    block.ok = proc.returncode == 0 and "timed out" not in block.err


def _run_python(block: Block, cwd: Path) -> None:
    import traceback

    import torch

    out, err = io.StringIO(), io.StringIO()
    here, threads = Path.cwd(), torch.get_num_threads()
    os.chdir(cwd)
    torch.set_num_threads(1)  # 2 busy cores: one thread is as fast and never thrashes
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = compile(block.code, f"README.md, block at line {block.line}", "exec")
            exec(code, block.namespace)  # noqa: S102 - the README's own code, on purpose
        block.ok = True
    except Exception:
        block.err = traceback.format_exc()
    finally:
        os.chdir(here)
        torch.set_num_threads(threads)
        block.out = out.getvalue()
        block.err = err.getvalue() + block.err


#: The port the README's `neurofm serve` listens on.
README_PORT = 8765


def _port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def readme(tmp_path_factory) -> list[Block]:
    """Every block run in order in one folder (a failed block does not stop the next)."""
    assert _port_is_free(README_PORT), (
        f"port {README_PORT}, which README.md's `neurofm serve` uses, is taken on this machine"
    )
    work = tmp_path_factory.mktemp("readme")
    for name in SHARED:
        (work / name).symlink_to(REPO / name, target_is_directory=True)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    env.pop("NEUROFM_DANDI_API", None)  # the README says where its server is
    blocks = parse_blocks(README.read_text())
    for block in blocks:
        if block.skip is not None:
            continue
        t0 = time.perf_counter()
        if block.lang == "bash":
            _run_bash(block, work, env)
        else:
            _run_python(block, work)
        block.ran, block.seconds = True, time.perf_counter() - t0
    return blocks


def _find(blocks: list[Block], text: str) -> Block:
    found = [b for b in blocks if text in b.code]
    assert len(found) == 1, f"{len(found)} README blocks contain {text!r}"
    return found[0]


# --------------------------------------------------------------------------------------------
# the README itself
# --------------------------------------------------------------------------------------------


def test_the_readme_has_blocks_and_skips_only_with_a_reason():
    assert len(BLOCKS) >= 8
    assert {b.lang for b in BLOCKS} == {"bash", "python"}
    for block in BLOCKS:
        assert block.skip is None or len(block.skip.strip()) > 10, block.name
    # most of it runs: a skip is the exception
    assert sum(b.skip is None for b in BLOCKS) >= len(BLOCKS) - 4


def test_no_block_needs_the_network():
    """Only the local DANDI server (`neurofm serve`) is reached; nothing is downloaded."""
    for block in BLOCKS:
        if block.skip is not None:
            continue
        urls = re.findall(r"https?://[^\s'\"]+", block.code)
        assert all(re.match(r"https?://127\.0\.0\.1[:/]", u) for u in urls), (block.name, urls)
        assert "PORT" not in block.code, f"{block.name}: a placeholder instead of a real port"
        assert not re.search(r"\b(pip|curl|wget|git clone)\b", block.code), block.name


def test_parser_finds_skip_notes_and_lines():
    text = (
        "intro\n\n<!-- readme-test: skip (it takes hours here) -->\n```bash\nmake x\n```\n"
        "```python\nprint(1)\n```\n```\nnot run\n```\n"
    )
    blocks = parse_blocks(text)
    assert [(b.lang, b.line, b.skip, b.code) for b in blocks] == [
        ("bash", 5, "it takes hours here", "make x\n"),
        ("python", 8, None, "print(1)\n"),
    ]


# --------------------------------------------------------------------------------------------
# every block runs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[b.name for b in BLOCKS])
def test_block_runs(readme, index):
    block = readme[index]
    if block.skip is not None:
        pytest.skip(f"README: {block.skip}")
    assert block.ran
    assert block.ok, (
        f"README.md block at line {block.line} failed after {block.seconds:.1f} s:\n"
        f"{block.code}\n--- stdout (end) ---\n{block.out[-3000:]}\n"
        f"--- stderr (end) ---\n{block.err[-3000:]}"
    )


# --------------------------------------------------------------------------------------------
# what the blocks show is what the README says
# --------------------------------------------------------------------------------------------


def test_quickstart_output(readme):
    block = _find(readme, "neurofm info catalog --json")
    assert block.ok
    assert "catalog catalog: 4 recordings" in block.out
    assert "4 ingested, 0 up to date, 0 failed -> catalog" in block.out


def test_the_window_example_lands_in_a_trial(readme):
    block = _find(readme, "lazy.window(")
    assert block.ok, block.err
    win = block.namespace["win"]
    assert win.absolute_start == 8.0
    assert len(win.trials) >= 1  # the trial overlapping the window, not an empty table
    assert len(win.spikes) > 0 and win.hand_vel.data.shape[1] == 2
    assert list(win.hand_vel.channels) == ["x", "y"]


def test_single_file_ingest_gives_distinct_ids(readme):
    block = _find(readme, "neurofm info catalog-files")
    assert block.ok, block.err
    assert "-> sub-01_ses-01_task-stim_run-1\n" in block.out
    assert "-> sub-01_ses-01_task-stim_run-1_bold\n" in block.out
    assert "catalog catalog-files: 2 recordings" in block.out


def test_served_pipeline_and_evaluate(readme):
    block = _find(readme, "neurofm serve raw")
    assert block.ok, block.err
    assert "API URL: http://127.0.0.1:8765/api" in block.out
    assert "pull: 4 downloaded" in block.out
    # the demo holds one session out of training: evaluate skips it and says why
    assert "skipped sub-S1_ses-20240312: not a session the model was trained on" in block.out
    assert "plot: pred.png" in block.out


def test_python_training_quickstart_scores(readme):
    block = _find(readme, "train_poyo(")
    assert block.ok, block.err
    result = block.namespace["result"]
    assert set(result.r2) == {
        "sub-S0_ses-20240304",
        "sub-S0_ses-20240311",
        "sub-S1_ses-20240305",
        "sub-S1_ses-20240312",
    }
    assert all(math.isfinite(v) for v in result.r2.values())


def test_the_one_call_new_session_blocks(readme):
    shell = _find(readme, "neurofm adapt poyo-tiny-synthetic")
    assert shell.ok, shell.err
    # the shipped model was pretrained on another synthetic sub-S1_ses-20240312 (other data):
    # this session gets rows of its own, under its id and checksum
    assert "adapted (unit-id) to sub-S1_ses-20240312@" in shell.out
    assert "0 already known" in shell.out
    python = _find(readme, "neurofm.load_pretrained(")
    assert python.ok, python.err
    velocity, adapted = python.namespace["velocity"], python.namespace["adapted"]
    assert velocity.data.shape[1] == 2 and len(velocity) > 1000
    assert adapted.card.scores["adaptation"]["n"] >= 1
