"""Sliced Wasserstein distance between random patches of two image sets (Karras et al. 2018,
"Progressive Growing of GANs", section 5: SWD between local image patches, after Rabin et al. 2011).

Why this measure for unconditional models: it needs no pretrained network (FID/KID/IS need Inception
weights an offline machine may lack), it is cheap on a CPU, and it compares local colour and texture
statistics, which is what a small DCGAN learns first, so it falls early in a short run. It is not
comparable with published FIDs; use it to see whether a run learns, and FID (callbacks.metrics) to
report.

Each patch (of one band of the image's Laplacian pyramid) is one point in R^(C*p*p); both sets are projected onto
`num_projections` random unit directions, and the 1-D Wasserstein-1 distance of the sorted projections is averaged over directions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


def laplacian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """Band-pass images from fine to coarse (x - up(down(x)) at each level), then the coarsest low-pass."""
    bands = []
    for _ in range(levels - 1):
        low = F.avg_pool2d(x, 2)
        bands.append(x - F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=False))
        x = low
    return [*bands, x]


def patch_swd(
    fake: Tensor,
    real: Tensor,
    patch_size: int = 7,
    num_patches: int = 4096,
    num_projections: int = 128,
    levels: int = 2,
    seed: int = 0,
) -> float:
    """SWD (x100) between random `patch_size` patches of `fake` and `real`, averaged over the `levels` bands of
    their Laplacian pyramids, as Karras et al. compare structure band by band (on raw pixels the patch mean
    dominates every projection). Patches of both sets are standardised per dimension by the real ones'
    statistics, so a wrong contrast or colour still counts. The same `seed` draws the same positions and
    directions, so values at different steps compare."""
    g = torch.Generator().manual_seed(seed)
    values = []
    for bf, br in zip(laplacian_pyramid(fake.float().cpu(), levels), laplacian_pyramid(real.float().cpu(), levels)):
        if min(br.shape[-2:]) < patch_size:
            break
        pf, pr = random_patches(bf, patch_size, num_patches, g), random_patches(br, patch_size, num_patches, g)
        mean, std = pr.mean(0), pr.std(0) + 1e-8
        values.append(sliced_wasserstein((pf - mean) / std, (pr - mean) / std, num_projections, g))
    if not values:
        raise ValueError(f"patch_size {patch_size} exceeds the images' {tuple(real.shape[-2:])}")
    return float(torch.stack(values).mean()) * 100.0
