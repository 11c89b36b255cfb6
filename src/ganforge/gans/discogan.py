"""DiscoGAN (Kim et al., 2017): cross-domain relations with two GANs tied by reconstruction.

G_A: A -> B, G_B: B -> A (encoder-decoders without skips); D_A judges B images, D_B judges A
images (4-conv Ds). Per domain the G loss is (0.1 * GAN + 0.9 * feature matching) * (1 - rate),
plus MSE reconstruction * rate; `rate` is 0.01 for the first `gan_curriculum` iterations, then 0.5.
D loss: 0.5 * BCE(real, 1) + 0.5 * BCE(fake, 0) per D (SKTBrain/DiscoGAN `image_translation.py`,
`get_gan_loss`). As the reference, every `d_update_interval`-th iteration (starting with the
first) steps both Ds, the others step both Gs: one optimizer each.

Value range: the reference's nets work on [0, 1] images (`dataset.py` `read_images` divides by
255) and its G ends in a sigmoid. ganforge's data, sample grids, metrics and predict use [-1, 1].
So this module maps [-1, 1] to [0, 1] before the nets and maps G's outputs back after them. Both
maps are affine, so nothing is lost. The nets and the losses (the MSE reconstruction, the Ds'
inputs and features) see the same numbers as the reference's. `cycle` and the inference model speak
[-1, 1] to the framework; `unit_cycle`, `generator_losses` and `discriminator_losses` work in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganforge.gans.losses import GANLoss, feature_matching_loss
from ganforge.gans.two_domain import TwoDomainGAN


def to_unit(x: torch.Tensor) -> torch.Tensor:
    return (x + 1) / 2


def from_unit(x: torch.Tensor) -> torch.Tensor:
    return x * 2 - 1


class DiscoGAN(TwoDomainGAN):
    model_name = "discogan"  # its nets work on [0, 1] images (the inference model's unit_range)

    def __init__(
        self,
        gan_mode: str = "vanilla",
        lambda_gan: float = 0.1,
        lambda_fm: float = 0.9,
        starting_rate: float = 0.01,
        default_rate: float = 0.5,
        gan_curriculum: int = 10000,
        d_update_interval: int = 3,
        **nets_and_optimizers,  # netG_A, netG_B, netD_A, netD_B, optimizer_g, optimizer_d, scheduler (TwoDomainGAN)
    ):
        super().__init__(**nets_and_optimizers)
        self.criterion_gan = GANLoss(gan_mode)
        # Training iterations so far (one per batch); a buffer, so it is checkpointed.
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    def unit_cycle(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        """The nets' cycle on [0, 1] images."""
        return super().cycle(real_A, real_B)

    def cycle(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: from_unit(v) for k, v in self.unit_cycle(to_unit(real_A), to_unit(real_B)).items()}

    def rate(self) -> float:
        """Weight of the reconstruction loss: small while the GAN terms get started."""
        hp = self.hparams
        return hp.starting_rate if int(self.iteration) < hp.gan_curriculum else hp.default_rate

    def generator_losses(self, real_A, real_B, out) -> dict[str, torch.Tensor]:
        """Images and `unit_cycle` outputs in [0, 1]."""
        hp, rate = self.hparams, self.rate()
        g = {}
        # domain B: D_A judges G_A(A); domain A: D_B judges G_B(B)
        for name, netD, real, fake, rec, orig in (
            ("B", self.netD_A, real_B, out["fake_B"], out["rec_A"], real_A),
            ("A", self.netD_B, real_A, out["fake_A"], out["rec_B"], real_B),
        ):
            fake_feats = netD.features(fake)
            gan = self.criterion_gan(fake_feats[-1], True, for_discriminator=False)
            fm = feature_matching_loss([fake_feats], [netD.features(real)], statistic="batch_mean_mse")
            g[f"loss_G_{name}"] = (hp.lambda_gan * gan + hp.lambda_fm * fm) * (1 - rate)
            g[f"loss_rec_{'A' if name == 'B' else 'B'}"] = F.mse_loss(rec, orig) * rate
        g["loss_G"] = sum(g.values())
        return g

    def discriminator_losses(self, real_A, real_B, fake_A, fake_B) -> dict[str, torch.Tensor]:
        """Images in [0, 1]."""
        c = self.criterion_gan
        d_A = 0.5 * c(self.netD_A(real_B), True) + 0.5 * c(self.netD_A(fake_B.detach()), False)
        d_B = 0.5 * c(self.netD_B(real_A), True) + 0.5 * c(self.netD_B(fake_A.detach()), False)
        return {"loss_D_A": d_A, "loss_D_B": d_B, "loss_D": d_A + d_B}

    def training_step(self, batch, batch_idx):
        real_A, real_B = to_unit(batch["A"]), to_unit(batch["B"])
        opt_g, opt_d = self.optimizers()
        if int(self.iteration) % self.hparams.d_update_interval == 0:
            with torch.no_grad():
                fake_B, fake_A = self.netG_A(real_A), self.netG_B(real_B)
            with self.toggled_optimizer(opt_d):
                losses = self.discriminator_losses(real_A, real_B, fake_A, fake_B)
                self.step(opt_d, losses["loss_D"])
        else:
            with self.toggled_optimizer(opt_g):
                losses = self.generator_losses(real_A, real_B, self.unit_cycle(real_A, real_B))
                self.step(opt_g, losses["loss_G"])
        self.iteration += 1
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()})
        self.log("train/rec_rate", self.rate())
