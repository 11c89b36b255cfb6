"""pix2pix (Isola et al., 2017): image-to-image translation with a conditional GAN.

G: U-Net A -> B.  D: PatchGAN on concat(A, B).  Loss: GAN + lambda_l1 * L1.  No image pool.
Each iteration: forward, then the D step (fake detached, then real), then the G step with D frozen.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ganforge.gans.generator_discriminator import GeneratorDiscriminatorGAN
from ganforge.gans.losses import GANLoss, gradient_penalty
from ganforge.gans.paired import PairedGAN


class Pix2Pix(PairedGAN, GeneratorDiscriminatorGAN):
    model_name = "pix2pix"
    #: outputs have a ground truth: LPIPS/PSNR/SSIM apply (metric protocol, ganforge.metrics.registry)
    metric_paired = True

    def __init__(
        self,
        gan_mode: str = "vanilla",
        lambda_l1: float = 100.0,
        lambda_gp: float = 0.0,
        test_dropout: bool = True,
        **nets_and_optimizers: Any,  # netG, netD, optimizer_g, optimizer_d, scheduler (GeneratorDiscriminatorGAN)
    ):
        super().__init__(**nets_and_optimizers)
        self.criterion_gan = GANLoss(gan_mode)

    # ----- the paper's objective, one phase a method ----------------------------------------------
    def discriminator_losses(self, real_A, real_B, fake_B) -> dict[str, torch.Tensor]:
        real_AB, fake_AB = torch.cat([real_A, real_B], 1), torch.cat([real_A, fake_B.detach()], 1)
        losses = self.d_loss(self.criterion_gan, self.netD, real_AB, fake_AB)
        if self.hparams.lambda_gp > 0:  # WGAN-GP (gan_mode=wgangp); the reference recipe uses none
            losses["loss_D_GP"], _ = gradient_penalty(self.netD, real_AB, fake_AB, weight=self.hparams.lambda_gp)
            losses["loss_D"] = losses["loss_D"] + losses["loss_D_GP"]
        return losses

    def generator_losses(self, real_A, real_B, fake_B) -> dict[str, torch.Tensor]:
        loss_gan = self.criterion_gan(self.netD(torch.cat([real_A, fake_B], 1)), True, for_discriminator=False)
        loss_l1 = F.l1_loss(fake_B, real_B) * self.hparams.lambda_l1
        return {"loss_G_GAN": loss_gan, "loss_G_L1": loss_l1, "loss_G": loss_gan + loss_l1}

    def training_step(self, batch, batch_idx):
        real_A, real_B = batch["A"], batch["B"]
        opt_g, opt_d = self.optimizers()
        fake_B = self.netG(real_A)

        with self.toggled_optimizer(opt_d):
            d = self.discriminator_losses(real_A, real_B, fake_B)
            self.step(opt_d, d["loss_D"])
        with self.toggled_optimizer(opt_g):
            g = self.generator_losses(real_A, real_B, fake_B)
            self.step(opt_g, g["loss_G"])

        losses = {f"train/{k}": v.detach() for k, v in {**d, **g}.items()}
        self.log("train/loss_G_L1", losses.pop("train/loss_G_L1"), prog_bar=True)
        self.log_dict(losses)

    # ----- inference: the inference model around netG ---------------------------------------------
    def validation_output(self, batch) -> torch.Tensor:
        return self.inference_model().generate(batch["A"])

    def grid_rows(self, batch) -> dict[str, torch.Tensor]:
        """Rows of the sample grid: input | output | target."""
        return {"input": batch["A"], "output": self.inference_model().generate(batch["A"]), "target": batch["B"]}
