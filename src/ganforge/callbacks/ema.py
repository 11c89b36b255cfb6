"""An exponential moving average of the generator(s), for sampling, grids, metrics and validation
(Karras et al. 2018 section A.1; stylegan3 `training_loop.py` keeps G_ema and samples from it).

Only the modules a model names in `generator_names` are averaged (its discriminators are not), each
with `torch.optim.swa_utils.AveragedModel` and `get_ema_multi_avg_fn(decay)`; buffers (BatchNorm's
running statistics) follow the live generator, as stylegan3 copies them. The average lives in the
callback's state, so checkpoints carry it (tensors only) and a resumed run continues it exactly;
`ganforge.load(ckpt, use_ema=True)` loads it for predict, eval, export and the demo.

Lightning's `WeightAveraging` averages the whole LightningModule and would write the average as the
checkpoint's model weights; here D and the live G stay as trained and the average is an extra.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import lightning.pytorch as L
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ganforge.models.loading import EMA_STATE_KEY
from ganforge.utils.errors import ConfigError


def ema_avg_fn(decay: float, warmup: bool):
    """`get_ema_multi_avg_fn(decay)`, with `warmup` the decay of update n capped at (1 + n) / (10 + n)
    (tf.train.ExponentialMovingAverage's num_updates): early averages do not drag the untrained G along
    (stylegan3 ramps its EMA up for the same reason)."""
    fixed = get_ema_multi_avg_fn(decay)

    def update(ema_params, model_params, n_averaged) -> None:
        if not warmup:
            return fixed(ema_params, model_params, n_averaged)
        n = float(n_averaged)
        return get_ema_multi_avg_fn(min(decay, (1 + n) / (10 + n)))(ema_params, model_params, n_averaged)

    return update


class GeneratorEMA(L.Callback):
    """EMA_t = decay_t * EMA_{t-1} + (1 - decay_t) * G_t after every training batch past `start_step`
    batches (the first average is a copy of G; decay_t = decay, or with `warmup` min(decay, (1+t)/(10+t))).
    Validation runs with the EMA weights swapped in."""

    def __init__(self, decay: float = 0.999, start_step: int = 0, warmup: bool = True):
        if not 0.0 <= decay <= 1.0 or start_step < 0:
            raise ConfigError(f"callbacks.ema: decay must be in [0, 1] and start_step >= 0, got {decay} and {start_step}")
        self.decay, self.start_step, self.warmup = decay, start_step, warmup
        self.averages: dict[str, AveragedModel] = {}
        self.batches = 0
        self._pending: dict | None = None
        self._swap = None

    @property
    def state_key(self) -> str:
        return EMA_STATE_KEY

    def _build(self, pl_module) -> None:
        if not self.averages:
            for name in pl_module.generator_names:
                net: nn.Module = getattr(pl_module, name)
                self.averages[name] = AveragedModel(net, multi_avg_fn=ema_avg_fn(self.decay, self.warmup), use_buffers=False)
        if self._pending is not None:
            self._load(self._pending)
            self._pending = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._build(pl_module)

    def on_fit_start(self, trainer, pl_module) -> None:
        self._build(pl_module)  # applies a state restored from a checkpoint after setup

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1
        if self.batches > self.start_step:
            for name, avg in self.averages.items():
                avg.update_parameters(getattr(pl_module, name))

    # ----- using the average ----------------------------------------------------------------------
    @contextmanager
    def swapped(self, pl_module) -> Iterator[None]:
        """The EMA parameters in the live generators for the block, the trained ones back after (a no-op
        before the first average, or when already swapped)."""
        if self._swap is not None or not self.averages or all(int(a.n_averaged) == 0 for a in self.averages.values()):
            yield
            return
        saved = {}
        with torch.no_grad():
            for name, avg in self.averages.items():
                if int(avg.n_averaged) == 0:
                    continue
                net = getattr(pl_module, name)
                saved[name] = [p.detach().clone() for p in net.parameters()]
                for p, q in zip(net.parameters(), avg.module.parameters(), strict=True):
                    p.copy_(q)
        self._swap = saved
        try:
            yield
        finally:
            with torch.no_grad():
                for name, params in saved.items():
                    for p, q in zip(getattr(pl_module, name).parameters(), params, strict=True):
                        p.copy_(q)
            self._swap = None

    def on_validation_start(self, trainer, pl_module) -> None:
        self._ctx = self.swapped(pl_module)
        self._ctx.__enter__()

    def on_validation_end(self, trainer, pl_module) -> None:
        # Before the checkpoint callbacks (Lightning runs them last): checkpoints hold the trained G.
        ctx, self._ctx = getattr(self, "_ctx", None), None
        if ctx is not None:
            ctx.__exit__(None, None, None)

    # ----- checkpoint -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "start_step": self.start_step,
            "batches": self.batches,
            "nets": {name: avg.state_dict() for name, avg in self.averages.items()},
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.batches = int(state_dict.get("batches", 0))
        if self.averages:
            self._load(state_dict)
        else:
            self._pending = state_dict

    def _load(self, state_dict: dict) -> None:
        for name, sd in state_dict.get("nets", {}).items():
            if name in self.averages:
                self.averages[name].load_state_dict(sd)


def ema_weights(trainer, pl_module):
    """A context with the EMA generator swapped in when the run has a GeneratorEMA callback."""
    for cb in trainer.callbacks if trainer is not None else ():
        if isinstance(cb, GeneratorEMA):
            return cb.swapped(pl_module)
    return nullcontext()
