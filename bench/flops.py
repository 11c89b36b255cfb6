"""FLOPs of one real training step per model at its reference size, counted by torch.utils.flop_counter,
plus the parameter count DDP all-reduces, the backward passes and the aten operators per step (docs/scaling.md uses them).

    .venv/bin/python bench/flops.py [models=pix2pix,cyclegan,...] [json=<file>]

Each model is composed from its real config (model=<name>, its reference data size) and trained by a real
Trainer for one batch on the shared sample data (../shared/data); a callback enters FlopCounterMode from
on_train_batch_start to on_train_batch_end (totals only, no per-module table), so every phase of the step counts (G forward, D on real and
fake, every backward, gradient penalties, SPADE's VGG loss), but not the optimizer updates (elementwise).
FlopCounterMode counts matmuls and convolutions (forward and backward) as 2 x multiply-adds; norms,
activations and losses are not counted (they are memory-bound, not tensor-core work).
SinGAN trains every scale for one iteration (iters_per_scale=1) and reports each scale's iteration;
DiscoGAN's step is the mean of 3 iterations (one D update, two G updates, as its schedule alternates).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

import lightning.pytorch as L
import torch
import torchvision
from hydra import compose, initialize_config_dir
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from ganforge.cli.app import CONF_DIR
from ganforge.cli.train import build_data_and_model
from ganforge.metrics.weights import WEIGHTS

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


#: Trainer settings for a run that only trains: no logger, checkpoints, progress bar, model summary or
#: validation, so what a benchmark counts or times is the training steps alone
TRAINING_ONLY = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "limit_val_batches": 0,
    "num_sanity_val_steps": 0,
}


def training_only_trainer(**settings) -> L.Trainer:
    """A Trainer on one device with the TRAINING_ONLY settings."""
    return L.Trainer(devices=1, **TRAINING_ONLY, **settings)


#: model -> (overrides at the reference size, the reference per-GPU batch the doc scales to, where it comes from)
MODELS: dict[str, tuple[list[str], int, str]] = {
    "pix2pix": (["model=pix2pix", "data=paired", f"data.root={DATA}/pix2pix_paired_mini"], 1, "256 px, batch 1 (train_options.py)"),
    "bicyclegan": (
        ["model=bicyclegan", "data=paired", f"data.root={DATA}/pix2pix_paired_mini"],
        2,
        "256 px, batch 2 (BicycleGAN train_options.py)",
    ),
    "cyclegan": (
        ["model=cyclegan", "data=unpaired", f"data.root={DATA}/horse2zebra_mini"],
        1,
        "256 px, batch 1, ResNet-9 (base_options.py)",
    ),
    "discogan": (["model=discogan", "data=unpaired", f"data.root={DATA}/horse2zebra_mini"], 64, "64 px, batch 64 (image_translation.py)"),
    "dualgan": (["model=dualgan", "data=unpaired", f"data.root={DATA}/horse2zebra_mini"], 1, "256 px, batch 1 (DualGAN main.py)"),
    "spade": (
        ["model=spade", "data=coco_stuff", f"data.root={DATA}/coco_stuff_sample"],
        4,
        "256 px COCO-Stuff, batch 4 per GPU (assumed: batch 32 on 8 GPUs, as the SPADE authors trained)",
    ),
    "dcgan": (
        ["model=dcgan", "data=image_folder", f"data.root={DATA}/cifar10_frog/train", "data.image_size=64"],
        64,
        "64 px, batch 64 (dcgan/main.py)",
    ),
    "singan": (
        [
            "model=singan",
            "data=single_image",
            f"data.path={DATA}/singan/Images/balloons.png",
            "data.iters_per_epoch=1",
            "model.iters_per_scale=1",
            "model.lr_milestone=1",
        ],
        1,
        "balloons.png, 250 px longest side, one image",
    ),
}
#: measured at batch 1 (BicycleGAN: its minimum, 2) and scaled: conv and matmul FLOPs are linear in the batch
MEASURE_BATCH = {"bicyclegan": 2}
#: batches measured and averaged: DiscoGAN steps its Ds every 3rd iteration and its Gs in the other two
MEASURE_STEPS = {"discogan": 3}
SINGAN_ITERS_PER_SCALE = 2000  # model/singan.yaml iters_per_scale (config.py --niter 2000)


class GlobalOnly:
    """Stands in for FlopCounterMode's ModuleTracker, which attributes FLOPs to modules through backward
    hooks that break torch.autograd.grad (DualGAN's and SinGAN's gradient penalties): totals only."""

    parents = frozenset({"Global"})

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


class CountOps(TorchDispatchMode):
    """Counts the aten operators a step dispatches, views and optimizer steps excluded: on a GPU each is
    about one kernel launch, which bounds eager mode's step time from below when the kernels are small."""

    def __init__(self):
        super().__init__()
        self.ops = 0
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and not self.paused:
            self.ops += 1
        return func(*args, **(kwargs or {}))


