"""Command-line entry points. `train(cfg)` is a plain function so tests and sweeps call it directly."""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as L
import torch
from omegaconf import DictConfig, OmegaConf

from ganforge.errors import ConfigError, GanforgeError
from ganforge.utils import resolvers
from ganforge.utils.instantiate import instantiate_all
from ganforge.utils.print_config import print_config

resolvers.register()
CONF_DIR = str(resolvers.REPO_ROOT / "conf")
log = logging.getLogger("ganforge")


def user_errors_exit(fn):
    """Print a GanforgeError's message alone and exit 2; HYDRA_FULL_ERROR=1 keeps the traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GanforgeError as e:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            log.error("%s", user_message(e))
            print(f"Error: {user_message(e)}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def user_message(e: BaseException) -> str:
    # DataLoader workers re-raise with the worker's whole traceback as the message: keep its last line.
    msg = str(e)
    if "Original Traceback" in msg:
        last = msg.strip().splitlines()[-1]
        msg = last.split(": ", 1)[1] if ": " in last else last
    return msg


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build everything from the config, fit (and optionally test); return metrics and the objects."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("ignore_warnings"):
        warnings.filterwarnings("ignore")

    datamodule: L.LightningDataModule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    # The U-Net needs sides divisible by 2**num_downs; the data module fits images to that.
    if hasattr(datamodule, "size_multiple"):
        datamodule.size_multiple = getattr(model, "input_size_multiple", 1)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)

    callbacks = instantiate_all(cfg.get("callbacks"))
    loggers = instantiate_all(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams(model.run_config)

    objects = {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer, "callbacks": callbacks}
    try:
        if cfg.get("train", True):
            ckpt = cfg.get("ckpt_path")
            if ckpt and not Path(ckpt).is_file():
                raise ConfigError(f"ckpt_path={ckpt} does not exist; give the path of a .ckpt file to resume from")
            trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        if cfg.get("test"):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else None
            trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1})
    finally:
        _finish(loggers)
    if trainer.checkpoint_callback is not None:
        log.info("Checkpoints: %s", trainer.checkpoint_callback.dirpath)
    return metrics, objects


def _finish(loggers: list) -> None:
    for lg in loggers:
        if lg.__class__.__name__ == "WandbLogger":
            import wandb

            wandb.finish()
    # gloo on CPU can abort at interpreter exit when the process group is still alive.
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
@user_errors_exit
def train_main(cfg: DictConfig) -> float | None:
    if cfg.get("print_config"):
        print_config(cfg)
    metrics, _ = train(cfg)
    name = cfg.get("optimized_metric")
    if name is None:
        return None
    if name not in metrics:
        raise ConfigError(f"optimized_metric={name!r} was not logged; logged metrics: {sorted(metrics)}")
    return metrics[name]


def predict_main() -> None:
    from ganforge.predict import main

    main()
