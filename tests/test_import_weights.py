"""ganforge-import: the reference repos' generator layouts, rebuilt here from their published structure
(pytorch-CycleGAN-and-pix2pix and BicycleGAN `models/networks.py`: module names and shapes), saved as
.pth files the test writes, load into ganforge's nets and give the same outputs."""

from __future__ import annotations

import functools
import sys

import pytest
import torch
from torch import nn

import ganforge
from ganforge.cli.import_weights import import_weights
from ganforge.utils.errors import CheckpointError
from tests.conftest import run_cli
from tests.export_helpers import TINY_MODELS, compose_train


# ----- the reference layouts (names as in the reference networks.py) ---------------------------------
class RefUnetSkipConnectionBlock(nn.Module):
    """pytorch-CycleGAN-and-pix2pix UnetSkipConnectionBlock: `model` = down + [submodule] + up, cat([x, model(x)])."""

    def __init__(
        self,
        outer_nc,
        inner_nc,
        input_nc=None,
        submodule=None,
        outermost=False,
        innermost=False,
        norm_layer=nn.BatchNorm2d,
        use_dropout=False,
    ):
        super().__init__()
        self.outermost = outermost
        use_bias = norm_layer == nn.InstanceNorm2d
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu, downnorm = nn.LeakyReLU(0.2, True), norm_layer(inner_nc)
        uprelu, upnorm = nn.ReLU(True), norm_layer(outer_nc)
        if outermost:
            model = [downconv, submodule, uprelu, nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1), nn.Tanh()]
        elif innermost:
            model = [downrelu, downconv, uprelu, nn.ConvTranspose2d(inner_nc, outer_nc, 4, 2, 1, bias=use_bias), upnorm]
        else:
            model = [
                downrelu,
                downconv,
                downnorm,
                submodule,
                uprelu,
                nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1, bias=use_bias),
                upnorm,
            ]
            if use_dropout:
                model.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class RefUnetGenerator(nn.Module):
    def __init__(self, input_nc, output_nc, num_downs, ngf=64, norm_layer=nn.BatchNorm2d, use_dropout=False):
        super().__init__()
        block = RefUnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm_layer=norm_layer)
        for _ in range(num_downs - 5):
            block = RefUnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm_layer=norm_layer, use_dropout=use_dropout)
        block = RefUnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm_layer=norm_layer)
        block = RefUnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm_layer=norm_layer)
        block = RefUnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm_layer=norm_layer)
        self.model = RefUnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm_layer=norm_layer)

    def forward(self, x):
        return self.model(x)


class RefResnetBlock(nn.Module):
    def __init__(self, dim, norm_layer):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=True),
            norm_layer(dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=True),
            norm_layer(dim),
        )

    def forward(self, x):
        return x + self.conv_block(x)


class RefResnetGenerator(nn.Module):
    """pytorch-CycleGAN-and-pix2pix ResnetGenerator (instance norm: conv biases on)."""

    def __init__(self, input_nc, output_nc, ngf=64, n_blocks=9):
        super().__init__()
        norm = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=True), norm(ngf), nn.ReLU(True)]
        for i in range(2):
            m = 2**i
            model += [nn.Conv2d(ngf * m, ngf * m * 2, 3, stride=2, padding=1, bias=True), norm(ngf * m * 2), nn.ReLU(True)]
        model += [RefResnetBlock(ngf * 4, norm) for _ in range(n_blocks)]
        for i in range(2):
            m = 2 ** (2 - i)
            model += [
                nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                norm(ngf * m // 2),
                nn.ReLU(True),
            ]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class RefUnetBlockWithZ(nn.Module):
    """BicycleGAN UnetBlock_with_z (upsample=basic, zero padding): `down`, `submodule`, `up`; cat([up, x])."""

    def __init__(
        self, input_nc, outer_nc, inner_nc, nz, submodule=None, outermost=False, innermost=False, norm_layer=None, use_dropout=False
    ):
        super().__init__()
        self.outermost, self.innermost, self.nz = outermost, innermost, nz
        downconv = [nn.Conv2d(input_nc + nz, inner_nc, 4, 2, 1)]
        if outermost:
            down, up = downconv, [nn.ReLU(True), nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1), nn.Tanh()]
        elif innermost:
            down, up = (
                [nn.LeakyReLU(0.2, True)] + downconv,
                [nn.ReLU(True), nn.ConvTranspose2d(inner_nc, outer_nc, 4, 2, 1), norm_layer(outer_nc)],
            )
        else:
            down = [nn.LeakyReLU(0.2, True)] + downconv + [norm_layer(inner_nc)]
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1), norm_layer(outer_nc)]
            if use_dropout:
                up.append(nn.Dropout(0.5))
        self.down, self.submodule, self.up = nn.Sequential(*down), submodule, nn.Sequential(*up)

    def forward(self, x, z):
        z_img = z.view(z.size(0), z.size(1), 1, 1).expand(z.size(0), z.size(1), x.size(2), x.size(3))
        x_and_z = torch.cat([x, z_img], 1)
        if self.outermost:
            return self.up(self.submodule(self.down(x_and_z), z))
        if self.innermost:
            return torch.cat([self.up(self.down(x_and_z)), x], 1)
        return torch.cat([self.up(self.submodule(self.down(x_and_z), z)), x], 1)


