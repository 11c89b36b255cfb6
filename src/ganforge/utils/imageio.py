"""Image files to tensors and back: the one place ganforge reads and writes images.

* `load_image` always returns an 8-bit "RGB" or "L" PIL image, upright (EXIF orientation
  applied), whatever the file holds, so the transforms downstream never see a 16-bit, float,
  palette or alpha image; an unusable file raises one ImageFileError that names it, whatever
  PIL raised. `read_header` is its check without the decode (the data pre-scan's). Images over
  PIL.Image.MAX_IMAGE_PIXELS are refused from their header, before any pixel is decoded.
* Tensors are float batches in [-1, 1] (what every ganforge generator outputs):
  `image_to_tensor` / `tensor_to_image` convert one image, `to_uint8` a batch, and
  `uint8_grid` lays out sample grids. `save_atomic` writes through a temporary file, so an
  interrupted run never leaves a half-written image.
* Reading and writing files needs PIL and numpy alone (torch is imported by the tensor conversions
  when they are called), so `ganforge-predict model=<file.onnx>` runs where torch is not installed.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

from ganforge.utils.errors import ConfigError, DataLayoutError, ImageFileError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp", ".gif")

SKIP_HINT = "delete or replace the file, or set data.on_bad_file=skip"

# Modes with more than 8 bits per sample; PIL's own convert("L") clips them at 255.
_HIGH_DEPTH_MODES = ("I", "F")

# Files already warned about (multi-frame), so a file read every epoch warns once.
_warned_multiframe: set[str] = set()


def is_image_file(path: Path) -> bool:
    # Hidden files are skipped: macOS leaves "._name.jpg" resource forks that are not images.
    return path.suffix.lower() in IMG_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: str | Path) -> list[Path]:
    """The image files directly inside `folder` (not recursive), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataLayoutError(f"Image folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    if not paths:
        raise DataLayoutError(f"No images in {folder}. Accepted extensions (any case): {' '.join(IMG_EXTENSIONS)}")
    return paths


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit ("I;16*"), 32-bit int ("I") and float ("F") images -> "L", stretched from the
    image's own min..max to 0..255. Order is kept and nothing clips (PIL's convert("L")
    turns every value above 255 white). A constant image maps to 0 if it is <= 0, else 255;
    NaN and infinite floats take the finite range's ends."""
    a = np.asarray(img, dtype=np.float64)
    finite = np.isfinite(a)
    lo, hi = (float(a[finite].min()), float(a[finite].max())) if finite.any() else (0.0, 0.0)
    if not finite.all():
        # NaN reads as the darkest value, +-inf as the ends of the finite range.
        a = np.clip(np.where(np.isnan(a), lo, a), lo, hi)
    if hi <= lo:
        lo, hi = min(lo, 0.0), max(hi, 1e-12)
    return Image.fromarray(np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8), "L")


def _normalise_mode(img: Image.Image, path: Path, target: str) -> Image.Image:
    """Bring any PIL mode to `target` ("RGB" or "L")."""
    if img.mode.startswith(_HIGH_DEPTH_MODES):
        img = _to_8bit(img)
    elif img.mode == "P" and "transparency" in img.info:
        # PIL warns when a palette image with transparency goes straight to RGB.
        img = img.convert("RGBA")
    # RGBA/LA/PA -> RGB/L drops alpha without compositing, as the reference repos do with
    # Image.open(p).convert("RGB"): transparent pixels keep their stored colour (often black).
    # CMYK, YCbCr, LAB, "1" and palette images go through PIL's own conversion; PIL converts some
    # modes (LAB) to RGB only, so grayscale goes through RGB when the direct conversion is missing.
    try:
        try:
            return img.convert(target)
        except ValueError:
            if target == "RGB":
                raise
            return img.convert("RGB").convert(target)
    except ValueError as e:
        raise ImageFileError(path, f"cannot convert PIL mode {img.mode} to {target} ({e})", "save it as RGB PNG or JPEG") from None


# EXIF orientations that swap width and height (transpose, rotate 90/270, transverse).
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)


