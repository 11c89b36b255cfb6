"""Run a `ganforge-export` ONNX export with onnxruntime, numpy and PIL alone (no torch, no Lightning).

`OnnxModel` is what `ganforge-predict model=<file.onnx or export folder>` drives: the same hooks the
predict loop calls on a checkpoint's GAN (direction, input channels and size multiple, loading a file,
the named outputs of one input), so files, sizes and the error report are handled by the one loop
in ganforge.cli.predict. The pre- and post-processing are predict's: the 8-bit image resized (PIL bicubic)
to the network size, pixel / 127.5 - 1; the output resized back to the input's size with the bicubic
kernel of torch's `interpolate` (align_corners=False, A = -0.75), clamped, (x + 1) * 127.5, rounded.

Random inputs are drawn with numpy from `seed`, as the checkpoint's predict draws its latents
(`gans.base.seeded_normal`, `seeded_normals`): DCGAN's z, BicycleGAN's and SPADE's z and SinGAN's noise
pyramid give the checkpoint's images.

Nothing in an export is used unchecked (ganforge.export.manifest): the manifest or a lone file's metadata
is validated against the schema, every graph file and external-data file must lie inside the export
folder, each graph must take the inputs its manifest entry names, and each output must have the
manifest's shape and finite values before it is resized or written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ganforge.export import onnx_proto
from ganforge.export.manifest import (
    FIX,
    check_external_data,
    graph_file,
    input_dtype,
    read_json,
    read_manifest_file,
    validate_manifest,
)
from ganforge.utils.errors import ConfigError, ExportError
from ganforge.utils.imageio import LabelIds, load_image, load_label_ids, save_atomic

EXTRA_HINT = "install the export extra: pip install 'ganforge[export]' (or just onnxruntime)"
#: the keys of a graph's entry in its "ganforge" metadata; the others are the manifest's
GRAPH_KEYS = (
    "name",
    "file",
    "inputs",
    "output",
    "dynamic_axes",
    "direction",
    "generator_mode",
    "nz",
    "label_ids",
    "train_label_size",
    "fixed_size",
)
ORT_TYPES = {"float32": "tensor(float)", "int64": "tensor(int64)"}


def read_manifest(path: str | Path) -> tuple[dict[str, Any], Path]:
    """(manifest, folder of the graph files) of an export folder or of one .onnx file (its metadata),
    validated against the schema in ganforge.export.manifest."""
    path = Path(path)
    if path.is_dir():
        file = path / "manifest.json"
        if not file.is_file():
            raise ConfigError(
                f"model={path} is a folder without manifest.json; give a folder written by ganforge-export or one .onnx file of it"
            )
        manifest = read_manifest_file(file)
        if isinstance(manifest, dict) and manifest.get("format") in ("torchscript", "safetensors"):
            raise ConfigError(
                f"model={path} holds a {manifest['format']} export; ganforge-predict model= runs ONNX exports "
                "(export with format=onnx), a checkpoint runs with ckpt_path="
            )
        return _onnx_manifest(manifest, str(file)), path
    if not path.is_file():
        raise ConfigError(f"model={path} does not exist; give an .onnx file or a folder written by ganforge-export")
    try:
        props = onnx_proto.summarize(path).metadata
    except (ValueError, OSError) as e:
        raise ConfigError(f"model={path} is not an ONNX model ({type(e).__name__}: {e}); give a file written by ganforge-export") from None
    if "ganforge" not in props:
        raise ConfigError(
            f"model={path} is an ONNX model without ganforge's metadata (not written by ganforge-export), "
            "so its inputs and value range are unknown"
        )
    where = f"{path} (its ganforge metadata)"
    entry = read_json(props["ganforge"], where, "the metadata")
    if not isinstance(entry, dict):
        raise ExportError(f"{where}: the metadata must be a JSON object, got a {type(entry).__name__}. Fix: {FIX}")
    manifest = {k: v for k, v in entry.items() if k not in GRAPH_KEYS}
    manifest["graphs"] = [{k: entry[k] for k in GRAPH_KEYS if k in entry} | {"file": path.name}]
    return _onnx_manifest(manifest, where), path.parent


def _onnx_manifest(manifest: Any, where: str) -> dict[str, Any]:
    manifest = validate_manifest(manifest, where)
    if manifest["format"] != "onnx":
        raise ExportError(f"{where}: format must be 'onnx' for ganforge-predict model=, got {manifest['format']!r}. Fix: {FIX}")
    return manifest


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(f"ganforge-predict model=... needs onnxruntime, which is not installed; {EXTRA_HINT}") from None
    return onnxruntime


# ----- images <-> arrays, as ganforge.utils.imageio's image_to_tensor / tensor_to_image ------------------
def image_to_array(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """(1, C, h, w) float32 in [-1, 1] of an 8-bit image resized (bicubic) to size=(w, h)."""
    if img.size != tuple(size):
        img = img.resize(tuple(size), Image.Resampling.BICUBIC)
    a = np.asarray(img, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    return (a.transpose(2, 0, 1) / np.float32(127.5) - np.float32(1.0))[None]


def _cubic(t: float, a: float = -0.75) -> list[float]:
    """The weights of the four taps at offsets -1, 0, 1, 2 (torch's upsample_bicubic2d)."""

    def near(x):
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    m = np.zeros((n_out, n_in), dtype=np.float32)
    scale = n_in / n_out
    for i in range(n_out):
        src = scale * (i + 0.5) - 0.5
        f = math.floor(src)
        for k, w in zip(range(-1, 3), _cubic(src - f)):
            m[i, min(max(f + k, 0), n_in - 1)] += w
    return m


def array_to_image(x: np.ndarray, size: tuple[int, int] | None = None) -> Image.Image:
    """One (C, h, w) output in [-1, 1] -> an 8-bit PIL image, resized (bicubic) to size=(w, h) if given."""
    x = np.asarray(x, dtype=np.float32)
    if size is not None and (x.shape[-1], x.shape[-2]) != tuple(size):
        rows, cols = _resize_matrix(x.shape[-2], size[1]), _resize_matrix(x.shape[-1], size[0])
        # two matrix products: a three-operand einsum loops over all four sizes at once
        x = rows @ x @ cols.T
    a = np.round((np.clip(x, -1, 1) + 1) * np.float32(127.5)).astype(np.uint8).transpose(1, 2, 0)
    return Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)


