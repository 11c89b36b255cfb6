"""Image-to-image generators: the pix2pix/BicycleGAN U-Net and the CycleGAN ResNet.

Module layouts (the `model` Sequentials and their indices) follow pytorch-CycleGAN-and-pix2pix,
so state-dict keys of a U-Net without z and of the ResNet generator match the reference's.
"""

from __future__ import annotations

import torch
from torch import nn

from ganforge.nets.init import init_weights
from ganforge.nets.norms import conv_wrapper, get_norm_layer, use_bias
from ganforge.nets.registry import register_net
from ganforge.utils.errors import ConfigError

WHERE_ADD_CHOICES = ("input", "all")
PADDING_CHOICES = ("reflect", "replicate", "zero")


def check_divisible(x: torch.Tensor, multiple: int, net_name: str) -> None:
    """Raise a ConfigError naming the sizes when H or W is not a multiple of `multiple`.

    A mismatched size otherwise surfaces as a shape error deep inside a skip concat (U-Net) or as
    an output of a different size than the input (ResNet).
    """
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        crop = max(multiple, min(h, w) // multiple * multiple)
        raise ConfigError(
            f"{net_name} needs image height and width divisible by {multiple}, got {h}x{w}. "
            f"Resize or crop the images to a multiple of {multiple}: for example "
            f"data.preprocess=resize_and_crop with data.crop_size={crop}."
        )


def _tile(z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, nz) -> (B, nz, H, W) matching `like`'s spatial size, without copying."""
    return z[:, :, None, None].expand(-1, -1, like.shape[2], like.shape[3])


class UnetSkipBlock(nn.Module):
    """One U-Net level: down -> submodule -> up, with the input concatenated to the output.

    X -------------------identity-------------------- X
      |-- downsampling -- |submodule| -- upsampling --|

    `nz > 0` concatenates a tiled z to this level's input before downsampling (BicycleGAN).
    `bias_before_batchnorm` keeps the biases of the convs before a BatchNorm, as BicycleGAN's
    UnetBlock_with_z does (pytorch-CycleGAN-and-pix2pix drops them: BatchNorm's shift makes them redundant).
    The down path's LeakyReLU is not in place: the reference's in-place one rewrites the skip
    tensor too, but the parent's up path starts with a ReLU and ReLU(LeakyReLU(x)) == ReLU(x),
    so the result is the same.
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: UnetSkipBlock | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "batch",
        use_dropout: bool = False,
        nz: int = 0,
        bias_before_batchnorm: bool = False,
    ):
        super().__init__()
        self.outermost = outermost
        self.nz = nz
        norm_layer, wrap, bias = get_norm_layer(norm), conv_wrapper(norm), use_bias(norm) or bias_before_batchnorm
        input_nc = (outer_nc if input_nc is None else input_nc) + nz
        downconv = wrap(nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=bias))
        downrelu = nn.LeakyReLU(0.2)
        uprelu = nn.ReLU(True)
        up_in = inner_nc if innermost else inner_nc * 2  # inner levels return [skip, up] concatenated

        if outermost:
            upconv = wrap(nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1))
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = wrap(nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias))
            # No norm after the innermost down conv: its output can be 1x1.
            layers = [downrelu, downconv, uprelu, upconv, norm_layer(outer_nc)]
        else:
            upconv = wrap(nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias))
            layers = [downrelu, downconv, norm_layer(inner_nc), submodule, uprelu, upconv, norm_layer(outer_nc)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.cat([x, _tile(z, x)], 1) if self.nz else x
        for layer in self.model:
            h = layer(h, z) if isinstance(layer, UnetSkipBlock) else layer(h)
        return h if self.outermost else torch.cat([x, h], 1)


@register_net
class UnetGenerator(nn.Module):
    """pix2pix U-Net (`num_downs` 7 = unet_128, 8 = unet_256), optionally conditioned on z.

    With `nz > 0` (BicycleGAN) z is tiled and concatenated to the input (`where_add="input"`,
    G_Unet_add_input) or to the input of every level (`where_add="all"`, G_Unet_add_all).
    Dropout 0.5 sits in the `num_downs - 5` ngf*8 decoder levels next to the innermost one.
    With `norm="batch"` the convs before a BatchNorm have no bias (pytorch-CycleGAN-and-pix2pix), unless
    `bias_before_batchnorm` (BicycleGAN's G_Unet_add_all / G_Unet_add_input keep every conv bias).
    """

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        use_dropout: bool = True,
        init_type: str = "normal",
        init_gain: float = 0.02,
        nz: int = 0,
        where_add: str = "input",
        bias_before_batchnorm: bool = False,
    ):
        super().__init__()
        if num_downs < 5:
            raise ConfigError(f"UnetGenerator needs num_downs >= 5, got {num_downs}")
        if where_add not in WHERE_ADD_CHOICES:
            raise ConfigError(f"unknown where_add {where_add!r}; choose one of: {', '.join(WHERE_ADD_CHOICES)}")
        self.num_downs = num_downs
        self.nz = nz
        z_inner = nz if where_add == "all" else 0
        kw = dict(norm=norm, nz=z_inner, bias_before_batchnorm=bias_before_batchnorm)
        block = UnetSkipBlock(ngf * 8, ngf * 8, innermost=True, **kw)
        for _ in range(num_downs - 5):
            block = UnetSkipBlock(ngf * 8, ngf * 8, submodule=block, use_dropout=use_dropout, **kw)
        block = UnetSkipBlock(ngf * 4, ngf * 8, submodule=block, **kw)
        block = UnetSkipBlock(ngf * 2, ngf * 4, submodule=block, **kw)
        block = UnetSkipBlock(ngf, ngf * 2, submodule=block, **kw)
        self.model = UnetSkipBlock(
            output_nc, ngf, input_nc, block, outermost=True, norm=norm, nz=nz, bias_before_batchnorm=bias_before_batchnorm
        )
        init_weights(self, init_type, init_gain)

    @property
    def size_multiple(self) -> int:
        """Input H and W must be multiples of this (each level halves the size)."""
        return 2**self.num_downs

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if (z is None) != (self.nz == 0):
            raise ValueError(f"UnetGenerator(nz={self.nz}) called with z={'None' if z is None else tuple(z.shape)}")
        if z is not None and z.shape != (x.shape[0], self.nz):
            raise ValueError(f"z must have shape ({x.shape[0]}, {self.nz}), got {tuple(z.shape)}")
        check_divisible(x, self.size_multiple, f"UnetGenerator(num_downs={self.num_downs})")
        return self.model(x, z)


class ResnetBlock(nn.Module):
    """Residual block: pad, conv3x3, norm, ReLU, [dropout], pad, conv3x3, norm; plus identity."""

    def __init__(self, dim: int, padding_type: str, norm: str, use_dropout: bool):
        super().__init__()
        if padding_type not in PADDING_CHOICES:
            raise ConfigError(f"unknown padding_type {padding_type!r}; choose one of: {', '.join(PADDING_CHOICES)}")
        norm_layer, wrap, bias = get_norm_layer(norm), conv_wrapper(norm), use_bias(norm)

        def padded_conv() -> list[nn.Module]:
            if padding_type == "zero":
                return [wrap(nn.Conv2d(dim, dim, kernel_size=3, padding=1, bias=bias))]
            pad = nn.ReflectionPad2d(1) if padding_type == "reflect" else nn.ReplicationPad2d(1)
            return [pad, wrap(nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=bias))]

        layers = padded_conv() + [norm_layer(dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += padded_conv() + [norm_layer(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


@register_net
class ResnetGenerator(nn.Module):
    """CycleGAN generator (Johnson et al.): c7s1-ngf, two stride-2 downs, `n_blocks` residual
    blocks, two stride-2 transposed convs, c7s1-output_nc, tanh. 9 blocks for 256 px, 6 for 128.
    """

    n_downsampling = 2

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        norm: str = "instance",
        use_dropout: bool = False,
        n_blocks: int = 9,
        padding_type: str = "reflect",
        init_type: str = "normal",
        init_gain: float = 0.02,
    ):
        super().__init__()
        norm_layer, wrap, bias = get_norm_layer(norm), conv_wrapper(norm), use_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            wrap(nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=bias)),
            norm_layer(ngf),
            nn.ReLU(True),
        ]
        for i in range(self.n_downsampling):
            mult = 2**i
            layers += [
                wrap(nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=bias)),
                norm_layer(ngf * mult * 2),
                nn.ReLU(True),
            ]
        mult = 2**self.n_downsampling
        layers += [ResnetBlock(ngf * mult, padding_type, norm, use_dropout) for _ in range(n_blocks)]
        for i in range(self.n_downsampling):
            mult = 2 ** (self.n_downsampling - i)
            layers += [
                wrap(nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=bias)),
                norm_layer(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), wrap(nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0)), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_weights(self, init_type, init_gain)

    @property
    def size_multiple(self) -> int:
        """Input H and W must be multiples of this for the output to have the input's size."""
        return 2**self.n_downsampling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x, self.size_multiple, "ResnetGenerator")
        return self.model(x)
