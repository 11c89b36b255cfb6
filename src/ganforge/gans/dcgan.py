"""DCGAN (Radford et al. 2016): images from noise, as pytorch/examples `dcgan/main.py` trains it.

z ~ N(0, 1) of `nz` channels at 1x1. Each iteration, in the reference order: G(z) once; the D step on
the real batch (target 1) and on the detached fake (target 0), each BCE loss backpropagated on its own
(errD = errD_real + errD_fake is what is logged); then the G step with the non-saturating loss
BCE(D(G(z)), 1) on the same fake; then, every `fixed_noise_forward_every` batches of an epoch, G on the
fixed noise in train mode, as main.py does for its sample grid (BatchNorm's running statistics count that
batch). The LR stays constant (main.py has no schedule; the config's linear policy has no decay epochs).

Batches are {"real": images in [-1, 1]} (ganforge.data.image_folder and torchvision_sets).
"""

from __future__ import annotations

from typing import Any

import torch

from ganforge.gans.generator_discriminator import GeneratorDiscriminatorGAN
from ganforge.gans.losses import GANLoss
from ganforge.utils.errors import ConfigError

#: what the paired models log and this one cannot (no target image)
PAIRED_ONLY_KEYS = ("val/psnr", "val/ssim", "val/l1")

#: columns of the training sample grid: each grid row shows this many samples from the fixed noise
GRID_COLUMNS = 4


class DCGAN(GeneratorDiscriminatorGAN):
    model_name = "dcgan"

    def __init__(
        self,
        gan_mode: str = "vanilla",
        num_fixed_noise: int = 64,
        swd_patch_size: int = 7,
        sample_batch_stats: bool = False,
        fixed_noise_forward_every: int | None = 100,
        **nets_and_optimizers: Any,  # netG, netD, optimizer_g, optimizer_d, scheduler (GeneratorDiscriminatorGAN)
    ):
        super().__init__(**nets_and_optimizers)
        self.nz = self.netG.nz
        self.criterion_gan = GANLoss(gan_mode)
        # main.py's fixed_noise: the grids show the same latents all run long (and after a resume).
        self.register_buffer("fixed_noise", torch.randn(num_fixed_noise, self.nz, 1, 1))

    def setup(self, stage: str) -> None:
        # Lightning would stop at the first epoch end with a traceback: say it before training.
        for cb in self.trainer.checkpoint_callbacks if self._trainer is not None else ():
            if getattr(cb, "monitor", None) in PAIRED_ONLY_KEYS:
                raise ConfigError(
                    f"callbacks.model_checkpoint monitors {cb.monitor}, which {type(self).__name__} cannot log (it has no "
                    "target image). Set callbacks.model_checkpoint.monitor=val/swd (or callbacks=unconditional_metrics for val/fid)"
                )

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.nz, 1, 1, generator=generator).to(self.device)

    # ----- the reference's objective, one phase a method ---------------------------------------
    def discriminator_losses(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        loss_real = self.criterion_gan(self.netD(real), True)  # main.py: real first, then the fake
        loss_fake = self.criterion_gan(self.netD(fake.detach()), False)
        return {"loss_D_real": loss_real, "loss_D_fake": loss_fake, "loss_D": loss_real + loss_fake}

    def generator_losses(self, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        # Non-saturating: G maximises log D(G(z)) ("fake labels are real for generator cost").
        return {"loss_G": self.criterion_gan(self.netD(fake), True, for_discriminator=False)}

    def training_step(self, batch, batch_idx):
        real = batch["real"]
        opt_g, opt_d = self.optimizers()
        fake = self.netG(self.noise(len(real)))
        with self.toggled_optimizer(opt_d):
            d = self.discriminator_losses(real, fake)
            self.step(opt_d, d["loss_D_real"], d["loss_D_fake"])
        with self.toggled_optimizer(opt_g):
            g = self.generator_losses(fake)
            self.step(opt_g, g["loss_G"])
        every = self.hparams.fixed_noise_forward_every
        if every and batch_idx % every == 0:
            with torch.no_grad():  # main.py: `fake = netG(fixed_noise)` for its image, G in train mode
                self.netG(self.fixed_noise)
        self.log("train/loss_D", d.pop("loss_D").detach(), prog_bar=True)
        self.log("train/loss_G", g.pop("loss_G").detach(), prog_bar=True)
        self.log_dict({f"train/{k}": v.detach() for k, v in d.items()})

    # ----- validation: patch SWD against held-out images (no pretrained weights) ----------------
    def validation_step(self, batch, batch_idx):
        real = batch["real"]
        # Seeded by the batch index: every validation draws the same latents, so epochs compare.
        z = self.noise(len(real), torch.Generator().manual_seed(batch_idx))
        self.collect_for_swd(self.sample(z), real)

    # ----- sampling: the inference model around G ---------------------------------------------------
    def sample(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) in [-1, 1] without gradient, in the inference model's mode (see DCGANModel)."""
        return self.inference_model().generate(z)

    def grid_rows(self, batch) -> dict[str, torch.Tensor]:
        """real | GRID_COLUMNS samples from the fixed noise, one grid row per real image."""
        n = min(len(batch["real"]), len(self.fixed_noise) // GRID_COLUMNS)
        rows = {"real": batch["real"][:n]}
        for j in range(GRID_COLUMNS):
            rows[f"sample_{j}"] = self.sample(self.fixed_noise[j * n : (j + 1) * n])
        return rows