class RefGUnetAddAll(nn.Module):
    """G_Unet_add_all: every conv keeps its bias, whatever the norm (`norm_layer=nn.BatchNorm2d` for --norm batch)."""

    def __init__(self, input_nc, output_nc, nz, num_downs, ngf=64, use_dropout=False, norm_layer=None):
        super().__init__()
        norm = norm_layer or functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
        kw = dict(norm_layer=norm)
        block = RefUnetBlockWithZ(ngf * 8, ngf * 8, ngf * 8, nz, None, innermost=True, **kw)
        block = RefUnetBlockWithZ(ngf * 8, ngf * 8, ngf * 8, nz, block, use_dropout=use_dropout, **kw)
        for _ in range(num_downs - 6):
            block = RefUnetBlockWithZ(ngf * 8, ngf * 8, ngf * 8, nz, block, use_dropout=use_dropout, **kw)
        block = RefUnetBlockWithZ(ngf * 4, ngf * 4, ngf * 8, nz, block, **kw)
        block = RefUnetBlockWithZ(ngf * 2, ngf * 2, ngf * 4, nz, block, **kw)
        block = RefUnetBlockWithZ(ngf, ngf, ngf * 2, nz, block, **kw)
        self.model = RefUnetBlockWithZ(input_nc, output_nc, ngf, nz, block, outermost=True, **kw)

    def forward(self, x, z):
        return self.model(x, z)


class RefBasicBlock(nn.Module):
    def __init__(self, inplanes, outplanes, norm_layer):
        super().__init__()
        self.conv = nn.Sequential(
            norm_layer(inplanes),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(inplanes, inplanes, 3, 1, 1),
            norm_layer(inplanes),
            nn.LeakyReLU(0.2, True),
            nn.Sequential(nn.Conv2d(inplanes, outplanes, 3, 1, 1), nn.AvgPool2d(2, 2)),
        )
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(inplanes, outplanes, 1))

    def forward(self, x):
        return self.conv(x) + self.shortcut(x)


class RefEResNet(nn.Module):
    """BicycleGAN E_ResNet (vaeLike): AvgPool2d(8), so the input side is 8 * 2**n_blocks."""

    def __init__(self, input_nc, output_nc, ndf, n_blocks, norm_layer=None):
        super().__init__()
        norm = norm_layer or functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
        layers = [nn.Conv2d(input_nc, ndf, 4, 2, 1)]
        for n in range(1, n_blocks):
            layers.append(RefBasicBlock(ndf * min(4, n), ndf * min(4, n + 1), norm))
        out_ndf = ndf * min(4, n_blocks)
        layers += [nn.LeakyReLU(0.2, True), nn.AvgPool2d(8)]
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(out_ndf, output_nc))
        self.fcVar = nn.Sequential(nn.Linear(out_ndf, output_nc))

    def forward(self, x):
        h = self.conv(x).view(x.size(0), -1)
        return self.fc(h), self.fcVar(h)


