"""The registry of inference models: model name (the `model=` config names) -> class."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

#: registry name -> inference model class (`register_model`)
MODELS: dict[str, type[nn.Module]] = {}


def register_model(*names: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Register an inference model class under its model names (the `model=` config names it serves)."""

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        for name in names:
            MODELS[name] = cls
        return cls

    return decorate
