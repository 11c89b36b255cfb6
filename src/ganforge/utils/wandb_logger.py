"""Lightning's WandbLogger without the deprecated `anonymous` setting.

Lightning 2.6 always passes `anonymous=None` to `wandb.init` (lightning/pytorch/loggers/wandb.py:
`"anonymous": ("allow" if anonymous else None)`), and wandb >= 0.19 warns "The anonymous setting has no
effect and will be removed in a future version" for any value but its unset sentinel, so every run
printed that warning. The setting does nothing in wandb any more; this logger leaves it out.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger


class WandbLogger(_LightningWandbLogger):
    """`lightning.pytorch.loggers.WandbLogger`, but `wandb.init` gets no `anonymous=` argument."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("anonymous", None)  # wandb ignores it either way
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)