class RefDNLayersMulti(nn.Module):
    """BicycleGAN D_NLayersMulti: `num_D` PatchGANs as `model_<i>` (`model` for one), ndf halved per scale,
    every conv with its bias."""

    def __init__(self, input_nc, ndf, n_layers, norm_layer, num_D):
        super().__init__()
        self.num_D = num_D
        if num_D == 1:
            self.model = self.layers(input_nc, ndf, n_layers, norm_layer)
        for i in range(num_D if num_D > 1 else 0):
            self.add_module(f"model_{i}", self.layers(input_nc, int(round(ndf / (2**i))), n_layers, norm_layer))
        self.down = nn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)

    @staticmethod
    def layers(input_nc, ndf, n_layers, norm_layer):
        seq, mult = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)], 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2 if n < n_layers else 1, 1), norm_layer(ndf * mult), nn.LeakyReLU(0.2, True)]
        return nn.Sequential(*seq, nn.Conv2d(ndf * mult, 1, 4, 1, 1))

    def forward(self, x):
        if self.num_D == 1:
            return self.model(x)
        out = []
        for i in range(self.num_D):
            out.append(getattr(self, f"model_{i}")(x))
            x = self.down(x)
        return out


def _randomise(net: nn.Module, seed: int) -> nn.Module:
    """Non-trivial weights and BatchNorm statistics, so a wrong mapping cannot pass."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5 if "running_var" in name else torch.randn(t.shape, generator=gen) * 0.1)
    return net.eval()


def _import(tmp_path, model: str, extra: list[str], **files):
    cfg = compose_train(tmp_path, ["debug=tiny", "logger=csv", *TINY_MODELS[model], *extra])
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.output = str(tmp_path / "imported")
        for k, v in files.items():
            cfg[k] = str(v)
    return import_weights(cfg)


@pytest.mark.slow
def test_pix2pix_unet_import_matches_the_reference(tmp_path):
    ref = _randomise(RefUnetGenerator(3, 3, num_downs=6, ngf=8, use_dropout=True), 1)
    torch.save(ref.state_dict(), tmp_path / "latest_net_G.pth")
    ckpt = _import(tmp_path, "pix2pix", [], G=tmp_path / "latest_net_G.pth")
    model = ganforge.load(ckpt)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model.netG.eval()(x), ref(x), atol=1e-5)


@pytest.mark.slow
def test_cyclegan_resnet_import_matches_the_reference_and_drops_old_instance_norm_stats(tmp_path):
    ref_a, ref_b = _randomise(RefResnetGenerator(3, 3, ngf=8, n_blocks=2), 2), _randomise(RefResnetGenerator(3, 3, ngf=8, n_blocks=2), 3)
    sd_a = ref_a.state_dict()
    sd_a["model.2.running_mean"] = torch.zeros(8)  # what torch < 0.4 saved for InstanceNorm (the reference drops it)
    torch.save({f"module.{k}": v for k, v in sd_a.items()}, tmp_path / "a.pth")  # a DataParallel save
    torch.save(ref_b.state_dict(), tmp_path / "b.pth")
    ckpt = _import(tmp_path, "cyclegan", [], G=tmp_path / "a.pth", G_B=tmp_path / "b.pth")
    model = ganforge.load(ckpt)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model.translate(x, "AtoB"), ref_a(x), atol=1e-5)
        assert torch.allclose(model.translate(x, "BtoA"), ref_b(x), atol=1e-5)


@pytest.mark.slow
def test_bicyclegan_g_and_e_import_match_the_reference(tmp_path):
    # tiny BicycleGAN: num_downs 6, ngf 8, nz 8; E with 2 blocks at 32 px (AvgPool2d(8) is then global)
    g = _randomise(RefGUnetAddAll(3, 3, nz=8, num_downs=6, ngf=8), 4)
    e = _randomise(RefEResNet(3, 8, ndf=8, n_blocks=2), 5)
    torch.save(g.state_dict(), tmp_path / "G.pth")
    torch.save(e.state_dict(), tmp_path / "E.pth")
    ckpt = _import(
        tmp_path,
        "bicyclegan",
        ["model.netG.num_downs=6", "model.netG.ngf=8", "model.netE.nef=8", "model.netE.n_blocks=2"],
        G=tmp_path / "G.pth",
        E=tmp_path / "E.pth",
    )
    model = ganforge.load(ckpt)
    x, z = torch.rand(2, 3, 64, 64) * 2 - 1, torch.randn(2, 8)
    style = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model.translate(x, z=z), g(x, z), atol=1e-5)
        assert torch.allclose(model.encode(style), e(style)[0], atol=1e-5)


def test_a_file_that_does_not_fit_is_refused_with_the_mismatches_listed(tmp_path):
    ref = RefUnetGenerator(3, 3, num_downs=7, ngf=8)  # one level more than the tiny config's num_downs=6
    torch.save(ref.state_dict(), tmp_path / "g.pth")
    with pytest.raises(CheckpointError) as err:
        _import(tmp_path, "pix2pix", [], G=tmp_path / "g.pth")
    msg = str(err.value)
    assert "not in the ganforge net" in msg and "model.model.1.model.3.model.3.model.3" in msg
    assert "num_downs" in msg


@pytest.mark.slow
def test_a_foreign_file_gives_one_clear_error(tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_text("not a torch file")
    proc = run_cli(
        ["model=pix2pix", f"G={bad}", f"output={tmp_path / 'o'}", "debug=tiny", "logger=csv"],
        script=str(__import__("pathlib").Path(sys.executable).parent / "ganforge-import"),
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "is not a readable torch state dict" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_imported_checkpoint_starts_a_fine_tune_with_init_from(tmp_path):
    ref = _randomise(RefUnetGenerator(3, 3, num_downs=6, ngf=8, use_dropout=True), 6)
    torch.save(ref.state_dict(), tmp_path / "g.pth")
    ckpt = _import(tmp_path, "pix2pix", [], G=tmp_path / "g.pth")
    from ganforge.cli.train import train

    cfg = compose_train(tmp_path / "run", ["debug=tiny", "logger=csv", *TINY_MODELS["pix2pix"], f"init_from={ckpt}"])
    cfg.train = False  # build and load only: the weights must be the imported ones before any step
    _, objects = train(cfg)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(objects["model"].netG.eval()(x), ref(x), atol=1e-5)


def test_spade_import_reads_the_reference_names_and_reorders_label_channels_for_shifted_ids(tmp_path):
    """A G saved by NVlabs/SPADE's own code (the golden fixture's initial G: hook spectral-norm names,
    label_nc 3 + don't-care + instance edges) imports as it is for its raw ids (data.label_shift=0), and
    for data.label_shift=1 with its label channels reordered: both then give the same photos for the same
    stored label map, the shifted model reading id - 1 with 0 as don't-care."""
    from tests.golden import load_fixture, section

    tensors, _ = load_fixture("spade")
    reference = {k: v.float() for k, v in section(tensors, "init/G").items()}
    torch.save(reference, tmp_path / "latest_net_G.pth")
    tiny = ["data.crop_size=32", "data.load_size=32", "model.netG.ngf=1", "model.netG.nhidden=8", "data.use_instance=true"]
    raw = ["data.label_nc=4", "data.contain_dontcare_label=false", "data.dontcare_label=null", "data.label_shift=0"]
    shifted = ["data.label_nc=3", "data.contain_dontcare_label=true", "data.dontcare_label=null", "data.label_shift=1"]
    unordered = [*shifted[:2], "data.dontcare_label=3", "data.label_shift=0"]  # the shifted layout, weights as they are
    models = {
        name: ganforge.load(_import(tmp_path / name, "spade", [*tiny, *layout], G=tmp_path / "latest_net_G.pth"))
        for name, layout in (("raw", raw), ("shifted", shifted), ("unordered", unordered))
    }
    g = models["raw"].netG
    assert torch.equal(g.head_0.conv_0.parametrizations.weight.original, reference["head_0.conv_0.weight_orig"])
    assert torch.equal(g.head_0.conv_0.parametrizations.weight[0]._u, reference["head_0.conv_0.weight_u"])
    stored = torch.randint(0, 4, (2, 32, 32), generator=torch.Generator().manual_seed(0))
    instance = torch.randint(0, 3, (2, 32, 32), generator=torch.Generator().manual_seed(1))
    out = {
        name: m.synthesize(stored if name != "unordered" else torch.where(stored == 0, 3, stored - 1), instance)
        for name, m in models.items()
    }
    assert torch.allclose(out["shifted"], out["raw"], atol=1e-5)
    assert not torch.allclose(out["unordered"], out["raw"], atol=1e-3)  # the same ids without the reordering: classes mixed up


