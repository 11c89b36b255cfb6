"""Unit tests of the GAN objectives and regularizers against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganforge.gans.losses import (
    GANLoss,
    feature_matching_loss,
    gradient_penalty,
    kl_divergence,
)
from ganforge.nets import NLayerDiscriminator
from ganforge.utils.errors import ConfigError

# Four scores whose losses are easy to do by hand.
X = [0.5, -1.0, 2.0, 0.0]


def pred() -> torch.Tensor:
    return torch.tensor(X).view(1, 1, 2, 2)


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


@pytest.mark.parametrize(
    "mode, real, fake",
    [
        ("lsgan", (0.25 + 4 + 1 + 1) / 4, (0.25 + 1 + 4 + 0) / 4),
        ("vanilla", sum(softplus(-v) for v in X) / 4, sum(softplus(v) for v in X) / 4),
        ("wgangp", -0.375, 0.375),
        ("hinge", (0.5 + 2 + 0 + 1) / 4, (1.5 + 0 + 3 + 1) / 4),
    ],
)
def test_discriminator_losses(mode, real, fake):
    loss = GANLoss(mode)
    assert loss(pred(), True).item() == pytest.approx(real)
    assert loss(pred(), False).item() == pytest.approx(fake)


@pytest.mark.parametrize(
    "mode, expected",
    [("lsgan", 1.5625), ("vanilla", sum(softplus(-v) for v in X) / 4), ("wgangp", -0.375), ("hinge", -0.375)],
)
def test_generator_losses(mode, expected):
    assert GANLoss(mode)(pred(), True, for_discriminator=False).item() == pytest.approx(expected)


def test_hinge_generator_must_target_real():
    with pytest.raises(ValueError, match="target_is_real=True"):
        GANLoss("hinge")(pred(), False, for_discriminator=False)


def test_custom_labels():
    # Label smoothing: real target 0.9.
    expected = sum((v - 0.9) ** 2 for v in X) / 4
    assert GANLoss("lsgan", target_real_label=0.9)(pred(), True).item() == pytest.approx(expected)


def test_unknown_modes_are_config_errors():
    with pytest.raises(ConfigError, match="gan_mode 'wgan'.*vanilla, lsgan, wgangp, hinge"):
        GANLoss("wgan")
    with pytest.raises(ConfigError, match="scale_reduction"):
        GANLoss("lsgan", scale_reduction="max")


def test_multiscale_losses_are_averaged():
    a, b = pred(), torch.full((2, 1, 3, 3), 3.0)
    loss = GANLoss("lsgan")
    la, lb = loss(a, True).item(), loss(b, True).item()
    assert lb == pytest.approx(4.0)
    assert loss([a, b], True).item() == pytest.approx((la + lb) / 2)
    # Nested feature lists: only the last element (the score map) counts.
    nested = [[torch.full((1, 4, 2, 2), 100.0), a], [torch.zeros(1, 8, 1, 1), b]]
    assert loss(nested, True).item() == pytest.approx((la + lb) / 2)
    assert GANLoss("lsgan", scale_reduction="sum")([a, b], True).item() == pytest.approx(la + lb)


def test_labels_are_buffers_outside_the_state_dict():
    loss = GANLoss("vanilla", target_real_label=0.8)
    assert dict(loss.named_buffers())["real_label"].item() == pytest.approx(0.8)
    assert loss.state_dict() == {}


def test_loss_follows_prediction_dtype_and_backprops():
    x = pred().to(torch.bfloat16).requires_grad_(True)
    out = GANLoss("lsgan")(x, True)
    assert out.dtype == torch.bfloat16
    out.backward()
    # d/dx mean((x - 1)^2) = 2 (x - 1) / 4
    expected = torch.tensor([(v - 1) / 2 for v in X]).view(1, 1, 2, 2)
    assert torch.allclose(x.grad.float(), expected, atol=1e-2)


# ---------------------------------------------------------------- gradient penalty


class LinearD(nn.Module):
    """D(x) = <w, x>: its input gradient is w for every sample, so the penalty is known."""

    def __init__(self, numel: int, norm: float):
        super().__init__()
        self.lin = nn.Linear(numel, 1, bias=False)
        with torch.no_grad():
            self.lin.weight.mul_(norm / self.lin.weight.norm())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


class TwoScaleLinearD(LinearD):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        half = self.lin(x.flatten(1)) / 2
        return [half, [torch.zeros(1), half]]  # a plain scale and a feature-list scale


def _images():
    return torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)


@pytest.mark.parametrize("kind", ["mixed", "real", "fake"])
def test_gradient_penalty_zero_for_unit_gradient(kind):
    real, fake = _images()
    penalty, grads = gradient_penalty(LinearD(3 * 64, 1.0), real, fake, kind=kind)
    assert penalty.item() < 1e-10
    assert grads.shape == (4, 3 * 64)


def test_gradient_penalty_value_and_backprop_into_d():
    real, fake = _images()
    d = LinearD(3 * 64, 3.0)
    penalty, _ = gradient_penalty(d, real, fake, weight=10.0)
    assert penalty.item() == pytest.approx(10 * (3 - 1) ** 2, rel=1e-5)
    penalty.backward()
    # d/dw 10 (|w| - 1)^2 = 20 (|w| - 1) w / |w|
    w = d.lin.weight.detach()
    assert torch.allclose(d.lin.weight.grad, 20 * 2 * w / 3, atol=1e-5)
    assert not real.requires_grad and not fake.requires_grad


@pytest.mark.parametrize("kind", ["mixed", "real", "fake"])
def test_gradient_penalty_regularizes_d_only(kind):
    real, base = _images()
    g_param = torch.tensor(2.0, requires_grad=True)  # stands in for G: fake depends on it
    penalty, _ = gradient_penalty(LinearD(3 * 64, 3.0), real, base * g_param, kind=kind)
    penalty.backward()
    assert g_param.grad is None
    assert not real.requires_grad  # the caller's tensor is not switched to requires_grad


def test_gradient_penalty_constant():
    real, fake = _images()
    penalty, _ = gradient_penalty(LinearD(3 * 64, 3.0), real, fake, constant=3.0, weight=0.1)
    assert penalty.item() < 1e-8


def test_gradient_penalty_sums_multiscale_outputs():
    real, fake = _images()
    penalty, grads = gradient_penalty(TwoScaleLinearD(3 * 64, 1.0), real, fake)
    assert penalty.item() < 1e-10
    assert torch.allclose(grads.norm(dim=1), torch.ones(4))


def test_gradient_penalty_on_patchgan():
    torch.manual_seed(0)
    d = NLayerDiscriminator(3, 8, n_layers=2, norm="none")
    real, fake = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    penalty, _ = gradient_penalty(d, real, fake)
    assert penalty.item() > 0
    penalty.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters() if p.dim() > 1)


def test_gradient_penalty_off_and_bad_kind():
    real, fake = _images()
    penalty, grads = gradient_penalty(LinearD(3 * 64, 3.0), real, fake, weight=0.0)
    assert penalty.item() == 0 and grads is None
    with pytest.raises(ConfigError, match="kind 'both'"):
        gradient_penalty(LinearD(3 * 64, 1.0), real, fake, kind="both")


# ---------------------------------------------------------------- KL


def test_kl_zero_at_standard_normal():
    assert kl_divergence(torch.zeros(3, 8), torch.zeros(3, 8)).item() == 0.0


def test_kl_closed_form_and_summed():
    mu = torch.tensor([[1.0, 2.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    # 0.5 (mu^2 + var - 1 - logvar) per element: 0.5 and 2.5 - 0.5 ln 2
    expected = 3.0 - 0.5 * math.log(2.0)
    assert kl_divergence(mu, logvar).item() == pytest.approx(expected)
    # Summed over the batch, not averaged: two identical rows give twice the value.
    assert kl_divergence(mu.repeat(2, 1), logvar.repeat(2, 1)).item() == pytest.approx(2 * expected)
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 8), torch.randn(4, 8)
    dist = torch.distributions
    ref = dist.kl_divergence(dist.Normal(mu, (0.5 * logvar).exp()), dist.Normal(0.0, 1.0)).sum()
    assert kl_divergence(mu, logvar).item() == pytest.approx(ref.item(), rel=1e-5)


# ---------------------------------------------------------------- feature matching


def test_feature_matching_values_and_detach():
    fake1 = torch.ones(1, 2, 4, 4, requires_grad=True)
    real1 = torch.zeros(1, 2, 4, 4, requires_grad=True)
    fake = [
        [fake1, torch.full((1, 3, 2, 2), 2.0), torch.full((1, 1, 2, 2), 50.0)],
        [torch.ones(1, 2, 2, 2), torch.zeros(1, 1, 1, 1)],
    ]
    real = [
        [real1, torch.full((1, 3, 2, 2), 0.5), torch.full((1, 1, 2, 2), -50.0)],
        [torch.full((1, 2, 2, 2), 0.5), torch.ones(1, 1, 1, 1)],
    ]
    # scale 0: |1 - 0| + |2 - 0.5| = 2.5 (score map ignored); scale 1: 0.5; averaged over 2 scales.
    loss = feature_matching_loss(fake, real)
    assert loss.item() == pytest.approx(1.5)
    loss.backward()
    assert real1.grad is None
    assert torch.allclose(fake1.grad, torch.full_like(fake1, 0.5 / fake1.numel()))
