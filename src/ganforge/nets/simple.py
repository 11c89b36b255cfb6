"""Small all-convolutional nets of the CycleGAN seed article and of DiscoGAN.

* `ConvResGenerator` (cyclegan_seed): conv/BatchNorm encoder (4x4 stride-2 convs), residual
  blocks, transposed-conv decoder, tanh.
* `EncoderDecoderGenerator` (DiscoGAN): 4x4 stride-2 conv encoder, mirrored by transposed convs;
  no skips; BatchNorm. Optionally (`nz`) a bottleneck of `nz` channels (a 4x4 valid conv) between
  them: SKTBrain/DiscoGAN `model.py` `Generator(extra_layers=True)`; its training script builds
  `Generator()`, without it.
* `ConvDiscriminator` (both): `n_layers` 4x4 stride-2 convs (no norm on the first, LeakyReLU 0.2)
  and one final 4x4 valid conv: a single score at 64 px, a small score map above.

`bias=False` drops every conv bias and `init_type=None` keeps PyTorch's default init, as the
DiscoGAN reference does.
"""

from __future__ import annotations

import torch
from torch import nn

from ganforge.nets.generators import check_divisible
from ganforge.nets.init import init_weights
from ganforge.nets.norms import get_norm_layer, use_bias
from ganforge.nets.registry import register_net
from ganforge.utils.errors import ConfigError

OUTPUT_ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def _down(cin: int, cout: int, norm: str | None, act: nn.Module, bias: bool = True) -> list[nn.Module]:
    bias = bias and (norm is None or use_bias(norm))
    layers = [nn.Conv2d(cin, cout, 4, 2, 1, bias=bias)]
    return layers + ([get_norm_layer(norm)(cout)] if norm else []) + [act]


def _up(cin: int, cout: int, norm: str, bias: bool = True) -> list[nn.Module]:
    conv = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=bias and use_bias(norm))
    return [conv, get_norm_layer(norm)(cout), nn.ReLU(True)]


def _init(net: nn.Module, init_type: str | None, init_gain: float) -> None:
    """`init_type=None`: keep the init PyTorch gives each layer."""
    if init_type is not None:
        init_weights(net, init_type, init_gain)


class ResidualBlock(nn.Module):
    """conv3x3, norm, ReLU, conv3x3, norm; plus identity."""

    def __init__(self, dim: int, norm: str = "batch"):
        super().__init__()
        norm_layer, bias = get_norm_layer(norm), use_bias(norm)
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 3, 1, 1, bias=bias),
            norm_layer(dim),
            nn.ReLU(True),
            nn.Conv2d(dim, dim, 3, 1, 1, bias=bias),
            norm_layer(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


@register_net
class ConvResGenerator(nn.Module):
    """The seed article's G: `n_down` conv/BN downsamplings (conv_dim, 2*conv_dim, ...),
    `n_blocks` residual blocks, `n_down` transposed convs back, tanh."""

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        conv_dim: int = 64,
        n_down: int = 2,
        n_blocks: int = 6,
        norm: str = "batch",
        init_type: str = "normal",
        init_gain: float = 0.02,
    ):
        super().__init__()
        self.n_down = n_down
        layers, ch = [], conv_dim
        for i in range(n_down):
            layers += _down(input_nc if i == 0 else ch // 2, ch, norm, nn.ReLU(True))
            ch *= 2
        ch //= 2
        layers += [ResidualBlock(ch, norm) for _ in range(n_blocks)]
        for _ in range(n_down - 1):
            layers += _up(ch, ch // 2, norm)
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, output_nc, 4, 2, 1), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_weights(self, init_type, init_gain)

    @property
    def size_multiple(self) -> int:
        return 2**self.n_down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x, self.size_multiple, "ConvResGenerator")
        return self.model(x)


