"""model=dcgan_seed: the Keras GAN of Deep Learning with Python §8.5 (the seed) — its nets, Keras' RMSprop
with clipvalue and decay, the labels (generated 1, real 0, plus noise), the update rule and the data range."""

from __future__ import annotations

import copy
import functools

import hydra
import pytest
import torch
import torch.nn.functional as F

from ganforge.gans.dcgan_seed import KerasDCGAN, KerasRMSprop
from ganforge.nets.dcgan import ConvDropoutDiscriminator, DenseConvGenerator
from tests.conftest import SHARED_DATA, compose_train, quiet_trainer, record_stepped_nets

FROGS = SHARED_DATA / "cifar10_frog"


def tiny_model(**kwargs) -> KerasDCGAN:
    rms = functools.partial(KerasRMSprop, lr=4e-4, clipvalue=1.0, decay=1e-8)
    return KerasDCGAN(
        netG=DenseConvGenerator(width=8, ngf=8), netD=ConvDropoutDiscriminator(ndf=8), optimizer_g=rms, optimizer_d=rms, **kwargs
    )


def test_the_nets_have_the_books_layers_and_parameter_counts():
    g, d = DenseConvGenerator(), ConvDropoutDiscriminator()
    # generator.summary() / discriminator.summary() in the book: 6,264,579 and 790,913 parameters
    assert sum(p.numel() for p in g.parameters()) == 6_264_579
    assert sum(p.numel() for p in d.parameters()) == 790_913
    x = g(torch.randn(4, 32))
    assert x.shape == (4, 3, 32, 32) and x.abs().max() <= 1 and d(x).shape == (4,)
    assert {m.negative_slope for m in g.modules() if isinstance(m, torch.nn.LeakyReLU)} == {0.3}  # Keras' default
    assert [m.p for m in d.modules() if isinstance(m, torch.nn.Dropout)] == [0.4]
    assert all((m.bias == 0).all() for m in g.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    w = g.dense[0].weight  # glorot_uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out))
    assert w.abs().max() <= (6 / (32 + 128 * 16 * 16)) ** 0.5


def keras_rmsprop_reference(w, grads, lr, rho, eps, decay, clipvalue):
    """keras/optimizers.py RMSprop.get_updates (Keras 2), written out."""
    a = torch.zeros_like(w)
    for t, g in enumerate(grads):
        g = g.clamp(-clipvalue, clipvalue)
        lr_t = lr * (1.0 / (1.0 + decay * t))
        a = rho * a + (1 - rho) * g * g
        w = w - lr_t * g / (a.sqrt() + eps)
    return w


def test_keras_rmsprop_is_keras_update_with_clipvalue_and_decay():
    torch.manual_seed(0)
    w0 = torch.randn(50)
    grads = [torch.randn(50) * 3 for _ in range(6)]  # many entries beyond the clip value
    decay = 0.2  # large enough that the per-update LR decay shows
    p = torch.nn.Parameter(w0.clone())
    opt = KerasRMSprop([p], lr=0.01, decay=decay, clipvalue=1.0)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    expected = keras_rmsprop_reference(w0, grads, 0.01, 0.9, 1e-8, decay, 1.0)
    assert torch.allclose(p.detach(), expected, atol=1e-6)
    unclipped = keras_rmsprop_reference(w0, [g.clamp(-100, 100) for g in grads], 0.01, 0.9, 1e-8, decay, 100.0)
    assert not torch.allclose(p.detach(), unclipped, atol=1e-4)  # the clipping took part
    assert opt.param_groups[0]["lr"] == 0.01  # the decay divides the LR only inside the step


def test_keras_rmsprop_resumes_its_update_count():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = KerasRMSprop([p], lr=0.1, decay=0.5)
    for _ in range(3):
        p.grad = torch.ones(3)
        opt.step()
    q = torch.nn.Parameter(p.detach().clone())
    resumed = KerasRMSprop([q], lr=0.1, decay=0.5)
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))  # as through a file
    assert resumed.param_groups[0]["iterations"] == 3
    p.grad, q.grad = torch.ones(3), torch.ones(3)
    opt.step(), resumed.step()
    assert torch.equal(p, q)


