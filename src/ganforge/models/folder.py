"""The model folder: reading it back (`load_folder`), and finding one (a local folder, or a Hub id downloaded through
huggingface_hub). Writing it is `InferenceModel.save_pretrained`."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ganforge.models.registry import MODELS
from ganforge.models.spec import check_data, short, spec_from_dict
from ganforge.nets.registry import no_init
from ganforge.utils.errors import CheckpointError

if TYPE_CHECKING:  # base imports this module
    from ganforge.models.base import InferenceModel

log = logging.getLogger("ganforge.models")

#: the layout of config.json
FORMAT_VERSION = 1

CONFIG_KEYS = {"ganforge_version", "format_version", "model", "spec", "preprocessing", "training"}

#: a Hub repo id: "name" or "owner/name" (huggingface_hub's rules, roughly)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")

MAX_CONFIG_BYTES = 10_000_000


def resolve_hub(
    source: str,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """A local folder as it is; else a Hub id, downloaded (huggingface_hub's cache, checksums and progress bars)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.suffix in (".ckpt", ".safetensors", ".json") or not HUB_ID.match(source) or source.startswith((".", "/", "~")):
        raise CheckpointError(f"{source} does not exist; give a model folder, a .ckpt file or a Hugging Face Hub id")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(
            snapshot_download(
                source,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
                token=token,
                allow_patterns=["config.json", "model.safetensors", "README.md"],
            )
        )
    except RepositoryNotFoundError:
        raise CheckpointError(f"{source} is neither a local folder nor a model on the Hugging Face Hub") from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        raise CheckpointError(
            f"{source} is not a local folder, and the Hugging Face Hub could not be reached to download it "
            f"({type(e).__name__}). Where there is a network: `hf download {source} --local-dir <folder>`, "
            "then ganforge.load(<folder>); or set HF_HUB_OFFLINE=1 with the model already in the Hub cache"
        ) from None


def load_folder(folder: str | Path, map_location: str | torch.device = "cpu") -> InferenceModel:
    folder = Path(folder)
    config_path, weights = folder / "config.json", folder / "model.safetensors"
    for f in (config_path, weights):
        if not f.is_file():
            raise CheckpointError(
                f"{folder} is not a ganforge model folder: {f.name} is missing "
                "(write one with model.save_pretrained(folder) or ganforge-export format=pretrained)"
            )
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{config_path} is {config_path.stat().st_size:,} bytes; a model config is a few kB")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{config_path} is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path} must hold a JSON object, got {type(config).__name__}")
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise CheckpointError(f"{config_path} has unknown key(s) {unknown}; a ganforge model config has {sorted(CONFIG_KEYS)}")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path} has format_version {version!r}; this ganforge reads 1..{FORMAT_VERSION} "
            "(a newer ganforge wrote it: upgrade ganforge)"
        )
    model = build(config.get("model"), config.get("spec"), where=str(config_path))
    training = config.get("training")
    if isinstance(training, dict):
        model.training_info = {k: v for k, v in training.items() if k in ("data", "command", "metrics", "ema")}
    _load_safetensors(model, weights)
    return model.to(map_location)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def build(name: Any, spec_data: Any, where: str) -> InferenceModel:
    """The registered model `name` from its spec data, on the meta device: no memory and no initialisation is
    spent on weights that `load_state` replaces at once."""
    if not isinstance(name, str) or name not in MODELS:
        raise CheckpointError(f"{where}: model {short(name)} is not a ganforge model; known: {', '.join(sorted(MODELS))}")
    check_data(spec_data, f"{where} spec")
    cls = MODELS[name]
    spec = spec_from_dict(cls.Spec, spec_data, f"{where} spec")
    with torch.device("meta"), no_init():
        return cls(spec, model_name=name)


def _load_safetensors(model: InferenceModel, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e})") from None
    load_state(model, state, str(path))


def state_differences(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, Any], found_as: str, expected_as: str
) -> tuple[list[str], list[str], list[str]]:
    """What keeps `found` from loading where `expected` is: the names it lacks, the names it has beyond them, and
    each tensor of another shape, as "name: <found_as> (shape) vs <expected_as> (shape)"."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{k}: {found_as} {tuple(found[k].shape)} vs {expected_as} {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and torch.is_tensor(found[k]) and tuple(found[k].shape) != tuple(v.shape)
    ]
    return missing, unexpected, shapes


def load_state(model: InferenceModel, state: Mapping[str, Any], where: str) -> None:
    """Weights into `model`, every name and shape checked first (one CheckpointError saying what differs)."""
    expected = model.state_dict()
    bad = [k for k, v in state.items() if not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(f"{where}: {len(bad)} weight(s) are not tensors (e.g. {bad[:3]})")
    missing, unexpected, shapes = state_differences(expected, state, "file", "model")
    if missing or unexpected or shapes:
        parts = (
            ([f"{len(missing)} missing (e.g. {', '.join(missing[:3])})"] if missing else [])
            + ([f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})"] if unexpected else [])
            + ([f"{len(shapes)} of another shape (e.g. {'; '.join(shapes[:2])})"] if shapes else [])
        )
        raise CheckpointError(f"{where}: the weights do not fit the {model.model_name} model its config describes: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True, assign=True)
    left = [k for k, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # a buffer outside the state_dict (non-persistent) would have no value: a ganforge bug, not the file's
        raise RuntimeError(f"{model.model_name}: {left[:3]} have no value after loading; register them as persistent")
    nonfinite = model.check_finite()
    if nonfinite:
        log.warning(
            "%s: %d weight tensor(s) hold NaN or infinite values (e.g. %s): outputs will be meaningless; "
            "use an earlier checkpoint of the run",
            where,
            len(nonfinite),
            ", ".join(nonfinite[:3]),
        )
