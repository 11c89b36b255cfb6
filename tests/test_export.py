"""ganforge-export and ganforge-predict model=<onnx>: every model's graphs, their parity with PyTorch,
dynamic shapes, the manifest, the predict round trip, and an environment without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

import ganforge
from ganforge.cli.app import CONF_DIR
from ganforge.cli.export import export
from ganforge.cli.predict import predict
from ganforge.export.runtime import array_to_image
from ganforge.utils.errors import ConfigError, ExportError
from tests.conftest import PAIRED_MINI, REPO, run_cli
from tests.export_helpers import tiny_checkpoint

PAIRS = PAIRED_MINI / "test"


def export_cfg(ckpt: Path, out: Path, **kw):
    cfg = OmegaConf.load(Path(CONF_DIR) / "export.yaml")
    for key in ("defaults", "hydra"):
        cfg.pop(key)
    cfg.ckpt_path, cfg.output = str(ckpt), str(out)
    for k, v in kw.items():
        cfg[k] = v
    return cfg


def predict_cfg(out: Path, **kw):
    cfg = OmegaConf.load(Path(CONF_DIR) / "predict.yaml")
    for key in ("defaults", "hydra"):
        cfg.pop(key)
    cfg.output = str(out)
    for k, v in kw.items():
        cfg[k] = v
    return cfg


EXPECTED_FILES = {
    "pix2pix": ["BtoA.onnx"],
    "cyclegan": ["AtoB.onnx", "BtoA.onnx"],
    "discogan": ["AtoB.onnx", "BtoA.onnx"],
    "dualgan": ["AtoB.onnx", "BtoA.onnx"],
    "bicyclegan": ["BtoA.onnx", "E.onnx"],
    "spade": ["G.onnx"],
    "dcgan": ["G.onnx"],
    "singan": ["pyramid.onnx"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_every_model_exports_to_onnx_within_the_parity_tolerance(tmp_path, name):
    manifest = export(export_cfg(tiny_checkpoint(tmp_path, name), tmp_path / "out"))
    files = [g["file"] for g in manifest["graphs"]]
    assert files == EXPECTED_FILES[name]
    for g in manifest["graphs"]:
        assert 0 <= g["parity_max_abs_diff"] <= 1e-4
        proto = onnx.load(str(tmp_path / "out" / g["file"]))
        assert proto.opset_import[0].version >= 17
        props = {p.key: p.value for p in proto.metadata_props}
        assert props["input_names"] == ",".join(i["name"] for i in g["inputs"])
        assert json.loads(props["ganforge"])["name"] == g["name"]
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["model"] and on_disk["ganforge_version"] and on_disk["input_size_multiple"] >= 1
    assert on_disk["normalisation"].startswith("images in [-1, 1]")


@pytest.mark.slow
def test_cyclegan_graphs_take_any_batch_and_size_and_match_the_generators(tmp_path):
    ckpt = tiny_checkpoint(tmp_path, "cyclegan")
    export(export_cfg(ckpt, tmp_path / "out"))
    model = ganforge.load(ckpt)
    x = torch.rand(3, 3, 44, 76) * 2 - 1  # neither the traced batch nor size
    for direction in ("AtoB", "BtoA"):
        sess = ort.InferenceSession(str(tmp_path / "out" / f"{direction}.onnx"))
        got = sess.run(None, {"image": x.numpy()})[0]
        assert np.abs(got - model.translate(x, direction).numpy()).max() <= 1e-4


@pytest.mark.slow
def test_pix2pix_reference_mode_graph_has_a_dropout_input(tmp_path):
    ckpt = tiny_checkpoint(tmp_path, "pix2pix")
    manifest = export(export_cfg(ckpt, tmp_path / "out"))
    assert manifest["graphs"][0]["generator_mode"] == "train"  # test_dropout=true: the reference test.py
    sess = ort.InferenceSession(str(tmp_path / "out" / "BtoA.onnx"))
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32) * 2 - 1
    off = [sess.run(None, {"image": x, "dropout": np.array(0, np.float32)})[0] for _ in range(2)]
    on = [sess.run(None, {"image": x, "dropout": np.array(1, np.float32)})[0] for _ in range(2)]
    assert np.array_equal(off[0], off[1])  # deterministic without dropout
    assert not np.allclose(on[0], on[1])  # random masks, as the reference
    # each image is normalised by its own statistics: image 0 alone gives the batch's first output
    alone = sess.run(None, {"image": x[:1], "dropout": np.array(0, np.float32)})[0]
    assert np.abs(alone - off[0][:1]).max() < 1e-5
    eval_manifest = export(export_cfg(ckpt, tmp_path / "eval", generator_mode="eval"))
    assert [i["name"] for i in eval_manifest["graphs"][0]["inputs"]] == ["image"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.load, deprecated in torch 2.14
def test_torchscript_and_safetensors_round_trip(tmp_path):
    ckpt = tiny_checkpoint(tmp_path, "bicyclegan")
    manifest = export(export_cfg(ckpt, tmp_path / "ts", format="torchscript"))
    assert [g["file"] for g in manifest["graphs"]] == ["BtoA.pt", "E.pt"]
    model = ganforge.load(ckpt)
    g = torch.jit.load(str(tmp_path / "ts" / "BtoA.pt"))
    x, z = torch.rand(2, 3, 64, 64) * 2 - 1, torch.randn(2, 8)
    assert torch.allclose(g(x, z), model.translate(x, z=z), atol=1e-5)

    from safetensors.torch import load_file, safe_open

    manifest = export(export_cfg(ckpt, tmp_path / "st", format="safetensors"))
    assert [g["file"] for g in manifest["graphs"]] == ["netG.safetensors", "netE.safetensors"]  # the inference model's nets
    weights = load_file(str(tmp_path / "st" / "netG.safetensors"))
    assert all(torch.equal(weights[k], v) for k, v in model.netG.state_dict().items())
    with safe_open(str(tmp_path / "st" / "netG.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["net_config"])["name"] == "UnetGenerator"


def test_a_failed_parity_check_fails_the_export_and_removes_the_file(tmp_path, monkeypatch):
    import ganforge.cli.export as ex

    real = ex._onnx_runner
    monkeypatch.setattr(ex, "_onnx_runner", lambda path: lambda *xs: real(path)(*xs) + 1e-3)
    with pytest.raises(ExportError, match="parity check failed"):
        export(export_cfg(tiny_checkpoint(tmp_path, "dcgan"), tmp_path / "out"))
    assert not (tmp_path / "out" / "G.onnx").exists()


def test_bad_options_and_files_give_one_clear_message(tmp_path):
    ckpt = tiny_checkpoint(tmp_path, "dcgan")
    with pytest.raises(ConfigError, match="format must be one of"):
        export(export_cfg(ckpt, tmp_path / "o", format="tflite"))
    with pytest.raises(ConfigError, match="opset >= 17"):
        export(export_cfg(ckpt, tmp_path / "o", opset=13))
    foreign = tmp_path / "other.onnx"
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])), str(foreign))
    with pytest.raises(ConfigError, match="without ganforge's metadata"):
        predict(predict_cfg(tmp_path / "p", model_path=str(foreign), input=str(PAIRS)))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 not a model")
    with pytest.raises(ConfigError, match="is not an ONNX model"):
        predict(predict_cfg(tmp_path / "p", model_path=str(junk), input=str(PAIRS)))


@pytest.mark.slow
def test_export_cli_on_a_file_that_is_no_checkpoint_prints_one_error(tmp_path):
    bad = tmp_path / "model.ckpt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    proc = run_cli([f"ckpt_path={bad}", f"output={tmp_path / 'o'}"], script=str(Path(sys.executable).parent / "ganforge-export"))
    assert proc.returncode == 2
    assert "is not a readable checkpoint" in proc.stderr and "Traceback" not in proc.stderr


def test_array_to_image_resizes_as_torch_bicubic():
    from ganforge.utils.imageio import tensor_to_image

    x = torch.rand(3, 16, 24) * 2.2 - 1.1
    for size in ((24, 16), (50, 37), (11, 7)):
        a = np.asarray(array_to_image(x.numpy(), size)).astype(int)
        b = np.asarray(tensor_to_image(x, size)).astype(int)
        assert np.abs(a - b).max() <= 1


def assert_onnx_predict_matches(tmp_path, ckpt, src, extra: dict) -> None:
    """ganforge-predict on the export writes the checkpoint's images (to 1 grey level, 99.9 % of values)."""
    a = predict(predict_cfg(tmp_path / "ckpt", ckpt_path=str(ckpt), input=str(src), **extra))
    b = predict(predict_cfg(tmp_path / "onnx", model_path=str(tmp_path / "exp"), input=str(src), **extra))
    assert len(a["written"]) == len(b["written"]) > 0 and not b["failed"]
    for pa, pb in zip(sorted(a["written"]), sorted(b["written"])):
        ia, ib = np.asarray(Image.open(pa)).astype(int), np.asarray(Image.open(pb)).astype(int)
        assert ia.shape == ib.shape
        assert (np.abs(ia - ib) <= 1).mean() >= 0.999


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,extra",
    [("pix2pix", {"pair": True, "test_dropout": False}), ("cyclegan", {"direction": "BtoA"}), ("discogan", {}), ("dualgan", {})],
)
def test_predict_on_an_onnx_export_matches_predict_on_the_checkpoint(tmp_path, name, extra):
    ckpt = tiny_checkpoint(tmp_path, name)
    export(export_cfg(ckpt, tmp_path / "exp", generator_mode="eval"))
    src = PAIRS if name == "pix2pix" else REPO.parent / "shared" / "data" / "horse2zebra_mini" / "testA"
    assert_onnx_predict_matches(tmp_path, ckpt, src, extra)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["spade", "bicyclegan"])
