"""`ganforge-train` / `python train.py`. `train(cfg)` is a plain function so tests and sweeps call it directly."""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import hydra
import lightning.pytorch as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationKeyError

from ganforge.callbacks.resume_checks import check_resume_state
from ganforge.cli.app import CONF_DIR, entry_point, user_errors_exit
from ganforge.cli.precision import check_cpu_bf16
from ganforge.gans.checkpoint import check_resumable, load_weights
from ganforge.models import load
from ganforge.utils.errors import ConfigError
from ganforge.utils.instantiate import instantiate_all
from ganforge.utils.memory import release_free_heap
from ganforge.utils.print_config import print_config

if TYPE_CHECKING:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from ganforge.data.module import GANDataModule
    from ganforge.gans.base import GANModule

log = logging.getLogger("ganforge")

# Lightning 2.6's own loop code (lightning/pytorch/utilities/_pytree.py) builds torch's deprecated
# LeafSpec on every fit; torch 2.14 warns about that code, not ganforge's or the user's, once a run.
warnings.filterwarnings(
    "ignore",
    message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    category=FutureWarning,
    module=r"lightning\.pytorch\.utilities\._pytree",
)


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """`ckpt_path=last`: this run folder's own checkpoints/last.ckpt when it has one (a requeued SLURM job
    runs again in its folder); else, in a single run, the newest last.ckpt of this task's runs, so a
    preempted job is relaunched with its own command; none yet: a fresh start. A sweep job (-m) only
    resumes its own folder: the other jobs' checkpoints are other settings. A run folder: its last.ckpt."""
    ckpt = cfg.get("ckpt_path")
    if ckpt is None:
        return None
    if str(ckpt) == "last":
        own = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        if own.is_file():
            log.info("ckpt_path=last: resuming %s", own)
            return str(own)
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            log.info("ckpt_path=last: no last.ckpt in this sweep job's folder %s yet, starting a new run", own.parent.parent)
            return None
        root = Path(cfg.paths.log_dir) / str(cfg.task_name)
        found = sorted(root.glob("*/*/**/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            log.info("ckpt_path=last: no last.ckpt under %s yet, starting a new run", root)
            return None
        log.info("ckpt_path=last: resuming %s", found[-1])
        return str(found[-1])
    path = Path(str(ckpt))
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    return str(path)


def check_model_fits_data(cfg: DictConfig) -> None:
    """A model reading a data key its data config lacks (model=spade on the default paired sample has no
    label_nc) would stop in OmegaConf's interpolation error: name the data configs that do set it."""
    try:
        OmegaConf.to_container(cfg.model, resolve=True)
    except InterpolationKeyError as e:
        found = re.search(r"'data\.(\w+)'", str(e))
        if found is None:
            raise
        key = found.group(1)
        fitting = sorted(p.stem for p in (Path(CONF_DIR) / "data").glob("*.yaml") if key in OmegaConf.load(p).keys())
        choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
        raise ConfigError(
            f"model={choices.get('model', '?')} reads data.{key}, which data={choices.get('data', '?')} does not set; "
            f"choose data that has it: {', '.join('data=' + f for f in fitting) or '(no data config sets it)'}"
        ) from None


def build_data_and_model(cfg: DictConfig) -> tuple[GANDataModule, GANModule]:
    """The data module and the model of a run config, the data fitted to the model's input size."""
    datamodule: GANDataModule = hydra.utils.instantiate(cfg.data)
    # Settings that follow from the data (SinGAN's pyramid comes from its image), written into the
    # config so the stored run config rebuilds the same model.
    with open_dict(cfg):
        cfg.model.update(datamodule.model_settings())
    model: GANModule = hydra.utils.instantiate(cfg.model)
    datamodule.size_multiple = model.input_size_multiple
    return datamodule, model


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build everything from the config, fit (and optionally test); return metrics and the objects."""
    check_model_fits_data(cfg)
    check_cpu_bf16(cfg)
    if cfg.get("print_config"):
        print_config(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("ignore_warnings"):
        warnings.filterwarnings("ignore")

    datamodule, model = build_data_and_model(cfg)
    if cfg.get("init_from"):
        if cfg.get("ckpt_path"):
            raise ConfigError("init_from= starts a new run from a checkpoint's weights; ckpt_path= resumes one: give one of them")
        load_weights(model, cfg.init_from)
    model.precise = bool(cfg.get("precise", False))
    if cfg.get("compile"):
        model.compile_nets()
    model.run_config = {**cast(dict, OmegaConf.to_container(cfg, resolve=True)), "command": run_command()}

    callbacks = instantiate_all(cfg.get("callbacks"))
    loggers = instantiate_all(cfg.get("logger"))
    trainer_overrides = {"max_epochs": model.max_epochs} if model.max_epochs is not None else {}
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **trainer_overrides)
    for lg in loggers:
        lg.log_hyperparams(model.run_config)

    # Lightning types these as its Checkpoint base class; ganforge's configs give ModelCheckpoints
    checkpoint_callback = cast("ModelCheckpoint | None", trainer.checkpoint_callback)
    checkpoint_callbacks = cast("list[ModelCheckpoint]", trainer.checkpoint_callbacks)
    objects = {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer, "callbacks": callbacks}
    try:
        metrics: dict[str, float] = {}
        if cfg.get("train", True):
            ckpt = resolve_ckpt_path(cfg)
            resumed = check_resumable(ckpt) if ckpt else None
            if ckpt and resumed is not None:
                check_resume_state(resumed, ckpt, trainer)
            trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
            if resumed is not None and trainer.global_step == resumed["global_step"] and not metrics:
                # Lightning restored a run whose last epoch was done and trained nothing more.
                metrics = dict(resumed["ganforge"].get("metrics", {}))
                log.info("%s is the end of a finished run (max_epochs=%s reached); its metrics: %s", ckpt, trainer.max_epochs, metrics)
        if cfg.get("test"):
            best = checkpoint_callback.best_model_path if checkpoint_callback else None
            trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1})
    finally:
        _finish(loggers)
    if checkpoint_callback is not None:
        log.info("Checkpoints: %s", checkpoint_callback.dirpath)
        last = next(
            (Path(cb.dirpath) / "last.ckpt" for cb in checkpoint_callbacks if cb.dirpath and (Path(cb.dirpath) / "last.ckpt").is_file()),
            None,
        )
        if cfg.get("train", True) and trainer.is_global_zero and last is not None:
            # The gradients were freed after each optimizer step (GANModule.step): the heap they held goes back
            # to the OS before the model folder maps the generator weights in (docs/benchmarks.md, "Peak memory").
            release_free_heap()
            folder = last.parent / "model"
            load(last).save_pretrained(folder)
            log.info("Model folder (ganforge.load, ganforge-predict ckpt_path=...): %s", folder)
    return metrics, objects


def run_command() -> str:
    """The command line of this run, for the model card. `${` is written `$ {`: a stored config is never resolved,
    and a loader refuses any interpolation it finds in one."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    return " ".join(["python train.py", *overrides]).replace("${", "$ {")


def _finish(loggers: list) -> None:
    for lg in loggers:
        if lg.__class__.__name__ == "WandbLogger":
            import wandb

            wandb.finish()
    # gloo on CPU can abort at interpreter exit when the process group is still alive.
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def check_sweeper_installed(overrides: list[str]) -> None:
    """hparams_search=<name> runs hydra-optuna-sweeper, an extra (it pins optuna<3 and so SQLAlchemy<2): when it
    is missing, say how to get it instead of Hydra's "Could not find 'hydra/sweeper/optuna'"."""
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        asks = (key == "hparams_search" and value not in ("", "null")) or (key == "hydra/sweeper" and "optuna" in value)
        if asks and importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
            raise ConfigError(f'{override} needs the Optuna sweeper, which is not installed: pip install "ganforge[sweep]"')


@entry_point("train")
def train_app(cfg: DictConfig) -> float | None:
    metrics, _ = train(cfg)
    name = cfg.get("optimized_metric")
    if name is None:
        return None
    if name not in metrics:
        raise ConfigError(f"optimized_metric={name!r} was not logged; logged metrics: {sorted(metrics)}")
    return metrics[name]


def train_main() -> float | None:
    """`ganforge-train` / `python train.py`: the command-line overrides are checked before Hydra composes them."""
    user_errors_exit(check_sweeper_installed)(sys.argv[1:])
    return cast("float | None", train_app())  # hydra.main's wrapper returns what train_app returns
