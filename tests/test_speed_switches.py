"""The speed switches of train.yaml: the fused optimizer kernels ganforge trains with unless `precise`
(gans/base.py `fused`), and `compile` (GANModule.compile_nets)."""

from __future__ import annotations

import pytest
import torch

from ganforge.gans.base import fused


def params(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(64, 32, generator=g, dtype=dtype, requires_grad=True), torch.randn(7, generator=g, dtype=dtype, requires_grad=True)]


def run(opt, ps, steps=5):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
        opt.step()
    return [p.detach().clone() for p in ps]


@pytest.mark.parametrize("cls, kw", [(torch.optim.Adam, {"betas": (0.5, 0.999)}), (torch.optim.AdamW, {"weight_decay": 0.01})])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-14)])
def test_fused_makes_the_same_updates_up_to_rounding(cls, kw, dtype, tol):
    loop_params, fused_params = params(dtype), params(dtype)
    loop = cls(loop_params, lr=2e-4, **kw)
    fast = fused(cls(fused_params, lr=2e-4, **kw))
    assert fast is not loop and type(fast) is cls and fast.defaults["fused"] is True
    assert all(g["fused"] for g in fast.param_groups) and fast.param_groups[0]["lr"] == 2e-4
    assert fast.param_groups[0]["params"][0] is fused_params[0]  # the module's own parameters, not copies
    for a, b in zip(run(loop, loop_params), run(fast, fused_params)):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.Adam(ps, fused=False),  # configured: kept
        lambda ps: torch.optim.Adam(ps, foreach=True),
        lambda ps: torch.optim.RMSprop(ps),  # no fused kernel (DualGAN's optimizer)
        lambda ps: torch.optim.Adam(ps, differentiable=True),
    ],
    ids=["fused=False", "foreach=True", "RMSprop", "differentiable"],
)
def test_fused_keeps_an_optimizer_it_cannot_or_must_not_change(make):
    opt = make(params())
    assert fused(opt) is opt


def test_optimizers_for_fuses_unless_precise():
    from ganforge.gans.pix2pix import Pix2Pix
    from ganforge.nets import NLayerDiscriminator, UnetGenerator

    adam = torch.optim.Adam
    model = Pix2Pix(netG=UnetGenerator(3, 3, 5, ngf=8), netD=NLayerDiscriminator(6, ndf=8), optimizer_g=adam, optimizer_d=adam)
    assert model.precise is False
    (opt_g, _), _ = model.configure_optimizers()
    assert opt_g.defaults["fused"] is True
    model.precise = True
    (opt_g, _), _ = model.configure_optimizers()
    assert opt_g.defaults["fused"] is None  # torch's default: the single-tensor loop on CPU, as the references run it


def test_compile_nets_compiles_each_net_in_place_and_leaves_eager_nets():
    from ganforge.gans.singan import SinGAN
    from ganforge.nets import SinGANDiscriminator, SinGANGenerator

    model = SinGAN.__new__(SinGAN)
    torch.nn.Module.__init__(model)
    model.netG = torch.nn.ModuleList([SinGANGenerator(nfc=8, min_nfc=8, num_layer=3) for _ in range(2)])
    model.netD = torch.nn.ModuleList([SinGANDiscriminator(nfc=8, min_nfc=8, num_layer=3) for _ in range(2)])
    names = list(model.state_dict())
    model.compile_nets(backend="eager")
    assert all(g._compiled_call_impl is not None for g in model.netG)
    assert all(d._compiled_call_impl is None for d in model.netD)  # SinGAN.eager_nets: WGAN-GP's double backward
    assert list(model.state_dict()) == names  # checkpoints keep their keys
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(model.netG[0](x, x), model.netG[0].forward(x, x))  # the compiled call runs the net