def test_predict_on_label_map_and_style_code_exports_matches_the_checkpoint(tmp_path, name):
    """SPADE without the VAE (deterministic) and BicycleGAN with z_from (E's code): the same images."""
    ckpt = tiny_checkpoint(tmp_path, name)
    export(export_cfg(ckpt, tmp_path / "exp"))
    shared = REPO.parent / "shared" / "data"
    if name == "spade":
        src, extra = shared / "coco_stuff_sample" / "val_label", {}
    else:
        src, extra = PAIRS, {"pair": True, "z_from": str(next(PAIRS.glob("*.jpg")))}
    assert_onnx_predict_matches(tmp_path, ckpt, src, extra)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, extra, opts",
    [
        ("dcgan", [], {"num_samples": 3, "seed": 5}),
        ("bicyclegan", [], {"pair": True, "n_samples": 2, "seed": 5}),
        ("spade", ["model.use_vae=true", "model.netE.load_size=32"], {"n_samples": 2, "seed": 5}),
    ],
)
def test_random_latents_of_an_export_are_the_checkpoints(tmp_path, name, extra, opts):
    """predict draws z with numpy from `seed` in both runtimes, so an export writes the checkpoint's samples."""
    ckpt = tiny_checkpoint(tmp_path, name, extra)
    export(export_cfg(ckpt, tmp_path / "exp"))
    shared = REPO.parent / "shared" / "data"
    src = {"dcgan": None, "bicyclegan": PAIRS, "spade": shared / "coco_stuff_sample" / "val_label"}[name]
    args = {**opts, **({"input": str(src)} if src else {})}
    a = predict(predict_cfg(tmp_path / "ckpt", ckpt_path=str(ckpt), **args))
    b = predict(predict_cfg(tmp_path / "onnx", model_path=str(tmp_path / "exp"), **args))
    assert sorted(Path(p).name for p in a["written"]) == sorted(Path(p).name for p in b["written"]) and a["written"]
    for pa, pb in zip(sorted(a["written"]), sorted(b["written"])):
        ia, ib = np.asarray(Image.open(pa)).astype(int), np.asarray(Image.open(pb)).astype(int)
        assert ia.shape == ib.shape and (np.abs(ia - ib) <= 1).mean() >= 0.999, pa


