"""GAN objectives and regularizers shared by every GAN (pure torch).

Discriminator outputs may be a tensor, a list of tensors (one per scale of a multiscale D), or a
list of feature lists whose last element is the score map (`get_intermediate=True`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.utils.errors import ConfigError

GAN_MODES = ("vanilla", "lsgan", "wgangp", "hinge")
SCALE_REDUCTIONS = ("mean", "sum")
GP_KINDS = ("mixed", "real", "fake")

DOutput = torch.Tensor | Sequence["DOutput"]


def score_maps(prediction: DOutput) -> list[torch.Tensor]:
    """The final score map of every scale: a tensor, or the last element of each nested list."""
    if isinstance(prediction, torch.Tensor):
        return [prediction]
    return [p if isinstance(p, torch.Tensor) else p[-1] for p in prediction]


class GANLoss(nn.Module):
    """The adversarial objective: `vanilla` (BCE with logits), `lsgan` (MSE), `wgangp`, `hinge`.

    `loss(prediction, target_is_real, for_discriminator=True)`. Only hinge distinguishes D from G
    (D: mean relu(1 - x) on real, mean relu(1 + x) on fake; G: -mean x). Per-scale losses are
    averaged (SPADE); `scale_reduction="sum"` sums them as the BicycleGAN reference does.
    """

    def __init__(
        self,
        gan_mode: str = "lsgan",
        target_real_label: float = 1.0,
        target_fake_label: float = 0.0,
        scale_reduction: str = "mean",
    ):
        super().__init__()
        if gan_mode not in GAN_MODES:
            raise ConfigError(f"unknown gan_mode {gan_mode!r}; choose one of: {', '.join(GAN_MODES)}")
        if scale_reduction not in SCALE_REDUCTIONS:
            raise ConfigError(f"unknown scale_reduction {scale_reduction!r}; choose one of: {', '.join(SCALE_REDUCTIONS)}")
        self.gan_mode = gan_mode
        self.scale_reduction = scale_reduction
        # Non-persistent: labels come from the config, so they stay out of checkpoints.
        self.register_buffer("real_label", torch.tensor(target_real_label), persistent=False)
        self.register_buffer("fake_label", torch.tensor(target_fake_label), persistent=False)

    def _target(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        label = self.real_label if target_is_real else self.fake_label
        # expand_as makes a view, not a new tensor per call.
        return label.to(prediction.dtype).expand_as(prediction)

    def _single(self, x: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        if self.gan_mode == "lsgan":
            return F.mse_loss(x, self._target(x, target_is_real))
        if self.gan_mode == "vanilla":
            return F.binary_cross_entropy_with_logits(x, self._target(x, target_is_real))
        if self.gan_mode == "wgangp":
            return -x.mean() if target_is_real else x.mean()
        if not for_discriminator:
            if not target_is_real:
                raise ValueError("the generator's hinge loss only exists for target_is_real=True")
            return -x.mean()
        return F.relu(1.0 - x).mean() if target_is_real else F.relu(1.0 + x).mean()

    def forward(self, prediction: DOutput, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        losses = [self._single(x, target_is_real, for_discriminator) for x in score_maps(prediction)]
        total = torch.stack(losses).sum()
        return total / len(losses) if self.scale_reduction == "mean" else total


def gradient_penalty(
    netD: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    kind: str = "mixed",
    constant: float = 1.0,
    weight: float = 10.0,
    norm_over: str = "sample",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """WGAN-GP penalty `weight * mean((||grad_x D(x)|| - constant)^2)` (reference `cal_gradient_penalty`).

    `norm_over="sample"` takes the norm of each sample's whole gradient (pytorch-CycleGAN-and-pix2pix,
    DualGAN); `"pixel"` takes it over the channels at every pixel and averages the pixels (SinGAN's
    `calc_gradient_penalty`), which penalises every patch of a patch critic on its own.

    x is `real`, `fake`, or a per-sample random interpolation of the two (`mixed`). Inputs are
    detached: the penalty regularizes D only, and the caller's tensors are left untouched. The
    graph is kept (create_graph) so the penalty backpropagates into D. A D returning several
    scales is penalized on the sum of its scores. Returns (penalty, per-sample flat gradients);
    `weight == 0` returns (0, None) without running D.
    """
    if norm_over not in ("sample", "pixel"):
        raise ConfigError(f"gradient penalty norm_over={norm_over!r}: choose sample or pixel")
    if kind not in GP_KINDS:
        raise ConfigError(f"unknown gradient penalty kind {kind!r}; choose one of: {', '.join(GP_KINDS)}")
    if weight == 0:
        return real.new_zeros(()), None
    real, fake = real.detach(), fake.detach()
    if kind == "real":
        x = real
    elif kind == "fake":
        x = fake
    else:
        alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
        x = alpha * real + (1 - alpha) * fake
    x.requires_grad_(True)
    scores = score_maps(netD(x))
    (grad,) = torch.autograd.grad(outputs=scores, inputs=x, grad_outputs=[torch.ones_like(s) for s in scores], create_graph=True)
    if norm_over == "pixel":
        return ((grad.norm(2, dim=1) - constant) ** 2).mean() * weight, grad.flatten(1)
    grad = grad.flatten(1)
    # The epsilon (as in the reference) keeps the norm's gradient finite when grad is exactly 0.
    penalty = (((grad + 1e-16).norm(2, dim=1) - constant) ** 2).mean() * weight
    return penalty, grad


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)), summed over batch and dimensions (BicycleGAN, SPADE)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def feature_matching_loss(
    fake_features: Sequence[Sequence[torch.Tensor]],
    real_features: Sequence[Sequence[torch.Tensor]],
    statistic: str = "pixel_l1",
) -> torch.Tensor:
    """GAN feature matching between D's intermediate features on fake and real images.

    Each element is one scale's feature list with the score map last (excluded). Layers are
    summed and scales averaged; real features are detached so only G is pushed.
    `statistic="pixel_l1"`: L1 between the feature maps (SPADE / pix2pixHD). `"batch_mean_mse"`:
    squared distance of the features' batch means (DiscoGAN's `get_fm_loss`, Salimans et al. 2016).
    """
    if statistic not in ("pixel_l1", "batch_mean_mse"):
        raise ConfigError(f"feature matching statistic={statistic!r}: choose pixel_l1 or batch_mean_mse")
    total = fake_features[0][0].new_zeros(())
    for fake_scale, real_scale in zip(fake_features, real_features, strict=True):
        for fake, real in zip(fake_scale[:-1], real_scale[:-1], strict=True):
            if statistic == "pixel_l1":
                total = total + F.l1_loss(fake, real.detach())
            else:
                total = total + ((real.detach().mean(0) - fake.mean(0)) ** 2).mean()
    return total / len(fake_features)


#: VGG19 `features` indices ending at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (SPADE architecture.py VGG19)
VGG19_SLICES = (2, 7, 12, 21, 30)
#: their weights (SPADE loss.py VGGLoss)
VGG_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


class VGGLoss(nn.Module):
    """Perceptual loss: sum_i w_i * L1(VGG19_i(x), VGG19_i(y).detach()) over relu1_1..relu5_1 (SPADE
    models/networks/loss.py VGGLoss). `features` is torchvision's `vgg19().features` (or a stand-in with
    the same layer indices); it is frozen. Images go in as they are, in [-1, 1], as the reference feeds
    them; unlike the reference (which calls .cuda() when built) it runs on any device."""

    def __init__(self, features: nn.Module, layer_weights: Sequence[float] = VGG_LAYER_WEIGHTS):
        super().__init__()
        bounds = (0, *VGG19_SLICES)
        if len(features) < bounds[-1]:
            raise ConfigError(f"VGGLoss needs VGG19's first {bounds[-1]} feature layers, got {len(features)}")
        self.slices = nn.ModuleList(nn.Sequential(*[features[i] for i in range(a, b)]) for a, b in zip(bounds, bounds[1:]))
        self.layer_weights = tuple(layer_weights)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGLoss:
        return super().train(False)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for s in self.slices:
            x = s(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(())
        for w, fx, fy in zip(self.layer_weights, self._features(x), self._features(y), strict=True):
            total = total + w * F.l1_loss(fx, fy.detach())
        return total
