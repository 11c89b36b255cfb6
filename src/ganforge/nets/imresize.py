"""The resize SinGAN trains with (reference `SinGAN/imresize.py`, Shocher's MATLAB-style `imresize`), in torch.

What the reference does, and so what this reproduces value for value:
- The image goes through 8 bits first: `255 * (x + 1) / 2`, clamped to [0, 255], then truncated (numpy's
  `astype(uint8)`), so a value a hair under an integer level drops a whole level.
- Each axis is resized on its own (the axis with the smaller factor first; H first for equal factors) with
  MATLAB's cubic kernel (a = -0.5), widened by 1/scale when shrinking (antialiasing, decided by the H factor).
  The taps of each output pixel are normalised to sum to 1 and summed in float64, one tap after another.
- Borders: taps past the end mirror back into the image (`[0..n-1, n-1..0]`, periodic). Taps before the
  start have negative positions, which numpy casts to huge unsigned integers on x86-64: their weight is
  computed at that distance and is 0, so the remaining taps are renormalised instead of mirrored.
- The result is divided by 255 (float64), cast to float32, mapped back to [-1, 1] by `(v - 0.5) * 2` in
  float32 and clamped. The output has the input's dtype (a float64 run gets these float32 values), and
  the memory layout of the reference's numpy result (W outermost when W was resized last, H, W, C when H
  was, the input's when neither was), which sets the order in which a later reduction over it sums (the
  noise amp's MSE, for one).
- Output size: ceil(side * scale) in float64 (so 25 * (1 / 0.75) gives 34), or the size asked for, whose
  factor is then size / side.

Between two scales the reference upsamples by 1 / scale_factor and keeps the top-left corner of the next
scale's size (`upsample_to`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

#: MATLAB's cubic kernel covers 4 input pixels (the reference's `kernel_width` for "cubic")
KERNEL_WIDTH = 4.0


def cubic(x: Tensor) -> Tensor:
    """MATLAB's cubic convolution kernel (Keys, a = -0.5), as the reference writes it."""
    absx = x.abs()
    absx2, absx3 = absx**2, absx**3
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((1 < absx) & (absx <= 2))


@lru_cache(maxsize=256)
def contributions(in_length: int, out_length: int, scale: float, antialiasing: bool) -> tuple[Tensor, Tensor]:
    """(weights, positions), each (out_length, taps): the input pixels each output pixel sums, float64
    weights and their indices (reference `contributions`)."""
    if antialiasing:
        width = KERNEL_WIDTH * (1.0 / scale)
        kernel = lambda t: scale * cubic(scale * t)  # noqa: E731 - the reference's fixed_kernel
    else:
        width, kernel = KERNEL_WIDTH, cubic
    out_coordinates = torch.arange(1, out_length + 1, dtype=torch.float64)
    match = out_coordinates / scale + 0.5 * (1 - 1.0 / scale)
    left = torch.floor(match - width / 2)
    taps = int(math.ceil(width)) + 2
    pos = left[:, None] + torch.arange(taps, dtype=torch.float64) - 1
    weights = kernel(match[:, None] - pos - 1) * (pos >= 0)  # before the start: weight 0 (see the module doc)
    total = weights.sum(1, keepdim=True)
    weights = weights / torch.where(total == 0, torch.ones_like(total), total)
    # periodic mirror [0..n-1, n-1..0]; positions before the start carry weight 0, any index serves
    pos = pos.clamp(min=0).long() % (2 * in_length)
    index = torch.where(pos < in_length, pos, 2 * in_length - 1 - pos)
    return weights, index


def to_levels(x: Tensor) -> Tensor:
    """[-1, 1] -> the 8-bit levels 0..255 as float64, truncated (reference `torch2uint8`)."""
    return torch.floor(255 * ((x + 1) / 2).clamp(0, 1)).double()


def from_levels(levels: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Levels (float64, maybe fractional after resizing) -> [-1, 1] (reference `np2torch`, float32 math)."""
    x = (levels / 255).float()
    return ((x - 0.5) * 2).clamp(-1, 1).to(dtype)


def _resize_axis(x: Tensor, dim: int, weights: Tensor, index: Tensor) -> Tensor:
    shape = [1] * x.dim()
    shape[dim] = -1
    weights, index = weights.to(x.device), index.to(x.device)
    out = None
    for k in range(weights.shape[1]):  # tap by tap, in the reference's order of summation
        term = x.index_select(dim, index[:, k]) * weights[:, k].view(shape)
        out = term if out is None else out + term
    return out


def output_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """The reference's output size for a factor: ceil(side * scale) in float64."""
    return math.ceil(size[0] * scale), math.ceil(size[1] * scale)


def imresize(x: Tensor, scale: float | None = None, size: tuple[int, int] | None = None) -> Tensor:
    """x (B, C, H, W) in [-1, 1] resized by `scale` (reference `imresize`) or to `size` (reference
    `imresize_to_shape`). Every sample gets what the reference gives for it alone."""
    h, w = x.shape[-2:]
    if (scale is None) == (size is None):
        raise ValueError("imresize takes a scale or a size, not both")
    if size is None:
        factors, size = (float(scale), float(scale)), output_size((h, w), scale)
    else:
        factors = (1.0 * size[0] / h, 1.0 * size[1] / w)
    antialiasing = factors[0] < 1
    out, last = to_levels(x), None
    for axis in sorted(range(2), key=lambda a: factors[a]):  # the smaller factor first, H on a tie
        if factors[axis] == 1.0:
            continue
        weights, index = contributions(x.shape[2 + axis], int(size[axis]), factors[axis], antialiasing)
        out, last = _resize_axis(out, 2 + axis, weights, index), axis
    if last is not None:  # with no axis resized, numpy's copy keeps the input's layout, as `out` does
        out = reference_layout(out, w_outermost=last == 1)
    return from_levels(out, x.dtype)


def reference_layout(x: Tensor, w_outermost: bool = False) -> Tensor:
    """x with the memory layout the reference's numpy image has: (W, H, C) after resizing W last, else (H, W, C)."""
    if w_outermost:
        return x.permute(0, 3, 2, 1).contiguous().permute(0, 3, 2, 1)
    return x.contiguous(memory_format=torch.channels_last)


def resize_crop(x: Tensor, scale: float, size: tuple[int, int]) -> Tensor:
    """x resized by `scale`, top-left `size` kept, as the reference takes an image to a scale's size. Where that
    comes out short of `size` (a sample of another shape), it is resized to `size` instead."""
    out = imresize(x, scale)
    if out.shape[-2] < size[0] or out.shape[-1] < size[1]:
        return imresize(x, size=tuple(size))
    return out[..., : size[0], : size[1]]


def upsample_to(x: Tensor, scale_factor: float, size: tuple[int, int]) -> Tensor:
    """The next scale's input (reference `draw_concat`): `resize_crop` by 1 / scale_factor."""
    return resize_crop(x, 1 / scale_factor, size)