@pytest.mark.slow
def test_singan_samples_of_an_export_are_the_checkpoints(tmp_path):
    """app=samples draws the noise pyramid with numpy from `seed`, scale by scale, as the runtime feeds the
    export's noise_0..noise_N: both write the same samples, and another seed writes others."""
    ckpt = tiny_checkpoint(tmp_path, "singan")
    # N(0, 0.02) init leaves the output constant whatever the noise: He-scaled weights make it respond
    state = torch.load(ckpt, weights_only=True)
    gen = torch.Generator().manual_seed(0)
    for k, v in state["state_dict"].items():
        if k.startswith("netG.") and k.endswith("weight") and v.dim() == 4:
            state["state_dict"][k] = torch.randn(v.shape, generator=gen) * (2.0 / v[0].numel()) ** 0.5
    torch.save(state, ckpt)
    export(export_cfg(ckpt, tmp_path / "exp"))
    a = predict(predict_cfg(tmp_path / "ckpt", ckpt_path=str(ckpt), app="samples", num_samples=3, seed=5, sifid=False))
    predict(predict_cfg(tmp_path / "onnx", model_path=str(tmp_path / "exp"), num_samples=3, seed=5))
    c = predict(predict_cfg(tmp_path / "other", ckpt_path=str(ckpt), app="samples", num_samples=1, seed=6, sifid=False))
    names = [f"sample_{k:04d}.png" for k in range(3)]
    assert sorted(Path(p).name for p in a["written"]) == names
    pixels = {d: [np.asarray(Image.open(tmp_path / d / n)).astype(int) for n in names] for d in ("ckpt", "onnx")}
    for ia, ib in zip(pixels["ckpt"], pixels["onnx"]):
        assert ia.shape == ib.shape and (np.abs(ia - ib) <= 1).mean() >= 0.999
    assert np.abs(pixels["ckpt"][0] - pixels["ckpt"][1]).mean() > 1  # three samples, not one thrice
    other = np.asarray(Image.open(c["written"][0])).astype(int)
    assert np.abs(other - pixels["ckpt"][0]).mean() > 1


