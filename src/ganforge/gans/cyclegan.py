"""CycleGAN (Zhu et al., 2017): unpaired translation with two generators and a cycle loss.

G_A: A -> B, G_B: B -> A; D_A judges B images (real B vs G_A(A)), D_B judges A images.
Loss: LSGAN + lambda_A * |G_B(G_A(A)) - A| + lambda_B * |G_A(G_B(B)) - B| + identity terms
(lambda_identity * lambda: |G_A(B) - B| and |G_B(A) - A|). D trains on fakes from a 50-image pool.
One Adam for both Gs, one for both Ds. Each iteration (reference order, `order: g_first`):
forward, the G step with the Ds frozen, then D_A and D_B on pooled fakes in one D step.
The seed article's variant (`order: d_first`, model=cyclegan_seed) steps D_X, D_Y, then both Gs.

`UnpairedGAN` holds what the two-domain models share (CycleGAN, DiscoGAN, DualGAN): validation
by the cycle, the sample grid, and inference in both directions for ganforge-predict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image import PeakSignalNoiseRatio

from ganforge.errors import ConfigError
from ganforge.gans.base import GANModule
from ganforge.losses import GANLoss
from ganforge.utils.image_pool import ImagePool

ORDERS = ("g_first", "d_first")
DIRECTIONS = ("AtoB", "BtoA")


class UnpairedGAN(GANModule):
    """Two generators (G_A: A -> B, G_B: B -> A) and two discriminators (D_A on B, D_B on A)."""

    net_names = ("netG_A", "netG_B", "netD_A", "netD_B")

    def __init__(self, netG_A: nn.Module, netG_B: nn.Module, netD_A: nn.Module, netD_B: nn.Module,
                 scheduler: Mapping[str, Any] | None = None):
        super().__init__(scheduler=scheduler)
        self.netG_A, self.netG_B, self.netD_A, self.netD_B = netG_A, netG_B, netD_A, netD_B
        # val/psnr is the PSNR of the cycle reconstructions (A -> B -> A and B -> A -> B): unpaired data
        # has no target for a translation, and the checkpoint callback monitors val/psnr.
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)

    @property
    def input_size_multiple(self) -> int:
        return max(getattr(self.netG_A, "size_multiple", 1), getattr(self.netG_B, "size_multiple", 1))

    def generators_and_discriminators(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        g = [*self.netG_A.parameters(), *self.netG_B.parameters()]
        return g, [*self.netD_A.parameters(), *self.netD_B.parameters()]

    def cycle(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        fake_B = self.netG_A(real_A)
        fake_A = self.netG_B(real_B)
        return {"fake_B": fake_B, "rec_A": self.netG_B(fake_B), "fake_A": fake_A, "rec_B": self.netG_A(fake_A)}

    # ----- evaluation and inference: generators in eval mode (BatchNorm on running statistics) -----
    @torch.no_grad()
    def _eval(self, fn: Callable[[], Any]) -> Any:
        modes = (self.netG_A.training, self.netG_B.training)
        self.netG_A.eval()
        self.netG_B.eval()
        try:
            return fn()
        finally:
            self.netG_A.train(modes[0])
            self.netG_B.train(modes[1])

    def translate(self, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        return self._eval(lambda: (self.netG_A if direction == "AtoB" else self.netG_B)(x))

    def validation_step(self, batch, batch_idx):
        real_A, real_B = batch["A"], batch["B"]
        out = self._eval(lambda: self.cycle(real_A, real_B))
        rec = torch.cat([out["rec_A"].flatten(1), out["rec_B"].flatten(1)], 1).float()
        real = torch.cat([real_A.flatten(1), real_B.flatten(1)], 1).float()
        self.val_psnr((rec + 1) / 2, (real + 1) / 2)
        self.log("val/cycle_l1", F.l1_loss(rec, real), sync_dist=True, batch_size=len(real_A))
        self.log("val/psnr", self.val_psnr, prog_bar=True)

    def grid_rows(self, batch) -> dict[str, torch.Tensor]:
        """One grid row per sample: real_A | fake_B | rec_A | real_B | fake_A | rec_B."""
        out = self._eval(lambda: self.cycle(batch["A"], batch["B"]))
        return {"real_A": batch["A"], "fake_B": out["fake_B"], "rec_A": out["rec_A"],
                "real_B": batch["B"], "fake_A": out["fake_A"], "rec_B": out["rec_B"]}

    metric_directions = DIRECTIONS

    def metric_batch(self, batch, direction: str = "AtoB") -> dict[str, torch.Tensor]:
        """For FID, KID, IS: translations in `direction` vs the real images of the target domain
        (A -> B against real B, B -> A against real A). Unpaired: fake[i] and real[i] differ in content."""
        if direction == "AtoB":
            return {"fake": self.translate(batch["A"], "AtoB"), "real": batch["B"]}
        return {"fake": self.translate(batch["B"], "BtoA"), "real": batch["A"]}

    # ----- ganforge-predict: direction=AtoB|BtoA, reconstruct=true adds <stem>_rec.png -------------
    def predict_direction(self, opts) -> str:
        direction = opts.get("direction") or "AtoB"
        if direction not in DIRECTIONS:
            raise ConfigError(f"direction must be AtoB or BtoA, got {direction!r}")
        return direction

    def predict_input_nc(self, opts) -> int:
        data = (self.run_config or {}).get("data", {})
        key = "input_nc" if self.predict_direction(opts) == "AtoB" else "output_nc"
        return int(data.get(key, 3))

    def predict_outputs(self, x: torch.Tensor, opts) -> dict[str, torch.Tensor]:
        forward = self.predict_direction(opts)
        out = {"": self.translate(x, forward)}
        if opts.get("reconstruct"):
            out["_rec"] = self.translate(out[""], "BtoA" if forward == "AtoB" else "AtoB")
        return out


def image_channels(net: nn.Module) -> tuple[int, int]:
    """(input, output) channels of an image-to-image net: its first conv's input, its last conv's output."""
    convs = [m for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    return convs[0].in_channels, convs[-1].out_channels


class CycleGAN(UnpairedGAN):
    def __init__(
        self,
        netG_A: nn.Module,
        netG_B: nn.Module,
        netD_A: nn.Module,
        netD_B: nn.Module,
        optimizer_g: Callable[..., torch.optim.Optimizer],
        optimizer_d: Callable[..., torch.optim.Optimizer],
        scheduler: Mapping[str, Any] | None = None,
        gan_mode: str = "lsgan",
        lambda_A: float = 10.0,
        lambda_B: float = 10.0,
        lambda_identity: float = 0.5,
        pool_size: int = 50,
        order: str = "g_first",
    ):
        super().__init__(netG_A, netG_B, netD_A, netD_B, scheduler=scheduler)
        if order not in ORDERS:
            raise ConfigError(f"model.order must be one of {ORDERS}, got {order!r}")
        in_nc, out_nc = image_channels(netG_A)
        if lambda_identity > 0 and in_nc != out_nc:
            # The identity terms feed B images to G_A (and A images to G_B); the reference asserts
            # input_nc == output_nc in that case (cycle_gan_model.py __init__).
            raise ConfigError(
                f"model.lambda_identity={lambda_identity} needs as many channels in A as in B, but "
                f"data.input_nc={in_nc} and data.output_nc={out_nc}; set model.lambda_identity=0 or equal channel counts"
            )
        self.save_hyperparameters(ignore=list(self.net_names), logger=False)
        self.criterion_gan = GANLoss(gan_mode)
        self.fake_A_pool, self.fake_B_pool = ImagePool(pool_size), ImagePool(pool_size)

    def configure_optimizers(self):
        g, d = self.generators_and_discriminators()
        return self.optimizers_for(self.hparams.optimizer_g(params=g), self.hparams.optimizer_d(params=d))

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
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["image_pools"] = {"fake_A": self.fake_A_pool.state_dict(), "fake_B": self.fake_B_pool.state_dict()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        pools = checkpoint.get("image_pools")
        if pools:
            self.fake_A_pool.load_state_dict(pools["fake_A"], self.device)
            self.fake_B_pool.load_state_dict(pools["fake_B"], self.device)
