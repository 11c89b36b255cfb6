"""Time one CycleGAN training step, 256 px resnet_9blocks, batch 1: ganforge's module under a
Lightning Trainer vs a plain hand-written loop on identical nets.

The two alternate batch by batch inside one process (a callback runs the plain step right after
each ganforge step), so machine load hits both alike; medians are taken after the warm-up steps.
Peak RSS is the whole process's (both loops hold the same nets).

    python bench/cyclegan_step.py [--precision 32-true|bf16-mixed] [--warmup 2] [--steps 5] [--size 256]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import resource
import statistics
import time
from functools import partial

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from flops import training_only_trainer

from ganforge.gans.cyclegan import CycleGAN
from ganforge.nets import NLayerDiscriminator, ResnetGenerator
from ganforge.utils.image_pool import ImagePool


class PlainCycleGAN:
    """The reference `optimize_parameters` written out: G step (Ds frozen), then both Ds on pooled fakes."""

    def __init__(self, G_A, G_B, D_A, D_B, bf16: bool):
        self.G_A, self.G_B, self.D_A, self.D_B = G_A, G_B, D_A, D_B
        adam = partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999))
        self.opt_g = adam([*G_A.parameters(), *G_B.parameters()])
        self.opt_d = adam([*D_A.parameters(), *D_B.parameters()])
        self.pool_A, self.pool_B = ImagePool(50), ImagePool(50)
        self.autocast = partial(torch.autocast, "cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext

    def _ds(self, flag: bool) -> None:
        for p in [*self.D_A.parameters(), *self.D_B.parameters()]:
            p.requires_grad_(flag)

    def step(self, A: torch.Tensor, B: torch.Tensor) -> None:
        ls = lambda x, real: F.mse_loss(x, torch.full_like(x, float(real)))  # noqa: E731
        with self.autocast():
            fake_B, fake_A = self.G_A(A), self.G_B(B)
            rec_A, rec_B = self.G_B(fake_B), self.G_A(fake_A)
            self._ds(False)
            loss_g = (
                ls(self.D_A(fake_B), 1)
                + ls(self.D_B(fake_A), 1)
                + 10 * F.l1_loss(rec_A, A)
                + 10 * F.l1_loss(rec_B, B)
                + 5 * F.l1_loss(self.G_A(B), B)
                + 5 * F.l1_loss(self.G_B(A), A)
            )
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self._ds(True)
        with self.autocast():
            fB, fA = self.pool_B.query(fake_B.detach()), self.pool_A.query(fake_A.detach())
            loss_d = 0.5 * (ls(self.D_A(B), 1) + ls(self.D_A(fB), 0)) + 0.5 * (ls(self.D_B(A), 1) + ls(self.D_B(fA), 0))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()


class Alternate(L.Callback):
    """Times each ganforge step (batch start to batch end), then one plain step on the same batch."""

    def __init__(self, plain: PlainCycleGAN):
        self.plain, self.ganforge_s, self.plain_s = plain, [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ganforge_s.append(time.perf_counter() - self.t0)
        t0 = time.perf_counter()
        self.plain.step(batch["A"], batch["B"])
        self.plain_s.append(time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()

    torch.manual_seed(0)
    nets = [
        ResnetGenerator(3, 3, 64, n_blocks=9),
        ResnetGenerator(3, 3, 64, n_blocks=9),
        NLayerDiscriminator(3, 64, 3, norm="instance"),
        NLayerDiscriminator(3, 64, 3, norm="instance"),
    ]
    plain = PlainCycleGAN(*copy.deepcopy(nets), bf16=args.precision == "bf16-mixed")
    adam = partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999))
    named = dict(zip(("netG_A", "netG_B", "netD_A", "netD_B"), nets))  # CycleGAN takes its nets by name only
    model = CycleGAN(**named, optimizer_g=adam, optimizer_d=adam, scheduler={"n_epochs": 100, "n_epochs_decay": 100})

    n = args.warmup + args.steps
    g = torch.Generator().manual_seed(1)
    data = [
        {"A": torch.rand(3, args.size, args.size, generator=g) * 2 - 1, "B": torch.rand(3, args.size, args.size, generator=g) * 2 - 1}
        for _ in range(n)
    ]
    timer = Alternate(plain)
    trainer = training_only_trainer(accelerator="cpu", max_epochs=1, limit_train_batches=n, precision=args.precision, callbacks=[timer])
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=1))

    gf, pl = statistics.median(timer.ganforge_s[args.warmup :]), statistics.median(timer.plain_s[args.warmup :])
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB
    print(
        f"CycleGAN step, {args.size} px, resnet_9blocks, batch 1, precision {args.precision}, "
        f"{torch.get_num_threads()} threads, median of {args.steps} after {args.warmup} warm-up steps"
    )
    print(f"ganforge: {gf:.3f} s/step ({1 / gf:.3f} images/s)")
    print(f"plain:    {pl:.3f} s/step ({1 / pl:.3f} images/s)")
    print(f"peak RSS (process, both loops): {rss_gb:.2f} GB")
    print("every step, s (warm-up first): ganforge", [round(t, 2) for t in timer.ganforge_s], "plain", [round(t, 2) for t in timer.plain_s])
    print(f"step-time ratio ganforge/plain: {gf / pl:.2f}")


if __name__ == "__main__":
    main()
