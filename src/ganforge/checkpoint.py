"""Reading and checking ganforge checkpoints, without ever running code from the file.

* Every load is `torch.load(weights_only=True)`: tensors and plain containers only, so a crafted
  pickle cannot execute anything. ganforge writes its checkpoints so that this always works.
* Rebuilding a model from the run config stored in a checkpoint instantiates only allowlisted
  `_target_`s (ganforge's nets and modules, torch's nn/optim classes): a `_target_` is a call,
  and a downloaded checkpoint must not choose what is called. `trust_checkpoint=true` lifts that.
* A file that is missing, empty, truncated, not a checkpoint, of another format version or
  without the expected keys gives one CheckpointError that names it.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from ganforge.errors import CheckpointError

#: the layout of the "ganforge" entry written by GANModule.on_save_checkpoint
FORMAT_VERSION = 1
#: what a stored config may build: classes of these kinds, defined under these packages
ALLOWED_PACKAGES = ("ganforge.", "torch.nn.", "torch.optim.")
ALLOWED_KINDS = (nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)
TRUST_HINT = "if you trust the file and its author, pass trust_checkpoint=true"


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint's dict, loaded with weights_only=True, with its ganforge keys checked."""
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
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or "model" not in meta["config"]:
        raise CheckpointError(f"{path} was not written by ganforge-train (it has no stored run config)")
    version = meta.get("format_version", 1)  # checkpoints from before versioning are format 1
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version!r}, newer than this ganforge reads ({FORMAT_VERSION}); "
            "upgrade ganforge"
        )
    return ckpt


def check_targets(node: Any, trust: bool = False, where: str = "model") -> None:
    """Refuse any `_target_` in a stored config that is not an allowlisted class."""
    if trust:
        return
    if isinstance(node, Mapping):
        target = node.get("_target_")
        if target is not None and not _allowed(target):
            raise CheckpointError(
                f"the checkpoint's config asks to build {target!r} (at {where}), which is not a ganforge net or module "
                f"nor a torch.nn/torch.optim class; refused, because a _target_ is a call; {TRUST_HINT}"
            )
        for key, value in node.items():
            check_targets(value, trust, f"{where}.{key}")
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            check_targets(value, trust, f"{where}[{i}]")


def _allowed(target: Any) -> bool:
    if not isinstance(target, str) or not target.startswith(ALLOWED_PACKAGES):
        return False
    try:
        obj = get_object(target)  # imports a module of ganforge or torch only
    except Exception:  # noqa: BLE001 - an unknown name is simply not allowed
        return False
    return isinstance(obj, type) and issubclass(obj, ALLOWED_KINDS)


def build_model(ckpt_path: str | Path, trust: bool = False, map_location: str = "cpu", use_ema: bool = True):
    """Rebuild the GAN module a checkpoint was trained with and load its weights: (model, run config).
    With `use_ema`, generators the checkpoint holds an EMA of (callbacks.ema) get the averaged weights."""
    ckpt = read_checkpoint(ckpt_path, map_location)
    cfg = ckpt["ganforge"]["config"]
    check_targets(cfg["model"], trust)
    try:
        model = instantiate(cfg["model"])
    except Exception as e:  # noqa: BLE001 - a stored config this ganforge cannot build
        raise CheckpointError(f"{ckpt_path}: the stored model config cannot be built here ({e})") from None
    check_state_dict_matches(model.state_dict(), ckpt["state_dict"], where=type(model).__name__)
    model.load_state_dict(ckpt["state_dict"])
    model.run_config = cfg
    model.load_checkpoint_extras(ckpt["ganforge"].get("extras") or {})
    if use_ema:
        load_ema(model, (ckpt.get("callbacks") or {}).get(EMA_STATE_KEY) or {})
    return model, cfg


def load_weights(model: nn.Module, ckpt_path: str | Path) -> None:
    """`init_from=`: the weights of a ganforge checkpoint (a trained run's or ganforge-import's) into a
    freshly built model, names and shapes checked; optimizer, schedule and epoch start anew."""
    ckpt = read_checkpoint(ckpt_path)
    check_state_dict_matches(model.state_dict(), ckpt["state_dict"], where=type(model).__name__)
    model.load_state_dict(ckpt["state_dict"])


#: where ganforge.callbacks.GeneratorEMA keeps its state in a checkpoint's "callbacks"
EMA_STATE_KEY = "GeneratorEMA"


def load_ema(model, state: Mapping) -> None:
    """Put the averaged weights of `state` (GeneratorEMA.state_dict()) into the model's generators."""
    for name, sd in (state.get("nets") or {}).items():
        if int(sd.get("n_averaged", 0)) > 0:
            getattr(model, name).load_state_dict({k.removeprefix("module."): v for k, v in sd.items() if k.startswith("module.")})


def check_resumable(ckpt_path: str | Path) -> dict:
    """Validate a checkpoint before Lightning resumes from it (Lightning's own errors are tracebacks)."""
    ckpt = read_checkpoint(ckpt_path)
    for key in ("epoch", "global_step", "optimizer_states", "loops"):
        if key not in ckpt:
            raise CheckpointError(f"{ckpt_path} cannot resume a run: it has no {key!r} (a weights-only file?)")
    return ckpt


def check_state_dict_matches(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], where: str) -> None:
    """Compare parameter names and shapes, so a config mismatch reads as one sentence, not a traceback."""
    if not isinstance(found, Mapping):
        raise CheckpointError(f"the checkpoint's state_dict is a {type(found).__name__}, not a mapping of tensors")
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(found[k].shape)} vs config {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and torch.is_tensor(found[k]) and tuple(found[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} weights missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected weights (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:3])})")
    raise CheckpointError(
        f"the checkpoint does not fit the {where} built from this config: {'; '.join(parts)}. "
        "Use the same model/net settings (ngf, ndf, num_downs, n_layers, norm, channels) it was trained with"
    )


def rng_states() -> dict:
    """The global random streams (shuffle, crops, flips, dropout) in a form weights_only loading accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }


def set_rng_states(states: dict) -> None:
    try:
        torch.set_rng_state(states["torch"])
        kind, keys, pos, has_gauss, gauss = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_next = states["python"]
        random.setstate((version, tuple(internal), gauss_next))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"the checkpoint's random-stream state is malformed ({type(e).__name__}: {e})") from None


def plain_hyperparameters(hparams: Mapping[str, Any]) -> dict:
    """The hyper-parameters that weights_only loading accepts (the run config holds the factories)."""
    plain = {k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig | ListConfig) else v
             for k, v in hparams.items()}
    return {k: v for k, v in plain.items() if _is_plain(v)}


def _is_plain(value: Any) -> bool:
    if isinstance(value, (str, int, float, bool, type(None))):
        return True
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return False
