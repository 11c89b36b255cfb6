"""CycleGAN (Zhu et al., 2017): unpaired translation with two generators and a cycle loss.

G_A: A -> B, G_B: B -> A; D_A judges B images (real B vs G_A(A)), D_B judges A images.
Loss: LSGAN + lambda_A * |G_B(G_A(A)) - A| + lambda_B * |G_A(G_B(B)) - B| + identity terms
(lambda_identity * lambda: |G_A(B) - B| and |G_B(A) - A|). D trains on fakes from a 50-image pool.
One Adam for both Gs, one for both Ds. Each iteration (reference order, `order: g_first`):
forward, the G step with the Ds frozen, then D_A and D_B on pooled fakes in one D step.
The seed article's variant (`order: d_first`, model=cyclegan_seed) steps D_X, D_Y, then both Gs.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.gans.losses import GANLoss
from ganforge.gans.two_domain import TwoDomainGAN
from ganforge.utils.errors import ConfigError
from ganforge.utils.image_pool import ImagePool

ORDERS = ("g_first", "d_first")


def image_channels(net: nn.Module) -> tuple[int, int]:
    """(input, output) channels of an image-to-image net: its first conv's input, its last conv's output."""
    convs = [m for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    return convs[0].in_channels, convs[-1].out_channels


class CycleGAN(TwoDomainGAN):
    model_name = "cyclegan"

    def __init__(
        self,
        gan_mode: str = "lsgan",
        lambda_A: float = 10.0,
        lambda_B: float = 10.0,
        lambda_identity: float = 0.5,
        pool_size: int = 50,
        order: str = "g_first",
        **nets_and_optimizers,  # netG_A, netG_B, netD_A, netD_B, optimizer_g, optimizer_d, scheduler (TwoDomainGAN)
    ):
        super().__init__(**nets_and_optimizers)
        if order not in ORDERS:
            raise ConfigError(f"model.order must be one of {ORDERS}, got {order!r}")
        in_nc, out_nc = image_channels(self.netG_A)
        if lambda_identity > 0 and in_nc != out_nc:
            # The identity terms feed B images to G_A (and A images to G_B); the reference asserts
            # input_nc == output_nc in that case (cycle_gan_model.py __init__).
            raise ConfigError(
                f"model.lambda_identity={lambda_identity} needs as many channels in A as in B, but "
                f"data.input_nc={in_nc} and data.output_nc={out_nc}; set model.lambda_identity=0 or equal channel counts"
            )
        self.criterion_gan = GANLoss(gan_mode)
        # One generator for both pools, as the reference's share Python's `random` (utils/image_pool.py)
        pool_rng = random.Random(torch.initial_seed())
        self.fake_A_pool, self.fake_B_pool = ImagePool(pool_size, pool_rng), ImagePool(pool_size, pool_rng)

    # ----- the paper's objective, one phase a method ----------------------------------------------
    def generator_losses(self, real_A, real_B, out) -> dict[str, torch.Tensor]:
        hp = self.hparams
        g = {
            "loss_G_A": self.criterion_gan(self.netD_A(out["fake_B"]), True, for_discriminator=False),
            "loss_G_B": self.criterion_gan(self.netD_B(out["fake_A"]), True, for_discriminator=False),
            "loss_cycle_A": F.l1_loss(out["rec_A"], real_A) * hp.lambda_A,
            "loss_cycle_B": F.l1_loss(out["rec_B"], real_B) * hp.lambda_B,
        }
        if hp.lambda_identity > 0:
            g["loss_idt_A"] = F.l1_loss(self.netG_A(real_B), real_B) * hp.lambda_B * hp.lambda_identity
            g["loss_idt_B"] = F.l1_loss(self.netG_B(real_A), real_A) * hp.lambda_A * hp.lambda_identity
        g["loss_G"] = sum(g.values())
        return g

    def discriminator_losses(self, real_A, real_B, fake_A, fake_B) -> dict[str, torch.Tensor]:
        """D_A on real B vs G_A's pooled fakes, D_B on real A vs G_B's (each (real + fake) * 0.5)."""
        d_A = self.d_loss(self.criterion_gan, self.netD_A, real_B, self.fake_B_pool.query(fake_B.detach()))
        d_B = self.d_loss(self.criterion_gan, self.netD_B, real_A, self.fake_A_pool.query(fake_A.detach()))
        return {"loss_D_A": d_A["loss_D"], "loss_D_B": d_B["loss_D"], "loss_D": d_A["loss_D"] + d_B["loss_D"]}

    def training_step(self, batch, batch_idx):
        real_A, real_B = batch["A"], batch["B"]
        opt_g, opt_d = self.optimizers()
        out = self.cycle(real_A, real_B)

        def g_step():
            with self.toggled_optimizer(opt_g):
                g = self.generator_losses(real_A, real_B, out)
                self.step(opt_g, g["loss_G"])
            return g

        def d_step():
            with self.toggled_optimizer(opt_d):
                d = self.discriminator_losses(real_A, real_B, out["fake_A"], out["fake_B"])
                self.step(opt_d, d["loss_D"])
            return d

        if self.hparams.order == "g_first":
            g = g_step()
            d = d_step()
        else:
            d = d_step()
            g = g_step()
        losses = {f"train/{k}": v.detach() for k, v in {**g, **d}.items()}
        self.log("train/loss_G", losses.pop("train/loss_G"), prog_bar=True)
        self.log_dict(losses)

    # ----- exact resume: the pools are training state ----------------------------------------------
    def checkpoint_extras(self) -> dict:
        return {"image_pools": {"fake_A": self.fake_A_pool.state_dict(), "fake_B": self.fake_B_pool.state_dict()}}

    def load_checkpoint_extras(self, extras: dict) -> None:
        pools = extras.get("image_pools")
        if pools:
            self.fake_A_pool.load_state_dict(pools["fake_A"], self.device)
            self.fake_B_pool.load_state_dict(pools["fake_B"], self.device)
