"""Datasets as LitData shards: `ganforge-prepare` converts a dataset once, `data.format=shards` trains from it.

`write_split` stores each entry of a split (a pair's A and B files, a photo with its label and instance
maps, one image) as one record of LitData's binary chunks (`litdata.optimize`), in a local folder or on
object storage (`s3://...`, through LitData's own client and credentials). Files are stored as they are
on disk (their JPEG/PNG bytes, not decoded or resized), so training from shards decodes, crops and flips
exactly what the folders give. Each
record also holds the entry's class label (image folders; -1 otherwise).

`ShardSplit` reads a split back through `litdata.StreamingDataset`'s random access: entry i is a tuple
of `imageio.MemoryFile`s, which every reader of ganforge takes in place of a path. ganforge keeps its own
samplers (exact resume, the reference's epoch semantics, Lightning's DistributedSampler under DDP), so it
uses the streaming dataset as an indexed store of chunks, cached locally as they are first read.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from ganforge.errors import ConfigError, DataLayoutError
from ganforge.imageio import MemoryFile

FORMATS = ("folders", "shards")


def _litdata():
    try:
        import litdata
    except ImportError:
        raise ConfigError("shards need LitData: pip install 'ganforge[shards]' (or pip install litdata)") from None
    return litdata


def _join(root: str, name: str) -> str:
    return f"{str(root).rstrip('/')}/{name}"


def has_split(root: str | Path, name: str) -> bool:
    """Whether `<root>/<name>` holds a prepared split (LitData's index.json; object storage: assumed, and
    a missing split fails when LitData opens it)."""
    return "://" in str(root) or (Path(root) / name / "index.json").is_file()


def check_shards(root: str | Path) -> None:
    if "://" not in str(root) and not any(Path(root).glob("*/index.json")):
        raise DataLayoutError(
            f"data.format=shards but {root} holds no prepared split (<split>/index.json): convert the dataset "
            f"first with `ganforge-prepare data=<its data config> output={root}`"
        )


def _record(entry: tuple[tuple[Path | None, ...], int], root: Path) -> dict:
    """One entry's files as a record: their names relative to the dataset root and their bytes (a file
    named twice, as the A|B image of a pair, is stored once; an absent one, as a missing instance map, is '')."""
    files, label = entry
    names, record = [], {"label": label}
    for k, path in enumerate(files):
        name = "" if path is None else str(Path(path).relative_to(root) if Path(path).is_relative_to(root) else Path(path).name)
        first = names.index(name) if name and name in names else None
        names.append(name)
        record[f"file{k}"] = b"" if path is None or first is not None else Path(path).read_bytes()
    record["names"] = "\t".join(names)
    return record


def write_split(entries: Sequence[tuple[Path | None, ...]], labels: Sequence[int] | None, root: Path, output: str,
                name: str, num_workers: int, chunk_bytes: str = "64MB") -> int:
    """Write one split's entries into `<output>/<name>` with `litdata.optimize`; returns the entry count."""
    litdata = _litdata()
    items = [(tuple(e), int(labels[i]) if labels is not None else -1) for i, e in enumerate(entries)]
    if not items:
        raise DataLayoutError(f"split {name} of {root} has no entries to write")
    litdata.optimize(fn=functools.partial(_record, root=Path(root)), inputs=items, output_dir=_join(output, name),
                     chunk_bytes=chunk_bytes, num_workers=max(1, min(num_workers, len(items))), mode="overwrite",
                     reorder_files=False)
    return len(items)


class ShardSplit(Sequence):
    """The entries of one prepared split, read on access: entry i is a tuple of MemoryFile (None for an
    absent file); with `single=True`, the entry's one file. Slicing keeps the first entries. `label(i)`
    is entry i's class label."""

    def __init__(self, root: str | Path, name: str, single: bool = False, limit: int | None = None):
        litdata = _litdata()
        self.directory = _join(str(root), name)
        self.single = single
        self._ds = litdata.StreamingDataset(self.directory, shuffle=False)
        # Every entry of the split: StreamingDataset's own len() is this rank's share under DDP, and
        # ganforge's samplers (Lightning's DistributedSampler) split the indices themselves.
        total = sum(end - start for start, end in self._ds.region_of_interest)
        self._len = total if limit is None else min(limit, total)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index):
        if isinstance(index, slice):
            view = object.__new__(ShardSplit)
            view.directory, view.single, view._ds = self.directory, self.single, self._ds
            view._len = len(range(*index.indices(self._len)))
            if index.start not in (None, 0) or index.step not in (None, 1):
                raise ValueError("a ShardSplit slices only a prefix ([:n])")
            return view
        record = self._record(index)
        names = record["names"].split("\t")
        files: list[MemoryFile | None] = []
        for k, name in enumerate(names):
            if not name:
                files.append(None)
            elif name in names[:k]:
                files.append(files[names.index(name)])
            else:
                files.append(MemoryFile(_join(self.directory, name), bytes(record[f"file{k}"])))
        return files[0] if self.single else tuple(files)

    def _record(self, index: int) -> dict:
        if not -self._len <= index < self._len:
            raise IndexError(index)
        return self._ds[index % self._len]

    def label(self, index: int) -> int:
        return int(self._record(index)["label"])
