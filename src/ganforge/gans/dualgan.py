"""DualGAN (Yi et al., 2017): unsupervised dual learning with Wasserstein critics.

G_A: A -> B, G_B: B -> A (the reference `fcn` U-Nets); D_A critic of B images, D_B critic of A
images (the reference 'globalgan': one raw score per image). Critic loss: mean D(fake) - mean
D(real), with a gradient penalty (`regularizer: gp`, weight 10) or weight clipping to
[-clip_value, clip_value] (`regularizer: clip`). G loss: -mean D(fake) per direction
+ lambda_A * |G_B(G_A(A)) - A| + lambda_B * |G_A(G_B(B)) - B|. RMSProp (5e-5) with TensorFlow's
semantics (`TFRMSprop`) for both Gs and for both critics.

Schedule (duxingren14/DualGAN `model.py`, `run_optim`): every batch takes one critic step; the
Gs step after it on the batches where the reference's counter is a multiple of `n_critic`. That
counter reads 2 on the first batch, so with n_critic 1 (the reference default) the Gs step every
batch. With n_critic 2 they step on the 1st, 3rd, ... batch. The counter is a buffer, so a resumed
run keeps the schedule.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganforge.gans.base import closure_loss
from ganforge.gans.losses import GANLoss, gradient_penalty
from ganforge.gans.two_domain import TwoDomainGAN
from ganforge.utils.errors import ConfigError

REGULARIZERS = ("gp", "clip")


class TFRMSprop(torch.optim.Optimizer):
    """RMSProp as TensorFlow 1's `tf.train.RMSPropOptimizer` (the DualGAN reference's optimizer).

    ms = decay * ms + (1 - decay) * g^2, then p -= lr * g / sqrt(ms + eps), with ms starting at
    ones. torch's `RMSprop` starts ms at zeros, so its first steps are about lr / sqrt(1 - decay)
    per weight whatever the gradient's size, where TF's start near lr * g. Its eps also goes outside
    the square root. At eps 1e-10 the placement only matters for weights whose gradient stays
    near 0. The ones start matters for the first ~100 steps.
    """

    def __init__(self, params, lr: float = 5e-5, decay: float = 0.9, eps: float = 1e-10):
        if lr <= 0 or not 0 <= decay < 1 or eps < 0:
            raise ConfigError(f"TFRMSprop needs lr > 0, 0 <= decay < 1, eps >= 0; got lr={lr}, decay={decay}, eps={eps}")
        super().__init__(params, {"lr": lr, "decay": decay, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["ms"] = torch.ones_like(p, memory_format=torch.preserve_format)
                ms = state["ms"]
                ms.mul_(group["decay"]).addcmul_(p.grad, p.grad, value=1 - group["decay"])
                p.addcdiv_(p.grad, (ms + group["eps"]).sqrt_(), value=-group["lr"])
        return loss


class DualGAN(TwoDomainGAN):
    model_name = "dualgan"

    def __init__(
        self,
        regularizer: str = "gp",
        gp_weight: float = 10.0,
        clip_value: float = 0.01,
        n_critic: int = 1,
        lambda_A: float = 500.0,
        lambda_B: float = 500.0,
        **nets_and_optimizers,  # netG_A, netG_B, netD_A, netD_B, optimizer_g, optimizer_d, scheduler (TwoDomainGAN)
    ):
        super().__init__(**nets_and_optimizers)
        if regularizer not in REGULARIZERS:
            raise ConfigError(f"model.regularizer must be one of {REGULARIZERS}, got {regularizer!r}")
        if n_critic < 1:
            raise ConfigError(f"model.n_critic must be >= 1, got {n_critic}")
        self.criterion_gan = GANLoss("wgangp")  # -mean D(real), +mean D(fake): the Wasserstein estimate
        # Training iterations so far (one per batch); a buffer, so it is checkpointed.
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

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

    def g_steps_now(self) -> bool:
        """Whether this batch's critic step is followed by a G step (the reference counter is iteration + 2)."""
        return (int(self.iteration) + 2) % self.hparams.n_critic == 0

    def training_step(self, batch, batch_idx):
        real_A, real_B = batch["A"], batch["B"]
        opt_g, opt_d = self.optimizers()
        with torch.no_grad():
            fake_B, fake_A = self.netG_A(real_A), self.netG_B(real_B)
        with self.toggled_optimizer(opt_d):
            losses = self.critic_losses(real_A, real_B, fake_A, fake_B)
            self.step(opt_d, losses["loss_D"])
        if self.hparams.regularizer == "clip":
            with torch.no_grad():
                for p in [*self.netD_A.parameters(), *self.netD_B.parameters()]:
                    p.clamp_(-self.hparams.clip_value, self.hparams.clip_value)
        if self.g_steps_now():
            with self.toggled_optimizer(opt_g):
                g = self.generator_losses(real_A, real_B, self.cycle(real_A, real_B))
                self.step(opt_g, g["loss_G"])
            self.log("train/loss_G", g.pop("loss_G").detach(), prog_bar=True)
            losses.update(g)
        self.iteration += 1
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()})
