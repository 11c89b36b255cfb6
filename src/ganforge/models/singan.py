"""SinGAN (Rott Shaham et al., 2019): a pyramid of generators learnt from one image, and its applications
(section 4; reference `random_samples.py`, `paint2image.py`, `editing.py`, `harmonization.py`, `SR.py`,
`animation.py`), each a method that returns images.

Scale 0 is the coarsest. Scale n's G turns noise * amp_n + (upsampled output of scale n-1) into an image
of scale n's size. The model holds the generators, the noise amplitudes, the reconstruction noise z_opt
and the training image at every scale (SR, SIFID and the masked edits start from it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.models.base import ExportGraph, InferenceModel, image_io, running
from ganforge.models.images import (
    ImageBatch,
    forked_rng,
    from_tensor_batch,
    seeded_normals,
    to_tensor_batch,
)
from ganforge.models.registry import register_model
from ganforge.models.spec import MAX_CHANNELS, MAX_SIDE, check_range, setting, short
from ganforge.nets.export import eval_copy
from ganforge.nets.imresize import imresize, resize_crop, upsample_to
from ganforge.nets.registry import build_net, check_net_config
from ganforge.nets.singan import SinGANGenerator, resize
from ganforge.utils.errors import CheckpointError, ConfigError

APPS = ("samples", "paint2image", "editing", "harmonization", "sr", "animation")
INJECTION_APPS = ("paint2image", "editing", "harmonization")


def scale_step(net: nn.Module, amp: torch.Tensor, z: torch.Tensor, prev: torch.Tensor, pad: int) -> torch.Tensor:
    """One scale of the pyramid: G_n(noise * amp_n + prev, prev), both zero-padded so the output has prev's size."""
    return net(F.pad(amp * z + prev, [pad] * 4), F.pad(prev, [pad] * 4))


class PyramidSampler(nn.Module):
    """`SinGANModel.generate` as one module for export: the noises are inputs (scale 0's has one channel,
    shared by all, as the reference), so the graph draws nothing; the sizes are fixed."""

    noise_amp: torch.Tensor  # a buffer

    def __init__(
        self, nets: nn.ModuleList, noise_amp: torch.Tensor, pad: int, sizes: list[tuple[int, int]], channels: int, scale_factor: float
    ):
        super().__init__()
        self.nets, self.pad, self.sizes, self.channels, self.scale_factor = nets, pad, sizes, channels, scale_factor
        self.register_buffer("noise_amp", noise_amp.detach().clone())

    def forward(self, *noises: torch.Tensor) -> torch.Tensor:
        x = torch.zeros_like(noises[0]).expand(-1, self.channels, -1, -1)
        for n, net in enumerate(self.nets):
            if n:
                x = upsample_to(x, self.scale_factor, self.sizes[n])
            x = scale_step(net, self.noise_amp[n], noises[n].expand_as(x), x, self.pad)
        return x


