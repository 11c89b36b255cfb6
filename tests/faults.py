"""Faults a test injects into a real `train.py` run through `+callbacks.<name>._target_=tests.faults.<Class>`."""

from __future__ import annotations

import math
import os
import signal

import lightning.pytorch as L


class KillAtBatch(L.Callback):
    """SIGKILL this process as the `at`-th training batch of the run (counted from 0) starts: no
    cleanup, no final checkpoint, as a preempted job dies."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.fit_loop.total_batch_idx == self.at:
            os.kill(os.getpid(), signal.SIGKILL)


class NaNInputAt(L.Callback):
    """From the `at`-th training batch of the run on (`until` excluded), the input images are NaN."""

    def __init__(self, at: int, until: int | None = None, key: str = "A"):
        self.at, self.until, self.key = at, until, key

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        n = trainer.fit_loop.total_batch_idx
        if n >= self.at and (self.until is None or n < self.until):
            batch[self.key].fill_(math.nan)
