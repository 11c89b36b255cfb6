"""What a GAN of one generator and one discriminator, each with its own optimizer, shares (DCGAN, pix2pix, SPADE)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ganforge.gans.base import GANModule


class GeneratorDiscriminatorGAN(GANModule):
    """`netG` with `optimizer_g` and `netD` with `optimizer_d`, under the configured LR schedule.

    Subclasses take their own arguments and pass these on by name (`**nets_and_optimizers`); their own are
    saved as hyper-parameters too (Lightning walks the __init__ frames)."""

    #: the constructor's arguments that are nets (the module's children, not hyper-parameters)
    net_arguments: tuple[str, ...] = ("netG", "netD")

    def __init__(
        self,
        netG: nn.Module,
        netD: nn.Module,
        optimizer_g: Callable[..., torch.optim.Optimizer],
        optimizer_d: Callable[..., torch.optim.Optimizer],
        scheduler: Mapping[str, Any] | None = None,
    ):
        super().__init__(scheduler=scheduler)
        self.save_hyperparameters(ignore=list(self.net_arguments), logger=False)
        self.netG, self.netD = netG, netD

    def configure_optimizers(self):
        return self.optimizers_for(
            self.hparams.optimizer_g(params=self.netG.parameters()),
            self.hparams.optimizer_d(params=self.netD.parameters()),
        )