@pytest.mark.slow
def test_predict_samples_of_noise_exports(tmp_path):
    for name in ("dcgan", "singan"):
        export(export_cfg(tiny_checkpoint(tmp_path / name, name), tmp_path / name / "exp"))
        report = predict(predict_cfg(tmp_path / name / "p", model_path=str(tmp_path / name / "exp"), num_samples=3))
        assert sorted(Path(p).name for p in report["written"]) == ["grid.png", "sample_0000.png", "sample_0001.png", "sample_0002.png"]


BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('torch', 'torchvision', 'lightning', 'pytorch_lightning', 'torchmetrics'):
            raise ImportError(f'{name} is blocked in this test (a deploying user has no torch)')
sys.meta_path.insert(0, Block())
sys.argv = ['ganforge-predict', *sys.argv[1:]]
from ganforge.cli.predict import main
main()
"""


@pytest.mark.slow
def test_an_exported_pix2pix_runs_without_torch_or_lightning(tmp_path):
    ckpt = tiny_checkpoint(tmp_path, "pix2pix")
    export(export_cfg(ckpt, tmp_path / "exp"))
    script = tmp_path / "no_torch_predict.py"
    script.write_text(BLOCK_TORCH)
    proc = subprocess.run(
        [sys.executable, str(script), f"model={tmp_path / 'exp' / 'BtoA.onnx'}", f"input={PAIRS}", "pair=true", f"output={tmp_path / 'p'}"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HYDRA_FULL_ERROR": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((tmp_path / "p").glob("*.png"))) == len(list(PAIRS.glob("*.jpg")))


@pytest.mark.slow
def test_use_ema_exports_the_averaged_generator(tmp_path):
    ckpt_path = tiny_checkpoint(tmp_path, "dcgan")
    ckpt = torch.load(ckpt_path, weights_only=True)
    g = {k.removeprefix("netG."): v for k, v in ckpt["state_dict"].items() if k.startswith("netG.")}
    ema = {f"module.{k}": (v + 0.05 if v.is_floating_point() else v) for k, v in g.items()}
    ckpt["callbacks"] = {"GeneratorEMA": {"nets": {"netG": {"n_averaged": torch.tensor(3), **ema}}}}
    torch.save(ckpt, ckpt_path)
    z = np.random.default_rng(0).standard_normal((2, 100, 1, 1)).astype(np.float32)
    outs = {}
    for flag in (True, False):
        manifest = export(export_cfg(ckpt_path, tmp_path / str(flag), use_ema=flag))
        assert manifest["use_ema"] is flag
        outs[flag] = ort.InferenceSession(str(tmp_path / str(flag) / "G.onnx")).run(None, {"z": z})[0]
    assert np.abs(outs[True] - outs[False]).max() > 1e-3
