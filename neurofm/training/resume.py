"""Crash-safe training: ``last.ckpt`` every epoch (and every N steps), exact resumes, a loss log.

A run killed at any moment (``kill -9``, a lost node) loses at most the steps since its last
checkpoint, and ``resume`` continues it as if it had never stopped:

* :class:`LastCheckpoint` writes ``last.ckpt`` at the end of every epoch (unless told not to:
  an adaptation, which nothing resumes), optionally every N training steps, and when training
  ends; each write is atomic (:class:`~neurofm.training.checkpoints.CheckpointFile`) and
  records the :class:`~neurofm.training.checkpoints.ResumePoint`, the next batch to train;
* :class:`ResumableSampler` wraps a training sampler: on the first epoch of a resumed run it
  draws that epoch's windows (samplers draw from ``(seed, epoch)``) and skips the batches
  already trained, so the resumed steps see exactly the batches they would have seen;
* the models seed torch from ``(seed, global step)`` before each step (dropout, teacher
  forcing), so nothing depends on what ran before in the process;
* :class:`LossLog` writes ``losses.csv``: one row per training step (``step,epoch,loss``),
  continued across resumes (rows past the checkpoint a resume starts from are dropped).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import lightning.pytorch as pl

from neurofm.atomic import atomic_path
from neurofm.errors import NeuroFMError
from neurofm.training.checkpoints import RESUME_KEY, ResumePoint

log = logging.getLogger(__name__)

__all__ = ["LastCheckpoint", "LossLog", "ResumableSampler"]


class LastCheckpoint(pl.Callback):
    """Write ``path`` (``last.ckpt``) at each epoch's end, every ``every_n_steps`` training steps
    (0: never mid-epoch) and when training ends, each time atomically.

    Parameters
    ----------
    path : str or Path
        The checkpoint file.
    every_n_steps : int
        Also write it every this many global steps inside an epoch (for long epochs).
    every_epoch : bool
        Write it at each epoch's end (False: only every ``every_n_steps`` steps, if given, and
        when training ends; for runs nothing resumes, such as an adaptation of many short
        epochs).
    """

    def __init__(self, path: str | Path, every_n_steps: int = 0, every_epoch: bool = True) -> None:
        self.path = Path(path)
        self.every_n_steps = int(every_n_steps)
        self.every_epoch = every_epoch
        self._point: ResumePoint | None = None
        self._saved_step = -1
        self._epoch_end: tuple[int, ResumePoint] | None = None  # (global step, next epoch)

    def _save(self, trainer: pl.Trainer, point: ResumePoint) -> None:
        self._point = point
        try:
            # weights_only=False: optimizer, schedulers and loops too, for an exact resume
            trainer.save_checkpoint(self.path, weights_only=False)
        finally:
            self._point = None
        self._saved_step = trainer.global_step

    def _point_now(self, trainer: pl.Trainer) -> ResumePoint:
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        if done >= trainer.num_training_batches:  # the epoch is complete: the next one starts
            return ResumePoint(trainer.current_epoch + 1, 0)
        return ResumePoint(trainer.current_epoch, int(done))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A run killed while writing left its temporary file (atomic_path's name): remove it.
        if trainer.is_global_zero:
            for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                log.info("removing %s, left by a run killed while writing it", stale)
                stale.unlink(missing_ok=True)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        # The last batch of an epoch is left to on_train_epoch_end (after validation).
        if (
            self.every_n_steps > 0
            and trainer.global_step % self.every_n_steps == 0
            and batch_idx + 1 < trainer.num_training_batches
        ):
            self._save(trainer, ResumePoint(trainer.current_epoch, batch_idx + 1))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs after the epoch's validation, so the checkpoint holds its metrics too.
        point = self._point_now(trainer)
        self._epoch_end = (trainer.global_step, point)
        if self.every_epoch:
            self._save(trainer, point)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step == self._saved_step or trainer.global_step == 0:
            return
        if self._epoch_end is not None and self._epoch_end[0] == trainer.global_step:
            # ended with an epoch (Lightning has counted it by now): the point it recorded
            self._save(trainer, self._epoch_end[1])
        else:
            self._save(trainer, self._point_now(trainer))  # e.g. stopped by max_steps

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._point is not None:
            checkpoint[RESUME_KEY] = {
                "epoch": self._point.epoch,
                "batches": self._point.batches,
                "ranks": trainer.world_size,  # a resume must keep it (check_resumable)
            }


class LossLog(pl.Callback):
    """``losses.csv`` in ``out_dir``: ``step,epoch,loss`` for every training step (under DDP,
    the mean over ranks, written by rank 0), flushed as it goes so a killed run's log is
    complete up to its last step.

    A resumed run keeps the rows before the step it resumes from and drops the others (steps
    that ran after the checkpoint and are trained again); a fresh run starts a new file.
    """

    HEADER = ("step", "epoch", "loss")

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / "losses.csv"
        self._file: IO[str] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        start = trainer.global_step  # > 0 only when resuming
        kept = [row for row in self.read(self.path) if int(row[0]) < start] if start else []
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")  # as the rows appended below end
            writer.writerow(self.HEADER)
            writer.writerows(kept)
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 - closed on_train_end

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and trainer.world_size > 1:
            # Every rank takes part; rank 0 writes the mean, the global batch's loss when the
            # ranks' losses are weighted by their share of it (as POYOModule's are).
            loss = trainer.strategy.reduce(loss.detach().clone(), reduce_op="mean")
        if loss is None:
            return
        value = float(loss)
        if self._file is not None:
            # global_step has already advanced past this step's optimizer update
            self._file.write(f"{trainer.global_step - 1},{trainer.current_epoch},{value!r}\n")
            self._file.flush()
        if not math.isfinite(value):
            # Every rank sees the same mean (a NaN on one rank is NaN in the mean), so all stop
            # together; the weights are not written (the last checkpoint is an earlier step's).
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
            raise NeuroFMError(
                f"training diverged: the loss is {value} at step {trainer.global_step - 1} "
                f"(epoch {trainer.current_epoch + 1})"
                + (f" with a learning rate of {lr:.3g}" if lr is not None else "")
                + "; its weights are no longer numbers, so nothing of this step is saved. "
                "Start over with a lower learning rate (--lr)"
            )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @staticmethod
    def read(path: str | Path) -> list[tuple[str, str, str]]:
        """The rows of a ``losses.csv`` (a line cut short by a kill is skipped)."""
        path = Path(path)
        if not path.is_file():
            return []
        rows = []
        with open(path, newline="") as f:
            for row in csv.reader(f):
                if len(row) != 3 or row[0] == "step":
                    continue
                try:
                    int(row[0]), int(row[1]), float(row[2])
                except ValueError:
                    continue
                rows.append((row[0], row[1], row[2]))
        return rows


class ResumableSampler:
    """A training sampler whose first epoch after a resume skips the batches already trained.

    Lightning restarts a resumed epoch's data loader from its first batch while counting the
    batches it already trained; this wrapper draws the resumed epoch's windows (the wrapped
    sampler's :meth:`set_epoch`) and leaves out the first ``point.batches * batch_size``, so
    the run continues with exactly the batches it would have trained. Its length stays the
    full epoch's, as Lightning expects. Later epochs pass through unchanged.

    Parameters
    ----------
    sampler : iterable
        The training sampler (with ``set_epoch`` and ``len``), already sharded across ranks.
    batch_size : int
        Items per batch (per rank).
    point : ResumePoint, optional
        Where the resumed run starts; None for a fresh run.
    """

    def __init__(self, sampler: Any, batch_size: int, point: ResumePoint | None = None) -> None:
        self.sampler, self.batch_size, self.point = sampler, int(batch_size), point

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        point, self.point = self.point, None
        if point is None:
            return iter(self.sampler)
        # With DataLoader workers, Lightning creates the resumed epoch's iterator before it
        # calls set_epoch: the point says which epoch it is.
        self.set_epoch(point.epoch)
        items = list(self.sampler)
        return iter(items[point.batches * self.batch_size :])

    def __len__(self) -> int:
        return len(self.sampler)
