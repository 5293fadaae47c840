"""The notebooks in ``notebooks/`` run top to bottom, and are committed without outputs.

Each notebook is executed by nbclient in a fresh kernel running this interpreter (the venv's,
where ipykernel is installed), with one thread for OpenMP and torch (the machine's cores are
shared), in a temporary working directory (``TMPDIR`` too, so what a notebook writes is
removed with it). A cell that raises fails the test, naming the notebook and showing the cell.
``NEUROFM_NOTEBOOK_OUT=DIR`` keeps the executed notebooks (with their outputs) in ``DIR``.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
#: Seconds any one cell may take before the notebook fails (the slowest trains for ~30 s).
CELL_TIMEOUT = 300


def test_the_six_notebooks_are_there():
    assert [n[:2] for n in NAMES] == ["01", "02", "03", "04", "05", "06"], NAMES


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{name}: cells {dirty} hold outputs; strip them before committing"
    assert nb.cells[0].cell_type == "markdown" and "What this shows" in nb.cells[0].source
    assert "What it needs" in nb.cells[0].source, f"{name}: the first cell says what it needs"
    assert "Where to go next" in nb.cells[-1].source, f"{name}: the last cell says where next"


def _kernel_env(monkeypatch, tmp_path: Path) -> None:
    """The kernel inherits this process's environment: one thread, temp files in tmp_path."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")  # warnings are output, not failures


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, tmp_path, monkeypatch):
    t0 = time.perf_counter()
    nb = _execute(NOTEBOOKS / name, tmp_path, monkeypatch)
    print(f"{name}: {time.perf_counter() - t0:.1f} s")  # shown with -s / in --durations
    keep = os.environ.get("NEUROFM_NOTEBOOK_OUT")
    if keep:  # the executed notebook, e.g. for a docs build or to look at the figures
        Path(keep).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, Path(keep) / name)


def test_a_failing_cell_names_the_notebook_and_shows_the_cell(tmp_path, monkeypatch):
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    nb = new_notebook(
        cells=[
            new_markdown_cell("x"),
            new_code_cell("a = 1"),
            new_code_cell("import math\nmath.sqrt(-a)"),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    nbformat.write(nb, tmp_path / "99_broken.ipynb")
    with pytest.raises(pytest.fail.Exception) as failed:
        _execute(tmp_path / "99_broken.ipynb", tmp_path, monkeypatch)
    message = str(failed.value)
    assert message.startswith("99_broken.ipynb: cell 2 raised:\nimport math\nmath.sqrt(-a)\n---")
    assert "ValueError: math domain error" in message and "\x1b[" not in message


def _execute(path: Path, tmp_path: Path, monkeypatch) -> Any:
    """Run a notebook in a fresh kernel; a failing cell fails the test, naming both."""
    from nbclient.exceptions import CellExecutionError

    _kernel_env(monkeypatch, tmp_path)
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    # A kernel for this interpreter, whatever kernelspecs the machine has installed.
    client.kernel_manager_class = _this_python_kernel_manager()
    try:
        client.execute()
    except CellExecutionError as exc:
        index, source = next(
            (
                (i, cell.source)
                for i, cell in enumerate(nb.cells)
                if cell.cell_type == "code"
                and any(o.get("output_type") == "error" for o in cell.get("outputs", []))
            ),
            (None, "(cell not found)"),
        )
        traceback = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # no terminal colours
        pytest.fail(
            f"{path.name}: cell {index} raised:\n{source}\n---\n{traceback}"[:6000], pytrace=False
        )
    return nb


def _this_python_kernel_manager():
    """A KernelManager whose python3 kernel is started with ``sys.executable``."""
    from jupyter_client.manager import KernelManager

    class ThisPythonKernelManager(KernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            return [sys.executable, *cmd[1:]] if cmd and "python" in Path(cmd[0]).name else cmd

    return ThisPythonKernelManager
