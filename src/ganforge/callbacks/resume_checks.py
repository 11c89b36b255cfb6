"""The shape of a checkpoint's training state, checked before Lightning resumes from it.

Lightning restores its loops' progress counters with `__dict__.update` and indexes the optimizer and
callback states as it finds them, so a malformed entry (`loops: {"fit_loop": "garbage"}`) ends in an
AttributeError or KeyError from inside `trainer.fit`. `check_resume_state` compares the checkpoint's
`loops` with the loops of the trainer that will resume it (same Lightning, same keys and types) and checks
the types of the other entries Lightning reads, so such a file is one CheckpointError.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as L

from ganforge.utils.errors import CheckpointError

_LOOPS = ("fit_loop", "validate_loop", "test_loop", "predict_loop")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _progress_problem(found: Any, reference: Any, where: str) -> str | None:
    """Where `found` differs from a fresh loop's progress counters: the same keys, nested dicts and types."""
    if isinstance(reference, dict):
        if not isinstance(found, dict):
            return f"{where} is a {type(found).__name__}, not a mapping"
        if set(found) != set(reference):
            return f"{where} has the keys {sorted(map(str, found))}, not {sorted(reference)}"
        for key, ref in reference.items():
            problem = _progress_problem(found[key], ref, f"{where}.{key}")
            if problem:
                return problem
        return None
    if type(found) is not type(reference) or (isinstance(found, int) and not isinstance(found, bool) and found < 0):
        return f"{where} is {found!r}, not a {'non-negative ' if type(reference) is int else ''}{type(reference).__name__}"
    return None


def _loop_state_problem(value: Any, where: str) -> str | None:
    """A loop's own state (its `state_dict` entry): the batch count and the data loaders' states."""
    if not isinstance(value, dict):
        return f"{where} is a {type(value).__name__}, not a mapping"
    if "_batches_that_stepped" in value and not _count(value["_batches_that_stepped"]):
        return f"{where}._batches_that_stepped is {value['_batches_that_stepped']!r}, not a count"
    loaders = value.get("combined_loader", [])
    if not isinstance(loaders, list) or not all(s is None or isinstance(s, dict) for s in loaders):
        return f"{where}.combined_loader is not a list of data loader states"
    return None


def _loops_problem(loops: Any, trainer: L.Trainer) -> str | None:
    if not isinstance(loops, dict):
        return f"'loops' is a {type(loops).__name__}, not a mapping"
    if "fit_loop" not in loops:
        return "'loops' has no 'fit_loop'"
    for name in _LOOPS:
        if name not in loops:
            continue
        found, fresh = loops[name], getattr(trainer, name).state_dict()
        if not isinstance(found, dict):
            return f"loops.{name} is a {type(found).__name__}, not a mapping"
        # Keys a fresh loop lacks are skipped by Lightning (old checkpoints), as are absent ones.
        for key in fresh.keys() & found.keys():
            where = f"loops.{name}.{key}"
            if key == "state_dict" or key.endswith(".state_dict"):
                problem = _loop_state_problem(found[key], where)
            else:
                problem = _progress_problem(found[key], fresh[key], where)
            if problem:
                return problem
    return None


def _states_problem(ckpt: Mapping) -> str | None:
    for key in ("epoch", "global_step"):
        if not _count(ckpt[key]):
            return f"{key!r} is {ckpt[key]!r}, not a count"
    optimizers = ckpt["optimizer_states"]
    if not isinstance(optimizers, list) or not all(
        isinstance(s, dict)
        and isinstance(s.get("state"), dict)
        and isinstance(s.get("param_groups"), list)
        and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in s["param_groups"])
        for s in optimizers
    ):
        return "'optimizer_states' is not a list of optimizer states (state, param_groups)"
    schedulers = ckpt.get("lr_schedulers", [])
    if not isinstance(schedulers, list) or not all(isinstance(s, dict) for s in schedulers):
        return "'lr_schedulers' is not a list of scheduler states"
    callbacks = ckpt.get("callbacks", {})
    if not isinstance(callbacks, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in callbacks.items()):
        return "'callbacks' is not a mapping of callback names to their states"
    return None


def check_resume_state(ckpt: Mapping, path: str | Path, trainer: L.Trainer) -> None:
    """Refuse, in one CheckpointError, a checkpoint whose training state Lightning could not restore."""
    problem = _states_problem(ckpt) or _loops_problem(ckpt["loops"], trainer)
    if problem:
        raise CheckpointError(
            f"{path} cannot resume a run: its training state is malformed ({problem}); resume from a last.ckpt "
            "that ganforge-train wrote (ckpt_path=<run folder>), or start from its weights with init_from=<file>"
        )
