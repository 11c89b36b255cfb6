"""Generative metrics (FID, KID, IS, LPIPS, ...) on a fixed validation subset every N epochs.

The values are logged as `val/<name>` through `pl_module.log`, so every logger records them,
ModelCheckpoint can monitor them and `train(cfg)` returns them (a sweep can minimise `val/fid`).
The model supplies images through the protocol of `ganforge.metrics.registry` and runs its
generator its own way (pix2pix: one image at a time in train mode, as its reference test.py), so
`batch_size` here sets throughput, not the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader, Subset

from ganforge.callbacks.ema import ema_weights
from ganforge.metrics import MetricSuite, check_metrics
from ganforge.utils.errors import ConfigError


class GenerativeMetrics(L.Callback):
    """Every `every_n_epochs` epochs (and at the last one), translate the first `num_samples`
    validation items and log the metrics. Under DDP each rank takes a share of the subset and
    torchmetrics gathers the statistics, so every rank logs the same keys and values."""

    def __init__(
        self,
        metrics: str | Sequence[str] = "auto",
        num_samples: int = 200,
        every_n_epochs: int = 5,
        batch_size: int = 8,
        prefix: str = "val/",
        seed: int = 0,
        **suite_args,  # lpips_net, diversity_samples, fid_feature, kid_*, is_splits, weights: see MetricSuite
    ):
        if num_samples < 1 or every_n_epochs < 1:
            raise ConfigError(f"num_samples and every_n_epochs must be >= 1, got {num_samples} and {every_n_epochs}")
        self.requested, self.num_samples, self.every_n_epochs = metrics, num_samples, every_n_epochs
        self.batch_size, self.prefix, self.seed = batch_size, prefix, seed
        self.suite_args = {k: dict(v) if isinstance(v, Mapping) else v for k, v in suite_args.items()}
        self.suite: MetricSuite | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        # Before any training: an impossible metric or a missing weight file stops the run here.
        if stage == "fit" and self.suite is None:
            names = check_metrics(self.requested, pl_module)
            if self.requested in (None, "auto"):
                # Paired models already log val/psnr and val/ssim on the whole val set every epoch.
                names = [n for n in names if n not in ("psnr", "ssim")] or names
            self.suite = MetricSuite(names, batch_size=max(self.batch_size, 1), seed=self.seed, **self.suite_args)

    def due(self, trainer) -> bool:
        epoch = trainer.current_epoch + 1
        return epoch % self.every_n_epochs == 0 or epoch >= (trainer.max_epochs or 0)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.suite is None or not self.due(trainer):
            return
        for name, value in self.evaluate(trainer, pl_module).items():
            # The value is already global (torchmetrics synced it): no sync_dist reduction.
            pl_module.log(f"{self.prefix}{name}", value, on_epoch=True, sync_dist=False)

    def _loader(self, trainer) -> DataLoader:
        loaders = trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        dataset = loader.dataset
        n = min(self.num_samples, len(dataset))
        # A fixed subset, split across ranks without overlap.
        indices = list(range(trainer.global_rank, n, trainer.world_size))
        return DataLoader(Subset(dataset, indices), batch_size=self.batch_size, shuffle=False, collate_fn=loader.collate_fn)

    @torch.no_grad()
    def evaluate(self, trainer, pl_module) -> dict[str, float]:
        suite = self.suite.to(pl_module.device)
        suite.reset()
        n_div = suite.diversity_samples if "diversity" in suite.names else 0
        # Sampling must not shift the training run's random streams (exact resume); the EMA G when there is one.
        with torch.random.fork_rng(devices=[pl_module.device] if pl_module.device.type == "cuda" else []), ema_weights(trainer, pl_module):
            torch.manual_seed(self.seed + trainer.global_rank)
            for batch in self._loader(trainer):
                batch = {k: v.to(pl_module.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                out = pl_module.metric_batch(batch)
                diverse = pl_module.inference_model().diverse(batch["A"], n_div) if n_div else None
                suite.update(out["fake"], out.get("real"), diverse=diverse)
        return suite.compute()
