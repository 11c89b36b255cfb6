"""Checkpoints inside an epoch, so a killed or preempted run loses at most one interval.

`PeriodicCheckpoint` writes `<dirpath>/last.ckpt` every `every_n_batches` training batches and/or
every `every_minutes` minutes, through `trainer.save_checkpoint` (`StreamingCheckpointIO` below writes to a temporary
file and renames it, so a kill during the write leaves the previous last.ckpt loadable). Resuming
from it continues the same epoch at the next batch: the data modules' loaders are torchdata
`StatefulDataLoader`s, whose state (sampler order, batches done) Lightning saves and restores.

Lightning's own ModelCheckpoint(every_n_train_steps=...) counts optimizer steps, 2 to 4 per GAN
batch, and under manual optimization warns at every save; batches are what a user counts.

`ModelCheckpoint` is Lightning's, restoring from a resumed checkpoint only the file paths that lie inside
the checkpoint's own folder: Lightning later deletes the previous best/last/k-th file, and its check of
"inside the folder" is by the path's text, so `<dirpath>/../../x` read from a crafted checkpoint would
delete x.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.utilities import rank_zero_warn

from ganforge.utils.errors import ConfigError


class PeriodicCheckpoint(L.Callback):
    def __init__(self, dirpath: str, filename: str = "last", every_n_batches: int | None = None, every_minutes: float | None = None):
        for key, value in (("every_n_batches", every_n_batches), ("every_minutes", every_minutes)):
            if value is not None and value <= 0:
                raise ConfigError(f"callbacks.mid_epoch_checkpoint.{key} must be positive or null, got {value}")
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.every_n_batches, self.every_minutes = every_n_batches, every_minutes
        self._last_save = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.sanity_checking or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # the epoch-end checkpoint follows
        due = bool(self.every_n_batches) and (batch_idx + 1) % self.every_n_batches == 0
        if self.every_minutes:
            # Every rank must take the same decision: save_checkpoint is a collective call.
            due = trainer.strategy.broadcast(due or time.monotonic() - self._last_save >= 60 * self.every_minutes)
        if due:
            trainer.save_checkpoint(self.path)
            self._last_save = time.monotonic()


class StreamingCheckpointIO(TorchCheckpointIO):
    """Lightning's TorchCheckpointIO, but a local checkpoint is written by `torch.save` into a temporary file
    beside it, tensor by tensor, and renamed over the old one when complete (as atomic as Lightning's write,
    without its in-memory copy of the whole file). Remote paths (s3://, ...) go through Lightning's."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def path_inside(path: Any, folder: Any) -> bool:
    """Whether `path` (read from a checkpoint) names a file inside `folder`, by where it really is (links
    and '..' followed) and by its text as well, which is what Lightning's own check reads."""
    if not isinstance(path, str) or not isinstance(folder, str) or not folder:
        return False
    if _is_local_file_protocol(path) != _is_local_file_protocol(folder):
        return False
    if not _is_local_file_protocol(path):
        return path.startswith(folder.rstrip("/") + "/") and ".." not in path.split("/")
    return ".." not in Path(path).parts and Path(path).resolve().is_relative_to(Path(folder).resolve())


def _score(value: Any) -> bool:
    return (isinstance(value, float | int) and not isinstance(value, bool)) or (isinstance(value, torch.Tensor) and value.numel() == 1)


class ModelCheckpoint(L.callbacks.ModelCheckpoint):
    """Lightning's ModelCheckpoint; from a resumed state it drops, with a warning, every file path outside
    the state's folder (and the top-k bookkeeping with it, when that is not consistent)."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, dict):
            rank_zero_warn(f"ModelCheckpoint: the resumed checkpoint's state is a {type(state_dict).__name__}, ignored")
            return
        state = dict(state_dict)
        folder = state.get("dirpath", self.dirpath)
        dropped = []
        for key in ("best_model_path", "last_model_path"):
            if state.get(key) and not path_inside(state[key], folder):
                dropped.append(f"{key}={state[key]!r}")
                state[key] = ""
        models, kth = state.get("best_k_models", {}), state.get("kth_best_model_path", "")
        consistent = (
            isinstance(models, dict)
            and all(path_inside(p, folder) and _score(v) for p, v in models.items())
            and (kth in models or kth == "" and not models)
            and _score(state.get("kth_value", self.kth_value))
            and (state.get("best_model_score") is None or _score(state["best_model_score"]))
        )
        if not consistent:
            # Lightning deletes the k-th best file when a better one comes: start the top-k list afresh.
            dropped.append(f"best_k_models={models!r}, kth_best_model_path={kth!r}")
            for key in ("best_k_models", "kth_best_model_path", "kth_value"):
                state.pop(key, None)
            state["best_model_score"] = None
        if dropped:
            rank_zero_warn(
                f"ModelCheckpoint: the resumed checkpoint names files outside its folder {folder!r} or "
                f"malformed scores; ignored, and no such file is deleted: {'; '.join(dropped)}"
            )
        state.setdefault("best_model_score", None)
        state.setdefault("best_model_path", "")
        super().load_state_dict(state)
