"""The Lightning ``Trainer`` every neurofm model trains with: logs, checkpoints, quiet output."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

__all__ = ["make_trainer", "quiet_lightning"]


def quiet_lightning() -> None:
    """Lightning prints hardware banners, a product tip and a torch deprecation warning on every
    run; a user of neurofm cannot act on any of them."""
    import warnings

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def make_trainer(
    out_dir: str | Path,
    *,
    max_epochs: int,
    steps_per_epoch: int,
    max_steps: int = -1,
    accelerator: str = "cpu",
    devices: int = 1,
    strategy: str = "auto",
    progress: bool = True,
    callbacks: list[Any] | None = None,
    **options: Any,
) -> pl.Trainer:
    """A Trainer writing CSV and TensorBoard logs and ``last.ckpt`` (every epoch) to ``out_dir``.

    Samplers are neurofm's own (they deal windows to DDP ranks themselves), no sanity
    validation runs, and a re-run overwrites ``last.ckpt`` (Lightning would write
    ``last-v1.ckpt`` beside it and a pipeline would then evaluate the stale file). ``options``
    go to :class:`lightning.pytorch.Trainer` as they are.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    quiet_lightning()
    out_dir = Path(out_dir)
    return pl.Trainer(
        default_root_dir=out_dir,
        max_epochs=max_epochs,
        max_steps=max_steps,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        logger=[CSVLogger(out_dir, name="logs"), TensorBoardLogger(out_dir, name="tb")],
        callbacks=[
            ModelCheckpoint(
                dirpath=out_dir, save_last=True, save_top_k=0, enable_version_counter=False
            ),
            *(callbacks or []),
        ],
        enable_progress_bar=progress,
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        **options,
    )
