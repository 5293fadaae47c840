"""Training progress for Lightning: one bar on a terminal, one line per epoch in a log.

Lightning's default progress bar redraws a training bar and a nested validation bar with
carriage returns; redirected to a file, one partial run left 121 KB of them. Here:

* on a terminal (stderr is a TTY), :class:`TrainBar`: Lightning's tqdm bar for training only,
  on stderr (stdout stays for results); the validation loop draws no bar of its own, its
  metrics show in the training bar's postfix;
* anywhere else, :class:`EpochLines`: one line per epoch (``epoch 3/80: 40 steps, 12.1 s,
  train_loss 0.231, val_r2 0.654``), plus a line every ``every_n_steps`` steps (or, by default,
  when an epoch runs longer than ``interval`` seconds).

:func:`progress_callbacks` picks one; :func:`~neurofm.training.trainer.make_trainer` uses it.
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks.progress import ProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

from neurofm.progress import format_duration, is_terminal

__all__ = ["EpochLines", "TrainBar", "progress_callbacks"]


def _metrics(trainer: pl.Trainer) -> dict[str, float]:
    """Scalar metrics logged so far (``train_loss``, ``val_r2``...), as floats."""
    out = {}
    for key, value in trainer.callback_metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):  # non-scalar tensors: not for a log line
            continue
        out[key] = number
    return out


def _fmt_metrics(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in sorted(values.items()))


class TrainBar(TQDMProgressBar):
    """Lightning's tqdm bar on stderr, with no validation bar (its metrics show in the
    training bar's postfix when validation ends)."""

    def init_train_tqdm(self) -> Tqdm:
        return Tqdm(
            desc=self.train_description,
            position=2 * self.process_position,
            disable=self.is_disabled,
            leave=True,
            dynamic_ncols=True,
            file=sys.stderr,
            smoothing=0,
            bar_format=self.BAR_FORMAT,
        )

    def init_validation_tqdm(self) -> Tqdm:
        return Tqdm(disable=True)

    def init_sanity_tqdm(self) -> Tqdm:
        return Tqdm(disable=True)


class EpochLines(ProgressBar):
    """Progress as whole lines: one per epoch, and every so many steps within long epochs.

    Parameters
    ----------
    every_n_steps : int, optional
        Also write a line every this many training steps (global steps). Default: only when
        ``interval`` seconds passed since the last line, so short epochs give one line each.
    interval : float
        Seconds after which a step line is written inside an epoch (with ``every_n_steps``
        unset).
    file : file-like, optional
        Where lines go (default ``sys.stderr``).
    """

    def __init__(
        self,
        every_n_steps: int | None = None,
        interval: float = 60.0,
        file: IO[str] | None = None,
    ) -> None:
        super().__init__()
        self.every_n_steps = every_n_steps
        self.interval = float(interval)
        self.file = file
        self._enabled = True
        self._epoch_t = self._last_t = time.monotonic()
        self._epoch_steps = 0

    # ProgressBar's interface: Lightning calls these for --no-progress style switches.
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _write(self, line: str) -> None:
        if not self._enabled:
            return
        stream = self.file if self.file is not None else sys.stderr
        stream.write(line + "\n")
        stream.flush()
        self._last_t = time.monotonic()

    def _epochs(self, trainer: pl.Trainer) -> str:
        total = trainer.max_epochs
        return f"epoch {trainer.current_epoch + 1}" + (
            f"/{total}" if total is not None and total > 0 else ""
        )

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_t = self._last_t = time.monotonic()
        self._epoch_steps = 0

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        *args: Any,
    ) -> None:
        self._epoch_steps += 1
        n = self.every_n_steps
        due = (n is not None and n > 0 and trainer.global_step % n == 0) or (
            n is None and time.monotonic() - self._last_t >= self.interval
        )
        if not due:
            return
        total = self.total_train_batches
        of = f"/{total}" if isinstance(total, int | float) and math.isfinite(total) else ""
        metrics = _fmt_metrics({k: v for k, v in _metrics(trainer).items() if "val" not in k})
        self._write(
            f"{self._epochs(trainer)}: step {batch_idx + 1}{of}, "
            f"{format_duration(time.monotonic() - self._epoch_t)}"
            + (f", {metrics}" if metrics else "")
        )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Validation of this epoch has run by now (Lightning 2: before this hook).
        metrics = _fmt_metrics(_metrics(trainer))
        self._write(
            f"{self._epochs(trainer)}: {self._epoch_steps} steps, "
            f"{format_duration(time.monotonic() - self._epoch_t)}"
            + (f", {metrics}" if metrics else "")
        )


def progress_callbacks(progress: bool, file: IO[str] | None = None) -> list[ProgressBar]:
    """The progress callback for a Trainer: none, a bar (terminal) or epoch lines (elsewhere).

    Parameters
    ----------
    progress : bool
        Show progress at all (with False, pass ``enable_progress_bar=False`` to the Trainer).
    file : file-like, optional
        The stream to judge and write to (default ``sys.stderr``).

    Returns
    -------
    list of ProgressBar
        Empty, ``[TrainBar()]`` or ``[EpochLines()]``.
    """
    if not progress:
        return []
    if is_terminal(file):
        return [TrainBar()]
    return [EpochLines(file=file)]
