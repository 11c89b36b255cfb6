"""pix2pix (Isola et al., 2017): image-to-image translation with a conditional GAN.

G: U-Net A -> B.  D: PatchGAN on concat(A, B).  Loss: GAN + lambda_l1 * L1.  No image pool.
Each iteration: forward, then the D step (fake detached, then real), then the G step with D frozen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import ConfigError
from ganforge.gans.base import ExportGraph, image_io
from ganforge.gans.paired import PairedGAN
from ganforge.losses import GANLoss, gradient_penalty
from ganforge.nets.export import DropoutGate, ImageToImage, eval_copy, has_dropout, reference_test_copy

#: export modes of G (ganforge-export generator_mode=...)
EXPORT_MODES = ("train", "eval")


class Pix2Pix(PairedGAN):
    #: outputs have a ground truth: LPIPS/PSNR/SSIM apply (metric protocol, ganforge.metrics.registry)
    metric_paired = True

    def __init__(
        self,
        netG: nn.Module,
        netD: nn.Module,
        optimizer_g: Callable[..., torch.optim.Optimizer],
        optimizer_d: Callable[..., torch.optim.Optimizer],
        scheduler: Mapping[str, Any] | None = None,
        gan_mode: str = "vanilla",
        lambda_l1: float = 100.0,
        lambda_gp: float = 0.0,
        test_dropout: bool = True,
    ):
        super().__init__(scheduler=scheduler)
        self.save_hyperparameters(ignore=["netG", "netD"], logger=False)
        self.netG, self.netD = netG, netD
        self.criterion_gan = GANLoss(gan_mode)

    def configure_optimizers(self):
        return self.optimizers_for(
            self.hparams.optimizer_g(params=self.netG.parameters()),
            self.hparams.optimizer_d(params=self.netD.parameters()),
        )

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

    # ----- inference ------------------------------------------------------------------------------
    def translate(self, real_A: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        """G(A). In train mode each image goes through G alone, as in the reference test.py (batch
        size 1): BatchNorm normalises it by its own statistics, so an output does not depend on the
        images batched with it, and dropout draws its masks image after image, so a seeded run gives
        the same outputs whatever the loader's batch size."""
        # Train mode as the paper and the reference test.py (dropout on, BatchNorm on the test
        # image's statistics); `test_dropout=false` uses eval() instead.
        with self.inference(self.netG, train_mode=self.hparams.test_dropout):
            if self.hparams.test_dropout:
                return torch.cat([self.netG(x) for x in real_A.split(1)])
            return self.netG(real_A)

    def metric_protocol(self) -> dict[str, Any]:
        if self.hparams.test_dropout:
            return {"generator_mode": "train", "per_sample": True, "dropout": True,
                    "batchnorm": "statistics of each image alone (reference test.py, batch size 1)"}
        return {"generator_mode": "eval", "per_sample": False, "dropout": False, "batchnorm": "running statistics"}

    def validation_output(self, batch) -> torch.Tensor:
        return self.translate(batch["A"])

    def metric_batch(self, batch, direction: str = "AtoB") -> dict[str, torch.Tensor]:
        """Generated images and their targets for FID & co. (metric protocol)."""
        return {"fake": self.translate(batch["A"]), "real": batch["B"]}

    def grid_rows(self, batch) -> dict[str, torch.Tensor]:
        """Rows of the sample grid: input | output | target."""
        return {"input": batch["A"], "output": self.translate(batch["A"]), "target": batch["B"]}

    # ----- export ---------------------------------------------------------------------------------
    def export_graphs(self, opts: Mapping) -> list[ExportGraph]:
        """G in the mode predict runs it: `generator_mode=train` (the default when test_dropout is on,
        as the reference test.py) normalises each image by its own statistics and adds a `dropout` input
        (1: the reference's random dropout, 0: none); `eval` uses the running statistics, no dropout."""
        mode = opts.get("generator_mode") or ("train" if self.hparams.test_dropout else "eval")
        if mode not in EXPORT_MODES:
            raise ConfigError(f"generator_mode must be one of {EXPORT_MODES}, got {mode!r}")
        in_nc, side = self.predict_input_nc(opts), int(opts.get("size") or self.export_side())
        out_nc = int((self.run_config or {}).get("data", {}).get("output_nc", 3))
        gate = DropoutGate() if mode == "train" and has_dropout(self.netG) else None
        net = reference_test_copy(self.netG, DropoutGate() if gate is None else gate) if mode == "train" else eval_copy(self.netG)
        inputs = [image_io("image", in_nc, side, dynamic_hw=True)]
        example = (torch.rand(1, in_nc, side, side) * 2 - 1,)
        if gate is not None:
            inputs.append({"name": "dropout", "kind": "flag", "shape": [], "dtype": "float32", "default": 1.0,
                           "meaning": "1: dropout as the reference test.py (random masks), 0: no dropout"})
            example += (torch.tensor(1.0),)
        direction = self.predict_direction(opts)
        return [ExportGraph(
            name=direction, module=ImageToImage(net, gate), example_inputs=example, inputs=inputs,
            output=image_io("output", out_nc, side, dynamic_hw=True),
            dynamic={"image": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "height", 3: "width"}},
            meta={"direction": direction, "generator_mode": mode,
                  "batchnorm": "each image's own statistics" if mode == "train" else "running statistics"},
        )]