@register_net
class EncoderDecoderGenerator(nn.Module):
    """DiscoGAN's G. At 64 px: 64 -> 32 -> 16 -> 8 -> 4 and back; with `nz`, the 4x4 maps go
    through a 1x1x`nz` bottleneck (larger inputs, multiples of 16 of at least 64 px, keep a small
    spatial one). `output` is the last activation: tanh for [-1, 1] images, sigmoid for [0, 1]."""

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        n_down: int = 4,
        nz: int | None = None,
        norm: str = "batch",
        bias: bool = True,
        output: str = "tanh",
        init_type: str | None = "normal",
        init_gain: float = 0.02,
    ):
        super().__init__()
        if output not in OUTPUT_ACTIVATIONS:
            raise ConfigError(f"EncoderDecoderGenerator output must be one of {sorted(OUTPUT_ACTIVATIONS)}, got {output!r}")
        self.n_down, self.nz = n_down, nz
        lrelu = lambda: nn.LeakyReLU(0.2, True)  # noqa: E731
        layers, ch = _down(input_nc, ngf, None, lrelu(), bias), ngf
        for _ in range(n_down - 1):
            layers += _down(ch, ch * 2, norm, lrelu(), bias)
            ch *= 2
        if nz:
            norm_layer, b = get_norm_layer(norm), bias and use_bias(norm)
            layers += [nn.Conv2d(ch, nz, 4, 1, 0, bias=b), norm_layer(nz), lrelu()]
            layers += [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=b), norm_layer(ch), nn.ReLU(True)]
        for _ in range(n_down - 1):
            layers += _up(ch, ch // 2, norm, bias)
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, output_nc, 4, 2, 1, bias=bias), OUTPUT_ACTIVATIONS[output]()]
        self.model = nn.Sequential(*layers)
        _init(self, init_type, init_gain)

    @property
    def size_multiple(self) -> int:
        return 2**self.n_down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x, self.size_multiple, "EncoderDecoderGenerator")
        if not self.nz:
            return self.model(x)
        side = min(x.shape[-2:]) // self.size_multiple - 3  # the bottleneck's side
        if side < 1:
            raise ConfigError(
                f"EncoderDecoderGenerator needs inputs of at least {4 * self.size_multiple} px, got "
                f"{tuple(x.shape[-2:])}; set data.crop_size={4 * self.size_multiple} or more"
            )
        if self.training and side == 1 and x.shape[0] == 1:
            raise ConfigError(
                "EncoderDecoderGenerator normalises a 1x1 bottleneck over the batch, so it trains with "
                "batches of 2 or more (DiscoGAN: 64); set data.batch_size"
            )
        return self.model(x)


@register_net
class ConvDiscriminator(nn.Module):
    """`n_layers` stride-2 4x4 convs (ndf, 2*ndf, ..., capped at 8*ndf), then a 4x4 valid conv to 1
    channel. Raw scores; `features(x)` also returns the normed hidden activations (DiscoGAN's
    feature matching uses them)."""

    def __init__(
        self,
        input_nc: int = 3,
        ndf: int = 64,
        n_layers: int = 4,
        norm: str = "batch",
        bias: bool = True,
        init_type: str | None = "normal",
        init_gain: float = 0.02,
    ):
        super().__init__()
        lrelu = lambda: nn.LeakyReLU(0.2, True)  # noqa: E731
        self.hidden = nn.ModuleList([nn.Sequential(*_down(input_nc, ndf, None, lrelu(), bias))])
        ch = ndf
        for n in range(1, n_layers):
            nxt = ndf * min(2**n, 8)
            self.hidden.append(nn.Sequential(*_down(ch, nxt, norm, lrelu(), bias)))
            ch = nxt
        self.head = nn.Conv2d(ch, 1, 4, 1, 0, bias=bias)
        _init(self, init_type, init_gain)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Hidden activations after the first (un-normed) layer, then the score map."""
        out = []
        for layer in self.hidden:
            x = layer(x)
            out.append(x)
        return out[1:] + [self.head(x)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = layer(x)
        return self.head(x)
