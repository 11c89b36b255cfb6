"""Sliced Wasserstein distance between random patches of two image sets (Karras et al. 2018,
"Progressive Growing of GANs", section 5: SWD between local image patches, after Rabin et al. 2011).

Why this measure for unconditional models: it needs no pretrained network (FID/KID/IS need Inception
weights an offline machine may lack), it is cheap on a CPU, and it compares local colour and texture
statistics, which is what a small DCGAN learns first, so it falls early in a short run. It is not
comparable with published FIDs; use it to see whether a run learns, and FID (callbacks.metrics) to
report.

Each patch is one point in R^(C*p*p); both sets are projected onto `num_projections` random unit
directions, and the 1-D Wasserstein-1 distance of the sorted projections is averaged over directions.
"""

from __future__ import annotations

import torch
from torch import Tensor


def random_patches(images: Tensor, patch_size: int, num_patches: int, generator: torch.Generator) -> Tensor:
    """`num_patches` patches (N, C*p*p) at uniformly random positions of uniformly random images."""
    b, c, h, w = images.shape
    if patch_size > min(h, w):
        raise ValueError(f"patch_size {patch_size} exceeds the images' {h}x{w}")
    idx = torch.randint(b, (num_patches,), generator=generator)
    ys = torch.randint(h - patch_size + 1, (num_patches,), generator=generator)
    xs = torch.randint(w - patch_size + 1, (num_patches,), generator=generator)
    offs = torch.arange(patch_size)
    rows = (ys[:, None] + offs)[:, :, None].expand(-1, -1, patch_size)
    cols = (xs[:, None] + offs)[:, None, :].expand(-1, patch_size, -1)
    patches = images.float().cpu()[idx[:, None, None], :, rows, cols]  # (N, p, p, C)
    return patches.permute(0, 3, 1, 2).reshape(num_patches, -1)


def sliced_wasserstein(a: Tensor, b: Tensor, num_projections: int, generator: torch.Generator) -> Tensor:
    """SW1 between two point sets of equal size (N, D)."""
    if a.shape != b.shape:
        raise ValueError(f"point sets must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    dirs = torch.randn(a.shape[1], num_projections, generator=generator)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, _ = (a @ dirs).sort(dim=0)
    pb, _ = (b @ dirs).sort(dim=0)
    return (pa - pb).abs().mean()


def patch_swd(
    fake: Tensor, real: Tensor, patch_size: int = 7, num_patches: int = 4096, num_projections: int = 128, seed: int = 0
) -> float:
    """SWD (x100, pixel values in [-1, 1]) between random `patch_size` patches of `fake` and `real`;
    the same `seed` draws the same patch positions and directions, so values at different steps compare."""
    g = torch.Generator().manual_seed(seed)
    pf = random_patches(fake, patch_size, num_patches, g)
    pr = random_patches(real, patch_size, num_patches, g)
    return float(sliced_wasserstein(pf, pr, num_projections, g)) * 100.0