def _check_header(img: Image.Image, path: Path) -> tuple[int, int]:
    """The checks the header alone allows; returns the upright (w, h)."""
    w, h = img.size
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and w * h > limit:
        raise ImageFileError(
            path,
            f"{w}x{h} = {w * h} pixels is over the decompression-bomb limit of {limit} pixels "
            "(PIL.Image.MAX_IMAGE_PIXELS); refused before decoding",
            "downscale the file, or, if you trust it, raise PIL.Image.MAX_IMAGE_PIXELS (None disables the limit)",
        )
    if w < 1 or h < 1:
        raise ImageFileError(path, f"the header gives an empty size {w}x{h}", SKIP_HINT)
    if _orientation(img) in _SWAPPING_ORIENTATIONS:
        return h, w
    return w, h


def _orientation(img: Image.Image) -> int | None:
    # PIL's PNG getexif() decodes the whole image when no eXIf chunk precedes the pixel data; PNG
    # writers (PIL's included) put it first, so a PNG without one is taken as stored upright here.
    if img.format == "PNG" and "exif" not in img.info:
        return None
    return img.getexif().get(ExifTags.Base.Orientation)


# Formats whose complete files end with a marker: a file cut short lacks it. JPEG's EOI cannot occur
# inside entropy-coded data (0xFF is stuffed there), PNG's IEND chunk (with its fixed CRC) is the last one.
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}
_TAIL = 4096  # the end marker is normally in the last bytes; the rest is the rare fallback below


def _check_complete(img: Image.Image, path: Path) -> None:
    """Truncation heuristics that read no pixels: the end marker, and pixel data inside the file."""
    size = len(path.data) if isinstance(path, MemoryFile) else path.stat().st_size
    offsets = [t[2] for t in getattr(img, "tile", []) or []]
    if offsets and max(offsets) >= size:
        raise ImageFileError(path, f"truncated: the pixel data starts at byte {max(offsets)} but the file has {size} bytes", SKIP_HINT)
    marker = _END_MARKERS.get(img.format or "")
    if marker is None:
        return
    with _source(path) if isinstance(path, MemoryFile) else open(path, "rb") as f:
        f.seek(max(0, size - _TAIL))
        if marker in f.read():
            return
        # Rare: data appended after the image (motion photos append a video); search from the pixels.
        f.seek(min(offsets, default=0))
        if marker in f.read():
            return
    raise ImageFileError(path, f"truncated: the {img.format} end marker is missing", SKIP_HINT)


@contextmanager
def _reading(path: Path):
    """Every failure of PIL on this file as one ImageFileError naming it."""
    try:
        with warnings.catch_warnings():
            # Over-limit sizes are refused with an ImageFileError below; PIL's warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except ImageFileError:
        raise
    except UnidentifiedImageError:
        raise ImageFileError(path, "not an image file PIL can read", SKIP_HINT) from None
    except Image.DecompressionBombError as e:
        raise ImageFileError(
            path, str(e), "downscale the file, or, if you trust it, raise PIL.Image.MAX_IMAGE_PIXELS (None disables the limit)"
        ) from None
    except Exception as e:
        # PIL reports truncated and corrupt data as OSError ("image file is truncated"), SyntaxError,
        # ValueError or EOFError, and its format plugins let struct.error, IndexError, KeyError,
        # ZeroDivisionError and more escape on crafted bytes; all of them mean the same to the user.
        raise ImageFileError(path, f"truncated or corrupt image ({type(e).__name__}: {e})", SKIP_HINT) from None


class MemoryFile:
    """An image file's bytes held in memory (read from a shard, ganforge.data.shards), named by the path it
    had in the dataset. The readers below take it wherever they take a path."""

    def __init__(self, name: str, data: bytes):
        self.name, self.data = name, data

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"MemoryFile({self.name!r}, {len(self.data)} bytes)"

    def __eq__(self, other) -> bool:
        return isinstance(other, MemoryFile) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    def open(self) -> io.BytesIO:
        return io.BytesIO(self.data)


def _existing(path: str | Path | MemoryFile) -> Path | MemoryFile:
    if isinstance(path, MemoryFile):
        if not path.data:
            raise ImageFileError(path, "file is empty (0 bytes)", SKIP_HINT)
        return path
    path = Path(path)
    if not path.is_file():
        raise ImageFileError(path, "file not found", "check the path and the dataset folder")
    if path.stat().st_size == 0:
        raise ImageFileError(path, "file is empty (0 bytes)", SKIP_HINT)
    return path


def _source(path: Path | MemoryFile):
    return path.open() if isinstance(path, MemoryFile) else path


def _target(channels: int) -> str:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    return "RGB" if channels == 3 else "L"


