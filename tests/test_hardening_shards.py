"""Shards whose index.json would make LitData run code, import a module or read outside the split are
refused before anything is decoded, with one DataLayoutError (issue 25, section 1)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litdata.streaming.downloader import LocalDownloader, register_downloader, unregister_downloader
from litdata.streaming.writer import BinaryWriter

from ganforge.data.shards import FIELD_FORMATS, ShardSplit, check_index, validate_index, write_split
from ganforge.utils.errors import DataLayoutError, GanforgeError
from tests.conftest import PAIRED_MINI, SHARED_DATA, run_cli

JPEG = (PAIRED_MINI / "train" / "1.jpg").read_bytes()


class RunsCode:
    """Pickles to a call of os.system: what a "pickle" field of a crafted shard holds."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def crafted(tmp_path_factory) -> tuple[Path, Path]:
    """A paired dataset's train and test splits written by LitData's writer (what litdata.optimize runs)
    with ganforge's record but a label that only pickle stores; the marker appears if anything unpickles it."""
    root = tmp_path_factory.mktemp("crafted_shards")
    marker = root / "marker"
    writer = BinaryWriter(str(root / "shards" / "train"), chunk_bytes="64MB")
    for i in range(2):
        writer[i] = {"label": RunsCode(marker), "file0": JPEG, "file1": b"", "names": "1.jpg\t1.jpg"}
    writer.done()
    writer.merge()
    shutil.copytree(root / "shards" / "train", root / "shards" / "test")
    assert json.loads((root / "shards" / "train" / "index.json").read_text())["config"]["data_format"][0] == "pickle"
    assert not marker.exists()
    return root / "shards", marker


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A split as ganforge-prepare writes it: <root>/train."""
    root = tmp_path_factory.mktemp("good_shards")
    files = sorted((PAIRED_MINI / "train").glob("*.jpg"))
    write_split([(f, f) for f in files], None, PAIRED_MINI, str(root), "train", num_workers=1)
    return root


def copy_split(good: Path, tmp_path: Path, edit: dict | None = None) -> Path:
    """A copy of the good split whose index.json has `edit` applied (key path with '/' -> new value)."""
    root = tmp_path / "edited"
    shutil.copytree(good, root)
    index_path = root / "train" / "index.json"
    index = json.loads(index_path.read_text())
    for path, value in (edit or {}).items():
        node, *keys, last = [index, *path.split("/")]
        for key in keys:
            node = node[int(key) if isinstance(node, list) else key]
        node[int(last) if isinstance(node, list) else last] = value
    index_path.write_text(json.dumps(index))
    return root


def test_training_on_shards_that_would_run_code_stops_with_one_line_and_runs_nothing(crafted, tmp_path):
    shards, marker = crafted
    proc = run_cli(
        ["debug=tiny", "logger=csv", "data=paired", "data.format=shards", f"data.root={shards}", f"hydra.run.dir={tmp_path / 'run'}"]
    )
    assert not marker.exists()
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert f"{shards}/train/index.json" in errors[0] and "'pickle'" in errors[0] and "ganforge-prepare" in errors[0]


def test_the_good_split_reads(good):
    split = ShardSplit(good, "train")
    assert len(split) == 2 and split.label(0) == -1
    a, b = split[0]
    assert a.name.endswith("train/1.jpg") and a.data == JPEG and b is a


GRAPH_SPEC = '[1, {"type": "collections.defaultdict", "context": "{}", "children_spec": []}]'


@pytest.mark.parametrize(
    "edit, needle",
    [
        ({"config/data_format/0": "pickle"}, "'pickle'"),
        ({"config/data_format/1": "graph:pickle"}, "'graph:pickle'"),
        ({"config/data_format/3": "json"}, "'json'"),
        ({"config/data_format/1": "tensor"}, "'tensor'"),
        ({"config/data_format": ["int", "bytes", "bytes"]}, "3 formats for 4 fields"),
        ({"config/data_spec": GRAPH_SPEC}, "data_spec"),
        ({"config/compression": "zstd"}, "compression"),
        ({"config/encryption": {"algorithm": "fernet"}}, "encryption"),
        ({"config/item_loader": "TokensLoader"}, "item_loader"),
        ({"config/format": "mds"}, "config.format"),
        ({"updated_at": "../../../tmp/x"}, "updated_at"),
        ({"chunks/0/filename": "../../outside.bin"}, "plain file name"),
        ({"chunks/0/filename": "/etc/passwd"}, "plain file name"),
        ({"chunks/0/filename": "sub/chunk-0-0.bin"}, "plain file name"),
        ({"chunks/0/chunk_size": -1}, "non-negative"),
        ({"chunks": []}, "no chunks"),
        ({"config": []}, "not a LitData index"),
    ],
)
def test_a_crafted_index_is_refused_naming_it(good, tmp_path, edit, needle):
    root = copy_split(good, tmp_path, edit)
    with pytest.raises(DataLayoutError, match="ganforge-prepare") as e:
        ShardSplit(root, "train")
    assert str(root / "train" / "index.json") in str(e.value) and needle in str(e.value)


def test_a_chunk_linked_out_of_the_split_is_refused(good, tmp_path):
    root = copy_split(good, tmp_path)
    chunk = root / "train" / "chunk-0-0.bin"
    outside = tmp_path / "outside.bin"
    chunk.rename(outside)
    chunk.symlink_to(outside)
    with pytest.raises(DataLayoutError, match="link out of the split folder"):
        ShardSplit(root, "train")


@pytest.mark.parametrize("text", [b"", b"not json", b"[" * 100_000, json.dumps([1, 2]).encode()])
def test_an_index_that_is_not_a_litdata_index_is_one_error(good, tmp_path, text):
    root = copy_split(good, tmp_path)
    (root / "train" / "index.json").write_bytes(text)
    with pytest.raises(DataLayoutError, match="index.json"):
        ShardSplit(root, "train")


def test_an_index_swapped_after_the_check_still_decodes_nothing(good, crafted, tmp_path):
    """Object storage can change between ganforge's check and LitData's own read of the index: the
    formats ganforge does not accept are replaced by ones that refuse."""
    shards, marker = crafted
    root = copy_split(good, tmp_path)
    split = ShardSplit(root, "train")
    for name in ("index.json", "chunk-0-0.bin"):
        shutil.copy(shards / "train" / name, root / "train" / name)
    with pytest.raises(DataLayoutError, match="it changed after it was checked and now asks for 'pickle'"):
        split[0]
    assert not marker.exists()


class PrefixDownloader(LocalDownloader):
    """Object storage for the test: `ganforge-test://<local path>`."""

    def download_file(self, remote_filepath: str, local_filepath: str) -> None:
        super().download_file(remote_filepath.removeprefix("ganforge-test://"), local_filepath)


def test_a_remote_index_is_read_through_litdatas_downloader_and_checked(good, crafted):
    register_downloader("ganforge-test://", PrefixDownloader, overwrite=True)
    try:
        assert check_index(f"ganforge-test://{good}/train")[0]["filename"] == "chunk-0-0.bin"
        with pytest.raises(DataLayoutError, match=r"ganforge-test://.*/train/index.json: field 'label' is stored as 'pickle'"):
            check_index(f"ganforge-test://{crafted[0]}/train")
        with pytest.raises(DataLayoutError, match="cannot be read"):
            check_index(f"ganforge-test://{good}/nope")
    finally:
        unregister_downloader("ganforge-test://")


def test_prepare_run_inside_the_dataset_writes_names_it_reads_back(tmp_path, monkeypatch):
    """A file name that is also a path from the current folder made LitData store the names field as a
    decoded image ("image:jpg"); ganforge writes names as bytes."""
    root = SHARED_DATA / "horse2zebra_mini"
    monkeypatch.chdir(root)
    files = sorted(Path("trainA").glob("*.jpg"))
    write_split([(f,) for f in files], None, Path("."), str(tmp_path), "trainA", num_workers=1)
    formats = json.loads((tmp_path / "trainA" / "index.json").read_text())["config"]["data_format"]
    assert formats == ["int", "bytes", "bytes"]
    first = ShardSplit(tmp_path, "trainA", single=True)[0]
    assert first.name == f"{tmp_path}/trainA/{files[0]}" and first.data == (root / files[0]).read_bytes()


# --- fuzzing: whatever index.json holds, validation returns or raises ganforge's error --------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**40) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
litdata_formats = st.sampled_from(
    [
        "int",
        "bytes",
        "str",
        "pickle",
        "graph:pickle",
        "json",
        "tensor",
        "numpy",
        "no_header_tensor:1",
        "file:jpg",
        "image:jpg",
        "pil",
        "jpeg",
        "video",
        "bool",
        "float",
        "text",
        "",
        "int:",
        "INT",
    ]
)
chunk_names = st.sampled_from(
    ["chunk-0-0.bin", "..", ".", "../chunk-0-0.bin", "/etc/passwd", "a/b.bin", "C:\\x.bin", "chunk\x00.bin", ".hidden", "ok_name.bin"]
) | st.text(max_size=12)


def index_paths(node, prefix=()):
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield from index_paths(value, (*prefix, key))


def replaced(node, path, value):
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = replaced(node[path[0]], path[1:], value)
    return copy


@st.composite
def mutated_indexes(draw, base: dict):
    """A real index with one part replaced: by any JSON, by LitData format names, or by chunk names."""
    kind = draw(st.sampled_from(["any", "formats", "chunk_name", "spec"]))
    if kind == "formats":
        return replaced(base, ("config", "data_format"), draw(st.lists(litdata_formats, min_size=0, max_size=6)))
    if kind == "chunk_name":
        return replaced(base, ("chunks", 0, "filename"), draw(chunk_names))
    if kind == "spec":
        fields = draw(st.lists(st.sampled_from(["label", "file0", "file1", "names", "x", ""]), max_size=5))
        leaf = {"type": None, "context": None, "children_spec": []}
        spec = [
            draw(st.sampled_from([1, 0, "1"])),
            {
                "type": draw(st.sampled_from(["builtins.dict", "collections.defaultdict"])),
                "context": json.dumps(fields),
                "children_spec": [leaf] * len(fields),
            },
        ]
        return replaced(base, ("config", "data_spec"), json.dumps(spec))
    return replaced(base, draw(st.sampled_from(list(index_paths(base)))), draw(json_values))


def test_fuzzed_indexes_pass_only_when_safe_else_raise_ganforge_error(good):
    base = json.loads((good / "train" / "index.json").read_text())
    allowed = {f for formats in FIELD_FORMATS.values() for f in formats}

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(mutated_indexes(base))
    def check(index):
        try:
            chunks = validate_index(index, "index.json")
        except GanforgeError:
            return
        assert set(index["config"]["data_format"]) <= allowed
        assert all("/" not in c["filename"] and c["filename"] not in (".", "..") for c in chunks)

    check()


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_fuzzed_index_files_raise_only_ganforge_error(text):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "index.json").write_bytes(text)
        try:
            check_index(folder)
        except GanforgeError:
            pass
