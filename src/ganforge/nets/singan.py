"""SinGAN's per-scale generator and critic (Rott Shaham et al., 2019; reference `SinGAN/models.py`).

Both are 5 conv layers 3x3 without padding: head, 3 body blocks (conv, BatchNorm, LeakyReLU 0.2),
tail. The body halves the width each block, never below `min_nfc`. The caller zero-pads inputs by
`pad` (5) so the output has the size of the unpadded input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.nets.registry import register_net

#: ceil() of a size that is an integer up to float error (25.000000004) must not round up
EPS = 1e-6


def ceil_size(x: float) -> int:
    return math.ceil(x - EPS)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic, antialiased when shrinking (the reference's MATLAB-style imresize)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False, antialias=shrink)


def conv_block(cin: int, cout: int, ker: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, ker, 1, 0), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


def _body_widths(nfc: int, min_nfc: int, num_layer: int) -> list[tuple[int, int]]:
    """(in, out) widths of the body blocks, as the reference: N = nfc / 2**(i+1), clamped at min_nfc."""
    widths = []
    for i in range(num_layer - 2):
        n = nfc // 2 ** (i + 1)
        widths.append((max(2 * n, min_nfc), max(n, min_nfc)))
    return widths


def init_singan(m: nn.Module) -> None:
    """Reference `weights_init`: conv weights N(0, 0.02) (bias keeps PyTorch's default), BN weight N(1, 0.02)."""
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class _ConvStack(nn.Module):
    def __init__(self, in_nc: int, out_nc: int, nfc: int, min_nfc: int, num_layer: int, ker: int, tail: nn.Module):
        super().__init__()
        self.pad = num_layer * (ker - 1) // 2
        self.head = conv_block(in_nc, nfc, ker)
        self.body = nn.Sequential(*(conv_block(i, o, ker) for i, o in _body_widths(nfc, min_nfc, num_layer)))
        self.tail = nn.Sequential(nn.Conv2d(max(nfc // 2 ** (num_layer - 2), min_nfc), out_nc, ker, 1, 0), tail)
        self.apply(init_singan)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(self.head(x)))


@register_net
class SinGANGenerator(_ConvStack):
    """Residual G: out = tanh(convs(noise * amp + prev)) + prev, prev centre-cropped to the output."""

    def __init__(self, nc: int = 3, nfc: int = 32, min_nfc: int = 32, num_layer: int = 5, ker: int = 3):
        super().__init__(nc, nc, nfc, min_nfc, num_layer, ker, nn.Tanh())

    def forward(self, noisy: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        x = self.features(noisy)
        dh, dw = (prev.shape[2] - x.shape[2]) // 2, (prev.shape[3] - x.shape[3]) // 2
        return x + prev[:, :, dh : dh + x.shape[2], dw : dw + x.shape[3]]


@register_net
class SinGANDiscriminator(_ConvStack):
    """WGAN-GP patch critic: one score per receptive field (11x11), no sigmoid."""

    def __init__(self, nc: int = 3, nfc: int = 32, min_nfc: int = 32, num_layer: int = 5, ker: int = 3):
        super().__init__(nc, 1, nfc, min_nfc, num_layer, ker, nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
