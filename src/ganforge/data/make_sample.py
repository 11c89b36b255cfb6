"""Build the embedded edges->photo sample (pix2pix A|B layout) from public-domain/CC0 photos.

    python -m ganforge.data.make_sample --src <dir with the photos> --out src/ganforge/assets/sample_edges2photo

For each photo: seeded random square crops at a few scales, each resized to 256x256 (B),
and an edge map of it drawn here (A: grayscale -> blur -> Sobel magnitude -> thin to ridges
-> threshold at a percentile -> black edges on white, like edges2shoes). A|B is saved as a 512x256 JPEG.
The rocket photo is held out for val, so validation images are unseen in training.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

SIZE = 256
SEED = 0
SCALES = (1.0, 0.8, 0.65, 0.5)  # crop side as a fraction of the photo's shorter side
EDGE_PERCENTILE = 85.0  # ridge pixels stronger than 85% of all gradients are edges
BLUR_RADIUS = 1.5
JPEG_QUALITY = 90

# file -> (split, crops, provenance, license); all redistributable.
SOURCES = {
    "astronaut.png": (
        "train",
        10,
        "Astronaut Eileen Collins, from the NASA Great Images database; scikit-image `data.astronaut`",
        'public domain ("No known copyright restrictions, released into the public domain")',
    ),
    "chelsea.png": (
        "train",
        10,
        "Chelsea the cat, photo by Stefan van der Walt; scikit-image `data.chelsea`",
        'CC0 ("No copyright restrictions. CC0 by the photographer")',
    ),
    "coffee.png": (
        "train",
        10,
        "A cup of coffee, courtesy of Pikolo Espresso Bar, photo by Rachel Michetti; scikit-image `data.coffee`",
        'CC0 ("No copyright restrictions. CC0 by the photographer")',
    ),
    "grace_hopper.jpg": (
        "train",
        10,
        "Rear Admiral Grace Hopper, official US Navy photo; matplotlib `sample_data/grace_hopper.jpg`",
        "public domain (work of the US federal government)",
    ),
    "rocket.jpg": (
        "val",
        8,
        "Launch of DSCOVR on a SpaceX Falcon 9; scikit-image `data.rocket`",
        "public domain (released by SpaceX)",
    ),
}


def edge_map(photo: Image.Image) -> Image.Image:
    """Black line drawing on white: Sobel magnitude of the blurred luminance, thinned to
    ridge lines (non-maximum suppression along the gradient), thresholded at a percentile,
    then thickened to ~3 px so the lines survive JPEG and resizing."""
    g = np.asarray(photo.convert("L").filter(ImageFilter.GaussianBlur(BLUR_RADIUS)), dtype=np.float32)
    p = np.pad(g, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    mag = np.hypot(gx, gy)
    # Gradient direction in 4 bins (0, 45, 90, 135 degrees) and the neighbour offset of each.
    direction = np.round(np.arctan2(gy, gx) / (np.pi / 4)).astype(int) % 4
    m = np.pad(mag, 1)
    h, w = mag.shape
    ridge = np.zeros_like(mag, dtype=bool)
    for k, (dy, dx) in enumerate(((0, 1), (1, 1), (1, 0), (1, -1))):
        ahead = m[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        behind = m[1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]
        ridge |= (direction == k) & (mag >= ahead) & (mag >= behind)
    edges = ridge & (mag > np.percentile(mag, EDGE_PERCENTILE))
    return Image.fromarray(np.where(edges, 0, 255).astype(np.uint8), "L").filter(ImageFilter.MinFilter(3))


def crops(photo: Image.Image, n: int, rng: np.random.Generator) -> list[Image.Image]:
    """n square crops, cycling through SCALES, at seeded random positions, resized to SIZE."""
    w, h = photo.size
    out = []
    for i in range(n):
        side = int(min(w, h) * SCALES[i % len(SCALES)])
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        out.append(photo.crop((x, y, x + side, y + side)).resize((SIZE, SIZE), Image.Resampling.LANCZOS))
    return out


def find_source(src: Path, name: str) -> Path:
    hits = sorted(src.rglob(name))
    if not hits:
        raise SystemExit(f"{name} not found under {src}")
    return hits[0]


def build(src: Path, out: Path) -> dict[str, int]:
    if out.exists():
        shutil.rmtree(out)
    counts = {"train": 0, "val": 0}
    for index, (name, (split, n, _, _)) in enumerate(SOURCES.items()):
        photo = Image.open(find_source(src, name)).convert("RGB")
        (out / split).mkdir(parents=True, exist_ok=True)
        for k, b in enumerate(crops(photo, n, np.random.default_rng(SEED + index))):
            pair = Image.new("RGB", (2 * SIZE, SIZE))
            pair.paste(edge_map(b).convert("RGB"), (0, 0))
            pair.paste(b, (SIZE, 0))
            pair.save(out / split / f"{Path(name).stem}_{k:02d}.jpg", quality=JPEG_QUALITY)
            counts[split] += 1
    return counts


def write_readme(out: Path, counts: dict[str, int]) -> None:
    size_kb = sum(p.stat().st_size for p in out.rglob("*.jpg")) / 1024
    rows = "\n".join(f"| `{name}` | {split} | {n} | {prov} | {lic} |" for name, (split, n, prov, lic) in SOURCES.items())
    (out / "README.md").write_text(
        f"""# sample_edges2photo: a tiny real-photo edges -> photo pix2pix set

A pix2pix dataset in the A|B layout: each file is {2 * SIZE}x{SIZE}, the left half (A) an edge
map, the right half (B) the photo. It ships inside ganforge so training, tests and demos run
offline. It is far too small to learn edges -> photo; it is for smoke tests and demos.

- `train/`: {counts["train"]} pairs from 4 photos; `val/`: {counts["val"]} pairs from a 5th photo
  (rocket) that training never sees. {size_kb:.0f} KB of JPEGs in total.
- Made with (from the repository root; `--src` is any folder holding the five photos):

      python -m ganforge.data.make_sample --src ../shared/data/pypi_bundled --out src/ganforge/assets/sample_edges2photo

- How: per photo, seeded (seed {SEED} + photo index) random square crops with sides of
  {", ".join(str(s) for s in SCALES)} x the shorter side, resized to {SIZE}x{SIZE} (Lanczos) = B.
  A = our own edge drawing of B (numpy + PIL): grayscale, Gaussian blur (radius {BLUR_RADIUS}),
  Sobel magnitude, non-maximum suppression, threshold at the {EDGE_PERCENTILE:g}th percentile,
  black edges on white thickened with a 3x3 min filter.
  Saved as JPEG quality {JPEG_QUALITY}. `data=sample` trains direction BtoA (photo -> edges), which
  pix2pix learns in the first run's 5 epochs (docs/training.md, "The first run"); AtoB is edges -> photo.

## Sources and licenses

All five photos are public domain or CC0, so these derived images may be redistributed.
They were taken from files bundled in the scikit-image 0.26.0 and matplotlib 3.11.2 wheels.

| file | split | pairs | what / credit | license |
|---|---|---|---|---|
{rows}
"""
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help="folder (searched recursively) with the photos")
    parser.add_argument("--out", type=Path, required=True, help="output folder; replaced if it exists")
    args = parser.parse_args()
    counts = build(args.src, args.out)
    write_readme(args.out, counts)
    print(f"wrote {counts} pairs to {args.out}")


if __name__ == "__main__":
    main()
