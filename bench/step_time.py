"""Time one pix2pix training step through ganforge and through a plain PyTorch loop on the same nets.

    .venv/bin/python bench/step_time.py model=pix2pix [precision=32-true|bf16-mixed] [steps=5] [warmup=3]
        [rounds=4] [size=256] [any Hydra override of src/ganforge/conf/train.yaml]

ganforge: the real Pix2Pix LightningModule driven by a real Trainer (no logger, checkpointing, progress bar
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
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from ganforge.app import CONF_DIR

OPTIONS = {"precision": "32-true", "steps": "5", "warmup": "3", "rounds": "4", "size": "256"}
PRECISIONS = ("32-true", "bf16-mixed")


class SameBatch(Dataset):
    """`length` copies of one random A/B pair: loading costs the same (and almost nothing) for both loops."""

    def __init__(self, length: int, channels_a: int, channels_b: int, size: int):
        g = torch.Generator().manual_seed(0)
        self.a = torch.rand(channels_a, size, size, generator=g) * 2 - 1
        self.b = torch.rand(channels_b, size, size, generator=g) * 2 - 1
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i):
        return {"A": self.a, "B": self.b}


def autocast_for(precision: str):
    # Lightning's bf16-mixed wraps the whole training_step (backward and optimizer steps too) in this
    # context, with cache_enabled=False (lightning/pytorch/plugins/precision/amp.py); the plain loop does the same.
    if precision == "bf16-mixed":
        return torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


class PlainPix2Pix:
    """The reference pix2pix iteration (Isola et al.'s train.py order), hand-written in plain PyTorch."""

    def __init__(self, cfg: DictConfig, loader: DataLoader, precision: str):
        self.netG = hydra.utils.instantiate(cfg.model.netG).train()
        self.netD = hydra.utils.instantiate(cfg.model.netD).train()
        self.opt_g = hydra.utils.instantiate(cfg.model.optimizer_g)(params=self.netG.parameters())
        self.opt_d = hydra.utils.instantiate(cfg.model.optimizer_d)(params=self.netD.parameters())
        self.lambda_l1 = float(cfg.model.lambda_l1)
        self.precision = precision
        self.batches = self._forever(loader)
        self.times: list[float] = []

    @staticmethod
    def _forever(loader):
        while True:
            yield from loader

    def set_d_requires_grad(self, flag: bool) -> None:
        for p in self.netD.parameters():
            p.requires_grad_(flag)

    def train_step(self, real_A: torch.Tensor, real_B: torch.Tensor) -> None:
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

    def run(self, n: int, record: bool = True) -> None:
        for _ in range(n):
            batch = next(self.batches)  # fetched outside the timed region, as Lightning's loop does
            t0 = time.perf_counter()
            self.train_step(batch["A"], batch["B"])
            if record:
                self.times.append(time.perf_counter() - t0)


class StepTimer(L.Callback):
    """Times ganforge's batches and runs a plain block after the warm-up and after each ganforge block."""

    def __init__(self, plain: PlainPix2Pix, warmup: int, steps: int):
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
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "train", overrides=[f"trainer.precision={opts['precision']}", f"paths.output_dir={out_dir}", *overrides]
        )
    if cfg.model._target_ != "ganforge.gans.pix2pix.Pix2Pix":
        sys.exit(f"this benchmark's plain loop is pix2pix's; got model._target_={cfg.model._target_}")
    precision = str(cfg.trainer.precision)

    data = SameBatch(warmup + steps * rounds, cfg.data.input_nc, cfg.data.output_nc, size)
    batch_size = 1
    L.seed_everything(cfg.seed, verbose=False)
    model = hydra.utils.instantiate(cfg.model)
    torch.manual_seed(cfg.seed)  # the same seed before the same nets: the same initial weights
    plain = PlainPix2Pix(cfg, DataLoader(data, batch_size=batch_size), precision)
    for net, twin in ((model.netG, plain.netG), (model.netD, plain.netD)):
        if not all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), twin.state_dict().values())):
            sys.exit("the ganforge and plain nets were not initialised identically")

    load0 = os.getloadavg()[0]
    timer = StepTimer(plain, warmup, steps)
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=[timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, train_dataloaders=DataLoader(data, batch_size=batch_size))
    shutil.rmtree(out_dir, ignore_errors=True)  # nothing is written there: no logger or checkpoints

    med_g, med_p = statistics.median(timer.times), statistics.median(plain.times)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB
    print(f"pix2pix {size}px batch {batch_size}, precision {precision}, torch threads {torch.get_num_threads()}, "
          f"warm-up {warmup}, {rounds} rounds x {steps} steps each")
    for name, times in (("ganforge", timer.times), ("plain", plain.times)):
        med = statistics.median(times)
        print(f"{name:9s} median {med:.4f} s/step  ({batch_size / med:.3f} images/s; "
              f"min {min(times):.4f}, max {max(times):.4f}, n={len(times)})")
    if timer.gaps:
        print(f"ganforge between batches (end hook -> next start hook, not timed above): "
              f"median {statistics.median(timer.gaps) * 1e3:.2f} ms")
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
