"""What training needs of checkpoints: resuming (`check_resumable`), fine-tuning from weights (`load_weights`),
the random streams, and hyper-parameters that `weights_only` loading accepts.

Reading one is `ganforge.models.loading.read_checkpoint`: `torch.load(weights_only=True)` (tensors and plain
containers only, so a crafted pickle cannot execute anything) with the ganforge keys checked; a file that is
missing, empty, truncated, not a checkpoint or of another format gives one CheckpointError that names it.
Using a trained model is `ganforge.load`, which builds it from the stored config as data, never from a `_target_`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from ganforge.models.folder import state_differences
from ganforge.models.loading import read_checkpoint
from ganforge.utils.errors import CheckpointError

#: the layout of the "ganforge" entry written by GANModule.on_save_checkpoint
FORMAT_VERSION = 1


def load_weights(model: nn.Module, ckpt_path: str | Path) -> None:
    """`init_from=`: the weights of a ganforge checkpoint (a trained run's or ganforge-import's) into a
    freshly built model, names and shapes checked; optimizer, schedule and epoch start anew."""
    ckpt = read_checkpoint(ckpt_path)
    check_state_dict_matches(model.state_dict(), ckpt["state_dict"], where=type(model).__name__)
    model.load_state_dict(ckpt["state_dict"])


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
    missing, unexpected, shapes = state_differences(expected, found, "checkpoint", "config")
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
    plain = {k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig | ListConfig) else v for k, v in hparams.items()}
    return {k: v for k, v in plain.items() if _is_plain(v)}


def _is_plain(value: Any) -> bool:
    if isinstance(value, (str, int, float, bool, type(None))):
        return True
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return False
