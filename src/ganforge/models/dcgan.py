"""DCGAN (Radford et al., 2016) and the seed's Keras GAN: images from noise."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ganforge.models.base import ExportGraph, InferenceModel, image_io, running
from ganforge.models.images import ImageBatch, from_tensor_batch, seeded_normal
from ganforge.models.registry import register_model
from ganforge.models.spec import NetsSpec, check_nets, setting
from ganforge.nets.export import ImageToImage, batch_stats_copy, eval_copy
from ganforge.utils.errors import ConfigError

if TYPE_CHECKING:
    from ganforge.nets.dcgan import DCGANGenerator, DenseConvGenerator


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation (White 2016, "Sampling Generative Networks"): the path keeps the norm
    a Gaussian latent typically has, where the linear midpoint is unusually short."""
    a, b = z0.flatten(), z1.flatten()
    omega = torch.arccos((a / a.norm()).dot(b / b.norm()).clamp(-1, 1))
    if omega.abs() < 1e-6:
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


@register_model("dcgan", "dcgan_seed")
class DCGANModel(InferenceModel):
    """G(z), z ~ N(0, 1) of shape (nz, 1, 1). `sample_batch_stats` (main.py never calls netG.eval()): BatchNorm
    on the statistics of the batch of latents; else eval mode. `unit_output`: G draws in [0, 1] (the seed's
    literal data range), mapped to [-1, 1]."""

    paper = "Radford et al., Unsupervised Representation Learning with Deep Convolutional GANs, ICLR 2016"
    paper_name = "DCGAN"
    usage = "images = model.sample(16, seed=0)     # 16 PIL images\nwalk = model.interpolate(0, 1, steps=8)"
    netG: DCGANGenerator | DenseConvGenerator

    @dataclass
    class Spec(NetsSpec):
        sample_batch_stats: bool = False
        unit_output: bool = False

        def __post_init__(self) -> None:
            check_nets(self.nets, ["netG"])

    @classmethod
    def spec_data(cls, name: str, model: Mapping, data: Mapping, net: Callable[[str], dict]) -> dict[str, Any]:
        return {
            "nets": {"netG": net("netG")},
            "sample_batch_stats": setting(model, "sample_batch_stats", False),
            "unit_output": setting(model, "seed_data_range", False),
        }

    @property
    def nz(self) -> int:
        return int(self.netG.nz)

    def preprocessing(self) -> dict[str, Any]:
        return {"input": f"z ~ N(0, 1) of shape ({self.nz}, 1, 1)", "range": [-1.0, 1.0], **self.metric_protocol()}

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) on latents (N, nz, 1, 1), in [-1, 1]."""
        with running(self.netG, train_mode=self.spec.sample_batch_stats):
            fake = self.netG(z.to(self.device, self.dtype))
        return (fake * 2 - 1).clamp(-1, 1) if self.spec.unit_output else fake

    def latents(self, n: int, seed: int | None = None) -> torch.Tensor:
        """(n, nz, 1, 1) z ~ N(0, 1): numpy's generator from `seed` (as an ONNX export's runtime), else torch's stream."""
        if n < 1:
            raise ConfigError(f"the number of samples must be >= 1, got {n}")
        if seed is None:
            return torch.randn(n, self.nz, 1, 1)
        return seeded_normal((n, self.nz, 1, 1), seed)

    def sample(self, n: int = 1, seed: int | None = None, output_type: str = "pil") -> Any:
        """n images: a list of PIL images (output_type="pil"), a uint8 NHWC array ("numpy") or an (n, C, H, W)
        tensor in [-1, 1] ("tensor")."""
        return self._as(self.generate(self.latents(n, seed)), output_type)

    def interpolate(self, seed_from: int, seed_to: int, steps: int = 8, mode: str = "slerp", output_type: str = "pil") -> Any:
        """`steps` images from z(seed_from) to z(seed_to), linearly or along the sphere (slerp)."""
        if steps < 2:
            raise ConfigError(f"steps must be >= 2, got {steps}")
        if mode not in ("linear", "slerp"):
            raise ConfigError(f"mode must be linear or slerp, got {mode!r}")
        z0, z1 = self.latents(1, seed_from), self.latents(1, seed_to)
        ts = [i / (steps - 1) for i in range(steps)]
        path = [(1 - t) * z0 + t * z1 if mode == "linear" else slerp(z0, z1, t) for t in ts]
        return self._as(self.generate(torch.cat(path)), output_type)

    @staticmethod
    def _as(images: torch.Tensor, output_type: str) -> Any:
        if output_type not in ("pil", "numpy", "tensor"):
            raise ConfigError(f"output_type must be pil, numpy or tensor, got {output_type!r}")
        return from_tensor_batch(images, ImageBatch(output_type, False))

    def metric_protocol(self) -> dict[str, Any]:
        if self.spec.sample_batch_stats:
            return {"generator_mode": "train", "per_sample": False, "batchnorm": "statistics of each batch of latents (main.py)"}
        return {"generator_mode": "eval", "per_sample": False, "batchnorm": "running statistics"}

    def metric_batch(self, batch: Mapping[str, torch.Tensor], direction: str = "AtoB") -> dict[str, torch.Tensor]:
        """As many samples as real images (from torch's stream, which the caller seeds), and those images."""
        return {"fake": self.generate(self.latents(len(batch["real"]))), "real": batch["real"]}

    def export_graphs(self, opts: Mapping) -> list[ExportGraph]:
        """G(z) in the mode `generate` uses (eval, or with sample_batch_stats BatchNorm on the batch's statistics)."""
        net = batch_stats_copy(self.netG) if self.spec.sample_batch_stats else eval_copy(self.netG)
        with torch.no_grad():
            probe = eval_copy(self.netG)(torch.zeros(1, self.nz, 1, 1))  # the output's channels and side
        channels, side = probe.shape[1], probe.shape[-1]
        protocol = self.metric_protocol()
        return [
            ExportGraph(
                name="G",
                module=ImageToImage(net),
                example_inputs=(torch.randn(2, self.nz, 1, 1),),
                inputs=[{"name": "z", "kind": "z", "shape": ["batch", self.nz, 1, 1], "dtype": "float32", "distribution": "N(0, 1)"}],
                output=image_io("image", int(channels), int(side), dynamic_hw=False),
                dynamic={"z": {0: "batch"}, "image": {0: "batch"}},
                meta={"generator_mode": protocol["generator_mode"], "batchnorm": protocol["batchnorm"]},
            )
        ]
