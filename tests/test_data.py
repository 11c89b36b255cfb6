"""Data layer: image loading, transforms, paired datasets, the data module and downloads."""

from __future__ import annotations

import hashlib
import io
import logging
import random
import shutil
import tarfile
import urllib.error
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge.data import datasets
from ganforge.data.datasets import DatasetSpec, download_and_extract, get_spec
from ganforge.data.paired import PairedDataModule, PairedDataset
from ganforge.data.transforms import build_transform, fit_size, get_params
from ganforge.utils.errors import (
    ConfigError,
    DataLayoutError,
    DatasetUnavailableError,
    ImageFileError,
)
from ganforge.utils.imageio import IMG_EXTENSIONS, list_images, load_image

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MINI = SHARED / "pix2pix_paired_mini"
SAMPLE = Path(ganforge.__file__).parent / "assets" / "sample_edges2photo"
NO_PARAMS = {"crop_pos": (0, 0), "flip": False}


def noise(w: int, h: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8), mode)


# ---------------------------------------------------------------- load_image


def test_16bit_png_is_scaled_by_range_keeping_order(tmp_path):
    values = np.array([[0, 300, 1000], [20000, 40000, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode == "I;16"
    out = np.asarray(load_image(tmp_path / "d.png", channels=1)).astype(int)
    assert out.min() == 0 and out.max() == 255
    assert (np.diff(out.ravel()) > 0).all()  # strictly increasing like the input, nothing clipped to 255
    rgb = np.asarray(load_image(tmp_path / "d.png"))
    assert rgb.shape == (2, 3, 3) and (rgb[..., 0] == out).all() and (rgb[..., 2] == out).all()


def test_float_tiff_is_scaled_by_range(tmp_path):
    Image.fromarray(np.array([[-1.0, 0.5], [2.0, 3.0]], dtype=np.float32), "F").save(tmp_path / "f.tif")
    assert np.asarray(load_image(tmp_path / "f.tif", channels=1)).tolist() == [[0, 96], [191, 255]]


def test_gray_to_rgb_and_rgb_to_gray(tmp_path):
    gray = noise(8, 6, mode="L")
    gray.save(tmp_path / "g.png")
    rgb = load_image(tmp_path / "g.png", channels=3)
    assert rgb.mode == "RGB" and all((np.asarray(rgb)[..., c] == np.asarray(gray)).all() for c in range(3))
    noise(8, 6).save(tmp_path / "c.png")
    assert load_image(tmp_path / "c.png", channels=1).mode == "L"


def test_rgba_drops_alpha_keeping_stored_colour(tmp_path):
    Image.new("RGBA", (4, 4), (200, 10, 10, 0)).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (200, 10, 10)


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 12, 34, 56] + [0] * 762)
    p.save(tmp_path / "p.png")
    p.save(tmp_path / "pt.png", transparency=bytes([0, 128]))  # per-entry alpha, kept as bytes
    assert Image.open(tmp_path / "pt.png").info.get("transparency") == b"\x00\x80"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL warns on this P -> RGB unless it goes via RGBA
        for name in ("p.png", "pt.png"):
            assert load_image(tmp_path / name).getpixel((1, 1)) == (12, 34, 56)


def test_cmyk_and_1bit(tmp_path):
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    r, g, b = load_image(tmp_path / "c.jpg").getpixel((1, 1))
    assert r > 200 and g < 60 and b < 60  # CMYK (0, 255, 255, 0) is red
    Image.new("1", (4, 4), 1).save(tmp_path / "b.png")
    assert load_image(tmp_path / "b.png", channels=1).getpixel((0, 0)) == 255


def test_animated_gif_first_frame_warns_once(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    with pytest.warns(UserWarning, match=r"anim\.gif has 3 frames"):
        assert load_image(tmp_path / "anim.gif").getpixel((0, 0)) == (255, 0, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image(tmp_path / "anim.gif")  # second read of the same file: silent


def test_multipage_tiff_first_page(tmp_path):
    pages = [Image.new("L", (8, 8), v) for v in (10, 200)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    with pytest.warns(UserWarning, match="pages.tif has 2 frames"):
        assert load_image(tmp_path / "pages.tif", channels=1).getpixel((0, 0)) == 10


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("truncated.jpg", None, "truncated or corrupt"),
        ("empty.jpg", b"", "empty"),
        ("text.png", b"this is not a png", "not an image"),
    ],
)
def test_bad_files_raise_image_file_error_naming_the_file(tmp_path, name, content, problem):
    if content is None:
        noise(64, 64).save(tmp_path / "full.jpg", quality=95)
        content = (tmp_path / "full.jpg").read_bytes()[:800]
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageFileError, match=problem) as e:
        load_image(tmp_path / name)
    assert str(tmp_path / name) in str(e.value) and "on_bad_file=skip" in str(e.value)


def test_list_images(tmp_path):
    for name in ("b.JPG", "a.png", "c.webp", ".hidden.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.jpg").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG", "c.webp"]
    (tmp_path / "sub" / "empty").mkdir()
    with pytest.raises(DataLayoutError, match=f"No images in {tmp_path / 'sub' / 'empty'}"):
        list_images(tmp_path / "sub" / "empty")
    only_text = tmp_path / "texts"
    only_text.mkdir()
    (only_text / "readme.txt").write_text("hi")
    with pytest.raises(DataLayoutError) as e:
        list_images(only_text)
    assert str(only_text) in str(e.value) and all(ext in str(e.value) for ext in IMG_EXTENSIONS)
    with pytest.raises(DataLayoutError, match="not found: .*missing"):
        list_images(tmp_path / "missing")


# ---------------------------------------------------------------- transforms


@pytest.mark.parametrize(
    ("preprocess", "hw"),
    [
        ("resize_and_crop", (256, 256)),
        ("crop", (199, 256)),  # taller than the image: keeps its own height
        ("scale_width", (256, 286)),  # height 286*199/301 = 189 is raised to crop_size
        ("scale_width_and_crop", (256, 256)),
        ("none", (199, 301)),
    ],
)
def test_preprocess_output_sizes_on_odd_non_square_input(preprocess, hw):
    img = noise(301, 199)
    params = get_params(preprocess, 286, 256, img.size, flip=True, rng=random.Random(1))
    t = build_transform(preprocess, 286, 256, params, channels=3)(img)
    assert t.shape == (3, *hw) and t.min() >= -1 and t.max() <= 1


@pytest.mark.parametrize("multiple", [256, 128, 32])
@pytest.mark.parametrize("fit", ["resize", "pad"])
def test_fit_gives_multiples(multiple, fit):
    expected = {
        ("resize", 256): (256, 256),
        ("pad", 256): (256, 512),
        ("resize", 128): (256, 256),
        ("pad", 128): (256, 384),
        ("resize", 32): (192, 288),
        ("pad", 32): (224, 320),
    }[(fit, multiple)]
    img = noise(301, 199)
    t = build_transform("none", 286, 256, NO_PARAMS, 3, size_multiple=multiple, fit=fit)(img)
    assert t.shape[1:] == expected
    if fit == "pad":  # the image sits unchanged at the top left, reflected beyond it
        plain = build_transform("none", 286, 256, NO_PARAMS, 3)(img)
        assert torch.equal(t[:, :199, :301], plain)
        assert torch.equal(t[:, 199, :301], plain[:, 197])


def test_fit_size_never_below_one_multiple():
    assert fit_size(40, 30, 256) == (256, 256)
    assert fit_size(40, 30, 256, "pad") == (256, 256)
    assert fit_size(512, 256, 256) == (512, 256)


def test_tiny_image_pads_to_a_full_multiple():
    t = build_transform("none", 286, 256, NO_PARAMS, 1, size_multiple=64, fit="pad")(noise(5, 3, mode="L"))
    assert t.shape == (1, 64, 64)


def test_unknown_preprocess_lists_choices():
    with pytest.raises(ConfigError, match="scale_width_and_crop"):
        build_transform("zoom", 286, 256, NO_PARAMS, 3)


def test_flip_mirrors_and_generators_are_reproducible():
    img = noise(64, 48)
    plain = build_transform("none", 0, 0, NO_PARAMS, 3)(img)
    flipped = build_transform("none", 0, 0, {"crop_pos": (0, 0), "flip": True}, 3)(img)
    assert torch.equal(flipped, plain.flip(-1))
    for make in (random.Random, lambda s: torch.Generator().manual_seed(s)):
        a = get_params("resize_and_crop", 286, 256, (301, 199), True, make(5))
        assert a == get_params("resize_and_crop", 286, 256, (301, 199), True, make(5))


def test_pair_gets_identical_random_crop_and_flip(tmp_path):
    half = noise(300, 220, seed=3)
    ab = Image.new("RGB", (600, 220))
    ab.paste(half, (0, 0))
    ab.paste(half, (300, 0))
    ab.save(tmp_path / "same.png")
    ds = PairedDataset(tmp_path, None, load_size=286, crop_size=256)
    seen = set()
    for seed in range(12):
        random.seed(seed)
        params = get_params("resize_and_crop", 286, 256, half.size, True)
        random.seed(seed)
        item = ds[0]
        expected = build_transform("resize_and_crop", 286, 256, params, 3)(half)
        assert torch.equal(item["A"], item["B"]) and torch.equal(item["A"], expected)
        seen.add((params["crop_pos"], params["flip"]))
    assert {flip for _, flip in seen} == {True, False} and len({pos for pos, _ in seen}) > 6


# ---------------------------------------------------------------- PairedDataset


def test_mini_val_falls_back_to_test_and_logs_it(caplog):
    dm = PairedDataModule(root=str(MINI), load_size=72, crop_size=64, num_workers=0)
    with caplog.at_level(logging.INFO, logger="ganforge.data.paired"):
        dm.prepare_data()
        dm.setup("fit")
    assert "No val split" in caplog.text and "'test'" in caplog.text
    assert sorted(Path(a).name for a, _ in dm.val_set.pairs) == ["3.jpg", "33_AB.jpg"]
    assert len(dm.train_set) == 2


def test_direction_swaps_halves():
    a_to_b = PairedDataset(MINI, "train", "AtoB", load_size=64, crop_size=64, train=False)
    b_to_a = PairedDataset(MINI, "train", "BtoA", load_size=64, crop_size=64, train=False)
    x, y = a_to_b[0], b_to_a[0]
    assert torch.equal(x["A"], y["B"]) and torch.equal(x["B"], y["A"]) and not torch.equal(x["A"], x["B"])


def test_eval_is_the_reference_test_preprocess():
    """No random crop/flip at val/test: resize_and_crop becomes a resize to crop_size."""
    path = sorted((SAMPLE / "val").iterdir())[0]
    photo = Image.open(path).convert("RGB").crop((256, 0, 512, 256))
    expected = build_transform("none", 0, 0, NO_PARAMS, 3)(photo.resize((64, 64), Image.Resampling.BICUBIC))
    ds = PairedDataset(SAMPLE, "val", load_size=72, crop_size=64, train=False)
    for _ in range(3):
        assert torch.equal(ds[0]["B"], expected)


def test_separate_a_b_folders_matched_by_stem(tmp_path):
    for split in ("train",):
        (tmp_path / "A" / split).mkdir(parents=True)
        (tmp_path / "B" / split).mkdir(parents=True)
    for stem, value in (("1", 40), ("2", 80)):
        Image.new("L", (40, 30), value).save(tmp_path / "A" / "train" / f"{stem}.png")
        Image.new("RGB", (40, 30), (value, 0, 0)).save(tmp_path / "B" / "train" / f"{stem}.jpg", quality=100)
    ds = PairedDataset(tmp_path, "train", load_size=32, crop_size=32, input_nc=1, output_nc=3, train=False)
    item = ds[1]
    assert item["A"].shape == (1, 32, 32) and item["B"].shape == (3, 32, 32)
    assert item["A_path"].endswith("A/train/2.png") and item["B_path"].endswith("B/train/2.jpg")
    assert abs(item["A"].mean().item() - (80 / 127.5 - 1)) < 0.01
    Image.new("L", (40, 30)).save(tmp_path / "A" / "train" / "lonely.png")
    with pytest.raises(DataLayoutError, match="lonely"):
        PairedDataset(tmp_path, "train")


def test_odd_width_pair_is_an_error_naming_the_file(tmp_path):
    noise(301, 100).save(tmp_path / "odd.png")
    with pytest.raises(ImageFileError, match=r"odd\.png: width 301 is odd.*even"):
        PairedDataset(tmp_path, None)[0]


@pytest.fixture
def folder_with_one_corrupt(tmp_path):
    for name in ("1.jpg", "2.jpg"):
        shutil.copy(MINI / "train" / name, tmp_path / name)
    (tmp_path / "15_bad.jpg").write_bytes((MINI / "train" / "1.jpg").read_bytes()[:2000])
    return tmp_path  # sorted: 1.jpg, 15_bad.jpg, 2.jpg


def test_on_bad_file_error_raises_for_the_bad_file(folder_with_one_corrupt):
    ds = PairedDataset(folder_with_one_corrupt, None, load_size=64, crop_size=64)
    assert ds[0]["A"].shape == (3, 64, 64)
    with pytest.raises(ImageFileError, match="15_bad.jpg"):
        ds[1]


def test_on_bad_file_skip_returns_next_good_and_warns_once(folder_with_one_corrupt, caplog):
    ds = PairedDataset(folder_with_one_corrupt, None, load_size=64, crop_size=64, on_bad_file="skip")
    with caplog.at_level(logging.WARNING, logger="ganforge.data.paired"):
        assert ds[1]["A_path"].endswith("2.jpg")
        assert ds[1]["A_path"].endswith("2.jpg")
    assert [r.getMessage().count("15_bad.jpg") for r in caplog.records] == [1]
    for name in ("1.jpg", "2.jpg"):
        (folder_with_one_corrupt / name).write_bytes(b"")
    with pytest.raises(DataLayoutError, match="Every file"):
        PairedDataset(folder_with_one_corrupt, None, on_bad_file="skip")[0]


# ---------------------------------------------------------------- PairedDataModule


def test_datamodule_on_embedded_sample():
    dm = PairedDataModule(root=str(SAMPLE), load_size=72, crop_size=64, batch_size=2, num_workers=0, input_nc=1)
    dm.size_multiple = 128  # set after construction, as the CLI does from the generator
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (40, 8)
    train = next(iter(dm.train_dataloader()))
    val = next(iter(dm.val_dataloader()))
    assert train["A"].shape == (2, 1, 128, 128) and train["B"].shape == (2, 3, 128, 128)
    assert val["A"].shape == (2, 1, 128, 128) and all("/val/" in p for p in val["A_path"])
    grid = dm.fixed_val_batch(3)
    assert grid["B"].shape == (3, 3, 128, 128)
    assert torch.equal(grid["B"], dm.fixed_val_batch(3)["B"])  # deterministic: no random crop/flip


def test_datamodule_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="batch_size"):
        PairedDataModule(root=str(SAMPLE), batch_size=0)
    with pytest.raises(ConfigError, match="data.root"):
        PairedDataModule()
    with pytest.raises(DataLayoutError, match="No training data"):
        PairedDataModule(root=str(tmp_path)).prepare_data()
    with pytest.raises(DatasetUnavailableError, match="download=false"):
        PairedDataModule(name="facades", root=str(tmp_path / "facades"), download=False).prepare_data()


