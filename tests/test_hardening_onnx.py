"""ONNX exports that were tampered with (issue 25, section 4): every malformed manifest or graph metadata is
one ganforge error (ExportError, exit 2 from the command line), files must lie inside the export folder
(graphs and their external data), a graph's output must have the manifest's shape and finite values, and
the manifest names the checkpoint by file name and hash, never by a local path.

Real tiny exports are built once for the module and copied into each test, which tampers with the copy."""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import _get_all_tensors, uses_external_data
from PIL import Image

from ganforge.cli.export import export
from ganforge.cli.predict import predict
from ganforge.export.manifest import MAX_RANDOM_ELEMENTS, file_sha256
from ganforge.export.runtime import OnnxModel
from ganforge.utils.errors import ExportError, GanforgeError
from tests.conftest import PREDICT, run_cli
from tests.export_helpers import tiny_checkpoint
from tests.test_export import export_cfg, predict_cfg

MODELS = ("pix2pix", "spade", "dcgan", "cyclegan")


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    folders = {}
    for name in MODELS:
        export(export_cfg(tiny_checkpoint(root / name, name), root / name / "exp"))
        folders[name] = root / name / "exp"
    return folders


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    return path


def copy_export(exports, name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(exports[name], tmp_path / name))


def edit_manifest(folder: Path, edit) -> None:
    file = folder / "manifest.json"
    manifest = json.loads(file.read_text())
    result = edit(manifest)
    file.write_text(json.dumps(manifest if result is None else result))


def run_predict(model: Path, out: Path, photo: Path | None = None, **opts) -> dict:
    args = {"input": str(photo)} if photo else {"num_samples": 2}
    return predict(predict_cfg(out, model_path=str(model), **args, **opts))


def one_line_error(model: Path, tmp_path: Path, photo: Path | None, match: str) -> str:
    """predict on `model` raises one ExportError matching `match` and writes no image."""
    with pytest.raises(ExportError, match=match) as err:
        run_predict(model, tmp_path / "out", photo)
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "out").glob("*.png"))
    return str(err.value)


# ----- the manifest schema ---------------------------------------------------------------------------
def _set(path: list, value):
    def edit(m):
        node = m
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _delete(path: list):
    def edit(m):
        node = m
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return edit


