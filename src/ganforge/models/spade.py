"""SPADE / GauGAN (Park et al., 2019): photos from label maps, optionally in the style of an image (VAE).

`synthesize` takes label maps as the dataset's label files store them (a PIL image of ids, or an int numpy
array / tensor of ids, (H, W) or (N, H, W)); their ids are converted as the training data's were
(`LabelIds`: don't-care and shift), so a label file of the training set reads the same here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ganforge.models.base import ExportGraph, InferenceModel, image_io, running
from ganforge.models.images import (
    ImageBatch,
    forked_rng,
    from_tensor_batch,
    seeded_normal,
    to_tensor_batch,
)
from ganforge.models.registry import register_model
from ganforge.models.spec import (
    MAX_CHANNELS,
    NetsSpec,
    check_nets,
    check_range,
    setting,
)
from ganforge.nets.export import LabelMapToImage, eval_copy
from ganforge.nets.spade import label_edges
from ganforge.utils.errors import ConfigError
from ganforge.utils.imageio import LabelIds, fit_size

if TYPE_CHECKING:
    from ganforge.nets.spade import SPADEEncoder, SPADEGenerator


def label_colormap(n: int) -> torch.Tensor:
    """(n, 3) uint8 colours, the bit-interleaved PASCAL map of SPADE's util/util.py labelcolormap."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        cid = i + 1
        for j in range(7):
            r ^= ((cid >> 0) & 1) << (7 - j)
            g ^= ((cid >> 1) & 1) << (7 - j)
            b ^= ((cid >> 2) & 1) << (7 - j)
            cid >>= 3
        cmap[i] = (r, g, b)
    return torch.from_numpy(cmap)


