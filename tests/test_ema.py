"""GeneratorEMA: the average after N steps equals the manual one, only generators are averaged, the
swap restores the trained weights, an exact resume carries it, and predict uses it (use_ema)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ganforge
from ganforge.callbacks import GeneratorEMA
from ganforge.cli.train import train
from ganforge.models.loading import read_checkpoint
from ganforge.utils.errors import ConfigError
from tests.conftest import PREDICT, SHARED_DATA, compose_train, run_cli

FROGS = SHARED_DATA / "cifar10_frog" / "test"
TINY = [
    "model=dcgan",
    "data=image_folder",
    f"data.root={FROGS}",
    "debug=tiny",
    "logger=csv",
    "trainer.limit_train_batches=3",
    "callbacks.image_grid.every_n_batches=0",
]


class Toy(nn.Module):
    generator_names = ("netG",)

    def __init__(self):
        super().__init__()
        self.netG, self.netD = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), nn.Linear(3, 1)


def run_steps(ema: GeneratorEMA, module: Toy, n: int) -> list[list[torch.Tensor]]:
    """n 'training batches', each moving every parameter; the parameters after each."""
    ema.setup(None, module, "fit")
    seen = []
    for _ in range(n):
        with torch.no_grad():
            for p in module.parameters():
                p.add_(torch.randn_like(p))
        seen.append([p.detach().clone() for p in module.netG.parameters()])
        ema.on_train_batch_end(None, module, None, None, 0)
    return seen


@pytest.mark.parametrize("warmup", [False, True])
def test_the_ema_equals_the_manual_average_after_n_steps(warmup):
    torch.manual_seed(0)
    module, decay, start = Toy(), 0.9, 2
    ema = GeneratorEMA(decay=decay, start_step=start, warmup=warmup)
    seen = run_steps(ema, module, 6)
    manual = None
    for n, params in enumerate(seen[start:]):
        d = min(decay, (1 + n) / (10 + n)) if warmup else decay
        manual = [p.clone() for p in params] if manual is None else [d * m + (1 - d) * p for m, p in zip(manual, params)]
    got = list(ema.averages["netG"].module.parameters())
    assert all(torch.allclose(g, m, atol=1e-6) for g, m in zip(got, manual))
    assert list(ema.averages) == ["netG"]  # D is not averaged
    # BatchNorm's running statistics follow the live G
    assert torch.equal(ema.averages["netG"].module[1].running_mean, module.netG[1].running_mean)


def test_the_swap_puts_the_average_in_and_the_trained_weights_back():
    torch.manual_seed(0)
    module, ema = Toy(), GeneratorEMA(decay=0.5, warmup=False)
    run_steps(ema, module, 3)
    trained = [p.detach().clone() for p in module.netG.parameters()]
    with ema.swapped(module):
        assert all(torch.equal(p, q) for p, q in zip(module.netG.parameters(), ema.averages["netG"].module.parameters()))
        with ema.swapped(module):  # re-entrant: the grid inside validation does not swap twice
            pass
        assert not torch.equal(next(module.netG.parameters()), trained[0])
    assert all(torch.equal(p, q) for p, q in zip(module.netG.parameters(), trained))


def test_a_bad_decay_is_a_config_error():
    with pytest.raises(ConfigError, match="decay"):
        GeneratorEMA(decay=1.5)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-epoch run, and the same run stopped after epoch 1 and resumed from its last.ckpt."""
    full = tmp_path_factory.mktemp("full")
    train(compose_train(full, TINY))
    half = tmp_path_factory.mktemp("half")
    train(compose_train(half, [*TINY, "trainer.max_epochs=1"]))
    resumed = tmp_path_factory.mktemp("resumed")
    shutil.copy(half / "checkpoints" / "last.ckpt", resumed / "epoch1.ckpt")
    train(compose_train(resumed, [*TINY, f"ckpt_path={resumed / 'epoch1.ckpt'}"]))
    return full / "checkpoints" / "last.ckpt", resumed / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_an_exact_resume_includes_the_ema(runs):
    full, resumed = (read_checkpoint(p) for p in runs)
    a, b = full["callbacks"]["GeneratorEMA"], resumed["callbacks"]["GeneratorEMA"]
    assert a["batches"] == b["batches"] == 6
    assert int(a["nets"]["netG"]["n_averaged"]) == 6
    for k, v in a["nets"]["netG"].items():
        assert torch.equal(v, b["nets"]["netG"][k]), k
    assert all(torch.equal(v, resumed["state_dict"][k]) for k, v in full["state_dict"].items())
    # and the average is not the trained G
    g = {k.removeprefix("module."): v for k, v in a["nets"]["netG"].items() if k.startswith("module.")}
    assert any(not torch.equal(v, full["state_dict"][f"netG.{k}"]) for k, v in g.items() if v.is_floating_point())


@pytest.mark.slow
def test_load_and_predict_use_the_ema_unless_told_not_to(runs, tmp_path):
    ckpt = runs[0]
    stored = read_checkpoint(ckpt)
    ema_w = stored["callbacks"]["GeneratorEMA"]["nets"]["netG"]["module.main.0.weight"]
    with_ema = ganforge.load(ckpt)
    without = ganforge.load(ckpt, use_ema=False)
    assert torch.equal(with_ema.netG.main[0].weight, ema_w)
    assert torch.equal(without.netG.main[0].weight, stored["state_dict"]["netG.main.0.weight"])
    outs = {}
    for flag in ("true", "false"):
        out = tmp_path / flag
        proc = run_cli([f"ckpt_path={ckpt}", f"output={out}", "num_samples=4", f"use_ema={flag}"], script=PREDICT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs[flag] = np.array(Image.open(out / "sample_0000.png"))
    assert not np.array_equal(outs["true"], outs["false"])
