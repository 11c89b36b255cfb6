"""BicycleGAN encoders: image -> latent code (mu, logvar) of size nz.

`ResnetEncoder` is the reference E_ResNet (`resnet_128`: 4 blocks, `resnet_256`: 5 blocks) and
`ConvEncoder` is E_NLayers (`conv_128`: 4 layers, `conv_256`: 5 layers). The reference ends with
AvgPool2d(8), which is exactly a global average at its sizes (the feature map is 8x8 for
128 px with 4 blocks/layers and 256 px with 5) and breaks at any other size. We use
AdaptiveAvgPool2d(1): identical at the reference sizes, and it also works for other sizes
(small test nets, 512 px inputs).
"""

from __future__ import annotations

import torch
from torch import nn

from ganforge.nets.init import init_weights
from ganforge.nets.norms import ConvWrapper, NormFactory, conv_wrapper, get_norm_layer
from ganforge.nets.registry import register_net

Code = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class BasicBlock(nn.Module):
    """Pre-activation residual block that halves the resolution (average pooling)."""

    def __init__(self, inplanes: int, outplanes: int, norm_layer: NormFactory, wrap: ConvWrapper):
        super().__init__()
        self.conv = nn.Sequential(
            norm_layer(inplanes),
            # Not in place: with norm "none" it would overwrite x, which the shortcut still needs.
            nn.LeakyReLU(0.2),
            wrap(nn.Conv2d(inplanes, inplanes, kernel_size=3, padding=1)),
            norm_layer(inplanes),
            nn.LeakyReLU(0.2, True),
            wrap(nn.Conv2d(inplanes, outplanes, kernel_size=3, padding=1)),
            nn.AvgPool2d(2),
        )
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), wrap(nn.Conv2d(inplanes, outplanes, kernel_size=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class _Encoder(nn.Module):
    """Shared head: global average pool, then fc (mu) and, for a VAE, fcVar (logvar)."""

    def __init__(self, body: list[nn.Module], features: int, output_nc: int, vae: bool):
        super().__init__()
        self.vae = vae
        self.conv = nn.Sequential(*body, nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(features, output_nc)
        self.fcVar = nn.Linear(features, output_nc) if vae else None

    def forward(self, x: torch.Tensor) -> Code:
        """Return (mu, logvar) when `vae`, else the code alone."""
        h = self.conv(x).flatten(1)
        if self.fcVar is None:
            return self.fc(h)
        return self.fc(h), self.fcVar(h)


@register_net
class ResnetEncoder(_Encoder):
    """E_ResNet: conv4x4 s2, `n_blocks - 1` BasicBlocks (ndf * min(4, n) channels), LeakyReLU, pool."""

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 8,
        nef: int = 64,
        n_blocks: int = 5,
        norm: str = "instance",
        vae: bool = True,
        init_type: str = "xavier",
        init_gain: float = 0.02,
    ):
        norm_layer, wrap = get_norm_layer(norm), conv_wrapper(norm)
        body: list[nn.Module] = [wrap(nn.Conv2d(input_nc, nef, kernel_size=4, stride=2, padding=1))]
        out_nc = nef
        for n in range(1, n_blocks):
            in_nc, out_nc = nef * min(4, n), nef * min(4, n + 1)
            body.append(BasicBlock(in_nc, out_nc, norm_layer, wrap))
        body.append(nn.LeakyReLU(0.2, True))
        super().__init__(body, out_nc, output_nc, vae)
        init_weights(self, init_type, init_gain)


@register_net
class ConvEncoder(_Encoder):
    """E_NLayers: `n_layers` 4x4 stride-2 convs (ndf * min(2**n, 4) channels), LeakyReLU, pool."""

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 8,
        nef: int = 64,
        n_layers: int = 5,
        norm: str = "instance",
        vae: bool = True,
        init_type: str = "xavier",
        init_gain: float = 0.02,
    ):
        norm_layer, wrap = get_norm_layer(norm), conv_wrapper(norm)
        body: list[nn.Module] = [
            wrap(nn.Conv2d(input_nc, nef, kernel_size=4, stride=2, padding=1)),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 4)
            body += [
                wrap(nn.Conv2d(nef * prev, nef * mult, kernel_size=4, stride=2, padding=1)),
                norm_layer(nef * mult),
                nn.LeakyReLU(0.2, True),
            ]
        super().__init__(body, nef * mult, output_nc, vae)
        init_weights(self, init_type, init_gain)
