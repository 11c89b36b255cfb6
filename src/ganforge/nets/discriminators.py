"""Discriminators: PatchGAN, per-pixel, and multiscale PatchGAN (BicycleGAN, SPADE).

All return raw scores (no sigmoid): `GANLoss` applies the objective.
"""

from __future__ import annotations

import torch
from torch import nn

from ganforge.nets.init import init_weights
from ganforge.nets.norms import conv_wrapper, get_norm_layer, use_bias
from ganforge.nets.registry import register_net
from ganforge.utils.errors import ConfigError


@register_net
class NLayerDiscriminator(nn.Module):
    """PatchGAN: 4x4 convs with strides 2 (`n_layers` times), 1, 1; LeakyReLU 0.2.

    n_layers=3 gives the 70x70 receptive field of pix2pix/CycleGAN (256 px in -> 30x30 out).
    Channels grow as ndf * min(2**n, 8); the first conv has no norm. `padding=2` with
    `n_layers=3` is SPADE's discriminator with its `n_layers_D=4`. With `norm="batch"` the convs before a
    BatchNorm have no bias (pytorch-CycleGAN-and-pix2pix), unless `bias_before_batchnorm` (BicycleGAN's
    D_NLayers / D_NLayersMulti keep every conv bias).
    """

    def __init__(
        self,
        input_nc: int = 6,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "batch",
        padding: int = 1,
        init_type: str = "normal",
        init_gain: float = 0.02,
        bias_before_batchnorm: bool = False,
    ):
        super().__init__()
        if n_layers < 1:
            raise ConfigError(f"NLayerDiscriminator needs n_layers >= 1, got {n_layers} (a 1x1 PatchGAN is PixelDiscriminator)")
        norm_layer, wrap, bias = get_norm_layer(norm), conv_wrapper(norm), use_bias(norm) or bias_before_batchnorm

        def conv(cin: int, cout: int, stride: int, has_bias: bool = True) -> nn.Module:
            return wrap(nn.Conv2d(cin, cout, kernel_size=4, stride=stride, padding=padding, bias=has_bias))

        layers: list[nn.Module] = [conv(input_nc, ndf, 2), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [conv(ndf * prev, ndf * mult, stride, bias), norm_layer(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(conv(ndf * mult, 1, 1))
        self.model = nn.Sequential(*layers)
        init_weights(self, init_type, init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Output of every LeakyReLU stage, then the final score map (for feature matching)."""
        out = []
        for layer in self.model:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                out.append(x)
        out.append(x)
        return out


@register_net
class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: classifies each pixel independently (pix2pix `--netD pixel`)."""

    def __init__(
        self,
        input_nc: int = 6,
        ndf: int = 64,
        norm: str = "batch",
        init_type: str = "normal",
        init_gain: float = 0.02,
    ):
        super().__init__()
        norm_layer, wrap, bias = get_norm_layer(norm), conv_wrapper(norm), use_bias(norm)
        self.net = nn.Sequential(
            wrap(nn.Conv2d(input_nc, ndf, kernel_size=1)),
            nn.LeakyReLU(0.2, True),
            wrap(nn.Conv2d(ndf, ndf * 2, kernel_size=1, bias=bias)),
            norm_layer(ndf * 2),
            nn.LeakyReLU(0.2, True),
            wrap(nn.Conv2d(ndf * 2, 1, kernel_size=1, bias=bias)),
        )
        init_weights(self, init_type, init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_net
class MultiscaleDiscriminator(nn.Module):
    """`num_D` PatchGANs; scale i sees the input average-pooled i times.

    Scale i has `round(ndf * ndf_scale**i)` filters: 0.5 is BicycleGAN's `basic_256_multi`
    (D_NLayersMulti halves ndf per scale), 1.0 is SPADE's. `bias_before_batchnorm` is NLayerDiscriminator's.
    forward returns one score map per scale
    or, with `get_intermediate`, one list of features per scale with the score map last.
    Defaults are BicycleGAN's (instance norm, xavier init).
    """

    def __init__(
        self,
        input_nc: int = 3,
        ndf: int = 64,
        n_layers: int = 3,
        num_D: int = 2,
        ndf_scale: float = 0.5,
        norm: str = "instance",
        padding: int = 1,
        get_intermediate: bool = False,
        init_type: str = "xavier",
        init_gain: float = 0.02,
        bias_before_batchnorm: bool = False,
    ):
        super().__init__()
        self.get_intermediate = get_intermediate
        self.scales = nn.ModuleList(
            NLayerDiscriminator(input_nc, round(ndf * ndf_scale**i), n_layers, norm, padding, init_type, init_gain, bias_before_batchnorm)
            for i in range(num_D)
        )
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | list[list[torch.Tensor]]:
        results = []
        for i, d in enumerate(self.scales):
            if i:
                x = self.downsample(x)
            results.append(d.features(x) if self.get_intermediate else d(x))
        return results