def read_header(path: str | Path | MemoryFile) -> tuple[int, int]:
    """The upright (w, h) that `load_image` would return, from the header alone (no pixel decoding).

    Raises the ImageFileError that `load_image` would for a missing, empty, non-image or over-limit
    file, and for a JPEG or PNG without its end marker (truncated). A file that passes can still fail
    to decode: only `load_image` reads every pixel.
    """
    path = _existing(path)
    with _reading(path), Image.open(_source(path)) as img:
        size = _check_header(img, path)
        _check_complete(img, path)
        return size


def load_image(path: str | Path, channels: int = 3) -> Image.Image:
    """Load `path` fully decoded as 8-bit "RGB" (channels=3) or "L" (channels=1), upright.

    The EXIF orientation is applied (a phone's portrait JPEG, stored sideways, loads as portrait).
    Animated GIFs and multi-page TIFFs give their first frame, with one warning per file.
    Raises ImageFileError naming the file when it is missing, empty, not an image, larger than
    PIL.Image.MAX_IMAGE_PIXELS (refused from the header, before decoding), or truncated/corrupt
    (the full decode happens here, not lazily in a DataLoader worker).
    """
    target = _target(channels)
    path = _existing(path)
    with _reading(path), Image.open(_source(path)) as img:
        _check_header(img, path)
        if getattr(img, "n_frames", 1) > 1:
            if str(path) not in _warned_multiframe:
                _warned_multiframe.add(str(path))
                warnings.warn(
                    f"{path} has {img.n_frames} frames (animated GIF or multi-page TIFF); using the first frame",
                    stacklevel=2,
                )
            img.seek(0)
        img.load()
        return _normalise_mode(ImageOps.exif_transpose(img), path, target)


# ----- tensors ----------------------------------------------------------------------------------
def fit_size(w: int, h: int, multiple: int, fit: str = "resize") -> tuple[int, int]:
    """Smallest change of (w, h) to multiples of `multiple`: the nearest multiple (at least
    one) for fit="resize", the next multiple up for fit="pad"."""
    if fit == "pad":
        return math.ceil(w / multiple) * multiple, math.ceil(h / multiple) * multiple
    return max(multiple, round(w / multiple) * multiple), max(multiple, round(h / multiple) * multiple)


def image_to_tensor(img: Image.Image, size: tuple[int, int] | None = None) -> torch.Tensor:
    """8-bit PIL image -> float tensor (C, H, W) in [-1, 1], resized (bicubic) to (w, h) if given."""
    import torch

    if size is not None and img.size != tuple(size):
        img = img.resize(tuple(size), Image.Resampling.BICUBIC)
    a = np.asarray(img, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(a.transpose(2, 0, 1).copy()).div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor, rgb: bool = False) -> torch.Tensor:
    """A [-1, 1] float batch -> uint8 (the values a PNG of it holds); rgb=True repeats grayscale."""
    import torch

    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if rgb:
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]
    return x


def tensor_to_image(t: torch.Tensor, size: tuple[int, int] | None = None) -> Image.Image:
    """One image (C, H, W) or (1, C, H, W) in [-1, 1] -> PIL, resized (bicubic) to (w, h) if given."""
    import torch.nn.functional as F

    t = t.detach().float()
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if size is not None and (t.shape[-1], t.shape[-2]) != tuple(size):
        t = F.interpolate(t, size=(size[1], size[0]), mode="bicubic", align_corners=False)
    arr = to_uint8(t)[0].permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


def uint8_grid(rows: dict[str, torch.Tensor]) -> torch.Tensor:
    """One grid row per sample, one column per entry of `rows` (each a batch in [-1, 1]): (3, H, W) uint8.

    uint8, not float: W&B renders float [0, 1] image tensors black.
    """
    import torch
    import torch.nn.functional as F
    from torchvision.utils import make_grid

    images = []
    for batch in rows.values():
        batch = batch.detach().float().cpu()
        images.append(batch.expand(-1, 3, -1, -1) if batch.shape[1] == 1 else batch[:, :3])
    size = images[0].shape[-2:]
    images = [F.interpolate(b, size=size, mode="nearest") if b.shape[-2:] != size else b for b in images]
    # make_grid fills row by row, so interleave: every entry of sample 0, then of sample 1, ...
    stacked = torch.stack(images, dim=1).reshape(-1, *images[0].shape[1:])
    grid = make_grid(stacked, nrow=len(images), padding=2, normalize=False, pad_value=1.0)
    return ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


