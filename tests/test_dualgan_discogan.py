"""DualGAN and DiscoGAN as their references build and train them: nets, optimizer, schedule,
value range, losses and data settings (duxingren14/DualGAN, SKTBrain/DiscoGAN)."""

from __future__ import annotations

from functools import partial

import lightning.pytorch as L
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from ganforge.gans.discogan import DiscoGAN
from ganforge.gans.dualgan import DualGAN, TFRMSprop
from ganforge.nets.dualgan import (
    DualGANDiscriminator,
    DualGANGenerator,
    SameConv,
    SameDeconv,
    SampleNorm,
)
from ganforge.nets.simple import ConvDiscriminator, EncoderDecoderGenerator
from ganforge.utils.errors import ConfigError
from tests.conftest import compose_train, quiet_trainer

SCHED = {"policy": "linear", "n_epochs": 1, "n_epochs_decay": 1}


def images(n=2, size=64, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class Batches(L.LightningDataModule):
    def __init__(self, n_batches=1, batch_size=2):
        super().__init__()
        n = n_batches * batch_size
        self.data = [{"A": a, "B": b} for a, b in zip(images(n), images(n, seed=1))]
        self.batch_size = batch_size

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.data, batch_size=self.batch_size)


def fit(model, n_batches=1, batch_size=2):
    quiet_trainer(max_epochs=1, limit_train_batches=n_batches).fit(model, datamodule=Batches(n_batches, batch_size))


def kernels(net: nn.Module, kind: type) -> list[int]:
    return [m.kernel_size[0] for m in net.modules() if isinstance(m, kind)]


# ----- DualGAN's nets (model.py fcn / discriminator, ops.py) ---------------------------------------
def test_fcn_generator_is_the_reference_unet():
    g = DualGANGenerator(ngf=4, num_downs=8)
    assert kernels(g, nn.Conv2d) == [5] + [3] * 7  # e1 5x5, e2..e8 3x3, all stride 2
    assert kernels(g, nn.ConvTranspose2d) == [3] * 7 + [5]  # d1..d7 3x3, d8 5x5
    assert sum(isinstance(m, SampleNorm) for m in g.modules()) == 14  # bn_e2..bn_e8, bn_d1..bn_d7
    assert not any(isinstance(m, (nn.Dropout, nn.BatchNorm2d, nn.InstanceNorm2d)) for m in g.modules())
    x = images(1, 256)
    out = g(x)
    assert out.shape == (1, 3, 256, 256) and out.abs().max() <= 1
    assert torch.equal(g.eval()(x), out)  # no batch statistics, no dropout: train = eval
    with pytest.raises(ConfigError, match="divisible by 256"):
        g(images(1, 64))


