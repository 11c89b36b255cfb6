"""Weight initialization as in pix2pix/CycleGAN `networks.init_weights`.

Conv and Linear weights get normal / xavier / kaiming / orthogonal, biases 0; BatchNorm weights
N(1, gain), biases 0. Every net calls this at the end of its constructor, so a Hydra `_target_`
builds a ready network.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils import parametrize

from ganforge.utils.errors import ConfigError

INIT_CHOICES = ("normal", "xavier", "kaiming", "orthogonal")

# torch's spectral_norm runs this many power iterations when it is registered.
_SPECTRAL_POWER_ITERATIONS = 15


def _init_tensor(weight: torch.Tensor, init_type: str, gain: float) -> None:
    if init_type == "normal":
        nn.init.normal_(weight, 0.0, gain)
    elif init_type == "xavier":
        nn.init.xavier_normal_(weight, gain=gain)
    elif init_type == "kaiming":
        nn.init.kaiming_normal_(weight, a=0, mode="fan_in")
    else:
        nn.init.orthogonal_(weight, gain=gain)


def _refresh_spectral_norm(module: nn.Module) -> None:
    """Re-estimate the singular vectors of a spectral-normed weight after re-initializing it.

    They were estimated for the weight the conv was built with; left stale, sigma would be
    badly underestimated in eval mode until training had run enough power iterations.
    """
    for param in module.parametrizations.weight:
        was_training = param.training
        param.train()
        for _ in range(_SPECTRAL_POWER_ITERATIONS):
            param(module.parametrizations.weight.original)
        param.train(was_training)


def init_weights(net: nn.Module, init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """Initialize `net` in place and return it. `init_gain` is unused by kaiming (as in the reference)."""
    if init_type not in INIT_CHOICES:
        raise ConfigError(f"unknown init_type {init_type!r}; choose one of: {', '.join(INIT_CHOICES)}")

    def init_module(m: nn.Module) -> None:
        if isinstance(m, (_ConvNd, nn.Linear)):
            spectral = parametrize.is_parametrized(m, "weight")
            # With spectral norm the trainable tensor is the parametrization's `original`.
            weight = m.parametrizations.weight.original if spectral else m.weight
            _init_tensor(weight, init_type, init_gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            if spectral:
                _refresh_spectral_norm(m)
        elif isinstance(m, _BatchNorm) and m.affine:
            nn.init.normal_(m.weight, 1.0, init_gain)
            nn.init.zeros_(m.bias)

    with torch.no_grad():
        net.apply(init_module)
    return net
