"""SPADE / GauGAN (Park et al., 2019): semantic image synthesis from label maps.

G: SPADE ResBlocks modulated by the label map (optionally from a style code z of the VAE encoder E).
D: multiscale PatchGAN on concat(label one-hot [+ don't-care] [+ instance edges], image).
Loss: hinge GAN + 10 x feature matching + 10 x VGG19 perceptual (+ 0.05 x KLD with E).
Each iteration: the G (and E) step, then the D step on a G output made without grad, fake and real
through D as one concatenated batch (NVlabs/SPADE trainers/pix2pix_trainer.py, models/pix2pix_model.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import DDPStrategy
from PIL import Image
from torch import nn
from torch.optim import Optimizer, lr_scheduler
from torchmetrics.image import PeakSignalNoiseRatio

from ganforge.data.labelmap import label_edges
from ganforge.errors import ConfigError, ImageFileError
from ganforge.gans.base import ExportGraph, GANModule, image_io, seeded_normal
from ganforge.imageio import LabelIds, image_to_tensor, load_image, load_label_ids
from ganforge.losses import GANLoss, VGGLoss, feature_matching_loss, kl_divergence
from ganforge.metrics.weights import load_vgg19
from ganforge.nets.norms import synchronize_batchnorm
from ganforge.nets.export import LabelMapToImage, eval_copy


def label_colormap(n: int) -> torch.Tensor:
    """(n, 3) uint8 colours, the bit-interleaved PASCAL map of SPADE's util/util.py labelcolormap."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        cid = i + 1
        for j in range(7):
            r ^= ((cid >> 0) & 1) << (7 - j)
            g ^= ((cid >> 1) & 1) << (7 - j)
            b ^= ((cid >> 2) & 1) << (7 - j)
            cid >>= 3
        cmap[i] = (r, g, b)
    return torch.from_numpy(cmap)


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


