"""The reference's command-line options (a fixture's "options" metadata) as ganforge module arguments."""

from __future__ import annotations

import functools

import torch


def reference_adam(o: dict) -> functools.partial:
    """The reference's Adam (--lr, --beta1; beta2 0.999) as a module's optimizer factory."""
    return functools.partial(torch.optim.Adam, lr=o["lr"], betas=(o["beta1"], 0.999))


def module_options(o: dict, *same: str, **renamed: str) -> dict:
    """A module's arguments from the reference's options `o`: each of `same` from the option of its name, each
    of `renamed` (argument=option) from the option it names."""
    return {**{name: o[name] for name in same}, **{arg: o[option] for arg, option in renamed.items()}}
