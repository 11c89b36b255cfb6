"""bf16-mixed on the CPU casts each net's weights once between optimizer steps (gans/precision.py): a cast made
before an optimizer step is never used after it, fp32 runs are untouched, and the tiny models train."""

from __future__ import annotations

import lightning.pytorch as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from omegaconf import OmegaConf
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from ganforge.cli.app import CONF_DIR
from ganforge.cli.predict import predict
from ganforge.cli.train import train
from ganforge.gans.base import GANModule
from ganforge.gans.precision import CachedCastBF16
from tests.conftest import SHARED_DATA, TINY, compose_train, quiet_trainer


class TwoSteps(GANModule):
    """One conv stepped twice in one training_step; records what its forwards return around each step."""

    def __init__(self):
        super().__init__()
        self.net = nn.Conv2d(2, 3, 3, padding=1)
        self.seen: list[dict] = []

    def configure_optimizers(self):
        return torch.optim.SGD(self.net.parameters(), lr=0.5)

    def grid_rows(self, batch):
        return {}

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        x = batch[0]
        before = self.net(x)
        again = self.net(x)  # same weights: may reuse the first forward's cast
        self.step(opt, before.float().square().mean() + again.float().square().mean())
        after = self.net(x)  # new weights: must not
        # the cast of the current fp32 weights, made here by hand
        fresh = F.conv2d(x.bfloat16(), self.net.weight.detach().bfloat16(), self.net.bias.detach().bfloat16(), padding=1)
        self.seen.append(
            {
                "cache": torch.is_autocast_cache_enabled(),
                "autocast": torch.is_autocast_enabled("cpu"),
                "before": before.detach(),
                "after": after.detach(),
                "fresh": fresh,
            }
        )


def fit(model: GANModule, precision: str) -> L.Trainer:
    data = [torch.randn(2, 8, 8) for _ in range(3)]
    trainer = quiet_trainer(accelerator="cpu", precision=precision, max_epochs=1, limit_val_batches=0)
    trainer.fit(model, DataLoader(data, batch_size=1))
    return trainer


def test_bf16_casts_are_cached_and_never_outlive_an_optimizer_step():
    model = TwoSteps()
    trainer = fit(model, "bf16-mixed")
    assert type(trainer.precision_plugin) is CachedCastBF16 and trainer.precision == "bf16-mixed"
    for s in model.seen:
        assert s["autocast"] and s["cache"]
        assert s["before"].dtype == torch.bfloat16
        assert not torch.equal(s["after"], s["before"])  # the step changed the weights and the forward saw it
        assert torch.equal(s["after"], s["fresh"])  # cast from the updated weights, not a cached earlier cast


def test_a_cache_kept_across_the_step_would_be_caught():
    """The test above can fail: without emptying the cache after the step, the forward after it reads the old cast."""

    class Kept(CachedCastBF16):
        def optimizer_step(self, optimizer, model, closure, **kwargs):
            return MixedPrecision.optimizer_step(self, optimizer, model=model, closure=closure, **kwargs)

    model = TwoSteps()
    model.on_fit_start = lambda: setattr(model.trainer.strategy, "precision_plugin", Kept())
    fit(model, "bf16-mixed")
    assert all(torch.equal(s["after"], s["before"]) for s in model.seen)


def test_fp32_is_left_as_it_was():
    model = TwoSteps()
    trainer = fit(model, "32-true")
    assert type(trainer.precision_plugin) is Precision
    assert not any(s["autocast"] for s in model.seen)
    assert all(s["before"].dtype == torch.float32 for s in model.seen)


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan", "bicyclegan"])
def test_tiny_models_train_in_bf16(tmp_path, model):
    cfg = compose_train(
        tmp_path, [*TINY, f"model={model}", "trainer.precision=bf16-mixed", "trainer.accelerator=cpu", "trainer.limit_train_batches=2"]
    )
    metrics, objects = train(cfg)
    assert type(objects["trainer"].precision_plugin) is CachedCastBF16
    assert objects["trainer"].global_step > 0
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())

    # ganforge-predict precision=bf16-mixed on the checkpoint: close to fp32, and not fp32 itself
    src = SHARED_DATA / "pix2pix_samples" / "facades_pairs"
    outs = {}
    for precision in ("32-true", "bf16-mixed"):
        report = predict(predict_cfg(tmp_path / "checkpoints" / "last.ckpt", src, tmp_path / precision, precision=precision))
        assert report["written"] and not report["failed"]
        outs[precision] = [np.asarray(Image.open(p), dtype=np.int16) for p in sorted(report["written"])]
    diffs = np.concatenate([np.abs(a - b).ravel() for a, b in zip(outs["32-true"], outs["bf16-mixed"])])
    assert 0 < diffs.mean() < 2.0  # grey levels: bf16 rounding, not another model
    assert np.percentile(diffs, 99) <= 8


def predict_cfg(ckpt, src, out, **options):
    cfg = OmegaConf.load(f"{CONF_DIR}/predict.yaml")
    for key in ("defaults", "hydra"):
        cfg.pop(key)
    cfg.update(ckpt_path=str(ckpt), input=str(src), output=str(out), **options)
    return cfg


def test_predict_bf16_refused_where_emulated_and_precision_checked(tmp_path, monkeypatch):
    from ganforge.cli import precision as cpu
    from ganforge.cli.predict import TorchModel
    from ganforge.utils.errors import ConfigError

    model = TorchModel.__new__(TorchModel)
    model.model, model.kind = nn.Conv2d(1, 1, 1), "Pix2PixModel"
    model.model.device = torch.device("cpu")
    monkeypatch.setattr(cpu, "cpu_has_bf16", lambda: False)
    with pytest.raises(ConfigError, match="precision=bf16-mixed on this CPU: it has no bf16 instructions.*allow_slow_bf16=true"):
        model.precision_context({"precision": "bf16-mixed"})
    assert isinstance(model.precision_context({"precision": "bf16-mixed", "allow_slow_bf16": True}), torch.autocast)
    monkeypatch.setattr(cpu, "cpu_has_bf16", lambda: True)
    assert isinstance(model.precision_context({"precision": "bf16-mixed"}), torch.autocast)
    with pytest.raises(ConfigError, match="precision=16-mixed is not one of 32-true, bf16-mixed"):
        model.precision_context({"precision": "16-mixed"})
