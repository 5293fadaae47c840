"""Helpers of the fault tests (importable: ``tests/faults`` is on the path of its tests)."""

from __future__ import annotations

import contextlib
import io

from neurofm.cli import main


def run_main(*argv: str) -> tuple[int, str, str]:
    """``neurofm ARGV`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()
