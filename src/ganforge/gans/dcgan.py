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

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.utils import make_grid

from ganforge.errors import ConfigError
from ganforge.gans.base import ExportGraph, GANModule, image_io, seeded_normal
from ganforge.imageio import save_atomic, tensor_to_image
from ganforge.losses import GANLoss
from ganforge.nets.export import ImageToImage, batch_stats_copy, eval_copy

#: what the paired models log and this one cannot (no target image)
PAIRED_ONLY_KEYS = ("val/psnr", "val/ssim", "val/l1")

#: columns of the training sample grid: each grid row shows this many samples from the fixed noise
GRID_COLUMNS = 4


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation (White 2016, "Sampling Generative Networks"): the path keeps the norm
    a Gaussian latent typically has, where the linear midpoint is unusually short."""
    a, b = z0.flatten(), z1.flatten()
    omega = torch.arccos((a / a.norm()).dot(b / b.norm()).clamp(-1, 1))
    if omega.abs() < 1e-6:
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


class DCGAN(GANModule):
    needs_input = False

    def __init__(
        self,
        netG: nn.Module,
        netD: nn.Module,
        optimizer_g: Callable[..., torch.optim.Optimizer],
        optimizer_d: Callable[..., torch.optim.Optimizer],
        scheduler: Mapping[str, Any] | None = None,
        gan_mode: str = "vanilla",
        num_fixed_noise: int = 64,
        swd_patch_size: int = 7,
        sample_batch_stats: bool = False,
        fixed_noise_forward_every: int | None = 100,
    ):
        super().__init__(scheduler=scheduler)
        self.save_hyperparameters(ignore=["netG", "netD"], logger=False)
        self.netG, self.netD = netG, netD
        self.nz = netG.nz
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

    def configure_optimizers(self):
        return self.optimizers_for(
            self.hparams.optimizer_g(params=self.netG.parameters()),
            self.hparams.optimizer_d(params=self.netD.parameters()),
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

    # ----- sampling -------------------------------------------------------------------------------
    def sample(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) without gradient. With `sample_batch_stats` (main.py, which never calls netG.eval()) BatchNorm
        normalises by the statistics of the batch of latents (restored after); else eval() and the running
        statistics, which fit the trained G's weights but not an EMA of them."""
        with self.inference(self.netG, train_mode=self.hparams.sample_batch_stats):
            return self.netG(z.to(self.device))

    def metric_protocol(self) -> dict[str, Any]:
        if self.hparams.sample_batch_stats:
            return {"generator_mode": "train", "per_sample": False, "batchnorm": "statistics of each batch of latents (main.py)"}
        return {"generator_mode": "eval", "per_sample": False, "batchnorm": "running statistics"}

    def grid_rows(self, batch) -> dict[str, torch.Tensor]:
        """real | GRID_COLUMNS samples from the fixed noise, one grid row per real image."""
        n = min(len(batch["real"]), len(self.fixed_noise) // GRID_COLUMNS)
        rows = {"real": batch["real"][:n]}
        for j in range(GRID_COLUMNS):
            rows[f"sample_{j}"] = self.sample(self.fixed_noise[j * n:(j + 1) * n])
        return rows

    def metric_batch(self, batch, direction: str = "AtoB") -> dict[str, torch.Tensor]:
        """As many samples as real images (the metrics callback seeds the stream), and those images."""
        return {"fake": self.sample(self.noise(len(batch["real"]))), "real": batch["real"]}

    def predict_samples(self, opts: Mapping, out_dir: Path) -> list[Path]:
        """`num_samples` images from seed `seed` (sample_NNNN.png) and their grid (grid.png, unless
        grid=false); with interp=<seed2>, interp_steps images from z(seed) to z(seed2), linearly
        (interp_linear.png) and along the sphere (interp_slerp.png)."""
        n, seed = int(opts.get("num_samples") or 0), int(opts.get("seed") or 0)
        if n < 1:
            raise ConfigError(f"num_samples must be >= 1, got {opts.get('num_samples')}")
        samples = self.sample(seeded_normal((n, self.nz, 1, 1), seed)).cpu()
        written = []
        for i, x in enumerate(samples):
            written.append(save_atomic(tensor_to_image(x), out_dir / f"sample_{i:04d}.png"))
        if opts.get("grid", True):
            grid = make_grid(samples, nrow=math.ceil(math.sqrt(n)), padding=2, pad_value=1.0)
            written.append(save_atomic(tensor_to_image(grid), out_dir / "grid.png"))
        if opts.get("interp") is not None:
            steps = int(opts.get("interp_steps") or 8)
            if steps < 2:
                raise ConfigError(f"interp_steps must be >= 2, got {steps}")
            z0 = seeded_normal((1, self.nz, 1, 1), seed)
            z1 = seeded_normal((1, self.nz, 1, 1), int(opts["interp"]))
            ts = [i / (steps - 1) for i in range(steps)]
            for name, path_fn in (("linear", lambda t: (1 - t) * z0 + t * z1), ("slerp", lambda t: slerp(z0, z1, t))):
                strip = self.sample(torch.cat([path_fn(t) for t in ts])).cpu()
                written.append(save_atomic(tensor_to_image(make_grid(strip, nrow=steps, padding=2, pad_value=1.0)),
                                           out_dir / f"interp_{name}.png"))
        return written

    # ----- export: G(z) ---------------------------------------------------------------------------
    def export_graphs(self, opts) -> list[ExportGraph]:
        """G(z) in the mode `sample` uses (eval, or with sample_batch_stats BatchNorm on the batch's statistics)."""
        net = batch_stats_copy(self.netG) if self.hparams.sample_batch_stats else eval_copy(self.netG)
        with torch.no_grad():
            probe = eval_copy(self.netG)(torch.zeros(1, self.nz, 1, 1))  # the output's channels and side
        channels, side = probe.shape[1], probe.shape[-1]
        return [ExportGraph(
            name="G", module=ImageToImage(net), example_inputs=(torch.randn(2, self.nz, 1, 1),),
            inputs=[{"name": "z", "kind": "z", "shape": ["batch", self.nz, 1, 1], "dtype": "float32", "distribution": "N(0, 1)"}],
            output=image_io("image", int(channels), int(side), dynamic_hw=False),
            dynamic={"z": {0: "batch"}, "image": {0: "batch"}},
            meta={"generator_mode": self.metric_protocol()["generator_mode"], "batchnorm": self.metric_protocol()["batchnorm"]},
        )]
