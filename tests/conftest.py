"""Shared test fixtures."""

from __future__ import annotations

import os

import pytest
import torch

# One thread per test process: `make test` runs one process per core (pytest-xdist), and two
# OpenMP threads per process on shared cores thrash. Subprocesses (the CLI, notebooks, DDP and
# Dask workers) inherit it through the environment; neurofm.threads reads NEUROFM_NUM_THREADS.
os.environ.setdefault("NEUROFM_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture
def one_torch_thread():
    """Train with one torch thread: two threads on a 2-core machine shared with anything else
    thrash (measured 10-50x slower), while one is as fast when the machine is idle."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_samba_catalog(tmp_path_factory):
    """A catalog of two tiny EEG-fMRI recordings (``samba_factory.make_recording``)."""
    from samba_factory import make_catalog

    return make_catalog(tmp_path_factory.mktemp("samba_cat") / "catalog")


@pytest.fixture(scope="session")
def tiny_samba(tiny_samba_catalog, tmp_path_factory):
    """A tiny SAMBA trained for 3 epochs on ``tiny_samba_catalog``: (module, checkpoint)."""
    from samba_factory import train_tiny

    return train_tiny(tiny_samba_catalog, tmp_path_factory.mktemp("samba_run"))


@pytest.fixture(scope="session")
def pretrained_poyo(tmp_path_factory):
    """A tiny POYO pretrained on two reaching sessions, and a catalog holding a third, held-out
    session: ``(root, checkpoint)`` with catalogs ``root / "cat_pre"`` and ``root / "cat_new"``
    (for the fine-tuning and few-shot tests)."""
    import dataclasses
    import shutil
    from pathlib import Path

    from neurofm.models.poyo import POYOConfig
    from neurofm.pipeline import ingest
    from neurofm.specs import load_card
    from neurofm.synthetic import generate_reaching_dataset
    from neurofm.training.poyo import TrainConfig, train_poyo

    repo = Path(__file__).resolve().parents[1]
    small = dataclasses.replace(POYOConfig.from_yaml(repo / "models" / "poyo_tiny.yaml"), depth=1)
    root = tmp_path_factory.mktemp("ft")
    generate_reaching_dataset(
        root / "raw",
        n_subjects=1,
        n_sessions=3,
        n_trials=30,
        n_units_range=(50, 55),
        progress=False,
    )
    files = sorted((root / "raw").rglob("*.nwb"))
    (root / "pre").mkdir()
    (root / "new").mkdir()
    for f in files[:2]:
        shutil.copy(f, root / "pre" / f.name)
    shutil.copy(files[2], root / "new" / files[2].name)
    card = load_card(repo / "datasets" / "synthetic_reaching.yaml")
    assert ingest(root / "pre", root / "cat_pre", card=card, progress=False).ok
    assert ingest(root / "new", root / "cat_new", card=card, progress=False).ok
    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-3, unit_dropout=None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, ckpt = train_poyo(
            root / "cat_pre", small, cfg, root / "pre_run", progress=False, max_steps=20
        )
    finally:
        torch.set_num_threads(threads)
    return root, ckpt


@pytest.fixture(scope="session")
def replica(tmp_path_factory):
    """``replica(card)``: that card's dandiset replica (``neurofm.testing.replicas``), built
    once per session with seed 0 and shared read-only; returns its ``ReplicaTruth``."""
    from neurofm.testing.replicas import build_replica

    built = {}

    def get(card: str):
        if card not in built:
            built[card] = build_replica(card, tmp_path_factory.mktemp(f"replica-{card}"), seed=0)
        return built[card]

    return get
