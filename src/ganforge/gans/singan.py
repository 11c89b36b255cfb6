"""SinGAN (Rott Shaham et al., 2019): a pyramid of small fully-convolutional GANs learnt from one image.

Scale 0 is the coarsest. Scale n's G turns noise * amp_n + (upsampled output of scale n-1) into
an image of scale n's size; its D is a WGAN-GP patch critic. Scales train one after another,
each for `iters_per_scale` iterations of `d_steps` D steps then `g_steps` G steps, and are frozen
when done.

How the pyramid maps onto Lightning (see docs/singan.md): one module, all scales' nets and one
optimizer pair per scale built up front, and an epoch is a slice of `iters_per_scale` (the
data's `iters_per_epoch`). So scale = epoch // epochs_per_scale and every end-of-epoch checkpoint
resumes at the right scale and iteration, with the noise amps and the fixed noise (buffers).
The pyramid sizes depend on the image: the first fit reads them from the data module and writes
them into the stored run config (`model.pyramid`), which is what predict rebuilds the nets from.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image import PeakSignalNoiseRatio

from ganforge.data.images import load_image
from ganforge.data.single_image import ceil_size, resize, to_tensor
from ganforge.errors import CheckpointError, ConfigError
from ganforge.imageio import save_atomic, tensor_to_image
from ganforge.gans.base import GANModule, set_requires_grad
from ganforge.nets.singan import SinGANDiscriminator, SinGANGenerator

APPS = ("samples", "paint2image", "editing", "harmonization", "sr", "animation")
log = logging.getLogger(__name__)


def critic_gradient_penalty(netD: nn.Module, real: torch.Tensor, fake: torch.Tensor, weight: float) -> torch.Tensor:
    """The reference's penalty: one mixing weight per image and the gradient norm per pixel (over
    channels), not per sample as `losses.gradient_penalty` computes it."""
    a = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x = (a * real + (1 - a) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(netD(x).sum(), x, create_graph=True)
    return ((grad.norm(2, dim=1) - 1) ** 2).mean() * weight


class SinGAN(GANModule):
    metric_single_image = True
    apps = APPS

    def __init__(
        self,
        optimizer_g: Callable[..., torch.optim.Optimizer],
        optimizer_d: Callable[..., torch.optim.Optimizer],
        channels: int = 3,
        nfc: int = 32,
        min_nfc: int = 32,
        max_nfc: int = 128,
        nfc_double_every: int = 4,
        num_layer: int = 5,
        iters_per_scale: int = 2000,
        d_steps: int = 3,
        g_steps: int = 3,
        lambda_grad: float = 0.1,
        alpha: float = 10.0,
        noise_amp_init: float = 0.1,
        lr_milestone: int = 1600,
        lr_gamma: float = 0.1,
        pyramid: list | None = None,
        scheduler: Mapping[str, Any] | None = None,
    ):
        super().__init__(scheduler=scheduler)
        self.save_hyperparameters(logger=False)
        self.netG, self.netD = nn.ModuleList(), nn.ModuleList()
        self.pyramid: list[tuple[int, int]] = []
        self.n_frozen = 0  # scales below this are frozen (no grad, eval mode)
        self.epochs_per_scale = 1
        self._rec_cache: dict[int, torch.Tensor] = {}
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)
        if pyramid:
            self._build([tuple(int(v) for v in s) for s in pyramid])

    # ----- the pyramid ---------------------------------------------------------------------------
    def _width_at(self, base: int, n: int) -> int:
        return min(base * 2 ** (n // self.hparams.nfc_double_every), self.hparams.max_nfc)

    def nfc_at(self, n: int) -> int:
        return self._width_at(self.hparams.nfc, n)

    def min_nfc_at(self, n: int) -> int:
        """The body's floor doubles with nfc (reference `training.py` sets opt.min_nfc beside opt.nfc),
        so with the defaults every layer of a scale is nfc wide."""
        return self._width_at(self.hparams.min_nfc, n)

    def _build(self, sizes: list[tuple[int, int]]) -> None:
        hp, nc = self.hparams, self.hparams.channels
        self.pyramid = sizes
        for n in range(len(sizes)):
            kw = dict(nc=nc, nfc=self.nfc_at(n), min_nfc=self.min_nfc_at(n), num_layer=hp.num_layer)
            self.netG.append(SinGANGenerator(**kw))
            self.netD.append(SinGANDiscriminator(**kw))
        for n, (h, w) in enumerate(sizes):
            self.register_buffer(f"real_{n}", torch.zeros(1, nc, h, w))
        self.pad = self.netG[0].pad
        self.register_buffer("z_opt", torch.zeros(1, nc, *sizes[0]))  # the fixed reconstruction noise
        self.register_buffer("noise_amp", torch.ones(len(sizes)))

    @property
    def num_scales(self) -> int:
        return len(self.pyramid)

    def real(self, n: int) -> torch.Tensor:
        return getattr(self, f"real_{n}")

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        if dm.channels != self.hparams.channels:
            raise ConfigError(f"data.channels={dm.channels} but model.channels={self.hparams.channels}")
        if not self.pyramid:
            self._build(list(dm.pyramid))
            # z_opt is drawn once, from the seeded stream, and then lives in checkpoints.
            self.z_opt.copy_(self.noise(0, self.pyramid[0], 1))
        elif list(dm.pyramid) != self.pyramid:
            raise CheckpointError(f"model.pyramid={self.pyramid} does not match the image's pyramid {dm.pyramid}")
        for n, r in enumerate(dm.reals):
            self.real(n).copy_(r)
        if stage == "fit":
            self._set_epochs(dm.iters_per_epoch)
        self.hparams.pyramid = [list(s) for s in self.pyramid]
        if self.run_config is not None:
            self.run_config["model"]["pyramid"] = self.hparams.pyramid

    # ----- generation ------------------------------------------------------------------------------
    def noise(self, n: int, size, batch: int = 1) -> torch.Tensor:
        """Scale-n noise; the coarsest scale's is one channel shared by all (reference)."""
        nc = 1 if n == 0 else self.hparams.channels
        return torch.randn(batch, nc, *size, device=self.noise_amp.device).expand(-1, self.hparams.channels, -1, -1)

    def rec_noise(self, n: int, size) -> torch.Tensor:
        """The reconstruction noise: z_opt at the coarsest scale, zero above."""
        if n > 0:
            return self.z_opt.new_zeros(1, self.hparams.channels, *size)
        return resize(self.z_opt, size)

    def scale_forward(self, n: int, z: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """G_n(noise * amp_n + prev, prev), both zero-padded so the output has prev's size."""
        padded = F.pad(prev, [self.pad] * 4)
        return self.netG[n](F.pad(self.noise_amp[n] * z + prev, [self.pad] * 4), padded)

    def chain(self, first: int, last: int, x: torch.Tensor, z_fn, sizes=None) -> torch.Tensor:
        """Run scales first..last on `x` (at scale `first`'s size), upsampling between scales;
        z_fn(n, size) gives each scale's noise."""
        sizes = sizes or self.pyramid
        for n in range(first, last + 1):
            x = resize(x, sizes[n])
            x = self.scale_forward(n, z_fn(n, sizes[n]).expand_as(x), x)
        return x

    def prev_for(self, n: int, kind: str) -> torch.Tensor:
        """Scale n's input image: the frozen scales' output ('rand' or 'rec'), upsampled to scale n."""
        zeros = self.real(0).new_zeros(1, self.hparams.channels, *self.pyramid[0])
        if n == 0:
            return zeros
        if kind == "rec":
            if n not in self._rec_cache:  # frozen and in eval mode: deterministic
                with torch.no_grad():
                    self._rec_cache[n] = resize(self.chain(0, n - 1, zeros, self.rec_noise), self.pyramid[n])
            return self._rec_cache[n]
        with torch.no_grad():
            return resize(self.chain(0, n - 1, zeros, self.noise), self.pyramid[n])

    def reconstruct(self, n: int) -> torch.Tensor:
        return self.scale_forward(n, self.rec_noise(n, self.pyramid[n]), self.prev_for(n, "rec"))

    # ----- training ------------------------------------------------------------------------------
    def configure_optimizers(self):
        """One (G, D) Adam pair per scale, created up front so Lightning checkpoints them all; a
        scale's pair only steps while it trains. The LR is set per iteration (MultiStepLR at
        `lr_milestone`), so no epoch schedule applies."""
        opts = []
        for g, d in zip(self.netG, self.netD):
            opts += [self.hparams.optimizer_g(params=g.parameters()), self.hparams.optimizer_d(params=d.parameters())]
        for o in opts:
            for group in o.param_groups:
                group.setdefault("initial_lr", group["lr"])
        return opts

    def _set_epochs(self, per_epoch: int) -> None:
        if self.hparams.iters_per_scale % per_epoch:
            raise ConfigError(
                f"model.iters_per_scale={self.hparams.iters_per_scale} must be a multiple of data.iters_per_epoch={per_epoch}"
            )
        self.epochs_per_scale = self.hparams.iters_per_scale // per_epoch
        # The pyramid, not trainer.max_epochs, says when training ends. Set before the fit loop
        # first checks whether it is done (a resumed run checks before on_train_start).
        self.trainer.fit_loop.max_epochs = self.num_scales * self.epochs_per_scale

    def on_train_start(self) -> None:
        if self.trainer.num_training_batches != self.trainer.datamodule.iters_per_epoch:
            raise ConfigError(
                f"an epoch has {self.trainer.num_training_batches} batches, not data.iters_per_epoch="
                f"{self.trainer.datamodule.iters_per_epoch}: leave trainer.limit_train_batches unset for SinGAN"
            )

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.freeze_below(self.current_epoch // self.epochs_per_scale)

    def freeze_below(self, n: int) -> None:
        """Finished scales get no gradient and run in eval mode (BatchNorm on running stats), as the reference."""
        self.n_frozen = n
        frozen = [*self.netG[:n], *self.netD[:n]]
        set_requires_grad(frozen, False)
        for p in (p for net in frozen for p in net.parameters()):
            p.grad = None  # the last step's gradient, no longer needed
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        for net in [*self.netG[: self.n_frozen], *self.netD[: self.n_frozen]]:
            net.eval()
        return self

    def start_scale(self, n: int) -> None:
        """Warm start from scale n-1 when the width is unchanged; noise amp from the reconstruction RMSE."""
        # The reference copies when nfc is unchanged; min_nfc doubles with it, and comparing it too
        # only matters for a config whose shapes differ (where the reference's copy would fail).
        if n > 0 and (self.nfc_at(n), self.min_nfc_at(n)) == (self.nfc_at(n - 1), self.min_nfc_at(n - 1)):
            self.netG[n].load_state_dict(self.netG[n - 1].state_dict())
            self.netD[n].load_state_dict(self.netD[n - 1].state_dict())
        if n == 0:
            amp = 1.0
        else:
            amp = self.hparams.noise_amp_init * torch.sqrt(F.mse_loss(self.real(n), self.prev_for(n, "rec")))
        self.noise_amp[n] = amp

    def critic_losses(self, netD, real, fake) -> dict[str, torch.Tensor]:
        loss_real, loss_fake = -netD(real).mean(), netD(fake).mean()
        gp = critic_gradient_penalty(netD, real, fake, self.hparams.lambda_grad)
        return {"loss_D_real": loss_real, "loss_D_fake": loss_fake, "loss_D_gp": gp, "loss_D": loss_real + loss_fake + gp}

    def generator_losses(self, n, netD, noisy_z, prev) -> dict[str, torch.Tensor]:
        # A fresh fake from the current weights at every G step: the reference reused the fake of
        # the last D step, whose graph the first G update invalidates (its in-place error).
        fake = self.scale_forward(n, noisy_z, prev)
        loss_gan = -netD(fake).mean()
        loss_rec = self.hparams.alpha * F.mse_loss(self.reconstruct(n), self.real(n))
        return {"loss_G_GAN": loss_gan, "loss_G_rec": loss_rec, "loss_G": loss_gan + loss_rec}

    def training_step(self, batch, batch_idx):
        n = self.current_epoch // self.epochs_per_scale
        it = (self.current_epoch % self.epochs_per_scale) * self.trainer.num_training_batches + batch_idx
        if it == 0:
            self.start_scale(n)
        opts = self.optimizers()
        opt_g, opt_d = opts[2 * n], opts[2 * n + 1]
        for o in (opt_g, opt_d):
            for group in o.param_groups:
                group["lr"] = group["initial_lr"] * (self.hparams.lr_gamma if it >= self.hparams.lr_milestone else 1.0)
        real, netD = self.real(n), self.netD[n]
        z = self.noise(n, self.pyramid[n])  # one draw per iteration, shared by its D and G steps

        for _ in range(self.hparams.d_steps):
            prev = self.prev_for(n, "rand")
            with torch.no_grad():
                fake = self.scale_forward(n, z, prev)
            with self.toggled_optimizer(opt_d):
                d = self.critic_losses(netD, real, fake)
                self.step(opt_d, d["loss_D"])
        for _ in range(self.hparams.g_steps):
            with self.toggled_optimizer(opt_g):
                g = self.generator_losses(n, netD, z, prev)
                self.step(opt_g, g["loss_G"])

        self.log("train/loss_G_rec", g["loss_G_rec"].detach(), prog_bar=True)
        self.log_dict({f"train/{k}": v.detach() for k, v in {**d, **g}.items() if k != "loss_G_rec"})
        self.log_dict({"train/scale": float(n), "train/noise_amp": self.noise_amp[n]})

    # ----- validation and grids --------------------------------------------------------------------
    def validation_step(self, batch, batch_idx):
        n = min(self.current_epoch // self.epochs_per_scale, self.num_scales - 1)
        with torch.no_grad():
            rec = self.reconstruct(n)
        self.val_psnr((rec.float().clamp(-1, 1) + 1) / 2, (self.real(n).float() + 1) / 2)
        self.log("val/psnr", self.val_psnr, prog_bar=True)
        self.log("val/scale", float(n))

    def metric_batch(self, batch, direction: str = "AtoB") -> dict[str, torch.Tensor]:
        """Random samples of the whole pyramid against the training image (SIFID compares each with it)."""
        k = len(batch["index"])
        with torch.no_grad():
            fake = torch.cat([self.sample() for _ in range(k)])
        return {"fake": fake, "real": self.real(self.num_scales - 1).expand(k, -1, -1, -1)}

    def grid_rows(self, batch) -> dict[str, torch.Tensor]:
        """real | reconstruction | random sample, at the scale being trained."""
        n = min(self.current_epoch // self.epochs_per_scale, self.num_scales - 1)
        k = len(batch["index"])
        with torch.no_grad():
            samples = torch.cat([self.chain(0, n, self.prev_for(0, "rand"), self.noise) for _ in range(k)])
            rec = self.reconstruct(n)
        return {"real": self.real(n).expand(k, -1, -1, -1), "reconstruction": rec.expand(k, -1, -1, -1), "sample": samples}

    # ----- applications (ganforge-predict app=...) -------------------------------------------------
    def run_app(self, opts, out_dir) -> list[Path]:
        app = opts.get("app")
        if app not in APPS:
            raise ConfigError(f"app={app!r} is not a SinGAN application; choose one of {', '.join(APPS)}")
        self.eval()
        torch.manual_seed(int(opts.get("seed") or 0))
        with torch.no_grad():
            if app in ("paint2image", "editing", "harmonization"):
                return self.app_inject(opts, Path(out_dir), app)
            return getattr(self, f"app_{app}")(opts, Path(out_dir))

    def _scale_opt(self, opts, key: str, lo: int) -> int:
        n, hi = int(opts.get(key)), self.num_scales - 1
        if not lo <= n <= hi:
            raise ConfigError(f"{key}={n} is out of range: this model has scales 0..{hi}; choose {lo}..{hi}")
        return n

    def sample(self, scale_h: float = 1.0, scale_w: float = 1.0, gen_start_scale: int = 0) -> torch.Tensor:
        """One random image of (round(H * scale_h), round(W * scale_w)); scales below
        `gen_start_scale` use the reconstruction noise, so the sample keeps the image's coarse layout."""
        sizes = [(max(1, round(h * scale_h)), max(1, round(w * scale_w))) for h, w in self.pyramid]
        zeros = self.z_opt.new_zeros(1, self.hparams.channels, *sizes[0])

        def z_fn(n, size):
            return self.rec_noise(n, size) if n < gen_start_scale else self.noise(n, size)

        return self.chain(0, self.num_scales - 1, zeros, z_fn, sizes)

    def app_samples(self, opts, out_dir: Path) -> list[Path]:
        start = self._scale_opt(opts, "gen_start_scale", 0)
        scale_h, scale_w = float(opts.get("scale_h", 1.0)), float(opts.get("scale_w", 1.0))
        if scale_h <= 0 or scale_w <= 0:
            raise ConfigError(f"scale_h and scale_w must be positive, got {scale_h}, {scale_w}")
        samples = [self.sample(scale_h, scale_w, start) for _ in range(int(opts.get("num_samples", 10)))]
        written = [_save(s, out_dir / f"sample_{k:03d}.png") for k, s in enumerate(samples)]
        written += self._sifid_report(samples, out_dir)
        return written

    def _sifid_report(self, samples: list[torch.Tensor], out_dir: Path) -> list[Path]:
        """SIFID of each sample against the training image (finest scale) into `sifid.json`. It needs
        Inception's weights (docs/evaluation.md); without them the samples are still written."""
        from ganforge.metrics.inception import SIFID, load_inception
        from ganforge.imageio import to_uint8
        from ganforge.metrics.weights import PretrainedWeightsError

        try:
            metric = SIFID(load_inception(["64"]))
        except PretrainedWeightsError as e:
            log.warning("SIFID not computed: %s", e)
            return []
        real = to_uint8(self.real(self.num_scales - 1), rgb=True)
        for s in samples:
            metric.update(to_uint8(s, rgb=True), real)
        report = {
            "sifid_mean": float(metric.compute()),
            "sifid": [float(v) for v in metric.scores],
            "num_samples": len(samples),
            "reference": "the training image at the finest scale; Inception first max-pool features, native size",
        }
        path = out_dir / "sifid.json"
        path.write_text(json.dumps(report, indent=2))
        return [path]

    def _load_ref(self, key: str, path, channels: int) -> torch.Tensor:
        if not path:
            raise ConfigError(f"{key}=<image> is required for this app")
        return resize(to_tensor(load_image(path, channels=channels)), self.pyramid[-1])

    def app_inject(self, opts, out_dir: Path, app: str) -> list[Path]:
        """paint2image / editing / harmonization: the reference image, taken down to scale n-1 and
        up to scale n, replaces the generated image at scale n; finer scales add their detail."""
        n = self._scale_opt(opts, "inject_scale", 1)
        ref = self._load_ref("ref", opts.get("ref"), self.hparams.channels)
        injected = resize(resize(ref, self.pyramid[n - 1]), self.pyramid[n])
        out = self.chain(n, self.num_scales - 1, injected, self.noise)
        written = [_save(out, out_dir / f"{app}_scale{n}.png")]
        if app != "paint2image":
            mask = soft_mask(self._load_ref("mask", opts.get("mask"), 1), radius=20 if app == "editing" else 7)
            real = self.real(self.num_scales - 1)
            written.append(_save((1 - mask) * real + mask * out, out_dir / f"{app}_scale{n}_masked.png"))
        return written

    def app_sr(self, opts, out_dir: Path) -> list[Path]:
        """Upscale the training image by `sr_factor` as the reference `SR.py` does: k =
        round(log(1/f) / log(2**(-1/3))) steps of f**(1/k) (`calc_init_scale`). Each step upsamples
        the last output (bicubic, ceil(side * step)) and applies the finest G with the finest noise
        amp and fresh noise; the result is cropped to int(f * side). Train with experiment=singan_sr."""
        factor = float(opts.get("sr_factor", 4.0))
        if factor <= 1:
            raise ConfigError(f"sr_factor must be > 1, got {factor}")
        iter_num = max(1, round(math.log(1 / factor, 0.5 ** (1 / 3))))
        step = factor ** (1 / iter_num)
        top = self.num_scales - 1
        x = self.real(top)
        h, w = x.shape[-2:]
        for k in range(iter_num):
            size = (ceil_size(x.shape[-2] * step), ceil_size(x.shape[-1] * step))
            x = resize(x, size)
            # `SinGAN_generate` counts these steps from 0, so its first one draws the coarsest
            # scale's noise (one channel shared by all) while using the finest G and amp.
            x = self.scale_forward(top, self.noise(0 if k == 0 else top, size), x)
        return [_save(x[..., : int(factor * h), : int(factor * w)], out_dir / f"sr_x{factor:g}.png")]

    def app_animation(self, opts, out_dir: Path, frames: int = 100, alpha: float = 0.1, beta: float = 0.9) -> list[Path]:
        """A GIF of a random walk in z at every scale from `gen_start_scale` (reference `generate_gif`:
        momentum `beta`, pull `alpha` towards the reconstruction noise; the reference animates from 2)."""
        start = self._scale_opt(opts, "gen_start_scale", 0)
        walks = []
        for n, size in enumerate(self.pyramid):
            z_rec = self.rec_noise(n, size)
            z1, z2, walk = 0.95 * z_rec + 0.05 * self.noise(n, size), z_rec, []
            for _ in range(frames):
                z = alpha * z_rec + (1 - alpha) * (z1 + beta * (z1 - z2) + (1 - beta) * self.noise(n, size))
                z1, z2 = z, z1
                walk.append(z if n >= start else z_rec)
            walks.append(walk)
        zeros = self.z_opt.new_zeros(1, self.hparams.channels, *self.pyramid[0])
        images = [
            _to_pil(self.chain(0, self.num_scales - 1, zeros, lambda n, s, i=i: walks[n][i])) for i in range(frames)
        ]
        path = out_dir / f"animation_start{start}.gif"
        images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)  # 10 fps
        return [path]


def soft_mask(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Reference `dilate_mask`: binary mask dilated by a disk, Gaussian-blurred (sigma 5), rescaled to [0, 1].
    The mask is thresholded at mid-grey rather than at 0, so JPEG noise in a mask is not foreground."""
    from torchvision.transforms.functional import gaussian_blur

    r = torch.arange(-radius, radius + 1, dtype=mask.dtype)
    disk = ((r[:, None] ** 2 + r[None, :] ** 2) <= radius**2).to(mask.dtype)[None, None]
    m = (F.conv2d((mask > 0).to(mask.dtype), disk, padding=radius) > 0).to(mask.dtype)
    # 41 taps (4 sigma a side, as skimage); reflect padding needs fewer than twice the shorter side
    m = gaussian_blur(m, kernel_size=min(41, 2 * min(m.shape[-2:]) - 1), sigma=5.0)
    return (m - m.min()) / (m.max() - m.min()).clamp_min(1e-8)


def _to_pil(t: torch.Tensor):
    return tensor_to_image(t)


def _save(t: torch.Tensor, path: Path) -> Path:
    return save_atomic(tensor_to_image(t), path)
