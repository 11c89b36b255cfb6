"""Shared fixtures: compose the real Hydra config, shrink it, point it at ../shared/data."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
import torchvision
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch import nn

from ganforge.cli.app import CONF_DIR
from ganforge.metrics.weights import WEIGHTS

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
PAIRED_MINI = SHARED_DATA / "pix2pix_paired_mini"

#: the console scripts, as a user runs them
PREDICT = str(Path(sys.executable).parent / "ganforge-predict")
EVAL = str(Path(sys.executable).parent / "ganforge-eval")

#: hparams_search=<model>_optuna runs hydra-optuna-sweeper, the sweep extra (dev installs it)
needs_sweep = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
    reason='the Optuna sweeper is not installed: pip install "ganforge[sweep]"',
)

# Runs in tests never talk to W&B's servers.
os.environ.setdefault("WANDB_MODE", "offline")


def compose_train(tmp_path: Path, overrides: list[str] = ()) -> DictConfig:
    """The config `python train.py <overrides>` would get, writing under tmp_path."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.job.num = 0
        cfg.paths.output_dir = str(tmp_path)
        cfg.print_config = False
    HydraConfig().set_config(cfg)
    return cfg


TINY = ["debug=tiny", "logger=csv", f"data.root={PAIRED_MINI}", "data.direction=BtoA"]


#: SPADE on the COCO-Stuff sample at 32 px
SPADE_COCO = [
    "model=spade",
    "data=coco_stuff",
    f"data.root={SHARED_DATA / 'coco_stuff_sample'}",
    "debug=tiny",
    "logger=csv",
    "data.load_size=36",
    "data.crop_size=32",
]
#: and with tiny nets
SPADE_TINY = [*SPADE_COCO, "model.netG.ngf=4", "model.netD.ndf=4"]


def quiet_trainer(**kwargs):
    """A Lightning Trainer that writes and prints nothing: no logger, checkpoints, progress bar or model
    summary. `kwargs`: the rest (max_epochs, limit_train_batches, ...)."""
    import lightning as L

    return L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, **kwargs)


def record_stepped_nets(model, nets=("netG", "netD")) -> list[list[str]]:
    """Wrap `model.step`: each optimizer step appends to the returned list which of `nets` it changed."""
    steps: list[list[str]] = []
    step = model.step

    def recording(opt, *losses):
        before = {n: [p.detach().clone() for p in getattr(model, n).parameters()] for n in nets}
        step(opt, *losses)
        steps.append([n for n, ps in before.items() if any(not torch.equal(a, b) for a, b in zip(ps, getattr(model, n).parameters()))])

    model.step = recording
    return steps


@pytest.fixture
def tiny_cfg(tmp_path):
    return lambda *extra: compose_train(tmp_path, [*TINY, *extra])


def run_cli(args: list[str], timeout: int = 600, env: dict | None = None, script: str = "train.py") -> subprocess.CompletedProcess:
    """Run an entry point as a user would, from the repo root, with this interpreter."""
    cmd = [sys.executable, str(REPO / script), *args] if script.endswith(".py") else [script, *args]
    full_env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "", **(env or {})}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=full_env)


def train_checkpoint(tmp_path_factory, name: str, args: list[str]) -> Path:
    """Run train.py as a user would into a fresh folder; its last.ckpt."""
    out = tmp_path_factory.mktemp(name)
    proc = run_cli([*args, f"hydra.run.dir={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "terminate called" not in proc.stderr  # gloo's abort at exit after a DDP run
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint from a real `debug=tiny` pix2pix run on the shared facades pairs."""
    return train_checkpoint(tmp_path_factory, "tiny_run", TINY)


def write_fake_weights(folder: Path) -> Path:
    """`folder` as a TORCH_HOME holding Inception (torch-fidelity's format) and SqueezeNet 1.1
    (torchvision's) weight files, randomly initialised so that features are not degenerate."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    ckpt = folder / "hub" / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    # The constructor always loads weights: give it none, then initialise as kaiming.
    with (
        mock.patch.object(fe, "load_state_dict_from_url", return_value={}),
        mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None),
    ):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    gen = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            m.weight.data = torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5
    torch.save(net.state_dict(), ckpt / WEIGHTS["inception"].file)
    torch.manual_seed(0)
    torch.save(torchvision.models.squeezenet1_1().state_dict(), ckpt / WEIGHTS["squeezenet1_1"].file)
    return folder


@pytest.fixture(scope="session")
def fake_torch_home(tmp_path_factory) -> Path:
    return write_fake_weights(tmp_path_factory.mktemp("torch_home"))


def train_from_untrained(cfg: DictConfig):
    """(the model `cfg` builds before any step, the objects of `train(cfg)`), seeded alike, on one torch
    thread: on 2 shared cores one thread runs tiny convs several times faster. For learning tests."""
    import hydra
    import lightning as L
    import torch

    from ganforge.cli.train import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        L.seed_everything(cfg.seed)
        untrained = hydra.utils.instantiate(cfg.model)
        _, objects = train(cfg)
    finally:
        torch.set_num_threads(threads)
    return untrained, objects
