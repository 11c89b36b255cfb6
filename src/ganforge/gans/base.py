"""What every GAN module shares: manual optimization, LR schedules, exact resume, checkpoint checks.

Exact resume: checkpoints are written at epoch ends and carry the global random streams; schedules
are stepped to the current epoch at every epoch start.

Schedules are expressed in epochs. `global_step` counts every optimizer step (2-4 per batch in a
GAN), so it is never used for schedules here.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn
from torch.optim import Optimizer, lr_scheduler

from ganforge.errors import CheckpointError, ConfigError
from ganforge.losses import GANLoss

SCHEDULER_POLICIES = ("linear", "step", "plateau", "cosine")


def build_scheduler(
    optimizer: Optimizer,
    policy: str = "linear",
    n_epochs: int = 100,
    n_epochs_decay: int = 100,
    step_size: int = 50,
    gamma: float = 0.1,
    plateau_factor: float = 0.2,
    plateau_patience: int = 5,
    monitor: str = "val/l1",
    monitor_mode: str = "min",
) -> dict:
    """The reference repos' LR policies, as a Lightning scheduler config.

    `linear` keeps the LR for `n_epochs` epochs, then decays it linearly over `n_epochs_decay`:
    factor = 1 - max(0, epoch - n_epochs) / (n_epochs_decay + 1) for the 1-based epoch.
    """
    if policy == "linear":
        def factor(epoch0: int) -> float:
            return 1.0 - max(0, epoch0 + 1 - n_epochs) / float(n_epochs_decay + 1)

        sched = lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
    elif policy == "step":
        sched = lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    elif policy == "plateau":
        sched = lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=monitor_mode, factor=plateau_factor, threshold=0.01, patience=plateau_patience
        )
    elif policy == "cosine":
        sched = lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_epochs, eta_min=0)
    else:
        raise ConfigError(f"model.scheduler.policy={policy!r} is unknown; choose one of {SCHEDULER_POLICIES}")
    config = {"scheduler": sched, "interval": "epoch"}
    if policy == "plateau":
        config["monitor"] = monitor
    return config


def set_requires_grad(nets: nn.Module | list[nn.Module], flag: bool) -> None:
    for net in nets if isinstance(nets, list) else [nets]:
        for p in net.parameters():
            p.requires_grad_(flag)


def rng_states() -> dict:
    """The global random streams (shuffle, crops, flips, dropout) in a form torch.load(weights_only=True) accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


