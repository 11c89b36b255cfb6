"""`ganforge-export ckpt_path=<ckpt or model folder> output=<folder> format=onnx|torchscript|safetensors|pretrained`.

`format=pretrained` writes the portable model folder (`model.safetensors`, `config.json`, `README.md`) that
`ganforge.load` and huggingface_hub read. The other formats:

Each network a model names in `export_graphs` (pix2pix: its direction; the CycleGAN family: AtoB and
BtoA; BicycleGAN: G(image, z) and E; SPADE: G(label ids[, z]); DCGAN: G(z); SinGAN: the whole
pyramid with its noises as inputs) becomes one file, beside `manifest.json` (model, direction,
inputs and outputs, input size multiple, channels, normalisation, ganforge version).

* ONNX: the TorchScript-based `torch.onnx.export` (on torch 2.14 it exports every model here with plain
  named dynamic axes; docs/export.md says what was tried with the dynamo one), opset >= 17, a dynamic
  batch axis and dynamic H and W for fully convolutional Gs; the manifest entry of each graph is also in
  its metadata_props ("ganforge"), so a lone .onnx file runs.
* Every ONNX and TorchScript file is checked at export: its output for random inputs (a second batch size
  and, for dynamic H/W, a second size too) may differ from PyTorch's by at most `tolerance`, else the
  export fails and the file is removed.
* safetensors: the generators' weights, each with its net config in the file's metadata.
The graphs come from the inference model (`ganforge.load`), so an export never needs Lightning's checkpoint code.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any, cast

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

import ganforge
from ganforge.cli.app import entry_point
from ganforge.export.manifest import file_sha256, validate_manifest
from ganforge.models import ExportGraph, InferenceModel, load
from ganforge.nets.registry import net_config
from ganforge.utils.errors import ConfigError, ExportError

log = logging.getLogger("ganforge.cli.export")

FORMATS = ("onnx", "torchscript", "safetensors", "pretrained")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}
MIN_OPSET = 17
EXTRA_HINT = "install the export extra: pip install 'ganforge[export]'"


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(f"format needs the {module} package, which is not installed; {EXTRA_HINT}") from None


def export(cfg: DictConfig) -> dict[str, Any]:
    """Write the files and the manifest; returns the manifest."""
    fmt = str(cfg.get("format") or "onnx")
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    opset = int(cfg.get("opset") or MIN_OPSET)
    if opset < MIN_OPSET:
        raise ConfigError(f"opset={opset}: ganforge exports with opset >= {MIN_OPSET}")
    model = load(cfg.ckpt_path, use_ema=bool(cfg.get("use_ema", True)))
    opts = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))  # a DictConfig gives a dict
    out_dir = Path(cfg.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "pretrained":
        model.save_pretrained(out_dir)
        Console().print(f"Wrote the {model.model_name} model folder {out_dir} (model.safetensors, config.json, README.md)")
        return model.config_dict()
    spec = model.spec
    multiple = int(getattr(model, "size_multiple", 1))
    in_nc, out_nc = int(getattr(spec, "input_nc", 3)), int(getattr(spec, "output_nc", 3))
    manifest: dict[str, Any] = {
        "ganforge_version": ganforge.__version__,
        "model": model.model_name,
        "format": fmt,
        # the file name and its hash, not its path: an export is meant to be shared, a local path is not
        "checkpoint": Path(str(cfg.ckpt_path)).name,
        "checkpoint_sha256": file_sha256(_weights_file(Path(str(cfg.ckpt_path)))),
        "use_ema": bool(cfg.get("use_ema", True)),
        "input_size_multiple": multiple,
        "train_size": int(getattr(spec, "train_size", None) or getattr(model, "train_size", (256,))[0]),
        "channels": {"A": in_nc, "B": out_nc},
        "normalisation": "images in [-1, 1]: pixel / 127.5 - 1 in, (output + 1) * 127.5 out (clamped, rounded)",
        "needs_input": type(model).__name__ not in ("DCGANModel", "SinGANModel"),
        "graphs": [],
    }
    if fmt == "onnx":
        manifest["opset"] = opset
    tolerance = float(cfg.get("tolerance", 1e-4))
    seed = int(cfg.get("seed") or 0)
    if fmt == "safetensors":
        manifest["graphs"] = [_export_safetensors(model, name, out_dir) for name, _ in model.named_children()]
    else:
        for graph in model.export_graphs(opts):
            graph.module.eval()  # the exporter restores the mode it found, and a new wrapper is in train mode
            path = out_dir / f"{graph.name}{SUFFIX[fmt]}"
            entry = _graph_entry(graph, path.name)
            try:
                if fmt == "onnx":
                    _export_onnx(graph, path, opset, {**_lone_file_meta(manifest), **entry})
                    diff = _check_parity(graph, _onnx_runner(path), tolerance, seed, path, multiple)
                else:
                    _export_torchscript(graph, path, {**_lone_file_meta(manifest), **entry})
                    diff = _check_parity(graph, _torchscript_runner(path), tolerance, seed, path, multiple)
            except ExportError:
                path.unlink(missing_ok=True)
                raise
            entry["parity_max_abs_diff"] = diff
            manifest["graphs"].append(entry)
    if fmt == "onnx":  # what ganforge-predict model= will accept (ganforge.export.manifest)
        validate_manifest(manifest, str(out_dir / "manifest.json"))
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    _print_summary(manifest, out_dir, tolerance)
    return manifest


def _weights_file(source: Path) -> Path:
    """The file whose hash identifies the exported weights: the checkpoint, or a model folder's safetensors."""
    return source / "model.safetensors" if source.is_dir() else source


