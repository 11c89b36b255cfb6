"""One training image and its SinGAN pyramid (reference `functions.adjust_scales2image`).

The image is shrunk so its longer side is at most `max_size`; the scale factor is then refit
from `scale_factor` so the coarsest scale's shorter side is exactly `min_size`. Batches carry
no pixels (the module keeps the pyramid as buffers): an epoch is `iters_per_epoch` iterations.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from ganforge.data.module import GANDataModule
from ganforge.nets.singan import EPS as _EPS
from ganforge.nets.singan import ceil_size, resize
from ganforge.utils.errors import ConfigError, ImageFileError
from ganforge.utils.imageio import image_to_tensor, load_image


def _floor(x: float) -> int:
    return math.floor(x + _EPS)


ROUNDINGS = {"ceil": ceil_size, "floor": _floor}


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
    H, W = ceil_size(h * scale1), ceil_size(w * scale1)
    if stop_scale < 1 or min(H, W) <= min_size:
        raise ConfigError(
            f"the image is {W}x{H} after fitting data.max_size={max_size}: too small for a pyramid down to "
            f"data.min_size={min_size}; lower min_size or raise max_size"
        )
    sf = (min_size / min(H, W)) ** (1 / stop_scale)
    sizes = [(ceil_size(H * sf ** (stop_scale - i)), ceil_size(W * sf ** (stop_scale - i))) for i in range(stop_scale)]
    return [*sizes, (H, W)], sf


def build_pyramid(image: torch.Tensor, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """The image at every pyramid size, each resized from the full image (reference `creat_reals_pyramid`)."""
    return [resize(image, s).clamp(-1, 1) for s in sizes]


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
        self.reals = build_pyramid(image_to_tensor(img).unsqueeze(0), self.pyramid)

    def model_settings(self) -> dict:
        """SinGAN's nets follow from the image: one G/D pair per scale of its pyramid."""
        self.setup()
        return {"pyramid": [list(s) for s in self.pyramid], "iters_per_epoch": self.iters_per_epoch}

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