#: a BicycleGAN with BatchNorm everywhere (--norm batch) at the tiny widths, D and D2 of 2 scales (--num_Ds 2)
BICYCLE_BATCH = [
    "model.netG.num_downs=6",
    "model.netG.ngf=8",
    "model.netG.norm=batch",
    "model.netE.nef=8",
    "model.netE.n_blocks=2",
    "model.netE.norm=batch",
    *(f"model.{d}.{k}" for d in ("netD", "netD2") for k in ("ndf=8", "n_layers=2", "num_D=2", "norm=batch")),
]


def _bicyclegan_from(ckpt, tmp_path):
    """The BicycleGAN module that `init_from=<ckpt>` starts a fine-tune with (all four nets, D and D2 included)."""
    from ganforge.cli.train import train

    cfg = compose_train(tmp_path / "run", ["debug=tiny", "logger=csv", *TINY_MODELS["bicyclegan"], *BICYCLE_BATCH, f"init_from={ckpt}"])
    cfg.train = False
    return train(cfg)[1]["model"].eval()


def _check_outputs(model, g, e, d, d2, gen: torch.Generator) -> None:
    x, z = torch.rand(2, 3, 64, 64, generator=gen) * 2 - 1, torch.randn(2, 8, generator=gen)
    style = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model.netG(x, z), g(x, z), atol=1e-5)
        ours, theirs = model.netE(style), e(style)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours, theirs, strict=True))
        for ours_d, ref_d in ((model.netD, d), (model.netD2, d2)):
            scores, ref_scores = ours_d(x), ref_d(x)
            assert len(scores) == len(ref_scores) == 2
            assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(scores, ref_scores, strict=True))


