"""Specs: the dataclasses of plain values an inference model is built from, checked field by field when read
from a file (unknown keys refused, types and bounds checked, no `${...}` anywhere)."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ganforge.nets.registry import check_net_config
from ganforge.utils.errors import CheckpointError

#: bounds for spec values: no stored config may ask for more
MAX_SIDE = 8192  # as export manifests (export/manifest.py)

MAX_CHANNELS = 4

MAX_DEPTH = 32


def spec_from_dict(spec_type: type, data: Any, where: str) -> Any:
    """`spec_type(**data)` after checking every key and value against the dataclass's annotations."""
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(spec_type)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CheckpointError(f"{where} has unknown key(s) {unknown}; {spec_type.__name__} takes {sorted(fields)}")
    missing = [
        n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
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


def setting(node: Mapping, key: str, default: Any) -> Any:
    """node[key], or `default` when it is missing or null (a run config writes unset values as null)."""
    value = node.get(key, default)
    return default if value is None and default is not None else value


def check_range(value: int, lo: int, hi: int, name: str) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{name}={value} is out of range ({lo}..{hi})")


@dataclass
class NetsSpec:
    """The part of every spec that says which nets the model holds: {attribute: {name, kwargs}}."""

    nets: dict[str, dict[str, Any]] = field(default_factory=dict)


def check_nets(spec_nets: Mapping[str, Any], required: Sequence[str], optional: Sequence[str] = ()) -> None:
    """A spec's `nets` names exactly the nets its family holds, each a valid net config."""
    missing = [n for n in required if n not in spec_nets]
    extra = sorted(set(spec_nets) - set(required) - set(optional))
    if missing or extra:
        raise ValueError(
            f"nets must be {list(required)}{' + optional ' + str(list(optional)) if optional else ''}, got {sorted(spec_nets)}"
        )
    for name, config in spec_nets.items():
        try:
            check_net_config(config, f"nets.{name}")
        except CheckpointError as e:
            raise ValueError(str(e)) from None


def check_data(node: Any, where: str, depth: int = 0) -> None:
    """Plain JSON-like data only, and no `${...}` anywhere: a stored config is data, never interpolated."""
    if depth > MAX_DEPTH:
        raise CheckpointError(f"{where} nests deeper than {MAX_DEPTH} levels")
    if isinstance(node, str):
        if "${" in node:
            raise CheckpointError(
                f"{where} holds an interpolation ({short(node)}); stored configs are data and are "
                "never resolved, so the file was refused (nothing in it was run)"
            )
    elif isinstance(node, Mapping):
        for key, value in node.items():
            if not isinstance(key, str):
                raise CheckpointError(f"{where} has a non-string key {short(key)}")
            check_data(key, where, depth + 1)
            check_data(value, f"{where}.{key}", depth + 1)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            check_data(value, f"{where}[{i}]", depth + 1)
    elif isinstance(node, float):
        if not math.isfinite(node):
            raise CheckpointError(f"{where} is {node}")
    elif not isinstance(node, (int, bool, type(None))) and not torch.is_tensor(node):
        raise CheckpointError(f"{where} holds a {type(node).__name__}")


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
