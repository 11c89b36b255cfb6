"""Checkpoints inside an epoch, so a killed or preempted run loses at most one interval.

`PeriodicCheckpoint` writes `<dirpath>/last.ckpt` every `every_n_batches` training batches and/or
every `every_minutes` minutes, through `trainer.save_checkpoint` (Lightning writes to a temporary
file and renames it, so a kill during the write leaves the previous last.ckpt loadable). Resuming
from it continues the same epoch at the next batch: the data modules' loaders are torchdata
`StatefulDataLoader`s, whose state (sampler order, batches done) Lightning saves and restores.

Lightning's own ModelCheckpoint(every_n_train_steps=...) counts optimizer steps, 2 to 4 per GAN
batch, and under manual optimization warns at every save; batches are what a user counts.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning.pytorch as L

from ganforge.errors import ConfigError


class PeriodicCheckpoint(L.Callback):
    def __init__(self, dirpath: str, filename: str = "last", every_n_batches: int | None = None,
                 every_minutes: float | None = None):
        for key, value in (("every_n_batches", every_n_batches), ("every_minutes", every_minutes)):
            if value is not None and value <= 0:
                raise ConfigError(f"callbacks.mid_epoch_checkpoint.{key} must be positive or null, got {value}")
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.every_n_batches, self.every_minutes = every_n_batches, every_minutes
        self._last_save = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.sanity_checking or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # the epoch-end checkpoint follows
        due = bool(self.every_n_batches) and (batch_idx + 1) % self.every_n_batches == 0
        if self.every_minutes:
            # Every rank must take the same decision: save_checkpoint is a collective call.
            due = trainer.strategy.broadcast(due or time.monotonic() - self._last_save >= 60 * self.every_minutes)
        if due:
            trainer.save_checkpoint(self.path)
            self._last_save = time.monotonic()