@pytest.mark.slow
def test_bicyclegan_batch_norm_nets_and_two_scale_ds_import_match_the_reference_layout(tmp_path):
    """--norm batch and --num_Ds 2: the conv biases before BatchNorm (kept there, `bias_before_batchnorm` here),
    BatchNorm's running statistics, and D_NLayersMulti's `model_0` / `model_1` scales all land."""
    g = _randomise(RefGUnetAddAll(3, 3, nz=8, num_downs=6, ngf=8, use_dropout=True, norm_layer=nn.BatchNorm2d), 7)
    e = _randomise(RefEResNet(3, 8, ndf=8, n_blocks=2, norm_layer=nn.BatchNorm2d), 8)
    d, d2 = (_randomise(RefDNLayersMulti(3, 8, 2, nn.BatchNorm2d, num_D=2), seed) for seed in (9, 10))
    for name, net in (("G", g), ("E", e), ("D", d), ("D2", d2)):
        torch.save(net.state_dict(), tmp_path / f"latest_net_{name}.pth")
    files = {name: tmp_path / f"latest_net_{name}.pth" for name in ("G", "E", "D", "D2")}
    ckpt = _import(tmp_path, "bicyclegan", BICYCLE_BATCH, **files)
    _check_outputs(_bicyclegan_from(ckpt, tmp_path), g, e, d, d2, torch.Generator().manual_seed(0))


def test_bicyclegan_batch_norm_file_into_a_net_without_the_biases_names_the_option(tmp_path):
    g = RefGUnetAddAll(3, 3, nz=8, num_downs=6, ngf=8, norm_layer=nn.BatchNorm2d)
    e = RefEResNet(3, 8, ndf=8, n_blocks=2, norm_layer=nn.BatchNorm2d)
    torch.save(g.state_dict(), tmp_path / "G.pth")
    torch.save(e.state_dict(), tmp_path / "E.pth")
    with pytest.raises(CheckpointError) as err:
        _import(
            tmp_path, "bicyclegan", [*BICYCLE_BATCH, "model.netG.bias_before_batchnorm=false"], G=tmp_path / "G.pth", E=tmp_path / "E.pth"
        )
    assert "model.submodule.down.1.bias" in str(err.value) and "bias_before_batchnorm" in str(err.value)


