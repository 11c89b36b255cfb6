"""Time one training step through ganforge and through a plain PyTorch loop on the same nets (pix2pix, SPADE).

    .venv/bin/python bench/step_time.py model=pix2pix [precision=32-true|bf16-mixed] [steps=5] [warmup=3]
        [rounds=4] [size=256] [any Hydra override of conf/train.yaml]
    .venv/bin/python bench/step_time.py model=spade data=coco_stuff [random_vgg=true] [...]

SPADE's VGG loss needs vgg19-dcbb9e9d.pth (docs/evaluation.md); `random_vgg=true` times it with randomly
initialised VGG19 weights instead (a temporary TORCH_HOME), which costs the same.

ganforge: the real LightningModule driven by a real Trainer (no logger, checkpointing, progress bar
or validation); a callback times each batch from on_train_batch_start to on_train_batch_end, so Lightning's
per-batch hooks and the module's logging are included but data loading is not.
plain: the same nets (built from the same config, same initial weights), the same optimizers and the same
in-memory batch, stepped in the reference order by hand. The two alternate in blocks of `steps` batches:
the callback runs a plain block after each ganforge block, all inside one `fit`.
The last line is the ratio of median step times, ganforge / plain.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import warnings

import hydra
import lightning.pytorch as L
import torch
import torch.nn.functional as F
import torchvision
from flops import TRAINING_ONLY
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from ganforge.cli.app import CONF_DIR
from ganforge.gans.base import fused
from ganforge.gans.losses import VGGLoss
from ganforge.metrics.weights import WEIGHTS, load_vgg19

OPTIONS = {"precision": "32-true", "steps": "5", "warmup": "3", "rounds": "4", "size": "256", "random_vgg": "false"}
PRECISIONS = ("32-true", "bf16-mixed")


class SameBatch(Dataset):
    """`length` copies of one sample: loading costs the same (and almost nothing) for both loops."""

    def __init__(self, length: int, sample: dict[str, torch.Tensor]):
        self.sample, self.length = sample, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i):
        return self.sample


def autocast_for(precision: str):
    # Lightning's bf16-mixed wraps the whole training_step (backward and optimizer steps too) in this
    # context, with cache_enabled=False (lightning/pytorch/plugins/precision/amp.py); the plain loop does the same.
    if precision == "bf16-mixed":
        return torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


class PlainLoop:
    """A model's reference iteration, hand-written in plain PyTorch: `train_step(batch)` in the subclass."""

    def __init__(self, cfg: DictConfig, loader: DataLoader, precision: str):
        self.netG = hydra.utils.instantiate(cfg.model.netG).train()
        self.netD = hydra.utils.instantiate(cfg.model.netD).train()
        self.precision = precision
        self.precise = bool(cfg.precise)
        self.batches = self._forever(loader)
        self.times: list[float] = []

    def optimizers(self, *optimizers: torch.optim.Optimizer) -> tuple[torch.optim.Optimizer, ...]:
        # The kernel GANModule.fast_optimizers picks for the module beside it: the ratio then measures the
        # framework, not fused against single-tensor Adam.
        return optimizers if self.precise else tuple(fused(o) for o in optimizers)

    @staticmethod
    def _forever(loader):
        while True:
            yield from loader

    def set_d_requires_grad(self, flag: bool) -> None:
        for p in self.netD.parameters():
            p.requires_grad_(flag)

    def run(self, n: int, record: bool = True) -> None:
        for _ in range(n):
            batch = next(self.batches)  # fetched outside the timed region, as Lightning's loop does
            t0 = time.perf_counter()
            self.train_step(batch)
            if record:
                self.times.append(time.perf_counter() - t0)