class CountFlops(L.Callback):
    """FLOPs and backward passes of each training batch; the trainable parameters at the start of fit."""

    def __init__(self):
        self.steps: list[dict] = []
        self.params = 0
        self._mode: FlopCounterMode | None = None
        self._backwards = 0

    def on_train_start(self, trainer, pl_module):
        self.params = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        backward = pl_module.manual_backward

        def counted(*args, **kwargs):
            self._backwards += 1
            return backward(*args, **kwargs)

        pl_module.manual_backward = counted
        # Optimizer steps are not counted as ops: on CPU Adam runs per tensor, on a GPU its foreach
        # implementation is a few multi-tensor kernels per step.
        for opt in trainer.optimizers:
            opt.step = self._uncounted(opt.step)

    def _uncounted(self, step):
        def run(*args, **kwargs):
            self._ops.paused = True
            try:
                return step(*args, **kwargs)
            finally:
                self._ops.paused = False

        return run

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._backwards = 0
        self._mode = FlopCounterMode(display=False)
        self._mode.mod_tracker = GlobalOnly()
        self._mode.__enter__()
        self._ops = CountOps()
        self._ops.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._ops.__exit__(None, None, None)
        self._mode.__exit__(None, None, None)
        self.steps.append(
            {"flops": self._mode.get_total_flops(), "backwards": self._backwards, "ops": self._ops.ops, "epoch": trainer.current_epoch}
        )


def measure(name: str, work: str) -> dict:
    overrides, ref_batch, ref_note = MODELS[name]
    batch = MEASURE_BATCH.get(name, 1)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        batch_override = [] if name == "singan" else [f"data.batch_size={batch}"]  # SinGAN: one image, no batch
        cfg = compose(
            "train",
            overrides=[*overrides, *batch_override, f"paths.output_dir={work}", "data.num_workers=0", "callbacks=none", "logger=[]"],
        )
    L.seed_everything(0, verbose=False)
    datamodule, model = build_data_and_model(cfg)
    counter = CountFlops()
    limits = {} if name == "singan" else {"limit_train_batches": MEASURE_STEPS.get(name, 1), "max_epochs": 1}
    if model.max_epochs is not None:
        limits["max_epochs"] = model.max_epochs
    trainer = training_only_trainer(accelerator="cpu", callbacks=[counter], **limits)
    trainer.fit(model, datamodule=datamodule)
    per_image = [s["flops"] / batch for s in counter.steps]
    out = {
        "model": name,
        "reference": ref_note,
        "reference_batch": ref_batch,
        "measured_batch": batch,
        "params": counter.params,
        "backwards_per_step": counter.steps[0]["backwards"],
    }
    if name == "singan":
        out["flops_per_iteration_by_scale"] = per_image
        out["pyramid"] = [list(s) for s in model.pyramid]
        out["flops_per_step"] = max(per_image)  # the finest scale
        out["ops_per_step"] = counter.steps[-1]["ops"]
        out["flops_whole_run"] = sum(per_image) * SINGAN_ITERS_PER_SCALE
    else:
        out["flops_per_step"] = sum(per_image) / len(per_image) * ref_batch
        out["backwards_per_step"] = sum(s["backwards"] for s in counter.steps) / len(counter.steps)
        out["ops_per_step"] = sum(s["ops"] for s in counter.steps) / len(counter.steps)
    return out


def main(argv: list[str]) -> None:
    opts = dict(a.split("=", 1) for a in argv)
    names = opts.get("models", ",".join(MODELS)).split(",")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    work = tempfile.mkdtemp(prefix="ganforge_flops_")
    # SPADE's VGG loss: random VGG19 weights cost the same FLOPs as the ImageNet ones.
    os.environ["TORCH_HOME"] = work
    os.makedirs(os.path.join(work, "hub", "checkpoints"))
    torch.save(torchvision.models.vgg19(weights=None).state_dict(), os.path.join(work, "hub", "checkpoints", WEIGHTS["vgg19"].file))
    results = []
    for name in names:
        r = measure(name, work)
        results.append(r)
        print(
            f"{name:10s} params {r['params'] / 1e6:8.2f} M  backwards/step {r['backwards_per_step']:g}  "
            f"GFLOP/step at batch {r['reference_batch']}: {r['flops_per_step'] / 1e9:10.1f}  aten ops/step {r['ops_per_step']:.0f}"
            f"   ({r['reference']})",
            flush=True,
        )
        if name == "singan":
            print("           GFLOP per iteration by scale:", " ".join(f"{f / 1e9:.2f}" for f in r["flops_per_iteration_by_scale"]))
        if "json" in opts:  # after every model: a long run that fails later keeps what it measured
            Path(opts["json"]).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
