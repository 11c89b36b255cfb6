"""Unit tests of the shared network library (tiny nets, CPU, a few seconds in all)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ganforge.nets import (
    ConvEncoder,
    MultiscaleDiscriminator,
    NLayerDiscriminator,
    PixelDiscriminator,
    ResnetEncoder,
    ResnetGenerator,
    UnetGenerator,
    get_norm_layer,
    init_weights,
)
from ganforge.nets.generators import ResnetBlock
from ganforge.nets.norms import InstanceNorm2d
from ganforge.utils.errors import ConfigError

CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def count(net: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in net.modules())


# ---------------------------------------------------------------- norms


def test_norm_layers():
    bn = get_norm_layer("batch")(4)
    assert isinstance(bn, nn.BatchNorm2d) and bn.affine and bn.track_running_stats
    inorm = get_norm_layer("instance")(4)
    assert isinstance(inorm, nn.InstanceNorm2d) and not inorm.affine and not inorm.track_running_stats
    assert isinstance(get_norm_layer("none")(4), nn.Identity)
    assert isinstance(get_norm_layer("spectral")(4), nn.Identity)
    assert isinstance(get_norm_layer("spectralinstance")(4), nn.InstanceNorm2d)


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_instance_norm_on_the_group_norm_kernel_matches_torchs_instance_norm(affine, dtype, tol):
    norm = InstanceNorm2d(5, affine=affine).to(dtype)
    if affine:
        with torch.no_grad():
            norm.weight.normal_()
            norm.bias.normal_()
    x = (torch.randn(3, 5, 9, 7, dtype=dtype) * 4 + 2).requires_grad_()
    g = torch.randn(3, 5, 9, 7, dtype=dtype)
    expected = F.instance_norm(x, weight=norm.weight, bias=norm.bias, eps=norm.eps)
    (dx_expected,) = torch.autograd.grad(expected, x, g)
    y = norm(x)
    assert y._base is None  # not a view of a (1, N*C, H, W) BatchNorm output: no CopySlices behind an in-place ReLU
    (dx,) = torch.autograd.grad(y, x, g)
    torch.testing.assert_close(y, expected, rtol=tol, atol=tol)
    torch.testing.assert_close(dx, dx_expected, rtol=tol, atol=tol)
    norm.reference_kernel = True
    assert torch.equal(norm(x), expected)  # precise: torch's own instance_norm, bit for bit


def test_instance_norm_keeps_torchs_errors_and_its_export_op():
    norm = get_norm_layer("instance")(4)
    with pytest.raises(ValueError, match="more than 1 spatial element"):
        norm(torch.randn(2, 4, 1, 1))
    graph = torch.jit.trace(nn.Sequential(norm), torch.randn(1, 4, 8, 8)).inlined_graph
    assert "aten::instance_norm" in str(graph) and "group_norm" not in str(graph)  # ONNX keeps InstanceNormalization


def test_precise_runs_the_reference_instance_norm_kernel():
    from ganforge.gans.cyclegan import CycleGAN

    nets = dict(
        netG_A=ResnetGenerator(ngf=4, n_blocks=1),
        netG_B=ResnetGenerator(ngf=4, n_blocks=1),
        netD_A=NLayerDiscriminator(3, ndf=4, norm="instance"),
        netD_B=NLayerDiscriminator(3, ndf=4, norm="instance"),
    )
    model = CycleGAN(**nets, optimizer_g=torch.optim.Adam, optimizer_d=torch.optim.Adam)
    norms = [m for m in model.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and all(type(m) is InstanceNorm2d and not m.reference_kernel for m in norms)
    model.precise = True
    assert model.precise is True and all(m.reference_kernel for m in norms)
    model.precise = False
    assert not any(m.reference_kernel for m in norms)


def test_unknown_norm_lists_choices():
    with pytest.raises(ConfigError, match="unknown norm 'group'.*batch, instance, none, spectral"):
        get_norm_layer("group")
    with pytest.raises(ConfigError, match="unknown norm"):
        NLayerDiscriminator(norm="layer")


# ---------------------------------------------------------------- U-Net


@pytest.mark.parametrize(
    "num_downs, h, w",
    [(5, 32, 32), (5, 64, 96), (5, 96, 64), (6, 64, 64), (6, 64, 128), (7, 128, 128)],
)
def test_unet_output_shape(num_downs, h, w):
    net = UnetGenerator(input_nc=1, output_nc=2, num_downs=num_downs, ngf=8)
    assert net.size_multiple == 2**num_downs
    out = net(torch.randn(2, 1, h, w))
    assert out.shape == (2, 2, h, w)
    assert out.abs().max() <= 1  # tanh


def test_unet_256_default_depth():
    net = UnetGenerator(ngf=8)
    assert net.size_multiple == 256
    assert net(torch.randn(1, 3, 256, 256)).shape == (1, 3, 256, 256)


@pytest.mark.parametrize("num_downs, expected", [(8, 3), (7, 2), (5, 0)])
def test_unet_dropout_in_innermost_decoder_blocks(num_downs, expected):
    net = UnetGenerator(num_downs=num_downs, ngf=8, use_dropout=True)
    drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == expected and all(d.p == 0.5 for d in drops)
    assert count(UnetGenerator(num_downs=num_downs, ngf=8, use_dropout=False), nn.Dropout) == 0


def test_unet_bias_only_without_batchnorm():
    def biased_convs(net):
        return [m.bias is not None for m in net.modules() if isinstance(m, CONV_TYPES)]

    # With BatchNorm only the outermost up conv (followed by tanh, not a norm) has a bias.
    assert sum(biased_convs(UnetGenerator(num_downs=5, ngf=8, norm="batch"))) == 1
    assert all(biased_convs(UnetGenerator(num_downs=5, ngf=8, norm="instance")))
    assert all(biased_convs(UnetGenerator(num_downs=5, ngf=8, norm="none")))


@pytest.mark.parametrize("h, w", [(48, 64), (64, 40)])
def test_unet_size_not_divisible_is_a_config_error(h, w):
    net = UnetGenerator(num_downs=5, ngf=8)
    with pytest.raises(ConfigError) as err:
        net(torch.randn(1, 3, h, w))
    msg = str(err.value)
    assert f"{h}x{w}" in msg and "divisible by 32" in msg
    assert "data.preprocess" in msg and "crop_size=32" in msg


@pytest.mark.parametrize("where_add", ["input", "all"])
def test_unet_z_changes_output(where_add):
    net = UnetGenerator(num_downs=5, ngf=8, nz=4, where_add=where_add, use_dropout=False).eval()
    x = torch.randn(2, 3, 32, 32)
    z = torch.randn(2, 4)
    a = net(x, z)
    assert a.shape == (2, 3, 32, 32)
    assert torch.equal(a, net(x, z.clone()))
    assert (a - net(x, torch.randn(2, 4))).abs().max() > 1e-4
    # z enters the first conv only ("input") or the first conv of every level ("all").
    downs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    with_z = [m.in_channels in (3 + 4, 8 + 4, 16 + 4, 32 + 4, 64 + 4) for m in downs]
    assert sum(with_z) == (1 if where_add == "input" else 5)


def test_unet_z_required_iff_nz():
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="nz=4"):
        UnetGenerator(num_downs=5, ngf=8, nz=4)(x)
    with pytest.raises(ValueError, match="nz=0"):
        UnetGenerator(num_downs=5, ngf=8)(x, torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"shape \(1, 4\)"):
        UnetGenerator(num_downs=5, ngf=8, nz=4)(x, torch.randn(1, 3))


def test_unet_bad_config():
    with pytest.raises(ConfigError, match="num_downs >= 5"):
        UnetGenerator(num_downs=4)
    with pytest.raises(ConfigError, match="where_add 'middle'.*input, all"):
        UnetGenerator(nz=8, where_add="middle")


# ---------------------------------------------------------------- ResNet generator


@pytest.mark.parametrize("h, w", [(32, 32), (64, 48), (36, 20)])
def test_resnet_output_shape(h, w):
    net = ResnetGenerator(input_nc=1, output_nc=2, ngf=8, n_blocks=2)
    assert net(torch.randn(2, 1, h, w)).shape == (2, 2, h, w)


def test_resnet_structure():
    net = ResnetGenerator(ngf=8, n_blocks=6)
    assert count(net, ResnetBlock) == 6
    assert count(net, nn.Dropout) == 0
    ups = [m for m in net.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(ups) == 2 and all(u.stride == (2, 2) and u.output_padding == (1, 1) for u in ups)
    assert count(net, nn.ReflectionPad2d) == 2 + 2 * 6
    inorms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert inorms and not any(m.affine or m.track_running_stats for m in inorms)
    assert count(ResnetGenerator(ngf=8, n_blocks=2, use_dropout=True), nn.Dropout) == 2


def test_resnet_size_not_divisible_is_a_config_error():
    with pytest.raises(ConfigError, match=r"divisible by 4, got 30x32"):
        ResnetGenerator(ngf=8, n_blocks=1)(torch.randn(1, 3, 30, 32))
    with pytest.raises(ConfigError, match="padding_type"):
        ResnetGenerator(padding_type="circular")


# ---------------------------------------------------------------- discriminators


def test_patchgan_256_gives_30x30():
    assert NLayerDiscriminator(input_nc=6, ndf=8).eval()(torch.randn(1, 6, 256, 256)).shape == (1, 1, 30, 30)


@pytest.mark.parametrize("n_layers, side", [(1, 30), (2, 14), (3, 6)])
def test_patchgan_output_side(n_layers, side):
    assert NLayerDiscriminator(3, 8, n_layers).eval()(torch.randn(2, 3, 64, 64)).shape == (2, 1, side, side)


def test_patchgan_receptive_field_is_70():
    net = NLayerDiscriminator(3, 8, 3, norm="none")  # BatchNorm would couple every pixel
    x = torch.randn(1, 3, 160, 160, requires_grad=True)
    out = net(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero()
    cols = x.grad.abs().sum(dim=(0, 1, 2)).nonzero()
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70


def test_patchgan_first_layer_has_no_norm_and_channels_cap_at_8x():
    net = NLayerDiscriminator(3, ndf=4, n_layers=5)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8, 16, 32, 32, 32, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 2, 2, 1, 1]
    assert isinstance(net.model[1], nn.LeakyReLU) and net.model[1].negative_slope == 0.2
    assert count(net, nn.BatchNorm2d) == 5


def test_patchgan_needs_a_layer():
    with pytest.raises(ConfigError, match="n_layers >= 1, got 0.*PixelDiscriminator"):
        NLayerDiscriminator(n_layers=0)


def test_pixel_discriminator_keeps_resolution():
    net = PixelDiscriminator(input_nc=6, ndf=8)
    assert all(m.kernel_size == (1, 1) for m in net.modules() if isinstance(m, nn.Conv2d))
    assert net(torch.randn(2, 6, 20, 24)).shape == (2, 1, 20, 24)


def test_multiscale_scales_ndf_and_resolution():
    net = MultiscaleDiscriminator(input_nc=3, ndf=8, n_layers=3, num_D=3, ndf_scale=0.5).eval()
    assert [d.model[0].out_channels for d in net.scales] == [8, 4, 2]
    x = torch.randn(2, 3, 128, 128)
    outs = net(x)
    assert [o.shape[-1] for o in outs] == [14, 6, 2]
    # Scale 1 sees the input average-pooled once.
    pooled = nn.functional.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    assert torch.allclose(outs[1], net.scales[1](pooled))
    assert [d.model[0].out_channels for d in MultiscaleDiscriminator(ndf=8, ndf_scale=1.0).scales] == [8, 8]


def test_multiscale_intermediate_features():
    net = MultiscaleDiscriminator(input_nc=3, ndf=8, n_layers=3, num_D=2, get_intermediate=True).eval()
    x = torch.randn(2, 3, 64, 64)
    outs = net(x)
    assert len(outs) == 2 and all(len(feats) == 5 for feats in outs)
    assert [f.shape[1] for f in outs[0]] == [8, 16, 32, 64, 1]
    net.get_intermediate = False
    for feats, score in zip(outs, net(x)):
        assert torch.allclose(feats[-1], score)


def test_spade_padding_variant():
    # SPADE's D (n_layers_D=4, padding 2) is our n_layers=3 with padding=2: 256 px -> 35x35.
    net = NLayerDiscriminator(3, 8, 3, norm="spectralinstance", padding=2).eval()
    assert net(torch.randn(1, 3, 256, 256)).shape == (1, 1, 35, 35)


# ---------------------------------------------------------------- encoders


@pytest.mark.parametrize("encoder", [ResnetEncoder, ConvEncoder])
@pytest.mark.parametrize("size", [64, 96])
def test_encoder_returns_mu_logvar(encoder, size):
    mu, logvar = encoder(input_nc=3, output_nc=8, nef=8)(torch.randn(2, 3, size, size))
    assert mu.shape == logvar.shape == (2, 8)
    assert not torch.allclose(mu, logvar)


def test_encoder_without_vae_returns_code():
    net = ResnetEncoder(nef=8, vae=False)
    assert net.fcVar is None
    assert net(torch.randn(2, 3, 64, 64)).shape == (2, 8)


@pytest.mark.parametrize("encoder, depth, size", [(ResnetEncoder, 4, 128), (ResnetEncoder, 5, 256), (ConvEncoder, 4, 128)])
def test_encoder_final_map_is_8x8_at_reference_sizes(encoder, depth, size):
    # The reference pools with AvgPool2d(8); at these sizes our global pool is the same thing.
    kw = {"n_blocks": depth} if encoder is ResnetEncoder else {"n_layers": depth}
    net = encoder(nef=4, **kw)
    assert net.conv[:-1](torch.randn(1, 3, size, size)).shape[-2:] == (8, 8)


def test_resnet_encoder_channels():
    net = ResnetEncoder(nef=8, n_blocks=5)
    assert net.fc.in_features == 32  # nef * min(4, n_blocks)
    assert net.conv[0].stride == (2, 2)


# ---------------------------------------------------------------- spectral norm


SPECTRAL_NETS = [
    lambda n: UnetGenerator(num_downs=5, ngf=8, norm=n),
    lambda n: ResnetGenerator(ngf=8, n_blocks=1, norm=n),
    lambda n: NLayerDiscriminator(3, 8, norm=n),
    lambda n: PixelDiscriminator(3, 8, norm=n),
    lambda n: MultiscaleDiscriminator(3, 8, norm=n),
    lambda n: ResnetEncoder(nef=8, norm=n),
    lambda n: ConvEncoder(nef=8, norm=n),
]


@pytest.mark.parametrize("build", SPECTRAL_NETS)
def test_spectral_norm_wraps_every_conv(build):
    net = build("spectral")
    convs = [m for m in net.modules() if isinstance(m, CONV_TYPES)]
    assert convs and all(parametrize.is_parametrized(c, "weight") for c in convs)
    assert count(net, nn.BatchNorm2d) + count(net, nn.InstanceNorm2d) == 0
    plain = [c for c in build("batch").modules() if isinstance(c, CONV_TYPES)]
    assert not any(parametrize.is_parametrized(c, "weight") for c in plain)


def test_spectral_instance_has_both():
    net = NLayerDiscriminator(3, 8, norm="spectralinstance")
    assert count(net, nn.InstanceNorm2d) == 3
    assert all(parametrize.is_parametrized(c, "weight") for c in net.modules() if isinstance(c, nn.Conv2d))


def test_spectral_norm_bounds_sigma_right_after_init():
    # init_weights re-estimates the singular vectors, so sigma is ~1 even in eval mode.
    net = NLayerDiscriminator(3, 8, norm="spectral").eval()
    for conv in (m for m in net.modules() if isinstance(m, nn.Conv2d)):
        original = conv.parametrizations.weight.original
        assert original.std().item() == pytest.approx(0.02, rel=0.3)
        sigma = torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2).item()
        assert 0.9 < sigma < 1.05


# ---------------------------------------------------------------- init


def _init_probe() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(64, 64, 3), nn.BatchNorm2d(512), nn.Linear(400, 400), nn.ConvTranspose2d(64, 32, 4))


def test_init_normal():
    net = _init_probe()
    for m in net.modules():
        if getattr(m, "bias", None) is not None:
            nn.init.constant_(m.bias, 0.5)
    init_weights(net, "normal", 0.02)
    conv, bn, lin, deconv = net
    for m in (conv, lin, deconv):
        assert m.weight.std().item() == pytest.approx(0.02, rel=0.03)
        assert abs(m.weight.mean().item()) < 1e-3
        assert torch.count_nonzero(m.bias) == 0
    assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.005)
    assert bn.weight.std().item() == pytest.approx(0.02, rel=0.15)
    assert torch.count_nonzero(bn.bias) == 0


def test_init_xavier_kaiming_orthogonal():
    conv, _, lin, _ = init_weights(_init_probe(), "xavier", 0.02)
    fan_in, fan_out = 64 * 9, 64 * 9
    assert conv.weight.std().item() == pytest.approx(0.02 * (2 / (fan_in + fan_out)) ** 0.5, rel=0.03)
    conv, _, lin, _ = init_weights(_init_probe(), "kaiming", 0.02)
    assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.03)
    assert lin.weight.std().item() == pytest.approx((2 / 400) ** 0.5, rel=0.03)
    conv, _, lin, _ = init_weights(_init_probe(), "orthogonal", 0.5)
    assert torch.allclose(lin.weight @ lin.weight.T, 0.25 * torch.eye(400), atol=1e-5)


def test_init_unknown_is_config_error():
    with pytest.raises(ConfigError, match="init_type 'uniform'.*normal, xavier, kaiming, orthogonal"):
        init_weights(nn.Linear(2, 2), "uniform")
    with pytest.raises(ConfigError, match="init_type"):
        UnetGenerator(num_downs=5, ngf=8, init_type="he")


def test_constructors_initialize():
    net = UnetGenerator(num_downs=6, ngf=16)
    bn = torch.cat([m.weight for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
    assert bn.mean().item() == pytest.approx(1.0, abs=0.01) and bn.std().item() == pytest.approx(0.02, rel=0.2)
    big = net.model.model[1].model[3].model[1]  # an ngf*4 -> ngf*8 down conv
    assert big.weight.std().item() == pytest.approx(0.02, rel=0.05)
    enc = ResnetEncoder(nef=16)  # BicycleGAN default: xavier, gain 0.02
    fan = enc.fc.in_features + enc.fc.out_features
    assert enc.fcVar.weight.std().item() == pytest.approx(0.02 * (2 / fan) ** 0.5, rel=0.2)


def test_hydra_target_builds_a_ready_net():
    from hydra.utils import instantiate

    net = instantiate({"_target_": "ganforge.nets.UnetGenerator", "num_downs": 5, "ngf": 8, "norm": "instance"})
    assert isinstance(net, UnetGenerator)
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)


# ---------------------------------------------------------------- gradients reach every parameter


def _sum_outputs(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out.sum()
    return sum(_sum_outputs(o) for o in out)


def _img(c: int, side: int) -> torch.Tensor:
    return torch.randn(2, c, side, side)


GRAD_CASES = [
    (lambda: UnetGenerator(num_downs=5, ngf=8), lambda: (_img(3, 32),)),
    (lambda: UnetGenerator(num_downs=6, ngf=8, nz=4, where_add="all", norm="instance"), lambda: (_img(3, 64), torch.randn(2, 4))),
    (lambda: UnetGenerator(num_downs=5, ngf=8, nz=4, norm="spectral"), lambda: (_img(3, 32), torch.randn(2, 4))),
    (lambda: ResnetGenerator(ngf=8, n_blocks=2), lambda: (_img(3, 32),)),
    (lambda: NLayerDiscriminator(6, 8), lambda: (_img(6, 64),)),
    (lambda: PixelDiscriminator(6, 8), lambda: (_img(6, 16),)),
    (lambda: MultiscaleDiscriminator(3, 8, get_intermediate=True, norm="spectralinstance"), lambda: (_img(3, 64),)),
    (lambda: ResnetEncoder(nef=8), lambda: (_img(3, 64),)),
    (lambda: ConvEncoder(nef=8, n_layers=4), lambda: (_img(3, 64),)),
]


@pytest.mark.slow
@pytest.mark.parametrize("build, inputs", GRAD_CASES)
def test_gradients_reach_every_parameter(build, inputs):
    net = build()
    _sum_outputs(net(*inputs())).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        # A bias right before InstanceNorm is cancelled by the mean subtraction: zero grad is right.
        if p.dim() > 1:
            assert p.grad.abs().sum() > 0, name