@register_model("spade")
class SPADEInference(InferenceModel):
    paper = "Park et al., Semantic Image Synthesis with Spatially-Adaptive Normalization, CVPR 2019"
    paper_name = "SPADE (GauGAN)"
    usage = (
        "photo = model.synthesize(label_map)   # a label-id image as the dataset stores them\n"
        "styled = model.synthesize(label_map, style=photo)   # models trained with use_vae"
    )
    netG: SPADEGenerator
    netE: SPADEEncoder

    @dataclass
    class Spec(NetsSpec):
        label_nc: int = 182
        contain_dontcare_label: bool = True
        use_instance: bool = True
        output_nc: int = 3
        #: the stored id that marks unlabelled pixels (data.dontcare_label), and the shift of stored ids
        dontcare_id: int | None = None
        label_shift: int = 0
        class_names: list[str] = field(default_factory=list)
        #: mIoU classes are the model ids from this one on, less it (ADE20K's raw ids: 1, 'other' left out)
        metric_label_shift: int = 0

        def __post_init__(self) -> None:
            check_range(self.label_nc, 1, 4096, "label_nc")
            check_range(self.output_nc, 1, MAX_CHANNELS, "output_nc")
            check_range(self.label_shift, 0, 4096, "label_shift")
            check_range(self.metric_label_shift, 0, self.label_nc - 1, "metric_label_shift")
            if self.dontcare_id is not None:
                check_range(self.dontcare_id, 0, 65535, "dontcare_id")
            check_nets(self.nets, ["netG"], optional=["netE"])

    @classmethod
    def spec_data(cls, name: str, model: Mapping, data: Mapping, net: Callable[[str], dict]) -> dict[str, Any]:
        nets = {"netG": net("netG")} | ({"netE": net("netE")} if setting(model, "use_vae", False) else {})
        return {
            "nets": nets,
            "label_nc": setting(model, "label_nc", 182),
            "contain_dontcare_label": setting(model, "contain_dontcare_label", True),
            "use_instance": setting(model, "use_instance", True),
            "output_nc": setting(data, "output_nc", 3),
            "dontcare_id": data.get("dontcare_label"),
            "label_shift": setting(data, "label_shift", 0),
            "class_names": list(setting(data, "class_names", [])),
            "metric_label_shift": setting(model, "metric_label_shift", 0),
        }

    @property
    def use_vae(self) -> bool:
        return "netE" in self.spec.nets

    @property
    def size_multiple(self) -> int:
        return self.netG.size_multiple

    @property
    def train_size(self) -> tuple[int, int]:
        """(w, h) of the training geometry (the generator's starting grid times its upsampling)."""
        return self.netG.sw * self.size_multiple, self.netG.sh * self.size_multiple

    @property
    def metric_label_classes(self) -> int:
        return self.spec.label_nc - self.spec.metric_label_shift

    def metric_labels(self, label: torch.Tensor) -> torch.Tensor:
        """Model ids as the mIoU's classes: less `metric_label_shift`; ids below it, like don't-care, become the
        left-out id (`metric_label_classes`)."""
        shift = self.spec.metric_label_shift
        return torch.where(label < shift, self.metric_label_classes, label - shift) if shift else label

    @property
    def n_labels(self) -> int:
        return self.spec.label_nc + int(self.spec.contain_dontcare_label)

    def preprocessing(self) -> dict[str, Any]:
        s = self.spec
        return {
            "input": "label ids",
            "label_nc": s.label_nc,
            "dontcare_id": s.dontcare_id,
            "label_shift": s.label_shift,
            "dontcare_channel": s.contain_dontcare_label,
            "instance_edges": s.use_instance,
            "train_size": list(self.train_size),
            "resize": "nearest (labels), bicubic (outputs)",
            "output_channels": s.output_nc,
            "range": [-1.0, 1.0],
            "style_encoder": self.use_vae,
        }

    def label_classes(self) -> list[tuple[str, tuple[int, int, int]]]:
        """(name, colour) of each class, by model id (don't-care last, black, when the model has its channel)."""
        names, cmap = self.spec.class_names, label_colormap(self.spec.label_nc).tolist()
        classes = [(names[i] if i < len(names) else f"class {i}", tuple(cmap[i])) for i in range(self.spec.label_nc)]
        if self.spec.contain_dontcare_label:
            classes.append(("don't care", (0, 0, 0)))
        return classes

    def label_ids(self) -> LabelIds:
        return LabelIds(self.spec.label_nc, self.spec.dontcare_id, self.spec.label_shift)

    # ----- the nets' inputs ----------------------------------------------------------------------
    def semantics(self, label: torch.Tensor, instance: torch.Tensor | None = None) -> torch.Tensor:
        """One-hot label map (label_nc [+1 don't-care] channels) [+ instance edges] (pix2pix_model.py
        preprocess_input). Ids outside the channels stop with a ConfigError instead of a scatter crash."""
        s, nc = self.spec, self.n_labels
        label = label.long()
        if label.dim() == 3:
            label = label.unsqueeze(1)
        lo, hi = int(label.min()), int(label.max())
        if lo < 0 or hi >= nc:
            extra = " + 1 don't-care" if s.contain_dontcare_label else ""
            raise ConfigError(
                f"label ids range {lo}..{hi}, but the model has {nc} label channels (label_nc={s.label_nc}{extra}); "
                f"set data.label_nc={hi + 1} (the data module maps don't-care ids to label_nc)"
            )
        onehot = torch.zeros(label.shape[0], nc, *label.shape[2:], device=label.device, dtype=self.dtype)
        onehot.scatter_(1, label, 1.0)
        if s.use_instance:
            # No instance map: no instance boundaries, as for a label map without instances.
            inst = torch.zeros_like(label) if instance is None else (instance if instance.dim() == 4 else instance.unsqueeze(1))
            onehot = torch.cat([onehot, label_edges(inst).to(onehot.dtype)], dim=1)
        return onehot

    def generate(
        self,
        label: torch.Tensor,
        instance: torch.Tensor | None = None,
        z: torch.Tensor | None = None,
        style: torch.Tensor | None = None,
        use_mean: bool = False,
    ) -> torch.Tensor:
        """G on model ids (N, 1, H, W) in eval mode (test.py calls model.eval()). With the VAE: z given, or
        encoded from `style` (reparameterized as the reference's inference, or E's mean), or z ~ N(0, 1)."""
        nets = (self.netG,) + ((self.netE,) if self.use_vae else ())
        with running(*nets):
            sem = self.semantics(label.to(self.device), None if instance is None else instance.to(self.device))
            if self.use_vae and z is None and style is not None:
                mu, logvar = self.netE(style.to(sem.device, sem.dtype))
                z = mu if use_mean else mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
                z = z.expand(sem.shape[0], -1) if z.shape[0] == 1 else z
            return self.netG(sem, z if self.use_vae else None)

    def fit_label_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(w, h) a label map of `size` goes in at: the training geometry when the G's grid is fixed (VAE) or
        `size` is the square training crop (Cityscapes trains at crop x crop/aspect_ratio), else `size`."""
        train = self.train_size
        if self.use_vae or tuple(size) == (train[0], train[0]):
            return train
        w, h = size
        return w, h

    # ----- what users call -----------------------------------------------------------------------
    def encode_style(self, images: Any) -> torch.Tensor:
        """E's mean of style photos: (N, z_dim) (one image: (z_dim,)). Needs a model trained with use_vae."""
        self._need_vae("encode_style")
        x, how = to_tensor_batch(images, 3)
        x = F.interpolate(x, size=self.train_size[::-1], mode="bicubic", align_corners=False)
        with running(self.netE):
            mu = self.netE(x.to(self.device, self.dtype))[0]
        return mu[0] if how.single else mu

    def synthesize(self, label_map: Any, instance: Any = None, style: Any = None, seed: int | None = None) -> Any:
        """Photos for label maps (ids as stored; converted as the training data). `style`: a photo (its style
        code, E's mean), a code from `encode_style`, or None: z ~ N(0, 1) drawn with `seed`. Outputs come
        back at the label map's size, as PIL images for PIL or numpy inputs and tensors for tensors."""
        ids, kind, single = self._ids(label_map)
        inst = None if instance is None else self._ids(instance, convert=False)[0]
        w, h = ids.shape[-1], ids.shape[-2]
        net_w, net_h = self.fit_label_size(fit_size(w, h, self.size_multiple))
        x = F.interpolate(ids.float(), size=(net_h, net_w), mode="nearest").long()
        inst = None if inst is None else F.interpolate(inst.float(), size=(net_h, net_w), mode="nearest").long()
        z = None
        if self.use_vae:
            if style is None:
                z = seeded_normal((1, self.netG.z_dim), 0 if seed is None else seed).to(self.device)
            elif torch.is_tensor(style) and style.dim() <= 2 and style.shape[-1] == self.netG.z_dim:
                z = style.reshape(-1, self.netG.z_dim).to(self.device)
            else:
                z = self.encode_style(style).reshape(-1, self.netG.z_dim)
            z = z.expand(x.shape[0], -1) if z.shape[0] == 1 else z
        elif style is not None:
            self._need_vae("style=")
        with forked_rng(seed, self.device):
            out = self.generate(x, inst, z=z)
        if (net_w, net_h) != (w, h):
            out = F.interpolate(out.float(), size=(h, w), mode="bicubic", align_corners=False)
        return from_tensor_batch(out, ImageBatch("tensor" if kind == "tensor" else "pil", single))

    def _ids(self, label_map: Any, convert: bool = True) -> tuple[torch.Tensor, str, bool]:
        if isinstance(label_map, Image.Image):
            raw, kind = np.asarray(label_map.convert("I") if label_map.mode not in ("L", "I", "I;16", "P") else label_map), "pil"
        elif isinstance(label_map, np.ndarray):
            raw, kind = label_map, "numpy"
        elif torch.is_tensor(label_map):
            raw, kind = label_map.detach().cpu().numpy(), "tensor"
        else:
            raise ConfigError(f"a label map must be a PIL image, numpy array or tensor of ids, got {type(label_map).__name__}")
        if not np.issubdtype(raw.dtype, np.integer) or raw.ndim not in (2, 3, 4):
            raise ConfigError(f"a label map must hold integer ids, (H, W) or (N, H, W), got {raw.dtype} {raw.shape}")
        single = raw.ndim == 2
        raw = raw.reshape(-1, 1, *raw.shape[-2:]).astype(np.int64)
        ids = self.label_ids().convert(raw, Path("<label map>")) if convert else raw
        return torch.from_numpy(ids), kind, single

    def _need_vae(self, what: str) -> None:
        if not self.use_vae:
            raise ConfigError(f"{what} needs a SPADE model trained with model.use_vae=true (a style encoder)")

    def metric_protocol(self) -> dict[str, Any]:
        return {"generator_mode": "eval", "per_sample": False}

    def metric_batch(self, batch: Mapping[str, torch.Tensor], direction: str = "AtoB") -> dict[str, torch.Tensor]:
        """The reference protocol (test.py): G(val label map) at crop size, the style (VAE) encoded from the
        val photo; compared with the val photos, and with the label maps for mIoU."""
        fake = self.generate(batch["label"], batch.get("instance"), style=batch["image"] if self.use_vae else None)
        return {"fake": fake, "real": batch["image"], "label": self.metric_labels(batch["label"])}

    def colorize(self, label: torch.Tensor) -> torch.Tensor:
        """Model ids (B, 1, H, W) as colours in [-1, 1]; don't-care black."""
        cmap = torch.cat([label_colormap(self.spec.label_nc), torch.zeros(1, 3, dtype=torch.uint8)])
        ids = label.long().squeeze(1).clamp(0, self.spec.label_nc).cpu()
        return (cmap[ids].permute(0, 3, 1, 2).float() / 127.5 - 1.0).to(label.device)

    def export_graphs(self, opts: Mapping) -> list[ExportGraph]:
        """G in eval mode on label ids (one-hot inside the graph, no instance edges, as predict); with the VAE a
        z input (N(0, 1) or E's mean of a style image) and a fixed grid; without it any multiple of the G's
        size multiple works."""
        g, s, nc = self.netG, self.spec, self.n_labels
        w, h = self.train_size
        if opts.get("size") and not self.use_vae:
            w = h = int(opts["size"])
        dyn = not self.use_vae
        label_io = {
            "name": "label",
            "kind": "label",
            "shape": ["batch", 1, "height" if dyn else h, "width" if dyn else w],
            "dtype": "int64",
            "classes": nc,
            "meaning": "class ids as the training data (don't-care: label_nc)",
        }
        inputs = [label_io]
        example: tuple[torch.Tensor, ...] = (torch.randint(0, nc, (1, 1, h, w)),)
        dynamic = {"label": {0: "batch", 2: "height", 3: "width"} if dyn else {0: "batch"}}
        if self.use_vae:
            inputs.append({"name": "z", "kind": "z", "shape": ["batch", g.z_dim], "dtype": "float32", "distribution": "N(0, 1)"})
            example += (torch.randn(1, g.z_dim),)
            dynamic["z"] = {0: "batch"}
        out = image_io("image", int(g.conv_img.out_channels), w, dynamic_hw=dyn)
        if not dyn:
            out["shape"] = ["batch", out["channels"], h, w]
        dynamic["image"] = dynamic["label"]
        label_settings = {"label_nc": s.label_nc, "dontcare_id": s.dontcare_id, "shift": s.label_shift}
        return [
            ExportGraph(
                name="G",
                module=LabelMapToImage(eval_copy(g), nc, s.use_instance, self.use_vae),
                example_inputs=example,
                inputs=inputs,
                output=out,
                dynamic=dynamic,
                meta={
                    "generator_mode": "eval",
                    "label_ids": label_settings,
                    # fit_label_size's rule, for ganforge.export.runtime: label maps go in at the training geometry
                    # when the grid is fixed (VAE) or the size asked is the square training crop
                    "train_label_size": list(self.train_size),
                    "fixed_size": self.use_vae,
                },
            )
        ]
