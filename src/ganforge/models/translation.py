"""Image-to-image translators: pix2pix (Isola et al., 2017), the CycleGAN family (CycleGAN, DiscoGAN,
DualGAN: one generator per direction) and BicycleGAN (Zhu et al., 2017: G(A, z) and the style encoder E).

Every method takes PIL images, numpy arrays or tensors in [-1, 1], one or a batch, of any size (padded to
the generator's size multiple and cropped back), and returns the same kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ganforge.models.base import ExportGraph, InferenceModel, image_io, running
from ganforge.models.images import (
    forked_rng,
    from_tensor_batch,
    pad_to_multiple,
    seeded_normal,
    to_tensor_batch,
)
from ganforge.models.registry import register_model
from ganforge.models.spec import (
    MAX_CHANNELS,
    MAX_SIDE,
    NetsSpec,
    check_nets,
    check_range,
    setting,
)
from ganforge.nets.export import (
    CodeOf,
    DropoutGate,
    ImageAndCode,
    ImageToImage,
    eval_copy,
    has_dropout,
    reference_test_copy,
)
from ganforge.utils.errors import ConfigError

DIRECTIONS = ("AtoB", "BtoA")
#: pix2pix's export modes of G (ganforge-export generator_mode=...)
EXPORT_MODES = ("train", "eval")
HW = {0: "batch", 2: "height", 3: "width"}


@dataclass
class TranslationSpec(NetsSpec):
    input_nc: int = 3
    output_nc: int = 3
    #: the training crop (ganforge-predict's default network input size, as the reference test.py)
    train_size: int = 256
    #: paired models: which half of an A|B pair the model reads (data.direction)
    direction: str = "AtoB"

    def __post_init__(self) -> None:
        check_range(self.input_nc, 1, MAX_CHANNELS, "input_nc")
        check_range(self.output_nc, 1, MAX_CHANNELS, "output_nc")
        check_range(self.train_size, 1, MAX_SIDE, "train_size")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")


class Translator(InferenceModel):
    """What the translators share: image conversion, padding to the size multiple, the preprocessing record."""

    @property
    def size_multiple(self) -> int:
        return max(getattr(self, n).size_multiple for n in self.spec.nets if hasattr(getattr(self, n), "size_multiple"))

    def input_channels(self, direction: str = "AtoB") -> int:
        return self.spec.input_nc if direction == "AtoB" else self.spec.output_nc

    def output_channels(self, direction: str = "AtoB") -> int:
        return self.spec.output_nc if direction == "AtoB" else self.spec.input_nc

    def preprocessing(self) -> dict[str, Any]:
        return {
            "input_channels": self.spec.input_nc,
            "output_channels": self.spec.output_nc,
            "normalisation": "pixel / 127.5 - 1",
            "range": [-1.0, 1.0],
            "size_multiple": self.size_multiple,
            "train_size": self.spec.train_size,
            "resize": "bicubic",
            "direction": self.spec.direction,
        }

    @classmethod
    def data_spec(cls, data: Mapping) -> dict[str, Any]:
        """The spec fields that come from the run's data config: channels, training crop, direction."""
        return {
            "input_nc": setting(data, "input_nc", 3),
            "output_nc": setting(data, "output_nc", 3),
            "train_size": setting(data, "crop_size", 256),
            "direction": setting(data, "direction", "AtoB"),
        }

    def check_direction(self, direction: str | None) -> str:
        direction = direction or self.directions[0]
        if direction not in self.directions:
            raise ConfigError(f"direction must be {' or '.join(self.directions)}, got {direction!r} ({self.model_name})")
        return direction

    def _map_images(self, images: Any, channels: int, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
        x, how = to_tensor_batch(images, channels)
        x, (h, w) = pad_to_multiple(x.to(self.device, self.dtype), self.size_multiple)
        return from_tensor_batch(fn(x)[..., :h, :w], how)


@register_model("pix2pix")
class Pix2PixModel(Translator):
    """G: U-Net A -> B. `test_dropout` (the default, as the paper and the reference test.py): dropout on and
    BatchNorm on each image's own statistics; False: eval mode."""

    metric_paired = True
    paper = "Isola et al., Image-to-Image Translation with Conditional Adversarial Networks, CVPR 2017"
    paper_name = "pix2pix"
    usage = "out = model.translate(img)            # a PIL image, numpy array or tensor; one or a list"
    netG: nn.Module

    @dataclass
    class Spec(TranslationSpec):
        test_dropout: bool = True

        def __post_init__(self) -> None:
            super().__post_init__()
            check_nets(self.nets, ["netG"])

    @classmethod
    def spec_data(cls, name: str, model: Mapping, data: Mapping, net: Callable[[str], dict]) -> dict[str, Any]:
        return {"nets": {"netG": net("netG")}, **cls.data_spec(data), "test_dropout": setting(model, "test_dropout", True)}

    def translate(self, images: Any, direction: str | None = None, seed: int | None = None) -> Any:
        """G(A). With test_dropout each image goes through G alone (reference test.py, batch size 1), so an
        output does not depend on the images batched with it; `seed` fixes the dropout masks."""
        self.check_direction(direction)
        return self._map_images(images, self.spec.input_nc, lambda x: self.generate(x, seed))

    def generate(self, x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """G on a batch already in [-1, 1] at a size the U-Net takes."""
        with forked_rng(seed, x.device), running(self.netG, train_mode=self.spec.test_dropout):
            if self.spec.test_dropout:
                return torch.cat([self.netG(xi) for xi in x.split(1)])
            return self.netG(x)

    def metric_protocol(self) -> dict[str, Any]:
        if self.spec.test_dropout:
            return {
                "generator_mode": "train",
                "per_sample": True,
                "dropout": True,
                "batchnorm": "statistics of each image alone (reference test.py, batch size 1)",
            }
        return {"generator_mode": "eval", "per_sample": False, "dropout": False, "batchnorm": "running statistics"}

    def metric_batch(self, batch: Mapping[str, torch.Tensor], direction: str = "AtoB") -> dict[str, torch.Tensor]:
        return {"fake": self.generate(batch["A"]), "real": batch["B"]}

    def export_graphs(self, opts: Mapping) -> list[ExportGraph]:
        """G in the mode predict runs it: `generator_mode=train` (the default with test_dropout, as the reference
        test.py) normalises each image by its own statistics and adds a `dropout` input (1: the reference's random
        dropout, 0: none); `eval` uses the running statistics, no dropout."""
        mode = opts.get("generator_mode") or ("train" if self.spec.test_dropout else "eval")
        if mode not in EXPORT_MODES:
            raise ConfigError(f"generator_mode must be one of {EXPORT_MODES}, got {mode!r}")
        in_nc, out_nc, side = self.spec.input_nc, self.spec.output_nc, int(opts.get("size") or self.spec.train_size)
        gate = DropoutGate() if mode == "train" and has_dropout(self.netG) else None
        net = reference_test_copy(self.netG, DropoutGate() if gate is None else gate) if mode == "train" else eval_copy(self.netG)
        inputs = [image_io("image", in_nc, side, dynamic_hw=True)]
        example: tuple[torch.Tensor, ...] = (torch.rand(1, in_nc, side, side) * 2 - 1,)
        if gate is not None:
            inputs.append(
                {
                    "name": "dropout",
                    "kind": "flag",
                    "shape": [],
                    "dtype": "float32",
                    "default": 1.0,
                    "meaning": "1: dropout as the reference test.py (random masks), 0: no dropout",
                }
            )
            example += (torch.tensor(1.0),)
        direction = self.spec.direction
        return [
            ExportGraph(
                name=direction,
                module=ImageToImage(net, gate),
                example_inputs=example,
                inputs=inputs,
                output=image_io("output", out_nc, side, dynamic_hw=True),
                dynamic={"image": HW, "output": HW},
                meta={
                    "direction": direction,
                    "generator_mode": mode,
                    "batchnorm": "each image's own statistics" if mode == "train" else "running statistics",
                },
            )
        ]


@register_model("cyclegan", "cyclegan_seed", "discogan", "dualgan")
class TwoDomainModel(Translator):
    """G_A: A -> B and G_B: B -> A, in eval mode (BatchNorm on running statistics). DiscoGAN's nets work on
    [0, 1] images (`unit_range`); the methods still take and give [-1, 1]."""

    directions = DIRECTIONS
    paper = "Zhu et al., Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks, ICCV 2017"
    paper_name = "two-domain (CycleGAN family)"
    usage = 'out = model.translate(img)                    # A -> B\nback = model.translate(out, direction="BtoA")'
    netG_A: nn.Module
    netG_B: nn.Module

    @dataclass
    class Spec(TranslationSpec):
        unit_range: bool = False

        def __post_init__(self) -> None:
            super().__post_init__()
            check_nets(self.nets, ["netG_A", "netG_B"])

    @classmethod
    def spec_data(cls, name: str, model: Mapping, data: Mapping, net: Callable[[str], dict]) -> dict[str, Any]:
        return {"nets": {"netG_A": net("netG_A"), "netG_B": net("netG_B")}, **cls.data_spec(data), "unit_range": name == "discogan"}

    def translate(self, images: Any, direction: str | None = None) -> Any:
        direction = self.check_direction(direction)
        return self._map_images(images, self.input_channels(direction), lambda x: self.generate(x, direction))

    def generate(self, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        net = self.netG_A if direction == "AtoB" else self.netG_B
        with running(self.netG_A, self.netG_B):
            if self.spec.unit_range:
                return net((x + 1) / 2) * 2 - 1
            return net(x)

    def metric_protocol(self) -> dict[str, Any]:
        return {"generator_mode": "eval", "per_sample": False}

    def metric_batch(self, batch: Mapping[str, torch.Tensor], direction: str = "AtoB") -> dict[str, torch.Tensor]:
        """Translations in `direction` vs the real images of the target domain (unpaired: contents differ)."""
        if direction == "AtoB":
            return {"fake": self.generate(batch["A"], "AtoB"), "real": batch["B"]}
        return {"fake": self.generate(batch["B"], "BtoA"), "real": batch["A"]}

    def export_graphs(self, opts: Mapping) -> list[ExportGraph]:
        """One graph per direction, in eval mode, as the seed's export_graph.py."""
        side = int(opts.get("size") or self.spec.train_size)
        graphs = []
        for direction in self.directions:
            net = eval_copy(self.netG_A if direction == "AtoB" else self.netG_B)
            in_nc, out_nc = self.input_channels(direction), self.output_channels(direction)
            graphs.append(
                ExportGraph(
                    name=direction,
                    module=ImageToImage(net, unit_range=self.spec.unit_range),
                    example_inputs=(torch.rand(1, in_nc, side, side) * 2 - 1,),
                    inputs=[image_io("image", in_nc, side, dynamic_hw=True)],
                    output=image_io("output", out_nc, side, dynamic_hw=True),
                    dynamic={"image": HW, "output": HW},
                    meta={"direction": direction, "generator_mode": "eval"},
                )
            )
        return graphs


@register_model("bicyclegan", "bicyclegan_seed")
class BicycleGANModel(Translator):
    """G(A, z) with z ~ N(0, 1) of size nz, or E's mean of a style image (`encode`). Eval mode (test.py)."""

    metric_multimodal = True
    paper = "Zhu et al., Toward Multimodal Image-to-Image Translation, NeurIPS 2017"
    paper_name = "BicycleGAN"
    usage = "outs = model.sample_diverse(img, n=4, seed=0)   # four styles\nout = model.translate(img, z=model.encode(style_img))"
    netG: nn.Module
    netE: nn.Module

    @dataclass
    class Spec(TranslationSpec):
        nz: int = 8

        def __post_init__(self) -> None:
            super().__post_init__()
            check_range(self.nz, 1, 4096, "nz")
            check_nets(self.nets, ["netG", "netE"])

    @classmethod
    def spec_data(cls, name: str, model: Mapping, data: Mapping, net: Callable[[str], dict]) -> dict[str, Any]:
        return {"nets": {"netG": net("netG"), "netE": net("netE")}, **cls.data_spec(data), "nz": setting(model, "nz", 8)}

    def encode(self, images: Any) -> torch.Tensor:
        """E's mean for B images: their style codes, (N, nz) (one image: (nz,))."""
        x, how = to_tensor_batch(images, self.spec.output_nc)
        z = self.encode_tensor(x.to(self.device, self.dtype))
        return z[0] if how.single else z

    def encode_tensor(self, x: torch.Tensor) -> torch.Tensor:
        with running(self.netE):  # the reference test.py calls model.eval(): dropout off
            return self.netE(x)[0]

    def translate(self, images: Any, z: torch.Tensor | None = None, seed: int | None = None) -> Any:
        """G(A, z): z of shape (nz,) for every image or (N, nz) one per image; None: z ~ N(0, 1) drawn with
        `seed` (numpy's generator, as an ONNX export's runtime draws it), one per image."""

        def run(x: torch.Tensor) -> torch.Tensor:
            codes = self.codes(x.shape[0], z, seed)
            return self.generate(x, codes)

        return self._map_images(images, self.spec.input_nc, run)

    def sample_diverse(self, images: Any, n: int, seed: int | None = None) -> list[Any]:
        """n outputs per input, the k-th from the k-th z (the same for every input, so the k-th outputs share a style)."""
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        zs = self.latents(n, seed)
        return [self.translate(images, z=z) for z in zs]

    def diverse(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """(n, N, C, H, W) for a batch in [-1, 1]: n outputs per input, each from its own z ~ N(0, 1) (torch's
        stream): what the diversity metric (LPIPS between outputs) compares."""
        return torch.stack([self.generate(x, self.latents(len(x))) for _ in range(n)])

    def latents(self, n: int, seed: int | None = None) -> torch.Tensor:
        """(n, nz) z ~ N(0, 1): from numpy's generator with a seed, else from torch's stream."""
        if seed is None:
            return torch.randn(n, self.spec.nz).to(self.device)
        return seeded_normal((n, self.spec.nz), seed).to(self.device)

    def codes(self, batch: int, z: torch.Tensor | None, seed: int | None) -> torch.Tensor:
        if z is None:
            return self.latents(batch, seed)
        z = torch.as_tensor(z, dtype=self.dtype, device=self.device)
        if z.dim() == 1:
            z = z[None]
        if z.shape[-1] != self.spec.nz or z.shape[0] not in (1, batch):
            raise ConfigError(f"z must be ({self.spec.nz},) or ({batch}, {self.spec.nz}), got {tuple(z.shape)}")
        return z.expand(batch, -1)

    def generate(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        with running(self.netG):
            return self.netG(x, z.to(x.device))

    def metric_protocol(self) -> dict[str, Any]:
        return {"generator_mode": "eval", "per_sample": False}

    def metric_batch(self, batch: Mapping[str, torch.Tensor], direction: str = "AtoB") -> dict[str, torch.Tensor]:
        """Random-z outputs (what sampling gives a user) vs the real targets."""
        return {"fake": self.generate(batch["A"], self.latents(batch["A"].shape[0])), "real": batch["B"]}

    def export_graphs(self, opts: Mapping) -> list[ExportGraph]:
        """G(image, z) in eval mode, and `E`: an image's style code (E's mean, as `encode`)."""
        in_nc, out_nc, nz = self.spec.input_nc, self.spec.output_nc, self.spec.nz
        side = int(opts.get("size") or self.spec.train_size)
        direction = self.spec.direction
        z_io = {"name": "z", "kind": "z", "shape": ["batch", nz], "dtype": "float32", "distribution": "N(0, 1)"}
        g = ExportGraph(
            name=direction,
            module=ImageAndCode(eval_copy(self.netG)),
            example_inputs=(torch.rand(1, in_nc, side, side) * 2 - 1, torch.randn(1, nz)),
            inputs=[image_io("image", in_nc, side, dynamic_hw=True), z_io],
            output=image_io("output", out_nc, side, dynamic_hw=True),
            dynamic={"image": HW, "z": {0: "batch"}, "output": HW},
            meta={"direction": direction, "generator_mode": "eval", "nz": nz},
        )
        e = ExportGraph(
            name="E",
            module=CodeOf(eval_copy(self.netE)),
            example_inputs=(torch.rand(1, out_nc, side, side) * 2 - 1,),
            inputs=[image_io("image", out_nc, side, dynamic_hw=True, kind="style")],
            output={"name": "z", "kind": "z", "shape": ["batch", nz], "dtype": "float32"},
            dynamic={"image": HW, "z": {0: "batch"}},
            meta={"role": "encoder: the style code (E's mean) of a B image, for G's z"},
        )
        return [g, e]
