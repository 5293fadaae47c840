"""Choosing what trains: ``--accelerator auto|cpu|gpu --devices N --precision`` reach the
Lightning Trainer from the CLI, the train step spec and the Python API; ``auto`` is the
default (a GPU when there is one, this machine's CPU otherwise); the device is reported."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.accelerators import CPUAccelerator

from neurofm.cli import main
from neurofm.errors import NeuroFMError
from neurofm.models.poyo import POYOConfig
from neurofm.training import poyo as poyo_training
from neurofm.training import samba as samba_training
from neurofm.training.poyo import TrainConfig, train_poyo
from neurofm.training.resume import LastCheckpoint
from neurofm.training.samba import SambaTrainConfig, train_samba
from neurofm.training.trainer import device_summary, make_trainer

REPO = Path(__file__).resolve().parents[2]
SMALL = dataclasses.replace(POYOConfig.from_yaml(REPO / "models" / "poyo_tiny.yaml"), depth=1)
HERE = "cuda:0" if torch.cuda.is_available() else "cpu"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Built(Exception):
    """Raised once the Trainer is built: the test looks at it instead of training."""


@pytest.fixture
def built(monkeypatch):
    """Capture the Trainer the training functions build (and stop there)."""
    seen = {}

    def capture(out_dir, **kw):
        seen["trainer"] = make_trainer(out_dir, **kw)
        raise Built

    monkeypatch.setattr(poyo_training, "make_trainer", capture)
    monkeypatch.setattr(samba_training, "make_trainer", capture)
    return seen


def _every(trainer) -> int:
    return next(c for c in trainer.callbacks if isinstance(c, LastCheckpoint)).every_n_steps


def test_auto_is_the_default_and_resolves_to_this_machine(tmp_path):
    trainer = make_trainer(tmp_path, max_epochs=1, steps_per_epoch=1, progress=False)
    if HERE == "cpu":  # no GPU here: auto trains on the CPU
        assert isinstance(trainer.accelerator, CPUAccelerator)
    assert device_summary(trainer) == f"{HERE} (precision 32-true)"
    two = make_trainer(
        tmp_path,
        max_epochs=1,
        steps_per_epoch=1,
        progress=False,
        accelerator="cpu",
        devices=2,
        precision="64-true",
    )
    assert (two.num_devices, two.precision) == (2, "64-true")
    assert device_summary(two).startswith("2 x cpu, DDP")


def test_cli_device_options_reach_the_lightning_trainer(tmp_path, built):
    model = tmp_path / "small.yaml"
    model.write_text(yaml.safe_dump({"model": "poyo", **dataclasses.asdict(SMALL)}))
    pipe = tmp_path / "p.yaml"
    pipe.write_text(
        yaml.safe_dump(
            {
                "name": "dev",
                "dataset": str(REPO / "datasets" / "synthetic_reaching.yaml"),
                "steps": [{"ingest": {}}, {"train": {"model": str(model), "epochs": 1}}],
            }
        )
    )
    _reaching_catalog(tmp_path / "w" / "catalog")  # the pipeline's ingested catalog
    args = ["train", str(pipe), "--workdir", str(tmp_path / "w"), "--accelerator", "cpu"]
    with pytest.raises(Built):
        main([*args, "--precision", "bf16-mixed", "--checkpoint-every", "7"])
    trainer = built["trainer"]
    assert isinstance(trainer.accelerator, CPUAccelerator)
    assert (trainer.precision, trainer.num_devices, _every(trainer)) == ("bf16-mixed", 1, 7)
    # the same keys in the spec (here as overrides), and auto by default
    with pytest.raises(Built):
        main(["train", str(pipe), "--workdir", str(tmp_path / "w"), "steps.train.precision=64"])
    assert (built["trainer"].precision, device_summary(built["trainer"])) == (
        "64-true",
        f"{HERE} (precision 64-true)",
    )
    with pytest.raises(SystemExit):  # argparse: invalid choice
        main(["train", str(pipe), "--accelerator", "tpu"])
    assert main(["train", str(pipe), "steps.train.precision=17"]) == 1  # a SpecError line


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a GPU")
def test_a_gpu_this_machine_lacks_is_a_clear_error_before_anything_starts(tmp_path, capsys):
    message = (
        r"accelerator 'gpu': 1 GPU\(s\) asked for, torch sees 0 \(torch .*\); use "
        r"--accelerator cpu \(or auto, which takes a GPU when there is one\)"
    )
    with pytest.raises(NeuroFMError, match=message):
        make_trainer(tmp_path, max_epochs=1, steps_per_epoch=1, accelerator="gpu")
    # the pipeline: refused before its baselines start in a second process
    model = tmp_path / "small.yaml"
    model.write_text(yaml.safe_dump({"model": "poyo", **dataclasses.asdict(SMALL)}))
    pipe = tmp_path / "p.yaml"
    steps = [{"ingest": {}}, {"train": {"model": str(model)}}, {"evaluate": {}}]
    pipe.write_text(yaml.safe_dump({"name": "gpu", "dataset": str(REPO / "datasets" /
                                    "synthetic_reaching.yaml"), "steps": steps}))  # fmt: skip
    _reaching_catalog(tmp_path / "w" / "catalog")
    code = main(["train", str(pipe), "--workdir", str(tmp_path / "w"), "--accelerator", "gpu"])
    err = capsys.readouterr().err
    assert code == 1 and re.search(f"neurofm: error: {message}", err), err
    assert "second process" not in err and "Traceback" not in err
    assert not (tmp_path / "w" / "poyo").exists()


def _reaching_catalog(out: Path) -> Path:
    from neurofm.pipeline import ingest
    from neurofm.specs import load_card
    from neurofm.synthetic import generate_reaching_dataset

    generate_reaching_dataset(
        out.parent / "raw",
        n_subjects=1,
        n_sessions=1,
        n_trials=30,
        n_units_range=(20, 25),
        progress=False,
    )
    card = load_card(REPO / "datasets" / "synthetic_reaching.yaml")
    assert ingest(out.parent / "raw", out, card=card, progress=False).ok
    return out


def test_finetune_device_options_reach_the_trainer(pretrained_poyo, tmp_path, built):
    root, ckpt = pretrained_poyo
    with pytest.raises(Built):
        main(
            [
                "finetune",
                str(ckpt),
                str(root / "cat_new"),
                "--out",
                str(tmp_path),
                "--accelerator",
                "cpu",
                "--precision",
                "64-true",
                "--epochs",
                "1",
            ]
        )
    assert built["trainer"].precision == "64-true"
    assert isinstance(built["trainer"].accelerator, CPUAccelerator)


def test_samba_takes_the_same_options(tiny_samba_catalog, tmp_path, built):
    from samba_factory import small_config

    with pytest.raises(Built):
        train_samba(
            tiny_samba_catalog,
            small_config(),
            SambaTrainConfig(epochs=1, batch_size=4),
            tmp_path,
            progress=False,
            accelerator="cpu",
            precision="bf16-mixed",
            checkpoint_every_n_steps=2,
        )
    assert (built["trainer"].precision, _every(built["trainer"])) == ("bf16-mixed", 2)


def test_bf16_mixed_precision_trains_poyo_on_cpu(pretrained_poyo, tmp_path):
    """bf16 autocast used to crash POYO's windowed CPU attention (complex views of bf16)."""
    root, _ = pretrained_poyo
    cfg = TrainConfig(epochs=1, batch_size=16, unit_dropout=None)
    module, ckpt = train_poyo(
        root / "cat_pre",
        SMALL,
        cfg,
        tmp_path,
        progress=False,
        max_steps=2,
        accelerator="cpu",
        precision="bf16-mixed",
    )
    assert module.global_step == 2 and ckpt.is_file()
    assert torch.isfinite(module.trainer.callback_metrics["train_loss"])
