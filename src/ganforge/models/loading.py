"""`ganforge.load(x)`: a model folder, a ganforge `.ckpt`, or a Hugging Face Hub id -> its inference model.

Loading never runs code from the file:
  * a model folder holds no pickle (safetensors + JSON);
  * a `.ckpt` is read with `torch.load(weights_only=True)` (tensors and plain containers only);
  * the model is built by registry lookup of its name (`MODELS`), its nets by registry lookup of theirs
    (`ganforge.nets.registry`): no `_target_` read from a file is ever called;
  * a stored config is checked against the model's spec (unknown keys refused, types and bounds checked)
    and never interpolated: a `${...}` anywhere in it refuses the file.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ganforge.models.base import InferenceModel
from ganforge.models.folder import build, load_folder, load_state, resolve_hub
from ganforge.models.registry import MODELS
from ganforge.models.spec import check_data, short
from ganforge.nets.registry import NETS
from ganforge.utils.errors import CheckpointError

log = logging.getLogger("ganforge.models")

#: the LightningModule class a checkpoint's stored config names -> the registered model name (checkpoints
#: written before the name was stored beside it)
TRAINING_CLASSES = {
    "ganforge.gans.pix2pix.Pix2Pix": "pix2pix",
    "ganforge.gans.bicyclegan.BicycleGAN": "bicyclegan",
    "ganforge.gans.cyclegan.CycleGAN": "cyclegan",
    "ganforge.gans.discogan.DiscoGAN": "discogan",
    "ganforge.gans.dualgan.DualGAN": "dualgan",
    "ganforge.gans.spade.SPADEModel": "spade",
    "ganforge.gans.singan.SinGAN": "singan",
    "ganforge.gans.dcgan.DCGAN": "dcgan",
    "ganforge.gans.dcgan_seed.KerasDCGAN": "dcgan_seed",
}

#: where ganforge.callbacks.GeneratorEMA keeps its state in a checkpoint's "callbacks"
EMA_STATE_KEY = "GeneratorEMA"


def load(
    source: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    use_ema: bool = True,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> InferenceModel:
    """The inference model of a model folder (`save_pretrained`, `ganforge-export format=pretrained`), a `.ckpt`
    written by ganforge-train or ganforge-import (`use_ema`: the EMA generator when the run kept one), or a
    Hugging Face Hub id. In eval mode, on `map_location`."""
    path = Path(str(source)).expanduser()
    if path.is_file():
        return load_checkpoint(path, map_location=map_location, use_ema=use_ema)
    folder = resolve_hub(str(source), revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    return load_folder(folder, map_location=map_location)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint's dict, loaded with weights_only=True, with its ganforge keys checked."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={path} does not exist; give the path of a .ckpt written by ganforge-train")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the write was interrupted; use another checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses any global that is not a tensor or a plain container.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain values, so it was not loaded "
            f"(nothing in it was run): {first}. ganforge checkpoints never need that"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or not a torch file: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); use another checkpoint, e.g. the epoch_*.ckpt beside it"
        ) from None
    return check_layout(ckpt, path)


def check_layout(ckpt: Any, path: str | Path) -> dict:
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no state_dict); give a .ckpt written by ganforge-train")
    meta = ckpt.get("ganforge")
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or not isinstance(meta["config"].get("model"), dict):
        raise CheckpointError(f"{path} was not written by ganforge-train (it has no stored run config)")
    version = meta.get("format_version", 1)  # checkpoints from before versioning are format 1
    if not isinstance(version, int) or isinstance(version, bool) or version > 1:
        raise CheckpointError(f"{path} has checkpoint format {version!r}, newer than this ganforge reads (1); upgrade ganforge")
    if not isinstance(meta["config"].get("data", {}), dict):
        raise CheckpointError(f"{path}: the stored run config's data is a {type(meta['config']['data']).__name__}, not a mapping")
    check_data(meta["config"], f"{path}: the stored run config")
    return ckpt


def model_name_of(meta: Mapping, where: str) -> str:
    name = meta.get("model_name")
    if name is None:
        target = meta["config"]["model"].get("_target_")
        name = TRAINING_CLASSES.get(target) if isinstance(target, str) else None
        if name is None:
            raise CheckpointError(f"{where}: the stored model {short(target)} is not a ganforge model")
    if not isinstance(name, str) or name not in MODELS:
        raise CheckpointError(f"{where}: model {short(name)} is not a ganforge model; known: {', '.join(sorted(MODELS))}")
    return name


def net_config_from_target(node: Any, where: str) -> dict[str, Any]:
    """A stored net config ({_target_: ganforge.nets[...].<Class>, **kwargs}) as {name, kwargs}: the class is
    looked up among ganforge's registered nets, never imported from the string."""
    if not isinstance(node, Mapping):
        raise CheckpointError(f"{where} must be a net config (a mapping with _target_), got {short(node)}")
    target = node.get("_target_")
    name = target.rsplit(".", 1)[-1] if isinstance(target, str) and target.startswith("ganforge.nets.") else None
    if name not in NETS:
        raise CheckpointError(f"{where}._target_={short(target)} is not a ganforge network; refused (a _target_ is a call)")
    return {"name": name, "kwargs": {k: v for k, v in node.items() if k != "_target_"}}


