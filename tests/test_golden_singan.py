"""SinGAN against its reference, tamarott/SinGAN, step for step.

tests/golden/make_singan.py ran the reference's own `train` on a 40x30 image (3 scales,
3 iterations each, nfc 4, 3 D steps and 1 G step) in float64 and recorded its pyramid, its initial
weights, the torch RNG state at the start of every iteration, and after every iteration the weights,
BatchNorm buffers and losses, with the Adam states, noise amps and z_opt at the end of each scale.
ganforge trains the same pyramid from those weights and RNG states (the RNG states are set, not
replayed: the noises come from ganforge's own draws, in its own order, so the order is tested too).

Tolerance: the pyramid is compared exactly (imresize's float32 values). On the machine that made the
fixture (AMD EPYC, AVX-512) everything else came out bit-identical too. Another CPU's float64 BLAS may
sum a dot product in another order (a last-bit difference), and Adam amplifies such a difference where a
gradient is near its eps (the first update is lr * g / (|g| + eps)): a 7e-18 change of one noise amp
moved the finest scale's weights by 6e-8 within three iterations. So losses are held to 1e-10, and
weights, BatchNorm buffers and Adam states to 1e-6 (relative and absolute) - still far below what a
change of the computation does (1e-3 and up: one more train-mode G forward, another resize, another
noise draw).
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from safetensors import safe_open

from ganforge.data.single_image import SingleImageDataModule
from ganforge.gans.singan import SinGAN
from tests.golden import float64_trainer

pytestmark = pytest.mark.reference

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
LOSS_TOL = {"rtol": 1e-10, "atol": 1e-10}
STATE_TOL = {"rtol": 1e-6, "atol": 1e-6}


def load_fixture() -> tuple[dict[str, torch.Tensor], dict]:
    with safe_open(str(GOLDEN / "singan.safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["meta"])


def our_name(name: str) -> str:
    """The reference's state names (models.py ConvBlock: conv, norm; body.block1..; D's bare tail conv) in ganforge's."""
    name = re.sub(r"^body\.block(\d+)\.", lambda m: f"body.{int(m.group(1)) - 1}.", name)
    name = re.sub(r"^tail\.(weight|bias)$", r"tail.0.\1", name)
    return name.replace(".conv.", ".0.").replace(".norm.", ".1.")


def by_position(ref: dict[str, torch.Tensor], prefix: str, ours: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, ours, the reference's) for every entry of a state dict."""
    theirs = {our_name(k[len(prefix) :]): v for k, v in ref.items() if k.startswith(prefix)}
    assert sorted(theirs) == sorted(ours), prefix
    for name, v in ours.items():
        assert v.shape == theirs[name].shape, f"{prefix}{name}"
    return [(name, v, theirs[name]) for name, v in ours.items()]


def assert_state(ref, prefix: str, net: torch.nn.Module, where: str) -> None:
    for name, ours, theirs in by_position(ref, prefix, net.state_dict()):
        if theirs.is_floating_point():
            torch.testing.assert_close(ours, theirs, **STATE_TOL, msg=lambda m, name=name: f"{where} {name}: {m}")
        else:  # num_batches_tracked: how often G and D ran in train mode
            assert torch.equal(ours, theirs), f"{where} {name}: {ours.tolist()} != {theirs.tolist()}"


class Golden(L.Callback):
    """Sets each iteration's RNG state and checks every iteration against the reference's."""

    def __init__(self, ref: dict[str, torch.Tensor]):
        self.ref, self.checked = ref, 0

    def on_train_start(self, trainer, module):
        self.losses = {}
        for name in ("critic_losses", "generator_losses"):
            method = getattr(module, name)
            setattr(module, name, lambda *a, _m=method: self.losses.update(out := _m(*a)) or out)

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        torch.set_rng_state(self.ref[f"s{module.current_epoch}/it{batch_idx}/rng"])

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        n, it, ref = module.current_epoch, batch_idx, self.ref
        where = f"scale {n} iteration {it}"
        for key in ("loss_D_real", "loss_D_fake", "loss_D_gp", "loss_G_GAN", "loss_G_rec"):
            torch.testing.assert_close(
                self.losses[key].reshape(1), ref[f"s{n}/it{it}/loss/{key}"], **LOSS_TOL, msg=lambda m, key=key: f"{where} {key}: {m}"
            )
        assert_state(ref, f"s{n}/it{it}/G/", module.netG[n], f"{where} G")
        assert_state(ref, f"s{n}/it{it}/D/", module.netD[n], f"{where} D")
        self.checked += 1

    def on_train_epoch_end(self, trainer, module):
        n, ref = module.current_epoch, self.ref
        opts = [o.optimizer for o in module.optimizers()]
        for name, opt in (("adam_G", opts[2 * n]), ("adam_D", opts[2 * n + 1])):
            for i, p in enumerate(opt.param_groups[0]["params"]):
                for key in ("exp_avg", "exp_avg_sq", "step"):
                    torch.testing.assert_close(
                        opt.state[p][key].reshape(ref[f"s{n}/{name}/{i}/{key}"].shape),
                        ref[f"s{n}/{name}/{i}/{key}"],
                        **STATE_TOL,
                        check_dtype=key != "step",  # the fused Adam kernel counts steps in float32 whatever the params
                        msg=lambda m, name=name, i=i, key=key: f"scale {n} {name} param {i} {key}: {m}",
                    )
        torch.testing.assert_close(module.noise_amp[n].reshape(1), ref[f"s{n}/noise_amp"], **STATE_TOL)


def test_singan_trains_as_the_reference_step_for_step():
    ref, meta = load_fixture()
    s = meta["settings"]
    dm = SingleImageDataModule(str(GOLDEN / "singan_input.png"), max_size=s["max_size"], min_size=s["min_size"], iters_per_epoch=s["niter"])
    settings = dm.model_settings()
    assert settings["pyramid"] == meta["pyramid"] and settings["scale_factor"] == meta["scale_factor"]
    for n, real in enumerate(dm.reals):  # imresize, value for value
        assert torch.equal(real.double(), ref[f"s{n}/real"]), f"the image at scale {n}"

    adam = partial(torch.optim.Adam, lr=5e-4, betas=(0.5, 0.999))  # config.py --lr_g/--lr_d 0.0005, --beta1 0.5
    model = SinGAN(
        optimizer_g=adam,
        optimizer_d=adam,
        nfc=s["nfc"],
        min_nfc=s["min_nfc"],
        iters_per_scale=s["niter"],
        d_steps=s["Dsteps"],
        g_steps=s["Gsteps"],
        **settings,
    ).double()
    for n in range(model.num_scales):  # the reference's fresh nets (scales 1, 2 then start from the last one's)
        for nets, key in ((model.netG, "G"), (model.netD, "D")):
            with torch.no_grad():
                for _, ours, theirs in by_position(ref, f"s{n}/init/{key}/", nets[n].state_dict()):
                    ours.copy_(theirs)
    golden = Golden(ref)
    float64_trainer(max_epochs=model.max_epochs, callbacks=[golden]).fit(model, datamodule=dm)
    assert golden.checked == model.num_scales * s["niter"]
    # the coarsest scale's reconstruction noise is the last of its per-iteration draws (Zs[0], padded by 5 there)
    assert torch.equal(model.z_opt, ref["s0/z_opt"][..., 5:-5, 5:-5])
