"""What the paired translation models (pix2pix, BicycleGAN) share: a U-Net G(A) -> B whose output
has a target, validated by L1, PSNR and SSIM against it."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ganforge.gans.base import GANModule


class PairedGAN(GANModule):
    """Subclasses set `self.netG` and say which output validation compares with the target."""

    def __init__(self, **nets_and_optimizers: Any):
        # passed on: to GANModule (the scheduler), or through a base class that also holds the nets (pix2pix)
        super().__init__(**nets_and_optimizers)
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)

    @property
    def input_size_multiple(self) -> int:
        return self.netG.size_multiple

    @abstractmethod
    def validation_output(self, batch: dict) -> torch.Tensor:
        """The output for batch["A"] that has batch["B"] as its target (in inference mode)."""

    def validation_step(self, batch, batch_idx):
        fake_B = self.validation_output(batch)
        fake01, real01 = (fake_B.float() + 1) / 2, (batch["B"].float() + 1) / 2
        self.val_psnr(fake01, real01)
        self.val_ssim(fake01, real01)
        self.log("val/l1", F.l1_loss(fake_B.float(), batch["B"].float()), sync_dist=True, batch_size=len(fake_B))
        self.log("val/psnr", self.val_psnr, prog_bar=True)
        self.log("val/ssim", self.val_ssim)
