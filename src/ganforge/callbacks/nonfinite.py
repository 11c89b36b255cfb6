"""Non-finite losses: stop (naming the loss, the step and the last good checkpoint) or skip the step.

`on_nonfinite=stop` (default): every optimizer step records on the device whether its loss was
finite (GANModule.step), without a host sync; the flag is read every `check_every_n_batches`
batches and before any checkpoint is written, so no checkpoint ever holds weights trained on a
NaN or Inf loss. `on_nonfinite=skip_step`: a step whose loss is not finite is not applied (this
reads the loss on the host at every step) and a warning is logged; `max_consecutive_skips` skips in
a row stop the run.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from ganforge.utils.errors import ConfigError, GanforgeError

POLICIES = ("stop", "skip_step")


class NonFiniteLossError(GanforgeError):
    """Training produced a NaN or Inf loss."""


class NonFiniteLoss(L.Callback):
    def __init__(self, on_nonfinite: str = "stop", check_every_n_batches: int = 10, max_consecutive_skips: int = 10):
        if on_nonfinite not in POLICIES:
            raise ConfigError(f"callbacks.nonfinite.on_nonfinite must be one of {POLICIES}, got {on_nonfinite!r}")
        if check_every_n_batches < 1 or max_consecutive_skips < 1:
            raise ConfigError("callbacks.nonfinite.check_every_n_batches and max_consecutive_skips must be >= 1")
        self.policy, self.check_every, self.max_skips = on_nonfinite, check_every_n_batches, max_consecutive_skips

    def setup(self, trainer, pl_module, stage: str) -> None:
        pl_module.skip_nonfinite = self.policy == "skip_step"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.policy == "skip_step":
            if pl_module.skipped_in_a_row:
                rank_zero_warn(
                    f"step {trainer.global_step}: a non-finite loss ({self._culprit(trainer)}); "
                    f"its update was skipped ({pl_module.skipped_in_a_row} in a row)"
                )
            if pl_module.skipped_in_a_row >= self.max_skips:
                self._stop(trainer, f"{pl_module.skipped_in_a_row} steps in a row had a non-finite loss")
        elif (batch_idx + 1) % self.check_every == 0:
            self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._check(trainer, pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # Raised before Lightning writes the file: the last checkpoint on disk stays a good one.
        self._check(trainer, pl_module)
        bad = [name for name, p in pl_module.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            self._stop(trainer, f"non-finite weights in {', '.join(bad[:3])}")

    def _check(self, trainer, pl_module) -> None:
        if pl_module.nonfinite_loss_seen():
            self._stop(trainer, f"a loss is not finite ({self._culprit(trainer)})")

    @staticmethod
    def _culprit(trainer) -> str:
        # The module's last step's values: the logged ones (callback_metrics) may be up to log_every_n_steps old.
        values = {**trainer.callback_metrics, **getattr(trainer.lightning_module, "train_values", {})}
        bad = [
            f"{k}={float(v)}"
            for k, v in values.items()
            if k.startswith("train/") and torch.as_tensor(v).numel() == 1 and not math.isfinite(float(v))
        ]
        return ", ".join(bad) or "a loss (not logged yet)"

    def _stop(self, trainer, what: str) -> None:
        ckpts = sorted(Path(trainer.default_root_dir, "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
        last = f"the last good checkpoint is {ckpts[-1]} (resume with ckpt_path={ckpts[-1]})" if ckpts else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"training stopped at step {trainer.global_step} (epoch {trainer.current_epoch}): {what}; {last}. "
            "Lower the learning rate, check the inputs, or try trainer.precision=32-true; "
            "callbacks.nonfinite.on_nonfinite=skip_step skips such steps instead"
        )
