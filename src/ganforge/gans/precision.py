"""bf16-mixed on a CPU: Lightning's autocast with its weight-cast cache kept between optimizer steps.

Lightning's `MixedPrecision` enters `torch.autocast(..., cache_enabled=False)` around `training_step`, so every
forward pass casts every fp32 weight to bf16 again, and every cast has its own backward that casts the weight's
gradient back. A GAN step calls the same net several times between two optimizer steps (CycleGAN: each G three
times, each D three times; pix2pix: D three times), so it casts the same weights several times. Here the cache is on:
a net's weights are cast once and reused until an optimizer step changes them, and the cache is emptied after every
optimizer step (`optimizer_step`), which is what makes reusing it safe: a cast made before a step is never read
after it. Only trainable weights are cached (autocast's own rule): a frozen net is cast at each call, as before.
Gradients that several uses of one cached cast send back are added in bf16 before they are cast to fp32, as
autocast does everywhere its cache is on (CUDA's default).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.plugins.precision import MixedPrecision


class CachedCastBF16(MixedPrecision):
    """`bf16-mixed` on the CPU, with autocast's weight-cast cache emptied after each optimizer step."""

    def __init__(self) -> None:
        super().__init__("bf16-mixed", "cpu")

    def autocast_context_manager(self) -> torch.autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=True)

    def optimizer_step(self, optimizer, model, closure, **kwargs: Any) -> Any:
        try:
            return super().optimizer_step(optimizer, model=model, closure=closure, **kwargs)
        finally:
            torch.clear_autocast_cache()


def use_cached_casts(trainer) -> None:
    """Swap Lightning's CPU bf16-mixed plugin for `CachedCastBF16`; any other precision stays as it is."""
    plugin = trainer.strategy.precision_plugin
    if type(plugin) is MixedPrecision and plugin.precision == "bf16-mixed" and plugin.device == "cpu":
        trainer.strategy.precision_plugin = CachedCastBF16()
