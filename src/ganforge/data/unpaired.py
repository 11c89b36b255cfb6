"""Unpaired (unaligned) two-domain data for CycleGAN, DiscoGAN and DualGAN.

Layout (the CycleGAN archives): `<root>/trainA/`, `<root>/trainB/`, `<root>/testA/`, `<root>/testB/`
(`valA/` + `valB/` are used for validation when present, else the test split).

As the reference `unaligned_dataset.py` (`epoch_length: max`, the default): an epoch has
max(|A|, |B|) items; item i is A[i % |A|] and a B drawn at random (`serial_batches=true`:
B[i % |B|], and the loader does not shuffle). `epoch_length: min` is DiscoGAN's and DualGAN's
epoch: min(|A|, |B|) // batch_size full batches. The smaller domain then follows the loader's
shuffled index, so each of its images appears once an epoch, and the larger one is drawn at random.
The references instead take a prefix of a shuffled list, which never repeats an image within an
epoch; here one may repeat. A and B get independent random crops and flips. Evaluation splits
pair A[i % |A|] with B[i % |B|] deterministically, in max(|A|, |B|) items.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ganforge.data.datasets import Kind
from ganforge.data.module import FolderDataModule, TwoDomainDataset, split_name
from ganforge.data.prescan import FileCheck
from ganforge.data.shards import ShardSplit
from ganforge.data.shards import has_split as has_shard_split
from ganforge.utils.errors import ConfigError, DataLayoutError, ImageFileError
from ganforge.utils.imageio import list_images, load_image

EPOCH_LENGTHS = ("max", "min")

log = logging.getLogger(__name__)


def has_split(root: Path, split: str) -> bool:
    return (root / f"{split}A").is_dir() and (root / f"{split}B").is_dir()


class UnpairedDataset(TwoDomainDataset):
    """One split. Items: {"A": (input_nc,H,W), "B": (output_nc,H,W), "A_path", "B_path"} in [-1, 1].
    `options`: the `TwoDomainDataset` arguments."""

    def __init__(
        self,
        root: str | Path,
        split: str,
        serial_batches: bool = False,
        epoch_length: str = "max",
        batch_size: int = 1,
        files: Mapping[str, Sequence] | None = None,
        **options: Any,
    ):
        """`files`: each domain's files, when they are not found in `root` (shards)."""
        super().__init__(**options)
        if epoch_length not in EPOCH_LENGTHS:
            raise ConfigError(f"data.epoch_length must be 'max' (CycleGAN) or 'min' (DiscoGAN, DualGAN), got {epoch_length!r}")
        self.folders = {d: Path(root) / f"{split}{d}" for d in "AB"}
        self.files = {
            d: (files[d] if files is not None else list_images(folder))[: self.max_dataset_size] for d, folder in self.folders.items()
        }
        # Evaluation is deterministic; training draws B at random unless serial_batches.
        self.random_b = self.train and not serial_batches
        self.epoch_length, self.batch_size = epoch_length, batch_size
        self._index()

    def _index(self) -> None:
        """The epoch length, and which domain the loader indexes, from the file lists."""
        self._bad: dict[str, set[int]] = {"A": set(), "B": set()}
        sizes = {d: len(f) for d, f in self.files.items()}
        self.length = max(sizes.values())
        # epoch_length=min: the domain with fewer images is indexed by the loader, the other drawn.
        self.indexed = min(sizes, key=sizes.__getitem__) if self.train and self.epoch_length == "min" else None
        if self.indexed:
            self.length = sizes[self.indexed] // self.batch_size * self.batch_size
            if self.length == 0:
                raise ConfigError(
                    f"data.epoch_length=min makes epochs of min(|A|, |B|) // batch_size full batches, but "
                    f"{self.folders[self.indexed]} has {sizes[self.indexed]} images for data.batch_size={self.batch_size}; "
                    "lower data.batch_size or set data.epoch_length=max"
                )

    def file_checks(self) -> list[FileCheck]:
        return [FileCheck(p, self.channels[d]) for d, files in self.files.items() for p in files]

    def drop(self, bad: set[Path]) -> None:
        """Leave out the bad files (on_bad_file=skip after the pre-scan)."""
        for d, files in self.files.items():
            kept = [p for p in files if p not in bad]
            if not kept:
                raise DataLayoutError(f"Every file of domain {d} in {self.folders[d]} is bad ({len(files)} files)")
            self.files[d] = kept
        self._index()

    def __len__(self) -> int:
        return self.length

    def _load(self, domain: str, index: int) -> dict:
        path = self.files[domain][index]
        img = load_image(path, self.channels[domain])
        return {domain: self.transform(domain, img, self.crop_params(img.size)), f"{domain}_path": str(path)}

    def _load_good(self, domain: str, index: int) -> dict:
        """`on_bad_file=skip`: the next readable file of the domain, each bad file reported once."""
        if self.on_bad_file == "error":
            return self._load(domain, index)
        files, bad = self.files[domain], self._bad[domain]
        for i in (j % len(files) for j in range(index, index + len(files))):
            if i in bad:
                continue
            try:
                return self._load(domain, i)
            except ImageFileError as e:
                bad.add(i)
                log.warning("Skipping a bad file (data.on_bad_file=skip): %s", e)
        raise DataLayoutError(f"Every file of domain {domain} is unreadable ({len(files)} files, e.g. {files[0]})")

    def __getitem__(self, index: int) -> dict:
        # The global `random` stream: seeded by Lightning (per worker too) and restored on resume.
        if self.indexed:
            drawn = "B" if self.indexed == "A" else "A"
            n = len(self.files[drawn])
            indices = {self.indexed: index, drawn: random.randint(0, n - 1) if self.random_b else index % n}
        else:
            n_b = len(self.files["B"])
            indices = {"A": index % len(self.files["A"]), "B": random.randint(0, n_b - 1) if self.random_b else index % n_b}
        return {**self._load_good("A", indices["A"]), **self._load_good("B", indices["B"])}


