"""What every command-line entry point shares: the packaged configs and one-line user errors.

`entry_point("train")` turns a function of the composed config into a Hydra app that reads
`conf/train.yaml`, prints a GanforgeError's message alone and exits 2 (HYDRA_FULL_ERROR=1
keeps the traceback).
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import hydra

from ganforge.utils import resolvers
from ganforge.utils.errors import GanforgeError

resolvers.register()
log = logging.getLogger("ganforge")


def conf_dir() -> str:
    """The Hydra configs: a source checkout's top-level conf/, else the installed package `ganforge.conf`.

    pyproject.toml maps conf/ to the package `ganforge.conf`, so a wheel carries it and an editable install
    finds it. The checkout's conf/ comes first so that running a checkout's src/ (PYTHONPATH=src) reads that
    checkout's configs, even where another checkout of ganforge is installed in editable mode.
    """
    src = Path(__file__).resolve().parents[2]  # src/ganforge/cli/app.py -> src
    checkout = src.parent / "conf"
    if src.name == "src" and (checkout / "train.yaml").is_file():
        return str(checkout)
    return str(importlib.resources.files("ganforge.conf"))


CONF_DIR = conf_dir()


def user_message(e: BaseException) -> str:
    # DataLoader workers re-raise with the worker's whole traceback as the message: keep its last line.
    msg = str(e)
    if "Original Traceback" in msg:
        last = msg.strip().splitlines()[-1]
        msg = last.split(": ", 1)[1] if ": " in last else last
    return msg


def user_errors_exit(fn: Callable) -> Callable:
    """Print a GanforgeError's message alone and exit 2; HYDRA_FULL_ERROR=1 keeps the traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GanforgeError as e:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            if log.hasHandlers():  # Hydra's logging is set up: the run's log file gets the message too
                log.error("%s", user_message(e))
            print(f"Error: {user_message(e)}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def entry_point(config_name: str) -> Callable[[Callable], Callable[[], object]]:
    """`@entry_point("predict")` on `def main(cfg)`: a console script reading conf/predict.yaml."""

    def decorate(fn: Callable) -> Callable[[], object]:
        return hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)(user_errors_exit(fn))

    return decorate
