"""Property-based tests of everything that reads user files: the image loader, its header check, the
A|B splitter and the transforms. Every input either loads to the documented mode and size or raises
one ImageFileError that names the file; no other exception gets out."""

from __future__ import annotations

import io
import random
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from ganforge.data.labelmap import LabelIds
from ganforge.data.paired import PairedDataset
from ganforge.data.transforms import PREPROCESS_CHOICES, build_transform, get_params
from ganforge.utils.errors import ImageFileError
from ganforge.utils.imageio import load_image, load_label_ids, read_header

# No example database: it would leave a .hypothesis/ folder in the checkout.
FAST = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Image modes users' files hold, and the formats that store each.
MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F", "LAB")
FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP", "PPM")
MAGIC = (b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"P6\n", b"RIFF\x00\x00\x00\x00WEBPVP8 ")


def make_image(mode: str, w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode in ("I", "F"):
        dtype = np.int32 if mode == "I" else np.float32
        return Image.fromarray((rng.standard_normal((h, w)) * 1000).astype(dtype))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    rgba = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
    if mode == "PA":
        return rgba.convert("RGB").convert("P").convert("PA")
    return rgba.convert(mode)


def _encodes(mode: str, fmt: str) -> bool:
    try:
        make_image(mode, 3, 2, 0).save(io.BytesIO(), format=fmt)
        return True
    except (OSError, ValueError, KeyError):
        return False


# What this PIL can write; probed rather than listed, so a PIL upgrade widens the test instead of breaking it.
STORABLE = [(m, f) for m in MODES for f in FORMATS if _encodes(m, f)]
SIDE = st.one_of(st.integers(1, 40), st.integers(41, 1500))


def write(data: bytes, name: str = "x.png") -> Path:
    d = Path(tempfile.mkdtemp())
    (d / name).write_bytes(data)
    return d / name


def encoded(mode: str, fmt: str, w: int, h: int, seed: int = 0, **kw) -> bytes:
    buf = io.BytesIO()
    make_image(mode, w, h, seed).save(buf, format=fmt, **kw)
    return buf.getvalue()


def load_or_error(path: Path, channels: int) -> Image.Image | None:
    """load_image's result, or None after checking that its error is an ImageFileError naming the file."""
    try:
        img = load_image(path, channels)
    except ImageFileError as e:
        assert str(path) in str(e) and "Fix:" in str(e)
        return None
    assert img.mode == ("RGB" if channels == 3 else "L")
    return img


def header_or_error(path: Path) -> tuple[int, int] | None:
    try:
        return read_header(path)
    except ImageFileError as e:
        assert str(path) in str(e) and "Fix:" in str(e)
        return None


def test_storable_covers_the_modes():
    # The probe must not silently drop modes: every mode is tested in at least one format.
    assert {m for m, _ in STORABLE} == set(MODES)


# ----------------------------------------------------------------- arbitrary bytes
@FAST
@given(prefix=st.sampled_from(MAGIC), body=st.binary(max_size=600), channels=st.sampled_from((1, 3)))
def test_random_bytes_load_or_raise_image_file_error(prefix, body, channels):
    path = write(prefix + body)
    img = load_or_error(path, channels)
    size = header_or_error(path)
    if img is not None:
        assert size == img.size


@FAST
@given(
    combo=st.sampled_from(STORABLE),
    w=st.integers(1, 24),
    h=st.integers(1, 24),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_corrupted_bytes_load_or_raise_image_file_error(combo, w, h, flips):
    data = bytearray(encoded(*combo, w, h))
    for where, value in flips:
        data[int(where * len(data))] = value
    path = write(bytes(data))
    img = load_or_error(path, 3)
    if img is not None and header_or_error(path) is not None:
        assert header_or_error(path) == img.size


@FAST
@given(combo=st.sampled_from(STORABLE), w=st.integers(1, 48), h=st.integers(1, 48), cut=st.floats(0, 1, exclude_max=True))
def test_truncated_files_load_or_raise_image_file_error(combo, w, h, cut):
    data = encoded(*combo, w, h)
    path = write(data[: int(cut * len(data))])
    img = load_or_error(path, 3)
    if img is not None:
        assert img.size == (w, h)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_header_check_catches_a_file_cut_short(fmt):
    # The pre-scan reads no pixels, yet a JPEG or PNG cut anywhere after its header is caught.
    data = encoded("RGB", fmt, 64, 48)
    full = write(data, "full." + fmt.lower())
    assert read_header(full) == (64, 48)
    for cut in (0.5, 0.9, (len(data) - 1) / len(data)):
        path = write(data[: int(cut * len(data))], "cut." + fmt.lower())
        with pytest.raises(ImageFileError, match=r"cut\.\w+: truncated"):
            read_header(path)


def assume_readable(path: Path) -> None:
    """Only files PIL can read back: it writes 1-pixel-high YCbCr TIFFs (chroma subsampled by 2) that it then calls
    truncated, where ganforge's one-line ImageFileError is the right answer, not the case under test."""
    try:
        with Image.open(path) as img:
            img.load()
    except OSError:
        assume(False)


# ----------------------------------------------------------------- modes and sizes
@FAST
@given(
    combo=st.sampled_from(STORABLE),
    w=SIDE,
    h=st.integers(1, 40),
    seed=st.integers(0, 2**16),
    channels=st.sampled_from((1, 3)),
    tall=st.booleans(),
)
def test_every_mode_and_size_loads_to_8bit_rgb_or_l(combo, w, h, seed, channels, tall):
    fmt = combo[1]
    if tall:
        w, h = h, w
    if fmt in ("WEBP", "GIF") and max(w, h) > 1000:
        w, h = min(w, 1000), min(h, 1000)  # encoder limits are not the loader's business
    path = write(encoded(*combo, w, h, seed), f"img.{fmt.lower()}")
    assume_readable(path)
    img = load_image(path, channels)
    assert img.mode == ("RGB" if channels == 3 else "L") and img.size == (w, h)
    assert read_header(path) == (w, h)


def test_high_depth_modes_keep_their_order():
    # A 16-bit ramp must stay a ramp, not clip to white above 255 as PIL's convert("L") does.
    ramp = np.linspace(0, 65535, 16, dtype=np.uint16)[None].repeat(2, 0)
    path = write(b"", "ramp.png")
    Image.fromarray(ramp).save(path)
    values = np.asarray(load_image(path, 1))[0]
    assert values[0] == 0 and values[-1] == 255 and np.all(np.diff(values.astype(int)) > 0)


# ----------------------------------------------------------------- EXIF orientation
# What brings the stored pixels upright for each EXIF orientation (EXIF 2.32, tag 0x0112), and its inverse.
UPRIGHT = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
INVERSE = {Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270}


def stored_sideways(upright: Image.Image, orientation: int) -> Image.Image:
    op = UPRIGHT[orientation]
    return upright if op is None else upright.transpose(INVERSE.get(op, op))


def exif(orientation: int) -> Image.Exif:
    e = Image.Exif()
    e[0x0112] = orientation
    return e


@FAST
@given(orientation=st.integers(1, 8), w=st.integers(1, 40), h=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_exif_orientation_is_applied_exactly(orientation, w, h, seed):
    upright = make_image("RGB", w, h, seed)
    path = write(b"", "o.png")
    stored_sideways(upright, orientation).save(path, exif=exif(orientation))
    assert read_header(path) == (w, h)
    assert np.array_equal(np.asarray(load_image(path)), np.asarray(upright))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_rotated_jpeg_loads_upright(orientation, tmp_path):
    # A portrait photo (red top, blue bottom, green top-left corner), stored as a camera stores it.
    upright = Image.new("RGB", (48, 96), (0, 0, 255))
    upright.paste((255, 0, 0), (0, 0, 48, 48))
    upright.paste((0, 255, 0), (0, 0, 16, 16))
    stored_sideways(upright, orientation).save(tmp_path / "photo.jpg", quality=95, exif=exif(orientation))
    img = load_image(tmp_path / "photo.jpg")
    assert img.size == (48, 96) and read_header(tmp_path / "photo.jpg") == (48, 96)
    a = np.asarray(img).astype(int)
    assert np.abs(a[4:12, 4:12] - (0, 255, 0)).max() < 40
    assert np.abs(a[24:40, 24:44] - (255, 0, 0)).max() < 40
    assert np.abs(a[60:90, 4:44] - (0, 0, 255)).max() < 40


# ----------------------------------------------------------------- decompression bombs
def png_header_only(w: int, h: int) -> bytes:
    """A PNG whose IHDR claims w x h, with one tiny IDAT and IEND: decoding it would need w*h*3 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [10_000, 20_000])  # over PIL's limit, and over twice it (PIL's own error)
def test_decompression_bomb_refused_from_its_header(side, monkeypatch):
    def no_decoding(self):
        raise AssertionError("decoded a decompression bomb")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    path = write(png_header_only(side, side), "bomb.png")
    for read in (load_image, read_header):
        with pytest.raises(ImageFileError, match=r"bomb\.png: .*(decompression-bomb limit|decompression bomb).*MAX_IMAGE_PIXELS"):
            read(path)


def test_bomb_limit_follows_pil_setting(monkeypatch):
    path = write(encoded("RGB", "PNG", 40, 30), "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageFileError, match=r"40x30 = 1200 pixels is over the decompression-bomb limit of 1000"):
        load_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert load_image(path).size == (40, 30)


# ----------------------------------------------------------------- the A|B splitter
@FAST
@given(combo=st.sampled_from(STORABLE), w=st.integers(1, 40), h=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_ab_splitter_halves_even_widths_and_names_odd_ones(combo, w, h, seed):
    mode, fmt = combo
    path = write(encoded(mode, fmt, w, h, seed), f"ab.{fmt.lower()}")
    assume_readable(path)
    ds = PairedDataset(path.parent, None, preprocess="none", flip=False, train=False)
    if w % 2:
        with pytest.raises(ImageFileError, match=rf"ab\.{fmt.lower()}: width {w} is odd"):
            ds[0]
        return
    item = ds[0]
    whole = torch.from_numpy(np.asarray(load_image(path), dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1
    assert item["A"].shape == item["B"].shape == (3, h, w // 2)
    assert torch.equal(torch.cat([item["A"], item["B"]], dim=2), whole)


# ----------------------------------------------------------------- transforms
def expected_size(preprocess, load, crop, w, h, multiple, fit):
    if preprocess == "resize_and_crop":
        w, h = load, load
    elif preprocess.startswith("scale_width") and not (w == load and h >= crop):
        w, h = load, int(max(load * h / w, crop))
    if "crop" in preprocess:
        w, h = min(w, crop), min(h, crop)
    if fit == "pad":
        return -(-w // multiple) * multiple, -(-h // multiple) * multiple
    return max(multiple, round(w / multiple) * multiple), max(multiple, round(h / multiple) * multiple)


@FAST
@given(
    preprocess=st.sampled_from(PREPROCESS_CHOICES),
    w=st.integers(1, 80),
    h=st.integers(1, 80),
    crop=st.integers(1, 48),
    extra=st.integers(0, 16),
    multiple=st.sampled_from((1, 2, 4, 8, 16, 32)),
    fit=st.sampled_from(("resize", "pad")),
    channels=st.sampled_from((1, 3)),
    mode=st.sampled_from(("RGB", "L")),
    seed=st.integers(0, 2**16),
)
def test_transform_output_shape_range_and_shared_params(preprocess, w, h, crop, extra, multiple, fit, channels, mode, seed):
    load = crop + extra
    img = make_image(mode, w, h, seed)
    params = get_params(preprocess, load, crop, img.size, flip=True, rng=random.Random(seed))
    transform = build_transform(preprocess, load, crop, params, channels, multiple, fit)
    t = transform(img)
    tw, th = expected_size(preprocess, load, crop, w, h, multiple, fit)
    assert t.dtype == torch.float32 and t.shape == (channels, th, tw)
    assert t.min() >= -1 and t.max() <= 1
    # A and B of a pair go through the same params: identical inputs give identical outputs.
    assert torch.equal(transform(img.copy()), t)
    if multiple == 1:
        # The flip is a mirror of the unflipped crop, nothing else.
        unflipped = build_transform(preprocess, load, crop, {**params, "flip": False}, channels)(img)
        assert torch.equal(t, unflipped.flip(-1) if params["flip"] else unflipped)


# ----- label maps (SPADE) -------------------------------------------------------------------------
def ids_or_error(path: Path):
    """load_label_ids, or None when it raised the one allowed error naming the file."""
    try:
        return load_label_ids(path)
    except ImageFileError as e:
        assert str(path) in str(e)
        return None


@FAST
@given(prefix=st.sampled_from(MAGIC), body=st.binary(max_size=600))
def test_label_map_random_bytes_load_or_raise_image_file_error(prefix, body):
    ids = ids_or_error(write(prefix + body))
    if ids is not None:
        assert ids.ndim == 2 and ids.dtype == np.int64


@FAST
@given(
    combo=st.sampled_from(STORABLE),
    w=st.integers(1, 48),
    h=st.integers(1, 48),
    seed=st.integers(0, 2**16),
    cut=st.one_of(st.none(), st.floats(0, 1, exclude_max=True)),
)
def test_label_maps_of_every_mode_give_integer_ids_or_one_error(combo, w, h, seed, cut):
    mode, fmt = combo
    data = encoded(mode, fmt, w, h, seed)
    ids = ids_or_error(write(data if cut is None else data[: int(cut * len(data))], f"x.{fmt.lower()}"))
    if ids is not None:
        assert ids.shape == (h, w) and ids.dtype == np.int64
        if mode in ("1", "L", "P", "I;16"):  # stored ids come back as stored
            assert ids.min() >= 0


@FAST
@given(
    h=st.integers(1, 30),
    w=st.integers(1, 30),
    label_nc=st.integers(1, 300),
    top=st.integers(0, 400),
    dontcare=st.one_of(st.none(), st.just(255)),
    shift=st.sampled_from((0, 1)),
    seed=st.integers(0, 2**16),
)
def test_label_ids_convert_to_channels_or_name_the_bad_ids(h, w, label_nc, top, dontcare, shift, seed):
    raw = np.random.default_rng(seed).integers(0, top + 1, (h, w))
    try:
        ids = LabelIds(label_nc, dontcare, shift).convert(raw, Path("map.png"))
    except ImageFileError as e:
        assert "map.png" in str(e) and f"data.label_nc={label_nc}" in str(e) and "Fix: set data.label_nc=" in str(e)
        return
    assert ids.shape == raw.shape and ids.min() >= 0 and ids.max() <= label_nc  # label_nc = the don't-care channel
