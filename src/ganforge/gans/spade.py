"""SPADE / GauGAN (Park et al., 2019): semantic image synthesis from label maps.

G: SPADE ResBlocks modulated by the label map (optionally from a style code z of the VAE encoder E).
D: multiscale PatchGAN on concat(label one-hot [+ don't-care] [+ instance edges], image).
Loss: hinge GAN + 10 x feature matching + 10 x VGG19 perceptual (+ 0.05 x KLD with E).
Each iteration: the G (and E) step, then the D step on a G output made without grad, fake and real
through D as one concatenated batch (NVlabs/SPADE trainers/pix2pix_trainer.py, models/pix2pix_model.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch.optim import Optimizer, lr_scheduler
from torchmetrics.image import PeakSignalNoiseRatio

from ganforge.gans.generator_discriminator import GeneratorDiscriminatorGAN
from ganforge.gans.losses import GANLoss, VGGLoss, feature_matching_loss, kl_divergence
from ganforge.metrics.weights import load_vgg19
from ganforge.nets.norms import synchronize_batchnorm, use_sigma_on_output
from ganforge.utils.errors import ConfigError


class ReferenceLinearDecay(lr_scheduler.LRScheduler):
    """SPADE's learning-rate schedule (trainers/pix2pix_trainer.py update_learning_rate, called after every
    1-based epoch): lr stays through epoch n_epochs + 1, then each epoch subtracts lr / n_epochs_decay, so
    1-based epoch k trains at lr - (k - 1 - n_epochs) * lr / n_epochs_decay. G and D keep their TTUR ratio
    to lr (1/2 and 2). The value is the reference's repeated subtraction, so it is the same float.

    (The shared `linear` policy of ganforge.gans.base, from pytorch-CycleGAN-and-pix2pix, decays one epoch
    earlier, in steps of lr / (n_epochs_decay + 1).)
    """

    def __init__(self, optimizer: Optimizer, lr: float, n_epochs: int, n_epochs_decay: int, last_epoch: int = -1):
        self.lr, self.n_epochs, self.n_epochs_decay = lr, n_epochs, n_epochs_decay
        super().__init__(optimizer, last_epoch)

    def reference_lr(self, epochs_done: int) -> float:
        """The reference's `old_lr` once `epochs_done` epochs have ended."""
        lr = self.lr
        if self.n_epochs_decay > 0:
            for _ in range(max(0, epochs_done - self.n_epochs)):
                lr = lr - self.lr / self.n_epochs_decay
        return max(lr, 0.0)

    def get_lr(self) -> list[float]:
        lr = self.reference_lr(self.last_epoch)
        # base / self.lr is 1/2, 1 or 2: the products are exact, as the reference's lr / 2 and lr * 2.
        return [lr * (base / self.lr) for base in self.base_lrs]


