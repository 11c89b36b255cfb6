"""Images/s of each data module's training pipeline, with one worker and with N, and the decode/resize paths.

    .venv/bin/python bench/loader.py [images=200] [workers=N] [step=true]

For each kind of data (paired 286->256 on the pix2pix sample pairs, unpaired on horse2zebra_mini, SPADE's
label maps on the COCO-Stuff sample, CIFAR-10 frogs as an image folder) the real data module is built from
its config and its training Dataset (the same decode, crop, flip and tensor conversion as training) is read
through a DataLoader that draws `images` random indices (the small sample sets are read many times over; the
OS caches their files, as it would a dataset that fits in memory). `workers` defaults to the machine's
`default_workers` (the data configs' default) and is also run with 1.

The decode/resize section times one 256x256 JPEG pair (a facades A|B, 512x256) through the reference's path
(PIL decode, bicubic resize to 286x286) and through torchvision.io.decode_jpeg + transforms.v2 bicubic resize on
uint8 tensors, and reports how far apart the pixels are.

`step=true` also times a pix2pix fp32 training step at 256 px, batch 1 (bench/step_time.py's plain loop),
to put the loader's rate next to the rate it has to feed.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from torch.utils.data import DataLoader, RandomSampler

from ganforge.cli.app import CONF_DIR
from ganforge.utils.resolvers import default_workers

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA = {
    "paired 286->256 (pix2pix)": ["data.root=" + str(SHARED / "pix2pix_paired_mini")],
    "unpaired 286->256 (CycleGAN)": ["data=unpaired", "data.root=" + str(SHARED / "horse2zebra_mini")],
    "label maps 286->256 (SPADE)": ["model=spade", "data=coco_stuff", "data.root=" + str(SHARED / "coco_stuff_sample")],
    "CIFAR-10 frogs 32 px (DCGAN)": [
        "model=dcgan",
        "data=image_folder",
        "data.root=" + str(SHARED / "cifar10_frog" / "train"),
        "data.image_size=32",
    ],
}
OPTIONS = {"images": "200", "workers": str(default_workers()), "step": "false"}


def train_dataset(overrides: list[str]):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "data.num_workers=0"])
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    return dm.train_set, int(cfg.data.batch_size)


def images_per_second(ds, batch_size: int, workers: int, n: int) -> float:
    n = max(n, 5 * batch_size)  # at least 4 timed batches after the first
    sampler = RandomSampler(ds, replacement=True, num_samples=n, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(
        ds, batch_size=batch_size, sampler=sampler, num_workers=workers, persistent_workers=False, prefetch_factor=4 if workers else None
    )
    it = iter(loader)
    next(it)  # worker start-up is not the steady rate
    t0, seen = time.perf_counter(), 0
    for batch in it:
        seen += len(next(iter(batch.values())))
    return seen / (time.perf_counter() - t0)


def decode_paths(repeats: int = 50) -> None:
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
    from torchvision.transforms import v2

    path = SHARED / "pix2pix_paired_mini" / "train" / "1.jpg"
    data = read_file(str(path))

    def pil():
        with Image.open(path) as im:
            ab = im.convert("RGB")
        w, h = ab.size
        return [ab.crop(box).resize((286, 286), Image.Resampling.BICUBIC) for box in ((0, 0, w // 2, h), (w // 2, 0, w, h))]

    resize = v2.Resize((286, 286), interpolation=v2.InterpolationMode.BICUBIC, antialias=True)

    def tv():
        ab = decode_jpeg(data, mode=ImageReadMode.RGB)
        w = ab.shape[-1]
        return [resize(ab[:, :, : w // 2]), resize(ab[:, :, w // 2 :])]

    times = {}
    for name, fn in (("PIL decode + PIL bicubic (reference)", pil), ("torchvision.io decode_jpeg + v2 bicubic", tv)):
        fn()
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        times[name] = statistics.median(samples)
    a = np.stack([np.asarray(x, dtype=np.int16) for x in pil()])
    b = np.stack([x.permute(1, 2, 0).numpy().astype(np.int16) for x in tv()])
    diff = np.abs(a - b)
    print("\n| decode + resize of one A|B JPEG (512x256 -> 2 x 286x286) | ms | pairs/s |")
    print("|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {t * 1e3:.2f} | {1 / t:.0f} |")
    print(
        f"\npixels, torchvision path vs reference (uint8): mean |diff| {diff.mean():.3f}, max {diff.max()}, "
        f"{(diff > 0).mean() * 100:.1f}% of values differ"
    )


def step_rate() -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from step_time import PlainPix2Pix, SameBatch

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[])
    plain = PlainPix2Pix(cfg, DataLoader(SameBatch(10, PlainPix2Pix.sample(cfg, 256)), batch_size=1), "32-true")
    plain.run(2, record=False)
    plain.run(4)
    return 1 / statistics.median(plain.times)


def main(argv: list[str]) -> None:
    opts = dict(OPTIONS)
    for arg in argv:
        key, _, value = arg.partition("=")
        if key not in opts:
            sys.exit(f"unknown option {arg!r}; options: {', '.join(f'{k}=' for k in opts)}")
        opts[key] = value
    n, workers = int(opts["images"]), int(opts["workers"])
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores, torch {torch.__version__}, {n} images per measurement, load average {os.getloadavg()[0]:.2f}")
    counts = sorted({1, workers})
    print("\n| data module | batch | " + " | ".join(f"{w} worker{'s' * (w > 1)}, images/s" for w in counts) + " |")
    print("|---|---|" + "---|" * len(counts))
    for name, overrides in DATA.items():
        ds, batch = train_dataset(overrides)
        rates = [images_per_second(ds, batch, w, n) for w in counts]
        print(f"| {name} | {batch} | " + " | ".join(f"{r:.1f}" for r in rates) + " |")
    decode_paths()
    if opts["step"] == "true":
        print(f"\npix2pix fp32 training step, 256 px batch 1 (plain loop): {step_rate():.2f} images/s")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
