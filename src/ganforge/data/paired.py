"""Paired (aligned) data for pix2pix and BicycleGAN: a Dataset and a LightningDataModule.

Two layouts work, the reference ones:
  * `<root>/<split>/*.jpg`, each file A|B side by side (the pix2pix archives);
  * `<root>/A/<split>/` + `<root>/B/<split>/`, files matched by stem (`combine_A_and_B.py` input).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only
from PIL import Image

from ganforge.data.datasets import Kind
from ganforge.data.module import FolderDataModule, TwoDomainDataset, item_or_next_good, split_name
from ganforge.data.prescan import FileCheck
from ganforge.data.shards import ShardSplit
from ganforge.data.shards import has_split as has_shard_split
from ganforge.utils.errors import ConfigError, DataLayoutError, ImageFileError
from ganforge.utils.imageio import is_image_file, list_images, load_image

log = logging.getLogger(__name__)

DIRECTIONS = ("AtoB", "BtoA")


def _info(msg: str, *args) -> None:
    if getattr(rank_zero_only, "rank", 0) == 0:
        log.info(msg, *args)


def _match_by_stem(a_dir: Path, b_dir: Path) -> list[tuple[Path, Path]]:
    def by_stem(folder: Path) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for p in list_images(folder):
            if p.stem in out:
                raise DataLayoutError(f"Two files with the stem {p.stem!r} in {folder}: {out[p.stem].name}, {p.name}")
            out[p.stem] = p
        return out

    a, b = by_stem(a_dir), by_stem(b_dir)
    only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    if only_a or only_b:
        raise DataLayoutError(
            f"A and B files must match by name (stem). {len(only_a)} in {a_dir} have no partner "
            f"(e.g. {only_a[:5]}); {len(only_b)} in {b_dir} have no partner (e.g. {only_b[:5]})."
        )
    return [(a[s], b[s]) for s in sorted(a)]


def find_pairs(root: Path, split: str | None) -> list[tuple[Path, Path]]:
    """(A, B) file pairs of a split; for the A|B layout both entries are the same file.
    `split=None` means A|B images directly in `root`."""
    if split is None:
        return [(p, p) for p in list_images(root)]
    if (root / "A" / split).is_dir() or (root / "B" / split).is_dir():
        return _match_by_stem(root / "A" / split, root / "B" / split)
    return [(p, p) for p in list_images(root / split)]


def has_split(root: Path, split: str) -> bool:
    return (root / split).is_dir() or (root / "A" / split).is_dir()


def has_loose_images(root: Path) -> bool:
    return root.is_dir() and any(p.is_file() and is_image_file(p) for p in root.iterdir())


class PairedDataset(TwoDomainDataset):
    """One split of a paired dataset. Items: {"A": (input_nc,H,W), "B": (output_nc,H,W),
    "A_path", "B_path"}, tensors in [-1, 1], A the generator input after `direction`.

    train=True draws a random crop/flip per item (shared by A and B); train=False is the
    reference's test-time preprocess made deterministic (`TwoDomainDataset`). `options`: the
    `TwoDomainDataset` arguments.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None,
        direction: str = "AtoB",
        pairs: Sequence[tuple] | None = None,
        **options: Any,
    ):
        """`pairs`: the (A, B) files, when they are not found in `root`/`split` (shards)."""
        super().__init__(**options)
        if direction not in DIRECTIONS:
            raise ConfigError(f"direction must be AtoB or BtoA, got {direction!r}")
        self.pairs = (pairs if pairs is not None else find_pairs(Path(root), split))[: self.max_dataset_size]
        self.direction = direction
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.pairs)

    def file_checks(self) -> list[FileCheck]:
        """What the pre-scan checks: every file, and the even width of A|B images."""
        return [FileCheck(p, side_by_side=a == b) for a, b in self.pairs for p in dict.fromkeys((a, b))]

    def drop(self, bad: set[Path]) -> None:
        """Leave out the pairs with a bad file (on_bad_file=skip after the pre-scan)."""
        kept = [(a, b) for a, b in self.pairs if a not in bad and b not in bad]
        if not kept:
            raise DataLayoutError(f"Every file in this split is bad ({len(self.pairs)} files, e.g. {self.pairs[0][0]})")
        self.pairs, self._bad = kept, set()

    def _load_pair(self, index: int) -> tuple[Image.Image, Image.Image]:
        """Left/right (or A/B-folder) images, before `direction` is applied."""
        a_path, b_path = self.pairs[index]
        if a_path != b_path:
            return load_image(a_path), load_image(b_path)
        ab = load_image(a_path)
        w, h = ab.size
        if w % 2:
            raise ImageFileError(
                a_path,
                f"width {w} is odd; an A|B side-by-side image must have an even width",
                "re-create the pair with equal-size halves, or set data.on_bad_file=skip",
            )
        return ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, w, h))

    def _item(self, index: int) -> dict:
        left, right = self._load_pair(index)
        a_path, b_path = (str(p) for p in self.pairs[index])
        if self.direction == "BtoA":
            left, right, a_path, b_path = right, left, b_path, a_path
        params = self.crop_params(left.size)
        out = {"A": self.transform("A", left, params), "B": self.transform("B", right, params)}
        a_size, b_size = tuple(out["A"].shape[1:]), tuple(out["B"].shape[1:])
        if a_size != b_size:
            raise ImageFileError(
                a_path,
                f"A is {a_size} but B is {b_size} (H, W) after preprocess={self.preprocessing.preprocess}",
                "give A and B the same size, or use preprocess=resize_and_crop",
            )
        return {**out, "A_path": a_path, "B_path": b_path}

    def __getitem__(self, index: int) -> dict:
        return item_or_next_good(self, index, self.pairs[0][0])


class PairedDataModule(FolderDataModule):
    """A named pix2pix dataset (downloaded when missing) or any folder in a paired layout."""

    kind: Kind = "paired"
    train_marker = "train/ (A|B images), A/train/ + B/train/, or images directly in it"

    def __init__(self, direction: str = "AtoB", **options: Any):
        """`options`: the `FolderDataModule` arguments."""
        super().__init__(**options)
        if direction not in DIRECTIONS:
            raise ConfigError(f"data.direction must be AtoB or BtoA, got {direction!r}")

    def _has_split(self, split: str) -> bool:
        return has_shard_split(self.root, split) if self.shards else has_split(self.root, split)

    def _has_data(self) -> bool:
        return has_split(self.root, "train") or has_loose_images(self.root)

    def _no_split(self, wanted: str) -> str | None:
        if not self.shards and has_loose_images(self.root):
            _info("No %s/ folder in %s: using the images directly in it for %s", wanted, self.root, wanted)
            return None
        raise self._layout_error(wanted)

    def _layout_error(self, wanted: str) -> DataLayoutError:
        return DataLayoutError(
            f"No {split_name(wanted)} data in {self.root}: expected {self.root}/{wanted}/ (A|B images), "
            f"{self.root}/A/{wanted}/ + {self.root}/B/{wanted}/, or images directly in {self.root}"
        )

    def _dataset(self, split: str | None, train: bool) -> PairedDataset:
        pairs = ShardSplit(self.root, split) if self.shards and split is not None else None
        return PairedDataset(self.root, split, self.hparams.direction, pairs, **self._dataset_options(train))

    def shard_splits(self) -> dict[str, tuple[list, None]]:
        """What ganforge-prepare writes: each split's (A, B) file pairs."""
        return {split: (find_pairs(self.root, split), None) for split in ("train", "val", "test") if has_split(self.root, split)}
