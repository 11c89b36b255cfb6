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
    def __init__(self, input_nc, output_nc, nz, num_downs, ngf=64, use_dropout=False):
        super().__init__()
        norm = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
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

    def __init__(self, input_nc, output_nc, ndf, n_blocks):
        super().__init__()
        norm = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
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
