"""Training-step throughput on a CUDA device: each model in fp32, bf16-mixed and 16-mixed, eager and
torch.compile'd, NCHW and channels_last; images/s and the fraction of the device's peak FLOP/s.

    .venv/bin/python bench/gpu.py [--models pix2pix,cyclegan] [--precisions 32-true,bf16-mixed] [--steps 20]
        [--warmup 5] [--batch N] [--compile both|no|yes] [--channels-last both|no|yes] [--peak-tflops 989 | 495,989]
        [--compile-backend inductor] [--dry-run]

Each model is composed from its real config (model=<name>, the reference size of bench/flops.py) and trained
by a real Trainer (no logger, checkpoints, callbacks or validation): the module's own training_step, every phase
and optimizer step. A callback times each batch from on_train_batch_start to on_train_batch_end with the device
synchronised at both ends (data loading is not timed); the median of the timed batches gives images/s. The
first batch's time is printed alone: with compile it is mostly compile time. FLOPs per step are counted by
torch.utils.flop_counter on the first batch of the eager run (matmuls and convolutions, forward and backward).
The peak is the device's dense tensor-core rate from PEAKS: TF32 for 32-true (cuDNN runs fp32 convolutions on
TF32 by default), bf16/fp16 for the mixed precisions; --peak-tflops overrides it (one value, or TF32,16-bit).
SinGAN trains its whole pyramid for warmup + steps iterations a scale and reports its finest scale; compiled,
its critics stay eager (GANModule.eager_nets).

--dry-run runs on the CPU with tiny nets (ngf 8, 32 px, 1 warm-up and 1 timed step) to check the script itself:
16-mixed is skipped (Lightning has no fp16 autocast on the CPU), and each model is compiled once (32-true, NCHW)
with the aot_eager backend: TorchDynamo's capture and AOTAutograd's joint graph, as on a GPU, without
inductor's code generation, which on a GPU makes Triton kernels and on a 2-core CPU took 77 s of C++ compiling
for DCGAN alone.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings

import lightning.pytorch as L
import torch
import torchvision
from flops import DATA, MODELS, GlobalOnly, training_only_trainer
from hydra import compose, initialize_config_dir
from lightning.fabric.utilities.apply_func import apply_to_collection
from torch.utils.flop_counter import FlopCounterMode

from ganforge.cli.app import CONF_DIR
from ganforge.cli.train import build_data_and_model
from ganforge.metrics.weights import WEIGHTS

#: device name contains -> dense (TF32, bf16/fp16) tensor-core TFLOP/s from the vendors' data sheets (no sparsity).
#: Order matters: the first match wins ("H100 PCIe" before "H100", "L40S" before "L4").
PEAKS = [
    ("H200", (494.7, 989.4)),
    ("H100 PCIe", (378.0, 756.0)),
    ("H100 NVL", (417.5, 835.0)),
    ("H100", (494.7, 989.4)),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", (156.0, 312.0)),
    ("L40S", (183.0, 362.0)),
    ("L4", (60.0, 121.0)),
    ("RTX 4090", (82.6, 165.2)),
]
BENCH_MODELS = ("pix2pix", "bicyclegan", "cyclegan", "spade", "dcgan", "singan")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
BOTH = {"both": (False, True), "no": (False,), "yes": (True,)}
#: --dry-run: 32 px, 8-wide nets (debug=tiny picks debug_model/tiny_<model>: ngf/ndf 8), and what 32 px needs
DRY = {
    "pix2pix": ["data.load_size=32", "data.crop_size=32", "model.netG.num_downs=5"],
    "bicyclegan": ["data.load_size=32", "data.crop_size=32", "model.netG.num_downs=5"],
    "cyclegan": ["data.load_size=32", "data.crop_size=32"],
    "spade": ["data.load_size=32", "data.crop_size=32", "model.netG.num_upsampling_layers=normal"],
    "dcgan": ["data.image_size=32", "data.batch_size=4"],
    "singan": ["data.max_size=32", "data.min_size=20"],
}


class StepTimer(L.Callback):
    """Times `n` batches from epoch `first_epoch` on (SinGAN: its finest scale), then stops the fit; counts the
    FLOPs of the first of them if asked. The sample datasets are small, so other models run several epochs."""

    def __init__(self, n: int, first_epoch: int, sync, count_flops: bool):
        self.n, self.first_epoch, self.sync, self.count_flops = n, first_epoch, sync, count_flops
        self.times: list[float] = []
        self.flops = 0
        self._mode: FlopCounterMode | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.count_flops and not self.times and trainer.current_epoch >= self.first_epoch:
            self._mode = FlopCounterMode(display=False)
            self._mode.mod_tracker = GlobalOnly()  # totals only: its module hooks break autograd.grad (gradient penalties)
            self._mode.__enter__()
        self.sync()
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.sync()
        if trainer.current_epoch >= self.first_epoch:
            self.times.append(time.perf_counter() - self._t0)
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self.flops, self._mode = self._mode.get_total_flops(), None
        if len(self.times) >= self.n:
            trainer.should_stop = True


def to_channels_last(batch):
    return apply_to_collection(batch, torch.Tensor, lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t)


def run(name: str, precision: str, compiled: bool, channels_last: bool, args, work: str) -> dict:
    steps = args.warmup + args.steps
    overrides = [*MODELS[name][0], f"paths.output_dir={work}", "data.num_workers=0", "callbacks=none", "logger=[]"]
    if name == "singan":
        overrides += [f"data.iters_per_epoch={steps}", f"model.iters_per_scale={steps}", f"model.lr_milestone={steps}"]
    elif args.batch:
        overrides.append(f"data.batch_size={args.batch}")
    if args.dry_run:
        overrides = ["debug=tiny", *overrides, *DRY[name]]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    L.seed_everything(0, verbose=False)
    datamodule, model = build_data_and_model(cfg)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        transfer = model.on_after_batch_transfer
        model.on_after_batch_transfer = lambda batch, idx: to_channels_last(transfer(batch, idx))
    if compiled:
        model.compile_nets(backend=args.compile_backend)  # SinGAN's critics stay eager (GANModule.eager_nets)
    cuda = not args.dry_run
    first_epoch = model.max_epochs - 1 if name == "singan" else 0
    timer = StepTimer(steps, first_epoch, torch.cuda.synchronize if cuda else lambda: None, count_flops=not compiled)
    trainer = training_only_trainer(
        accelerator="cuda" if cuda else "cpu",
        precision=precision,
        callbacks=[timer],
        max_epochs=model.max_epochs if name == "singan" else 10**6,
    )
    trainer.fit(model, datamodule=datamodule)
    batch = 1 if name == "singan" else int(cfg.data.batch_size)
    return {"batch": batch, "first": timer.times[0], "step": statistics.median(timer.times[args.warmup :]), "flops": timer.flops}


def skip_reason(name: str, precision: str, compiled: bool, channels_last: bool, args) -> str | None:
    if not args.dry_run:
        return None
    if precision == "16-mixed":
        return "16-mixed: Lightning has no fp16 autocast on the CPU"
    if compiled and (precision != "32-true" or channels_last):
        return "compile: --dry-run compiles each model once, in 32-true without channels_last"
    return None


def device_peak(args) -> tuple[str, tuple[float, float] | None]:
    name = torch.cuda.get_device_name() if not args.dry_run else "CPU (dry run)"
    if args.peak_tflops:
        values = [float(v) for v in args.peak_tflops.split(",")]
        return name, (values[0], values[-1])
    return name, next((peak for key, peak in PEAKS if key in name), None)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(BENCH_MODELS))
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--steps", type=int, default=None, help="timed batches (default 20; --dry-run 1)")
    p.add_argument("--warmup", type=int, default=None, help="untimed batches first (default 5; --dry-run 1)")
    p.add_argument("--batch", type=int, default=None, help="batch size for all but SinGAN (default: the reference's)")
    p.add_argument("--peak-tflops", default=None, help="the device's peak TFLOP/s: one value, or TF32,16-bit")
    p.add_argument("--compile", choices=tuple(BOTH), default="both", help="compiled rows, eager rows or both (FLOPs need an eager row)")
    p.add_argument("--channels-last", choices=tuple(BOTH), default="both", help="channels_last rows, NCHW rows or both")
    p.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor; --dry-run: aot_eager)")
    p.add_argument("--dry-run", action="store_true", help="tiny nets on the CPU: checks the script, not the device")
    args = p.parse_args(argv)
    args.steps = args.steps or (1 if args.dry_run else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.dry_run else 5)
    args.compile_backend = args.compile_backend or ("aot_eager" if args.dry_run else "inductor")
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("no CUDA device: run on a machine with one, or use --dry-run to check the script on the CPU")
    names, precisions = args.models.split(","), args.precisions.split(",")
    for value, known in ((names, BENCH_MODELS), (precisions, PRECISIONS)):
        if set(value) - set(known):
            sys.exit(f"unknown {sorted(set(value) - set(known))}; choose from {', '.join(known)}")

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    work = tempfile.mkdtemp(prefix="ganforge_gpu_bench_")
    # SPADE's VGG loss: random VGG19 weights cost the same FLOPs as the ImageNet ones (--dry-run has no VGG loss).
    os.environ["TORCH_HOME"] = work
    os.makedirs(os.path.join(work, "hub", "checkpoints"))
    if "spade" in names and not args.dry_run:
        torch.save(torchvision.models.vgg19(weights=None).state_dict(), os.path.join(work, "hub", "checkpoints", WEIGHTS["vgg19"].file))
    device, peak = device_peak(args)
    print(f"device: {device}; peak TFLOP/s (TF32, 16-bit): {peak or 'unknown (give --peak-tflops)'}; torch {torch.__version__}")
    print(f"{args.warmup} warm-up + {args.steps} timed batches per row; data: {DATA}")
    header = f"{'model':10s} {'precision':10s} {'compile':7s} {'ch_last':7s} {'batch':>5s} {'images/s':>9s} {'ms/step':>9s}"
    print(f"{header} {'1st s':>7s} {'GFLOP/step':>10s} {'TFLOP/s':>8s} {'% peak':>7s}", flush=True)
    for name in names:
        flops = 0
        for precision, compiled, channels_last in itertools.product(precisions, BOTH[args.compile], BOTH[args.channels_last]):
            row = f"{name:10s} {precision:10s} {'yes' if compiled else 'no':7s} {'yes' if channels_last else 'no':7s}"
            reason = skip_reason(name, precision, compiled, channels_last, args)
            if reason:
                print(f"{row} skipped: {reason}", flush=True)
                continue
            r = run(name, precision, compiled, channels_last, args, work)
            flops = r["flops"] or flops  # counted in the eager rows, which come first
            tflops = flops / r["step"] / 1e12
            share = f"{100 * tflops / peak[precision != '32-true']:6.2f}%" if peak and flops else "      -"
            timing = f"{r['batch']:5d} {r['batch'] / r['step']:9.2f} {r['step'] * 1e3:9.2f} {r['first']:7.2f}"
            print(f"{row} {timing} {flops / 1e9:10.4g} {tflops:8.3f} {share}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
