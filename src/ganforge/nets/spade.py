"""SPADE / GauGAN networks (Park et al. 2019), as NVlabs/SPADE builds them.

`SPADEGenerator` (models/networks/generator.py), `SPADEResnetBlock` (architecture.py),
`SPADEDiscriminator` (discriminator.py MultiscaleDiscriminator + NLayerDiscriminator) and
`SPADEEncoder` (encoder.py ConvEncoder). The SPADE norm itself is `ganforge.nets.norms.SPADE`.
Every net takes `semantic_nc`: label channels (+1 don't-care, +1 instance edges).

Spectral norm and init follow what the published models trained with (`init_spade_weights`):
`spectral_norm="reference"` is torch.nn.utils.spectral_norm's power iteration (`ganforge.nets.norms.SpectralNorm`),
and `init_spectral=False` leaves the spectral-normed layers at PyTorch's default init, as the reference's GPU
path does. `spectral_norm="torch"` with `init_spectral=True` is ganforge's behaviour before it matched them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils import parametrize

from ganforge.nets.init import INIT_CHOICES, _init_tensor, _refresh_spectral_norm
from ganforge.nets.norms import SPADE, SpectralConv2d, SpectralNorm, spectral_norm
from ganforge.nets.registry import register_net
from ganforge.utils.errors import ConfigError

UPSAMPLING_CHOICES = {"normal": 5, "more": 6, "most": 7}  # generator.py compute_latent_vector_size


class SPADEResnetBlock(nn.Module):
    """Twice SPADE -> LeakyReLU 0.2 -> 3x3 conv, plus a shortcut: the identity, or SPADE -> 1x1 conv
    without bias when fin != fout (architecture.py; the shortcut has no activation there)."""

    def __init__(
        self,
        fin: int,
        fout: int,
        semantic_nc: int,
        param_free_norm: str = "batch",
        spectral: bool = True,
        nhidden: int = 128,
        spectral_norm_kind: str = "reference",
    ):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        # Built in the reference's order (the convs, then their spectral norms, then the SPADEs), so a
        # seed draws the same default weights and power-iteration vectors.
        conv = SpectralConv2d if spectral else nn.Conv2d
        self.conv_0 = conv(fin, fmiddle, kernel_size=3, padding=1)
        self.conv_1 = conv(fmiddle, fout, kernel_size=3, padding=1)
        if self.learned_shortcut:
            self.conv_s = conv(fin, fout, kernel_size=1, bias=False)
        if spectral:
            for conv in (self.conv_0, self.conv_1) + ((self.conv_s,) if self.learned_shortcut else ()):
                spectral_norm(conv, spectral_norm_kind)
        self.norm_0 = SPADE(fin, semantic_nc, param_free_norm, nhidden)
        self.norm_1 = SPADE(fmiddle, semantic_nc, param_free_norm, nhidden)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, semantic_nc, param_free_norm, nhidden)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


def init_spade_weights(net: nn.Module, init_type: str = "xavier", init_gain: float = 0.02, init_spectral: bool = False) -> nn.Module:
    """models/networks/base_network.py init_weights: conv and linear weights by `init_type`, their biases 0,
    affine BatchNorm weights N(1, gain).

    `init_spectral=False` is what the published models trained with. networks/__init__.py create_network
    calls `net.cuda()` before `net.init_weights()`; the hook spectral_norm keeps `weight` as a plain
    attribute aliasing weight_orig's storage, which `.cuda()` moves away from it, so the init writes into
    a stale CPU copy: every spectral-normed weight keeps PyTorch's default kaiming-uniform init (std
    1/sqrt(3 fan_in), about 30x xavier(0.02) at ngf 64) while its bias is zeroed. `init_spectral=True` is the
    reference's CPU path (`--gpu_ids -1`), where the init reaches them. Both start from the random u, v of
    the spectral norm, with no power iterations; torch's parametrization (`spectral_norm="torch"`) has its
    u, v re-estimated for the new weight instead.
    """
    if init_type not in INIT_CHOICES:
        raise ConfigError(f"unknown init_type {init_type!r}; choose one of: {', '.join(INIT_CHOICES)}")
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (_ConvNd, nn.Linear)):
                spectral = parametrize.is_parametrized(m, "weight")
                if not spectral:
                    _init_tensor(m.weight, init_type, init_gain)
                elif init_spectral:
                    _init_tensor(m.parametrizations.weight.original, init_type, init_gain)
                    if not isinstance(m.parametrizations.weight[0], SpectralNorm):
                        _refresh_spectral_norm(m)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, _BatchNorm) and m.affine:
                nn.init.normal_(m.weight, 1.0, init_gain)
                nn.init.zeros_(m.bias)
    return net


def latent_size(crop_size: int, aspect_ratio: float, num_upsampling_layers: str) -> tuple[int, int]:
    """(sh, sw): the generator's starting grid (generator.py compute_latent_vector_size)."""
    if num_upsampling_layers not in UPSAMPLING_CHOICES:
        raise ConfigError(f"num_upsampling_layers={num_upsampling_layers!r}: choose one of {', '.join(UPSAMPLING_CHOICES)}")
    sw = crop_size // 2 ** UPSAMPLING_CHOICES[num_upsampling_layers]
    sh = round(sw / aspect_ratio)
    if sw < 1 or sh < 1:
        raise ConfigError(
            f"crop_size={crop_size} with aspect_ratio={aspect_ratio} is too small for num_upsampling_layers="
            f"{num_upsampling_layers} (it needs a side of at least {2 ** UPSAMPLING_CHOICES[num_upsampling_layers]} px)"
        )
    return sh, sw