# ---------------------------------------------------------------- downloads


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def serve(data: bytes):
    def opener(url, timeout):
        assert timeout > 0
        return FakeResponse(data)

    return opener


def make_tar(tmp_path: Path, members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def spec_for(data: bytes | None, sha: str | None = "good", archive="tar.gz", kind="paired") -> DatasetSpec:
    if sha == "good":
        sha = hashlib.sha256(data).hexdigest()
    return DatasetSpec("facades", f"http://example.invalid/facades.{archive}", archive, sha, kind, "facades")


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (urllib.error.URLError("[Errno -3] Temporary failure in name resolution"), "name resolution"),
        (TimeoutError("timed out"), "timed out"),  # socket.timeout is TimeoutError
    ],
)
def test_offline_gives_one_clear_error(tmp_path, monkeypatch, failure, reason):
    def unreachable(url, timeout):
        raise failure

    monkeypatch.setattr(datasets, "urlopen", unreachable)
    root = tmp_path / "data" / "facades"
    dm = PairedDataModule(name="facades", root=str(root), num_workers=0)
    with pytest.raises(DatasetUnavailableError) as e:
        dm.prepare_data()
    msg = str(e.value)
    assert "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz" in msg
    assert "offline" in msg and str(root / "train") in msg and reason in msg
    assert not list((tmp_path / "data").glob("*.part"))


