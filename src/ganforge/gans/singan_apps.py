"""SinGAN's applications (Rott Shaham et al., 2019, section 4; reference `random_samples.py`,
`paint2image.py`, `editing.py`, `harmonization.py`, `SR.py`, `animation.py`), run by
`ganforge-predict ckpt_path=<singan ckpt> app=<name>` on a trained pyramid (`gans/singan.py`).

Each app takes the model and the predict options and returns the files it wrote.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from ganforge.data.single_image import ceil_size, resize
from ganforge.errors import ConfigError
from ganforge.imageio import image_to_tensor, load_image, save_atomic, tensor_to_image
from ganforge.metrics.suite import MetricSuite
from ganforge.metrics.weights import PretrainedWeightsError

APPS = ("samples", "paint2image", "editing", "harmonization", "sr", "animation")
INJECTION_APPS = ("paint2image", "editing", "harmonization")
log = logging.getLogger(__name__)


def run_app(model, opts, out_dir: Path) -> list[Path]:
    app = opts.get("app")
    if app not in APPS:
        raise ConfigError(f"app={app!r} is not a SinGAN application; choose one of {', '.join(APPS)}")
    model.eval()
    torch.manual_seed(int(opts.get("seed") or 0))
    with torch.no_grad():
        if app in INJECTION_APPS:
            return inject(model, opts, out_dir, app)
        return {"samples": samples, "sr": super_resolution, "animation": animation}[app](model, opts, out_dir)


def _scale_opt(model, opts, key: str, lo: int) -> int:
    n, hi = int(opts.get(key)), model.num_scales - 1
    if not lo <= n <= hi:
        raise ConfigError(f"{key}={n} is out of range: this model has scales 0..{hi}; choose {lo}..{hi}")
    return n


def _save(t: torch.Tensor, path: Path) -> Path:
    return save_atomic(tensor_to_image(t), path)


def samples(model, opts, out_dir: Path) -> list[Path]:
    """Random samples of any size (`scale_h`, `scale_w`), from `gen_start_scale` on, their noises drawn
    from `seed` as an export's are (the same samples from both); plus `sifid.json` (unless `sifid=false`)."""
    start = _scale_opt(model, opts, "gen_start_scale", 0)
    scale_h, scale_w = float(opts.get("scale_h", 1.0)), float(opts.get("scale_w", 1.0))
    if scale_h <= 0 or scale_w <= 0:
        raise ConfigError(f"scale_h and scale_w must be positive, got {scale_h}, {scale_w}")
    noises = model.seeded_noises(int(opts.get("num_samples", 10)), int(opts.get("seed") or 0), scale_h, scale_w)
    images = [model.sample(scale_h, scale_w, start, z) for z in noises]
    written = [_save(s, out_dir / f"sample_{k:04d}.png") for k, s in enumerate(images)]
    return written + (sifid_report(model, images, out_dir, opts) if opts.get("sifid", True) else [])


def sifid_report(model, images: list[torch.Tensor], out_dir: Path, opts) -> list[Path]:
    """SIFID of each sample against the training image (finest scale) into `sifid.json`, through the
    metric suite. It needs Inception's weights (docs/evaluation.md); without them the samples are
    still written, with a warning."""
    weights = opts.get("weights") or {}
    try:
        suite = MetricSuite(["sifid"], batch_size=1, weights=dict(weights))
    except PretrainedWeightsError as e:
        log.warning("SIFID not computed: %s", e)
        return []
    real = model.real(model.num_scales - 1)
    for s in images:
        suite.update(s, real)
    report = {
        "sifid_mean": float(suite.compute()["sifid"]),
        "sifid": [float(v) for v in suite.metrics["sifid"].scores],
        "num_samples": len(images),
        "reference": "the training image at the finest scale; Inception first max-pool features, native size",
    }
    path = out_dir / "sifid.json"
    path.write_text(json.dumps(report, indent=2))
    return [path]


def _load_ref(model, key: str, path, channels: int) -> torch.Tensor:
    if not path:
        raise ConfigError(f"{key}=<image> is required for this app")
    return resize(image_to_tensor(load_image(path, channels=channels)).unsqueeze(0), model.pyramid[-1])