def label_edges(inst: torch.Tensor) -> torch.Tensor:
    """1 where the instance id differs from any 4-neighbour (pix2pix_model.py get_edges), for (..., H, W)."""
    edge = torch.zeros_like(inst, dtype=torch.bool)
    dx = inst[..., :, 1:] != inst[..., :, :-1]
    dy = inst[..., 1:, :] != inst[..., :-1, :]
    edge[..., :, 1:] |= dx
    edge[..., :, :-1] |= dx
    edge[..., 1:, :] |= dy
    edge[..., :-1, :] |= dy
    return edge.float()


@register_net
class SPADEGenerator(nn.Module):
    """Label map (or z, with the VAE) -> image. The input grid is crop/2^n (n = 5, 6, 7 for
    normal | more | most); head, 2 middle and 4 up SPADE ResBlocks (16 -> 8 -> 4 -> 2 -> 1 x ngf, and
    a fifth up block to ngf/2 with `most`), nearest x2 upsampling; LeakyReLU -> 3x3 conv -> tanh."""

    def __init__(
        self,
        semantic_nc: int,
        output_nc: int = 3,
        ngf: int = 64,
        crop_size: int = 256,
        aspect_ratio: float = 1.0,
        num_upsampling_layers: str = "normal",
        use_vae: bool = False,
        z_dim: int = 256,
        param_free_norm: str = "batch",
        spectral: bool = True,
        nhidden: int = 128,
        init_type: str = "xavier",
        init_gain: float = 0.02,
        spectral_norm: str = "reference",
        init_spectral: bool = False,
    ):
        super().__init__()
        self.use_vae, self.z_dim, self.ngf = use_vae, z_dim, ngf
        self.num_upsampling_layers = num_upsampling_layers
        self.sh, self.sw = latent_size(crop_size, aspect_ratio, num_upsampling_layers)
        nf = ngf
        if use_vae:
            self.fc = nn.Linear(z_dim, 16 * nf * self.sh * self.sw)
        else:
            self.fc = nn.Conv2d(semantic_nc, 16 * nf, kernel_size=3, padding=1)

        def block(fin: int, fout: int) -> SPADEResnetBlock:
            return SPADEResnetBlock(fin, fout, semantic_nc, param_free_norm, spectral, nhidden, spectral_norm)

        self.head_0 = block(16 * nf, 16 * nf)
        self.G_middle_0 = block(16 * nf, 16 * nf)
        self.G_middle_1 = block(16 * nf, 16 * nf)
        self.up_0 = block(16 * nf, 8 * nf)
        self.up_1 = block(8 * nf, 4 * nf)
        self.up_2 = block(4 * nf, 2 * nf)
        self.up_3 = block(2 * nf, 1 * nf)
        final_nc = nf
        if num_upsampling_layers == "most":
            self.up_4 = block(nf, nf // 2)
            final_nc = nf // 2
        self.conv_img = nn.Conv2d(final_nc, output_nc, kernel_size=3, padding=1)
        init_spade_weights(self, init_type, init_gain, init_spectral)

    @property
    def size_multiple(self) -> int:
        return 2 ** UPSAMPLING_CHOICES[self.num_upsampling_layers]

    def blocks(self) -> list[SPADEResnetBlock]:
        names = ["head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3"]
        return [getattr(self, n) for n in names + (["up_4"] if hasattr(self, "up_4") else [])]

    def forward(self, seg: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if self.use_vae:
            if z is None:
                z = torch.randn(seg.size(0), self.z_dim, device=seg.device, dtype=seg.dtype)
            x = self.fc(z).view(z.shape[0], 16 * self.ngf, self.sh, self.sw)  # the batch from z: ONNX keeps the channels static
        else:
            # The grid follows the label map, so a label map of any multiple of 2^n works at test time.
            h, w = seg.shape[2] // self.size_multiple, seg.shape[3] // self.size_multiple
            x = self.fc(F.interpolate(seg, size=(h, w), mode="nearest"))
        up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
        resized: dict[tuple[int, ...], torch.Tensor] = {tuple(seg.shape[2:]): seg}

        def seg_like(t: torch.Tensor) -> torch.Tensor:
            """The label map at t's size, resized once for all the SPADEs there (each would resize it alike).
            An export's trace hands each SPADE the full map, to resize at the sizes of the graph's input."""
            if torch.jit.is_tracing():
                return seg
            size = tuple(t.shape[2:])
            if size not in resized:
                resized[size] = F.interpolate(seg, size=size, mode="nearest")
            return resized[size]

        x = up(self.head_0(x, seg_like(x)))
        x = self.G_middle_0(x, seg_like(x))
        if self.num_upsampling_layers in ("more", "most"):
            x = up(x)
        x = up(self.G_middle_1(x, seg_like(x)))
        x = up(self.up_0(x, seg_like(x)))
        x = up(self.up_1(x, seg_like(x)))
        x = up(self.up_2(x, seg_like(x)))
        x = self.up_3(x, seg_like(x))
        if self.num_upsampling_layers == "most":
            x = up(x)
            x = self.up_4(x, seg_like(x))
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


def _norm_conv(cin: int, cout: int, kernel: int, stride: int, padding: int, kind: str) -> nn.Sequential:
    """`spectralinstance` as networks/normalization.py get_nonspade_norm_layer: spectral norm on the conv,
    its bias dropped (the norm removes it), then InstanceNorm without affine."""
    return nn.Sequential(
        spectral_norm(SpectralConv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False), kind),
        nn.InstanceNorm2d(cout, affine=False),
    )


class NLayerSPADEDiscriminator(nn.Module):
    """One scale: k4 convs with padding 2, strides 2 for all but the last of the `n_layers` (the
    reference's n_layers_D), channels ndf x 2^n capped at 512, then a 1-channel k4 conv."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 4, spectral_norm: str = "reference"):
        super().__init__()
        if n_layers < 1:
            raise ConfigError(f"SPADE's discriminator needs n_layers >= 1, got {n_layers}")
        kw, pad = 4, int(math.ceil((4 - 1.0) / 2))
        stages: list[nn.Module] = [nn.Sequential(nn.Conv2d(input_nc, ndf, kw, stride=2, padding=pad), nn.LeakyReLU(0.2))]
        nf = ndf
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            stages.append(nn.Sequential(_norm_conv(nf_prev, nf, kw, stride, pad, spectral_norm), nn.LeakyReLU(0.2)))
        stages.append(nn.Conv2d(nf, 1, kw, stride=1, padding=pad))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output; the last is the score map."""
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


@register_net
class SPADEDiscriminator(nn.Module):
    """`num_D` scales; scale i sees the input average-pooled (3, 2, 1, count_include_pad=False) i
    times. Returns, per scale, the list of every layer's features with the score map last."""

    def __init__(
        self,
        input_nc: int,
        ndf: int = 64,
        n_layers: int = 4,
        num_D: int = 2,
        init_type: str = "xavier",
        init_gain: float = 0.02,
        spectral_norm: str = "reference",
        init_spectral: bool = False,
    ):
        super().__init__()
        self.scales = nn.ModuleList(NLayerSPADEDiscriminator(input_nc, ndf, n_layers, spectral_norm) for _ in range(num_D))
        init_spade_weights(self, init_type, init_gain, init_spectral)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
            results.append(d(x))
        return results


@register_net
class SPADEEncoder(nn.Module):
    """Style image -> (mu, logvar) of size z_dim. The image is resized (bilinear) to `load_size`, then
    k3 stride-2 convs with spectral instance norm (64 -> 128 -> 256 -> 512 -> 512 -> 512 x ndf/64) bring it
    to 4x4: six convs at 256 px (encoder.py ConvEncoder, whose sixth layer exists for crop >= 256)."""

    def __init__(
        self,
        input_nc: int = 3,
        ndf: int = 64,
        z_dim: int = 256,
        load_size: int = 256,
        init_type: str = "xavier",
        init_gain: float = 0.02,
        spectral_norm: str = "reference",
        init_spectral: bool = False,
    ):
        super().__init__()
        n_layers = int(round(math.log2(load_size / 4)))
        if load_size != 4 * 2**n_layers or n_layers < 1:
            raise ConfigError(f"SPADEEncoder load_size must be 4 x a power of 2 (e.g. 256), got {load_size}")
        self.load_size = load_size
        chans = [input_nc] + [ndf * min(2**i, 8) for i in range(n_layers)]
        self.layers = nn.ModuleList(_norm_conv(chans[i], chans[i + 1], 3, 2, 1, spectral_norm) for i in range(n_layers))
        self.fc_mu = nn.Linear(chans[-1] * 16, z_dim)
        self.fc_var = nn.Linear(chans[-1] * 16, z_dim)
        init_spade_weights(self, init_type, init_gain, init_spectral)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[2:] != (self.load_size, self.load_size):
            x = F.interpolate(x, size=(self.load_size, self.load_size), mode="bilinear")
        for i, layer in enumerate(self.layers):
            x = layer(x if i == 0 else F.leaky_relu(x, 0.2))
        x = F.leaky_relu(x, 0.2).flatten(1)
        return self.fc_mu(x), self.fc_var(x)