def test_download_verifies_and_extracts(tmp_path, caplog):
    jpg = (MINI / "train" / "1.jpg").read_bytes()
    data = make_tar(tmp_path, {"facades/train/1.jpg": jpg, "facades/test/3.jpg": jpg})
    root = tmp_path / "data" / "my_facades"  # any folder name: the archive's top folder is renamed
    assert download_and_extract(spec_for(data), root, opener=serve(data)) == root
    assert (root / "train" / "1.jpg").read_bytes() == jpg and (root / "test" / "3.jpg").is_file()
    assert sorted(p.name for p in root.parent.iterdir()) == ["my_facades"]  # archive and scratch removed

    other = tmp_path / "unpinned" / "facades"
    with caplog.at_level(logging.INFO, logger="ganforge.data.datasets"):
        download_and_extract(spec_for(data, sha=None), other, opener=serve(data))
    assert hashlib.sha256(data).hexdigest() in caplog.text
    assert PairedDataset(other, "train", load_size=64, crop_size=64)[0]["A"].shape == (3, 64, 64)


def test_download_checksum_mismatch(tmp_path):
    data = make_tar(tmp_path, {"facades/train/1.jpg": b"x"})
    root = tmp_path / "data" / "facades"
    with pytest.raises(DatasetUnavailableError, match="Checksum mismatch.*expected sha256 0000"):
        download_and_extract(spec_for(data, sha="0" * 64), root, opener=serve(data))
    assert list((tmp_path / "data").iterdir()) == []  # .part deleted, nothing extracted


