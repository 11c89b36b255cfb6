"""The seed's DCGAN: the Keras GAN of Chollet, *Deep Learning with Python* (2017) §8.5, trained on the
CIFAR-10 frogs (model=dcgan_seed; nets in ganforge.nets.dcgan).

Each iteration, as the book's loop: G makes a batch from fresh latents (`generator.predict`, no
gradient); D takes one step on generated and real images concatenated into one batch, with the
labels generated = 1 and real = 0, each plus 0.05 * U[0, 1) of noise; then the GAN step on new latents
with "misleading" targets 0 (real), through a D whose weights stay frozen but whose dropout is on
(Keras' `train_on_batch`). Both optimizers are Keras' RMSprop with clipvalue 1.0 and decay 1e-8.

The book scales images to [0, 1] (x / 255) while G ends in tanh, so G spends half its range on values
no real image has. By default ganforge keeps its [-1, 1] images (the fix); `seed_data_range=true`
feeds D reals in [0, 1] as the book does (G's samples are then read as [0, 1] images).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganforge.gans.base import closure_loss
from ganforge.gans.dcgan import DCGAN
from ganforge.utils.errors import ConfigError


class KerasRMSprop(torch.optim.RMSprop):
    """`keras.optimizers.RMSprop` of Keras 2.0.8 (the book's notebook ran it): rho 0.9 and epsilon 1e-8
    outside the square root (torch's RMSprop with alpha=rho, eps=epsilon, the same update; later Keras 2 releases
    default to 1e-7 there, Keras 3 puts it inside the root); each gradient clipped to
    [-clipvalue, clipvalue] first; the LR of update t (from 0) is lr / (1 + decay * t). The update
    count lives in the param group, so it is in the optimizer's state_dict and survives a resume; an
    LR scheduler still sets `lr`, which the decay divides."""

    def __init__(
        self, params, lr: float = 1e-3, rho: float = 0.9, epsilon: float = 1e-8, decay: float = 0.0, clipvalue: float | None = None
    ):
        if decay < 0 or (clipvalue is not None and clipvalue <= 0):
            raise ConfigError(f"KerasRMSprop needs decay >= 0 and clipvalue > 0 (or null); got decay={decay}, clipvalue={clipvalue}")
        super().__init__(params, lr=lr, alpha=rho, eps=epsilon)
        for group in self.param_groups:
            group.update(decay=decay, clipvalue=clipvalue, iterations=0)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        lrs = []
        for group in self.param_groups:
            if group["clipvalue"] is not None:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.clamp_(-group["clipvalue"], group["clipvalue"])
            lrs.append(group["lr"])
            group["lr"] = group["lr"] / (1.0 + group["decay"] * group["iterations"])
        super().step()
        for group, lr in zip(self.param_groups, lrs):
            group["lr"] = lr
            group["iterations"] += 1
        return loss


class KerasDCGAN(DCGAN):
    model_name = "dcgan_seed"  # seed_data_range: G draws in [0, 1] (the inference model's unit_output)

    def __init__(self, label_noise: float = 0.05, seed_data_range: bool = False, **dcgan_options):
        super().__init__(**dcgan_options)

    def to_model_range(self, real: torch.Tensor) -> torch.Tensor:
        """ganforge's [-1, 1] images as D sees them: as they are, or the book's [0, 1]."""
        return (real + 1) / 2 if self.hparams.seed_data_range else real

    def discriminator_losses(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        images = torch.cat([fake.detach(), real])  # the book's np.concatenate([generated_images, real_images])
        labels = torch.cat([torch.ones(len(fake)), torch.zeros(len(real))]).to(images)
        labels = labels + self.hparams.label_noise * torch.rand_like(labels)
        return {"loss_D": F.binary_cross_entropy_with_logits(self.netD(images), labels)}

    def generator_losses(self, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.netD(fake)
        return {"loss_G": F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))}

    def training_step(self, batch, batch_idx):
        real = self.to_model_range(batch["real"])
        opt_g, opt_d = self.optimizers()
        with torch.no_grad():
            generated = self.netG(self.noise(len(real)))
        with self.toggled_optimizer(opt_d):
            d = self.discriminator_losses(real, generated)
            self.step(opt_d, d["loss_D"])
        with self.toggled_optimizer(opt_g):
            g = self.generator_losses(self.netG(self.noise(len(real))))  # new latents, as the book
            self.step(opt_g, g["loss_G"])
        self.log("train/loss_D", d["loss_D"].detach(), prog_bar=True)
        self.log("train/loss_G", g["loss_G"].detach(), prog_bar=True)
