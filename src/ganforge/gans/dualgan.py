"""DualGAN (Yi et al., 2017): unsupervised dual learning with Wasserstein critics.

G_A: A -> B, G_B: B -> A (U-Nets); D_A critic of B images, D_B critic of A images (PatchGAN,
no sigmoid). Critic loss: mean D(fake) - mean D(real), with a gradient penalty (`regularizer: gp`,
weight 10) or the paper's weight clipping to [-clip_value, clip_value] (`regularizer: clip`).
G loss: -mean D(fake) per direction + lambda_A * |G_B(G_A(A)) - A| + lambda_B * |G_A(G_B(B)) - B|.
RMSProp (5e-5) for both Gs and for both Ds. Each iteration: `n_critic` critic steps on the
batch (paper: 2), then one G step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import ConfigError
from ganforge.gans.cyclegan import UnpairedGAN
from ganforge.losses import GANLoss, gradient_penalty

REGULARIZERS = ("gp", "clip")


class DualGAN(UnpairedGAN):
    def __init__(
        self,
        netG_A: nn.Module,
        netG_B: nn.Module,
        netD_A: nn.Module,
        netD_B: nn.Module,
        optimizer_g: Callable[..., torch.optim.Optimizer],
        optimizer_d: Callable[..., torch.optim.Optimizer],
        scheduler: Mapping[str, Any] | None = None,
        regularizer: str = "gp",
        gp_weight: float = 10.0,
        clip_value: float = 0.01,
        n_critic: int = 2,
        lambda_A: float = 500.0,
        lambda_B: float = 500.0,
    ):
        super().__init__(netG_A, netG_B, netD_A, netD_B, scheduler=scheduler)
        if regularizer not in REGULARIZERS:
            raise ConfigError(f"model.regularizer must be one of {REGULARIZERS}, got {regularizer!r}")
        if n_critic < 1:
            raise ConfigError(f"model.n_critic must be >= 1, got {n_critic}")
        self.save_hyperparameters(ignore=list(self.net_names), logger=False)
        self.criterion_gan = GANLoss("wgangp")  # -mean D(real), +mean D(fake): the Wasserstein estimate

    def configure_optimizers(self):
        g, d = self.generators_and_discriminators()
        return self.optimizers_for(self.hparams.optimizer_g(params=g), self.hparams.optimizer_d(params=d))

    def critic_losses(self, real_A, real_B, fake_A, fake_B) -> dict[str, torch.Tensor]:
        c, hp, d = self.criterion_gan, self.hparams, {}
        for name, netD, real, fake in (("A", self.netD_A, real_B, fake_B), ("B", self.netD_B, real_A, fake_A)):
            d[f"loss_D_{name}"] = c(netD(real), True) + c(netD(fake.detach()), False)
            if hp.regularizer == "gp":
                d[f"loss_D_{name}_gp"] = gradient_penalty(netD, real, fake, weight=hp.gp_weight)[0]
        d["loss_D"] = sum(d.values())
        return d

    def generator_losses(self, real_A, real_B, out) -> dict[str, torch.Tensor]:
        hp, c = self.hparams, self.criterion_gan
        g = {
            "loss_G_A": c(self.netD_A(out["fake_B"]), True, for_discriminator=False),
            "loss_G_B": c(self.netD_B(out["fake_A"]), True, for_discriminator=False),
            "loss_rec_A": F.l1_loss(out["rec_A"], real_A) * hp.lambda_A,
            "loss_rec_B": F.l1_loss(out["rec_B"], real_B) * hp.lambda_B,
        }
        g["loss_G"] = sum(g.values())
        return g

    def training_step(self, batch, batch_idx):
        real_A, real_B = batch["A"], batch["B"]
        opt_g, opt_d = self.optimizers()
        with torch.no_grad():
            fake_B, fake_A = self.netG_A(real_A), self.netG_B(real_B)
        for _ in range(self.hparams.n_critic):
            with self.toggled_optimizer(opt_d):
                d = self.critic_losses(real_A, real_B, fake_A, fake_B)
                self.step(opt_d, d["loss_D"])
            if self.hparams.regularizer == "clip":
                with torch.no_grad():
                    for p in [*self.netD_A.parameters(), *self.netD_B.parameters()]:
                        p.clamp_(-self.hparams.clip_value, self.hparams.clip_value)
        with self.toggled_optimizer(opt_g):
            g = self.generator_losses(real_A, real_B, self.cycle(real_A, real_B))
            self.step(opt_g, g["loss_G"])
        losses = {f"train/{k}": v.detach() for k, v in {**d, **g}.items()}
        self.log("train/loss_G", losses.pop("train/loss_G"), prog_bar=True)
        self.log_dict(losses)