def spec_data_from_run_config(name: str, config: Mapping, where: str) -> dict[str, Any]:
    """The spec of model `name` from a checkpoint's stored run config (checked by the spec on build): the model's
    own rule, `spec_data`, with each net read from its stored `_target_` config."""
    model, data = config["model"], config.get("data") or {}

    def net(key: str) -> dict[str, Any]:
        return net_config_from_target(model.get(key), f"{where}.model.{key}")

    try:
        return MODELS[name].spec_data(name, model, data, net)
    except CheckpointError as e:
        raise CheckpointError(f"{where}: {e}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", use_ema: bool = True) -> InferenceModel:
    """The inference model of a ganforge checkpoint: its stored config checked against the spec, the generator
    weights (and buffers) taken from the state_dict, the EMA average when the run kept one and `use_ema`."""
    ckpt = read_checkpoint(path, map_location="cpu")
    meta = ckpt["ganforge"]
    name = model_name_of(meta, str(path))
    model = build(name, spec_data_from_run_config(name, meta["config"], str(path)), where=str(path))
    state = ckpt["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: the state_dict is a {type(state).__name__}, not a mapping of tensors")
    wanted = model.state_dict()
    load_state(model, {k: v for k, v in state.items() if k in wanted}, str(path))
    ema = (ckpt.get("callbacks") or {}).get(EMA_STATE_KEY) if isinstance(ckpt.get("callbacks"), Mapping) else None
    if use_ema and ema is not None:
        load_ema(model, ema, str(path))
    config = meta["config"]
    model.training_info = {
        "data": _data_name(config),
        "command": config.get("command") if isinstance(config.get("command"), str) else None,
        "metrics": {k: float(v) for k, v in (meta.get("metrics") or {}).items() if isinstance(v, (int, float))}
        if isinstance(meta.get("metrics"), Mapping)
        else {},
        "ema": bool(use_ema and ema),
    }
    return model.to(map_location)


def _data_name(config: Mapping) -> str | None:
    data = config.get("data") or {}
    root = data.get("root") or data.get("path") or data.get("image_dir")
    name = data.get("name")
    if isinstance(name, str):
        return name
    return Path(root).name if isinstance(root, str) and root else None


def load_ema(model: InferenceModel, state: Any, where: str) -> None:
    """The averaged weights of a GeneratorEMA state ({"nets": {name: AveragedModel state}}) into the model's nets."""
    nets = state.get("nets") if isinstance(state, Mapping) else None
    if not isinstance(nets, Mapping):
        raise CheckpointError(f"{where}: the EMA state ({EMA_STATE_KEY}) is malformed: 'nets' must be a mapping of net names")
    modules = dict(model.named_children())
    for name, sd in nets.items():
        if name not in modules or not isinstance(sd, Mapping):
            raise CheckpointError(
                f"{where}: the EMA state names a net {short(name)} this {model.model_name} model does not "
                f"have (its nets: {', '.join(modules)})"
            )
        count = sd.get("n_averaged", 0)
        if torch.is_tensor(count):
            count = int(count) if count.numel() == 1 else 0
        if not isinstance(count, int) or count <= 0:
            continue
        weights = {k.removeprefix("module."): v for k, v in sd.items() if isinstance(k, str) and k.startswith("module.")}
        expected = modules[name].state_dict()
        if (
            any(not torch.is_tensor(v) for v in weights.values())
            or set(weights) != set(expected)
            or any(tuple(weights[k].shape) != tuple(v.shape) for k, v in expected.items())
        ):
            raise CheckpointError(
                f"{where}: the EMA average of {name} does not fit the net (names or shapes differ); "
                "load with use_ema=false to use the trained weights"
            )
        modules[name].load_state_dict(weights)
