"""What ganforge reads from an .onnx file before onnxruntime opens it, with the standard library alone.

An ONNX model is a protobuf message (onnx.proto, ModelProto). This reads its wire format directly, so the
runtime needs neither the onnx package nor a particular onnxruntime version to check a file first:

* `metadata_props`: the key/value pairs ganforge-export writes ("ganforge": the graph's manifest entry);
* every tensor's external-data `location` (onnx's ExternalData.md): graph initializers, sparse
  initializers, tensors in node attributes (Constant's `value`), in subgraphs (If/Loop/Scan bodies), in
  model-local functions and in training info. onnxruntime reads these files relative to the model's
  folder; ganforge checks each location itself (ganforge.export.manifest.check_external_data), because whether
  onnxruntime refuses one outside the folder depends on its version.

Every occurrence of a field is visited (protobuf merges repeated occurrences of a singular message, so a
second `graph` field adds to the first); a field of an unexpected wire type is skipped, as protobuf
treats it as unknown. Anything that is not well-formed protobuf raises ValueError.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

VARINT, I64, LEN, I32 = 0, 1, 2, 5
MAX_DEPTH = 64  # nested subgraphs; ganforge's graphs have none

# field numbers of onnx.proto
MODEL_GRAPH, MODEL_METADATA, MODEL_TRAINING_INFO, MODEL_FUNCTIONS = 7, 14, 20, 25
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_SPARSE_INITIALIZER = 1, 5, 15
NODE_ATTRIBUTE = 5
ATTR_T, ATTR_G, ATTR_TENSORS, ATTR_GRAPHS, ATTR_SPARSE_TENSOR, ATTR_SPARSE_TENSORS = 5, 6, 10, 11, 22, 23
TENSOR_NAME, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 8, 13, 14
DATA_LOCATION_EXTERNAL = 1
SPARSE_VALUES, SPARSE_INDICES = 1, 2
FUNCTION_NODE = 7
TRAINING_INITIALIZATION, TRAINING_ALGORITHM = 1, 2
ENTRY_KEY, ENTRY_VALUE = 1, 2


@dataclass
class ExternalTensor:
    """A tensor whose data lives in another file: its name and its external_data entries, in file order."""

    name: str
    entries: list[tuple[str, str]] = field(default_factory=list)
    data_location_external: bool = False


@dataclass
class OnnxSummary:
    metadata: dict[str, str]
    external: list[ExternalTensor]


class _Reader:
    def __init__(self, buf: memoryview):
        self.buf = buf

    def _varint(self, pos: int, end: int) -> tuple[int, int]:
        value, shift = 0, 0
        while True:
            if pos >= end or shift > 63:
                raise ValueError("truncated or over-long varint")
            byte = self.buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value, pos
            shift += 7

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
        """(field number, wire type, value or payload start, payload end) of each field in [start, end)."""
        pos = start
        while pos < end:
            tag, pos = self._varint(pos, end)
            number, wire = tag >> 3, tag & 7
            if number == 0:
                raise ValueError("field number 0")
            if wire == VARINT:
                value, pos = self._varint(pos, end)
                yield number, wire, value, pos
            elif wire == LEN:
                size, pos = self._varint(pos, end)
                if pos + size > end:
                    raise ValueError("a length-delimited field runs past its message")
                yield number, wire, pos, pos + size
                pos += size
            elif wire in (I64, I32):
                pos += 8 if wire == I64 else 4
                if pos > end:
                    raise ValueError("a fixed-size field runs past its message")
            else:  # groups (3, 4) are not used by onnx.proto; 6 and 7 are not wire types
                raise ValueError(f"wire type {wire}")

    def text(self, start: int, end: int) -> str:
        return bytes(self.buf[start:end]).decode("utf-8")


def _messages(reader: _Reader, start: int, end: int, number: int) -> Iterator[tuple[int, int]]:
    for n, wire, a, b in reader.fields(start, end):
        if n == number and wire == LEN:
            yield a, b


def _tensor(reader: _Reader, start: int, end: int, out: list[ExternalTensor]) -> None:
    tensor = ExternalTensor(name="")
    for n, wire, a, b in reader.fields(start, end):
        if n == TENSOR_NAME and wire == LEN:
            tensor.name = reader.text(a, b)
        elif n == TENSOR_EXTERNAL_DATA and wire == LEN:
            key = value = ""
            for m, w, c, d in reader.fields(a, b):
                if w == LEN and m in (ENTRY_KEY, ENTRY_VALUE):
                    key, value = (reader.text(c, d), value) if m == ENTRY_KEY else (key, reader.text(c, d))
            tensor.entries.append((key, value))
        elif n == TENSOR_DATA_LOCATION and wire == VARINT:
            tensor.data_location_external = a == DATA_LOCATION_EXTERNAL
    if tensor.entries or tensor.data_location_external:
        out.append(tensor)


def _sparse(reader: _Reader, start: int, end: int, out: list[ExternalTensor]) -> None:
    for number in (SPARSE_VALUES, SPARSE_INDICES):
        for a, b in _messages(reader, start, end, number):
            _tensor(reader, a, b, out)


def _nodes(reader: _Reader, start: int, end: int, node_field: int, out: list[ExternalTensor], depth: int) -> None:
    for a, b in _messages(reader, start, end, node_field):
        for c, d in _messages(reader, a, b, NODE_ATTRIBUTE):
            for n, wire, e, f in reader.fields(c, d):
                if wire != LEN:
                    continue
                if n in (ATTR_T, ATTR_TENSORS):
                    _tensor(reader, e, f, out)
                elif n in (ATTR_SPARSE_TENSOR, ATTR_SPARSE_TENSORS):
                    _sparse(reader, e, f, out)
                elif n in (ATTR_G, ATTR_GRAPHS):
                    _graph(reader, e, f, out, depth + 1)


def _graph(reader: _Reader, start: int, end: int, out: list[ExternalTensor], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"subgraphs nested deeper than {MAX_DEPTH}")
    for a, b in _messages(reader, start, end, GRAPH_INITIALIZER):
        _tensor(reader, a, b, out)
    for a, b in _messages(reader, start, end, GRAPH_SPARSE_INITIALIZER):
        _sparse(reader, a, b, out)
    _nodes(reader, start, end, GRAPH_NODE, out, depth)


def summarize(path: str | Path) -> OnnxSummary:
    """The metadata_props and the externally stored tensors of an .onnx file; ValueError if it is not
    well-formed protobuf, OSError if it cannot be read."""
    with open(path, "rb") as f:
        if Path(path).stat().st_size == 0:
            raise ValueError("empty file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            buf = memoryview(mapped)
            try:
                return _summarize(_Reader(buf), len(buf))
            except UnicodeDecodeError as e:
                raise ValueError(f"a string that is not UTF-8 ({e.reason})") from None
            finally:
                buf.release()


def _summarize(reader: _Reader, size: int) -> OnnxSummary:
    metadata: dict[str, str] = {}
    external: list[ExternalTensor] = []
    for n, wire, a, b in reader.fields(0, size):
        if wire != LEN:
            continue
        if n == MODEL_METADATA:
            key = value = ""
            for m, w, c, d in reader.fields(a, b):
                if w == LEN and m in (ENTRY_KEY, ENTRY_VALUE):
                    key, value = (reader.text(c, d), value) if m == ENTRY_KEY else (key, reader.text(c, d))
            metadata[key] = value
        elif n == MODEL_GRAPH:
            _graph(reader, a, b, external, 0)
        elif n == MODEL_FUNCTIONS:
            _nodes(reader, a, b, FUNCTION_NODE, external, 0)
        elif n == MODEL_TRAINING_INFO:
            for number in (TRAINING_INITIALIZATION, TRAINING_ALGORITHM):
                for c, d in _messages(reader, a, b, number):
                    _graph(reader, c, d, external, 0)
    return OnnxSummary(metadata, external)
