"""fp32 against bf16-mixed training steps of one ganforge model, alternated batch by batch inside one `fit`.

    python bench/bf16_step.py model=pix2pix|bicyclegan|cyclegan [rounds=6] [warmup=2] [size=256] [profile=0]
        [any Hydra override of conf/train.yaml]

The model is built as `train.py` builds it (pix2pix: `model=pix2pix data=paired`; BicycleGAN:
`experiment=bicyclegan_edges2shoes`, batch 2; CycleGAN: `experiment=cyclegan_horse2zebra`) and driven by a real
Trainer on one in-memory batch (no logger, checkpoints, progress bar or validation). Before each batch a callback
installs one of three precision plugins: `fp32` (Lightning's `Precision`), `bf16` (Lightning's
`MixedPrecision("bf16-mixed")` as it comes: autocast with its weight-cast cache off) and `bf16c` (ganforge's
`CachedCastBF16`, what `trainer.precision=bf16-mixed` runs on a CPU), in the order fp32, bf16, bf16c, bf16c, bf16,
fp32, ... so all see the same weights and the same drift of the machine, each as often first as last. Each batch is
timed from `on_train_batch_start` to `on_train_batch_end` in process CPU time and in wall time. With `profile=N`,
N more bf16c batches run under torch.profiler and the ops are printed by self CPU time.
The last lines are the ratios of the medians, fp32 / bf16 and fp32 / bf16c.
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings

import hydra
import lightning.pytorch as L
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from step_time import SameBatch  # this folder is first on sys.path when run as a script
from torch.utils.data import DataLoader

from ganforge.cli.app import CONF_DIR
from ganforge.gans.precision import CachedCastBF16

MODELS = {
    "pix2pix": ["model=pix2pix", "data=paired"],
    "bicyclegan": ["experiment=bicyclegan_edges2shoes"],
    "cyclegan": ["experiment=cyclegan_horse2zebra"],
}
OPTIONS = {"model": "pix2pix", "rounds": "6", "warmup": "2", "size": "256", "profile": "0"}
ORDER = ("fp32", "bf16", "bf16c", "bf16c", "bf16", "fp32")


class Alternate(L.Callback):
    """Sets each batch's precision plugin and times the batch."""

    def __init__(self, warmup: int, profile: int):
        self.warmup, self.profile = warmup, profile
        self.plugins = {"fp32": Precision(), "bf16": MixedPrecision("bf16-mixed", "cpu"), "bf16c": CachedCastBF16()}
        self.times: dict[str, list[tuple[float, float]]] = {k: [] for k in self.plugins}
        self.n_timed = 0
        self.profiler: torch.profiler.profile | None = None

    def mode(self, batch_idx: int) -> str:
        i = batch_idx - len(ORDER) // 2 * self.warmup
        return "bf16c" if i >= self.n_timed else ORDER[batch_idx % len(ORDER)] if i < 0 else ORDER[i % len(ORDER)]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        trainer.strategy.precision_plugin = self.plugins[self.mode(batch_idx)]
        if batch_idx == len(ORDER) // 2 * self.warmup + self.n_timed and self.profile:
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.profiler.__enter__()
        self._t = (time.process_time(), time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        cpu, wall = time.process_time() - self._t[0], time.perf_counter() - self._t[1]
        if len(ORDER) // 2 * self.warmup <= batch_idx < len(ORDER) // 2 * self.warmup + self.n_timed:
            self.times[self.mode(batch_idx)].append((cpu, wall))


def main(argv: list[str]) -> None:
    opts, overrides = dict(OPTIONS), []
    for arg in argv:
        key, sep, value = arg.partition("=")
        (opts.__setitem__(key, value) if sep and key in OPTIONS else overrides.append(arg))
    rounds, warmup, size, profile = (int(opts[k]) for k in ("rounds", "warmup", "size", "profile"))
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    out_dir = tempfile.mkdtemp(prefix="ganforge_bench_")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*MODELS[opts["model"]], "trainer.precision=32-true", f"paths.output_dir={out_dir}", *overrides])
    batch_size = int(cfg.data.batch_size)
    g = torch.Generator().manual_seed(0)
    sample = {
        "A": torch.rand(int(cfg.data.input_nc), size, size, generator=g) * 2 - 1,
        "B": torch.rand(int(cfg.data.output_nc), size, size, generator=g) * 2 - 1,
    }
    timer = Alternate(warmup, profile)
    timer.n_timed = len(ORDER) // 2 * rounds
    n_batches = len(ORDER) // 2 * (warmup + rounds) + profile
    L.seed_everything(cfg.seed, verbose=False)
    model = hydra.utils.instantiate(cfg.model)
    model.precise = bool(cfg.get("precise", False))
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
        plugins=None,
    )
    load0 = os.getloadavg()[0]
    trainer.fit(model, train_dataloaders=DataLoader(SameBatch(n_batches * batch_size, sample), batch_size=batch_size))
    shutil.rmtree(out_dir, ignore_errors=True)
    print(
        f"{opts['model']} {size}px batch {batch_size}, torch threads {torch.get_num_threads()}, "
        f"{rounds} rounds ({', '.join(ORDER)}, ...) after {warmup} warm-up rounds; load {load0:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    med = {}
    for mode, times in timer.times.items():
        med[mode] = cpu, wall = statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)
        print(f"{mode}: median CPU {cpu:.3f} s/step, wall {wall:.3f} s/step (n={len(times)})")
    if timer.profiler is not None:
        timer.profiler.__exit__(None, None, None)
        print(timer.profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
    for mode in ("bf16", "bf16c"):
        print(f"ratio fp32/{mode}: CPU {med['fp32'][0] / med[mode][0]:.2f}, wall {med['fp32'][1] / med[mode][1]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
