"""The Lightning ``Trainer`` every neurofm model trains with: logs, checkpoints, quiet output."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

__all__ = ["device_summary", "make_trainer", "quiet_lightning"]

log = logging.getLogger(__name__)


def quiet_lightning() -> None:
    """Lightning prints hardware banners, a product tip and a torch deprecation warning on every
    run; a user of neurofm cannot act on any of them."""
    import warnings

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # A mid-epoch resume is exact here: neurofm's ResumableSampler skips the trained batches.
    warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended")


def make_trainer(
    out_dir: str | Path,
    *,
    max_epochs: int,
    steps_per_epoch: int,
    max_steps: int = -1,
    accelerator: str = "auto",
    devices: int = 1,
    strategy: str = "auto",
    precision: str | int = "32-true",
    checkpoint_every_n_steps: int = 0,
    progress: bool = True,
    callbacks: list[Any] | None = None,
    **options: Any,
) -> pl.Trainer:
    """A Trainer writing CSV and TensorBoard logs, ``losses.csv`` and ``last.ckpt`` to
    ``out_dir``.

    ``last.ckpt`` is written atomically at the end of every epoch, every
    ``checkpoint_every_n_steps`` steps if given, and when training ends, with what a resumed
    run needs to continue exactly (:mod:`neurofm.training.resume`); a re-run without resuming
    overwrites it. ``accelerator`` (``auto``: a GPU when there is one), ``devices`` and
    ``precision`` are Lightning's; the device that trains is logged. Samplers are neurofm's own
    (they deal windows to DDP ranks themselves) and no sanity validation runs. ``options`` go to
    :class:`lightning.pytorch.Trainer` as they are.
    """
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from neurofm.training.checkpoints import CheckpointFile
    from neurofm.training.progress import progress_callbacks
    from neurofm.training.resume import LastCheckpoint, LossLog
    from neurofm.training.threads import AdaptiveThreads

    quiet_lightning()
    out_dir = Path(out_dir)
    trainer = pl.Trainer(
        default_root_dir=out_dir,
        max_epochs=max_epochs,
        max_steps=max_steps,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        precision=precision,
        logger=[CSVLogger(out_dir, name="logs"), TensorBoardLogger(out_dir, name="tb")],
        # last.ckpt is LastCheckpoint's (Lightning's ModelCheckpoint with save_top_k=0 writes
        # it only when training ends); CheckpointFile makes every write atomic and sealed.
        enable_checkpointing=False,
        plugins=[CheckpointFile()],
        callbacks=[
            LastCheckpoint(out_dir / "last.ckpt", checkpoint_every_n_steps),
            LossLog(out_dir),
            AdaptiveThreads(),  # a fair share of the cores on a shared machine (neurofm.threads)
            *(callbacks or []),
            # a bar on a terminal, one line per epoch in a log file (neurofm.training.progress)
            *progress_callbacks(progress),
        ],
        enable_progress_bar=progress,
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        **options,
    )
    log.info("training on %s -> %s", device_summary(trainer), out_dir)
    return trainer


def device_summary(trainer: pl.Trainer) -> str:
    """What trains, in words: ``cpu``, ``cuda:0``, ``2 x cuda, DDPStrategy``, and the precision.

    Parameters
    ----------
    trainer : lightning.pytorch.Trainer
        A configured trainer (``accelerator="auto"`` already resolved).

    Returns
    -------
    str
        E.g. ``"cpu (precision 32-true)"``.
    """
    device = trainer.strategy.root_device
    n = trainer.num_devices * trainer.num_nodes
    where = str(device) if n == 1 else f"{n} x {device.type}, {type(trainer.strategy).__name__}"
    return f"{where} (precision {trainer.precision})"
