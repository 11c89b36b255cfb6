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
The applications (random samples, injection, SR, animation) are methods of the inference model (`models/singan.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image import PeakSignalNoiseRatio

from ganforge.gans.base import GANModule, frozen, set_requires_grad
from ganforge.gans.losses import gradient_penalty
from ganforge.models.singan import SinGANModel, scale_step
from ganforge.nets.singan import SinGANDiscriminator, SinGANGenerator
from ganforge.utils.errors import CheckpointError, ConfigError


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


class SinGAN(GANModule):
    model_name = "singan"
    metric_single_image = True
    eager_nets = ("netD",)  # the WGAN-GP penalty backpropagates through D's input gradient

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
        self.register_buffer("z_opt", torch.zeros(1, nc, *sizes[0]))  # the reconstruction noise
        self.register_buffer("noise_amp", torch.ones(len(sizes)))

    @property
    def num_scales(self) -> int:
        return len(self.pyramid)

    @property
    def epochs_per_scale(self) -> int:
        """An epoch is `data.iters_per_epoch` iterations of the scale being trained."""
        per_epoch, per_scale = self.hparams.iters_per_epoch, self.hparams.iters_per_scale
        if per_epoch < 1 or per_scale % per_epoch:
            raise ConfigError(f"model.iters_per_scale={per_scale} must be a multiple of data.iters_per_epoch={per_epoch}")
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

    # ----- generation: the inference model around the pyramid ---------------------------------------
    def build_inference_model(self) -> SinGANModel:
        buffers = {"noise_amp": self.noise_amp, "z_opt": self.z_opt} | {f"real_{n}": self.real(n) for n in range(self.num_scales)}
        settings = {**self.hparams, "pyramid": [list(size) for size in self.pyramid]}
        spec = SinGANModel.Spec(**SinGANModel.spec_data(self.model_name, settings, self.data_settings(), net=None))
        return SinGANModel(spec, nets={"netG": self.netG}, buffers=buffers, model_name=self.model_name)

    def noise(self, n: int, size, batch: int = 1) -> torch.Tensor:
        return self.inference_model().noise(n, size, batch)

    def rec_noise(self, n: int, size) -> torch.Tensor:
        return self.inference_model().rec_noise(n, size)

    def scale_forward(self, n: int, z: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        return scale_step(self.netG[n], self.noise_amp[n], z, prev, self.pad)

    def chain(self, first: int, last: int, x: torch.Tensor, z_fn, sizes=None) -> torch.Tensor:
        return self.inference_model().chain(first, last, x, z_fn, sizes)

    def upsample(self, x: torch.Tensor, size) -> torch.Tensor:
        return self.inference_model().upsample(x, size)

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
        opts = self.fast_optimizers(*opts)
        for o in opts:
            for group in o.param_groups:
                group.setdefault("initial_lr", group["lr"])
        return list(opts)

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
            # Only netD[n] gets gradients (the fake is detached, earlier scales are frozen, later ones unused), so no
            # toggled_optimizer: Lightning's walks the parameters of all the scales' optimizers, twice a step.
            d = self.critic_losses(netD, real, fake.detach())
            self.step(opt_d, *self.backward_terms(d["loss_D"], d["loss_D_real"], d["loss_D_fake"], d["loss_D_gp"]))
        for k in range(hp.g_steps):
            with frozen([netD]):
                if k:
                    # The one intended deviation: a fresh fake from the current weights (the reference reuses the
                    # first step's graph, stale after its update, which current torch refuses). The forward the
                    # reference does not make leaves the running statistics alone.
                    with running_stats_kept(self.netG[n]):
                        fake = self.scale_forward(n, z, prev)
                g = self.generator_losses(n, netD, fake)
                self.step(opt_g, *self.backward_terms(g["loss_G"], g["loss_G_GAN"], g["loss_G_rec"]))
        if hp.rec_snapshot_every and (it % hp.rec_snapshot_every == 0 or it == hp.iters_per_scale - 1):
            # The reference saves G(z_opt) as an image every 500 iterations and at a scale's last, running G in
            # train mode: BatchNorm's running statistics count that batch, and so do these.
            with torch.no_grad():
                self.reconstruct(n)
        self.log_train({**d, **g, "scale": float(n), "noise_amp": self.noise_amp[n]}, prog_bar=("loss_G_rec",))

    def backward_terms(self, total: torch.Tensor, *terms: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What `step` backpropagates: `precise`, each term on its own in the reference's order (its gradients add
        up in that order); otherwise their sum in one backward pass, the same gradient up to float rounding at a
        third of Lightning's per-backward cost (SinGAN's coarse steps are small enough for it to count)."""
        return terms if self.precise else (total,)

    # ----- validation and grids --------------------------------------------------------------------
    def validation_step(self, batch, batch_idx):
        n = min(self.current_epoch // self.epochs_per_scale, self.num_scales - 1)
        with torch.no_grad():
            rec = self.reconstruct(n)
        self.val_psnr((rec.float().clamp(-1, 1) + 1) / 2, (self.real(n).float() + 1) / 2)
        self.log("val/psnr", self.val_psnr, prog_bar=True)
        self.log("val/scale", float(n))

    def grid_rows(self, batch) -> dict[str, torch.Tensor]:
        """real | reconstruction | random sample, at the scale being trained."""
        n = min(self.current_epoch // self.epochs_per_scale, self.num_scales - 1)
        k = len(batch["index"])
        with torch.no_grad():
            samples = torch.cat([self.chain(0, n, self.prev_for(0, "rand"), self.noise) for _ in range(k)])
            rec = self.reconstruct(n)
        return {"real": self.real(n).expand(k, -1, -1, -1), "reconstruction": rec.expand(k, -1, -1, -1), "sample": samples}
