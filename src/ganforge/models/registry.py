"""The registry of inference models: model name (the `model=` config names) -> class."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # base imports this module
    from ganforge.models.base import InferenceModel

ModelClass = TypeVar("ModelClass", bound="type[InferenceModel]")

#: registry name -> inference model class (`register_model`)
MODELS: dict[str, type[InferenceModel]] = {}


def register_model(*names: str) -> Callable[[ModelClass], ModelClass]:
    """Register an inference model class under its model names (the `model=` config names it serves)."""

    def decorate(cls: ModelClass) -> ModelClass:
        for name in names:
            MODELS[name] = cls
        return cls

    return decorate
