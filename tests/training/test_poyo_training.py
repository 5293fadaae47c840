"""POYO training on synthetic reaching data: it learns, resumes exactly, runs under DDP, and
the CLI and pipeline steps drive it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.cli import main
from neurofm.evaluation.poyo import evaluate_poyo
from neurofm.models.poyo import POYOConfig
from neurofm.pipeline import ingest
from neurofm.specs import load_card
from neurofm.synthetic import generate_reaching_dataset
from neurofm.training.poyo import TrainConfig, load_poyo, train_poyo

REPO = Path(__file__).resolve().parents[2]
TINY = POYOConfig.from_yaml(REPO / "models" / "poyo_tiny.yaml")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("poyo")
    generate_reaching_dataset(
        root / "raw",
        n_subjects=1,
        n_sessions=2,
        n_trials=60,
        n_units_range=(50, 60),
        progress=False,
    )
    report = ingest(
        root / "raw",
        root / "catalog",
        card=load_card(REPO / "datasets" / "synthetic_reaching.yaml"),
        progress=False,
    )
    assert report.ok
    return root / "catalog"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_tiny_poyo_learns_to_decode_velocity(catalog, tmp_path):
    """Loss falls and the stitched test R^2 of the tiny model reaches 0.6 (fixed seed)."""
    cfg = TrainConfig(epochs=60, batch_size=8, lr=1e-3, unit_dropout=None)
    module, ckpt = train_poyo(catalog, TINY, cfg, tmp_path / "run", progress=False)
    import pandas as pd

    metrics = pd.read_csv(next((tmp_path / "run" / "logs").rglob("metrics.csv")))
    losses = metrics["train_loss"].dropna().to_numpy()
    assert losses[-20:].mean() < 0.6 * losses[:20].mean()
    model, scaler, _ = load_poyo(ckpt)
    result = evaluate_poyo(model, scaler, catalog, "hand_vel", "test")
    assert set(result.r2) == {"sub-S0_ses-20240304", "sub-S0_ses-20240311"}
    assert result.mean_r2 >= 0.6, result.r2


def test_resume_continues_exactly(catalog, tmp_path):
    """Two epochs in one go equal one epoch, a checkpoint, and one more epoch resumed."""
    small = dataclasses.replace(TINY, depth=1)
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, unit_dropout=(20, 40, 60))
    straight, _ = train_poyo(catalog, small, cfg, tmp_path / "a", progress=False)
    _, ckpt = train_poyo(catalog, small, cfg, tmp_path / "b", progress=False, stop_after_epochs=1)
    resumed, _ = train_poyo(catalog, small, cfg, tmp_path / "b", resume=ckpt, progress=False)
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        if torch.is_tensor(a):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_catalog_read_once_and_each_recording_opened_once(catalog, tmp_path, monkeypatch):
    """Before the first step (and for the whole run) the catalog index is read once and every
    recording opened once; a resumed run builds no throw-away model."""
    from neurofm.data.catalog import Catalog
    from neurofm.data.recording import Recording
    from neurofm.training import poyo

    counts: dict[str, int] = {}
    at_first_step: dict[str, int] = {}
    real_init, real_open = Catalog.__init__, Recording.open.__func__
    real_poyo, real_step = poyo.POYO.__init__, poyo.POYOModule.on_train_batch_start

    def count(key: str) -> None:
        counts[key] = counts.get(key, 0) + 1

    def catalog_init(self, *args, **kwargs):
        count("catalog")
        real_init(self, *args, **kwargs)

    def recording_open(cls, path):
        count(Path(path).stem)
        return real_open(cls, path)

    def poyo_init(self, *args, **kwargs):
        count("model")
        real_poyo(self, *args, **kwargs)

    def first_step(self, batch, batch_idx):
        if not at_first_step:
            at_first_step.update(counts)
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(Catalog, "__init__", catalog_init)
    monkeypatch.setattr(Recording, "open", classmethod(recording_open))
    monkeypatch.setattr(poyo.POYO, "__init__", poyo_init)
    monkeypatch.setattr(poyo.POYOModule, "on_train_batch_start", first_step)
    small = dataclasses.replace(TINY, depth=1)
    cfg = TrainConfig(epochs=2, batch_size=8, unit_dropout=None)
    ids = ["sub-S0_ses-20240304", "sub-S0_ses-20240311"]
    once = {"catalog": 1, "model": 1, **dict.fromkeys(ids, 1)}
    _, ckpt = train_poyo(catalog, small, cfg, tmp_path / "run", progress=False, stop_after_epochs=1)
    assert at_first_step == once
    assert counts == once  # validation reads through the same open recordings
    counts.clear()
    at_first_step.clear()
    train_poyo(catalog, small, cfg, tmp_path / "run", progress=False, resume=ckpt)
    assert at_first_step == counts == once  # the model loaded from the checkpoint, only


@pytest.mark.slow
def test_ddp_spawn_on_two_cpu_processes(catalog, tmp_path):
    small = dataclasses.replace(TINY, depth=1)
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3, unit_dropout=None)
    module, ckpt = train_poyo(
        catalog,
        small,
        cfg,
        tmp_path / "ddp",
        devices=2,
        strategy="ddp_spawn",
        progress=False,
        max_steps=3,
    )
    model, _, _ = load_poyo(ckpt)  # written by rank 0, loads like any other
    assert model.config.depth == 1
    assert ckpt.is_file()


def test_cli_evaluate_prints_r2_and_plots(catalog, tmp_path, capsys):
    small = dataclasses.replace(TINY, depth=1)
    cfg = TrainConfig(epochs=1, batch_size=8, unit_dropout=None)
    _, ckpt = train_poyo(catalog, small, cfg, tmp_path / "run", progress=False, max_steps=2)
    plot = tmp_path / "pred.png"
    assert main(["evaluate", str(ckpt), str(catalog), "--json", "--plot", str(plot)]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["split"] == "test" and set(out["r2"]) == {
        "sub-S0_ses-20240304",
        "sub-S0_ses-20240311",
    }
    assert np.isfinite(out["mean_r2"]) and plot.stat().st_size > 10_000
    assert main(["evaluate", str(tmp_path / "nope.ckpt"), str(catalog)]) == 1
    assert "no such checkpoint" in capsys.readouterr().err
