"""Training progress in a log file: whole lines, one per epoch, never a carriage return."""

from __future__ import annotations

import io
import re
import sys

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from neurofm.training.progress import EpochLines, TrainBar, progress_callbacks
from neurofm.training.trainer import make_trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.model(x), y), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader(n: int = 16) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


def test_a_log_file_gets_one_line_per_epoch_and_no_redraws(tmp_path, monkeypatch):
    """stdout and stderr redirected to files, as in ``neurofm run ... > out 2> log``."""
    err_path, out_path = tmp_path / "stderr.log", tmp_path / "stdout.log"
    with open(err_path, "w") as err, open(out_path, "w") as out:
        monkeypatch.setattr(sys, "stderr", err)
        monkeypatch.setattr(sys, "stdout", out)
        trainer = make_trainer(tmp_path / "run", max_epochs=3, steps_per_epoch=4, progress=True)
        trainer.fit(Tiny(), _loader(), _loader(8))
    assert [type(c) for c in trainer.callbacks if isinstance(c, EpochLines)] == [EpochLines]
    text = err_path.read_text() + out_path.read_text()
    assert "\r" not in text
    epoch_lines = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 3, text
    for k, line in enumerate(epoch_lines, start=1):
        # validation ran before the line was written: its metric is in it
        assert re.fullmatch(
            rf"epoch {k}/3: 4 steps, \d+\.\d s, train_loss [-0-9.e]+, val_loss [-0-9.e]+", line
        ), line
    assert "Validation" not in text  # no nested validation bar either


def test_step_lines_every_n_steps():
    lines = io.StringIO()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        callbacks=[EpochLines(every_n_steps=2, file=lines)],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(Tiny(), _loader(), _loader(8))
    got = lines.getvalue().splitlines()
    # 4 steps per epoch: steps 2 and 4 of each epoch, then the epoch's line
    assert [line.split(",")[0] for line in got] == [
        "epoch 1/2: step 2/4",
        "epoch 1/2: step 4/4",
        "epoch 1/2: 4 steps",
        "epoch 2/2: step 2/4",
        "epoch 2/2: step 4/4",
        "epoch 2/2: 4 steps",
    ]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_callbacks_choose_by_stream():
    assert progress_callbacks(False) == []
    (bar,) = progress_callbacks(True, file=_Tty())
    assert isinstance(bar, TrainBar)
    assert bar.init_validation_tqdm().disable  # no nested validation bar on a terminal
    (lines,) = progress_callbacks(True, file=io.StringIO())
    assert isinstance(lines, EpochLines)
