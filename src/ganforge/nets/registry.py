"""Networks by name: what lets a model be rebuilt from data (a JSON config) instead of from code.

`@register_net` on a network class records, on every instance, the name and the constructor arguments it
was built with (`net.net_config`, plain JSON values), as diffusers' `register_to_config` does. `build_net`
builds a network back from such a config: the class comes from this registry, never from a string naming
an importable object, and every argument is checked against the constructor's signature first.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ganforge.utils.errors import CheckpointError

#: class name -> network class, for every `@register_net` class
NETS: dict[str, type[nn.Module]] = {}
#: bounds on any integer argument (widths, channels, sizes, depths): a crafted config must not allocate
#: terabytes before anything can refuse it
MAX_INT_ARG = 16384
#: more parameters than this in one network is not a ganforge model (the largest, SPADE's G, has ~100M)
MAX_PARAMETERS = 2_000_000_000
PLAIN = (str, int, float, bool, type(None))


def register_net(cls: type[nn.Module]) -> type[nn.Module]:
    """Register `cls` and make each instance keep `net_config = {"name", "kwargs"}` (defaults filled in)."""
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if type(self) is cls:  # a registered subclass records its own arguments, not its base's
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            arguments.pop("self")
            self.net_config = {"name": cls.__name__, "kwargs": {k: _plain(v) for k, v in arguments.items()}}

    cls.__init__ = __init__
    NETS[cls.__name__] = cls
    return cls


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def net_config(net: nn.Module, where: str) -> dict[str, Any]:
    """The config `build_net` rebuilds `net` from."""
    config = getattr(net, "net_config", None)
    if config is None:
        raise CheckpointError(
            f"{where} is a {type(net).__name__}, which is not a registered ganforge network "
            "(ganforge.nets.registry.register_net); it cannot be saved as a model folder"
        )
    return config


def check_net_config(config: Any, where: str) -> tuple[type[nn.Module], dict[str, Any]]:
    """(class, kwargs) of a net config read from a file, or one CheckpointError saying what is wrong."""
    if not isinstance(config, Mapping) or set(config) != {"name", "kwargs"}:
        raise CheckpointError(f"{where} must be {{name: <network class>, kwargs: {{...}}}}, got {_short(config)}")
    name, kwargs = config["name"], config["kwargs"]
    if not isinstance(name, str) or name not in NETS:
        raise CheckpointError(f"{where}.name={_short(name)} is not a ganforge network; known: {', '.join(sorted(NETS))}")
    if not isinstance(kwargs, Mapping):
        raise CheckpointError(f"{where}.kwargs must be a mapping, got {type(kwargs).__name__}")
    cls = NETS[name]
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(kwargs) - set(params) - {"self"})
    if unknown:
        raise CheckpointError(f"{where}: {name} takes no argument(s) {unknown}")
    for key, value in kwargs.items():
        _check_value(value, f"{where}.kwargs.{key}")
    return cls, dict(kwargs)


def _check_value(value: Any, where: str) -> None:
    if isinstance(value, list):
        if len(value) > 64:
            raise CheckpointError(f"{where} is a list of {len(value)} items; ganforge nets take at most 64")
        for i, v in enumerate(value):
            _check_value(v, f"{where}[{i}]")
        return
    if not isinstance(value, PLAIN):
        raise CheckpointError(f"{where} must be a plain value (str, number, bool, null, list), got {type(value).__name__}")
    if isinstance(value, str) and "${" in value:
        raise CheckpointError(f"{where}={value!r} holds an interpolation; stored configs are data, never resolved")
    if isinstance(value, int) and not isinstance(value, bool) and not -1 <= value <= MAX_INT_ARG:
        raise CheckpointError(f"{where}={value} is out of range (-1..{MAX_INT_ARG})")
    if isinstance(value, float) and value != value:
        raise CheckpointError(f"{where} is NaN")


#: what networks call to initialise themselves while they are built: nn.init's functions, the tensors' in-place
#: random fills, and the normalisation of spectral norm's first u and v
_INITIALISERS = (
    [
        (torch.nn.init, n)
        for n in (
            "uniform_",
            "normal_",
            "trunc_normal_",
            "constant_",
            "ones_",
            "zeros_",
            "xavier_uniform_",
            "xavier_normal_",
            "kaiming_uniform_",
            "kaiming_normal_",
            "orthogonal_",
        )
    ]
    + [(torch.Tensor, n) for n in ("normal_", "uniform_")]
    + [(torch.nn.functional, "normalize")]
)


@contextmanager
def no_init() -> Iterator[None]:
    """Networks built in this block skip their initialisers: weights a file is about to replace need none, and on
    the meta device torch routes random fills through its compiler stack (seconds of imports for nothing)."""
    saved = [(owner, name, getattr(owner, name)) for owner, name in _INITIALISERS]
    for owner, name, _ in saved:
        setattr(owner, name, _unchanged)
    try:
        yield
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)


def _unchanged(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return tensor


def build_net(config: Any, where: str) -> nn.Module:
    """The network of a net config, with its own (random) initial weights. Sized first on the meta device:
    a config that asks for more than MAX_PARAMETERS is refused before anything is allocated."""
    cls, kwargs = check_net_config(config, where)
    try:
        with torch.device("meta"), no_init():
            size = sum(p.numel() for p in cls(**kwargs).parameters())
        if size > MAX_PARAMETERS:
            raise CheckpointError(f"{where}: {cls.__name__}({kwargs}) would have {size:,} parameters; refused")
        return cls(**kwargs)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - any argument combination the constructor rejects
        raise CheckpointError(f"{where}: {cls.__name__} cannot be built from {kwargs} ({type(e).__name__}: {e})") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