def test_d_labels_generated_one_real_zero_with_uniform_noise():
    m = tiny_model()
    real, fake = torch.rand(5, 3, 32, 32) * 2 - 1, m.netG(torch.randn(5, 32))
    m.netD.eval()  # dropout off, so the logits below are the ones the loss saw
    torch.manual_seed(7)
    loss = m.discriminator_losses(real, fake)["loss_D"]
    torch.manual_seed(7)
    noise = 0.05 * torch.rand(10)
    labels = torch.cat([torch.ones(5), torch.zeros(5)]) + noise
    logits = m.netD(torch.cat([fake, real]))
    assert torch.allclose(loss, F.binary_cross_entropy_with_logits(logits, labels))
    assert not torch.allclose(loss, F.binary_cross_entropy_with_logits(logits, torch.cat([torch.ones(5), torch.zeros(5)])))
    loss.backward()
    assert all(p.grad is None for p in m.netG.parameters())


def test_g_targets_are_zeros_the_misleading_real_label():
    m = tiny_model()
    m.netD.eval()
    fake = m.netG(torch.randn(4, 32))
    logits = m.netD(fake)
    assert torch.allclose(m.generator_losses(fake)["loss_G"], F.softplus(logits).mean(), atol=1e-6)  # -log(1 - D)


@pytest.mark.slow
@pytest.mark.parametrize("seed_range", [False, True])
def test_the_update_rule_one_concatenated_d_batch_then_g_on_new_latents(tmp_path, seed_range):
    m = tiny_model(seed_data_range=seed_range)
    d_inputs, latents = [], []
    m.netD.register_forward_pre_hook(lambda mod, args: d_inputs.append((args[0].detach().clone(), mod.training)))
    noise = m.noise
    m.noise = lambda n, generator=None: latents.append(noise(n, generator)) or latents[-1]
    steps = record_stepped_nets(m)
    reals = torch.rand(4, 3, 32, 32) * 2 - 1
    data = torch.utils.data.DataLoader([{"real": r} for r in reals], batch_size=4)
    quiet_trainer(max_epochs=1, limit_val_batches=0, default_root_dir=tmp_path).fit(m, train_dataloaders=data)
    assert steps == [["netD"], ["netG"]]
    (d_batch, d_train), (g_batch, g_train) = d_inputs
    assert d_batch.shape[0] == 8 and g_batch.shape[0] == 4 and d_train and g_train  # dropout on in both steps
    expected_real = (reals + 1) / 2 if seed_range else reals
    assert torch.allclose(d_batch[4:], expected_real)  # generated first, then the reals, in the model's range
    assert len(latents) == 2 and not torch.equal(latents[0], latents[1])


def test_the_config_is_the_books(tmp_path):
    cfg = compose_train(tmp_path, ["model=dcgan_seed", "data=image_folder", f"data.root={FROGS / 'train'}"])
    assert cfg.data.batch_size == 20 and cfg.model.netG.nz == 32 and cfg.model.label_noise == 0.05
    opt_d, opt_g = (
        hydra.utils.instantiate(cfg.model[k])(params=[torch.nn.Parameter(torch.zeros(1))]) for k in ("optimizer_d", "optimizer_g")
    )
    assert [(o.defaults["lr"], o.param_groups[0]["clipvalue"], o.param_groups[0]["decay"]) for o in (opt_d, opt_g)] == [
        (8e-4, 1.0, 1e-8),
        (4e-4, 1.0, 1e-8),
    ]
    assert cfg.trainer.max_epochs * 5000 // cfg.data.batch_size == 10_000  # the book's iterations on the 5,000 frogs
    model = hydra.utils.instantiate(cfg.model)
    assert model.hparams.label_noise == 0.05 and model.hparams.seed_data_range is False