def _lone_file_meta(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k != "graphs"}


def _graph_entry(graph: ExportGraph, file: str) -> dict[str, Any]:
    return {
        "name": graph.name,
        "file": file,
        "inputs": graph.inputs,
        "output": graph.output,
        "dynamic_axes": {k: {str(a): n for a, n in v.items()} for k, v in graph.dynamic.items()},
        **graph.meta,
    }


# ----- ONNX ----------------------------------------------------------------------------------------
def _export_onnx(graph: ExportGraph, path: Path, opset: int, meta: dict) -> None:
    onnx = _require("onnx")
    _require("onnxruntime")
    input_names = [i["name"] for i in graph.inputs]
    output_name = graph.output["name"]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings of the size checks, the exporter's deprecation notice
        torch.onnx.export(
            graph.module,
            graph.example_inputs,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=input_names,
            output_names=[output_name],
            dynamic_axes=graph.dynamic,
            do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    props = {
        "ganforge": json.dumps(meta),
        "input_names": ",".join(input_names),
        "output_names": output_name,
        "value_range": json.dumps({i["name"]: i.get("range") for i in [*graph.inputs, graph.output] if i.get("range")}),
    }
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "ganforge"
    proto.producer_version = ganforge.__version__
    onnx.save(proto, str(path))


def _onnx_runner(path: Path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(*inputs: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0])

    return run


# ----- TorchScript -----------------------------------------------------------------------------------
def _export_torchscript(graph: ExportGraph, path: Path, meta: dict) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph.module, graph.example_inputs, check_trace=False)
        # torch 2.14 marks torch.jit deprecated (in favour of torch.export); it still writes and reads .pt graphs
        torch.jit.save(traced, str(path), _extra_files={"ganforge.json": json.dumps(meta)})