def test_sample_norm_is_the_reference_batch_norm_op_and_takes_1x1_maps():
    norm = SampleNorm(3)
    x = torch.randn(2, 3, 4, 5)
    mean, var = x.mean((2, 3), keepdim=True), x.var((2, 3), unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-6) * norm.scale.view(1, 3, 1, 1) + norm.center.view(1, 3, 1, 1)
    assert torch.allclose(norm(x), expected, atol=1e-5)
    assert torch.allclose(norm.scale, torch.ones(3), atol=0.1) and not torch.equal(norm.scale, torch.ones(3))
    with torch.no_grad():
        norm.center.copy_(torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(norm(torch.randn(2, 3, 1, 1)).flatten(1), torch.tensor([[1.0, 2, 3]] * 2))


def test_convs_pad_as_tensorflow_same_and_deconvs_are_their_adjoints():
    conv = SameConv(1, 1, 3)
    with torch.no_grad():
        conv.conv.weight.fill_(1.0)
        conv.conv.bias.zero_()
    x = torch.zeros(1, 1, 8, 8)
    x[..., 2, 2] = 1
    # TF 'SAME', stride 2, 3x3: output i sees input rows 2i..2i+2 (no padding before, one after)
    assert (conv(x)[0, 0] != 0).nonzero().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    for k in (3, 5):
        c, d = SameConv(2, 3, k), SameDeconv(3, 2, k)
        with torch.no_grad():
            d.deconv.weight.copy_(c.conv.weight)
            c.conv.bias.zero_()
            d.deconv.bias.zero_()
        x, y = torch.randn(1, 2, 16, 16), torch.randn(1, 3, 8, 8)
        # tf.nn.conv2d_transpose is the gradient of the 'SAME' conv: <conv x, y> = <x, deconv y>
        assert torch.allclose((c(x) * y).sum(), (x * d(y)).sum(), atol=1e-5)


def test_globalgan_critic_five_convs_and_a_linear_score():
    d = DualGANDiscriminator(ndf=4, image_size=64)
    assert kernels(d, nn.Conv2d) == [5, 3, 3, 3, 3]
    assert sum(isinstance(m, SampleNorm) for m in d.modules()) == 4
    assert d.linear.in_features == 32 * 2 * 2
    assert d(images(2, 64)).shape == (2, 1)
    with pytest.raises(ConfigError, match="model.netD_A.image_size"):
        d(images(1, 128))


def test_tf_rmsprop_starts_its_mean_square_at_one_and_puts_eps_inside_the_sqrt():
    p = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = TFRMSprop([p], lr=0.1, decay=0.9, eps=1e-10)
    ms, w = torch.ones(2), p.detach().clone()
    for g in (torch.tensor([0.5, 0.1]), torch.tensor([-0.2, 0.3])):
        p.grad = g.clone()
        opt.step()
        ms = 0.9 * ms + 0.1 * g**2
        w = w - 0.1 * g / torch.sqrt(ms + 1e-10)
        assert torch.allclose(p.detach(), w)
    q = nn.Parameter(torch.tensor([1.0, -2.0]))
    torch_opt = torch.optim.RMSprop([q], lr=0.1, alpha=0.9, eps=1e-10)
    q.grad = torch.tensor([0.5, 0.1])
    torch_opt.step()
    assert not torch.allclose(
        q.detach(), torch.tensor([1.0, -2.0]) - 0.1 * torch.tensor([0.5, 0.1]) / torch.sqrt(0.9 + 0.1 * torch.tensor([0.25, 0.01]))
    )


def tiny_dualgan(**kw) -> DualGAN:
    rms = partial(TFRMSprop, lr=5e-5)
    return DualGAN(
        netG_A=DualGANGenerator(ngf=4, num_downs=6),
        netG_B=DualGANGenerator(ngf=4, num_downs=6),
        netD_A=DualGANDiscriminator(ndf=4, image_size=64),
        netD_B=DualGANDiscriminator(ndf=4, image_size=64),
        optimizer_g=rms,
        optimizer_d=rms,
        scheduler=SCHED,
        **kw,
    )


@pytest.mark.slow
def test_dualgan_schedule_counter_is_checkpointed():
    model = tiny_dualgan(n_critic=2)
    fit(model, n_batches=3)
    assert int(model.state_dict()["iteration"]) == 3
    assert not model.g_steps_now()  # the reference counter reads 5 on the 4th batch: no G step
    resumed = tiny_dualgan(n_critic=2)
    resumed.load_state_dict(model.state_dict())
    assert int(resumed.iteration) == 3


@pytest.mark.slow
def test_dualgan_config_is_the_reference(tmp_path):
    cfg = compose_train(tmp_path, ["model=dualgan", "data=cat2dog"])
    m, d = cfg.model, cfg.data
    assert m.netG_A._target_ == "ganforge.nets.dualgan.DualGANGenerator" and m.netG_A.num_downs == 8
    assert m.netD_A._target_ == "ganforge.nets.dualgan.DualGANDiscriminator" and m.netD_A.image_size == 256
    assert m.n_critic == 1 and m.gp_weight == 10 and m.lambda_A == m.lambda_B == 500
    assert m.optimizer_g._target_ == m.optimizer_d._target_ == "ganforge.gans.dualgan.TFRMSprop"
    assert (m.optimizer_d.lr, m.optimizer_d.decay, m.optimizer_d.eps) == (5e-5, 0.9, 1e-10)
    assert (d.load_size, d.crop_size, d.flip, d.epoch_length) == (256, 256, False, "min")
    tiny = compose_train(tmp_path, ["model=dualgan", "data=cat2dog", "debug=tiny"])
    model = instantiate(tiny.model)
    assert isinstance(model.netG_A, DualGANGenerator) and model.netD_A.image_size == 64
    assert model.netG_A(images(1, 64)).shape == (1, 3, 64, 64)


# ----- DiscoGAN (image_translation.py, model.py, dataset.py) ---------------------------------------
def test_discogan_config_builds_the_scripts_generator_and_discriminator(tmp_path):
    cfg = compose_train(tmp_path, ["model=discogan", "data=cat2dog"])
    model = instantiate(cfg.model)
    g, d = model.netG_A, model.netD_A
    convs = [m for net in (g, d) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(c.bias is None for c in convs)  # model.py: bias=False everywhere
    assert len([m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]) == 8  # extra_layers=False
    assert isinstance(g.model[-1], nn.Sigmoid)
    # PyTorch's default init (kaiming-uniform bounded by 1/sqrt(fan_in)), not N(0, 0.02)
    first = g.model[0]
    assert first.weight.abs().max() <= 1 / (3 * 16) ** 0.5 and first.weight.std() > 0.05
    assert (cfg.data.flip, cfg.data.epoch_length, cfg.data.batch_size) == (False, "min", 64)


def tiny_discogan(**kw) -> DiscoGAN:
    adam = partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999), weight_decay=1e-5)

    def nets(cls, **a):
        if cls is EncoderDecoderGenerator:
            return cls(ngf=4, bias=False, output="sigmoid", init_type=None, **a)
        return cls(ndf=4, bias=False, init_type=None)

    return DiscoGAN(
        netG_A=nets(EncoderDecoderGenerator),
        netG_B=nets(EncoderDecoderGenerator),
        netD_A=nets(ConvDiscriminator),
        netD_B=nets(ConvDiscriminator),
        optimizer_g=adam,
        optimizer_d=adam,
        scheduler=SCHED,
        **kw,
    )


