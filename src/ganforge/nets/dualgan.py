"""DualGAN's nets as the reference TensorFlow code builds them (duxingren14/DualGAN `model.py`, `ops.py`).

* `DualGANGenerator` (the reference `fcn`): a U-Net. The first conv is 5x5, the other
  `num_downs - 1` are 3x3, all stride 2. LeakyReLU 0.2 goes before each conv after the first.
  3x3 stride-2 deconvs with ReLU before each come back up, every one followed by the per-sample
  norm and concatenated with its skip. A 5x5 deconv and tanh give the output. The reference's
  `dropout_rate` defaults to 0 (it is fed to `tf.nn.dropout` as the keep probability), so there is
  no dropout, and no norm uses batch statistics: train and eval compute the same function.
* `DualGANDiscriminator` (the reference 'globalgan' critic): a 5x5 then four 3x3 stride-2 convs
  (ndf, 2, 4, 8, 8 x ndf), the per-sample norm on all but the first, LeakyReLU 0.2, and a linear
  layer from the flattened maps to one raw score.
* `SampleNorm`: the reference `ops.batch_norm`. Despite its name it normalises each sample's
  channels over H and W (`tf.nn.moments(x, axes=[1, 2])`), eps 1e-6. It learns a scale, drawn from
  N(1, 0.02), and a centre, 0. Unlike `nn.InstanceNorm2d` it accepts 1x1 maps: the U-Net's
  bottleneck normalises to its centre, as in the reference.

Convs use TensorFlow's 'SAME' padding, which pads stride-2 convs more after than before (3x3: 0/1,
5x5: 1/2). The deconvs crop the same way. Weights start as TF's: convs from a normal
truncated at 2 std (0.02), deconvs and the linear layer N(0, 0.02), biases 0.
"""

from __future__ import annotations

import torch
from torch import nn

from ganforge.nets.generators import check_divisible
from ganforge.nets.registry import register_net
from ganforge.utils.errors import ConfigError


def _same_pad(k: int) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) of a stride-2 conv with a k x k kernel on an even input."""
    total = k - 2
    return total // 2, total - total // 2


class SampleNorm(nn.Module):
    """Per-sample, per-channel normalisation over H and W with a learned scale and centre."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.empty(channels).normal_(1.0, 0.02))
        self.center = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.scale[:, None, None] + self.center[:, None, None]


class SameConv(nn.Module):
    """Stride-2 conv with TF 'SAME' padding: even inputs halve exactly."""

    def __init__(self, cin: int, cout: int, k: int):
        super().__init__()
        before, after = _same_pad(k)
        self.pad = nn.ZeroPad2d((before, after, before, after))
        self.conv = nn.Conv2d(cin, cout, k, 2, 0)
        nn.init.trunc_normal_(self.conv.weight, 0.0, 0.02, -0.04, 0.04)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class SameDeconv(nn.Module):
    """Stride-2 transposed conv that doubles the size, cropped as TF's `conv2d_transpose` with 'SAME'."""

    def __init__(self, cin: int, cout: int, k: int):
        super().__init__()
        self.before = _same_pad(k)[0]
        self.deconv = nn.ConvTranspose2d(cin, cout, k, 2, 0)
        nn.init.normal_(self.deconv.weight, 0.0, 0.02)
        nn.init.zeros_(self.deconv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = 2 * x.shape[-2], 2 * x.shape[-1]
        return self.deconv(x)[..., self.before : self.before + h, self.before : self.before + w]


@register_net
class DualGANGenerator(nn.Module):
    """The reference `fcn` U-Net. `num_downs` 8 takes 256 px to a 1x1 bottleneck; 6 does it for 64 px."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, num_downs: int = 8):
        super().__init__()
        if num_downs < 2:
            raise ConfigError(f"DualGANGenerator needs num_downs >= 2, got {num_downs}")
        self.num_downs = num_downs
        chans = [ngf * min(2**i, 8) for i in range(num_downs)]  # e1 .. e_n
        self.first = SameConv(input_nc, chans[0], 5)
        self.down = nn.ModuleList(
            nn.Sequential(nn.LeakyReLU(0.2), SameConv(chans[i - 1], chans[i], 3), SampleNorm(chans[i])) for i in range(1, num_downs)
        )
        # Up block j mirrors e_{n-j}; its input is the previous block's output concatenated with its skip.
        ups, cin = [], chans[-1]
        for skip in reversed(chans[:-1]):
            ups.append(nn.Sequential(nn.ReLU(), SameDeconv(cin, skip, 3), SampleNorm(skip)))
            cin = 2 * skip
        self.up = nn.ModuleList(ups)
        self.last = nn.Sequential(nn.ReLU(), SameDeconv(cin, output_nc, 5), nn.Tanh())

    @property
    def size_multiple(self) -> int:
        return 2**self.num_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x, self.size_multiple, "DualGANGenerator")
        skips = [self.first(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        h = skips.pop()
        for block in self.up:
            h = torch.cat([block(h), skips.pop()], 1)
        return self.last(h)


@register_net
class DualGANDiscriminator(nn.Module):
    """The reference 'globalgan' critic: one raw score per image of `image_size` px (square)."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, image_size: int = 256):
        super().__init__()
        if image_size % 32:
            raise ConfigError(
                f"DualGANDiscriminator halves its input 5 times, so image_size must be a multiple of 32, "
                f"got {image_size}; set data.crop_size"
            )
        self.image_size = image_size
        chans = [ndf, ndf * 2, ndf * 4, ndf * 8, ndf * 8]
        layers = [SameConv(input_nc, ndf, 5), nn.LeakyReLU(0.2)]
        for cin, cout in zip(chans, chans[1:]):
            layers += [SameConv(cin, cout, 3), SampleNorm(cout), nn.LeakyReLU(0.2)]
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(chans[-1] * (image_size // 32) ** 2, 1)
        nn.init.normal_(self.linear.weight, 0.0, 0.02)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ConfigError(
                f"DualGANDiscriminator was built for {self.image_size} px images, got {tuple(x.shape[-2:])}; "
                "its linear layer fixes the size: set model.netD_A.image_size to data.crop_size"
            )
        return self.linear(self.convs(x).flatten(1))