def grid_image(images: list[Image.Image], nrow: int, padding: int = 2) -> Image.Image:
    """torchvision's make_grid layout (white padding) of equally sized images."""
    w, h = images[0].size
    ncol = min(nrow, len(images))
    nrows = math.ceil(len(images) / nrow)
    grid = Image.new(images[0].mode, (ncol * (w + padding) + padding, nrows * (h + padding) + padding), "white")
    for i, im in enumerate(images):
        grid.paste(im, (padding + (i % nrow) * (w + padding), padding + (i // nrow) * (h + padding)))
    return grid


class OnnxModel:
    """An ONNX export as ganforge-predict's loop sees a model (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        _ort()
        self.manifest, self.folder = read_manifest(self.path)
        self.graphs = {g["name"]: g for g in self.manifest["graphs"]}
        self.files = {name: self._checked_file(g) for name, g in self.graphs.items()}
        self._sessions: dict[str, Any] = {}

    def _checked_file(self, graph: dict) -> Path:
        """The graph's file, inside the export folder, and every external-data file it names inside its folder."""
        file = graph_file(self.folder, graph, f"model={self.path}")
        try:
            external = onnx_proto.summarize(file).external
        except (ValueError, OSError) as e:
            raise ExportError(f"{file} (graph {graph['name']!r}) is not an ONNX model ({type(e).__name__}: {e}). Fix: {FIX}") from None
        check_external_data(file, external)
        return file

    # ----- what the predict loop reads --------------------------------------------------------------
    @property
    def image_graphs(self) -> dict[str, dict]:
        """The graphs that translate an image, by direction."""
        return {g["direction"]: g for g in self.graphs.values() if g.get("direction") and g["inputs"][0]["kind"] == "image"}

    @property
    def needs_input(self) -> bool:
        return any(g["inputs"][0]["kind"] in ("image", "label") for g in self.graphs.values())

    @property
    def input_size_multiple(self) -> int:
        return int(self.manifest.get("input_size_multiple", 1))

    @property
    def train_size(self) -> int:
        return int(self.manifest.get("train_size", 256))

    @property
    def label_graph(self) -> dict | None:
        """SPADE's G on label ids, if this is such an export."""
        return next((g for g in self.graphs.values() if g["inputs"][0]["kind"] == "label"), None)

    def predict_direction(self, opts: Mapping) -> str:
        if self.label_graph is not None:
            if opts.get("direction") not in (None, "AtoB"):
                raise ConfigError(f"direction must be AtoB for a label-map export, got {opts.get('direction')!r}")
            return "AtoB"
        found = self.image_graphs
        wanted = opts.get("direction")
        if wanted is None:
            return next(iter(found))
        if wanted not in found:
            raise ConfigError(f"direction must be {' or '.join(found)} for model={self.path} (the directions it exports), got {wanted!r}")
        return wanted

    def predict_load(self, path: Path, opts: Mapping) -> Image.Image:
        label = self.label_graph
        if label is not None:  # as SPADEModel.predict_load: stored ids converted as the training data
            ids = LabelIds(**label["label_ids"]).convert(load_label_ids(path), Path(path))
            return Image.fromarray(ids.astype(np.int32), "I")
        return load_image(path, channels=int(self.image_graphs[self.predict_direction(opts)]["inputs"][0]["channels"]))

    def predict_images(self, img: Image.Image, size: tuple[int, int], orig: tuple[int, int], opts: Mapping) -> dict[str, list[Image.Image]]:
        """Named outputs of one input image at the network size `size`, resized back to `orig`."""
        if self.label_graph is not None:
            return self._label_images(img, size, orig, opts)
        direction = self.predict_direction(opts)
        graph = self.image_graphs[direction]
        x = image_to_array(img, size)
        extra = {i["name"] for i in graph["inputs"][1:]}
        out: dict[str, list[np.ndarray]] = {}
        if "z" in extra:
            for suffix, z in self._codes(graph, x, opts).items():
                out[suffix] = [self._run(graph, image=x, z=z)[0]]
        else:
            first = self._run(graph, image=x, **self._flags(graph, opts))
            out[""] = [first[0]]
            if opts.get("reconstruct"):
                back = "BtoA" if direction == "AtoB" else "AtoB"
                if back not in self.image_graphs:
                    raise ConfigError(f"reconstruct=true needs the {back} graph, which model={self.path} does not have")
                out["_rec"] = [self._run(self.image_graphs[back], image=first)[0]]
        return {k: [array_to_image(o, orig) for o in v] for k, v in out.items()}

    def _label_images(self, img: Image.Image, size: tuple[int, int], orig: tuple[int, int], opts: Mapping) -> dict[str, list[Image.Image]]:
        """SPADE: as SPADEModel.predict_tensor / predict_outputs (label ids resized NEAREST; with the VAE,
        n_samples codes from numpy, `<stem>_<k>` when more than one)."""
        graph = self.label_graph
        train = tuple(graph["train_label_size"])
        if graph["fixed_size"] or tuple(size) == (train[0], train[0]):
            size = train
        ids = np.asarray(img.resize(tuple(size), Image.Resampling.NEAREST), dtype=np.int64)[None, None]
        if opts.get("style"):
            raise ConfigError("style= encodes with SPADE's E, which the export does not include; predict from the checkpoint")
        if len(graph["inputs"]) == 1:
            return {"": [array_to_image(self._run(graph, label=ids)[0], orig)]}
        n = int(opts.get("n_samples", 1))
        if n < 1:
            raise ConfigError(f"n_samples must be >= 1, got {n}")
        self._session(graph)  # the graph takes the z the manifest sizes, checked before drawing it
        zs = np.random.default_rng(int(opts.get("seed", 0))).standard_normal((n, *graph["inputs"][1]["shape"][1:])).astype(np.float32)
        outs = {f"_{k}": [array_to_image(self._run(graph, label=ids, z=zs[k : k + 1])[0], orig)] for k in range(n)}
        return {"": outs["_0"]} if n == 1 else outs

    def write_samples(self, opts: Mapping, out_dir: Path) -> list[Path]:
        """Samples of a noise-only export (DCGAN's G(z), SinGAN's pyramid): `num_samples` images from
        N(0, 1) inputs drawn with numpy from `seed`, `sample_NNNN.png`, and their grid `grid.png`."""
        graph = next(iter(self.graphs.values()))
        n, seed = int(opts.get("num_samples") or 0), int(opts.get("seed") or 0)
        if n < 1:
            raise ConfigError(f"num_samples must be >= 1, got {opts.get('num_samples')}")
        self._session(graph)  # the graph takes the noise the manifest sizes, checked before drawing it
        rng = np.random.default_rng(seed)
        feeds = {i["name"]: rng.standard_normal((n, *i["shape"][1:])).astype(np.float32) for i in graph["inputs"]}
        images = [array_to_image(o) for o in self._run(graph, **feeds)]
        written = [save_atomic(im, out_dir / f"sample_{k:04d}.png") for k, im in enumerate(images)]
        if opts.get("grid", True):
            written.append(save_atomic(grid_image(images, math.ceil(math.sqrt(n))), out_dir / "grid.png"))
        return written

    # ----- running graphs -------------------------------------------------------------------------
    def _session(self, graph: dict):
        if graph["name"] not in self._sessions:
            ort = _ort()
            file = self.files[graph["name"]]
            try:
                options = ort.SessionOptions()
                options.log_severity_level = 4  # its errors reach the user as one ganforge message, not a log line too
                session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
            except Exception as e:  # noqa: BLE001 - onnxruntime raises its own kinds for an unreadable model
                raise ConfigError(f"{file} cannot be loaded by onnxruntime ({type(e).__name__}: {_first_line(e)})") from None
            self._check_session(graph, session, file)
            self._sessions[graph["name"]] = session
        return self._sessions[graph["name"]]

    @staticmethod
    def _check_session(graph: dict, session, file: Path) -> None:
        """The graph in the file takes and gives what the manifest says: input names, types and fixed sizes."""
        found = {i.name: i for i in session.get_inputs()}
        if set(found) != {s["name"] for s in graph["inputs"]}:
            raise ExportError(
                f"{file}: the graph's inputs are {sorted(found)}, the manifest's graph {graph['name']!r} "
                f"says {[s['name'] for s in graph['inputs']]}. Fix: {FIX}"
            )
        for spec in graph["inputs"]:
            got, want = found[spec["name"]], ORT_TYPES[input_dtype(spec["kind"])]
            if got.type != want:
                raise ExportError(f"{file}: input {spec['name']!r} is {got.type} in the graph, {want} in the manifest. Fix: {FIX}")
            if len(got.shape) != len(spec["shape"]) or any(
                isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(got.shape, spec["shape"])
            ):
                raise ExportError(
                    f"{file}: input {spec['name']!r} has shape {list(got.shape)} in the graph, {spec['shape']} in the manifest. Fix: {FIX}"
                )
        outputs = [o.name for o in session.get_outputs()]
        if outputs[:1] != [graph["output"]["name"]]:
            raise ExportError(f"{file}: the graph's outputs are {outputs}, the manifest says {graph['output']['name']!r} first. Fix: {FIX}")

    def _run(self, graph: dict, **feeds: np.ndarray) -> np.ndarray:
        """The graph's output for `feeds`, checked against the manifest before anything is resized or written."""
        session = self._session(graph)
        try:
            out = session.run(None, feeds)[0]
        except Exception as e:  # noqa: BLE001 - onnxruntime's error kinds differ between versions
            shapes = {k: list(np.shape(v)) for k, v in feeds.items()}
            raise ExportError(
                f"model={self.path}: graph {graph['name']!r} failed in onnxruntime on inputs {shapes} "
                f"({type(e).__name__}: {_first_line(e)})"
            ) from None
        self._check_output(graph, out, feeds)
        return out

    def _check_output(self, graph: dict, out: Any, feeds: Mapping[str, np.ndarray]) -> None:
        """Shape as the manifest says (a named dimension takes its size from the input that has it) and finite values."""
        where = f"model={self.path}: graph {graph['name']!r}"
        spec = graph["output"]["shape"]
        if not isinstance(out, np.ndarray) or out.dtype != np.float32:
            raise ExportError(f"{where} gave {getattr(out, 'dtype', type(out).__name__)} values, not float32; refused. Fix: {FIX}")
        sizes: dict[str, int] = {}
        for inp in graph["inputs"]:
            for dim, n in zip(inp["shape"], feeds[inp["name"]].shape):
                if isinstance(dim, str):
                    sizes.setdefault(dim, n)
        expected = [sizes[d] if isinstance(d, str) else d for d in spec]
        if list(out.shape) != expected:
            raise ExportError(
                f"{where} gave an output of shape {list(out.shape)} where its manifest says {spec} "
                f"({expected} for these inputs); refused before resizing or writing it. Fix: {FIX}"
            )
        finite = np.isfinite(out)
        if not finite.all():
            raise ExportError(
                f"{where} gave {out.size - int(finite.sum())} non-finite values (NaN or Inf) of {out.size}; "
                "nothing was written for this input. The graph's weights are broken: export again from a "
                "checkpoint whose weights are finite"
            )

    def _flags(self, graph: dict, opts: Mapping) -> dict[str, np.ndarray]:
        """pix2pix's `dropout` input: `test_dropout` (null: the export's default, the reference's dropout on)."""
        flags = {}
        for spec in graph["inputs"][1:]:
            if spec["kind"] == "flag":
                on = opts.get("test_dropout")
                flags[spec["name"]] = np.array(float(spec.get("default", 1.0)) if on is None else float(bool(on)), dtype=np.float32)
        return flags

    def _codes(self, graph: dict, x: np.ndarray, opts: Mapping) -> dict[str, np.ndarray]:
        """BicycleGAN's z per output: `<stem>_<k>` from n_samples numpy N(0, 1) codes, or `<stem>_0` from E's code of `z_from`."""
        n, z_from = int(opts.get("n_samples", 1)), opts.get("z_from")
        if n < 1:
            raise ConfigError(f"n_samples must be >= 1, got {n}")
        if opts.get("interp") is not None:
            raise ConfigError("interp= runs from the checkpoint (ckpt_path=); an ONNX export predicts n_samples or z_from")
        z_shape = next(i for i in graph["inputs"] if i["kind"] == "z")["shape"][1:]
        if z_from:
            if n > 1:
                raise ConfigError("z_from gives one code per input: drop n_samples (or use n_samples=1)")
            if "E" not in self.graphs:
                raise ConfigError(f"z_from needs the encoder graph E, which model={self.path} does not have")
            spec = self.graphs["E"]["inputs"][0]
            try:
                style = load_image(z_from, channels=int(spec["channels"]))
            except Exception as e:  # noqa: BLE001 - ImageFileError names the file
                raise ConfigError(f"z_from={z_from}: {e}") from None
            code = self._run(self.graphs["E"], image=image_to_array(style, (x.shape[-1], x.shape[-2])))
            return {"_0": code.astype(np.float32)}
        self._session(graph)
        rng = np.random.default_rng(int(opts.get("seed", 0)))
        zs = rng.standard_normal((n, *z_shape)).astype(np.float32)
        return {f"_{k}": zs[k : k + 1] for k in range(n)}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__
