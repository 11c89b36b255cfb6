"""`ganforge-eval ckpt_path=<ckpt> output=<folder> [data=...] [metrics=[...]] [num_samples=N]`.

Rebuilds the model and its data module from the run config stored in the checkpoint (data=...
replaces the data, +data.<key>=... changes one key), generates `num_samples` images from the
reference split, and writes `<output>/metrics.json` with the protocol next to every number, a
sample grid `<output>/samples.png` and the generated images in `<output>/images/`.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from rich.console import Console
from rich.table import Table

from ganforge.app import entry_point
from ganforge.checkpoint import build_model
from ganforge.errors import ConfigError
from ganforge.metrics import MetricSuite, check_metrics
from ganforge.imageio import save_atomic, to_uint8, uint8_grid

SUITE_KEYS = ("lpips_net", "diversity_samples", "kid_subsets", "kid_subset_size", "is_splits", "fid_feature", "weights")


def data_config(run_cfg: dict, override: DictConfig | None) -> DictConfig:
    """The run's data config; a whole data config (data=<name>) replaces it, single keys change it."""
    if override is not None and "_target_" in override:
        return override
    return OmegaConf.merge(OmegaConf.create(run_cfg["data"]), override or {})


def reference_loader(datamodule, split: str):
    if split not in ("test", "val"):
        raise ConfigError(f"split={split!r}: choose test or val")
    datamodule.prepare_data()
    datamodule.setup("test" if split == "test" else "validate")
    return datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()


def evaluate(cfg: DictConfig) -> dict:
    model, run_cfg = build_model(cfg.ckpt_path, trust=bool(cfg.get("trust_checkpoint")), use_ema=bool(cfg.get("use_ema", True)))
    segmenter = hydra.utils.instantiate(cfg.segmenter) if cfg.get("segmenter") is not None else None
    names = check_metrics(OmegaConf.to_object(cfg.metrics) if OmegaConf.is_list(cfg.metrics) else cfg.metrics, model,
                          segmenter=segmenter is not None)
    n = cfg.get("num_samples")
    if n is not None and n < (2 if {"fid", "kid"} & set(names) else 1):
        raise ConfigError(f"num_samples={n}: FID/KID need at least 2 images (covariance); use >= 2048 for published protocols")
    suite_args = {k: OmegaConf.to_object(cfg[k]) if OmegaConf.is_config(cfg[k]) else cfg[k] for k in SUITE_KEYS}
    suite = MetricSuite(names, batch_size=cfg.batch_size, seed=cfg.seed, segmenter=segmenter,
                        label_classes=model.metric_label_classes, **suite_args)  # loads every network first
    dcfg = data_config(run_cfg, cfg.get("data"))
    datamodule = hydra.utils.instantiate(dcfg, batch_size=cfg.batch_size, num_workers=0)
    datamodule.size_multiple = model.input_size_multiple
    loader = reference_loader(datamodule, cfg.split)

    out_dir = Path(cfg.output)
    img_dir = out_dir / "images"
    if cfg.save_images:
        img_dir.mkdir(parents=True, exist_ok=True)
    # Two-domain models (CycleGAN family) are evaluated one direction at a time: direction=AtoB|BtoA.
    direction = cfg.get("direction")
    if direction and len(model.directions) == 1:
        raise ConfigError(f"direction={direction} is only for two-domain models; {type(model).__name__} has one direction")
    direction = direction or model.directions[0]
    if direction not in model.directions:
        raise ConfigError(f"direction must be one of {list(model.directions)}, got {direction!r}")
    torch.manual_seed(cfg.seed)
    n_div = suite.diversity_samples if "diversity" in names else 0
    grid: dict[str, list[torch.Tensor]] = {"generated": [], "real": []}
    seen = 0
    with torch.no_grad():
        for batch in loader:
            if n is not None and seen >= n:
                break
            out = model.metric_batch(batch, direction)
            fake, real, label = out["fake"], out.get("real"), out.get("label")
            if n is not None:
                fake, real = fake[: n - seen], real[: n - seen] if real is not None else None
                label = label[: len(fake)] if label is not None else None
                batch = {k: v[: len(fake)] for k, v in batch.items()}
            diverse = model.sample_diverse(batch, n_div) if n_div else None
            suite.update(fake, real, diverse=diverse, label=label)
            if cfg.save_images:
                for i, img in enumerate(to_uint8(fake, rgb=True)):
                    save_atomic(Image.fromarray(img.permute(1, 2, 0).cpu().numpy()), img_dir / f"{seen + i:05d}.png")
            if len(grid["generated"]) < cfg.grid_size:
                grid["generated"] += list(fake[: cfg.grid_size])
                if real is not None:
                    grid["real"] += list(real[: cfg.grid_size])
            seen += len(fake)
    values = suite.compute()
    protocol = suite.protocol()
    split_info = {"split": cfg.split, "root": str(dcfg.get("root")),
                  "direction": direction if len(model.directions) > 1 else dcfg.get("direction")}
    report = {
        "checkpoint": str(cfg.ckpt_path),
        "model": type(model).__name__,
        "reference": split_info,
        # G's mode and batching at generation (pix2pix: train mode, one image at a time, as its reference)
        "generation": model.metric_protocol(),
        "metrics": {
            name: {"value": values[name], **({"std": values[f"{name}_std"]} if f"{name}_std" in values else {}),
                   "reference_split": cfg.split, **protocol[name]}
            for name in names
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    rows = {k: torch.stack(v[: cfg.grid_size]) for k, v in grid.items() if v}
    Image.fromarray(uint8_grid(rows).permute(1, 2, 0).numpy()).save(out_dir / "samples.png")
    print_table(report, out_dir)
    return report


def print_table(report: dict, out_dir: Path) -> None:
    table = Table(title=f"{report['model']} on the {report['reference']['split']} split")
    for col in ("metric", "value", "samples", "protocol"):
        table.add_column(col)
    for name, m in report["metrics"].items():
        value = f"{m['value']:.4f}" + (f" ± {m['std']:.4f}" if "std" in m else "")
        samples = m.get("samples", m.get("pairs", m.get("inputs")))
        proto = m.get("feature_layer") or m.get("net") or m.get("reduction") or m.get("window", "")
        table.add_row(name + (" ↑" if m["higher_is_better"] else " ↓"), value, str(samples), str(proto))
    console = Console()
    console.print(table)
    console.print(f"Wrote {out_dir / 'metrics.json'}, {out_dir / 'samples.png'}")


@entry_point("eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)