class PlainPix2Pix(PlainLoop):
    """The reference pix2pix iteration (Isola et al.'s train.py order)."""

    def __init__(self, cfg: DictConfig, loader: DataLoader, precision: str):
        super().__init__(cfg, loader, precision)
        self.opt_g, self.opt_d = self.optimizers(
            hydra.utils.instantiate(cfg.model.optimizer_g)(params=self.netG.parameters()),
            hydra.utils.instantiate(cfg.model.optimizer_d)(params=self.netD.parameters()),
        )
        self.lambda_l1 = float(cfg.model.lambda_l1)

    @staticmethod
    def sample(cfg: DictConfig, size: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        return {
            "A": torch.rand(cfg.data.input_nc, size, size, generator=g) * 2 - 1,
            "B": torch.rand(cfg.data.output_nc, size, size, generator=g) * 2 - 1,
        }

    def train_step(self, batch: dict) -> None:
        real_A, real_B = batch["A"], batch["B"]
        with autocast_for(self.precision):
            fake_B = self.netG(real_A)
            # D: fake (detached) then real, averaged.
            self.set_d_requires_grad(True)
            self.opt_d.zero_grad(set_to_none=True)
            pred_fake = self.netD(torch.cat([real_A, fake_B.detach()], 1))
            loss_d_fake = F.binary_cross_entropy_with_logits(pred_fake, torch.zeros_like(pred_fake))
            pred_real = self.netD(torch.cat([real_A, real_B], 1))
            loss_d_real = F.binary_cross_entropy_with_logits(pred_real, torch.ones_like(pred_real))
            ((loss_d_fake + loss_d_real) * 0.5).backward()
            self.opt_d.step()
            # G: fool the frozen D, plus lambda * L1.
            self.set_d_requires_grad(False)
            self.opt_g.zero_grad(set_to_none=True)
            pred_fake = self.netD(torch.cat([real_A, fake_B], 1))
            loss_g_gan = F.binary_cross_entropy_with_logits(pred_fake, torch.ones_like(pred_fake))
            loss_g = loss_g_gan + F.l1_loss(fake_B, real_B) * self.lambda_l1
            loss_g.backward()
            self.opt_g.step()


class PlainSPADE(PlainLoop):
    """NVlabs/SPADE's iteration (pix2pix_model.py, trainers/pix2pix_trainer.py): the G step (hinge, feature
    matching x lambda_feat / num_D, VGG x lambda_vgg) on [fake; real] through D as one batch, then the D step
    on a fake made without grad. Adam with TTUR: G lr/2, D lr*2, betas (0, 0.9). No VAE."""

    def __init__(self, cfg: DictConfig, loader: DataLoader, precision: str):
        super().__init__(cfg, loader, precision)
        m = cfg.model
        self.opt_g, self.opt_d = self.optimizers(
            torch.optim.Adam(self.netG.parameters(), lr=m.lr / 2, betas=(0.0, 0.9)),
            torch.optim.Adam(self.netD.parameters(), lr=m.lr * 2, betas=(0.0, 0.9)),
        )
        self.nc = int(m.label_nc) + int(m.contain_dontcare_label)
        self.use_instance, self.lambda_feat, self.lambda_vgg = bool(m.use_instance), float(m.lambda_feat), float(m.lambda_vgg)
        self.vgg = VGGLoss(load_vgg19(m.vgg_weights).features) if self.lambda_vgg > 0 else None

    @staticmethod
    def sample(cfg: DictConfig, size: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        nc = int(cfg.model.label_nc)
        label = torch.randint(0, nc, (1, size // 16, size // 16), generator=g)
        label = F.interpolate(label[None].float(), size=(size, size), mode="nearest")[0].long()  # regions, not noise
        sample = {"label": label, "image": torch.rand(cfg.data.output_nc, size, size, generator=g) * 2 - 1}
        if cfg.model.use_instance:
            sample["instance"] = label.clone()
        return sample

    def semantics(self, batch: dict) -> torch.Tensor:
        label = batch["label"]
        onehot = torch.zeros(label.shape[0], self.nc, *label.shape[2:]).scatter_(1, label, 1.0)
        if self.use_instance:
            inst = batch["instance"]
            edge = torch.zeros_like(inst, dtype=torch.bool)
            edge[:, :, :, 1:] |= inst[:, :, :, 1:] != inst[:, :, :, :-1]
            edge[:, :, :, :-1] |= inst[:, :, :, 1:] != inst[:, :, :, :-1]
            edge[:, :, 1:, :] |= inst[:, :, 1:, :] != inst[:, :, :-1, :]
            edge[:, :, :-1, :] |= inst[:, :, 1:, :] != inst[:, :, :-1, :]
            onehot = torch.cat([onehot, edge.float()], 1)
        return onehot

    def discriminate(self, sem, fake, real):
        out = self.netD(torch.cat([torch.cat([sem, fake], 1), torch.cat([sem, real], 1)], 0))
        n = fake.shape[0]
        return [[t[:n] for t in scale] for scale in out], [[t[n:] for t in scale] for scale in out]

    def train_step(self, batch: dict) -> None:
        sem, real = self.semantics(batch), batch["image"]
        with autocast_for(self.precision):
            set_requires_grad(self.netD, False)
            self.opt_g.zero_grad(set_to_none=True)
            fake = self.netG(sem)
            pred_fake, pred_real = self.discriminate(sem, fake, real)
            loss_g = sum(-scale[-1].mean() for scale in pred_fake) / len(pred_fake)
            feat = sum(F.l1_loss(f, r.detach()) for fs, rs in zip(pred_fake, pred_real) for f, r in zip(fs[:-1], rs[:-1]))
            loss_g = loss_g + feat / len(pred_fake) * self.lambda_feat
            if self.vgg is not None:
                loss_g = loss_g + self.vgg(fake, real) * self.lambda_vgg
            loss_g.backward()
            self.opt_g.step()
            set_requires_grad(self.netD, True)
            self.opt_d.zero_grad(set_to_none=True)
            with torch.no_grad():
                fake = self.netG(sem)
            pred_fake, pred_real = self.discriminate(sem, fake, real)
            loss_d = sum(F.relu(1 + scale[-1]).mean() for scale in pred_fake) / len(pred_fake) + sum(
                F.relu(1 - scale[-1]).mean() for scale in pred_real
            ) / len(pred_real)
            loss_d.backward()
            self.opt_d.step()


def set_requires_grad(net: torch.nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


PLAIN_LOOPS = {"ganforge.gans.pix2pix.Pix2Pix": PlainPix2Pix, "ganforge.gans.spade.SPADEModel": PlainSPADE}


class StepTimer(L.Callback):
    """Times ganforge's batches and runs a plain block after the warm-up and after each ganforge block."""

    def __init__(self, plain: PlainLoop, warmup: int, steps: int):
        self.plain, self.warmup, self.steps = plain, warmup, steps
        self.times: list[float] = []
        self.gaps: list[float] = []  # Lightning's work between one batch's end hook and the next start hook
        self._t0 = 0.0
        self._t_end: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t0 = time.perf_counter()
        if self._t_end is not None:
            self.gaps.append(self._t0 - self._t_end)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        dt = time.perf_counter() - self._t0
        self._t_end = None
        if batch_idx < self.warmup:
            if batch_idx == self.warmup - 1:
                self.plain.run(self.warmup, record=False)
            else:
                self._t_end = time.perf_counter()
            return
        self.times.append(dt)
        if (batch_idx - self.warmup + 1) % self.steps == 0:
            self.plain.run(self.steps)
        else:
            self._t_end = time.perf_counter()


def parse_argv(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split this script's options from the Hydra overrides."""
    opts, overrides = dict(OPTIONS), []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in OPTIONS:
            opts[key] = value
        else:
            overrides.append(arg)
    return opts, overrides


def main(argv: list[str]) -> None:
    opts, overrides = parse_argv(argv)
    if opts["precision"] not in PRECISIONS:
        sys.exit(f"precision={opts['precision']} is not benchmarked; choose one of {', '.join(PRECISIONS)}")
    steps, warmup, rounds, size = (int(opts[k]) for k in ("steps", "warmup", "rounds", "size"))
    if steps < 1 or rounds < 1 or warmup < 0:
        sys.exit("steps and rounds must be >= 1 and warmup >= 0")

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    out_dir = tempfile.mkdtemp(prefix="ganforge_bench_")
    if opts["random_vgg"] == "true":
        os.environ["TORCH_HOME"] = out_dir
        os.makedirs(os.path.join(out_dir, "hub", "checkpoints"))
        torch.save(torchvision.models.vgg19(weights=None).state_dict(), os.path.join(out_dir, "hub", "checkpoints", WEIGHTS["vgg19"].file))
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"trainer.precision={opts['precision']}", f"paths.output_dir={out_dir}", f"data.crop_size={size}", *overrides],
        )
    loop = PLAIN_LOOPS.get(cfg.model._target_)
    if loop is None:
        sys.exit(f"no plain loop for model._target_={cfg.model._target_}; this benchmark has {', '.join(PLAIN_LOOPS)}")
    precision = str(cfg.trainer.precision)

    data = SameBatch(warmup + steps * rounds, loop.sample(cfg, size))
    batch_size = 1
    L.seed_everything(cfg.seed, verbose=False)
    model = hydra.utils.instantiate(cfg.model)
    model.precise = bool(cfg.precise)
    torch.manual_seed(cfg.seed)  # the same seed before the same nets: the same initial weights
    plain = loop(cfg, DataLoader(data, batch_size=batch_size), precision)
    for net, twin in ((model.netG, plain.netG), (model.netD, plain.netD)):
        if not all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), twin.state_dict().values())):
            sys.exit("the ganforge and plain nets were not initialised identically")

    load0 = os.getloadavg()[0]
    timer = StepTimer(plain, warmup, steps)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=[timer], max_epochs=1, **TRAINING_ONLY)
    trainer.fit(model, train_dataloaders=DataLoader(data, batch_size=batch_size))
    shutil.rmtree(out_dir, ignore_errors=True)  # nothing is written there: no logger or checkpoints

    med_g, med_p = statistics.median(timer.times), statistics.median(plain.times)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB
    print(
        f"{cfg.model._target_.rsplit('.', 1)[-1]} {size}px batch {batch_size}, precision {precision}, "
        f"torch threads {torch.get_num_threads()}, "
        f"warm-up {warmup}, {rounds} rounds x {steps} steps each"
    )
    for name, times in (("ganforge", timer.times), ("plain", plain.times)):
        med = statistics.median(times)
        print(
            f"{name:9s} median {med:.4f} s/step  ({batch_size / med:.3f} images/s; "
            f"min {min(times):.4f}, max {max(times):.4f}, n={len(times)})"
        )
    if timer.gaps:
        print(
            f"ganforge between batches (end hook -> next start hook, not timed above): median {statistics.median(timer.gaps) * 1e3:.2f} ms"
        )
    # Other processes on the machine slow both loops; the alternation keeps the ratio fair, not the s/step.
    print(f"load average (1 min) at start {load0:.2f}, at end {os.getloadavg()[0]:.2f}")
    print(f"peak RSS {peak_gb:.2f} GB (process peak: both nets, optimizers and loops live in this process)")
    # Step i of a ganforge block and step i of the plain block after it ran moments apart: their ratio is
    # less sensitive to load drifting on a shared machine than the ratio of the two medians.
    paired = statistics.median(g / p for g, p in zip(timer.times, plain.times))
    print(f"median of paired per-step ratios ganforge/plain: {paired:.3f}")
    print(f"step-time ratio ganforge/plain: {med_g / med_p:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
