"""BicycleGAN (Zhu et al., 2017): multimodal image-to-image translation.

G(A, z) -> B, with a latent z of size nz tiled over the image. E encodes B into (mu, logvar).
Every batch is split in two halves (reference `bicycle_gan_model.py`):
  * cVAE-GAN:  B1 -> E -> z_enc -> G(A1, z_enc) = fake_enc;  L1(fake_enc, B1), KL(mu, logvar), D(fake_enc)
  * cLR-GAN:   z ~ N(0, 1) -> G(A1, z) = fake_rand -> E -> mu2;  |mu2 - z|,  D2(fake_rand) vs the real B2
As in the reference, both fakes use the first half's A; the second half supplies the real B that
D2 sees (D is unconditional, so D2's real sample is independent of what E encoded).
Each iteration: forward; E+G step (D, D2 frozen) on GAN + GAN2 + L1 + KL, plus the latent loss
into G alone; then D on (B1, fake_enc) and D2 on (B2, fake_rand).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.gans.base import frozen
from ganforge.gans.losses import GANLoss, kl_divergence
from ganforge.gans.paired import PairedGAN
from ganforge.utils.errors import ConfigError

GRID_RANDOM_SAMPLES = 3


class BicycleGAN(PairedGAN):
    model_name = "bicyclegan"
    #: random-z outputs have no per-pixel ground truth, so no PSNR/SSIM/LPIPS against the target
    #: (validation logs the encoded output's val/psnr instead); several outputs per input
    metric_multimodal = True

    def __init__(
        self,
        netG: nn.Module,
        netE: nn.Module,
        netD: nn.Module,
        netD2: nn.Module | None,
        optimizer_g: Callable[..., torch.optim.Optimizer],
        optimizer_e: Callable[..., torch.optim.Optimizer],
        optimizer_d: Callable[..., torch.optim.Optimizer],
        optimizer_d2: Callable[..., torch.optim.Optimizer],
        scheduler: Mapping[str, Any] | None = None,
        nz: int = 8,
        gan_mode: str = "lsgan",
        lambda_l1: float = 10.0,
        lambda_gan: float = 1.0,
        lambda_gan2: float = 1.0,
        lambda_z: float = 0.5,
        lambda_kl: float = 0.01,
        use_same_D: bool = False,
    ):
        super().__init__(scheduler=scheduler)
        self.save_hyperparameters(ignore=["netG", "netE", "netD", "netD2"], logger=False)
        g_nz, e_nz = getattr(netG, "nz", None), getattr(getattr(netE, "fc", None), "out_features", None)
        if g_nz != nz or e_nz != nz:
            raise ConfigError(
                f"model.nz={nz}, but netG takes z of size {g_nz} and netE outputs {e_nz}; "
                "set model.netG.nz and model.netE.output_nc to ${model.nz}"
            )
        self.netG, self.netE, self.netD = netG, netE, netD
        # use_same_D: one D judges both halves (the configured netD2 is not used).
        self.netD2 = None if use_same_D else netD2
        if self.netD2 is None and not use_same_D:
            raise ConfigError("model.netD2 is null: give a second discriminator or set model.use_same_D=true")
        # The reference sums the losses of the two PatchGAN scales.
        self.criterion_gan = GANLoss(gan_mode, scale_reduction="sum")
        #: the train loader's batch size (set at train start); training_step skips other sizes
        self.full_batch_size: int | None = None

    @property
    def netD_random(self) -> nn.Module:
        """The discriminator of the cLR-GAN half."""
        return self.netD if self.netD2 is None else self.netD2

    def configure_optimizers(self):
        hp = self.hparams
        opts = [
            hp.optimizer_g(params=self.netG.parameters()),
            hp.optimizer_e(params=self.netE.parameters()),
            hp.optimizer_d(params=self.netD.parameters()),
        ]
        if self.netD2 is not None:
            opts.append(hp.optimizer_d2(params=self.netD2.parameters()))
        return self.optimizers_for(*opts)

    def on_train_start(self) -> None:
        batch_size = getattr(self.trainer.train_dataloader, "batch_size", None)
        if batch_size is not None and batch_size % 2:
            raise ConfigError(
                f"BicycleGAN splits every batch into a cVAE-GAN half and a cLR-GAN half, so data.batch_size "
                f"must be even; got data.batch_size={batch_size}. The reference uses data.batch_size=2."
            )
        self.full_batch_size = batch_size

    def is_full_batch(self, n: int) -> bool:
        """The reference trains only on batches of the configured size (bicycle_gan_model.py `is_train`:
        `real_A.size(0) == opt.batch_size`), so an epoch's short last batch is skipped, even or odd.
        A loader without a fixed batch size (a batch sampler) gives no size to compare: odd ones are
        skipped then, since the halves must be equal."""
        return n == self.full_batch_size if self.full_batch_size is not None else n % 2 == 0

    # ----- the paper's objective, one phase a method ----------------------------------------------
    def random_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.hparams.nz, generator=generator)
        return z.to(self.device)

    def forward_halves(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        half = real_A.shape[0] // 2
        A1, B1, B2 = real_A[:half], real_B[:half], real_B[half:]
        mu, logvar = self.netE(B1)
        z_enc = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # reparameterization
        z_rand = self.random_z(half)
        return {
            "real_B_encoded": B1,
            "real_B_random": B2,
            "mu": mu,
            "logvar": logvar,
            "z_random": z_rand,
            "fake_B_encoded": self.netG(A1, z_enc),
            "fake_B_random": self.netG(A1, z_rand),
        }

    def encoder_generator_losses(self, f: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hp = self.hparams
        loss_gan = self.criterion_gan(self.netD(f["fake_B_encoded"]), True, for_discriminator=False) * hp.lambda_gan
        loss_gan2 = self.criterion_gan(self.netD_random(f["fake_B_random"]), True, for_discriminator=False) * hp.lambda_gan2
        loss_l1 = F.l1_loss(f["fake_B_encoded"], f["real_B_encoded"]) * hp.lambda_l1
        loss_kl = kl_divergence(f["mu"], f["logvar"]) * hp.lambda_kl
        return {
            "loss_G_GAN": loss_gan,
            "loss_G_GAN2": loss_gan2,
            "loss_G_L1": loss_l1,
            "loss_kl": loss_kl,
            "loss_EG": loss_gan + loss_gan2 + loss_l1 + loss_kl,
        }

    def backward_latent(self, f: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """|E(G(A, z)) - z| into G alone. Optimizing E on it too would let G and E agree on a hidden
        code for z in the image instead of making z produce visible modes (the paper's reason).
        E is frozen before its forward on the fake, so its parameters are not in this graph at all
        (and DDP, which searches the graph for used parameters, expects no gradient from them)."""
        with frozen([self.netE]):
            mu2, _ = self.netE(f["fake_B_random"])  # the mean is the point estimate of z
            loss_z = F.l1_loss(mu2, f["z_random"]) * self.hparams.lambda_z
            self.manual_backward(loss_z)
        return {"loss_z_L1": loss_z}

    def discriminator_losses(self, netD: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        d = self.d_loss(self.criterion_gan, netD, real, fake.detach())
        # The reference sums real and fake (no 0.5); under Adam the factor only rescales the logs.
        d["loss_D"] = d["loss_D_fake"] + d["loss_D_real"]
        return d

    def training_step(self, batch, batch_idx):
        real_A, real_B = batch["A"], batch["B"]
        if not self.is_full_batch(real_A.shape[0]):
            return
        opt_g, opt_e, opt_d, *opt_d2 = self.optimizers()
        f = self.forward_halves(real_A, real_B)

        # E and G step together, so toggled_optimizer (one optimizer's parameters trainable) does
        # not fit: D and D2 are frozen by hand instead.
        with frozen([self.netD, self.netD_random]):
            opt_e.zero_grad(set_to_none=True)
            opt_g.zero_grad(set_to_none=True)
            eg = self.encoder_generator_losses(f)
            self.manual_backward(eg["loss_EG"], retain_graph=True)  # the latent loss reuses fake_B_random
            z = self.backward_latent(f)
            opt_e.step()
            opt_g.step()
            # freed as GANModule.step frees the others': E's and G's gradients do not sit beside D's backward
            opt_e.zero_grad(set_to_none=True)
            opt_g.zero_grad(set_to_none=True)

        with self.toggled_optimizer(opt_d):
            d = self.discriminator_losses(self.netD, f["real_B_encoded"], f["fake_B_encoded"])
            if self.netD2 is None:  # use_same_D: the one D also judges the cLR half
                d2 = self.discriminator_losses(self.netD, f["real_B_random"], f["fake_B_random"])
                self.step(opt_d, d["loss_D"] + d2["loss_D"])
            else:
                self.step(opt_d, d["loss_D"])
        if opt_d2:
            with self.toggled_optimizer(opt_d2[0]):
                d2 = self.discriminator_losses(self.netD2, f["real_B_random"], f["fake_B_random"])
                self.step(opt_d2[0], d2["loss_D"])

        losses = {**eg, **z, "loss_D": d["loss_D"], "loss_D2": d2["loss_D"]}
        self.log("train/loss_G_L1", losses.pop("loss_G_L1").detach(), prog_bar=True)
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()})

    # ----- inference ------------------------------------------------------------------------------
    # ----- inference: the inference model around G and E -------------------------------------------
    def validation_output(self, batch) -> torch.Tensor:
        model = self.inference_model()
        return model.generate(batch["A"], model.encode_tensor(batch["B"]))

    def grid_rows(self, batch) -> dict[str, torch.Tensor]:
        """input | target | encoded output | random outputs. The random z are the same at every
        call, so successive grids show how the same codes evolve."""
        model, real_A, real_B = self.inference_model(), batch["A"], batch["B"]
        gen = torch.Generator().manual_seed(0)
        rows = {"input": real_A, "target": real_B, "encoded": model.generate(real_A, model.encode_tensor(real_B))}
        for k in range(1, GRID_RANDOM_SAMPLES + 1):
            z = self.random_z(1, gen).expand(real_A.shape[0], -1)
            rows[f"random_{k}"] = model.generate(real_A, z)
        return rows
