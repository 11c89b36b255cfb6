"""SinGAN (Rott Shaham et al., 2019): a pyramid of small fully-convolutional GANs learnt from one image.

Scale 0 is the coarsest. Scale n's G turns noise * amp_n + (upsampled output of scale n-1) into
an image of scale n's size; its D is a WGAN-GP patch critic. Scales train one after another,
each for `iters_per_scale` iterations of `d_steps` D steps then `g_steps` G steps, and are frozen
when done.

Step for step as the reference's `train_single_scale` (docs/faithfulness.md): the coarsest scale
draws a new reconstruction noise z_opt every iteration and keeps the last (`fixed_z_opt=true`: one
draw, the paper's z*); between scales the output is upsampled with the reference's `imresize` by
1 / scale_factor and cropped top-left; each loss term is backpropagated on its own, in the
reference's order; the first G step reuses the last D step's fake, and G runs in train mode exactly
as often as there (BatchNorm's running statistics, which the frozen scales use, come out the same).
The one intended deviation: G steps 2..g_steps recompute the fake from the current weights (the
reference backpropagates through the first step's stale graph, which current torch refuses).

How the pyramid maps onto Lightning (see docs/singan.md): one module, all scales' nets and one
optimizer pair per scale built up front, and an epoch is a slice of `iters_per_scale` (the
data's `iters_per_epoch`). So scale = epoch // epochs_per_scale and every end-of-epoch checkpoint
resumes at the right scale and iteration, with the noise amps and the fixed noise (buffers).
The pyramid sizes depend on the image: the data module computes them (`model_settings`) and the
trainer writes them into the run config (`model.pyramid`) before it builds this module, so the
stored config rebuilds the same nets; the module's epoch count (`max_epochs`) follows from them.
The applications (random samples, injection, SR, animation) are in `gans/singan_apps.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image import PeakSignalNoiseRatio

from ganforge.data.single_image import resize
from ganforge.errors import CheckpointError, ConfigError
from ganforge.gans.base import ExportGraph, GANModule, image_io, seeded_normals, set_requires_grad
from ganforge.gans.singan_apps import APPS, run_app
from ganforge.losses import gradient_penalty
from ganforge.nets.export import eval_copy
from ganforge.nets.imresize import upsample_to
from ganforge.nets.singan import SinGANDiscriminator, SinGANGenerator


def scale_step(net: nn.Module, amp: torch.Tensor, z: torch.Tensor, prev: torch.Tensor, pad: int) -> torch.Tensor:
    """One scale of the pyramid: G_n(noise * amp_n + prev, prev), both zero-padded so the output has prev's size."""
    return net(F.pad(amp * z + prev, [pad] * 4), F.pad(prev, [pad] * 4))


