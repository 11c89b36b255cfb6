"""OmegaConf resolvers the configs use. Registered on import of `ganforge.cli.app` (every entry point)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

#: the installed package: its configs and the embedded sample live here
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _wandb_offline() -> bool:
    """W&B runs offline unless the user is logged in *and* W&B's server answers.

    A set API key with no network makes wandb hang about 100 s before failing, and no key at all
    is an immediate UsageError: offline mode avoids both and leaves a run `wandb sync` uploads.
    """
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode in ("offline", "dryrun", "disabled")
    logged_in = bool(os.environ.get("WANDB_API_KEY"))
    netrc = Path.home() / ".netrc"
    if not logged_in and netrc.is_file():
        logged_in = "api.wandb.ai" in netrc.read_text(errors="ignore")
    if not logged_in:
        return True
    try:
        socket.create_connection(("api.wandb.ai", 443), timeout=2).close()
    except OSError:
        return True
    return False


def default_workers(devices=1) -> int:
    """DataLoader workers for each training process: the cores this process may run on, shared by the
    `devices` processes of one machine, less one for the training loop itself; at most 8 (beyond that a
    GAN's per-image decode and crop stops being the bottleneck). 2 cores -> 1 worker, 16 cores and 1 GPU -> 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = cores // devices if isinstance(devices, int) and devices > 0 else cores
    return max(1, min(8, per_process - 1))


def merge(base, changes) -> DictConfig:
    """`${merge:${model.netG_A},{input_nc: 1}}`: a copy of a config node with some keys changed, so a
    config says a net once and its twin (G_B, D_B) follows every override of it."""
    # A DictConfig (not a dict), so Hydra's recursive instantiate builds the net it describes.
    return OmegaConf.merge(OmegaConf.to_container(base, resolve=True), changes)


def sqlite_url(path: str) -> str:
    """`${sqlite_url:<file>}`: an SQLAlchemy URL for a sqlite file, its folder created (sqlite does not
    create folders), so an Optuna study can live under logs/ before the sweep has written anything."""
    file = Path(path).expanduser().resolve()
    file.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{file}"


def register() -> None:
    OmegaConf.register_new_resolver("sum", lambda *xs: sum(xs), replace=True)
    OmegaConf.register_new_resolver("merge", merge, replace=True)
    OmegaConf.register_new_resolver("default_workers", default_workers, replace=True)
    OmegaConf.register_new_resolver("sqlite_url", sqlite_url, replace=True)
    OmegaConf.register_new_resolver("package_dir", lambda: str(PACKAGE_DIR), replace=True)
    OmegaConf.register_new_resolver("wandb_offline", _wandb_offline, replace=True, use_cache=True)