class SPADEModel(GeneratorDiscriminatorGAN):
    model_name = "spade"
    net_arguments = ("netG", "netD", "netE")

    def __init__(
        self,
        netE: nn.Module | None = None,
        label_nc: int = 182,
        contain_dontcare_label: bool = True,
        use_instance: bool = True,
        use_vae: bool = False,
        gan_mode: str = "hinge",
        lambda_feat: float = 10.0,
        lambda_vgg: float = 10.0,
        lambda_kld: float = 0.05,
        lr: float = 0.0002,
        no_ttur: bool = False,
        betas: tuple[float, float] | None = None,
        vgg_weights: str | None = None,
        metric_label_shift: int = 0,
        **nets_and_optimizers: Any,  # netG, netD, optimizer_g, optimizer_d, scheduler (GeneratorDiscriminatorGAN)
    ):
        super().__init__(**nets_and_optimizers)
        if use_vae and netE is None:
            raise ConfigError("model.use_vae=true needs model.netE (the style encoder)")
        if getattr(self.netG, "use_vae", False) != use_vae:
            raise ConfigError(f"model.netG.use_vae must equal model.use_vae ({use_vae}): set model.use_vae only")
        # Hydra builds netE whatever use_vae says; without the VAE it is not part of the model.
        self.netE = netE if use_vae else None
        if use_vae:
            self.generator_names = ("netG", "netE")
        self.criterion_gan = GANLoss(gan_mode)
        self.semantic_nc = label_nc + int(contain_dontcare_label) + int(use_instance)
        # The VGG is a frozen loss network: kept out of the state dict, so checkpoints (and predict) need no VGG.
        self._vgg: list[VGGLoss] = []
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)

    # ----- setup: the VGG weights and the DDP norm, before training starts ------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.lambda_vgg > 0 and not self._vgg:
            self._vgg.append(VGGLoss(load_vgg19(self.hparams.vgg_weights).features))
        if stage == "fit" and self._trainer is not None and isinstance(self.trainer.strategy, DDPStrategy):
            # The reference's synchronized BatchNorm: statistics over every process's batch.
            self.netG = synchronize_batchnorm(self.netG, self.trainer.strategy.root_device)

    def on_train_start(self) -> None:
        # Spectral norm's 1/sigma on the smaller of weight and output (nets.norms.SpectralConv2d); the
        # reference's division of the weight with precise=true.
        for net in (self.netG, self.netD, self.netE):
            if net is not None:
                use_sigma_on_output(net, not self.precise)

    def configure_optimizers(self):
        """TTUR (train_options.py, pix2pix_model.py create_optimizers): G lr/2, D lr*2, betas (0, 0.9);
        `no_ttur`: lr for both with betas (0.5, 0.999). The `linear` schedule is SPADE's own
        (`ReferenceLinearDecay`); the other policies are the shared ones."""
        hp = self.hparams
        lr_g, lr_d = (hp.lr, hp.lr) if hp.no_ttur else (hp.lr / 2, hp.lr * 2)
        betas = tuple(hp.betas) if hp.betas is not None else ((0.5, 0.999) if hp.no_ttur else (0.0, 0.9))
        g_params = list(self.netG.parameters()) + (list(self.netE.parameters()) if self.netE is not None else [])
        opts = (
            self.hparams.optimizer_g(params=g_params, lr=lr_g, betas=betas),
            self.hparams.optimizer_d(params=self.netD.parameters(), lr=lr_d, betas=betas),
        )
        schedule = self.lr_schedule
        if schedule.policy != "linear":
            return self.optimizers_for(*opts)
        opts = self.fast_optimizers(*opts)
        scheds = [
            {"scheduler": ReferenceLinearDecay(o, hp.lr, schedule.n_epochs, schedule.n_epochs_decay), "interval": "epoch"} for o in opts
        ]
        return list(opts), scheds

    # ----- inputs --------------------------------------------------------------------------------
    def semantics(self, label: torch.Tensor, instance: torch.Tensor | None = None) -> torch.Tensor:
        """The generator's input (the inference model's one-hot label map [+ instance edges]); training needs
        the instance map when the model was built with use_instance."""
        if self.hparams.use_instance and instance is None:
            raise ConfigError(
                "the model was built with use_instance=true but the batch has no instance map; "
                "set data.use_instance=true (and give instance maps)"
            )
        return self.inference_model().semantics(label, instance)

    def batch_semantics(self, batch: dict) -> torch.Tensor:
        return self.semantics(batch["label"], batch.get("instance"))

    # ----- the paper's objective, one phase a method ---------------------------------------------
    def generate(
        self, sem: torch.Tensor, real: torch.Tensor | None, z: torch.Tensor | None = None, compute_kld: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """G(label map, z): z from E's posterior on `real` with the VAE (reparameterized), else none."""
        kld = None
        if self.netE is not None and z is None and real is not None:
            mu, logvar = self.netE(real)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            if compute_kld:
                kld = kl_divergence(mu, logvar) * self.hparams.lambda_kld
        return self.netG(sem, z), kld

    def discriminate(self, sem, fake, real) -> tuple[list, list]:
        """One D pass over [fake; real] (pix2pix_model.py discriminate), split back per scale and layer."""
        out = self.netD(torch.cat([torch.cat([sem, fake], 1), torch.cat([sem, real], 1)], 0))
        n = fake.shape[0]
        pred_fake = [[t[:n] for t in scale] for scale in out]
        pred_real = [[t[n:] for t in scale] for scale in out]
        return pred_fake, pred_real

    def generator_losses(self, sem, real) -> dict[str, torch.Tensor]:
        hp = self.hparams
        fake, kld = self.generate(sem, real, compute_kld=True)
        pred_fake, pred_real = self.discriminate(sem, fake, real)
        losses = {"loss_G_GAN": self.criterion_gan(pred_fake, True, for_discriminator=False)}
        if hp.lambda_feat > 0:
            losses["loss_G_feat"] = feature_matching_loss(pred_fake, pred_real, statistic="pixel_l1") * hp.lambda_feat
        if hp.lambda_vgg > 0:
            vgg = self._vgg[0].to(real.device)
            losses["loss_G_VGG"] = vgg(fake, real) * hp.lambda_vgg
        if kld is not None:
            losses["loss_G_KLD"] = kld
        losses["loss_G"] = sum(losses.values())
        return losses

    def discriminator_losses(self, sem, real) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            fake, _ = self.generate(sem, real)
        pred_fake, pred_real = self.discriminate(sem, fake.detach(), real)
        loss_fake = self.criterion_gan(pred_fake, False)
        loss_real = self.criterion_gan(pred_real, True)
        return {"loss_D_fake": loss_fake, "loss_D_real": loss_real, "loss_D": loss_fake + loss_real}

    def training_step(self, batch, batch_idx):
        opt_g, opt_d = self.optimizers()
        sem, real = self.batch_semantics(batch), batch["image"]
        with self.toggled_optimizer(opt_g):
            g = self.generator_losses(sem, real)
            self.step(opt_g, g["loss_G"])
        with self.toggled_optimizer(opt_d):
            d = self.discriminator_losses(sem, real)
            self.step(opt_d, d["loss_D"])
        losses = {f"train/{k}": v.detach() for k, v in {**g, **d}.items()}
        self.log("train/loss_G", losses.pop("train/loss_G"), prog_bar=True)
        self.log_dict(losses)

    def validation_step(self, batch, batch_idx):
        """val/l1 and val/psnr between the output and the photo of its label map (eval mode; with the VAE
        the style is E's mean of that photo, so both are deterministic). The output is not meant to copy the
        photo pixel for pixel, but an untrained G is far from it in colour and layout: both measure how well
        G renders each class where the label map puts it. val/swd (patch SWD against the val photos) asks
        whether the outputs have the photos' local colour and texture statistics, with no pretrained net."""
        fake = self.synthesize(batch, style=batch["image"], use_mean=True)
        self.collect_for_swd(fake, batch["image"])
        self.val_psnr((fake.float() + 1) / 2, (batch["image"].float() + 1) / 2)
        self.log("val/l1", F.l1_loss(fake.float(), batch["image"].float()), prog_bar=True, sync_dist=True, batch_size=len(fake))
        self.log("val/psnr", self.val_psnr)

    # ----- inference: the inference model around G (and E) ----------------------------------------
    def synthesize(self, batch: dict, style: torch.Tensor | None = None, use_mean: bool = False) -> torch.Tensor:
        """G in eval mode on a batch's label map; with the VAE the style code of `style` (see SPADEInference.generate)."""
        return self.inference_model().generate(
            batch["label"], batch.get("instance"), style=style if self.netE is not None else None, use_mean=use_mean
        )

    @property
    def metric_label_classes(self) -> int:
        return self.inference_model().metric_label_classes

    def metric_batch(self, batch, direction: str = "AtoB") -> dict[str, torch.Tensor]:
        """The reference protocol (test.py): G(val label map) at crop size, the style (VAE) encoded from
        the val photo; compared with the val photos, and with the label maps for mIoU (as the inference
        model's `metric_labels`: ADE20K's raw ids one down, 'other' left out)."""
        return {
            "fake": self.synthesize(batch, style=batch["image"]),
            "real": batch["image"],
            "label": self.inference_model().metric_labels(batch["label"]),
        }

    def grid_rows(self, batch) -> dict[str, torch.Tensor]:
        """label | output | photo."""
        return {
            "label": self.inference_model().colorize(batch["label"]),
            "output": self.synthesize(batch, style=batch["image"]),
            "photo": batch["image"],
        }

    @property
    def input_size_multiple(self) -> int:
        return self.netG.size_multiple