def _reference_networks():
    """junyanz/BicycleGAN's models/networks.py from the tree GANFORGE_REF_BICYCLEGAN names (pinned as
    tests/golden/make_fixtures.py pins it), imported as a file: it needs only torch."""
    import importlib.util
    import os
    from pathlib import Path

    from tests.golden.make_fixtures import BLOBS, git_blob

    root = os.environ.get("GANFORGE_REF_BICYCLEGAN")
    if not root:
        pytest.skip("GANFORGE_REF_BICYCLEGAN is unset: the junyanz/BicycleGAN tree (40b9d52) is not checked out here")
    path = Path(root) / "models" / "networks.py"
    if not path.is_file() or git_blob(path) != BLOBS["bicyclegan"]["models/networks.py"]:
        pytest.skip(f"{path} is not the pinned junyanz/BicycleGAN models/networks.py (40b9d52)")
    spec = importlib.util.spec_from_file_location("bicyclegan_reference_networks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bicyclegan_batch_norm_two_scale_import_matches_the_reference_code(tmp_path):
    """The same, with the nets built by the reference's own networks.py (--norm batch, --num_Ds 2)."""
    networks = _reference_networks()
    torch.manual_seed(0)
    norm = networks.get_norm_layer("batch")
    g = networks.G_Unet_add_all(
        3, 3, 8, 6, 8, norm_layer=norm, nl_layer=networks.get_non_linearity("relu"), use_dropout=True, upsample="basic"
    )
    e = networks.E_ResNet(3, 8, 8, n_blocks=2, norm_layer=norm, nl_layer=networks.get_non_linearity("lrelu"), vaeLike=True)
    d, d2 = (networks.D_NLayersMulti(3, ndf=8, n_layers=2, norm_layer=norm, num_D=2) for _ in range(2))
    nets = {"G": _randomise(g, 11), "E": _randomise(e, 12), "D": _randomise(d, 13), "D2": _randomise(d2, 14)}
    for name, net in nets.items():
        torch.save(net.state_dict(), tmp_path / f"latest_net_{name}.pth")
    ckpt = _import(tmp_path, "bicyclegan", BICYCLE_BATCH, **{name: tmp_path / f"latest_net_{name}.pth" for name in nets})
    _check_outputs(_bicyclegan_from(ckpt, tmp_path), *nets.values(), torch.Generator().manual_seed(1))


def test_bicyclegan_name_maps_round_trip_a_written_state_dict(tmp_path):
    """ganforge's nets written under the reference's names (the maps read backwards; the one transform, the
    U-Net up-conv halves swapped, is its own inverse) import back to the same tensors, bit for bit, for
    --norm batch, --num_Ds 2 and --num_Ds 1 (D_NLayers' plain `model.<n>`)."""
    from ganforge.cli.import_weights import map_state_dict, multiscale_discriminator_mapping, resnet_encoder_mapping, unet_with_z_mapping
    from ganforge.nets import MultiscaleDiscriminator, ResnetEncoder, UnetGenerator

    nets = {
        "G": (
            UnetGenerator(3, 3, num_downs=6, ngf=4, norm="batch", nz=8, where_add="all", bias_before_batchnorm=True),
            unet_with_z_mapping,
        ),
        "E": (ResnetEncoder(3, 8, nef=4, n_blocks=3, norm="batch"), resnet_encoder_mapping),
        "D": (
            MultiscaleDiscriminator(3, ndf=8, n_layers=3, num_D=2, norm="batch", bias_before_batchnorm=True),
            multiscale_discriminator_mapping,
        ),
        "D1": (
            MultiscaleDiscriminator(3, ndf=8, n_layers=3, num_D=1, norm="batch", bias_before_batchnorm=True),
            multiscale_discriminator_mapping,
        ),
    }
    for name, (net, mapping_fn) in nets.items():
        _randomise(net, 20)
        mapping = mapping_fn(net)
        written = {mapping[k][0]: mapping[k][1](v.clone()) for k, v in net.state_dict().items()}
        if name == "D":
            assert {k.split(".")[0] for k in written} == {"model_0", "model_1"}
        if name == "D1":
            assert {k.split(".")[0] for k in written} == {"model"}
        if name == "G":
            assert "model.submodule.down.1.bias" in written and "model.submodule.down.2.running_var" in written
        torch.save(written, tmp_path / f"{name}.pth")
        fresh = type(net)(**net.net_config["kwargs"])
        loaded = map_state_dict(fresh, torch.load(tmp_path / f"{name}.pth", weights_only=True), mapping_fn(fresh), name)
        assert loaded.keys() == net.state_dict().keys()
        assert all(torch.equal(loaded[k], v) for k, v in net.state_dict().items()), name
