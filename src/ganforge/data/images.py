"""Finding and loading image files, with one clear error per unusable file.

`load_image` always returns an 8-bit "RGB" or "L" image, whatever the file holds, so the
transforms downstream never see a 16-bit, float, palette or alpha image.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ganforge.errors import DataLayoutError, ImageFileError

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
        raise DataLayoutError(
            f"No images in {folder}. Accepted extensions (any case): {' '.join(IMG_EXTENSIONS)}"
        )
    return paths


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit ("I;16*"), 32-bit int ("I") and float ("F") images -> "L", stretched from the
    image's own min..max to 0..255. Order is kept and nothing clips (PIL's convert("L")
    turns every value above 255 white). A constant image maps to 0 if it is <= 0, else 255."""
    a = np.asarray(img, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
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
    # CMYK, YCbCr, "1" and palette images go through PIL's own conversion.
    try:
        return img.convert(target)
    except ValueError as e:
        raise ImageFileError(
            path, f"cannot convert PIL mode {img.mode} to {target} ({e})", "save it as RGB PNG or JPEG"
        ) from None


def load_image(path: str | Path, channels: int = 3) -> Image.Image:
    """Load `path` fully decoded as 8-bit "RGB" (channels=3) or "L" (channels=1).

    Animated GIFs and multi-page TIFFs give their first frame, with one warning per file.
    Raises ImageFileError naming the file when it is missing, empty, not an image, or
    truncated/corrupt (the full decode happens here, not lazily in a DataLoader worker).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    path = Path(path)
    if not path.is_file():
        raise ImageFileError(path, "file not found", "check the path and the dataset folder")
    if path.stat().st_size == 0:
        raise ImageFileError(path, "file is empty (0 bytes)", SKIP_HINT)
    try:
        with Image.open(path) as img:
            if getattr(img, "n_frames", 1) > 1:
                if str(path) not in _warned_multiframe:
                    _warned_multiframe.add(str(path))
                    warnings.warn(
                        f"{path} has {img.n_frames} frames (animated GIF or multi-page TIFF); "
                        "using the first frame",
                        stacklevel=2,
                    )
                img.seek(0)
            img.load()
            return _normalise_mode(img, path, "RGB" if channels == 3 else "L")
    except UnidentifiedImageError:
        raise ImageFileError(path, "not an image file PIL can read", SKIP_HINT) from None
    except Image.DecompressionBombError as e:
        raise ImageFileError(
            path, str(e), "downscale the file, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust it"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # PIL reports truncated and corrupt data as OSError ("image file is truncated"),
        # SyntaxError (bad headers) or ValueError/EOFError, depending on the format plugin.
        raise ImageFileError(path, f"truncated or corrupt image ({e})", SKIP_HINT) from None
