"""What every command-line entry point shares: the packaged configs and one-line user errors.

`entry_point("train")` turns a function of the composed config into a Hydra app that reads
`conf/train.yaml`, prints a GanforgeError's message alone and exits 2 (HYDRA_FULL_ERROR=1
keeps the traceback). Config mistakes get the same one line, naming the key and an example: a missing
mandatory value (`???`), an unknown group option (`model=nope`) or key, an override that does not parse,
and a command-line value whose type differs from the packaged default's (`data.batch_size=abc`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hydra
import hydra._internal.utils as hydra_internal
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue, OmegaConfBaseException

from ganforge.utils import resolvers
from ganforge.utils.errors import ConfigError, GanforgeError

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


#: an example value for each mandatory (`???`) key of the packaged configs, by the key's last name
MISSING_EXAMPLES = {
    "root": "/path/to/dataset",
    "image_dir": "/path/to/photos",
    "label_dir": "/path/to/label_maps",
    "label_nc": "35",
    "output": "/path/to/folder",
    "ckpt_path": "logs/train/runs/<run>/checkpoints/last.ckpt",
}


def _full_error() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def _exit_with(message: str) -> None:
    if log.hasHandlers():  # Hydra's logging is set up: the run's log file gets the message too
        log.error("%s", message)
    print(f"Error: {message}", file=sys.stderr)
    sys.exit(2)


def missing_keys(cfg: DictConfig) -> list[str]:
    """The keys whose value is `???` (OmegaConf.missing_keys resolves interpolations on the way, and so
    raises for one that points to a missing value)."""

    def walk(node: Any, prefix: str) -> Iterator[str]:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            key = f"{prefix}{k}" if isinstance(node, dict) else f"{prefix.rstrip('.')}[{k}]"
            if v == "???":
                yield key
            yield from walk(v, f"{key}.")

    return sorted(walk(OmegaConf.to_container(cfg, resolve=False), ""))


def missing_values_message(keys: list[str]) -> str:
    examples = " ".join(f"{k}={MISSING_EXAMPLES.get(k.rsplit('.', 1)[-1], '<value>')}" for k in keys)
    return (
        f"{', '.join(keys)} {'has' if len(keys) == 1 else 'have'} no value (??? in the config): give "
        f"{'it' if len(keys) == 1 else 'them'} on the command line, e.g. {examples}"
    )


def check_override_types(cfg: DictConfig) -> None:
    """A command-line value of another type than the key's value without it (a number or true/false;
    the same groups composed, e.g. data.batch_size from conf/data/<data>.yaml) is a ConfigError naming the
    key and an example, before any code reads it."""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    overrides = OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task))
    is_group = [o.key_or_group in hydra_cfg.runtime.choices or o.package is not None for o in overrides]
    groups = [o.input_line for o, g in zip(overrides, is_group) if g and o.input_line is not None]  # parsed lines: always set
    values = [o for o, g in zip(overrides, is_group) if not g and not o.is_delete()]
    if not values:
        return
    packaged = hydra.compose(hydra_cfg.job.config_name, overrides=groups)
    for override in values:
        key = override.key_or_group
        try:
            default, value = OmegaConf.select(packaged, key), OmegaConf.select(cfg, key)
        except OmegaConfBaseException:  # an interpolation to another key's missing value: reported when read
            continue
        if not isinstance(default, bool | int | float) or value is None:
            continue
        fits = isinstance(value, bool) if isinstance(default, bool) else (isinstance(value, int | float) and not isinstance(value, bool))
        if not fits:
            kind = "true or false" if isinstance(default, bool) else "a number"
            example = str(default).lower() if isinstance(default, bool) else default
            raise ConfigError(f"{override.input_line}: {key} takes {kind} (its default is {example}), e.g. {key}={example}")


def _cause_chain(e: BaseException | None, implicit: bool = True) -> Iterator[BaseException]:
    """e, its cause, that one's cause...; `implicit`: also the exception being handled when each was raised."""
    while e is not None:
        yield e
        e = e.__cause__ or (e.__context__ if implicit else None)


def user_errors_exit(fn: Callable) -> Callable:
    """Print a GanforgeError's message alone and exit 2; HYDRA_FULL_ERROR=1 keeps the traceback. A missing
    mandatory value, also inside `instantiate`, and a GanforgeError raised by a constructor that
    `instantiate` called count as well."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        cfg = args[0] if args and isinstance(args[0], DictConfig) else None
        try:
            if cfg is not None:
                check_override_types(cfg)
            return fn(*args, **kwargs)
        except Exception as e:
            # instantiate re-raises what a constructor raised as the cause of an InstantiationException
            user = next((c for c in _cause_chain(e, implicit=False) if isinstance(c, GanforgeError)), None)
            missing = (
                cfg is not None
                and any(isinstance(c, MissingMandatoryValue | InterpolationToMissingValueError) for c in _cause_chain(e))
                and missing_keys(cfg)
            )
            if _full_error() or not (user or missing):
                raise
            _exit_with(user_message(user) if user else missing_values_message(missing or []))

    return wrapper


def composition_error_message(e: ConfigCompositionException | OverrideParseException) -> str:
    """Hydra's message for a command line it cannot compose, in one line."""
    if isinstance(e, MissingConfigException) and e.options and e.missing_cfg_file and "/" in e.missing_cfg_file:
        group, _, option = e.missing_cfg_file.rpartition("/")
        return f"{group}={option}: there is no such {group} config; the options are {', '.join(e.options)} (e.g. {group}={e.options[0]})"
    text = str(e).split("\nConfig search path:")[0]
    cause = e.__cause__
    if isinstance(cause, OmegaConfBaseException):  # its message adds full_key/object_type lines
        text += f"\n{str(cause).splitlines()[0]}"
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


@contextlib.contextmanager
def _composition_errors_in_one_line() -> Iterator[None]:
    """Hydra composes the config, and reports what fails there, before the task function runs: with its
    own multi-line report and exit 1, in `hydra._internal.utils.run_and_report`, which every Hydra app
    goes through. Its work is wrapped here so a user's composition mistake is one line, exit 2."""
    report = hydra_internal.run_and_report

    def run_and_report(func: Callable) -> Any:
        def composing() -> Any:
            try:
                return func()
            except (ConfigCompositionException, OverrideParseException) as e:
                if _full_error():
                    raise
                _exit_with(composition_error_message(e))
            except (MissingMandatoryValue, InterpolationToMissingValueError) as e:
                # Hydra resolving its own settings (hydra.run.dir: ${output}/...) before the task runs
                keys = sorted({m for c in _cause_chain(e) for m in re.findall(r"Missing mandatory value: ([\w.\[\]]+)", str(c))})
                if _full_error() or not keys:
                    raise
                _exit_with(missing_values_message(keys))

        return report(composing)

    hydra_internal.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_internal.run_and_report = report


def entry_point(config_name: str) -> Callable[[Callable], Callable[[], object]]:
    """`@entry_point("predict")` on `def main(cfg)`: a console script reading conf/predict.yaml."""

    def decorate(fn: Callable) -> Callable[[], object]:
        task = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)(user_errors_exit(fn))

        @functools.wraps(task)
        def main(*args, **kwargs) -> object:
            with _composition_errors_in_one_line():
                return task(*args, **kwargs)

        return main

    return decorate
