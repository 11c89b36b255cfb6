"""`ganforge-eval ckpt_path=<ckpt> output=<folder> [data=...] [metrics=[...]] [num_samples=N]`.

Loads the model with `ganforge.load` and builds its data module from the run config stored in the
checkpoint (data=... replaces the data, +data.<key>=... changes one key): the stored data config is data,
checked against the data module's signature and built by name from ganforge's data modules, never
instantiated from its `_target_` or interpolated. It generates `num_samples` images from the
reference split, and writes `<output>/metrics.json` with the protocol next to every number, a
sample grid `<output>/samples.png` and the generated images in `<output>/images/`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from rich.console import Console
from rich.table import Table

from ganforge.cli.app import entry_point
from ganforge.metrics import MetricSuite, check_metrics
from ganforge.models import load
from ganforge.models.loading import read_checkpoint
from ganforge.utils.errors import CheckpointError, ConfigError
from ganforge.utils.imageio import save_atomic, to_uint8, uint8_grid

SUITE_KEYS = ("lpips_net", "diversity_samples", "kid_subsets", "kid_subset_size", "is_splits", "fid_feature", "weights")


def data_config(stored: dict | None, override: DictConfig | None) -> dict:
    """The run's data config as plain data; a whole data config (data=<name>) replaces it, single keys change it.
    The stored part never goes through OmegaConf, so a `${...}` in it is never resolved (load refuses it)."""
    if override is not None and "_target_" in override:
        return cast(dict, OmegaConf.to_container(override, resolve=True))  # a DictConfig gives a dict
    if not stored:
        raise ConfigError("the checkpoint stores no data config (a model folder has none): give data=<name> data.root=<folder>")
    return {**stored, **(cast(dict, OmegaConf.to_container(override, resolve=True)) if override is not None else {})}


def keyword_arguments(cls: type) -> set[str] | None:
    """The argument names `cls(...)` takes: its `__init__`'s and, where that passes `**options` on to its base
    class, the base's too; None when the chain ends in an `__init__` that takes any keyword."""
    import inspect

    names: set[str] = set()
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
        if all(p.kind != p.VAR_KEYWORD for p in params):
            return names
    return None


def build_datamodule(dcfg: dict, where: str, **overrides):
    """A ganforge data module from a data config, by class name (DATA_MODULES) with its arguments checked against
    the constructor: a `_target_` read from a checkpoint chooses among ganforge's data modules, never what is called."""
    from ganforge.data.registry import DATA_MODULES

    target = dcfg.get("_target_")
    name = target.rsplit(".", 1)[-1] if isinstance(target, str) and target.startswith("ganforge.data.") else None
    if name not in DATA_MODULES:
        raise CheckpointError(f"{where}: data._target_={target!r} is not a ganforge data module; known: {', '.join(sorted(DATA_MODULES))}")
    cls = DATA_MODULES[name]
    accepted = keyword_arguments(cls)
    kwargs = {k: v for k, v in dcfg.items() if k != "_target_"} | overrides
    unknown = sorted(k for k in kwargs if accepted is not None and k not in accepted)
    if unknown:
        raise CheckpointError(f"{where}: {name} takes no argument(s) {unknown}")
    for key, value in kwargs.items():
        if isinstance(value, dict) and "_target_" in value:
            raise CheckpointError(f"{where}: data.{key} asks to build {value['_target_']!r}; a stored config builds nothing")
    return cls(**kwargs)


def reference_loader(datamodule, split: str):
    if split not in ("test", "val"):
        raise ConfigError(f"split={split!r}: choose test or val")
    datamodule.prepare_data()
    datamodule.setup("test" if split == "test" else "validate")
    return datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()


def evaluate(cfg: DictConfig) -> dict:
    model = load(cfg.ckpt_path, use_ema=bool(cfg.get("use_ema", True)))
    stored = read_checkpoint(cfg.ckpt_path)["ganforge"]["config"].get("data") if Path(str(cfg.ckpt_path)).is_file() else None
    segmenter = hydra.utils.instantiate(cfg.segmenter) if cfg.get("segmenter") is not None else None
    names = check_metrics(
        OmegaConf.to_object(cfg.metrics) if OmegaConf.is_list(cfg.metrics) else cfg.metrics, model, segmenter=segmenter is not None
    )
    n = cfg.get("num_samples")
    if n is not None and n < (2 if {"fid", "kid"} & set(names) else 1):
        raise ConfigError(f"num_samples={n}: FID/KID need at least 2 images (covariance); use >= 2048 for published protocols")
    suite_args: dict[str, Any] = {k: OmegaConf.to_object(cfg[k]) if OmegaConf.is_config(cfg[k]) else cfg[k] for k in SUITE_KEYS}
    suite = MetricSuite(
        names, batch_size=cfg.batch_size, seed=cfg.seed, segmenter=segmenter, label_classes=model.metric_label_classes, **suite_args
    )  # loads every network first
    dcfg = data_config(stored, cfg.get("data"))
    datamodule = build_datamodule(dcfg, str(cfg.ckpt_path), batch_size=cfg.batch_size, num_workers=0)
    datamodule.size_multiple = int(getattr(model, "size_multiple", 1))
    loader = reference_loader(datamodule, cfg.split)

    out_dir = Path(cfg.output)
    img_dir = out_dir / "images"
    if cfg.save_images:
        img_dir.mkdir(parents=True, exist_ok=True)
    # Two-domain models (CycleGAN family) are evaluated one direction at a time: direction=AtoB|BtoA.
    direction = cfg.get("direction")
    if direction and len(model.directions) == 1:
        raise ConfigError(f"direction={direction} is only for two-domain models; {model.model_name} has one direction")
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
            diverse = model.diverse(batch["A"], n_div) if n_div else None
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
    split_info = {
        "split": cfg.split,
        "root": str(dcfg.get("root")),
        "direction": direction if len(model.directions) > 1 else dcfg.get("direction"),
    }
    report = {
        "checkpoint": str(cfg.ckpt_path),
        "model": model.model_name,
        "reference": split_info,
        # G's mode and batching at generation (pix2pix: train mode, one image at a time, as its reference)
        "generation": model.metric_protocol(),
        "metrics": {
            name: {
                "value": values[name],
                **({"std": values[f"{name}_std"]} if f"{name}_std" in values else {}),
                "reference_split": cfg.split,
                **protocol[name],
            }
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
