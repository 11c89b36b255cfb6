"""One training image and its SinGAN pyramid (reference `functions.adjust_scales2image`, `creat_reals_pyramid`).

The image is shrunk so its longer side is at most `max_size`; the scale factor is then refit
from `scale_factor` so the coarsest scale's shorter side is `min_size` (min_size + 1 where the
float product lands a hair above it, as in the reference). Every scale is resized with the
reference's `imresize` (nets/imresize.py) from the shrunk image. Batches carry no pixels (the
module keeps the pyramid as buffers): an epoch is `iters_per_epoch` iterations.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from ganforge.data.module import GANDataModule
from ganforge.nets.imresize import from_levels, imresize, reference_layout
from ganforge.utils.errors import ConfigError, ImageFileError
from ganforge.utils.imageio import load_image

#: how `pyramid_sizes` rounds the scale counts: ceil() in adjust_scales2image, int() in adjust_scales2image_SR
ROUNDINGS: dict[str, Callable[[float], int]] = {"ceil": math.ceil, "floor": int}


def pyramid_sizes(
    h: int, w: int, min_size: int = 25, max_size: int = 250, scale_factor: float = 0.75, rounding: str = "ceil"
) -> tuple[list[tuple[int, int]], float]:
    """[(h, w)] from coarsest to finest, and the refit scale factor (reference formulas).

    `rounding` rounds the scale counts: up in `adjust_scales2image` (training), down (int()) in
    `adjust_scales2image_SR` (SR.py). The SR variant divides by the width where it means the longer
    side (`max(real_.shape[0], real_.shape[3])`, shape[0] being the batch); here it is the longer side
    in both, so a portrait image gets no extra scales."""
    if min(h, w) <= min_size:
        raise ConfigError(f"the image is {w}x{h}: its shorter side must exceed data.min_size={min_size}")
    rnd = ROUNDINGS[rounding]
    num_scales = rnd(math.log(min_size / min(h, w), scale_factor)) + 1
    scale2stop = rnd(math.log(min(max_size, max(h, w)) / max(h, w), scale_factor))
    stop_scale = num_scales - scale2stop
    scale1 = min(max_size / max(h, w), 1.0)
    H, W = math.ceil(h * scale1), math.ceil(w * scale1)
    if stop_scale < 1 or min(H, W) <= min_size:
        raise ConfigError(
            f"the image is {W}x{H} after fitting data.max_size={max_size}: too small for a pyramid down to "
            f"data.min_size={min_size}; lower min_size or raise max_size"
        )
    sf = math.pow(min_size / min(H, W), 1 / stop_scale)
    # imresize's output size: ceil(side * factor) in float64, without slack (the reference's sizes)
    sizes = [(math.ceil(H * math.pow(sf, stop_scale - i)), math.ceil(W * math.pow(sf, stop_scale - i))) for i in range(stop_scale)]
    return [*sizes, (H, W)], sf


def image_levels(img) -> torch.Tensor:
    """An 8-bit PIL image as (1, C, H, W) float64 levels 0..255, for `from_levels`."""
    a = np.asarray(img, dtype=np.uint8)
    a = a[:, :, None] if a.ndim == 2 else a
    return reference_layout(torch.from_numpy(a.copy()).permute(2, 0, 1).unsqueeze(0).double())


def build_pyramid(image: torch.Tensor, sizes: list[tuple[int, int]], scale_factor: float, max_size: int) -> list[torch.Tensor]:
    """`image` (the file, [-1, 1]) at every pyramid size, as the reference: shrunk to at most `max_size`
    (train: `imresize(real_, opt.scale1)`), then every scale resized from that by scale_factor ** (top - n)
    (`creat_reals_pyramid`). A factor of 1 still takes imresize's 8-bit round trip, as there."""
    h, w = image.shape[-2:]
    real = imresize(image, min(max_size / max(h, w), 1.0))
    top = len(sizes) - 1
    reals = [imresize(real, math.pow(scale_factor, top - n)) for n in range(len(sizes))]
    got = [tuple(r.shape[-2:]) for r in reals]
    if got != [tuple(s) for s in sizes]:
        raise ValueError(f"imresize gave the sizes {got}, not the pyramid's {sizes}")
    return reals


class _Iterations(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class _SampleIndices(torch.utils.data.Dataset):
    """Validation items: {"index": i}, one per random sample that metrics (SIFID) draw from the model."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"index": i}


class SingleImageDataModule(GANDataModule):
    def __init__(
        self,
        path: str | None = None,
        channels: int = 3,
        max_size: int = 250,
        min_size: int = 25,
        scale_factor: float = 0.75,
        iters_per_epoch: int = 100,
        scale_rounding: str = "ceil",
        num_workers: int = 0,
        # Keys of the crop-based datasets that `debug=tiny` sets; a single image is never cropped.
        load_size: int | None = None,
        crop_size: int | None = None,
        num_val_images: int | None = None,  # random samples the metrics callback scores (SIFID); null: 50
    ):
        super().__init__()
        self.path = path
        self.channels = channels
        self.min_size, self.max_size, self.scale_factor = min_size, max_size, scale_factor
        self.scale_rounding = scale_rounding
        self.iters_per_epoch = iters_per_epoch
        self.num_val_samples = num_val_images or 50
        self.pyramid: list[tuple[int, int]] = []
        self.reals: list[torch.Tensor] = []

    def setup(self, stage: str | None = None) -> None:
        # Checked here, not in __init__: Hydra would wrap the error raised while instantiating.
        if not self.path:
            raise ConfigError("data.path=<image> is required, e.g. data.path=../shared/data/singan/Images/balloons.png")
        if self.channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 or 3, got {self.channels}")
        if self.scale_rounding not in ROUNDINGS:
            raise ConfigError(f"data.scale_rounding={self.scale_rounding!r} is unknown; choose one of {', '.join(ROUNDINGS)}")
        if self.reals:
            return
        img = load_image(self.path, channels=self.channels)  # RGBA/palette/16-bit -> RGB or L
        try:
            self.pyramid, self.refit_factor = pyramid_sizes(
                img.size[1], img.size[0], self.min_size, self.max_size, self.scale_factor, self.scale_rounding
            )
        except ConfigError as e:
            raise ImageFileError(self.path, str(e)) from None
        real = from_levels(image_levels(img))  # the file as the reference reads it (np2torch)
        self.reals = build_pyramid(real, self.pyramid, self.refit_factor, self.max_size)

    def model_settings(self) -> dict:
        """SinGAN's nets follow from the image: one G/D pair per scale of its pyramid."""
        self.setup()
        return {"pyramid": [list(s) for s in self.pyramid], "scale_factor": self.refit_factor, "iters_per_epoch": self.iters_per_epoch}

    def train_dataloader(self) -> DataLoader:
        # stateful: a mid-epoch checkpoint resumes at the next iteration
        return StatefulDataLoader(_Iterations(self.iters_per_epoch), batch_size=1)

    def val_dataloader(self) -> DataLoader:
        # One batch, so validation_step (the reconstruction PSNR) runs once an epoch; the metrics callback
        # draws its random samples from these items, one per index.
        return DataLoader(_SampleIndices(self.num_val_samples), batch_size=self.num_val_samples)

    def fixed_val_batch(self, n: int) -> dict:
        """n sample rows for the image grid (the module draws them; the batch only counts them)."""
        return {"index": torch.arange(n)}
