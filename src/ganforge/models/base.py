"""What every inference model shares: a typed spec, the nets it holds, image conversion, and the model folder.

An inference model is what a user holds after training: torch only (no Lightning, Hydra or wandb), the
nets inference needs and nothing else, and methods that take and return images. It is built by registry
name from a spec (a dataclass of plain values), never from a `_target_` read from a file.

A model folder is what huggingface_hub's `ModelHubMixin` writes (`model.safetensors`, `config.json`,
`README.md`), so `push_to_hub` and `from_pretrained("<hub id>")` work as for any Hub model:
  - model.safetensors: the nets' weights (no pickle);
  - config.json: {"ganforge_version", "format_version", "model" (registry name), "spec", "preprocessing",
    "training"}: plain JSON, validated against the spec's dataclass on load, never interpolated;
  - README.md: a model card.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import ModelHubMixin
from PIL import Image
from torch import nn

from ganforge.errors import CheckpointError, ConfigError
from ganforge.nets.registry import build_net, check_net_config, net_config

#: the layout of config.json
FORMAT_VERSION = 1
CONFIG_KEYS = {"ganforge_version", "format_version", "model", "spec", "preprocessing", "training"}
#: bounds for spec values: no stored config may ask for more
MAX_SIDE = 8192
MAX_CHANNELS = 4

#: registry name -> inference model class (`register_model`)
MODELS: dict[str, type[InferenceModel]] = {}


def register_model(*names: str) -> Callable[[type[InferenceModel]], type[InferenceModel]]:
    """Register an inference model class under its model names (the `model=` config names it serves)."""

    def decorate(cls: type[InferenceModel]) -> type[InferenceModel]:
        for name in names:
            MODELS[name] = cls
        return cls

    return decorate


# ----- specs: dataclasses of plain values, checked field by field --------------------------------------
def spec_from_dict(spec_type: type, data: Any, where: str):
    """`spec_type(**data)` after checking every key and value against the dataclass's annotations."""
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(spec_type)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CheckpointError(f"{where} has unknown key(s) {unknown}; {spec_type.__name__} takes {sorted(fields)}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise CheckpointError(f"{where} lacks {missing}")
    hints = typing.get_type_hints(spec_type)
    for key, value in data.items():
        _check_type(value, hints[key], f"{where}.{key}")
    try:
        return spec_type(**data)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{where}: {e}") from None


def _check_type(value: Any, hint: Any, where: str) -> None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in args:
            try:
                return _check_type(value, arm, where)
            except CheckpointError as e:
                errors.append(str(e))
        raise CheckpointError(errors[0])
    if hint is type(None):
        if value is not None:
            raise CheckpointError(f"{where} must be null, got {type(value).__name__}")
        return
    if hint is Any:
        return
    if origin is list:
        if not isinstance(value, list) or len(value) > 1024:
            raise CheckpointError(f"{where} must be a list (at most 1024 items), got {type(value).__name__}")
        for i, v in enumerate(value):
            _check_type(v, args[0], f"{where}[{i}]")
        return
    if origin is dict:
        if not isinstance(value, Mapping):
            raise CheckpointError(f"{where} must be a mapping, got {type(value).__name__}")
        for k, v in value.items():
            _check_type(k, args[0], f"{where} key")
            _check_type(v, args[1], f"{where}.{k}")
        return
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise CheckpointError(f"{where} must be a finite number, got {value!r}")
        return
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CheckpointError(f"{where} must be an integer, got {type(value).__name__}")
        return
    if hint in (str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise CheckpointError(f"{where} must be a {hint.__name__}, got {type(value).__name__}")
        if hint is str and "${" in value:
            raise CheckpointError(f"{where}={value!r} holds an interpolation; stored configs are data, never resolved")
        return
    raise TypeError(f"spec annotation {hint!r} at {where} is not supported")  # a ganforge bug, not user input


def check_range(value: int, lo: int, hi: int, name: str) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{name}={value} is out of range ({lo}..{hi})")


@dataclass
class NetsSpec:
    """The part of every spec that says which nets the model holds: {attribute: {name, kwargs}}."""

    nets: dict[str, dict[str, Any]] = field(default_factory=dict)


# ----- images in, images out --------------------------------------------------------------------------
@dataclass
class ImageBatch:
    """How a user's images came in, so outputs go back in the same kind (PIL, numpy or tensor; one or many)."""

    kind: str  # "pil" | "numpy" | "tensor"
    single: bool
    numpy_dtype: Any = None


def to_tensor_batch(images: Any, channels: int) -> tuple[torch.Tensor, ImageBatch]:
    """A PIL image, a numpy array (HW, HWC or NHWC; uint8 0..255, uint16 0..65535 or float 0..1), a tensor
    ((C, H, W) or (N, C, H, W) in [-1, 1], the models' range) or a list of one kind -> (N, C, H, W) in [-1, 1]."""
    from ganforge.imageio import _normalise_mode  # the file loader's own mode rules (16-bit, RGBA, palette)

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
    export run without torch (ganforge.runtime) draws the same ones, so it writes the same samples."""
    rng = np.random.default_rng(int(seed))
    return [torch.from_numpy(rng.standard_normal(shape).astype(np.float32)) for shape in shapes]


def seeded_normal(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return seeded_normals([shape], seed)[0]


@dataclass
class ExportGraph:
    """One network as `ganforge-export` writes it: `module(*example_inputs)` returns one tensor.

    `inputs` describes each input in order, as the manifest records it: {"name", "kind" (image |
    label | z | noise | flag), "shape" (ints, or axis names for the dynamic ones), "dtype", and for
    images the value range and channels}. `dynamic` names the axes that may change ({input or
    output name: {axis: axis name}}). `meta` goes into the manifest as is (direction, mode, ...).
    """

    name: str
    module: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    inputs: list[dict[str, Any]]
    output: dict[str, Any]
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def image_io(name: str, channels: int, side: int, dynamic_hw: bool, kind: str = "image") -> dict[str, Any]:
    """The manifest entry of an image tensor in [-1, 1] (x / 127.5 - 1 of the 8-bit pixels)."""
    hw = ["height", "width"] if dynamic_hw else [side, side]
    return {"name": name, "kind": kind, "shape": ["batch", channels, *hw], "dtype": "float32",
            "channels": channels, "range": [-1.0, 1.0], "normalisation": "pixel / 127.5 - 1"}


# ----- the model -----------------------------------------------------------------------------------------
CARD = """---
library_name: ganforge
tags:
- ganforge
- gan
- {model}
- image-generation
---

# {title}

A {paper_name} model trained with [ganforge](https://github.com/ganforge/ganforge) ({paper}).

```python
import ganforge

model = ganforge.load("{where}")
{usage}
```

| | |
|---|---|
| model | `{model}` |
| trained on | {data} |
| command | `{command}` |
| ganforge | {version} |

{metrics}
## Files
- `model.safetensors`: the generator weights{ema}
- `config.json`: the model's spec and its preprocessing: {preprocessing}
"""


class InferenceModel(nn.Module, ModelHubMixin, library_name="ganforge", tags=["ganforge", "gan"],
                     repo_url="https://github.com/ganforge/ganforge"):
    """Base class: a spec, the nets named in it, and the model-folder format. Subclasses add the methods
    users call (translate, synthesize, sample, ...) and say how their spec and preprocessing read."""

    #: the spec dataclass of this family
    Spec: ClassVar[type]
    #: what the metric suite may compute (ganforge.metrics.registry): outputs with a per-pixel ground truth,
    #: several outputs per input, one training image, label maps of this many classes
    metric_paired: ClassVar[bool] = False
    metric_multimodal: ClassVar[bool] = False
    metric_single_image: ClassVar[bool] = False
    metric_label_classes: int | None = None
    #: the translation directions `metric_batch` accepts
    directions: tuple[str, ...] = ("AtoB",)
    #: the paper, for the model card
    paper: ClassVar[str] = ""
    paper_name: ClassVar[str] = ""
    usage: ClassVar[str] = ""

    def __init__(self, spec: Any, nets: Mapping[str, nn.Module] | None = None, model_name: str | None = None):
        """`nets`: the modules to hold (a training module shares its own); None: built from the spec."""
        super().__init__()
        self.spec = spec
        self.model_name = model_name or next(k for k, v in MODELS.items() if v is type(self))
        for name, config in spec.nets.items():
            if nets is not None and name in nets:
                setattr(self, name, nets[name])
            elif nets is None:
                setattr(self, name, build_net(config, f"spec.nets.{name}"))
        if nets is None:  # nets of a training module keep the mode training gives them
            self.eval()
        #: what the training run said of itself, for the model card (data, command, metrics, EMA)
        self.training_info: dict[str, Any] = {}

    @classmethod
    def nets_spec(cls, nets: Mapping[str, nn.Module | None]) -> dict[str, dict[str, Any]]:
        return {name: net_config(net, name) for name, net in nets.items() if net is not None}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def preprocessing(self) -> dict[str, Any]:
        """What an input goes through before the nets (channels, normalisation, direction, label classes)."""
        return {}

    def check_finite(self) -> list[str]:
        """The names of weights that are NaN or infinite (a diverged run): outputs would be black."""
        return [k for k, v in self.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]

    # ----- the model folder ------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        from ganforge import __version__

        return {"ganforge_version": __version__, "format_version": FORMAT_VERSION, "model": self.model_name,
                "spec": dataclasses.asdict(self.spec), "preprocessing": self.preprocessing(),
                "training": {k: v for k, v in self.training_info.items() if k in ("data", "command", "metrics", "ema")}}

    def _save_pretrained(self, save_directory: Path) -> None:
        from safetensors.torch import save_model

        save_model(self, str(save_directory / "model.safetensors"), metadata={"format": "pt", "ganforge_model": self.model_name})
        (save_directory / "config.json").write_text(json.dumps(self.config_dict(), indent=2) + "\n")

    def save_pretrained(self, save_directory: str | Path, **kwargs) -> str | None:
        """Write the model folder (model.safetensors, config.json, README.md); an existing card is replaced."""
        (Path(save_directory) / "README.md").unlink(missing_ok=True)
        return super().save_pretrained(save_directory, **kwargs)

    def generate_model_card(self, *args, **kwargs):
        from huggingface_hub import ModelCard

        info = self.training_info
        metrics = info.get("metrics") or {}
        table = ""
        if metrics:
            rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, (int, float)) else f"| {k} | {v} |" for k, v in sorted(metrics.items()))
            table = f"## Metrics\n\n| metric | value |\n|---|---|\n{rows}\n"
        pre = ", ".join(f"{k} {v}" for k, v in self.preprocessing().items() if k != "label_classes")
        return ModelCard(CARD.format(
            title=f"{self.model_name} ({info.get('data') or 'ganforge'})", model=self.model_name, paper=self.paper,
            paper_name=self.paper_name or self.model_name, where=kwargs.get("where", "<this folder or hub id>"),
            usage=self.usage, data=info.get("data") or "unknown", command=info.get("command") or "unknown",
            version=self.config_dict()["ganforge_version"], metrics=table,
            ema=" (the EMA average of the generator, as the run kept one)" if info.get("ema") else "", preprocessing=pre,
        ))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, force_download: bool = False,
                        token: str | bool | None = None, cache_dir: str | Path | None = None,
                        local_files_only: bool = False, revision: str | None = None,
                        map_location: str | torch.device = "cpu", **_: Any) -> InferenceModel:
        """A model folder, or a Hub id (huggingface_hub's download and cache), of this class's family."""
        from ganforge.models.loading import load_folder, resolve_hub

        folder = resolve_hub(str(pretrained_model_name_or_path), revision=revision, cache_dir=cache_dir,
                             force_download=force_download, local_files_only=local_files_only, token=token)
        model = load_folder(folder, map_location=map_location)
        if cls is not InferenceModel and not isinstance(model, cls):
            raise CheckpointError(f"{pretrained_model_name_or_path} holds a {model.model_name} model, not a {cls.__name__}")
        return model

    # ----- helpers for subclasses ------------------------------------------------------------------
    @contextmanager
    def running(self, *nets: nn.Module, train_mode: bool = False) -> Iterator[None]:
        """Inference on `nets`: no gradient, eval mode (or train mode: pix2pix's test protocol, BatchNorm on
        the batch's statistics), and every mode and buffer as it was after (train-mode BatchNorm would
        otherwise fold the inputs into its running statistics)."""
        modes = [(m, m.training) for net in nets for m in net.modules()]
        saved = [(buf, buf.clone()) for net in nets for buf in net.buffers()] if train_mode else []
        for net in nets:
            net.train(train_mode)
        try:
            with torch.no_grad():
                yield
        finally:
            for buf, value in saved:
                buf.copy_(value)
            for m, mode in modes:
                m.training = mode


def check_nets(spec_nets: Mapping[str, Any], required: Sequence[str], optional: Sequence[str] = ()) -> None:
    """A spec's `nets` names exactly the nets its family holds, each a valid net config."""
    missing = [n for n in required if n not in spec_nets]
    extra = sorted(set(spec_nets) - set(required) - set(optional))
    if missing or extra:
        raise ValueError(f"nets must be {list(required)}{' + optional ' + str(list(optional)) if optional else ''}, "
                         f"got {sorted(spec_nets)}")
    for name, config in spec_nets.items():
        try:
            check_net_config(config, f"nets.{name}")
        except CheckpointError as e:
            raise ValueError(str(e)) from None
