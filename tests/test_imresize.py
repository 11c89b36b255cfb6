"""nets/imresize.py against the reference's `imresize` (tamarott/SinGAN SinGAN/imresize.py), value for value.

tests/fixtures/golden/imresize.safetensors holds the reference function's outputs on three small images
(a photo, a texture, a 0/255 checkerboard whose cubic overshoot gets clamped) by factors from 0.31 to 2
and to one size; tests/golden/make_singan.py made it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from ganforge.nets.imresize import from_levels, imresize, upsample_to

FIXTURE = Path(__file__).parent / "fixtures" / "golden" / "imresize.safetensors"


@pytest.fixture(scope="module")
def reference() -> tuple[dict[str, torch.Tensor], dict]:
    with safe_open(str(FIXTURE), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["meta"])


def image(ref, name: str) -> torch.Tensor:
    """The 8-bit image as the reference reads a file (np2torch): float32 in [-1, 1]."""
    return from_levels(ref[f"{name}/levels"].permute(2, 0, 1).unsqueeze(0).double())


def names(ref) -> list[str]:
    return sorted({k.split("/")[0] for k in ref})


@pytest.mark.reference
def test_equals_the_reference_on_every_image_factor_and_size(reference):
    ref, meta = reference
    assert len(names(ref)) == 3
    for name in names(ref):
        x = image(ref, name)
        for scale in meta["scales"]:
            expected = ref[f"{name}/scale_{scale!r}"]
            ours = imresize(x, scale)
            assert ours.shape == expected.shape and torch.equal(ours, expected), f"{name} by {scale}"
        ours = imresize(x, size=tuple(meta["size"]))
        assert torch.equal(ours, ref[f"{name}/size"]), f"{name} to {meta['size']}"


@pytest.mark.reference
def test_differs_from_torch_bicubic(reference):
    """What the reference's resize is not: torch's bicubic (a = -0.75, clamped borders, no 8-bit floor)."""
    ref, _ = reference
    x = image(ref, "balloons_23x17")
    expected = ref["balloons_23x17/scale_0.75"]
    bicubic = torch.nn.functional.interpolate(x, size=expected.shape[-2:], mode="bicubic", antialias=True).clamp(-1, 1)
    assert (bicubic - expected).abs().max() > 0.02


def test_the_8_bit_round_trip_floors():
    """A factor of 1 still goes through 8 bits, truncating: 0.999 of a level is the level below."""
    levels = torch.tensor([[[[0.0, 100.0, 254.0, 255.0]]]], dtype=torch.float64)
    x = from_levels(levels)
    assert torch.equal(imresize(x, 1.0), x)
    just_below = x - 0.9 / 255 * 2  # 0.9 of a level lower
    assert torch.equal(imresize(just_below, 1.0)[0, 0, 0, 1:], from_levels(levels - 1)[0, 0, 0, 1:])


def test_size_batch_dtype_and_the_step_between_scales():
    x = torch.rand(3, 3, 20, 27) * 2 - 1
    up = imresize(x, 1 / 0.75)
    assert up.shape[-2:] == (27, 36)  # ceil(20 / 0.75), ceil(27 / 0.75)
    for k in range(3):  # every sample as the reference resizes it alone
        assert torch.equal(up[k : k + 1], imresize(x[k : k + 1], 1 / 0.75))
    # float64 in, the reference's float32 values out, widened (its np2torch always makes float32)
    assert torch.equal(imresize(x.double(), 0.5), imresize(x, 0.5).double())
    # the next scale's input: upsampled by 1 / factor, the top-left corner of the next size kept
    assert torch.equal(upsample_to(x, 0.75, (26, 35)), up[..., :26, :35])
    with pytest.raises(ValueError, match="scale or a size"):
        imresize(x)


@pytest.mark.reference
def test_singan_apps_resize_their_input_as_the_reference_apps(reference):
    """harmonization.py, editing.py and paint2image.py take the given image to the training image's size with
    `imresize_to_shape` (the fixture's `size` output of the reference), then to scale n - 1 by
    imresize(scale_factor ** (N - n + 1)) and to scale n by imresize(1 / scale_factor), each cropped top-left:
    scale n's G gets that as its previous image."""
    from PIL import Image

    from tests.test_singan import tiny_model

    ref, meta = reference
    model = tiny_model(pyramid=[[13, 26], [16, 32], list(meta["size"])], scale_factor=0.8).inference_model()
    levels = ref["balloons_23x17/levels"]
    ours = model._reference(Image.fromarray(levels.numpy()), 3)
    assert torch.equal(ours, ref["balloons_23x17/size"])
    prevs = []
    model.netG[1].register_forward_hook(lambda net, args, out: prevs.append(args[1]))
    model.inject(Image.fromarray(levels.numpy()), inject_scale=1, output_type="tensor")
    expected = upsample_to(imresize(ref["balloons_23x17/size"], 0.8**2)[..., :13, :26], 0.8, (16, 32))
    pad = model.pad
    assert torch.equal(prevs[0][..., pad:-pad, pad:-pad], expected)
