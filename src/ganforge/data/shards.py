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

A split's `index.json` tells LitData how to decode each field (`config.data_format`): "pickle" would be
`pickle.loads` on the chunk's bytes, and its `data_spec` can name a module to import. So `check_index`
reads it first (locally, or through LitData's own downloader for object storage) and accepts only the
record ganforge writes: `label` an int, `file0..fileN` bytes, `names` bytes (or str, as earlier ganforge
wrote it), no compression or encryption, and chunk files named plainly inside the split folder.
"""

from __future__ import annotations

import functools
import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ganforge.utils.errors import ConfigError, DataLayoutError
from ganforge.utils.imageio import MemoryFile

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


#: what LitData may decode each field of a ganforge record as: a class label, a file's bytes, the file names
#: (bytes; "str" in shards of earlier ganforge versions, whose `optimize` chose "image:jpg" for a name that
#: was also a path from the current folder). Every other LitData format decodes with code ganforge does
#: not need, and "pickle" (or "graph:pickle") runs whatever the file says.
FIELD_FORMATS = {"label": ("int",), "file": ("bytes",), "names": ("bytes", "str")}
#: LitData's flattened-dict spec for a field (a leaf) and for the record
_LEAF: dict[str, Any] = {"type": None, "context": None, "children_spec": []}
#: config entries that select compression, encryption or another reader: ganforge writes none of them
_OFF = ("compression", "compression_batch_size", "compression_level", "encryption", "ipc_compression")
_CHUNK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_TIMESTAMP = re.compile(r"[0-9]+(\.[0-9]+)?")


def _index_error(where: str, problem: str) -> DataLayoutError:
    return DataLayoutError(
        f"{where}: {problem}. ganforge reads only the shards ganforge-prepare writes; re-create them with "
        "`ganforge-prepare data=<the dataset's data config> output=<folder>`"
    )


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _record_fields(spec: Any, where: str) -> list[str]:
    """The field names of LitData's data_spec, if it is the flat dict of leaves that ganforge writes (a
    richer spec can name a module for LitData to import)."""
    tree: Any
    try:
        protocol, tree = json.loads(spec) if isinstance(spec, str) else (None, None)
        fields = json.loads(tree["context"]) if isinstance(tree, dict) and isinstance(tree.get("context"), str) else None
    except (ValueError, TypeError, RecursionError):
        raise _index_error(where, "config.data_spec is not LitData's spec of a record") from None
    if (
        protocol != 1
        or set(tree) != {"type", "context", "children_spec"}
        or tree["type"] != "builtins.dict"
        or not isinstance(fields, list)
        or tree["children_spec"] != [_LEAF] * len(fields)
    ):
        raise _index_error(where, "config.data_spec is not the flat record ganforge writes")
    return fields


def validate_index(index: Any, where: str) -> list[dict]:
    """Check a parsed index.json against what `write_split` writes; returns its chunks. `where` names the
    file in the messages."""
    if not isinstance(index, dict) or not isinstance(index.get("config"), dict) or not isinstance(index.get("chunks"), list):
        raise _index_error(where, "not a LitData index (a JSON object with 'config' and 'chunks')")
    unknown = sorted(k for k, v in index.items() if k not in ("config", "chunks", "updated_at") and v is not None)
    config, chunks = index["config"], index["chunks"]
    # An entry ganforge does not know of is refused unless it is off (null): it may change how LitData reads.
    unknown += sorted(
        f"config.{k}"
        for k, v in config.items()
        if k not in ("data_format", "data_spec", "item_loader", "chunk_bytes", "chunk_size", "types", *_OFF) and v is not None
    )
    if unknown:
        raise _index_error(where, f"it sets {', '.join(map(str, unknown))}, which ganforge-prepare never writes")
    # LitData names its remote cache folder after updated_at (and deletes the folders beside it)
    if not (index.get("updated_at") is None or isinstance(index["updated_at"], str) and _TIMESTAMP.fullmatch(index["updated_at"])):
        raise _index_error(where, f"updated_at is {index['updated_at']!r}, not a timestamp")
    if not (config.get("types") is None or isinstance(config["types"], dict)):
        raise _index_error(where, "config.types is not a mapping")
    if not all(config.get(k) is None or _is_int(config[k]) for k in ("chunk_bytes", "chunk_size")):
        raise _index_error(where, "config.chunk_bytes and config.chunk_size must be non-negative integers")
    if config.get("item_loader", "PyTreeLoader") != "PyTreeLoader":
        raise _index_error(where, f"config.item_loader is {config['item_loader']!r}, not PyTreeLoader")
    on = [k for k in _OFF if config.get(k) is not None]
    if on:
        raise _index_error(where, f"config.{on[0]} is set; ganforge writes shards without compression or encryption")
    formats = config.get("data_format")
    if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
        raise _index_error(where, "config.data_format is not a list of format names")
    fields = _record_fields(config.get("data_spec"), where)
    expected = ["label", *(f"file{k}" for k in range(len(fields) - 2)), "names"]
    if fields != expected:
        raise _index_error(where, f"its records hold {fields!r}, not ganforge's fields (label, file0, ..., names)")
    if len(formats) != len(fields):
        raise _index_error(where, f"config.data_format has {len(formats)} formats for {len(fields)} fields")
    for field, fmt in zip(fields, formats):
        allowed = FIELD_FORMATS[field.rstrip("0123456789")]
        if fmt not in allowed:
            raise _index_error(
                where,
                f"field {field!r} is stored as {fmt!r}; ganforge accepts only {' or '.join(map(repr, allowed))} "
                "there (LitData would decode it with that format's code; 'pickle' runs code)",
            )
    if not chunks:
        raise _index_error(where, "it lists no chunks")
    for chunk in chunks:
        if not isinstance(chunk, dict) or any(
            v is not None for k, v in chunk.items() if k not in ("filename", "chunk_size", "chunk_bytes", "dim")
        ):
            raise _index_error(where, f"chunk entry {chunk!r} is not a LitData chunk (filename, chunk_size, chunk_bytes, dim)")
        name = chunk.get("filename")
        if not isinstance(name, str) or not _CHUNK_NAME.fullmatch(name):
            raise _index_error(where, f"chunk file name {name!r} is not a plain file name inside the split folder")
        if not (
            _is_int(chunk.get("chunk_size")) and _is_int(chunk.get("chunk_bytes")) and (chunk.get("dim") is None or _is_int(chunk["dim"]))
        ):
            raise _index_error(where, f"chunk {name}: chunk_size, chunk_bytes and dim must be non-negative integers")
    return chunks


def check_index(directory: str | Path, storage_options: dict | None = None) -> list[dict]:
    """Read a split's index.json (a local folder, or object storage through LitData's downloader) and
    validate it (`validate_index`) before LitData decodes anything by it; returns its chunks."""
    directory = str(directory)
    where = _join(directory, "index.json")
    if "://" in directory:
        from litdata.streaming.downloader import get_downloader

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "index.json"
            try:
                get_downloader(directory, tmp, [], storage_options).download_file(where, str(local))
                text = local.read_bytes()
            except Exception as e:  # each storage client has its own errors for a missing object or no access
                raise DataLayoutError(
                    f"{where}: cannot be read ({type(e).__name__}: {e}); is this a split "
                    "written by ganforge-prepare, and are the storage credentials set?"
                ) from None
    else:
        try:
            text = Path(where).read_bytes()
        except OSError as e:
            raise DataLayoutError(f"{where}: cannot be read ({e.strerror or e}); is this a split written by ganforge-prepare?") from None
    try:
        index = json.loads(text)
    except (ValueError, RecursionError):
        raise _index_error(where, "not valid JSON") from None
    chunks = validate_index(index, where)
    if "://" not in directory:
        folder = Path(directory).resolve()
        for chunk in chunks:
            path = (folder / chunk["filename"]).resolve()
            if not path.is_relative_to(folder) or not path.is_file():
                raise _index_error(where, f"chunk file {chunk['filename']} is missing or a link out of the split folder")
    return chunks


class _RefusedFormat:
    """A LitData serializer for the formats `FIELD_FORMATS` leaves out: an index.json that changed on the
    storage after `check_index` read it still decodes nothing with them."""

    def __init__(self, directory: str):
        self.directory = directory

    def setup(self, data_format: str) -> None:
        raise _index_error(
            _join(self.directory, "index.json"),
            f"it changed after it was checked and now asks for {data_format!r}, a format ganforge does not read",
        )

    def deserialize(self, data: bytes) -> None:
        self.setup("a refused format")


def _reading_serializers(directory: str) -> dict:
    from litdata.streaming.serializers import (
        _SERIALIZERS,  # every format this LitData would decode
    )

    allowed = {f for formats in FIELD_FORMATS.values() for f in formats}
    return {name: _RefusedFormat(directory) for name in _SERIALIZERS if name not in allowed}


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
    names: list[str] = []
    record: dict[str, Any] = {"label": label}
    for k, path in enumerate(files):
        name = "" if path is None else str(Path(path).relative_to(root) if Path(path).is_relative_to(root) else Path(path).name)
        first = names.index(name) if name and name in names else None
        names.append(name)
        record[f"file{k}"] = b"" if path is None or first is not None else Path(path).read_bytes()
    # As bytes: LitData picks a str's format by what it names, and a name that is also a path from the
    # current folder (ganforge-prepare run inside the dataset) would be stored as a decoded image.
    record["names"] = "\t".join(names).encode()
    return record


def write_split(
    entries: Sequence[tuple[Path | None, ...]],
    labels: Sequence[int] | None,
    root: Path,
    output: str,
    name: str,
    num_workers: int,
    chunk_bytes: str = "64MB",
) -> int:
    """Write one split's entries into `<output>/<name>` with `litdata.optimize`; returns the entry count."""
    litdata = _litdata()
    items = [(tuple(e), int(labels[i]) if labels is not None else -1) for i, e in enumerate(entries)]
    if not items:
        raise DataLayoutError(f"split {name} of {root} has no entries to write")
    litdata.optimize(
        fn=functools.partial(_record, root=Path(root)),
        inputs=items,
        output_dir=_join(output, name),
        chunk_bytes=chunk_bytes,
        num_workers=max(1, min(num_workers, len(items))),
        mode="overwrite",
        reorder_files=False,
    )
    check_index(_join(output, name))  # a LitData that writes other formats fails here, not when training
    return len(items)


class ShardSplit(Sequence):
    """The entries of one prepared split, read on access: entry i is a tuple of MemoryFile (None for an
    absent file); with `single=True`, the entry's one file. Slicing keeps the first entries. `label(i)`
    is entry i's class label."""

    def __init__(self, root: str | Path, name: str, single: bool = False, limit: int | None = None):
        litdata = _litdata()
        self.directory = _join(str(root), name)
        self.single = single
        check_index(self.directory)
        self._ds = litdata.StreamingDataset(self.directory, shuffle=False, serializers=_reading_serializers(self.directory))
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
        text = record["names"] if isinstance(record["names"], str) else bytes(record["names"]).decode(errors="replace")
        names = text.split("\t")
        if len(names) != sum(key.startswith("file") for key in record):
            raise _index_error(
                self.directory, f"record {index} names {len(names)} files but holds {sum(key.startswith('file') for key in record)}"
            )
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
