"""What every inference model shares: a typed spec, the nets it holds, image conversion, and the model folder.

An inference model is what a user holds after training: torch only (no Lightning, Hydra or wandb), the
nets inference needs and nothing else, and methods that take and return images. It is built by registry
name from a spec (a dataclass of plain values), never from a `_target_` read from a file.

A model folder has the layout of huggingface_hub's `PyTorchModelHubMixin` (`model.safetensors`, `config.json`,
`README.md`) and the same methods (`save_pretrained`, `from_pretrained`, `push_to_hub`), so Hub ids work as for
any Hub model. The mixin itself is not inherited: its import costs more than the rest of `ganforge.load`, so
huggingface_hub is imported only where the Hub is used (downloads, uploads, the model card).
  - model.safetensors: the nets' weights (no pickle);
  - config.json: {"ganforge_version", "format_version", "model" (registry name), "spec", "preprocessing",
    "training"}: plain JSON, validated against the spec's dataclass on load, never interpolated;
  - README.md: a model card.
"""

from __future__ import annotations

import dataclasses
import json
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ganforge.models.folder import FORMAT_VERSION
from ganforge.models.registry import MODELS
from ganforge.nets.registry import build_net
from ganforge.utils.errors import CheckpointError

if TYPE_CHECKING:
    from huggingface_hub import ModelCard


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
    return {
        "name": name,
        "kind": kind,
        "shape": ["batch", channels, *hw],
        "dtype": "float32",
        "channels": channels,
        "range": [-1.0, 1.0],
        "normalisation": "pixel / 127.5 - 1",
    }


# ----- the model card and the base class -----------------------------------------------------------------------------------------

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


