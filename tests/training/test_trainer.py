"""The Lightning Trainer every model trains with: where it writes, and that re-runs overwrite."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from neurofm.training.checkpoints import (
    CHECKSUM_KEY,
    checkpoint_format,
    read_checkpoint,
    training_state_digest,
    weights_digest,
)
from neurofm.training.trainer import make_trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Tiny(pl.LightningModule):
    """A linear regression that records what Lightning called, and tags its checkpoints."""

    def __init__(self) -> None:
        super().__init__()
        self.model = torch.nn.Linear(2, 1)
        self.calls: list[str] = []

    def training_step(self, batch, batch_idx):
        self.calls.append("train")
        x, y = batch
        return torch.nn.functional.mse_loss(self.model(x), y)

    def validation_step(self, batch, batch_idx):
        self.calls.append("valid")
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.model(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["neurofm"] = {"format": "neurofm.tiny", "inputs": 2}


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 2, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


def _fit(out, epochs: int) -> tuple[Tiny, pl.Trainer]:
    module = Tiny()
    trainer = make_trainer(out, max_epochs=epochs, steps_per_epoch=2, progress=False)
    trainer.fit(module, _loader(), _loader())
    return module, trainer


def test_last_ckpt_where_asked_with_logs(tmp_path):
    out = tmp_path / "runs" / "poyo"
    module, trainer = _fit(out, epochs=2)
    assert sorted(p.name for p in out.glob("*.ckpt")) == ["last.ckpt"]  # save_top_k=0
    assert (out / "logs").is_dir() and (out / "tb").is_dir()
    assert list((out / "logs").rglob("metrics.csv"))
    # no sanity validation before training: the first call is a training step
    assert module.calls[0] == "train"
    assert module.calls.count("train") == 4 and module.calls.count("valid") == 4
    assert trainer.global_step == 4
    # the checkpoint carries the module's neurofm section and its weights
    assert checkpoint_format(out / "last.ckpt") == "neurofm.tiny"
    meta, state = read_checkpoint(out / "last.ckpt", "neurofm.tiny", "tiny")
    # sealed: the section also holds the digest of the weights as written
    saved = torch.load(out / "last.ckpt")
    assert meta.pop(CHECKSUM_KEY) == weights_digest(saved["state_dict"])
    assert meta.pop("training_state_sha256") == training_state_digest(saved)  # optimizer too
    assert meta == {"format": "neurofm.tiny", "inputs": 2}
    assert torch.load(out / "last.ckpt", weights_only=True)["global_step"] == 4  # the final one
    torch.testing.assert_close(state["weight"], module.model.weight.detach())


def test_a_rerun_overwrites_last_ckpt(tmp_path):
    out = tmp_path / "run"
    _fit(out, epochs=1)
    first = torch.load(out / "last.ckpt", weights_only=True)
    module, _ = _fit(out, epochs=3)  # a second run into the same folder
    assert sorted(p.name for p in out.glob("*.ckpt")) == ["last.ckpt"]  # no last-v1.ckpt
    second = torch.load(out / "last.ckpt", weights_only=True)
    assert (first["global_step"], second["global_step"]) == (2, 6)
    torch.testing.assert_close(second["state_dict"]["model.weight"], module.model.weight.detach())


def test_options_reach_the_trainer(tmp_path):
    trainer = make_trainer(
        tmp_path, max_epochs=5, steps_per_epoch=1000, progress=False, max_steps=3, precision=64
    )
    assert trainer.max_steps == 3 and trainer.max_epochs == 5
    assert trainer.log_every_n_steps == 50  # capped at 50, at least 1
    assert make_trainer(tmp_path, max_epochs=1, steps_per_epoch=0).log_every_n_steps == 1
    assert trainer.precision == "64-true"


def test_seed_step_on_cpu_draws_what_manual_seed_draws():
    import torch

    from neurofm.training.trainer import seed_step

    torch.manual_seed(12345)
    want = torch.rand(5)
    torch.manual_seed(0)
    seed_step(12345, torch.device("cpu"))
    assert torch.equal(torch.rand(5), want)


def test_adamw_is_fused_on_cpu_and_updates_as_the_plain_one():
    import torch

    from neurofm.training.trainer import adamw

    torch.manual_seed(0)
    w = [torch.randn(7, 3, requires_grad=True), torch.randn(3, requires_grad=True)]
    plain = [p.detach().clone().requires_grad_() for p in w]

    def groups(params):
        return [{"params": params[:1], "weight_decay": 0.1}, {"params": params[1:]}]

    opt = adamw(groups(w), 1e-2)
    ref = torch.optim.AdamW(groups(plain), lr=1e-2)
    assert opt.defaults["fused"] and not ref.defaults["fused"]
    for _ in range(20):
        for a, b in zip(w, plain, strict=True):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        opt.step()
        ref.step()
    for a, b in zip(w, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
