"""The schema of a ganforge-export manifest and the rules for the files it names (docs/export.md).

`manifest.json` and each ONNX graph's "ganforge" metadata are read from files a user may have been sent,
so nothing in them is used before it is checked here: types, required keys, bounds on every size,
channel count and random-input size, and file names that must resolve inside the export folder (the
graph files, and the external-data files those graphs name). ganforge-export checks what it writes
against the same schema. Standard library only: ganforge.export.runtime runs without torch.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ganforge.utils.errors import ExportError

#: pixels: every size and dimension a manifest states (the training size, a fixed output, the size multiple)
MAX_SIDE = 8192
#: values of one random input (z or a noise map) per sample: 2^25 float32 are 128 MiB
MAX_RANDOM_ELEMENTS = 2**25
#: what ganforge's image loading and saving handle (grey, RGB)
CHANNELS = (1, 3)
MAX_LABELS = 65536
MAX_GRAPHS = 64
MAX_INPUTS = 64
MAX_RANK = 8
#: a real manifest is a few KB
MAX_MANIFEST_BYTES = 1 << 20
INPUT_KINDS = ("image", "style", "label", "z", "noise", "flag")
OUTPUT_KINDS = ("image", "z")
DIRECTIONS = ("AtoB", "BtoA")
LABEL_ID_KEYS = ("label_nc", "dontcare_id", "shift")
FIX = "re-export it with ganforge-export (the file was changed, or not written by it)"


def manifest_error(where: str, key: str, problem: str) -> ExportError:
    return ExportError(f"{where}: {key} {problem}. Fix: {FIX}")


# ----- reading -------------------------------------------------------------------------------------
def read_json(text: str, where: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # ValueError covers JSONDecodeError and over-long integers
        raise ExportError(f"{where}: {what} is not valid JSON ({type(e).__name__}: {str(e)[:200]}). Fix: {FIX}") from None


def read_manifest_file(file: Path) -> Any:
    try:
        size = file.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ExportError(f"{file}: {size} bytes, over the {MAX_MANIFEST_BYTES} a manifest may have. Fix: {FIX}")
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ExportError(f"{file} is not a readable manifest ({type(e).__name__}: {e}). Fix: {FIX}") from None
    return read_json(text, str(file), "the manifest")


# ----- the schema ----------------------------------------------------------------------------------
class _Checker:
    """Type and bound checks that name the file and the key path (e.g. graphs[0].inputs[1].shape)."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, key: str, problem: str) -> ExportError:
        return manifest_error(self.where, key, problem)

    def mapping(self, value: Any, key: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a JSON object, got {_kind(value)}")
        return value

    def sequence(self, value: Any, key: str, lo: int, hi: int) -> list:
        if not isinstance(value, list):
            raise self.fail(key, f"must be a JSON list, got {_kind(value)}")
        if not lo <= len(value) <= hi:
            raise self.fail(key, f"must have {lo} to {hi} entries, got {len(value)}")
        return value

    def integer(self, value: Any, key: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, got {_kind(value)}")
        if not lo <= value <= hi:
            raise self.fail(key, f"must be in [{lo}, {hi}], got {value}")
        return value

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"must be a finite number, got {_kind(value)}")
        return float(value)

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, got {_kind(value)}")
        return value

    def choice(self, value: Any, key: str, allowed: Iterable) -> Any:
        allowed = tuple(allowed)
        if isinstance(value, bool) or value not in allowed:
            raise self.fail(key, f"must be one of {', '.join(map(repr, allowed))}, got {_short(value)}")
        return value

    def flag(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {_kind(value)}")
        return value

    def named_entries(self, entries: list, key: str, check: Callable[[_Checker, Any, str], None], why: str = "") -> None:
        """`check(self, entry, "<key>[i].")` for each entry, then that no two entries share a "name"."""
        names: set[str] = set()
        for i, entry in enumerate(entries):
            check(self, entry, f"{key}[{i}].")
            if entry["name"] in names:
                raise self.fail(f"{key}[{i}].name", f"repeats {entry['name']!r}{why}")
            names.add(entry["name"])

    def optional(self, entry: dict, prefix: str, checks: dict) -> None:
        for name, check in checks.items():
            if name in entry:
                check(entry[name], f"{prefix}{name}")


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return _short(value)


def _short(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (ValueError, TypeError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def validate_manifest(manifest: Any, where: str) -> dict:
    """The manifest (a manifest.json, or a lone file's metadata made into one), checked; ExportError naming
    `where` and the key otherwise. Extra keys are allowed (written by a newer ganforge, ignored)."""
    c = _Checker(where)
    m = c.mapping(manifest, "the manifest")
    c.text(m.get("format"), "format")
    c.optional(
        m,
        "",
        {
            "ganforge_version": c.text,
            "model": c.text,
            "model_class": c.text,
            "normalisation": c.text,
            "checkpoint": c.text,
            "checkpoint_sha256": c.text,
            "use_ema": c.flag,
            "needs_input": c.flag,
            "input_size_multiple": lambda v, k: c.integer(v, k, 1, MAX_SIDE),
            "train_size": lambda v, k: c.integer(v, k, 1, MAX_SIDE),
            "opset": lambda v, k: c.integer(v, k, 1, 1000),
        },
    )
    if "channels" in m:
        channels = c.mapping(m["channels"], "channels")
        for side in ("A", "B"):
            if side in channels:
                c.choice(channels[side], f"channels.{side}", CHANNELS)
    graphs = c.sequence(m.get("graphs"), "graphs", 1, MAX_GRAPHS)
    c.named_entries(graphs, "graphs", _validate_graph, "; graph names must be unique")
    firsts = [g["inputs"][0]["kind"] for g in graphs]
    if not any(k in ("image", "label") for k in firsts):
        # an export that needs no input image samples from its first graph: every input must be random
        bad = [i["name"] for i in graphs[0]["inputs"] if i["kind"] not in ("z", "noise")]
        if bad:
            raise ExportError(
                f"{where}: no graph to run: none translates an image or a label map, and the first, "
                f"{graphs[0]['name']!r}, is no sampler (input {bad[0]!r} is not random). Fix: give the export "
                "folder, or the generator's .onnx file of it"
            )
    return m


def _validate_graph(c: _Checker, graph: Any, p: str) -> None:
    g = c.mapping(graph, p.rstrip("."))
    c.text(g.get("name"), f"{p}name")
    c.text(g.get("file"), f"{p}file")
    inputs = c.sequence(g.get("inputs"), f"{p}inputs", 1, MAX_INPUTS)
    c.named_entries(inputs, f"{p}inputs", _validate_input)
    symbols = {d for spec in inputs for d in spec["shape"] if isinstance(d, str)}
    _validate_output(c, g.get("output"), f"{p}output.", symbols)
    c.optional(
        g,
        p,
        {
            "direction": lambda v, k: c.choice(v, k, DIRECTIONS),
            "nz": lambda v, k: c.integer(v, k, 1, MAX_RANDOM_ELEMENTS),
            "fixed_size": c.flag,
            "generator_mode": c.text,
            "batchnorm": c.text,
            "role": c.text,
            "parity_max_abs_diff": c.number,
            "dynamic_axes": c.mapping,
        },
    )
    first = inputs[0]["kind"]
    extra = [i["kind"] for i in inputs[1:]]
    c.choice(first, f"{p}inputs[0].kind", ("image", "style", "label", "z", "noise"))
    c.choice(g["output"]["kind"], f"{p}output.kind", ["z" if first == "style" else "image"])
    if first == "image":
        c.choice(g.get("direction"), f"{p}direction", DIRECTIONS)
        if any(k not in ("z", "flag") for k in extra) or extra.count("z") > 1:
            raise c.fail(f"{p}inputs", f"of an image graph may add one z and flag inputs, got {extra}")
        if "z" in extra and next(i for i in inputs if i["kind"] == "z")["name"] != "z":
            raise c.fail(f"{p}inputs", "of an image graph name their z input 'z'")
        if inputs[0]["name"] != "image":
            raise c.fail(f"{p}inputs[0].name", f"of an image graph must be 'image', got {_short(inputs[0]['name'])}")
    elif first == "label":
        if extra not in ([], ["z"]):
            raise c.fail(f"{p}inputs", f"of a label-map graph may add one z input, got {extra}")
        if [i["name"] for i in inputs] != ["label", "z"][: len(inputs)]:
            raise c.fail(f"{p}inputs", "of a label-map graph must be named label[, z]")
        _validate_label_ids(c, g.get("label_ids"), f"{p}label_ids")
        size = c.sequence(g.get("train_label_size"), f"{p}train_label_size", 2, 2)
        for k, side in enumerate(size):
            c.integer(side, f"{p}train_label_size[{k}]", 1, MAX_SIDE)
        c.flag(g.get("fixed_size"), f"{p}fixed_size")
    elif first == "style" and (extra or inputs[0]["name"] != "image"):
        raise c.fail(f"{p}inputs", "of an encoder graph must be one style image named 'image'")


def input_dtype(kind: str) -> str:
    """The element type of an input of this kind (label maps are class ids, the rest float32)."""
    return "int64" if kind == "label" else "float32"


def _validate_shape(c: _Checker, shape: Any, key: str) -> list:
    dims = c.sequence(shape, key, 0, MAX_RANK)
    for k, d in enumerate(dims):
        if isinstance(d, str):
            c.text(d, f"{key}[{k}]")
        else:
            c.integer(d, f"{key}[{k}]", 1, MAX_SIDE)
    return dims


def _validate_input(c: _Checker, spec: Any, p: str) -> None:
    s = c.mapping(spec, p.rstrip("."))
    c.text(s.get("name"), f"{p}name")
    kind = c.choice(s.get("kind"), f"{p}kind", INPUT_KINDS)
    shape = _validate_shape(c, s.get("shape"), f"{p}shape")
    if "dtype" in s:
        c.choice(s["dtype"], f"{p}dtype", [input_dtype(kind)])
    if "classes" in s:
        c.integer(s["classes"], f"{p}classes", 1, MAX_LABELS + 1)
    if kind in ("image", "style"):
        channels = c.choice(s.get("channels"), f"{p}channels", CHANNELS)
        if len(shape) != 4 or shape[1] != channels:
            raise c.fail(f"{p}shape", f"of an image input must be [batch, {channels}, height, width], got {_short(shape)}")
    elif kind == "label":
        if len(shape) != 4 or shape[1] != 1:
            raise c.fail(f"{p}shape", f"of a label input must be [batch, 1, height, width], got {_short(shape)}")
    elif kind == "flag":
        if shape:
            raise c.fail(f"{p}shape", f"of a flag input must be [] (a scalar), got {_short(shape)}")
        if "default" in s:
            c.number(s["default"], f"{p}default")
    else:  # z and noise are drawn by the runtime: every dimension after the batch must be a number
        if not 2 <= len(shape) or not all(isinstance(d, int) for d in shape[1:]):
            raise c.fail(f"{p}shape", f"of a {kind} input must be [batch, sizes...] with numbers after the batch, got {_short(shape)}")
        count = math.prod(shape[1:])
        if count > MAX_RANDOM_ELEMENTS:
            raise c.fail(f"{p}shape", f"asks for {count} random values per sample, over the {MAX_RANDOM_ELEMENTS} allowed")


def _validate_output(c: _Checker, spec: Any, p: str, symbols: set[str]) -> None:
    s = c.mapping(spec, p.rstrip("."))
    c.text(s.get("name"), f"{p}name")
    kind = c.choice(s.get("kind"), f"{p}kind", OUTPUT_KINDS)
    shape = _validate_shape(c, s.get("shape"), f"{p}shape")
    # a named output dimension is an input's (the batch, a dynamic height or width): that bounds the
    # output by the input, so a graph cannot ask for an output larger than what it is given
    unbound = [d for d in shape if isinstance(d, str) and d not in symbols]
    if unbound:
        raise c.fail(
            f"{p}shape", f"names {', '.join(map(repr, unbound))}, which no input has; an output dimension is a number or an input's"
        )
    if kind == "image":
        channels = c.choice(s.get("channels"), f"{p}channels", CHANNELS)
        if len(shape) != 4 or shape[1] != channels:
            raise c.fail(f"{p}shape", f"of an image output must be [batch, {channels}, height, width], got {_short(shape)}")
    elif len(shape) < 2:
        raise c.fail(f"{p}shape", f"of a z output must be [batch, sizes...], got {_short(shape)}")


def _validate_label_ids(c: _Checker, value: Any, key: str) -> None:
    ids = c.mapping(value, key)
    unknown = sorted(set(ids) - set(LABEL_ID_KEYS))
    if unknown:
        raise c.fail(key, f"has unknown keys {', '.join(map(repr, unknown))}; it holds {', '.join(LABEL_ID_KEYS)}")
    c.integer(ids.get("label_nc"), f"{key}.label_nc", 1, MAX_LABELS)
    if ids.get("dontcare_id") is not None:
        c.integer(ids["dontcare_id"], f"{key}.dontcare_id", 0, 2**31 - 1)
    if "shift" in ids:
        c.integer(ids["shift"], f"{key}.shift", 0, MAX_LABELS)


# ----- files named by a manifest --------------------------------------------------------------------
def inside(folder: Path, name: str, where: str, key: str) -> Path:
    """`folder/name`, resolved (symbolic links followed), if it lies inside `folder`; ExportError otherwise."""
    if "\0" in name or Path(name).is_absolute():
        raise ExportError(
            f"{where}: {key}={name!r} is not a file name inside the export folder; a manifest names its "
            f"files relative to its folder. Fix: {FIX}"
        )
    base = folder.resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base):
        raise ExportError(f"{where}: {key}={name!r} resolves to {path}, outside the export folder {base}; refused. Fix: {FIX}")
    return path


def graph_file(folder: Path, graph: dict, where: str) -> Path:
    """The graph's .onnx file: inside the folder, a regular file."""
    path = inside(folder, graph["file"], where, f"graph {graph['name']!r} file")
    if path.suffix != ".onnx":
        raise ExportError(f"{where}: graph {graph['name']!r} file={graph['file']!r} is not an .onnx file. Fix: {FIX}")
    if not path.is_file():
        raise ExportError(f"{where}: {path} (graph {graph['name']!r}) is missing; copy the whole export folder")
    return path


def check_external_data(model_file: Path, external: list) -> None:
    """Every external-data location of the model (onnx_proto.summarize) names a regular file inside the
    model's folder, and offset/length lie within it; onnxruntime reads these before any ganforge check."""
    folder = model_file.parent
    for tensor in external:
        entries = dict(tensor.entries)
        locations = [v for k, v in tensor.entries if k == "location"]
        if not locations:
            raise ExportError(f"{model_file}: tensor {tensor.name!r} is stored externally but names no location; refused. Fix: {FIX}")
        for location in locations:
            # onnxruntime reads this marker as a memory address, not a file
            if "_ORT_MEM_ADDR_" in location:
                raise ExportError(f"{model_file}: tensor {tensor.name!r} has external data at {location!r}, a memory address; refused")
            path = inside(folder, location, str(model_file), f"tensor {tensor.name!r} external data location")
            if not path.is_file():
                raise ExportError(
                    f"{model_file}: tensor {tensor.name!r} has its data in {path}, which is missing; copy the whole export folder"
                )
            size = path.stat().st_size
            try:
                offset, length = int(entries.get("offset") or 0), int(entries.get("length") or 0)
            except ValueError:
                raise ExportError(
                    f"{model_file}: tensor {tensor.name!r} has a non-numeric external data offset or length; refused"
                ) from None
            if offset < 0 or length < 0 or offset + length > size:
                raise ExportError(
                    f"{model_file}: tensor {tensor.name!r} reads bytes {offset}..{offset + length} of {path} "
                    f"({size} bytes); refused. Fix: {FIX}"
                )


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