@contextmanager
def running_stats_kept(net: nn.Module):
    """Train-mode forwards that normalise by the batch but leave BatchNorm's running statistics as they are."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


class PyramidSampler(nn.Module):
    """`SinGAN.sample` as one module for export: the noises are inputs (scale 0's has one channel,
    shared by all, as the reference), so the graph draws nothing; the sizes are fixed."""

    def __init__(self, nets: nn.ModuleList, noise_amp: torch.Tensor, pad: int, sizes: list[tuple[int, int]], channels: int,
                 scale_factor: float):
        super().__init__()
        self.nets, self.pad, self.sizes, self.channels, self.scale_factor = nets, pad, sizes, channels, scale_factor
        self.register_buffer("noise_amp", noise_amp.detach().clone())

    def forward(self, *noises: torch.Tensor) -> torch.Tensor:
        x = torch.zeros_like(noises[0]).expand(-1, self.channels, -1, -1)
        for n, net in enumerate(self.nets):
            if n:
                x = upsample_to(x, self.scale_factor, self.sizes[n])
            x = scale_step(net, self.noise_amp[n], noises[n].expand_as(x), x, self.pad)
        return x


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
        scale_factor: float | None = None,
        fixed_z_opt: bool = False,
        rec_snapshot_every: int | None = 500,
        iters_per_epoch: int = 100,
        scheduler: Mapping[str, Any] | None = None,
    ):
        super().__init__(scheduler=scheduler)
        self.save_hyperparameters(logger=False)
        self.netG, self.netD = nn.ModuleList(), nn.ModuleList()
        self.n_frozen = 0  # scales below this are frozen (no grad, eval mode)
        self._rec_cache: dict[int, torch.Tensor] = {}
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)
        if not pyramid:
            raise ConfigError("model.pyramid is empty: SinGAN takes it from data=single_image (its image's scales)")
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

    @property
    def scale_factor(self) -> float:
        """The pyramid's refit factor, which the data module computed from the image (model.scale_factor).
        A config without it (written before it was stored) gets the factor its pyramid's shorter sides span."""
        if self.hparams.scale_factor is not None:
            return float(self.hparams.scale_factor)
        return (min(self.pyramid[0]) / min(self.pyramid[-1])) ** (1 / max(self.num_scales - 1, 1))

    @property
    def epochs_per_scale(self) -> int:
        """An epoch is `data.iters_per_epoch` iterations of the scale being trained."""
        per_epoch, per_scale = self.hparams.iters_per_epoch, self.hparams.iters_per_scale
        if per_epoch < 1 or per_scale % per_epoch:
            raise ConfigError(
                f"model.iters_per_scale={per_scale} must be a multiple of data.iters_per_epoch={per_epoch}"
            )
        return per_scale // per_epoch

    @property
    def max_epochs(self) -> int:
        """The pyramid, not trainer.max_epochs, says when training ends."""
        return self.num_scales * self.epochs_per_scale

    def real(self, n: int) -> torch.Tensor:
        return getattr(self, f"real_{n}")

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        if dm.channels != self.hparams.channels:
            raise ConfigError(f"data.channels={dm.channels} but model.channels={self.hparams.channels}")
        if [tuple(s) for s in dm.pyramid] != self.pyramid:
            raise CheckpointError(f"model.pyramid={self.pyramid} does not match the image's pyramid {dm.pyramid}")
        for n, r in enumerate(dm.reals):
            # in the memory layout imresize gave it, as the reference's reals: reductions over it sum in its order
            self.register_buffer(f"real_{n}", r.to(self.real(n)).clone(memory_format=torch.preserve_format))

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

    def upsample(self, x: torch.Tensor, size) -> torch.Tensor:
        """The output of one scale as the next one's input: the reference's imresize by 1 / scale_factor, cropped."""
        return upsample_to(x, self.scale_factor, size)

    def scale_forward(self, n: int, z: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """G_n(noise * amp_n + prev, prev), both zero-padded so the output has prev's size."""
        return scale_step(self.netG[n], self.noise_amp[n], z, prev, self.pad)

    def chain(self, first: int, last: int, x: torch.Tensor, z_fn, sizes=None) -> torch.Tensor:
        """Run scales first..last on `x` (at scale `first`'s size), upsampling between scales;
        z_fn(n, size) gives each scale's noise."""
        sizes = sizes or self.pyramid
        for n in range(first, last + 1):
            if n > first:
                x = self.upsample(x, sizes[n])
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
                    self._rec_cache[n] = self.upsample(self.chain(0, n - 1, zeros, self.rec_noise), self.pyramid[n])
            return self._rec_cache[n]
        with torch.no_grad():
            return self.upsample(self.chain(0, n - 1, zeros, self.noise), self.pyramid[n])

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
        """Warm start from scale n-1 when the width is unchanged; noise amp from the reconstruction RMSE;
        with `fixed_z_opt`, the one draw of the reconstruction noise."""
        # The reference copies when nfc is unchanged; min_nfc doubles with it, and comparing it too
        # only matters for a config whose shapes differ (where the reference's copy would fail).
        if n > 0 and (self.nfc_at(n), self.min_nfc_at(n)) == (self.nfc_at(n - 1), self.min_nfc_at(n - 1)):
            self.netG[n].load_state_dict(self.netG[n - 1].state_dict())
            self.netD[n].load_state_dict(self.netD[n - 1].state_dict())
        if n == 0:
            amp = 1.0
            if self.hparams.fixed_z_opt:
                self.z_opt.copy_(self.noise(0, self.pyramid[0]))
        else:
            amp = self.hparams.noise_amp_init * torch.sqrt(F.mse_loss(self.real(n), self.prev_for(n, "rec")))
        self.noise_amp[n] = amp

    def critic_losses(self, netD, real, fake) -> dict[str, torch.Tensor]:
        loss_real, loss_fake = -netD(real).mean(), netD(fake).mean()
        # The reference's penalty: the gradient norm over channels at every pixel (calc_gradient_penalty)
        gp, _ = gradient_penalty(netD, real, fake, weight=self.hparams.lambda_grad, norm_over="pixel")
        return {"loss_D_real": loss_real, "loss_D_fake": loss_fake, "loss_D_gp": gp, "loss_D": loss_real + loss_fake + gp}

    def generator_losses(self, n, netD, fake) -> dict[str, torch.Tensor]:
        loss_gan = -netD(fake).mean()
        if self.hparams.alpha == 0:  # the reference then runs no reconstruction
            loss_rec = loss_gan.new_zeros(())
        else:
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
        real, netD, hp = self.real(n), self.netD[n], self.hparams
        if n == 0 and not hp.fixed_z_opt:  # the reference draws z_opt anew each iteration and keeps the last
            self.z_opt.copy_(self.noise(0, self.pyramid[0]))
        z = self.noise(n, self.pyramid[n])  # one draw per iteration, shared by its D and G steps

        for j in range(hp.d_steps):
            prev = self.prev_for(n, "rand")
            # The last D step's fake keeps its graph: the first G step backpropagates through it, as the reference.
            with torch.set_grad_enabled(j == hp.d_steps - 1):
                fake = self.scale_forward(n, z, prev)
            with self.toggled_optimizer(opt_d):
                d = self.critic_losses(netD, real, fake.detach())
                self.step(opt_d, d["loss_D_real"], d["loss_D_fake"], d["loss_D_gp"])
        for k in range(hp.g_steps):
            with self.toggled_optimizer(opt_g):
                if k:
                    # The one intended deviation: a fresh fake from the current weights (the reference reuses the
                    # first step's graph, stale after its update, which current torch refuses). The forward the
                    # reference does not make leaves the running statistics alone.
                    with running_stats_kept(self.netG[n]):
                        fake = self.scale_forward(n, z, prev)
                g = self.generator_losses(n, netD, fake)
                self.step(opt_g, g["loss_G_GAN"], g["loss_G_rec"])
        if hp.rec_snapshot_every and (it % hp.rec_snapshot_every == 0 or it == hp.iters_per_scale - 1):
            # The reference saves G(z_opt) as an image every 500 iterations and at a scale's last, running G in
            # train mode: BatchNorm's running statistics count that batch, and so do these.
            with torch.no_grad():
                self.reconstruct(n)

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

    def sample_sizes(self, scale_h: float = 1.0, scale_w: float = 1.0) -> list[tuple[int, int]]:
        """Each scale's (h, w) for a sample of (round(H * scale_h), round(W * scale_w))."""
        return [(max(1, round(h * scale_h)), max(1, round(w * scale_w))) for h, w in self.pyramid]

    def seeded_noises(self, num: int, seed: int, scale_h: float = 1.0, scale_w: float = 1.0) -> list[list[torch.Tensor]]:
        """`num` noise pyramids drawn with numpy from `seed`, as an export's runtime feeds noise_0..noise_N
        (scale by scale, (num, 1 or C, h, w) each), so the checkpoint and the export write the same samples."""
        shapes = [(num, 1 if n == 0 else self.hparams.channels, *s) for n, s in enumerate(self.sample_sizes(scale_h, scale_w))]
        noises = [z.to(self.noise_amp.device) for z in seeded_normals(shapes, seed)]
        return [[z[k:k + 1] for z in noises] for k in range(num)]

    def sample(self, scale_h: float = 1.0, scale_w: float = 1.0, gen_start_scale: int = 0,
               noises: list[torch.Tensor] | None = None) -> torch.Tensor:
        """One random image of (round(H * scale_h), round(W * scale_w)); scales below
        `gen_start_scale` use the reconstruction noise, so the sample keeps the image's coarse layout.
        `noises`: each scale's noise (`seeded_noises`); None draws them from torch's stream."""
        sizes = self.sample_sizes(scale_h, scale_w)
        zeros = self.z_opt.new_zeros(1, self.hparams.channels, *sizes[0])

        def z_fn(n, size):
            if n < gen_start_scale:
                return self.rec_noise(n, size)
            return self.noise(n, size) if noises is None else noises[n]

        return self.chain(0, self.num_scales - 1, zeros, z_fn, sizes)

    # ----- applications (ganforge-predict app=..., gans/singan_apps.py) ---------------------------------
    def run_app(self, opts, out_dir) -> list[Path]:
        return run_app(self, opts, Path(out_dir))

    # ----- export: the whole pyramid at one output size, its noises as inputs ---------------------------
    def export_graphs(self, opts) -> list[ExportGraph]:
        """One graph: random samples of (round(H * scale_h), round(W * scale_w)) from noise_0..noise_N
        (N(0, 1), one per scale at its size; noise_0 has one channel), every scale in eval mode (as predict)."""
        scale_h, scale_w = float(opts.get("scale_h") or 1.0), float(opts.get("scale_w") or 1.0)
        sizes = self.sample_sizes(scale_h, scale_w)
        nc = self.hparams.channels
        nets = nn.ModuleList(eval_copy(g) for g in self.netG)
        module = PyramidSampler(nets, self.noise_amp, self.pad, sizes, nc, self.scale_factor)
        example = tuple(torch.randn(1, 1 if n == 0 else nc, *s) for n, s in enumerate(sizes))
        inputs = [{"name": f"noise_{n}", "kind": "noise", "shape": ["batch", 1 if n == 0 else nc, *s], "dtype": "float32",
                   "distribution": "N(0, 1)"} for n, s in enumerate(sizes)]
        out = image_io("image", nc, sizes[-1][1], dynamic_hw=False)
        out["shape"] = ["batch", nc, *sizes[-1]]
        dynamic = {f"noise_{n}": {0: "batch"} for n in range(len(sizes))} | {"image": {0: "batch"}}
        return [ExportGraph(name="pyramid", module=module, example_inputs=example, inputs=inputs, output=out,
                            dynamic=dynamic, meta={"generator_mode": "eval", "scales": len(sizes), "sizes": sizes,
                                                   "scale_h": scale_h, "scale_w": scale_w})]