#: (export, edit of its manifest, what the message says); each ended in a traceback or ran before the fix
TAMPERED = {
    "manifest_is_a_list": ("pix2pix", lambda m: [m], "the manifest must be a JSON object, got a list"),
    "graphs_is_a_dict": ("pix2pix", lambda m: {**m, "graphs": {g["name"]: g for g in m["graphs"]}}, "graphs must be a JSON list"),
    "graphs_empty": ("pix2pix", _set(["graphs"], []), r"graphs must have 1 to 64 entries, got 0"),
    "graph_without_name": ("pix2pix", _delete(["graphs", 0, "name"]), r"graphs\[0\].name must be a non-empty string, got null"),
    "graph_without_inputs": ("pix2pix", _delete(["graphs", 0, "inputs"]), r"graphs\[0\].inputs must be a JSON list, got null"),
    "graph_without_output": ("pix2pix", _delete(["graphs", 0, "output"]), r"graphs\[0\].output must be a JSON object"),
    "input_size_multiple_0": ("pix2pix", _set(["input_size_multiple"], 0), r"input_size_multiple must be in \[1, 8192\], got 0"),
    "train_size_abc": ("pix2pix", _set(["train_size"], "abc"), r'train_size must be an integer, got "abc"'),
    "train_size_200000": ("pix2pix", _set(["train_size"], 200000), r"train_size must be in \[1, 8192\], got 200000"),
    "train_size_true": ("pix2pix", _set(["train_size"], True), r"train_size must be an integer, got true"),
    "channels_7": ("pix2pix", _set(["channels", "A"], 7), r"channels.A must be one of 1, 3, got 7"),
    "input_channels_7": (
        "pix2pix",
        _set(["graphs", 0, "inputs", 0, "channels"], 7),
        r"graphs\[0\].inputs\[0\].channels must be one of 1, 3, got 7",
    ),
    "output_channels_4": ("pix2pix", _set(["graphs", 0, "output", "channels"], 4), r"graphs\[0\].output.channels must be one of 1, 3"),
    "output_size_unbound": (
        "pix2pix",
        _set(["graphs", 0, "output", "shape"], ["batch", 3, "tall", "wide"]),
        r"graphs\[0\].output.shape names 'tall', 'wide', which no input has",
    ),
    "direction_sideways": ("pix2pix", _set(["graphs", 0, "direction"], "sideways"), r"graphs\[0\].direction must be one of 'AtoB', 'BtoA'"),
    "flag_default_nan": (
        "pix2pix",
        _set(["graphs", 0, "inputs", 1, "default"], float("nan")),
        r"inputs\[1\].default must be a finite number",
    ),
    "input_kind_unknown": ("pix2pix", _set(["graphs", 0, "inputs", 0, "kind"], "video"), r"inputs\[0\].kind must be one of"),
    "format_missing": ("pix2pix", _delete(["format"]), "format must be a non-empty string, got null"),
    "label_ids_bogus": ("spade", _set(["graphs", 0, "label_ids"], {"bogus": 1}), r"graphs\[0\].label_ids has unknown keys 'bogus'"),
    "label_nc_text": ("spade", _set(["graphs", 0, "label_ids", "label_nc"], "182"), r"label_ids.label_nc must be an integer"),
    "label_ids_missing": ("spade", _delete(["graphs", 0, "label_ids"]), r"graphs\[0\].label_ids must be a JSON object, got null"),
    "train_label_size_0": ("spade", _set(["graphs", 0, "train_label_size"], [0, 32]), r"train_label_size\[0\] must be in \[1, 8192\]"),
    "noise_1e6_floats": (
        "dcgan",
        _set(["graphs", 0, "inputs", 0, "shape"], [1, 1e6, 1e6, 1e6]),
        r"inputs\[0\].shape\[1\] must be an integer, got 1000000.0",
    ),
    "noise_1e6_integers": (
        "dcgan",
        _set(["graphs", 0, "inputs", 0, "shape"], [1, 1000000, 1000000, 1000000]),
        r"inputs\[0\].shape\[1\] must be in \[1, 8192\], got 1000000",
    ),
    "noise_too_many_values": (
        "dcgan",
        _set(["graphs", 0, "inputs", 0, "shape"], ["batch", 8192, 8192, 8192]),
        rf"asks for 549755813888 random values per sample, over the {MAX_RANDOM_ELEMENTS} allowed",
    ),
    "noise_named_sizes": (
        "dcgan",
        _set(["graphs", 0, "inputs", 0, "shape"], ["batch", "nz", 1, 1]),
        r"must be \[batch, sizes...\] with numbers after the batch",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_malformed_manifest_is_one_export_error_naming_the_key(exports, photo, tmp_path, case):
    name, edit, match = TAMPERED[case]
    folder = copy_export(exports, name, tmp_path)
    edit_manifest(folder, edit)
    message = one_line_error(folder, tmp_path, None if name == "dcgan" else photo, match)
    assert message.startswith(str(folder / "manifest.json")) and "Fix: re-export" in message


def test_the_untouched_exports_run(exports, photo, tmp_path):
    for name in ("pix2pix", "cyclegan", "dcgan"):
        report = run_predict(exports[name], tmp_path / name, None if name == "dcgan" else photo)
        assert report["written"] and not report["failed"]


def test_a_manifest_that_is_not_json_or_too_large_is_one_error(exports, photo, tmp_path):
    folder = copy_export(exports, "pix2pix", tmp_path)
    for text, match in (
        ('{"graphs": [', "the manifest is not valid JSON"),
        ("[" * 100000 + "]" * 100000, "not valid JSON"),
        ('"' + "x" * (1 << 20) + '"', "over the 1048576 a manifest may have"),
        ('{"n": 1' + "0" * 5000 + "}", "not valid JSON"),
    ):
        (folder / "manifest.json").write_text(text)
        one_line_error(folder, tmp_path, photo, match)


# ----- a lone .onnx file: its "ganforge" metadata -----------------------------------------------------
def write_metadata(src: Path, dst: Path, value: str) -> Path:
    proto = onnx.load(str(src))
    for prop in proto.metadata_props:
        if prop.key == "ganforge":
            prop.value = value
    onnx.save(proto, str(dst))
    return dst


def _entry(exports, name="cyclegan", graph="AtoB.onnx") -> dict:
    proto = onnx.load(str(exports[name] / graph), load_external_data=False)
    return json.loads({p.key: p.value for p in proto.metadata_props}["ganforge"])


@pytest.mark.parametrize(
    "case, value, match",
    [
        ("bad_json", "{'name': 'AtoB'", "the metadata is not valid JSON"),
        ("json_list", "[1, 2, 3]", "the metadata must be a JSON object, got a list"),
        ("no_inputs", None, r"graphs\[0\].inputs must be a JSON list, got null"),
        ("channels_7", None, r"graphs\[0\].inputs\[0\].channels must be one of 1, 3, got 7"),
    ],
)
def test_malformed_graph_metadata_is_one_export_error(exports, photo, tmp_path, case, value, match):
    if value is None:
        entry = _entry(exports)
        if case == "no_inputs":
            del entry["inputs"]
        else:
            entry["inputs"][0]["channels"] = 7
        value = json.dumps(entry)
    lone = write_metadata(exports["cyclegan"] / "AtoB.onnx", tmp_path / "AtoB.onnx", value)
    message = one_line_error(lone, tmp_path, photo, match)
    assert message.startswith(f"{lone} (its ganforge metadata)")


def test_a_lone_file_runs_without_the_onnx_package(exports, photo, tmp_path, monkeypatch):
    """The runtime reads the metadata and the external-data entries itself (ganforge.export.onnx_proto)."""
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` fails
    report = run_predict(exports["cyclegan"] / "AtoB.onnx", tmp_path / "out", photo)
    assert len(report["written"]) == 1


# ----- files: graphs and external data inside the export folder ----------------------------------
def test_a_graph_file_outside_the_export_folder_is_refused(exports, photo, tmp_path):
    other = copy_export(exports, "pix2pix", tmp_path / "elsewhere")
    folder = copy_export(exports, "pix2pix", tmp_path)
    (folder / "BtoA.onnx").unlink()
    for file in ("../elsewhere/pix2pix/BtoA.onnx", str(other / "BtoA.onnx"), "sub/../../elsewhere/pix2pix/BtoA.onnx"):
        edit_manifest(folder, _set(["graphs", 0, "file"], file))
        one_line_error(folder, tmp_path, photo, "outside the export folder|is not a file name inside the export folder")
    (folder / "BtoA.onnx").symlink_to(other / "BtoA.onnx")
    edit_manifest(folder, _set(["graphs", 0, "file"], "BtoA.onnx"))
    one_line_error(folder, tmp_path, photo, "resolves to .*elsewhere.*outside the export folder")


def test_a_graph_file_in_a_subfolder_of_the_export_runs(exports, photo, tmp_path):
    folder = copy_export(exports, "pix2pix", tmp_path)
    (folder / "graphs").mkdir()
    (folder / "BtoA.onnx").rename(folder / "graphs" / "BtoA.onnx")
    edit_manifest(folder, _set(["graphs", 0, "file"], "graphs/../graphs/BtoA.onnx"))
    assert run_predict(folder, tmp_path / "out", photo)["written"]


def test_a_graph_file_that_is_not_onnx_or_missing_is_one_error(exports, photo, tmp_path):
    folder = copy_export(exports, "pix2pix", tmp_path)
    edit_manifest(folder, _set(["graphs", 0, "file"], "manifest.json"))
    one_line_error(folder, tmp_path, photo, "is not an .onnx file")
    edit_manifest(folder, _set(["graphs", 0, "file"], "gone.onnx"))
    one_line_error(folder, tmp_path, photo, "gone.onnx .*is missing")
    (folder / "BtoA.onnx").write_bytes(b"\x0a\xff\xff\xff\xff\x0f truncated")
    edit_manifest(folder, _set(["graphs", 0, "file"], "BtoA.onnx"))
    one_line_error(folder, tmp_path, photo, "is not an ONNX model")


def external_copy(exports, tmp_path: Path) -> tuple[Path, Path]:
    """A pix2pix export whose graph keeps its weights in BtoA.data beside it (ONNX external data)."""
    folder = copy_export(exports, "pix2pix", tmp_path)
    proto = onnx.load(str(folder / "BtoA.onnx"))
    onnx.save_model(
        proto, str(folder / "BtoA.onnx"), save_as_external_data=True, all_tensors_to_one_file=True, location="BtoA.data", size_threshold=256
    )
    return folder, folder / "BtoA.data"


def set_locations(model: Path, location: str, **entries) -> None:
    proto = onnx.load(str(model), load_external_data=False)
    for tensor in _get_all_tensors(proto):
        if uses_external_data(tensor):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
                elif entry.key in entries:
                    entry.value = str(entries[entry.key])
    onnx.save(proto, str(model))


def test_external_data_inside_the_folder_runs(exports, photo, tmp_path):
    folder, data = external_copy(exports, tmp_path)
    assert data.stat().st_size > 1000
    assert run_predict(folder, tmp_path / "out", photo, test_dropout=False)["written"]


@pytest.mark.parametrize("case", ["parent", "absolute", "symlink", "memory_address", "missing", "past_the_end"])
def test_external_data_outside_the_folder_is_refused_before_onnxruntime_reads_it(exports, photo, tmp_path, case):
    folder, data = external_copy(exports, tmp_path)
    outside = tmp_path / "BtoA.data"
    shutil.move(data, outside)
    match = "outside the export folder|not a file name inside the export folder"
    if case == "parent":
        set_locations(folder / "BtoA.onnx", "../BtoA.data")
    elif case == "absolute":
        set_locations(folder / "BtoA.onnx", str(outside))
    elif case == "symlink":
        data.symlink_to(outside)
    elif case == "memory_address":
        set_locations(folder / "BtoA.onnx", "*/_ORT_MEM_ADDR_/*")
        match = "a memory address"
    elif case == "missing":
        match = "BtoA.data, which is missing"
    else:
        shutil.move(outside, data)
        set_locations(folder / "BtoA.onnx", "BtoA.data", offset=data.stat().st_size - 4)
        match = "reads bytes .* refused"
    message = one_line_error(folder, tmp_path, photo, match)
    assert message.startswith(str((folder / "BtoA.onnx").resolve())) or str(folder / "BtoA.onnx") in message


# ----- outputs: the manifest's shape, finite values -------------------------------------------------
def fake_pix2pix_graph(path: Path, body: str, input_name: str = "image") -> None:
    """A graph with pix2pix's interface (image, dropout -> output) that misbehaves as `body` says."""
    image = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 3, "height", "width"])
    dropout = helper.make_tensor_value_info("dropout", TensorProto.FLOAT, [])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    inits = []
    if body == "nan":
        inits = [numpy_helper.from_array(np.array(np.nan, np.float32), "nan")]
        nodes = [helper.make_node("Mul", [input_name, "nan"], ["output"])]
    elif body == "flat":
        inits = [numpy_helper.from_array(np.array([-1], np.int64), "flat")]
        nodes = [helper.make_node("Reshape", [input_name, "flat"], ["output"])]
    elif body == "fails":  # 3 * 64 * 64 values do not reshape into rows of 7
        inits = [numpy_helper.from_array(np.array([-1, 7], np.int64), "rows")]
        nodes = [helper.make_node("Reshape", [input_name, "rows"], ["output"])]
    elif body == "upscale":
        inits = [numpy_helper.from_array(np.array([1, 1, 4, 4], np.float32), "scales")]
        nodes = [helper.make_node("Resize", [input_name, "", "scales"], ["output"], mode="nearest")]
    elif body == "grey":
        nodes = [helper.make_node("ReduceMean", [input_name], ["output"], axes=[1], keepdims=1)]
    else:
        nodes = [helper.make_node("Identity", [input_name], ["output"])]
    graph = helper.make_graph(nodes, "fake", [image, dropout], [output], inits)
    # IR version 8 goes with opset 17 (what torch writes): the installed onnx's newest may be beyond an older onnxruntime
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


@pytest.mark.parametrize(
    "body, match",
    [
        ("nan", r"graph 'BtoA' gave 12288 non-finite values \(NaN or Inf\) of 12288; nothing was written"),
        ("flat", r"graph 'BtoA' gave an output of shape \[12288\] where its manifest says \['batch', 3, 'height', 'width'\]"),
        ("upscale", r"gave an output of shape \[1, 3, 256, 256\] .* \(\[1, 3, 64, 64\] for these inputs\); refused before resizing"),
        ("grey", r"gave an output of shape \[1, 1, 64, 64\]"),
        ("fails", r"graph 'BtoA' failed in onnxruntime on inputs \{'image': \[1, 3, 64, 64\], 'dropout': \[\]\}"),
    ],
)
def test_a_graph_output_unlike_the_manifest_is_refused_naming_the_graph(exports, photo, tmp_path, body, match):
    folder = copy_export(exports, "pix2pix", tmp_path)
    fake_pix2pix_graph(folder / "BtoA.onnx", body)
    one_line_error(folder, tmp_path, photo, match)
    fake_pix2pix_graph(folder / "BtoA.onnx", "identity")  # the same graph, well-behaved, runs
    assert run_predict(folder, tmp_path / "ok", photo)["written"]


def test_a_graph_whose_inputs_differ_from_the_manifest_is_refused(exports, photo, tmp_path):
    folder = copy_export(exports, "pix2pix", tmp_path)
    fake_pix2pix_graph(folder / "BtoA.onnx", "identity", input_name="picture")
    one_line_error(
        folder, tmp_path, photo, r"the graph's inputs are \['dropout', 'picture'\], the manifest's graph 'BtoA' says \['image', 'dropout'\]"
    )
    dcgan = copy_export(exports, "dcgan", tmp_path)
    edit_manifest(dcgan, _set(["graphs", 0, "inputs", 0, "shape"], ["batch", 4096, 1, 1]))
    one_line_error(
        dcgan, tmp_path, None, r"input 'z' has shape \['batch', 100, 1, 1\] in the graph, \['batch', 4096, 1, 1\] in the manifest"
    )


@pytest.mark.parametrize("body", ["nan", "flat"])
def test_the_cli_prints_one_line_and_exits_2(exports, photo, tmp_path, body):
    folder = copy_export(exports, "pix2pix", tmp_path)
    fake_pix2pix_graph(folder / "BtoA.onnx", body)
    proc = run_cli([f"model={folder}", f"input={photo}", f"output={tmp_path / 'out'}"], script=PREDICT)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "graph 'BtoA'" in errors[0]
    assert "Traceback" not in proc.stderr and not list((tmp_path / "out").glob("*.png"))


def test_the_cli_refuses_a_manifest_that_points_outside(exports, photo, tmp_path):
    folder = copy_export(exports, "pix2pix", tmp_path)
    edit_manifest(folder, _set(["graphs", 0, "file"], str(exports["pix2pix"] / "BtoA.onnx")))
    proc = run_cli([f"model={folder}", f"input={photo}", f"output={tmp_path / 'out'}"], script=PREDICT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is not a file name inside the export folder" in proc.stderr


# ----- what an export records ----------------------------------------------------------------------
def test_the_manifest_names_the_checkpoint_by_file_name_and_hash(exports):
    folder = exports["pix2pix"]
    ckpt = folder.parent / "pix2pix.ckpt"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["checkpoint"] == "pix2pix.ckpt"
    assert manifest["checkpoint_sha256"] == file_sha256(ckpt)
    local = str(folder.parent)
    assert local not in (folder / "manifest.json").read_text()
    proto = onnx.load(str(folder / "BtoA.onnx"), load_external_data=False)
    assert all(local not in p.value for p in proto.metadata_props)


# ----- fuzzing ---------------------------------------------------------------------------------------
FUZZ = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, 1, 3, 7, 64, 8192, 8193, 10**6])
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["image", "z", "noise", "label", "AtoB", "../x.onnx", "/etc/passwd"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


def _paths(node, prefix=()):
    yield prefix
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from _paths(child, (*prefix, key))


def mutate(data, document):
    """One to three random edits of a JSON document: a value replaced, a key or an entry removed, a key added."""
    doc = copy.deepcopy(document)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        path = data.draw(st.sampled_from(paths))
        value = data.draw(JSON)
        if not path:
            return value
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        op = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if op == "delete":
            del parent[path[-1]]
        elif op == "add" and isinstance(parent, dict):
            parent[data.draw(st.text(max_size=10) | st.sampled_from(["file", "label_ids", "channels", "shape", "default"]))] = value
        else:
            parent[path[-1]] = value
    return doc


def exercise(model_path: Path, photo: Path, out: Path) -> None:
    """Load the export as ganforge-predict does, open every graph, and run it where that is cheap."""
    model = OnnxModel(model_path)
    for graph in model.graphs.values():
        model._session(graph)
    if model.image_graphs and model.input_size_multiple <= 64 and model.train_size <= 64:
        run_predict(model_path, out, photo)
    elif not model.needs_input:
        run_predict(model_path, out)


@pytest.mark.slow
@FUZZ
@given(data=st.data(), name=st.sampled_from(("pix2pix", "spade", "dcgan")))
def test_fuzzed_manifests_load_or_raise_one_ganforge_error(exports, photo, tmp_path_factory, data, name):
    folder = tmp_path_factory.mktemp("fuzz")
    for f in exports[name].glob("*.onnx"):
        os.link(f, folder / f.name)  # same file system, no copy
    manifest = mutate(data, json.loads((exports[name] / "manifest.json").read_text()))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    try:
        exercise(folder, photo, folder / "out")
        event("ran")
    except GanforgeError as e:
        event(type(e).__name__)


@pytest.mark.slow
@FUZZ
@given(data=st.data(), text=st.none() | st.text(max_size=40))
def test_fuzzed_graph_metadata_loads_or_raises_one_ganforge_error(exports, photo, tmp_path_factory, data, text):
    folder = tmp_path_factory.mktemp("fuzz")
    value = text if text is not None else json.dumps(mutate(data, _entry(exports)))
    lone = write_metadata(exports["cyclegan"] / "AtoB.onnx", folder / "AtoB.onnx", value)
    try:
        exercise(lone, photo, folder / "out")
        event("ran")
    except GanforgeError as e:
        event(type(e).__name__)