def soft_mask(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Reference `dilate_mask`: binary mask dilated by a disk, Gaussian-blurred (sigma 5), rescaled to [0, 1].
    The mask is thresholded at mid-grey rather than at 0, so JPEG noise in a mask is not foreground."""
    from torchvision.transforms.functional import (
        gaussian_blur,  # here: torchvision costs a second at import
    )

    r = torch.arange(-radius, radius + 1, dtype=mask.dtype)
    disk = ((r[:, None] ** 2 + r[None, :] ** 2) <= radius**2).to(mask.dtype)[None, None]
    m = (F.conv2d((mask > 0).to(mask.dtype), disk, padding=radius) > 0).to(mask.dtype)
    # 41 taps (4 sigma a side, as skimage); reflect padding needs fewer than twice the shorter side
    m = gaussian_blur(m, kernel_size=min(41, 2 * min(m.shape[-2:]) - 1), sigma=5.0)
    return (m - m.min()) / (m.max() - m.min()).clamp_min(1e-8)


@register_model("singan")
class SinGANModel(InferenceModel):
    metric_single_image = True
    paper = "Rott Shaham et al., SinGAN: Learning a Generative Model from a Single Natural Image, ICCV 2019"
    paper_name = "SinGAN"
    usage = (
        "samples = model.sample(4, seed=0)              # random images like the training image\n"
        "wide = model.sample(1, scale_w=2.0)             # any size\n"
        "big = model.super_resolution(4.0)               # models trained with experiment=singan_sr"
    )
    netG: nn.ModuleList
    #: buffers (registered in __init__): each scale's noise amplitude, the reconstruction noise
    noise_amp: torch.Tensor
    z_opt: torch.Tensor

    @dataclass
    class Spec:
        channels: int = 3
        #: (h, w) of every scale, coarsest first
        pyramid: list[list[int]] = field(default_factory=list)
        #: one generator config a scale
        generators: list[dict[str, Any]] = field(default_factory=list)
        nets: dict[str, dict[str, Any]] = field(default_factory=dict)  # SinGAN's nets are `generators`
        #: the pyramid's refit factor: between scales an output is upsampled by its inverse (reference imresize);
        #: None (a model trained before it was stored): the factor the pyramid's shorter sides span
        scale_factor: float | None = None

        def __post_init__(self) -> None:
            check_range(self.channels, 1, MAX_CHANNELS, "channels")
            if not self.pyramid or len(self.pyramid) != len(self.generators) or len(self.pyramid) > 64:
                raise ValueError(
                    f"pyramid ({len(self.pyramid)} scales) and generators ({len(self.generators)}) must "
                    "be non-empty lists of the same length (at most 64)"
                )
            for n, size in enumerate(self.pyramid):
                if len(size) != 2:
                    raise ValueError(f"pyramid[{n}] must be [h, w], got {size}")
                for v in size:
                    check_range(v, 1, MAX_SIDE, f"pyramid[{n}]")
            for n, config in enumerate(self.generators):
                check_net_config(config, f"generators[{n}]")
            if self.nets:
                raise ValueError("SinGAN keeps its nets in `generators`; nets must be empty")
            if self.scale_factor is not None and (
                isinstance(self.scale_factor, bool) or not isinstance(self.scale_factor, (int, float)) or not 0.05 <= self.scale_factor < 1
            ):
                raise ValueError(f"scale_factor must be a number in [0.05, 1), got {short(self.scale_factor)}")

    def __init__(
        self,
        spec: Spec,
        nets: Mapping[str, nn.Module] | None = None,
        model_name: str | None = None,
        buffers: Mapping[str, torch.Tensor] | None = None,
    ):
        """`nets={"netG": ModuleList}` and `buffers` (noise_amp, z_opt, real_<n>): a training module's own, shared."""
        super().__init__(spec, nets={}, model_name=model_name)
        self.netG = (
            cast(nn.ModuleList, nets["netG"])
            if nets
            else nn.ModuleList(build_net(c, f"spec.generators[{n}]") for n, c in enumerate(spec.generators))
        )
        sizes = self.pyramid
        shapes = {
            "noise_amp": (len(sizes),),
            "z_opt": (1, spec.channels, *sizes[0]),
            **{f"real_{n}": (1, spec.channels, h, w) for n, (h, w) in enumerate(sizes)},
        }
        for name, shape in shapes.items():
            self.register_buffer(name, buffers[name] if buffers else torch.zeros(shape))
        self.pad = cast(SinGANGenerator, self.netG[0]).pad
        if not nets:
            self.eval()

    @classmethod
    def spec_data(cls, name: str, model: Mapping, data: Mapping, net: Callable[[str], Any]) -> dict[str, Any]:
        """The pyramid's sizes and its generators' configs: each scale's widths follow SinGAN's rule (nfc and min_nfc
        double every `nfc_double_every` scales, capped at max_nfc), as the training module builds them."""
        pyramid = setting(model, "pyramid", [])
        if not isinstance(pyramid, list):
            raise CheckpointError(f"model.pyramid must be a list of [h, w], got {short(pyramid)}")
        every, top = setting(model, "nfc_double_every", 4), setting(model, "max_nfc", 128)
        for key, value in (
            ("nfc", setting(model, "nfc", 32)),
            ("min_nfc", setting(model, "min_nfc", 32)),
            ("nfc_double_every", every),
            ("max_nfc", top),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 4096:
                raise CheckpointError(f"model.{key}={short(value)} must be an integer in 1..4096")
        widths = [
            (min(setting(model, "nfc", 32) * 2 ** (n // every), top), min(setting(model, "min_nfc", 32) * 2 ** (n // every), top))
            for n in range(min(len(pyramid), 65))
        ]
        generators = [
            {
                "name": SinGANGenerator.__name__,
                "kwargs": {
                    "nc": setting(model, "channels", 3),
                    "nfc": nfc,
                    "min_nfc": min_nfc,
                    "num_layer": setting(model, "num_layer", 5),
                    "ker": 3,
                },
            }
            for nfc, min_nfc in widths
        ]
        return {
            "channels": setting(model, "channels", 3),
            "pyramid": pyramid,
            "generators": generators,
            "scale_factor": setting(model, "scale_factor", None),
        }

    @property
    def pyramid(self) -> list[tuple[int, int]]:
        return [tuple(s) for s in self.spec.pyramid]

    @property
    def num_scales(self) -> int:
        return len(self.spec.pyramid)

    def real(self, n: int) -> torch.Tensor:
        return getattr(self, f"real_{n}")

    def preprocessing(self) -> dict[str, Any]:
        return {
            "input": "noise (one N(0, 1) map a scale; the coarsest has one channel)",
            "range": [-1.0, 1.0],
            "channels": self.spec.channels,
            "pyramid": self.spec.pyramid,
            "resize": "between scales: the reference's imresize (MATLAB cubic, 8-bit) by 1 / scale_factor, cropped",
        }

    # ----- the pyramid -------------------------------------------------------------------------------
    def noise(self, n: int, size: tuple[int, int], batch: int = 1) -> torch.Tensor:
        """Scale-n noise from torch's stream; the coarsest scale's is one channel shared by all (reference)."""
        nc = 1 if n == 0 else self.spec.channels
        return torch.randn(batch, nc, *size, device=self.noise_amp.device).expand(-1, self.spec.channels, -1, -1)

    def rec_noise(self, n: int, size: tuple[int, int]) -> torch.Tensor:
        """The reconstruction noise: z_opt at the coarsest scale, zero above."""
        if n > 0:
            return self.z_opt.new_zeros(1, self.spec.channels, *size)
        return resize(self.z_opt, size)

    def scale_forward(self, n: int, z: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        return scale_step(self.netG[n], self.noise_amp[n], z, prev, self.pad)

    @property
    def scale_factor(self) -> float:
        if self.spec.scale_factor is not None:
            return float(self.spec.scale_factor)
        return (min(self.pyramid[0]) / min(self.pyramid[-1])) ** (1 / max(self.num_scales - 1, 1))

    def upsample(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """One scale's output as the next one's input, as the reference trains and samples: its imresize by
        1 / scale_factor, the top-left `size` kept (nets/imresize.py)."""
        return upsample_to(x, self.scale_factor, size)

    def chain(
        self,
        first: int,
        last: int,
        x: torch.Tensor,
        z_fn: Callable[[int, tuple[int, int]], torch.Tensor],
        sizes: Sequence[tuple[int, int]] | None = None,
    ) -> torch.Tensor:
        """Run scales first..last on `x` (at scale `first`'s size), upsampling between scales; z_fn(n, size)
        gives each scale's noise."""
        sizes = sizes or self.pyramid
        for n in range(first, last + 1):
            if n > first:
                x = self.upsample(x, sizes[n])
            x = self.scale_forward(n, z_fn(n, sizes[n]).expand_as(x), x)
        return x

    def sample_sizes(self, scale_h: float = 1.0, scale_w: float = 1.0) -> list[tuple[int, int]]:
        """Each scale's (h, w) for a sample of (round(H * scale_h), round(W * scale_w))."""
        if not (0 < scale_h <= 64 and 0 < scale_w <= 64):
            raise ConfigError(f"scale_h and scale_w must be in (0, 64], got {scale_h}, {scale_w}")
        return [(max(1, round(h * scale_h)), max(1, round(w * scale_w))) for h, w in self.pyramid]

    def seeded_noises(self, num: int, seed: int, scale_h: float = 1.0, scale_w: float = 1.0) -> list[list[torch.Tensor]]:
        """`num` noise pyramids drawn with numpy from `seed`, as an export's runtime feeds noise_0..noise_N
        (scale by scale, (num, 1 or C, h, w) each), so the model and its export give the same samples."""
        shapes = [(num, 1 if n == 0 else self.spec.channels, *s) for n, s in enumerate(self.sample_sizes(scale_h, scale_w))]
        noises = [z.to(self.noise_amp.device) for z in seeded_normals(shapes, seed)]
        return [[z[k : k + 1] for z in noises] for k in range(num)]

    def generate(
        self, scale_h: float = 1.0, scale_w: float = 1.0, gen_start_scale: int = 0, noises: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """One random image (1, C, h, w) in [-1, 1]; scales below `gen_start_scale` use the reconstruction noise,
        so the sample keeps the image's coarse layout. `noises`: each scale's (`seeded_noises`); None: torch's stream."""
        sizes = self.sample_sizes(scale_h, scale_w)
        zeros = self.z_opt.new_zeros(1, self.spec.channels, *sizes[0])

        def z_fn(n: int, size: tuple[int, int]) -> torch.Tensor:
            if n < gen_start_scale:
                return self.rec_noise(n, size)
            return self.noise(n, size) if noises is None else noises[n]

        with running(self.netG):
            return self.chain(0, self.num_scales - 1, zeros, z_fn, sizes)

    def check_scale(self, n: int, lo: int, name: str) -> int:
        hi = self.num_scales - 1
        if not lo <= int(n) <= hi:
            raise ConfigError(f"{name}={n} is out of range: this model has scales 0..{hi}; choose {lo}..{hi}")
        return int(n)

    # ----- the applications --------------------------------------------------------------------------
    def sample(
        self, n: int = 1, scale_h: float = 1.0, scale_w: float = 1.0, gen_start_scale: int = 0, seed: int = 0, output_type: str = "pil"
    ) -> Any:
        """n random images of (round(H * scale_h), round(W * scale_w)), from `gen_start_scale` on, their noises
        drawn with numpy from `seed` as an export's are (the same samples from both)."""
        if n < 1:
            raise ConfigError(f"the number of samples must be >= 1, got {n}")
        start = self.check_scale(gen_start_scale, 0, "gen_start_scale")
        images = [self.generate(scale_h, scale_w, start, z) for z in self.seeded_noises(n, seed, scale_h, scale_w)]
        return [_as(x, output_type) for x in images]

    def _reference(self, image: Any, channels: int) -> torch.Tensor:
        """An app's input image (or mask) at the training image's size: the reference apps (harmonization.py,
        editing.py, paint2image.py) take it there with `imresize_to_shape`."""
        x, _ = to_tensor_batch(image, channels)
        x = x[:1].to(self.noise_amp.device)
        h, w = self.pyramid[-1]
        return x if tuple(x.shape[-2:]) == (h, w) else imresize(x, size=(h, w))

    def inject(self, image: Any, inject_scale: int = 1, seed: int | None = 0, output_type: str = "pil") -> Any:
        """paint2image: `image` (a painting or a clip-art), taken down to scale n-1 and up to scale n, replaces
        the generated image at scale n; the finer scales add the training image's detail."""
        return _as(self._injected(image, inject_scale, seed), output_type)

    paint2image = inject

    def edit(self, image: Any, mask: Any, inject_scale: int = 1, seed: int | None = 0, output_type: str = "pil") -> tuple:
        """editing: `image` (the training image with a region moved or pasted) through scales n.., and that
        output pasted into the training image through `mask` (dilated, softened): (output, masked output)."""
        return self._masked(image, mask, inject_scale, seed, radius=20, output_type=output_type)

    def harmonize(self, image: Any, mask: Any, inject_scale: int = 1, seed: int | None = 0, output_type: str = "pil") -> tuple:
        """harmonization: a pasted object blended into the image's style (a smaller mask dilation than editing)."""
        return self._masked(image, mask, inject_scale, seed, radius=7, output_type=output_type)

    def _injected(self, image: Any, inject_scale: int, seed: int | None) -> torch.Tensor:
        n = self.check_scale(inject_scale, 1, "inject_scale")
        ref = self._reference(image, self.spec.channels)
        with forked_rng(seed, self.noise_amp.device), running(self.netG):
            # the reference apps: imresize by scale_factor ** (N - n + 1) to scale n - 1, then by 1 / scale_factor to
            # scale n, each cropped top-left to that scale's size
            down = resize_crop(ref, self.scale_factor ** (self.num_scales - n), self.pyramid[n - 1])
            return self.chain(n, self.num_scales - 1, upsample_to(down, self.scale_factor, self.pyramid[n]), self.noise)

    def _masked(self, image: Any, mask: Any, inject_scale: int, seed: int | None, radius: int, output_type: str) -> tuple:
        out = self._injected(image, inject_scale, seed)
        soft = soft_mask(self._reference(mask, 1), radius=radius)
        real = self.real(self.num_scales - 1)
        return _as(out, output_type), _as((1 - soft) * real + soft * out, output_type)

    def super_resolution(self, factor: float = 4.0, seed: int | None = 0, output_type: str = "pil") -> Any:
        """The training image upscaled by `factor` as the reference `SR.py`: k = round(log(1/f) / log(2**(-1/3)))
        steps of f**(1/k) (`calc_init_scale`). Each step upsamples the last output by that factor (its imresize,
        ceil(side * step)) and applies the finest G with the finest noise amp and fresh noise; the result is
        cropped to int(f * side). Train with experiment=singan_sr."""
        if not 1 < factor <= 64:
            raise ConfigError(f"the super-resolution factor must be in (1, 64], got {factor}")
        iter_num = max(1, round(math.log(1 / factor, 0.5 ** (1 / 3))))
        # SR.py sets opt.scale_factor = 1 / in_scale and resizes by 1 / opt.scale_factor, which need not be in_scale
        step = 1 / (1 / factor ** (1 / iter_num))
        top = self.num_scales - 1
        x = self.real(top)
        h, w = x.shape[-2:]
        with forked_rng(seed, self.noise_amp.device), running(self.netG):
            for k in range(iter_num):
                x = imresize(x, step)
                size = (x.shape[-2], x.shape[-1])
                # `SinGAN_generate` counts these steps from 0, so its first one draws the coarsest
                # scale's noise (one channel shared by all) while using the finest G and amp.
                x = self.scale_forward(top, self.noise(0 if k == 0 else top, size), x)
        return _as(x[..., : int(factor * h), : int(factor * w)], output_type)

    def animate(
        self,
        frames: int = 100,
        gen_start_scale: int = 2,
        alpha: float = 0.1,
        beta: float = 0.9,
        seed: int | None = 0,
        output_type: str = "pil",
    ) -> list[Any]:
        """The frames of a random walk in z at every scale from `gen_start_scale` (reference `generate_gif`:
        momentum `beta`, pull `alpha` towards the reconstruction noise)."""
        start = self.check_scale(gen_start_scale, 0, "gen_start_scale")
        if not 1 <= frames <= 10000:
            raise ConfigError(f"frames must be in 1..10000, got {frames}")
        with forked_rng(seed, self.noise_amp.device), running(self.netG):
            walks = []
            for n, size in enumerate(self.pyramid):
                z_rec = self.rec_noise(n, size)
                z1, z2, walk = 0.95 * z_rec + 0.05 * self.noise(n, size), z_rec, []
                for _ in range(frames):
                    z = alpha * z_rec + (1 - alpha) * (z1 + beta * (z1 - z2) + (1 - beta) * self.noise(n, size))
                    z1, z2 = z, z1
                    walk.append(z if n >= start else z_rec)
                walks.append(walk)
            zeros = self.z_opt.new_zeros(1, self.spec.channels, *self.pyramid[0])

            def frame(i: int) -> torch.Tensor:
                return self.chain(0, self.num_scales - 1, zeros, lambda n, s: walks[n][i])

            return [_as(frame(i), output_type) for i in range(frames)]

    def metric_protocol(self) -> dict[str, Any]:
        return {"generator_mode": "eval", "per_sample": True}

    def metric_batch(self, batch: Mapping[str, torch.Tensor], direction: str = "AtoB") -> dict[str, torch.Tensor]:
        """Random samples of the whole pyramid (torch's stream) against the training image (SIFID compares each with it)."""
        k = len(batch["index"])
        fake = torch.cat([self.generate() for _ in range(k)])
        return {"fake": fake, "real": self.real(self.num_scales - 1).expand(k, -1, -1, -1)}

    def export_graphs(self, opts: Mapping) -> list[ExportGraph]:
        """One graph: random samples of (round(H * scale_h), round(W * scale_w)) from noise_0..noise_N (N(0, 1),
        one per scale at its size; noise_0 has one channel), every scale in eval mode (as `sample`)."""
        scale_h, scale_w = float(opts.get("scale_h") or 1.0), float(opts.get("scale_w") or 1.0)
        sizes = self.sample_sizes(scale_h, scale_w)
        nc = self.spec.channels
        module = PyramidSampler(nn.ModuleList(eval_copy(g) for g in self.netG), self.noise_amp, self.pad, sizes, nc, self.scale_factor)
        example = tuple(torch.randn(1, 1 if n == 0 else nc, *s) for n, s in enumerate(sizes))
        inputs = [
            {
                "name": f"noise_{n}",
                "kind": "noise",
                "shape": ["batch", 1 if n == 0 else nc, *s],
                "dtype": "float32",
                "distribution": "N(0, 1)",
            }
            for n, s in enumerate(sizes)
        ]
        out = image_io("image", nc, sizes[-1][1], dynamic_hw=False)
        out["shape"] = ["batch", nc, *sizes[-1]]
        dynamic = {f"noise_{n}": {0: "batch"} for n in range(len(sizes))} | {"image": {0: "batch"}}
        return [
            ExportGraph(
                name="pyramid",
                module=module,
                example_inputs=example,
                inputs=inputs,
                output=out,
                dynamic=dynamic,
                meta={"generator_mode": "eval", "scales": len(sizes), "sizes": sizes, "scale_h": scale_h, "scale_w": scale_w},
            )
        ]


def _as(x: torch.Tensor, output_type: str) -> Any:
    if output_type not in ("pil", "numpy", "tensor"):
        raise ConfigError(f"output_type must be pil, numpy or tensor, got {output_type!r}")
    return from_tensor_batch(x, ImageBatch(output_type, True))
