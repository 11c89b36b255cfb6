"""pix2pix/CycleGAN preprocessing (reference `data/base_dataset.py`), as plain functions.

`get_params` draws the random crop position and flip once per sample; `build_transform`
applies them, so A and B of a pair get the same crop and flip. After the preprocess the
size is fitted to a multiple of `size_multiple` (a U-Net with n downsamplings needs 2**n),
which the reference does not do: its `preprocess=none` crashes unet_256 on any image that
is not a multiple of 256.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from ganforge.utils.errors import ConfigError
from ganforge.utils.imageio import fit_size

PREPROCESS_CHOICES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
FIT_CHOICES = ("resize", "pad")

Rng = random.Random | torch.Generator | None


def check_preprocess(preprocess: str, fit: str = "resize") -> None:
    if preprocess not in PREPROCESS_CHOICES:
        raise ConfigError(f"Unknown preprocess {preprocess!r}; choose one of {', '.join(PREPROCESS_CHOICES)}")
    if fit not in FIT_CHOICES:
        raise ConfigError(f"Unknown fit {fit!r}; choose one of {', '.join(FIT_CHOICES)}")


def scale_width_size(w: int, h: int, load_size: int, crop_size: int) -> tuple[int, int]:
    """Reference `__scale_width`: width -> load_size keeping the aspect ratio, but the
    height never below crop_size (so a crop_size square always fits)."""
    if w == load_size and h >= crop_size:
        return w, h
    return load_size, int(max(load_size * h / w, crop_size))


def preprocessed_size(preprocess: str, load_size: int, crop_size: int, w: int, h: int) -> tuple[int, int]:
    """Size after the resize/scale step, before cropping."""
    if "resize" in preprocess:
        return load_size, load_size
    if "scale_width" in preprocess:
        return scale_width_size(w, h, load_size, crop_size)
    return w, h


def _randint(rng: Rng, high: int) -> int:
    """Uniform integer in [0, high]."""
    if isinstance(rng, torch.Generator):
        return int(torch.randint(0, high + 1, (1,), generator=rng).item())
    return (rng or random).randint(0, high)


def _rand(rng: Rng) -> float:
    if isinstance(rng, torch.Generator):
        return float(torch.rand(1, generator=rng).item())
    return (rng or random).random()


def get_params(preprocess: str, load_size: int, crop_size: int, size: tuple[int, int], flip: bool, rng: Rng = None) -> dict:
    """Random crop position and flip for one sample of original `size` (w, h).

    `rng=None` uses the global `random` module, which Lightning's `seed_everything` seeds
    (per DataLoader worker too), so runs are reproducible without passing a generator.
    """
    new_w, new_h = preprocessed_size(preprocess, load_size, crop_size, *size)
    x = _randint(rng, max(0, new_w - crop_size))
    y = _randint(rng, max(0, new_h - crop_size))
    return {"crop_pos": (x, y), "flip": bool(flip and _rand(rng) > 0.5)}


def center_params(preprocess: str, load_size: int, crop_size: int, size: tuple[int, int]) -> dict:
    """Deterministic params for validation/test: centre crop, no flip."""
    new_w, new_h = preprocessed_size(preprocess, load_size, crop_size, *size)
    return {"crop_pos": (max(0, new_w - crop_size) // 2, max(0, new_h - crop_size) // 2), "flip": False}


def _crop(img: Image.Image, pos: tuple[int, int], size: int) -> Image.Image:
    # An image smaller than crop_size keeps its own size on that side: the reference would
    # crop past the border and fill it with black.
    w, h = img.size
    x, y = min(pos[0], max(0, w - size)), min(pos[1], max(0, h - size))
    return img.crop((x, y, x + min(size, w), y + min(size, h)))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """8-bit PIL image -> float tensor (C, H, W) in [-1, 1]."""
    a = np.asarray(img, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(a.transpose(2, 0, 1).copy()).div_(127.5).sub_(1.0)


def build_transform(
    preprocess: str,
    load_size: int,
    crop_size: int,
    params: dict,
    channels: int,
    size_multiple: int = 1,
    fit: str = "resize",
    method: Image.Resampling = Image.Resampling.BICUBIC,
) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> tensor (channels, H, W) in [-1, 1], with H and W multiples of `size_multiple`.

    preprocess (reference semantics): resize_and_crop = resize to load_size square, crop
    crop_size; crop = crop only; scale_width = width to load_size, keep aspect;
    scale_width_and_crop = that, then crop; none = nothing (only the size fit).
    fit="pad" reflect-pads at the right and bottom, so outputs crop back to [:h, :w].
    """
    check_preprocess(preprocess, fit)
    if size_multiple < 1:
        raise ConfigError(f"size_multiple must be >= 1, got {size_multiple}")
    mode = "RGB" if channels == 3 else "L"

    def transform(img: Image.Image) -> torch.Tensor:
        img = img.convert(mode)
        if "resize" in preprocess:
            img = img.resize((load_size, load_size), method)
        elif "scale_width" in preprocess:
            size = scale_width_size(*img.size, load_size, crop_size)
            if size != img.size:
                img = img.resize(size, method)
        if "crop" in preprocess:
            img = _crop(img, params["crop_pos"], crop_size)
        if params.get("flip"):
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        w, h = img.size
        tw, th = fit_size(w, h, size_multiple, fit)
        if fit == "resize" and (tw, th) != (w, h):
            img = img.resize((tw, th), method)
        t = to_tensor(img)
        if fit == "pad" and (tw, th) != (w, h):
            # numpy's reflect keeps reflecting when the pad is wider than the image (torch's
            # reflect pad refuses that), so tiny images still pad to a full multiple.
            t = torch.from_numpy(np.pad(t.numpy(), ((0, 0), (0, th - h), (0, tw - w)), mode="reflect"))
        return t

    return transform


@dataclass(frozen=True)
class Preprocessing:
    """The data config's preprocessing keys (reference `base_dataset.py` options) and what they do to one image."""

    preprocess: str = "resize_and_crop"  # one of PREPROCESS_CHOICES
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    size_multiple: int = 1
    fit: str = "resize"  # one of FIT_CHOICES

    def __post_init__(self) -> None:
        check_preprocess(self.preprocess, self.fit)

    def at_test_time(self) -> Preprocessing:
        """The reference's test-time preprocess, made deterministic: no flip, and load_size = crop_size, so
        resize_and_crop is a plain resize to crop_size and scale_width_and_crop scales the width to crop_size
        (then a centre crop: `params(train=False)`)."""
        resized_crop = self.preprocess in ("resize_and_crop", "scale_width_and_crop")
        return replace(self, flip=False, load_size=self.crop_size if resized_crop else self.load_size)

    def params(self, size: tuple[int, int], train: bool) -> dict:
        """A random crop position and flip for an image of `size` (w, h) in training; the centre crop otherwise."""
        args = (self.preprocess, self.load_size, self.crop_size)
        return get_params(*args, size, self.flip) if train else center_params(*args, size)

    def __call__(self, img: Image.Image, params: dict, channels: int) -> torch.Tensor:
        return build_transform(self.preprocess, self.load_size, self.crop_size, params, channels, self.size_multiple, self.fit)(img)
