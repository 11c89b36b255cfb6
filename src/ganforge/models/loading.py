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

import json
import logging
import math
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ganforge.errors import CheckpointError
from ganforge.models.base import CONFIG_KEYS, FORMAT_VERSION, MODELS, InferenceModel, spec_from_dict
import ganforge.nets  # noqa: F401 - registers every network class
from ganforge.nets.registry import NETS

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
#: a Hub repo id: "name" or "owner/name" (huggingface_hub's rules, roughly)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")
MAX_CONFIG_BYTES = 10_000_000
MAX_DEPTH = 32


def load(source: str | Path, *, map_location: str | torch.device = "cpu", use_ema: bool = True,
         revision: str | None = None, cache_dir: str | Path | None = None, local_files_only: bool = False,
         token: str | bool | None = None) -> InferenceModel:
    """The inference model of a model folder (`save_pretrained`, `ganforge-export format=pretrained`), a `.ckpt`
    written by ganforge-train or ganforge-import (`use_ema`: the EMA generator when the run kept one), or a
    Hugging Face Hub id. In eval mode, on `map_location`."""
    path = Path(str(source)).expanduser()
    if path.is_file():
        return load_checkpoint(path, map_location=map_location, use_ema=use_ema)
    folder = resolve_hub(str(source), revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    return load_folder(folder, map_location=map_location)


# ----- model folders -----------------------------------------------------------------------------------
def resolve_hub(source: str, revision: str | None = None, cache_dir: str | Path | None = None,
                force_download: bool = False, local_files_only: bool = False, token: str | bool | None = None) -> Path:
    """A local folder as it is; else a Hub id, downloaded (huggingface_hub's cache, checksums and progress bars)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.suffix in (".ckpt", ".safetensors", ".json") or not HUB_ID.match(source) or source.startswith((".", "/", "~")):
        raise CheckpointError(f"{source} does not exist; give a model folder, a .ckpt file or a Hugging Face Hub id")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(source, revision=revision, cache_dir=cache_dir, force_download=force_download,
                                      local_files_only=local_files_only, token=token,
                                      allow_patterns=["config.json", "model.safetensors", "README.md"]))
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
            raise CheckpointError(f"{folder} is not a ganforge model folder: {f.name} is missing "
                                  "(write one with model.save_pretrained(folder) or ganforge-export format=pretrained)")
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
        raise CheckpointError(f"{config_path} has format_version {version!r}; this ganforge reads 1..{FORMAT_VERSION} "
                              "(a newer ganforge wrote it: upgrade ganforge)")
    model = build(config.get("model"), config.get("spec"), where=str(config_path))
    training = config.get("training")
    if isinstance(training, dict):
        model.training_info = {k: v for k, v in training.items() if k in ("data", "command", "metrics", "ema")}
    _load_safetensors(model, weights)
    return model.to(map_location)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def build(name: Any, spec_data: Any, where: str) -> InferenceModel:
    """The registered model `name` from its spec data, with the nets' own initial weights."""
    if not isinstance(name, str) or name not in MODELS:
        raise CheckpointError(f"{where}: model {_short(name)} is not a ganforge model; known: {', '.join(sorted(MODELS))}")
    _check_data(spec_data, f"{where} spec")
    cls = MODELS[name]
    spec = spec_from_dict(cls.Spec, spec_data, f"{where} spec")
    return cls(spec, model_name=name)


def _load_safetensors(model: InferenceModel, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e})") from None
    load_state(model, state, str(path))


