"""Build callbacks and loggers from their config groups (any number, each with a `_target_`)."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every entry of a config group that has a `_target_`; skip nulls."""
    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]
