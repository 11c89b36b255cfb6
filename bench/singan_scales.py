"""Time SinGAN's recipe per scale on one image and extrapolate to the full 2000 iterations a scale.

The full balloons pyramid takes hours on a CPU, so each scale trains only `--iters` iterations
(the real training step: 3 D + 3 G steps, in a Lightning Trainer, all scales in order with warm
start and freezing). The first iteration of a scale (noise amp, warm start) is left out of the
median; total = sum over scales of median s/iter * iters_per_scale. Prints a Markdown table.

    python bench/singan_scales.py [--image ../shared/data/singan/Images/balloons.png] [--iters 20]
                                  [--precision 32-true|bf16-mixed] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from functools import partial

import lightning.pytorch as L
import torch

from ganforge.data.single_image import SingleImageDataModule
from ganforge.gans.singan import SinGAN


class IterationTimer(L.Callback):
    def __init__(self):
        self.times: dict[int, list[float]] = {}
        self.cpu: dict[int, list[float]] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self._t, self._c = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        n = trainer.current_epoch // module.epochs_per_scale
        self.times.setdefault(n, []).append(time.perf_counter() - self._t)
        self.cpu.setdefault(n, []).append(time.process_time() - self._c)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", default="../shared/data/singan/Images/balloons.png")
    p.add_argument("--iters", type=int, default=20, help="iterations timed per scale")
    p.add_argument("--iters-per-scale", type=int, default=2000, help="the recipe's, for the extrapolation")
    p.add_argument("--precision", default="32-true")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    adam = partial(torch.optim.Adam, lr=5e-4, betas=(0.5, 0.999))
    model = SinGAN(optimizer_g=adam, optimizer_d=adam, iters_per_scale=args.iters)
    dm = SingleImageDataModule(args.image, iters_per_epoch=args.iters)
    timer = IterationTimer()
    trainer = L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        precision=args.precision,
        callbacks=[timer],
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    wall = time.perf_counter() - start

    print(
        f"image {args.image}, precision {args.precision}, torch threads {torch.get_num_threads()}, "
        f"load average at the end {os.getloadavg()[0]:.1f}, {args.iters} iterations timed per scale"
    )
    # CPU seconds of this process: on a busy machine with --threads 1 this is close to the
    # iteration's wall time on an idle core, which the wall clock is not.
    print("| scale | size (h x w) | nfc | wall s/iter | CPU s/iter | x2000, wall | x2000, CPU |")
    print("|---|---|---|---|---|---|---|")
    total = cpu_total = 0.0
    for n, (h, w) in enumerate(model.pyramid):
        s = statistics.median(timer.times[n][1:] or timer.times[n])
        c = statistics.median(timer.cpu[n][1:] or timer.cpu[n])
        total, cpu_total = total + s * args.iters_per_scale, cpu_total + c * args.iters_per_scale
        print(
            f"| {n} | {h} x {w} | {model.nfc_at(n)} | {s:.3f} | {c:.3f} | "
            f"{s * args.iters_per_scale / 60:.1f} min | {c * args.iters_per_scale / 60:.1f} min |"
        )
    print(f"| total | | | | | {total / 3600:.2f} h | {cpu_total / 3600:.2f} h |")
    print(f"(wall time of this short run: {wall:.0f} s)")


if __name__ == "__main__":
    main()
