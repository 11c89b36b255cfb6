"""What the two-domain models share (CycleGAN, DiscoGAN, DualGAN): G_A: A -> B and G_B: B -> A,
D_A judging B images and D_B judging A images, one optimizer for both Gs and one for both Ds;
validation by the cycle, the sample grid, and inference in both directions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image import PeakSignalNoiseRatio

from ganforge.gans.base import DIRECTIONS, GANModule
from ganforge.models.base import running

NETS = ("netG_A", "netG_B", "netD_A", "netD_B")


class TwoDomainGAN(GANModule):
    """Two generators (G_A: A -> B, G_B: B -> A) and two discriminators (D_A on B, D_B on A)."""

    directions = DIRECTIONS
    generator_names = ("netG_A", "netG_B")

    def __init__(
        self,
        netG_A: nn.Module,
        netG_B: nn.Module,
        netD_A: nn.Module,
        netD_B: nn.Module,
        optimizer_g: Callable[..., torch.optim.Optimizer],
        optimizer_d: Callable[..., torch.optim.Optimizer],
        scheduler: Mapping[str, Any] | None = None,
    ):
        super().__init__(scheduler=scheduler)
        # The subclasses' own arguments are collected too (Lightning walks the __init__ frames).
        self.save_hyperparameters(ignore=list(NETS), logger=False)
        self.netG_A, self.netG_B, self.netD_A, self.netD_B = netG_A, netG_B, netD_A, netD_B
        # val/psnr is the PSNR of the cycle reconstructions (A -> B -> A and B -> A -> B): unpaired data
        # has no target for a translation, and the checkpoint callback monitors val/psnr.
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)

    @property
    def input_size_multiple(self) -> int:
        return max(self.netG_A.size_multiple, self.netG_B.size_multiple)

    def configure_optimizers(self):
        g = [*self.netG_A.parameters(), *self.netG_B.parameters()]
        d = [*self.netD_A.parameters(), *self.netD_B.parameters()]
        return self.optimizers_for(self.hparams.optimizer_g(params=g), self.hparams.optimizer_d(params=d))

    def cycle(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        fake_B = self.netG_A(real_A)
        fake_A = self.netG_B(real_B)
        return {"fake_B": fake_B, "rec_A": self.netG_B(fake_B), "fake_A": fake_A, "rec_B": self.netG_A(fake_A)}

    # ----- evaluation and inference: generators in eval mode (BatchNorm on running statistics) -----
    def validation_step(self, batch, batch_idx):
        real_A, real_B = batch["A"], batch["B"]
        with running(self.netG_A, self.netG_B):
            out = self.cycle(real_A, real_B)
        rec = torch.cat([out["rec_A"].flatten(1), out["rec_B"].flatten(1)], 1).float()
        real = torch.cat([real_A.flatten(1), real_B.flatten(1)], 1).float()
        self.val_psnr((rec + 1) / 2, (real + 1) / 2)
        self.log("val/cycle_l1", F.l1_loss(rec, real), sync_dist=True, batch_size=len(real_A))
        self.log("val/psnr", self.val_psnr, prog_bar=True)

    def grid_rows(self, batch) -> dict[str, torch.Tensor]:
        """One grid row per sample: real_A | fake_B | rec_A | real_B | fake_A | rec_B."""
        with running(self.netG_A, self.netG_B):
            out = self.cycle(batch["A"], batch["B"])
        return {
            "real_A": batch["A"],
            "fake_B": out["fake_B"],
            "rec_A": out["rec_A"],
            "real_B": batch["B"],
            "fake_A": out["fake_A"],
            "rec_B": out["rec_B"],
        }
