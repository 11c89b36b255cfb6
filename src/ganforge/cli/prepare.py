"""`ganforge-prepare data=<data config> output=<folder or s3://...> [num_workers=N]`: a dataset as LitData shards.

Every file of every split is checked first (the pre-scan of training, `data.on_bad_file` decides: stop with
the list, or leave the bad ones out), then each split is written with `litdata.optimize`
(ganforge.data.shards). Training reads them with the same data config plus
`data.format=shards data.root=<output>`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from ganforge.cli.app import entry_point
from ganforge.data.prescan import FileCheck, PreScan
from ganforge.data.shards import write_split
from ganforge.utils.errors import ConfigError

log = logging.getLogger("ganforge.cli.prepare")


def prepare(cfg: DictConfig) -> dict[str, int]:
    """Write every split of `cfg.data` under `cfg.output`; returns the entries written per split."""
    if cfg.data.get("format", "folders") != "folders":
        raise ConfigError(f"data.format={cfg.data.format}: ganforge-prepare converts a dataset in folders (data.format=folders)")
    datamodule = hydra.utils.instantiate(cfg.data, num_workers=0)
    if not hasattr(datamodule, "shard_splits"):
        raise ConfigError(
            f"{type(datamodule).__name__} reads no image folders to convert (torchvision's archives and single images train as they are)"
        )
    datamodule.prepare_data()  # a named dataset that is missing downloads here, as for training
    root = Path(datamodule.root)
    splits = datamodule.shard_splits()
    checks = [FileCheck(p) for entries, _ in splits.values() for entry in entries for p in entry if p is not None]
    bad = PreScan(cfg.data.get("on_bad_file", "error"), cfg.data.get("verify", "header")).bad_paths(checks, root)
    written = {}
    for name, (entries, labels) in splits.items():
        keep = [i for i, entry in enumerate(entries) if not any(p in bad for p in entry if p is not None)]
        written[name] = write_split(
            [entries[i] for i in keep],
            [labels[i] for i in keep] if labels is not None else None,
            root,
            str(cfg.output),
            name,
            int(cfg.num_workers),
            str(cfg.chunk_bytes),
        )
    table = Table(title=f"{root} -> {cfg.output}")
    table.add_column("split")
    table.add_column("entries", justify="right")
    for name, n in written.items():
        table.add_row(name, str(n))
    Console().print(table)
    return written


@entry_point("prepare")
def main(cfg: DictConfig) -> None:
    prepare(cfg)