class InferenceModel(nn.Module):
    """Base class: a spec, the nets named in it, and the model-folder format. Subclasses add the methods
    users call (translate, synthesize, sample, ...) and say how their spec and preprocessing read."""

    #: the spec dataclass of this family
    Spec: ClassVar[type]
    #: the spec data of this family from a checkpoint's run config: (name, model config, data config, net) -> dict
    spec_data: ClassVar[Callable[..., dict[str, Any]]]
    #: what the metric suite may compute (ganforge.metrics.registry): outputs with a per-pixel ground truth,
    #: several outputs per input, one training image, label maps of this many classes
    metric_paired: ClassVar[bool] = False
    metric_multimodal: ClassVar[bool] = False
    metric_single_image: ClassVar[bool] = False
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

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """torch.compile each net in place, for inference (each scale of a SinGAN pyramid). Its inference calls
        compile with inductor's `freezing`: the weights become constants of the graph, so oneDNN gets its
        convolution weights packed once instead of at every call (on a CPU about 2x the images/s of eager for the
        U-Net, 1.1-1.25x for the ResNet: docs/benchmarks.md); and `fallback_random`: dropout draws its masks from
        torch's own stream, so a `seed` gives the masks eager gives. Outputs differ from eager by float32
        rounding. The first call at each input size compiles (seconds on a CPU, where inductor needs a C++
        compiler), and weights changed afterwards are not seen: compile after loading and `.to()`. The arguments
        are torch.compile's."""
        for name in self.spec.nets:
            net = getattr(self, name)
            for part in net if isinstance(net, nn.ModuleList) else (net,):
                part.compile(*args, **kwargs)
                COMPILED_FOR_INFERENCE.add(part)

    @property
    def metric_label_classes(self) -> int | None:
        return None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def preprocessing(self) -> dict[str, Any]:
        """What an input goes through before the nets (channels, normalisation, direction, label classes)."""
        return {}

    # ----- what every family implements for ganforge-eval and ganforge-export -------------------------
    def metric_protocol(self) -> dict[str, Any]:
        """How the metric outputs are generated (the nets' modes), for the evaluation report."""
        raise NotImplementedError

    def metric_batch(self, batch: Mapping[str, torch.Tensor], direction: str = "AtoB") -> dict[str, torch.Tensor]:
        """The outputs the metric suite compares for one batch of the data module: "fake", and "real" / "label"."""
        raise NotImplementedError

    def diverse(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """n outputs per input (`metric_multimodal` families): what the diversity metric compares."""
        raise NotImplementedError

    def export_graphs(self, opts: Mapping) -> list[ExportGraph]:
        """The networks `ganforge-export` writes, each with its inputs and outputs described."""
        raise NotImplementedError

    def check_finite(self) -> list[str]:
        """The names of weights that are NaN or infinite (a diverged run): outputs would be black."""
        return [k for k, v in self.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]

    # ----- the model folder ------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        from ganforge import __version__

        return {
            "ganforge_version": __version__,
            "format_version": FORMAT_VERSION,
            "model": self.model_name,
            "spec": dataclasses.asdict(self.spec),
            "preprocessing": self.preprocessing(),
            "training": {k: v for k, v in self.training_info.items() if k in ("data", "command", "metrics", "ema")},
        }

    def save_pretrained(
        self, save_directory: str | Path, *, push_to_hub: bool = False, repo_id: str | None = None, **push_kwargs: Any
    ) -> str | None:
        """Write the model folder (model.safetensors, config.json, README.md), replacing what a folder of that name
        holds of them; with `push_to_hub`, upload it too (to `repo_id`, default: the folder's name)."""
        from safetensors.torch import save_model

        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        save_model(self, str(folder / "model.safetensors"), metadata={"format": "pt", "ganforge_model": self.model_name})
        (folder / "config.json").write_text(json.dumps(self.config_dict(), indent=2) + "\n")
        self.generate_model_card().save(folder / "README.md")
        if push_to_hub:
            return self.push_to_hub(repo_id or folder.name, **push_kwargs)
        return None

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str = "Upload a ganforge model",
        private: bool | None = None,
        token: str | None = None,
        branch: str | None = None,
        create_pr: bool | None = None,
    ) -> str:
        """Upload the model folder to the Hugging Face Hub in one commit (huggingface_hub's `upload_folder`)."""
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            return api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message, revision=branch, create_pr=create_pr)

    def generate_model_card(self, where: str = "<this folder or hub id>") -> ModelCard:
        """The folder's README.md (huggingface_hub's ModelCard: YAML metadata, then the text)."""
        from huggingface_hub import ModelCard

        info = self.training_info
        metrics = info.get("metrics") or {}
        table = ""
        if metrics:
            rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, (int, float)) else f"| {k} | {v} |" for k, v in sorted(metrics.items()))
            table = f"## Metrics\n\n| metric | value |\n|---|---|\n{rows}\n"
        pre = ", ".join(f"{k} {v}" for k, v in self.preprocessing().items() if k != "label_classes")
        return ModelCard(
            CARD.format(
                title=f"{self.model_name} ({info.get('data') or 'ganforge'})",
                model=self.model_name,
                paper=self.paper,
                paper_name=self.paper_name or self.model_name,
                where=where,
                usage=self.usage,
                data=info.get("data") or "unknown",
                command=info.get("command") or "unknown",
                version=self.config_dict()["ganforge_version"],
                metrics=table,
                ema=" (the EMA average of the generator, as the run kept one)" if info.get("ema") else "",
                preprocessing=pre,
            )
        )

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        map_location: str | torch.device = "cpu",
        **_: Any,
    ) -> InferenceModel:
        """A model folder, or a Hub id (huggingface_hub's download and cache), of this class's family."""
        from ganforge.models.folder import load_folder, resolve_hub

        folder = resolve_hub(
            str(pretrained_model_name_or_path),
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
        )
        model = load_folder(folder, map_location=map_location)
        if cls is not InferenceModel and not isinstance(model, cls):
            raise CheckpointError(f"{pretrained_model_name_or_path} holds a {model.model_name} model, not a {cls.__name__}")
        return model


#: nets compiled by `InferenceModel.compile`: `running` compiles and runs them with their weights frozen
COMPILED_FOR_INFERENCE: weakref.WeakSet[nn.Module] = weakref.WeakSet()


@contextmanager
def running(*nets: nn.Module, train_mode: bool = False) -> Iterator[None]:
    """Inference on `nets`: no gradient, eval mode (or train mode: pix2pix's test protocol, BatchNorm on the batch's
    statistics), and every mode and buffer as it was after (train-mode BatchNorm would otherwise fold the inputs into
    its running statistics; restoring is exact, where momentum=0 would still advance num_batches_tracked)."""
    modes = [(m, m.training) for net in nets for m in net.modules()]
    saved = [(buf, buf.clone()) for net in nets for buf in net.buffers()] if train_mode else []
    for net in nets:
        net.train(train_mode)
    frozen: AbstractContextManager = nullcontext()
    if any(m in COMPILED_FOR_INFERENCE for m, _ in modes):
        # read by dynamo when it traces and by inductor when it lowers, so on for the whole call; the nets a
        # training module compiles are never frozen: their weights change
        from torch._inductor import config

        frozen = config.patch(freezing=True, fallback_random=True)
    try:
        with torch.no_grad(), frozen:
            yield
    finally:
        for buf, value in saved:
            buf.copy_(value)
        for m, mode in modes:
            m.training = mode