def load_state(model: InferenceModel, state: Mapping[str, Any], where: str) -> None:
    """Weights into `model`, every name and shape checked first (one CheckpointError saying what differs)."""
    expected = model.state_dict()
    bad = [k for k, v in state.items() if not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(f"{where}: {len(bad)} weight(s) are not tensors (e.g. {bad[:3]})")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = ([f"{len(missing)} missing (e.g. {', '.join(missing[:3])})"] if missing else []) + \
                ([f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})"] if unexpected else []) + \
                ([f"{len(shapes)} of another shape (e.g. {'; '.join(shapes[:2])})"] if shapes else [])
        raise CheckpointError(f"{where}: the weights do not fit the {model.model_name} model its config describes: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)
    nonfinite = model.check_finite()
    if nonfinite:
        log.warning("%s: %d weight tensor(s) hold NaN or infinite values (e.g. %s): outputs will be meaningless; "
                    "use an earlier checkpoint of the run", where, len(nonfinite), ", ".join(nonfinite[:3]))


# ----- checkpoints --------------------------------------------------------------------------------------
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
    _check_data(meta["config"], f"{path}: the stored run config")
    return ckpt


def _check_data(node: Any, where: str, depth: int = 0) -> None:
    """Plain JSON-like data only, and no `${...}` anywhere: a stored config is data, never interpolated."""
    if depth > MAX_DEPTH:
        raise CheckpointError(f"{where} nests deeper than {MAX_DEPTH} levels")
    if isinstance(node, str):
        if "${" in node:
            raise CheckpointError(f"{where} holds an interpolation ({_short(node)}); stored configs are data and are "
                                  "never resolved, so the file was refused (nothing in it was run)")
    elif isinstance(node, Mapping):
        for key, value in node.items():
            if not isinstance(key, str):
                raise CheckpointError(f"{where} has a non-string key {_short(key)}")
            _check_data(key, where, depth + 1)
            _check_data(value, f"{where}.{key}", depth + 1)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            _check_data(value, f"{where}[{i}]", depth + 1)
    elif isinstance(node, float):
        if not math.isfinite(node):
            raise CheckpointError(f"{where} is {node}")
    elif not isinstance(node, (int, bool, type(None))) and not torch.is_tensor(node):
        raise CheckpointError(f"{where} holds a {type(node).__name__}")


def model_name_of(meta: Mapping, where: str) -> str:
    name = meta.get("model_name")
    if name is None:
        target = meta["config"]["model"].get("_target_")
        name = TRAINING_CLASSES.get(target) if isinstance(target, str) else None
        if name is None:
            raise CheckpointError(f"{where}: the stored model {_short(target)} is not a ganforge model")
    if not isinstance(name, str) or name not in MODELS:
        raise CheckpointError(f"{where}: model {_short(name)} is not a ganforge model; known: {', '.join(sorted(MODELS))}")
    return name


def net_config_from_target(node: Any, where: str) -> dict[str, Any]:
    """A stored net config ({_target_: ganforge.nets[...].<Class>, **kwargs}) as {name, kwargs}: the class is
    looked up among ganforge's registered nets, never imported from the string."""
    if not isinstance(node, Mapping):
        raise CheckpointError(f"{where} must be a net config (a mapping with _target_), got {_short(node)}")
    target = node.get("_target_")
    name = target.rsplit(".", 1)[-1] if isinstance(target, str) and target.startswith("ganforge.nets.") else None
    if name not in NETS:
        raise CheckpointError(f"{where}._target_={_short(target)} is not a ganforge network; refused (a _target_ is a call)")
    return {"name": name, "kwargs": {k: v for k, v in node.items() if k != "_target_"}}


def spec_data_from_run_config(name: str, config: Mapping, where: str) -> dict[str, Any]:
    """The spec of model `name` from a checkpoint's stored run config (checked by the spec on build)."""
    model, data = config["model"], config.get("data") or {}

    def net(key: str) -> dict[str, Any]:
        return net_config_from_target(model.get(key), f"{where}.model.{key}")

    def get(node: Mapping, key: str, default: Any) -> Any:
        value = node.get(key, default)
        return default if value is None and default is not None else value

    if name == "singan":
        from ganforge.nets.singan import SinGANGenerator

        pyramid = get(model, "pyramid", [])
        if not isinstance(pyramid, list):
            raise CheckpointError(f"{where}.model.pyramid must be a list of [h, w], got {_short(pyramid)}")

        def width(base_key: str, default: int, n: int) -> int:
            base, every, top = get(model, base_key, default), get(model, "nfc_double_every", 4), get(model, "max_nfc", 128)
            if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 4096 for v in (base, every, top)):
                raise CheckpointError(f"{where}.model: nfc, min_nfc, max_nfc and nfc_double_every must be integers in 1..4096")
            return min(base * 2 ** (n // every), top)

        gens = [{"name": SinGANGenerator.__name__, "kwargs": {
            "nc": get(model, "channels", 3), "nfc": width("nfc", 32, n), "min_nfc": width("min_nfc", 32, n),
            "num_layer": get(model, "num_layer", 5), "ker": 3}} for n in range(min(len(pyramid), 65))]
        return {"channels": get(model, "channels", 3), "pyramid": pyramid, "generators": gens}
    common = {"input_nc": get(data, "input_nc", 3), "output_nc": get(data, "output_nc", 3),
              "train_size": get(data, "crop_size", 256)}
    if name == "pix2pix":
        return {"nets": {"netG": net("netG")}, **common, "direction": get(data, "direction", "AtoB"),
                "test_dropout": get(model, "test_dropout", True)}
    if name in ("cyclegan", "cyclegan_seed", "discogan", "dualgan"):
        return {"nets": {"netG_A": net("netG_A"), "netG_B": net("netG_B")}, **common, "unit_range": name == "discogan"}
    if name in ("bicyclegan", "bicyclegan_seed"):
        return {"nets": {"netG": net("netG"), "netE": net("netE")}, **common, "direction": get(data, "direction", "AtoB"),
                "nz": get(model, "nz", 8)}
    if name == "spade":
        nets = {"netG": net("netG")} | ({"netE": net("netE")} if get(model, "use_vae", False) else {})
        return {"nets": nets, "label_nc": get(model, "label_nc", 182),
                "contain_dontcare_label": get(model, "contain_dontcare_label", True),
                "use_instance": get(model, "use_instance", True), "output_nc": get(data, "output_nc", 3),
                "dontcare_id": data.get("dontcare_label"), "label_shift": get(data, "label_shift", 0) or 0,
                "class_names": list(get(data, "class_names", []) or [])}
    if name in ("dcgan", "dcgan_seed"):
        return {"nets": {"netG": net("netG")}, "sample_batch_stats": get(model, "sample_batch_stats", False),
                "unit_output": bool(get(model, "seed_data_range", False))}
    raise CheckpointError(f"{where}: no spec rule for model {name}")  # every registered name has one above


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
        "data": _data_name(config), "command": config.get("command") if isinstance(config.get("command"), str) else None,
        "metrics": {k: float(v) for k, v in (meta.get("metrics") or {}).items() if isinstance(v, (int, float))}
        if isinstance(meta.get("metrics"), Mapping) else {},
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
            raise CheckpointError(f"{where}: the EMA state names a net {_short(name)} this {model.model_name} model does not "
                                  f"have (its nets: {', '.join(modules)})")
        count = sd.get("n_averaged", 0)
        if torch.is_tensor(count):
            count = int(count) if count.numel() == 1 else 0
        if not isinstance(count, int) or count <= 0:
            continue
        weights = {k.removeprefix("module."): v for k, v in sd.items() if isinstance(k, str) and k.startswith("module.")}
        expected = modules[name].state_dict()
        if any(not torch.is_tensor(v) for v in weights.values()) or set(weights) != set(expected) or any(
                tuple(weights[k].shape) != tuple(v.shape) for k, v in expected.items()):
            raise CheckpointError(f"{where}: the EMA average of {name} does not fit the net (names or shapes differ); "
                                  "load with use_ema=false to use the trained weights")
        modules[name].load_state_dict(weights)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