def test_zip_download_for_unpaired(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("facades/trainA/a.jpg", b"a")
        z.writestr("facades/trainB/b.jpg", b"b")
    data = buf.getvalue()
    root = tmp_path / "facades"
    download_and_extract(spec_for(data, archive="zip", kind="unpaired"), root, opener=serve(data))
    assert (root / "trainA" / "a.jpg").read_bytes() == b"a"


def test_path_traversal_is_refused(tmp_path):
    data = make_tar(tmp_path, {"facades/train/1.jpg": b"x", "../escape.txt": b"evil"})
    with pytest.raises(DatasetUnavailableError, match="unsafe path"):
        download_and_extract(spec_for(data), tmp_path / "data" / "facades", opener=serve(data))
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "data" / "facades").exists()


def test_registry():
    assert get_spec("facades", "paired").default_direction == "BtoA"
    assert get_spec("maps", "paired").url.endswith("pix2pix/datasets/maps.tar.gz")
    assert get_spec("maps", "unpaired").url.endswith("cyclegan/datasets/maps.zip")
    with pytest.raises(ConfigError) as e:
        get_spec("edges2cats", "paired")
    msg = str(e.value)
    assert "edges2shoes" in msg and "night2day" in msg and "horse2zebra" not in msg
    assert "data=paired data.root=<dir>" in msg
    with pytest.raises(ConfigError, match="horse2zebra.*data=unpaired"):
        get_spec("edges2shoes", "unpaired")


@pytest.mark.parametrize("cores, devices, workers", [(2, 1, 1), (16, 1, 8), (16, 2, 7), (16, 8, 1), (64, "auto", 8), (1, 1, 1)])
def test_default_workers_follow_the_cores_of_each_training_process(monkeypatch, cores, devices, workers):
    from ganforge.utils import resolvers

    monkeypatch.setattr(resolvers.os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert resolvers.default_workers(devices) == workers


def test_the_data_configs_default_workers_come_from_the_machine(tmp_path, monkeypatch):
    from ganforge.utils import resolvers
    from tests.conftest import compose_train

    monkeypatch.setattr(resolvers.os, "sched_getaffinity", lambda pid: set(range(12)))
    assert compose_train(tmp_path).data.num_workers == 8
    assert compose_train(tmp_path, ["trainer=ddp_cpu"]).data.num_workers == 5  # 12 cores / 2 processes, less one
