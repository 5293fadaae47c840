"""The Lightning ``Trainer`` every neurofm model trains with: logs, checkpoints, quiet output."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from neurofm.errors import NeuroFMError
from neurofm.lifetime import die_with_parent

__all__ = [
    "EndWithLauncher",
    "adamw",
    "after_fit",
    "all_gather_objects",
    "check_accelerator",
    "device_summary",
    "global_rank",
    "make_trainer",
    "quiet_lightning",
    "rank_seed",
    "seed_step",
]

log = logging.getLogger(__name__)


def quiet_lightning() -> None:
    """Lightning prints hardware banners, a product tip and a torch deprecation warning on every
    run; a user of neurofm cannot act on any of them."""
    import warnings

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # A mid-epoch resume is exact here: neurofm's ResumableSampler skips the trained batches.
    warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended")


def check_accelerator(accelerator: str, devices: int = 1) -> None:
    """Refuse, in words, a device this machine does not have (Lightning raises
    ``MisconfigurationException: No supported gpu backend found!`` from deep inside).

    Parameters
    ----------
    accelerator : str
        ``auto``, ``cpu``, ``gpu``, ``cuda`` or ``mps``.
    devices : int
        How many of them, per node.

    Raises
    ------
    NeuroFMError
        No GPU visible to torch for ``gpu``/``cuda``, or fewer than ``devices`` of them; no
        Apple GPU for ``mps``.
    """
    if accelerator in ("gpu", "cuda"):
        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if found == 0 and accelerator == "gpu" and torch.backends.mps.is_available():
            return  # Lightning's "gpu" is the Apple GPU there
        if found < devices:
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise NeuroFMError(
                f"accelerator {accelerator!r}: {devices} GPU(s) asked for, torch sees {found} "
                f"(torch {torch.__version__}, {build}); use --accelerator cpu (or auto, which "
                "takes a GPU when there is one)"
            )
    elif accelerator == "mps" and not torch.backends.mps.is_available():
        raise NeuroFMError(
            "accelerator 'mps': torch sees no Apple GPU here; use --accelerator cpu or auto"
        )


class EndWithLauncher(pl.Callback):
    """DDP ranks that Lightning starts as processes of this one (``ddp_fork``,
    ``ddp_spawn``) end with it, even when it is killed (:func:`neurofm.lifetime.die_with_parent`):
    orphaned, they would finish the training and rewrite ``last.ckpt`` beside a resumed run.
    (torch ties them to it with SIGINT, which a job started with ``&`` from a script ignores.)
    Ranks that ``torchrun``, ``srun`` or Lightning's script launcher start build their own
    Trainer, and are their launchers' to manage."""

    def __init__(self) -> None:
        self.launcher = os.getpid()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if os.getpid() != self.launcher:
            die_with_parent(self.launcher)


