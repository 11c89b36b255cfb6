"""`InferenceModel.compile()` and `ganforge-predict compile=true`: the same images as eager (the same dropout masks
from the same seed), the weights frozen only where nothing trains them, and one line where no C++ compiler is."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge.models.base import running
from tests.conftest import PREDICT, SHARED_DATA, run_cli
from tests.test_models import LABEL, PHOTO, golden_checkpoint

pytestmark = pytest.mark.slow


def outputs(model, name: str):
    """Each family's main method, seeded where it draws (pix2pix: test dropout, whose masks the seed fixes)."""
    if name in ("singan", "dcgan"):
        return model.sample(2, seed=3, output_type="tensor")
    if name == "spade":
        return model.synthesize(Image.open(LABEL), seed=3)
    return model.translate(Image.open(PHOTO), **({"seed": 3} if name in ("pix2pix", "bicyclegan") else {}))


@pytest.mark.parametrize("name", ["pix2pix", "cyclegan", "bicyclegan", "spade", "dcgan", "singan"])
def test_compiled_model_gives_eager_outputs(tmp_path, name):
    # weights that keep activations near unit variance: in a net whose activations blow up (the untrained tiny SPADE at
    # 416x640) float rounding alone flips a few saturated outputs from -1 to 1
    ckpt = golden_checkpoint(name, tmp_path)
    eager, compiled = ganforge.load(ckpt), ganforge.load(ckpt)
    compiled.compile()
    keys = set(compiled.state_dict())
    a, b = outputs(eager, name), outputs(compiled, name)
    if isinstance(a, Image.Image):  # uint8: one grey level of float32 rounding
        a, b = torch.from_numpy(np.asarray(a, dtype=np.float32)), torch.from_numpy(np.asarray(b, dtype=np.float32))
        assert a.std() > 1  # not a constant image, which any dropout masks would give
        torch.testing.assert_close(b, a, atol=1.0, rtol=0)
    else:
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0)
    assert set(compiled.state_dict()) == keys  # compiled in place: the folder format is the same
    compiled.save_pretrained(tmp_path / "folder")
    assert ganforge.load(tmp_path / "folder").model_name == name


def test_only_nets_compiled_for_inference_are_frozen():
    """A training module's nets (compile=true) change every step: their inference calls must see the new weights."""
    net = torch.nn.Conv2d(3, 3, 3)
    net.compile()
    x = torch.randn(1, 3, 8, 8)
    with running(net):
        before = net(x)
    with torch.no_grad():
        net.weight.add_(1)
    with running(net):
        after = net(x)
    torch.testing.assert_close(after, torch.nn.functional.conv2d(x, net.weight, net.bias))
    assert not torch.allclose(before, after)


def test_predict_compile_true(tmp_path, tiny_checkpoint):
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted((SHARED_DATA / "pix2pix_samples" / "facades_pairs").glob("*-targets.png"))[:2]:
        shutil.copy(p, src / p.name)
    outs = {}
    for flag in ("false", "true"):
        outs[flag] = tmp_path / f"out_{flag}"
        proc = run_cli([f"ckpt_path={tiny_checkpoint}", f"input={src}", f"output={outs[flag]}", f"compile={flag}"], script=PREDICT)
        assert proc.returncode == 0, proc.stderr[-2000:]
    for p in src.iterdir():
        with Image.open(outs["false"] / f"{p.stem}.png") as e, Image.open(outs["true"] / f"{p.stem}.png") as c:
            assert np.abs(np.asarray(e, dtype=int) - np.asarray(c, dtype=int)).max() <= 1

    # no C++ compiler for inductor: one line, exit 2, nothing written
    out = tmp_path / "no_compiler"
    proc = run_cli(
        [f"ckpt_path={tiny_checkpoint}", f"input={src}", f"output={out}", "compile=true"], script=PREDICT, env={"CXX": "/nonexistent/g++"}
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "compile=true" in proc.stderr and "C++ compiler" in proc.stderr
    assert not list(out.glob("*.png"))
