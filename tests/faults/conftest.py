"""Fixtures of the fault tests: tiny synthetic reaching sessions (NWB) and a catalog of them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def reaching_raw(tmp_path_factory) -> Path:
    """Eight tiny reaching sessions (two subjects x four) in DANDI layout, a few seconds each."""
    from neurofm.synthetic import generate_reaching_dataset

    root = tmp_path_factory.mktemp("faults_raw") / "dandiset"
    generate_reaching_dataset(
        root, n_subjects=2, n_sessions=4, n_trials=6, n_units_range=(6, 8), progress=False
    )
    return root


@pytest.fixture()
def reaching_catalog(reaching_raw, tmp_path) -> Path:
    """A fresh catalog of subject S0's four sessions (copied from a session-wide ingest)."""
    return _copy_of_catalog(reaching_raw, tmp_path)


_INGESTED: dict[Path, Path] = {}


def _copy_of_catalog(raw: Path, tmp_path: Path) -> Path:
    from neurofm.pipeline import ingest

    if raw not in _INGESTED:
        done = raw.parent / "catalog_S0"
        assert ingest(raw / "sub-S0", done, progress=False).ok
        _INGESTED[raw] = done
    out = tmp_path / "catalog"
    shutil.copytree(_INGESTED[raw], out)
    return out