def inject(model, opts, out_dir: Path, app: str) -> list[Path]:
    """paint2image / editing / harmonization: the reference image, taken down to scale n-1 and
    up to scale n, replaces the generated image at scale n; finer scales add their detail."""
    n = _scale_opt(model, opts, "inject_scale", 1)
    ref = _load_ref(model, "ref", opts.get("ref"), model.hparams.channels)
    injected = resize(resize(ref, model.pyramid[n - 1]), model.pyramid[n])
    out = model.chain(n, model.num_scales - 1, injected, model.noise)
    written = [_save(out, out_dir / f"{app}_scale{n}.png")]
    if app != "paint2image":
        mask = soft_mask(_load_ref(model, "mask", opts.get("mask"), 1), radius=20 if app == "editing" else 7)
        real = model.real(model.num_scales - 1)
        written.append(_save((1 - mask) * real + mask * out, out_dir / f"{app}_scale{n}_masked.png"))
    return written


def super_resolution(model, opts, out_dir: Path) -> list[Path]:
    """Upscale the training image by `sr_factor` as the reference `SR.py` does: k =
    round(log(1/f) / log(2**(-1/3))) steps of f**(1/k) (`calc_init_scale`). Each step upsamples
    the last output (bicubic, ceil(side * step)) and applies the finest G with the finest noise
    amp and fresh noise; the result is cropped to int(f * side). Train with experiment=singan_sr."""
    factor = float(opts.get("sr_factor", 4.0))
    if factor <= 1:
        raise ConfigError(f"sr_factor must be > 1, got {factor}")
    iter_num = max(1, round(math.log(1 / factor, 0.5 ** (1 / 3))))
    step = factor ** (1 / iter_num)
    top = model.num_scales - 1
    x = model.real(top)
    h, w = x.shape[-2:]
    for k in range(iter_num):
        size = (ceil_size(x.shape[-2] * step), ceil_size(x.shape[-1] * step))
        x = resize(x, size)
        # `SinGAN_generate` counts these steps from 0, so its first one draws the coarsest
        # scale's noise (one channel shared by all) while using the finest G and amp.
        x = model.scale_forward(top, model.noise(0 if k == 0 else top, size), x)
    return [_save(x[..., : int(factor * h), : int(factor * w)], out_dir / f"sr_x{factor:g}.png")]


def animation(model, opts, out_dir: Path, frames: int = 100, alpha: float = 0.1, beta: float = 0.9) -> list[Path]:
    """A GIF of a random walk in z at every scale from `gen_start_scale` (reference `generate_gif`:
    momentum `beta`, pull `alpha` towards the reconstruction noise; the reference animates from 2)."""
    start = _scale_opt(model, opts, "gen_start_scale", 0)
    walks = []
    for n, size in enumerate(model.pyramid):
        z_rec = model.rec_noise(n, size)
        z1, z2, walk = 0.95 * z_rec + 0.05 * model.noise(n, size), z_rec, []
        for _ in range(frames):
            z = alpha * z_rec + (1 - alpha) * (z1 + beta * (z1 - z2) + (1 - beta) * model.noise(n, size))
            z1, z2 = z, z1
            walk.append(z if n >= start else z_rec)
        walks.append(walk)
    zeros = model.z_opt.new_zeros(1, model.hparams.channels, *model.pyramid[0])
    images = [
        tensor_to_image(model.chain(0, model.num_scales - 1, zeros, lambda n, s, i=i: walks[n][i])) for i in range(frames)
    ]
    path = out_dir / f"animation_start{start}.gif"
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)  # 10 fps
    return [path]


def soft_mask(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Reference `dilate_mask`: binary mask dilated by a disk, Gaussian-blurred (sigma 5), rescaled to [0, 1].
    The mask is thresholded at mid-grey rather than at 0, so JPEG noise in a mask is not foreground."""
    r = torch.arange(-radius, radius + 1, dtype=mask.dtype)
    disk = ((r[:, None] ** 2 + r[None, :] ** 2) <= radius**2).to(mask.dtype)[None, None]
    m = (F.conv2d((mask > 0).to(mask.dtype), disk, padding=radius) > 0).to(mask.dtype)
    # 41 taps (4 sigma a side, as skimage); reflect padding needs fewer than twice the shorter side
    m = gaussian_blur(m, kernel_size=min(41, 2 * min(m.shape[-2:]) - 1), sigma=5.0)
    return (m - m.min()) / (m.max() - m.min()).clamp_min(1e-8)
