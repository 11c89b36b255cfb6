"""pix2pix as the paper: update order, frozen nets per phase, loss weights, LR schedule."""

from __future__ import annotations

from functools import partial

import lightning.pytorch as L
import pytest
import torch
import torch.nn.functional as F

from ganforge.gans.base import LRSchedule
from ganforge.gans.pix2pix import Pix2Pix
from ganforge.nets import NLayerDiscriminator, UnetGenerator
from tests.conftest import quiet_trainer


def tiny_pix2pix(**kw) -> Pix2Pix:
    return Pix2Pix(
        netG=UnetGenerator(3, 3, num_downs=5, ngf=8),
        netD=NLayerDiscriminator(6, ndf=8, n_layers=2),
        optimizer_g=partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999)),
        optimizer_d=partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999)),
        scheduler={"policy": "linear", "n_epochs": 1, "n_epochs_decay": 1},
        **kw,
    )


class OneBatch(L.LightningDataModule):
    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        data = [{"A": torch.rand(3, 32, 32, generator=g) * 2 - 1, "B": torch.rand(3, 32, 32, generator=g) * 2 - 1}]
        return torch.utils.data.DataLoader(data, batch_size=1)


@pytest.mark.slow
def test_d_step_then_g_step_each_touching_only_its_net():
    model = tiny_pix2pix()
    events = []
    snap = lambda net: [p.detach().clone() for p in net.parameters()]  # noqa: E731
    same = lambda a, b: all(torch.equal(x, y) for x, y in zip(a, b))  # noqa: E731
    real_step = Pix2Pix.step

    def recording_step(self, opt, loss):
        g0, d0 = snap(self.netG), snap(self.netD)
        name = "D" if opt.optimizer is self.trainer.optimizers[1] else "G"
        real_step(self, opt, loss)
        events.append((name, same(g0, snap(self.netG)), same(d0, snap(self.netD))))

    Pix2Pix.step = recording_step
    try:
        quiet_trainer(max_epochs=1, limit_train_batches=1).fit(model, datamodule=OneBatch())
    finally:
        Pix2Pix.step = real_step
    # reference order: D first (G untouched), then G (D untouched)
    assert events == [("D", True, False), ("G", False, True)]


@pytest.mark.slow
def test_generator_loss_weights_and_detached_fake_for_d():
    torch.manual_seed(0)
    model = tiny_pix2pix(lambda_l1=100.0)
    A, B = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    fake = model.netG(A)
    g = model.generator_losses(A, B, fake)
    assert torch.allclose(g["loss_G_L1"], 100.0 * F.l1_loss(fake, B))
    assert torch.allclose(g["loss_G"], g["loss_G_GAN"] + g["loss_G_L1"])
    d = model.discriminator_losses(A, B, fake)
    assert torch.allclose(d["loss_D"], 0.5 * (d["loss_D_real"] + d["loss_D_fake"]))
    d["loss_D"].backward()
    assert all(p.grad is None for p in model.netG.parameters()), "D's loss reached G"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.netD.parameters())


def test_linear_decay_matches_reference_formula():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = LRSchedule("linear", n_epochs=100, n_epochs_decay=100).build(opt)["scheduler"]
    lrs = []
    for _ in range(200):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # 1-based epoch e: 1 - max(0, e - 100) / 101
    expected = [1.0 - max(0, e - 100) / 101 for e in range(1, 201)]
    assert lrs == pytest.approx(expected)


def test_an_unknown_schedule_policy_stops_the_module_being_built():
    from ganforge.utils.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model.scheduler.policy='cosin' is unknown"):
        Pix2Pix(netG=UnetGenerator(3, 3, num_downs=5, ngf=8), netD=None, optimizer_g=None, optimizer_d=None, scheduler={"policy": "cosin"})


def test_an_unknown_schedule_key_is_named():
    from ganforge.utils.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model.scheduler has no key n_epoch; it takes policy, n_epochs"):
        Pix2Pix(netG=UnetGenerator(3, 3, num_downs=5, ngf=8), netD=None, optimizer_g=None, optimizer_d=None, scheduler={"n_epoch": 5})


@pytest.mark.slow
def test_test_dropout_keeps_outputs_stochastic_and_eval_does_not():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    model = tiny_pix2pix(test_dropout=True)
    model.netG = UnetGenerator(3, 3, num_downs=6, ngf=8, use_dropout=True)  # one dropout block
    assert not torch.equal(model.inference_model().translate(x), model.inference_model().translate(x))
    model.hparams.test_dropout = False
    assert torch.equal(model.inference_model().translate(x), model.inference_model().translate(x))
    assert model.netG.training is True  # inference restores the training mode


@pytest.mark.slow
def test_gradient_penalty_is_added_to_d_loss_only_when_weighted():
    torch.manual_seed(0)
    A, B = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    plain = tiny_pix2pix(gan_mode="wgangp")
    assert "loss_D_GP" not in plain.discriminator_losses(A, B, plain.netG(A))
    model = tiny_pix2pix(gan_mode="wgangp", lambda_gp=10.0)
    d = model.discriminator_losses(A, B, model.netG(A))
    assert d["loss_D_GP"] > 0
    assert torch.allclose(d["loss_D"], 0.5 * (d["loss_D_real"] + d["loss_D_fake"]) + d["loss_D_GP"])
    d["loss_D"].backward()  # the penalty's graph reaches D
    assert all(p.grad is None for p in model.netG.parameters())


def eight_images(size: int = 32) -> torch.Tensor:
    return torch.rand(8, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.slow
def test_train_mode_batchnorm_output_does_not_depend_on_the_batch():
    # No dropout layers, so G in train mode is deterministic and only BatchNorm could couple the images:
    # the reference test.py (batch size 1) normalises each image by its own statistics.
    torch.manual_seed(0)
    model = tiny_pix2pix(test_dropout=True)
    model.netG = UnetGenerator(3, 3, num_downs=5, ngf=8, norm="batch", use_dropout=False)
    x = eight_images()
    batched, alone = model.inference_model().translate(x), model.inference_model().translate(x[3:4])
    assert torch.equal(batched[3:4], alone)
    assert model.metric_protocol() == {
        "generator_mode": "train",
        "per_sample": True,
        "dropout": True,
        "batchnorm": "statistics of each image alone (reference test.py, batch size 1)",
    }


@pytest.mark.slow
def test_test_dropout_generates_image_after_image():
    # Dropout masks are random, so "alone == in a batch" needs the same random draws: one image at a
    # time from the same seed draws the masks in the same order as eight single-image calls.
    model = tiny_pix2pix(test_dropout=True)
    model.netG = UnetGenerator(3, 3, num_downs=6, ngf=8, use_dropout=True)  # one dropout block
    x = eight_images(64)
    torch.manual_seed(5)
    batched = model.inference_model().translate(x)
    torch.manual_seed(5)
    singles = torch.cat([model.inference_model().translate(x[i : i + 1]) for i in range(8)])
    assert torch.equal(batched, singles)


def test_validation_leaves_batchnorm_running_statistics_untouched():
    model = tiny_pix2pix(test_dropout=True)
    before = {k: v.clone() for k, v in model.netG.state_dict().items() if "running" in k or "num_batches" in k}
    assert before
    data = [{"A": a, "B": b} for a, b in zip(eight_images(), eight_images().flip(0))]
    quiet_trainer().validate(model, dataloaders=torch.utils.data.DataLoader(data, batch_size=4))
    after = model.netG.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert model.netG.training  # back in the mode training left it in