class SPADEModel(GANModule):
    def __init__(
        self,
        netG: nn.Module,
        netD: nn.Module,
        optimizer_g: Callable[..., torch.optim.Optimizer],
        optimizer_d: Callable[..., torch.optim.Optimizer],
        netE: nn.Module | None = None,
        scheduler: Mapping[str, Any] | None = None,
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
    ):
        super().__init__(scheduler=scheduler)
        self.save_hyperparameters(ignore=["netG", "netD", "netE"], logger=False)
        self.netG, self.netD = netG, netD
        if use_vae and netE is None:
            raise ConfigError("model.use_vae=true needs model.netE (the style encoder)")
        if getattr(netG, "use_vae", False) != use_vae:
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

    def configure_optimizers(self):
        """TTUR (train_options.py, pix2pix_model.py create_optimizers): G lr/2, D lr*2, betas (0, 0.9);
        `no_ttur`: lr for both with betas (0.5, 0.999). The `linear` schedule is SPADE's own
        (`ReferenceLinearDecay`); the other policies are the shared ones."""
        hp = self.hparams
        lr_g, lr_d = (hp.lr, hp.lr) if hp.no_ttur else (hp.lr / 2, hp.lr * 2)
        betas = tuple(hp.betas) if hp.betas is not None else ((0.5, 0.999) if hp.no_ttur else (0.0, 0.9))
        g_params = list(self.netG.parameters()) + (list(self.netE.parameters()) if self.netE is not None else [])
        opts = (self.hparams.optimizer_g(params=g_params, lr=lr_g, betas=betas),
                self.hparams.optimizer_d(params=self.netD.parameters(), lr=lr_d, betas=betas))
        cfg = self.scheduler_cfg
        if cfg.get("policy", "linear") != "linear":
            return self.optimizers_for(*opts)
        scheds = [{"scheduler": ReferenceLinearDecay(o, hp.lr, cfg.get("n_epochs", 100), cfg.get("n_epochs_decay", 100)),
                   "interval": "epoch"} for o in opts]
        return list(opts), scheds

    # ----- inputs --------------------------------------------------------------------------------
    def semantics(self, label: torch.Tensor, instance: torch.Tensor | None = None) -> torch.Tensor:
        """One-hot label map (label_nc [+1 don't-care] channels) [+ instance edges] (pix2pix_model.py
        preprocess_input). Ids outside the channels stop with a ConfigError instead of a scatter crash."""
        hp = self.hparams
        nc = hp.label_nc + int(hp.contain_dontcare_label)
        label = label.long()
        if label.dim() == 3:
            label = label.unsqueeze(1)
        lo, hi = int(label.min()), int(label.max())
        if lo < 0 or hi >= nc:
            extra = " + 1 don't-care" if hp.contain_dontcare_label else ""
            raise ConfigError(
                f"label ids range {lo}..{hi}, but the model has {nc} label channels (label_nc={hp.label_nc}{extra}); "
                f"set data.label_nc={hi + 1} (the data module maps don't-care ids to label_nc)"
            )
        onehot = torch.zeros(label.shape[0], nc, *label.shape[2:], device=label.device, dtype=self.dtype)
        onehot.scatter_(1, label, 1.0)
        if hp.use_instance:
            if instance is None:
                raise ConfigError("the model was built with use_instance=true but the batch has no instance map; "
                                  "set data.use_instance=true (and give instance maps)")
            inst = instance if instance.dim() == 4 else instance.unsqueeze(1)
            onehot = torch.cat([onehot, label_edges(inst).to(onehot.dtype)], dim=1)
        return onehot

    def batch_semantics(self, batch: dict) -> torch.Tensor:
        return self.semantics(batch["label"], batch.get("instance"))

    # ----- the paper's objective, one phase a method ---------------------------------------------
    def generate(self, sem: torch.Tensor, real: torch.Tensor | None, z: torch.Tensor | None = None,
                 compute_kld: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
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
        self.log("val/l1", F.l1_loss(fake.float(), batch["image"].float()), prog_bar=True, sync_dist=True,
                 batch_size=len(fake))
        self.log("val/psnr", self.val_psnr)

    # ----- inference ------------------------------------------------------------------------------
    def synthesize(self, batch: dict, style: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   use_mean: bool = False) -> torch.Tensor:
        """G in eval mode (test.py calls model.eval()). With the VAE: z given, or encoded from `style`
        (reparameterized as the reference's inference, or E's mean), or z ~ N(0, 1)."""
        nets = (self.netG,) + ((self.netE,) if self.netE is not None else ())
        with self.inference(*nets):
            sem = self.batch_semantics(batch)
            if self.netE is not None and z is None and style is not None:
                mu, logvar = self.netE(style.to(sem.device, sem.dtype))
                z = mu if use_mean else mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
                z = z.expand(sem.shape[0], -1) if z.shape[0] == 1 else z
            return self.netG(sem, z)

    @property
    def metric_label_classes(self) -> int:
        return self.hparams.label_nc - self.hparams.get("metric_label_shift", 0)

    def metric_batch(self, batch, direction: str = "AtoB") -> dict[str, torch.Tensor]:
        """The reference protocol (test.py): G(val label map) at crop size, the style (VAE) encoded from
        the val photo; compared with the val photos, and with the label maps for mIoU. With
        `metric_label_shift` (ADE20K's raw ids) the mIoU classes are the ids above it, less it; the ids
        below it become the left-out id (`metric_label_classes`)."""
        label, shift = batch["label"], self.hparams.get("metric_label_shift", 0)
        if shift:
            label = torch.where(label < shift, self.metric_label_classes, label - shift)
        return {"fake": self.synthesize(batch, style=batch["image"]), "real": batch["image"], "label": label}

    def colorize(self, label: torch.Tensor) -> torch.Tensor:
        """Label ids (B, 1, H, W) as colours in [-1, 1]; don't-care black."""
        cmap = torch.cat([label_colormap(self.hparams.label_nc), torch.zeros(1, 3, dtype=torch.uint8)])
        ids = label.long().squeeze(1).clamp(0, self.hparams.label_nc).cpu()
        return (cmap[ids].permute(0, 3, 1, 2).float() / 127.5 - 1.0).to(label.device)

    def grid_rows(self, batch) -> dict[str, torch.Tensor]:
        """label | output | photo."""
        return {"label": self.colorize(batch["label"]), "output": self.synthesize(batch, style=batch["image"]),
                "photo": batch["image"]}

    @property
    def input_size_multiple(self) -> int:
        return self.netG.size_multiple

    # predict: label maps in, photos out -------------------------------------------------------------
    @property
    def style_option(self) -> str | None:
        """`style=<image>` when the model has its VAE style encoder."""
        return "style" if self.netE is not None else None

    def label_classes(self) -> list[tuple[str, tuple[int, int, int]]]:
        """The label_nc classes (names from data.class_names, else "class <id>") in `colorize`'s colours,
        then the don't-care class (black) when the model has its channel."""
        names = list((self.run_config or {}).get("data", {}).get("class_names") or [])
        cmap = label_colormap(self.hparams.label_nc).tolist()
        classes = [(names[i] if i < len(names) else f"class {i}", tuple(cmap[i])) for i in range(self.hparams.label_nc)]
        if self.hparams.contain_dontcare_label:
            classes.append(("don't care", (0, 0, 0)))
        return classes

    def _label_ids_settings(self) -> dict:
        data = (self.run_config or {}).get("data", {})
        return {"label_nc": self.hparams.label_nc, "dontcare_id": data.get("dontcare_label"),
                "shift": int(data.get("label_shift", 0) or 0)}

    def predict_load(self, path: Path, opts) -> Image.Image:
        """The label ids of `path` (stored ids, converted as the training data: don't-care -> label_nc)."""
        raw = load_label_ids(path)
        ids = LabelIds(**self._label_ids_settings()).convert(raw, Path(path))
        return Image.fromarray(ids.astype(np.int32), "I")

    def predict_tensor(self, img: Image.Image, size: tuple[int, int]) -> torch.Tensor:
        """(1, 1, h, w) label ids resized NEAREST. The training geometry when the G's grid is fixed (VAE)
        or `size` is the square training crop (Cityscapes trains at crop x crop/aspect_ratio)."""
        g = self.netG
        train_size = (g.sw * g.size_multiple, g.sh * g.size_multiple)
        if g.use_vae or size == (train_size[0], train_size[0]):
            size = train_size
        ids = np.asarray(img.resize(size, Image.Resampling.NEAREST), dtype=np.int64)
        return torch.from_numpy(ids)[None, None]

    def _style(self, path: str) -> torch.Tensor:
        try:
            return image_to_tensor(load_image(path)).unsqueeze(0).to(self.device)
        except ImageFileError as e:
            raise ConfigError(f"style={path}: {e}") from None

    def predict_outputs(self, x: torch.Tensor, opts) -> dict[str, torch.Tensor]:
        """One photo per label map (`<stem>.png`); with the VAE, `style=<image>` encodes that image's
        style (E's mean), and `n_samples=K` writes `<stem>_<k>.png` from K random z ~ N(0, 1) drawn with
        `seed` (the k-th z is the same for every label map)."""
        n, style = int(opts.get("n_samples", 1)), opts.get("style")
        if n < 1:
            raise ConfigError(f"n_samples must be >= 1, got {n}")
        if (style or n > 1) and self.netE is None:
            raise ConfigError("style= and n_samples>1 need a model trained with model.use_vae=true (a style encoder)")
        if style and n > 1:
            raise ConfigError("style= gives one style: drop n_samples (or use n_samples=1)")
        batch = {"label": x}
        if self.hparams.use_instance:
            # Predict reads label maps only: no instance boundaries, as a label map without instances.
            batch["instance"] = torch.zeros_like(x)
        if style:
            return {"": self.synthesize(batch, style=self._style(style), use_mean=True)}
        if self.netE is None:
            return {"": self.synthesize(batch)}
        zs = seeded_normal((n, self.netG.z_dim), opts.get("seed", 0)).to(self.device)
        if n == 1:
            return {"": self.synthesize(batch, z=zs[:1])}
        return {f"_{k}": self.synthesize(batch, z=zs[k:k + 1]) for k in range(n)}

    # ----- export: label ids (+ z) -> photo ------------------------------------------------------------
    def export_graphs(self, opts) -> list[ExportGraph]:
        """G in eval mode on label ids (one-hot inside the graph, no instance edges, as predict); with the
        VAE a z input (N(0, 1) or E's mean of a style image) and a fixed grid; without it any multiple of
        the G's size multiple works."""
        g, hp = self.netG, self.hparams
        nc = hp.label_nc + int(hp.contain_dontcare_label)
        w, h = g.sw * g.size_multiple, g.sh * g.size_multiple
        if opts.get("size") and not g.use_vae:
            w = h = int(opts.get("size"))
        dyn = not g.use_vae
        label_io = {"name": "label", "kind": "label", "shape": ["batch", 1, "height" if dyn else h, "width" if dyn else w],
                    "dtype": "int64", "classes": nc, "meaning": "class ids as the training data (don't-care: label_nc)"}
        inputs, example = [label_io], (torch.randint(0, nc, (1, 1, h, w)),)
        dynamic = {"label": {0: "batch", 2: "height", 3: "width"} if dyn else {0: "batch"}}
        if g.use_vae:
            inputs.append({"name": "z", "kind": "z", "shape": ["batch", g.z_dim], "dtype": "float32", "distribution": "N(0, 1)"})
            example += (torch.randn(1, g.z_dim),)
            dynamic["z"] = {0: "batch"}
        out = image_io("image", int(g.conv_img.out_channels), w, dynamic_hw=dyn)
        if not dyn:
            out["shape"] = ["batch", out["channels"], h, w]
        dynamic["image"] = dynamic["label"]
        graph = ExportGraph(
            name="G", module=LabelMapToImage(eval_copy(g), nc, hp.use_instance, g.use_vae), example_inputs=example,
            inputs=inputs, output=out, dynamic=dynamic,
            meta={"generator_mode": "eval", "label_ids": self._label_ids_settings(),
                  # predict_tensor's rule, for ganforge.runtime: label maps go in at the training geometry
                  # when the grid is fixed (VAE) or the size asked is the square training crop
                  "train_label_size": [g.sw * g.size_multiple, g.sh * g.size_multiple], "fixed_size": bool(g.use_vae)},
        )
        return [graph]
