"""Normalization choices shared by every network, selected by a config string.

`batch`, `instance` and `none` are the pix2pix/CycleGAN choices. `spectral` adds no norm
layer and wraps every conv in spectral normalization instead; `spectralinstance` and
`spectralbatch` do both, as SPADE's discriminator (`spectralinstance`) does.
"""

from __future__ import annotations

from typing import Callable

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganforge.errors import ConfigError

NORM_CHOICES = ("batch", "instance", "none", "spectral", "spectralbatch", "spectralinstance")

NormFactory = Callable[[int], nn.Module]
ConvWrapper = Callable[[nn.Module], nn.Module]


def _parse(norm: str) -> tuple[str, bool]:
    """Split a norm name into (layer kind, spectral?), rejecting unknown names."""
    if norm not in NORM_CHOICES:
        raise ConfigError(f"unknown norm {norm!r}; choose one of: {', '.join(NORM_CHOICES)}")
    spectral = norm.startswith("spectral")
    kind = norm.removeprefix("spectral") or "none"
    return kind, spectral


def get_norm_layer(norm: str) -> NormFactory:
    """Return a factory `num_features -> nn.Module`.

    `none` (and plain `spectral`) gives `nn.Identity`, as the reference does, so that module
    indices (and therefore state-dict keys) are the same whatever the norm.
    """
    kind, _ = _parse(norm)
    if kind == "batch":
        return lambda n: nn.BatchNorm2d(n, affine=True, track_running_stats=True)
    if kind == "instance":
        # No affine and no running stats: CycleGAN's choice; test-time statistics are per image.
        return lambda n: nn.InstanceNorm2d(n, affine=False, track_running_stats=False)
    return lambda n: nn.Identity()


def conv_wrapper(norm: str) -> ConvWrapper:
    """Return the function every net passes its convs through (spectral norm or identity)."""
    _, spectral = _parse(norm)
    if spectral:
        return spectral_norm
    return lambda module: module


def use_bias(norm: str) -> bool:
    """Whether a conv followed by this norm needs a bias.

    BatchNorm's affine shift makes a bias redundant. The reference keeps the bias before
    InstanceNorm, and we keep it when there is no norm layer at all (the reference's type check
    drops it there too, which leaves a norm-free net with no bias anywhere).
    """
    kind, _ = _parse(norm)
    return kind != "batch"