def make_trainer(
    out_dir: str | Path,
    *,
    max_epochs: int,
    steps_per_epoch: int,
    max_steps: int = -1,
    accelerator: str = "auto",
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | int = "32-true",
    checkpoint_every_n_steps: int = 0,
    checkpoint_every_epoch: bool = True,
    progress: bool = True,
    callbacks: list[Any] | None = None,
    **options: Any,
) -> pl.Trainer:
    """A Trainer writing CSV and TensorBoard logs, ``losses.csv`` and ``last.ckpt`` to
    ``out_dir``.

    ``last.ckpt`` is written atomically at the end of every epoch (unless
    ``checkpoint_every_epoch`` is False), every ``checkpoint_every_n_steps`` steps if given, and
    when training ends, with what a resumed run needs to continue exactly
    (:mod:`neurofm.training.resume`); a re-run without resuming overwrites it. ``accelerator``
    (``auto``: a GPU when there is one), ``devices`` (per node), ``num_nodes``, ``strategy`` and
    ``precision`` are Lightning's; the device that trains is logged. Lightning finds its cluster
    environment itself: SLURM (``srun``), ``torchrun`` (TorchElastic) or its own launcher.
    Samplers are neurofm's own (they deal windows to DDP ranks themselves,
    :class:`~neurofm.training.datasets.ShardedSampler`); files and progress lines are written by
    global rank 0 only, and no sanity validation runs. ``options`` go to
    :class:`lightning.pytorch.Trainer` as they are.
    """
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from neurofm.training.checkpoints import CheckpointFile
    from neurofm.training.progress import progress_callbacks
    from neurofm.training.resume import LastCheckpoint, LossLog
    from neurofm.training.threads import AdaptiveThreads

    quiet_lightning()
    check_accelerator(accelerator, devices)
    out_dir = Path(out_dir)
    trainer = pl.Trainer(
        default_root_dir=out_dir,
        max_epochs=max_epochs,
        max_steps=max_steps,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        logger=[CSVLogger(out_dir, name="logs"), TensorBoardLogger(out_dir, name="tb")],
        # last.ckpt is LastCheckpoint's (Lightning's ModelCheckpoint with save_top_k=0 writes
        # it only when training ends); CheckpointFile makes every write atomic and sealed.
        enable_checkpointing=False,
        plugins=[CheckpointFile()],
        callbacks=[
            LastCheckpoint(out_dir / "last.ckpt", checkpoint_every_n_steps, checkpoint_every_epoch),
            LossLog(out_dir),
            AdaptiveThreads(),  # a fair share of the cores on a shared machine (neurofm.threads)
            EndWithLauncher(),
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


def global_rank() -> int:
    """This process's global rank in a multi-process run (0 otherwise).

    Known from the launcher's environment (``torchrun``'s ``RANK``, SLURM's ``SLURM_PROCID``,
    Lightning's own ``LOCAL_RANK``) before training and from the strategy once it runs
    (Lightning's ``rank_zero_only.rank``): what runs only once per job (reports, evaluation,
    summaries) runs where this is 0.
    """
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def rank_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of one training step on one rank: ``(seed, step)`` as a single process
    always had it, and distinct masks (dropout) on every other rank.

    Parameters
    ----------
    seed, step, rank : int
        The run's seed, the global step and the process's global rank.

    Returns
    -------
    int
    """
    return seed * 1_000_003 + step + (rank << 40)


def seed_step(seed: int, device: torch.device) -> None:
    """Seed the random draws (dropout masks) of one training step on ``device``.

    On the CPU only the CPU generator is seeded: ``torch.manual_seed`` also queues the seed
    for CUDA, which, CUDA not being initialised, records the caller's stack every call (1.7
    ms a step under Lightning's deep stack, 3 s of ``make demo``'s training).
    """
    if device.type == "cpu":
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)


def adamw(groups: list[dict[str, Any]], lr: float) -> torch.optim.AdamW:
    """AdamW over parameter groups, fused into one kernel per group where every parameter
    is on the CPU or a CUDA device (POYO tiny: 0.6 ms a step instead of 3.1 ms; the same
    updates to float rounding, 2e-7 after 50 steps)."""
    params = [p for g in groups for p in g["params"]]
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=lr, fused=fused or None)


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` across a DDP run (``[obj]`` in one process).

    For evaluation outputs whose sizes differ between ranks (each scores its own windows);
    every rank must call it, and every rank gets the whole list.

    Parameters
    ----------
    obj : picklable
        This rank's part (e.g. arrays of targets and predictions).

    Returns
    -------
    list
        One entry per rank, in rank order.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def after_fit(module: pl.LightningModule, trainer: pl.Trainer, checkpoint: str | Path) -> None:
    """Make ``module`` look trained in this process after ``trainer.fit``.

    Lightning's spawn and fork launchers (``ddp_spawn``, ``ddp_fork``) train in child
    processes and hand back only rank 0's weights and metrics: the module comes back detached
    and this process's trainer counted no step. Here the module is reattached and the loop
    counters (global step, epoch) are read from the ``last.ckpt`` rank 0 wrote, so summaries
    say how far training went. In-process runs (one device, ``torchrun``, SLURM) are left as
    they are.

    Parameters
    ----------
    module : LightningModule
        The module just fitted.
    trainer : Trainer
        The trainer that fitted it.
    checkpoint : str or Path
        The run's ``last.ckpt``.
    """
    if module._trainer is not None:
        return
    module.trainer = trainer
    if trainer.global_step == 0 and Path(checkpoint).is_file():
        from neurofm.training.checkpoints import load_checkpoint

        loops = load_checkpoint(checkpoint).get("loops") or {}
        if "fit_loop" in loops:
            trainer.fit_loop.load_state_dict(loops["fit_loop"])
