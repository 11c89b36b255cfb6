"""The inference API's costs, measured side by side in one run (docs/benchmarks.md):

1. start-up: a fresh process that imports ganforge and loads a full-size pix2pix (unet_256) model folder, against one
   that rebuilds the LightningModule from the same checkpoint the way ganforge did before `ganforge.load` existed
   (`ganforge.checkpoint.build_model` of an older checkout, given with --old-src; skipped without it);
2. `translate` of a 256x256 PIL image against the bare generator forward on the same tensor (same mode, no grad).

    python bench/inference.py [--old-src <checkout of 4ea6dd5>/src] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_model(folder: Path) -> Path:
    """A full-size pix2pix (unet_256, 70x70 PatchGAN, the reference widths) with its initial weights: a checkpoint
    (weights and run config) and its model folder."""
    sys.path.insert(0, str(REPO))
    import hydra
    import torch
    from omegaconf import OmegaConf

    from ganforge.models import load
    from tests.conftest import compose_train

    cfg = compose_train(folder / "run", [f"data.root={REPO.parent / 'shared' / 'data' / 'pix2pix_paired_mini'}"])
    torch.manual_seed(0)
    module = hydra.utils.instantiate(cfg.model)
    module.run_config = OmegaConf.to_container(cfg, resolve=True)
    ckpt = folder / "pix2pix.ckpt"
    torch.save(module.weights_checkpoint(), ckpt)
    load(ckpt).save_pretrained(folder / "model")
    return ckpt


def timed(code: str, env: dict | None = None) -> tuple[float, float]:
    """(wall s, CPU s) of a fresh process running `code`: on a busy machine the CPU time is the steadier figure."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise RuntimeError(f"{code!r} failed ({status})")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def startup(folder: Path, ckpt: Path, old_src: str | None, repeats: int) -> None:
    new = f"import ganforge; ganforge.load({str(folder / 'model')!r})"
    old = f"from ganforge.checkpoint import build_model; build_model({str(ckpt)!r})"
    rows = {"ganforge.load(model folder)": [], "build_model(ckpt), before": []}
    for _ in range(repeats):  # alternated, so drift on a shared machine hits both
        rows["ganforge.load(model folder)"].append(timed(new))
        if old_src:
            rows["build_model(ckpt), before"].append(timed(old, {"PYTHONPATH": old_src}))
    print("\nStart-up: a fresh process, import + load of a full-size pix2pix (median of", repeats, "runs)")
    print(f"| {'command':<30} | wall s (median) | CPU s (median) |\n|---|---|---|")
    for name, times in rows.items():
        if times:
            print(f"| {name:<30} | {statistics.median(t[0] for t in times):.2f} | {statistics.median(t[1] for t in times):.2f} |")
    if rows["build_model(ckpt), before"]:
        for i, what in enumerate(("wall", "CPU")):
            ratio = statistics.median(t[i] for t in rows["ganforge.load(model folder)"]) / statistics.median(
                t[i] for t in rows["build_model(ckpt), before"]
            )
            print(f"ratio load / build_model ({what}): {ratio:.2f}")


def translate_overhead(folder: Path, repeats: int) -> None:
    import numpy as np
    import torch
    from PIL import Image

    import ganforge
    from ganforge.models.base import running

    torch.set_num_threads(1)
    model = ganforge.load(folder / "model")
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32).transpose(2, 0, 1).copy())[None] / 127.5 - 1

    def bare() -> None:
        with running(model.netG, train_mode=model.spec.test_dropout):
            model.netG(x)

    def api() -> None:
        model.translate(img)

    for fn in (bare, api):  # warm-up
        fn()
    times = {"bare netG(x)": [], "model.translate(PIL)": []}
    for _ in range(repeats):
        for name, fn in (("bare netG(x)", bare), ("model.translate(PIL)", api)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\npix2pix translate of a 256x256 image, one thread (median of {repeats}, alternated)")
    print("| call | ms |\n|---|---|")
    for name, t in med.items():
        print(f"| {name} | {t * 1000:.1f} |")
    print(f"ratio translate / bare forward: {med['model.translate(PIL)'] / med['bare netG(x)']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old-src", help="src/ of a checkout from before ganforge.load (e.g. commit 4ea6dd5)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ckpt = make_model(folder)
        startup(folder, ckpt, args.old_src, args.repeats)
        translate_overhead(folder, max(args.repeats, 10))


if __name__ == "__main__":
    main()
