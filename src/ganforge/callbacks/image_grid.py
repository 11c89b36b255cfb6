"""Sample grids of fixed validation inputs, saved as PNG and sent to every active logger."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image

from ganforge.callbacks.ema import ema_weights
from ganforge.utils.imageio import uint8_grid


class ImageGrid(L.Callback):
    """Every `every_n_batches` training batches and at the end of every validation, translate the same
    `num_images` validation inputs and save `<run dir>/samples/<tag>.png`.

    The module supplies the columns through `grid_rows(batch) -> {name: images}`
    (pix2pix: input | output | target); each grid row is one sample.
    """

    def __init__(self, num_images: int = 4, every_n_batches: int = 500, on_validation: bool = True):
        self.num_images = num_images
        self.every_n_batches = every_n_batches
        self.on_validation = on_validation
        self._batch: dict | None = None
        self._seen = 0

    def on_fit_start(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "fixed_val_batch"):
            return
        self._batch = dm.fixed_val_batch(self.num_images)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._seen += 1
        if self.every_n_batches and self._seen % self.every_n_batches == 0:
            self._log(trainer, pl_module, f"step_{trainer.global_step:07d}")

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.on_validation and not trainer.sanity_checking:
            self._log(trainer, pl_module, f"epoch_{trainer.current_epoch:04d}")

    def state_dict(self) -> dict:
        return {"seen": self._seen}

    def load_state_dict(self, state_dict: dict) -> None:
        self._seen = state_dict.get("seen", 0)

    @rank_zero_only
    def _log(self, trainer, pl_module, tag: str) -> None:
        if self._batch is None:
            return
        batch = {k: v.to(pl_module.device) if torch.is_tensor(v) else v for k, v in self._batch.items()}
        # Sampling must not shift the training run's random stream; grids show the EMA G when there is one.
        with torch.random.fork_rng(devices=[]), ema_weights(trainer, pl_module):
            rows = pl_module.grid_rows(batch)
        grid = uint8_grid(rows)
        out_dir = Path(trainer.default_root_dir) / "samples"
        out_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid.permute(1, 2, 0).numpy()).save(out_dir / f"{tag}.png")
        caption = " | ".join(rows)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="samples", images=[grid.permute(1, 2, 0).numpy()], caption=[caption], step=trainer.global_step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("samples", grid, global_step=trainer.global_step)
