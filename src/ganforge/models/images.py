"""Images in, images out: PIL images, numpy arrays or tensors, one or a batch, converted to the models' (N, C, H, W)
tensors in [-1, 1] and back to the kind they came in; padding to a size multiple; seeded latents."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ganforge.utils.errors import ConfigError


@dataclass
class ImageBatch:
    """How a user's images came in, so outputs go back in the same kind (PIL, numpy or tensor; one or many)."""

    kind: str  # "pil" | "numpy" | "tensor"
    single: bool
    numpy_dtype: Any = None


def to_tensor_batch(images: Any, channels: int) -> tuple[torch.Tensor, ImageBatch]:
    """A PIL image, a numpy array (HW, HWC or NHWC; uint8 0..255, uint16 0..65535 or float 0..1), a tensor
    ((C, H, W) or (N, C, H, W) in [-1, 1], the models' range) or a list of one kind -> (N, C, H, W) in [-1, 1]."""
    from ganforge.utils.imageio import (
        _normalise_mode,  # the file loader's own mode rules (16-bit, RGBA, palette)
    )

    if isinstance(images, (list, tuple)):
        if not images:
            raise ConfigError("an empty list of images")
        parts = [to_tensor_batch(im, channels) for im in images]
        sizes = {tuple(p[0].shape[-2:]) for p in parts}
        if len(sizes) > 1:
            raise ConfigError(f"the images of a list must share one size, got {sorted(sizes)}; pass them one at a time")
        return torch.cat([p[0] for p in parts]), dataclasses.replace(parts[0][1], single=False)
    if isinstance(images, Image.Image):
        img = _normalise_mode(images, Path("<PIL image>"), "L" if channels == 1 else "RGB")
        a = np.asarray(img, dtype=np.float32)
        a = a[:, :, None] if a.ndim == 2 else a
        return torch.from_numpy(a.transpose(2, 0, 1).copy()).div_(127.5).sub_(1.0)[None], ImageBatch("pil", True)
    if isinstance(images, np.ndarray):
        a, single = images, images.ndim <= 3
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4 or a.shape[-1] not in (1, 3, 4):
            raise ConfigError(f"a numpy image must be HW, HWC or NHWC with 1, 3 or 4 channels, got shape {images.shape}")
        if a.dtype == np.uint8:
            x = a.astype(np.float32) / 127.5 - 1
        elif a.dtype == np.uint16:
            x = a.astype(np.float32) / 32767.5 - 1
        elif np.issubdtype(a.dtype, np.floating):
            x = a.astype(np.float32) * 2 - 1
        else:
            raise ConfigError(f"numpy images must be uint8, uint16 or float in [0, 1], got {a.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        return _fit_channels(t, channels), ImageBatch("numpy", single, a.dtype)
    if torch.is_tensor(images):
        t, single = images, images.dim() == 3
        if t.dim() == 3:
            t = t[None]
        if t.dim() != 4:
            raise ConfigError(f"a tensor image must be (C, H, W) or (N, C, H, W) in [-1, 1], got shape {tuple(images.shape)}")
        return _fit_channels(t.float(), channels), ImageBatch("tensor", single)
    raise ConfigError(f"images must be PIL images, numpy arrays or tensors, got {type(images).__name__}")


def _fit_channels(t: torch.Tensor, channels: int) -> torch.Tensor:
    if t.shape[1] == channels:
        return t
    if t.shape[1] == 4:  # RGBA: alpha dropped without compositing, as the file loader does
        t = t[:, :3]
    if channels == 1 and t.shape[1] == 3:  # ITU-R 601-2 luma, PIL's convert("L")
        return (t * torch.tensor([0.299, 0.587, 0.114], dtype=t.dtype, device=t.device)[:, None, None]).sum(1, keepdim=True)
    if channels == 3 and t.shape[1] == 1:
        return t.expand(-1, 3, -1, -1)
    if t.shape[1] != channels:
        raise ConfigError(f"the model takes {channels}-channel images, got {t.shape[1]} channels")
    return t


def from_tensor_batch(t: torch.Tensor, how: ImageBatch) -> Any:
    """Outputs in [-1, 1] back in the kind the inputs came in."""
    if how.kind == "tensor":
        return t[0] if how.single else t
    u8 = ((t.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    if how.kind == "numpy":
        if how.numpy_dtype is not None and np.issubdtype(how.numpy_dtype, np.floating):
            out = ((t.detach().float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy().astype(how.numpy_dtype)
        else:
            out = u8
        return out[0] if how.single else out
    pil = [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in u8]
    return pil[0] if how.single else pil


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """`x` padded on the bottom and right to multiples of `multiple` (reflected while the image is large
    enough, replicated beyond), and its original (h, w) to crop back to."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


@contextmanager
def forked_rng(seed: int | None, device: torch.device) -> Iterator[None]:
    """With a seed: torch's random stream seeded for the block and restored after; None: the stream as it is."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def seeded_normals(shapes: Sequence[tuple[int, ...]], seed: int) -> list[torch.Tensor]:
    """N(0, 1) latents drawn with numpy's default generator from `seed`, one shape after the other: an ONNX
    export run without torch (ganforge.export.runtime) draws the same ones, so it writes the same samples."""
    rng = np.random.default_rng(int(seed))
    return [torch.from_numpy(rng.standard_normal(shape).astype(np.float32)) for shape in shapes]


def seeded_normal(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return seeded_normals([shape], seed)[0]