class UnpairedDataModule(FolderDataModule):
    """A named CycleGAN dataset (downloaded when missing) or any folder with trainA/ trainB/ (testA/ testB/)."""

    kind: Kind = "unpaired"
    train_marker = "trainA/ and trainB/"

    def __init__(self, serial_batches: bool = False, epoch_length: str = "max", **options: Any):
        """`options`: the `FolderDataModule` arguments."""
        if epoch_length not in EPOCH_LENGTHS:
            raise ConfigError(f"data.epoch_length must be 'max' (CycleGAN) or 'min' (DiscoGAN, DualGAN), got {epoch_length!r}")
        super().__init__(**options)

    def _has_split(self, split: str) -> bool:
        if self.shards:
            return has_shard_split(self.root, f"{split}A") and has_shard_split(self.root, f"{split}B")
        return has_split(self.root, split)

    def _layout_error(self, wanted: str) -> DataLayoutError:
        return DataLayoutError(f"No {split_name(wanted)} data in {self.root}: expected {self.root}/{wanted}A/ and {self.root}/{wanted}B/")

    def _dataset(self, split: str, train: bool) -> UnpairedDataset:  # type: ignore[override]  # _no_split raises: never None
        hp = self.hparams
        files = {d: ShardSplit(self.root, f"{split}{d}", single=True) for d in "AB"} if self.shards else None
        return UnpairedDataset(self.root, split, hp.serial_batches, hp.epoch_length, hp.batch_size, files, **self._dataset_options(train))

    def shard_splits(self) -> dict[str, tuple[list, None]]:
        """What ganforge-prepare writes: each split's domains, trainA, trainB, ... (one file an entry)."""
        return {
            f"{split}{d}": ([(p,) for p in list_images(self.root / f"{split}{d}")], None)
            for split in ("train", "val", "test")
            if has_split(self.root, split)
            for d in "AB"
        }

    def _shuffle_train(self) -> bool:
        # The reference shuffles unless serial_batches (then A and B are both in order).
        return not self.hparams.serial_batches