def _torchscript_runner(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu")

    def run(*inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(*inputs)

    return run


# ----- the parity check --------------------------------------------------------------------------------
def _parity_inputs(graph: ExportGraph, gen: torch.Generator, multiple: int) -> list[tuple[torch.Tensor, ...]]:
    """Random inputs like the example ones: at the example shapes, at batch 2, and (dynamic H/W) at a
    second size (the example's plus one input size multiple in H, two in W). A `dropout` flag is 0:
    the masks are random by design, everything else must agree."""
    shapes = [tuple(t.shape) for t in graph.example_inputs]
    variants = [shapes, [(2, *s[1:]) if s else s for s in shapes]]
    first = graph.inputs[0]["name"]
    if 2 in graph.dynamic.get(first, {}) and len(shapes[0]) == 4:
        step = max(1, multiple)
        variants.append([(1, s[1], s[2] + step, s[3] + 2 * step) if len(s) == 4 else ((1, *s[1:]) if s else s) for s in shapes])
    out = []
    for variant in variants:
        tensors = []
        for spec, example, shape in zip(graph.inputs, graph.example_inputs, variant):
            if spec["kind"] == "flag":
                tensors.append(torch.tensor(0.0))
            elif example.dtype == torch.int64:
                tensors.append(torch.randint(0, int(spec.get("classes", 2)), shape, generator=gen))
            elif spec["kind"] in ("image", "style"):
                tensors.append(torch.rand(shape, generator=gen) * 2 - 1)
            else:
                tensors.append(torch.randn(shape, generator=gen))
        out.append(tuple(tensors))
    return out


def _check_parity(graph: ExportGraph, run, tolerance: float, seed: int, path: Path, multiple: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for inputs in _parity_inputs(graph, gen, multiple):
        with torch.no_grad():
            expected = graph.module(*inputs)
        got = run(*inputs)
        if got.shape != expected.shape:
            raise ExportError(
                f"{path}: the exported graph gives shape {tuple(got.shape)} for inputs "
                f"{[tuple(t.shape) for t in inputs]}, PyTorch {tuple(expected.shape)}"
            )
        diff = float((got.float() - expected.float()).abs().max())
        worst = max(worst, diff)
        if not diff <= tolerance:
            raise ExportError(
                f"{path}: parity check failed: max |exported - PyTorch| = {diff:.3g} > tolerance={tolerance:g} "
                f"for inputs {[tuple(t.shape) for t in inputs]}; the file was removed"
            )
    return worst


# ----- safetensors ----------------------------------------------------------------------------------------
def _export_safetensors(model: InferenceModel, name: str, out_dir: Path) -> dict[str, Any]:
    _require("safetensors")
    from safetensors.torch import load_file, save_file

    net = getattr(model, name)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    net_cfg = [net_config(g, f"{name}[{i}]") for i, g in enumerate(net)] if isinstance(net, torch.nn.ModuleList) else net_config(net, name)
    meta = {"ganforge_version": ganforge.__version__, "model": model.model_name, "net": name, "net_config": json.dumps(net_cfg)}
    path = out_dir / f"{name}.safetensors"
    save_file(state, str(path), metadata=meta)
    back = load_file(str(path))
    bad = sorted(k for k in state if k not in back or not torch.equal(back[k], state[k]))
    if bad or set(back) != set(state):
        path.unlink(missing_ok=True)
        raise ExportError(f"{path}: the written weights do not read back equal ({len(bad)} differ, e.g. {bad[:3]})")
    return {
        "name": name,
        "file": path.name,
        "tensors": len(state),
        "parameters": int(sum(v.numel() for v in state.values())),
        "net_config": net_cfg,
    }


def _print_summary(manifest: dict, out_dir: Path, tolerance: float) -> None:
    table = Table(title=f"{manifest['model']} -> {out_dir} ({manifest['format']})")
    table.add_column("file")
    table.add_column("inputs")
    table.add_column("parity (max abs diff)")
    for g in manifest["graphs"]:
        inputs = ", ".join(f"{i['name']}{list(i['shape'])}" for i in g.get("inputs", [])) or f"{g.get('tensors')} tensors"
        diff = g.get("parity_max_abs_diff")
        table.add_row(g["file"], inputs, "read back equal" if diff is None else f"{diff:.2e} <= {tolerance:g}")
    Console().print(table)
    print(f"Manifest: {out_dir / 'manifest.json'}")


@entry_point("export")
def main(cfg: DictConfig) -> None:
    export(cfg)