@pytest.mark.slow
def test_discogan_nets_see_unit_images_and_the_framework_sees_minus_one_to_one():
    torch.manual_seed(0)
    model = tiny_discogan()
    seen = []
    for net in (model.netG_A, model.netG_B, model.netD_A, model.netD_B):
        net.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    fit(model, n_batches=2)  # a D iteration, then a G iteration
    assert seen and all(x.min() >= 0 and x.max() <= 1 for x in seen)
    x = images(2)
    out = model.cycle(x, x)
    assert out["fake_B"].min() < 0 and out["fake_B"].abs().max() <= 1
    with torch.no_grad():
        model.netG_A.eval()
        expected = model.netG_A((x + 1) / 2) * 2 - 1
    assert torch.allclose(model.inference_model().translate(x, "AtoB"), expected)


def test_discogan_d_loss_halves_real_and_fake():
    torch.manual_seed(0)
    model = tiny_discogan()
    A, B = (images(2) + 1) / 2, (images(2, seed=1) + 1) / 2
    out = model.unit_cycle(A, B)
    d = model.discriminator_losses(A, B, out["fake_A"], out["fake_B"])
    bce = F.binary_cross_entropy_with_logits
    real, fake = model.netD_A(B), model.netD_A(out["fake_B"])
    assert torch.allclose(d["loss_D_A"], 0.5 * bce(real, torch.ones_like(real)) + 0.5 * bce(fake, torch.zeros_like(fake)))


def test_discogan_bottleneck_stays_an_option():
    g = EncoderDecoderGenerator(ngf=4, nz=8)
    assert any(isinstance(m, nn.Conv2d) and m.out_channels == 8 and m.kernel_size == (4, 4) and m.stride == (1, 1) for m in g.modules())
    assert g(images(2)).shape == (2, 3, 64, 64)
    with pytest.raises(ConfigError, match="output must be one of"):
        EncoderDecoderGenerator(output="relu")
