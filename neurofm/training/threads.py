"""The thread policy (:mod:`neurofm.threads`) as a Lightning callback: every training run
computes with the cores nobody else is using, and follows the machine while it trains."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from neurofm.threads import ThreadPolicy

__all__ = ["AdaptiveThreads"]


class AdaptiveThreads(pl.Callback):
    """Choose the thread count when fitting starts, look again between steps (every few
    seconds, cheaply), and restore the process's own count when fitting ends."""

    def __init__(self, every: float = 3.0) -> None:
        self.every = every
        self.policy: ThreadPolicy | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.policy = ThreadPolicy(every=self.every)
        self.policy.start()

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        if self.policy is not None:
            self.policy.recheck()

    def _stop(self) -> None:
        if self.policy is not None:
            self.policy.stop()
            self.policy = None

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._stop()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._stop()