# ----- writing ----------------------------------------------------------------------------------
def save_atomic(img: Image.Image, path: str | Path) -> Path:
    """Write a PNG through a temporary file and a rename: a kill mid-write leaves no partial file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def save_frames(frames: list[Image.Image], target: Path) -> None:
    """One image, or for several frames (a latent walk) a strip beside an animated GIF."""
    if len(frames) == 1:
        save_atomic(frames[0], target)
        return
    w, h = frames[0].size
    strip = Image.new(frames[0].mode, (w * len(frames), h))
    for i, frame in enumerate(frames):
        strip.paste(frame, (i * w, 0))
    save_atomic(strip, target)
    frames[0].save(target.with_suffix(".gif"), save_all=True, append_images=frames[1:], duration=200, loop=0)


# ----- label maps ---------------------------------------------------------------------------------
def load_label_ids(path: str | Path, palette: dict | None = None, what: str = "label map") -> np.ndarray:
    """The integer ids of a label or instance map (H, W), as stored: 8-bit, 16-bit, 32-bit or palette
    indices. An RGB file is a colour mask: accepted only when it is grey (R = G = B) or `palette` maps
    its colours."""
    path = _existing(path)
    with _reading(path), Image.open(_source(path)) as img:
        _check_header(img, path)
        # The photo is loaded upright (EXIF orientation applied): its map must turn with it.
        img = ImageOps.exif_transpose(img)
        mode = img.mode
        a = np.asarray(img)
    if mode.startswith("F") or a.dtype.kind == "f":
        raise ImageFileError(
            path,
            f"the {what} holds floating-point values (mode {mode}), not integer ids",
            "save it as an 8- or 16-bit integer PNG of the class ids",
        )
    if a.ndim == 2:
        return a.astype(np.int64)
    rgb = a[..., :3].astype(np.int64)
    if palette:
        codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        lut = {(r << 16) | (g << 8) | b: i for (r, g, b), i in palette.items()}
        uniq, inv = np.unique(codes, return_inverse=True)
        missing = [u for u in uniq if int(u) not in lut]
        if missing:
            shown = [((int(u) >> 16) & 255, (int(u) >> 8) & 255, int(u) & 255) for u in missing[:5]]
            raise ImageFileError(path, f"colours {shown} are not in data.palette", "add them to the palette JSON")
        return np.array([lut[int(u)] for u in uniq], dtype=np.int64)[inv].reshape(codes.shape)
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0]
    raise ImageFileError(
        path,
        f"the {what} is a colour image (mode {mode}), not a map of label ids",
        "save one 8-bit grayscale PNG per map whose pixel values are the class ids (e.g. "
        "Image.fromarray(ids.astype('uint8')).save(...)), or give data.palette=<json> mapping each colour "
        'to its id ({"0": [r, g, b], ...})',
    )


class LabelIds:
    """How a dataset's stored ids become training ids: `shift` (ADE20K: id - 1, so its 0 'other'
    becomes don't-care), `dontcare_id` (COCO-Stuff's 255), both mapped to `label_nc` (the extra
    don't-care channel, pix2pix_dataset.py). Checks every id against `label_nc`."""

    def __init__(self, label_nc: int, dontcare_id: int | None = None, shift: int = 0):
        if label_nc < 1:
            raise ConfigError(f"data.label_nc must be >= 1, got {label_nc}")
        self.label_nc, self.dontcare_id, self.shift = label_nc, dontcare_id, shift

    def convert(self, raw: np.ndarray, path: Path) -> np.ndarray:
        dontcare = raw == self.dontcare_id if self.dontcare_id is not None else np.zeros(raw.shape, bool)
        ids = raw - self.shift
        dontcare |= ids < 0
        bad = np.unique(ids[~dontcare & (ids >= self.label_nc)])
        if bad.size:
            shown = ", ".join(str(int(b + self.shift)) for b in bad[:10]) + (" ..." if bad.size > 10 else "")
            fix = f"data.label_nc={int(bad.max()) + 1}"
            if self.dontcare_id is None:
                fix += " (or data.dontcare_label=<id> if one of them marks unlabelled pixels)"
            raise ImageFileError(
                path,
                f"label ids {shown} are >= data.label_nc={self.label_nc}" + (f" (after subtracting {self.shift})" if self.shift else ""),
                f"set {fix}, or data.on_bad_file=skip",
            )
        return np.where(dontcare, self.label_nc, ids)