class GANModule(L.LightningModule):
    """Base class: subclasses build their nets, implement `training_step` and `configure_optimizers`
    through `optimizers_for()`, and return image rows for sample grids from `grid_rows()`."""

    #: names of the nets whose architecture must match a checkpoint's (checked on load)
    net_names: tuple[str, ...] = ()

    def __init__(self, scheduler: Mapping[str, Any] | None = None):
        super().__init__()
        self.automatic_optimization = False
        self.scheduler_cfg = dict(scheduler or {})
        #: the resolved run config, stored in checkpoints so predict/eval rebuild the model (set by the CLI)
        self.run_config: dict | None = None

    # ----- optimization helpers -------------------------------------------------------------------
    def optimizers_for(self, *optimizers: Optimizer):
        """Pair each optimizer with the configured LR schedule."""
        return list(optimizers), [build_scheduler(o, **self.scheduler_cfg) for o in optimizers]

    def step(self, opt, loss: torch.Tensor) -> None:
        """zero_grad, backward, step for one optimizer; the caller has toggled it."""
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt.step()

    @staticmethod
    def d_loss(criterion: GANLoss, netD: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """The standard discriminator objective: (real + fake) * 0.5, fake already detached."""
        loss_fake = criterion(netD(fake), False)
        loss_real = criterion(netD(real), True)
        return {"loss_D_fake": loss_fake, "loss_D_real": loss_real, "loss_D": (loss_fake + loss_real) * 0.5}

    # ----- schedules and exact resume -------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        # A checkpoint written at validation end predates this epoch's schedule step: catch up.
        self._advance_schedules(to_epoch=self.current_epoch)

    def on_train_epoch_end(self) -> None:
        self._advance_schedules(to_epoch=self.current_epoch + 1)

    def _advance_schedules(self, to_epoch: int) -> None:
        """Step every epoch-based schedule until it stands at `to_epoch`: the LR is then a function of
        the epoch alone, however the run was interrupted and resumed."""
        for sched in self._schedulers():
            if not isinstance(sched, lr_scheduler.ReduceLROnPlateau):
                while sched.last_epoch < to_epoch:
                    sched.step()

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        for sched in self._schedulers():
            if isinstance(sched, lr_scheduler.ReduceLROnPlateau):
                monitor = self.scheduler_cfg.get("monitor", "val/l1")
                value = self.trainer.callback_metrics.get(monitor)
                if value is None:
                    raise ConfigError(
                        f"model.scheduler.policy=plateau monitors {monitor!r}, which validation does not log; "
                        f"set model.scheduler.monitor to one of {sorted(self.trainer.callback_metrics)}"
                    )
                sched.step(value)

    def _schedulers(self) -> list:
        scheds = self.lr_schedulers()
        if scheds is None:
            return []
        return scheds if isinstance(scheds, list) else [scheds]

    # ----- inference protocol of ganforge-predict ------------------------------------------------
    def predict_direction(self, opts) -> str:
        """The training direction (AtoB/BtoA): which half of an A|B input is the model's input."""
        return (self.run_config or {}).get("data", {}).get("direction", "AtoB")

    def predict_input_nc(self, opts) -> int:
        return int((self.run_config or {}).get("data", {}).get("input_nc", 3))

    def predict_outputs(self, x: torch.Tensor, opts) -> dict[str, torch.Tensor]:
        """Named outputs for one input batch in [-1, 1]; the key is the file-name suffix."""
        return {"": self.translate(x)}

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not translate images")

    def metric_protocol(self) -> dict[str, Any]:
        """How `translate`/`metric_batch` run the generator, for the report of ganforge-eval: the mode
        of its norm and dropout layers and whether images are generated one at a time (their output
        then does not depend on the images batched with them)."""
        return {"generator_mode": "eval", "per_sample": False}

    def run_app(self, opts, out_dir) -> list:
        raise ConfigError(f"app={opts.get('app')} is not available for {type(self).__name__}")

    # ----- checkpoints ----------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Optimizer factories (`_partial_` configs) would make the checkpoint unloadable with
        # torch.load(weights_only=True), which Lightning uses to resume; the run config holds them.
        hparams = checkpoint.get("hyper_parameters")
        if hparams:
            plain = {k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig | ListConfig) else v
                     for k, v in hparams.items()}
            checkpoint["hyper_parameters"] = {k: v for k, v in plain.items() if _is_plain(v)}
        checkpoint["ganforge"] = {
            "model_class": f"{type(self).__module__}.{type(self).__qualname__}",
            "config": self.run_config,
            # Lightning saves optimizer, scheduler, epoch and step; the random streams make resume exact.
            # (Per process: a DDP run resumes every rank from rank 0's streams.)
            "rng_states": rng_states(),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint of another model or architecture with a readable message."""
        meta = checkpoint.get("ganforge") or {}
        mine = f"{type(self).__module__}.{type(self).__qualname__}"
        theirs = meta.get("model_class")
        if theirs and theirs != mine:
            raise CheckpointError(
                f"the checkpoint was written by {theirs}, but this run builds {mine}; "
                f"pick the matching model=... or another ckpt_path"
            )
        check_state_dict_matches(self.state_dict(), checkpoint.get("state_dict", {}), where=mine)
        # Restored here, before Lightning builds the first train iterator (which shuffles and
        # prefetches a batch), so the resumed epoch draws what the uninterrupted run drew.
        if "rng_states" in meta:
            set_rng_states(meta["rng_states"])


def _is_plain(value: Any) -> bool:
    if isinstance(value, (str, int, float, bool, type(None))):
        return True
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return False


def check_state_dict_matches(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], where: str) -> None:
    """Compare parameter names and shapes, so a config mismatch reads as one sentence, not a traceback."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(found[k].shape)} vs config {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and tuple(found[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} weights missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected weights (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:3])})")
    raise CheckpointError(
        f"the checkpoint does not fit the {where} built from this config: {'; '.join(parts)}. "
        "Use the same model/net settings (ngf, ndf, num_downs, n_layers, norm, channels) it was trained with"
    )
