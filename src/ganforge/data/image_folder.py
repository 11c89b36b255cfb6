"""Unconditional image data (DCGAN): batches {"real": images in [-1, 1], "label": class index}.

`ImageFolderDataModule` takes any folder of images, searched recursively; the first level of
subfolders names the classes (`data.classes=[frog]` keeps some), loose images are class "". Files of
any size and mode are made RGB or grayscale (`data.channels`), their shorter side resized to
`load_size` (bicubic), then cropped to `image_size` (centre, or random for training with
`crop=random`). Validation (the metrics callback, val/swd) uses `val_root` when set, else the
training images with a centre crop (the published FID protocol compares with the train split).
Every file is checked before the first step (the pre-scan of data/prescan.py: `data.verify`, `data.on_bad_file`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from ganforge.data.module import BAD_FILE_CHOICES, GANDataModule
from ganforge.data.prescan import FileCheck, PreScan
from ganforge.data.shards import FORMATS, ShardSplit, check_shards
from ganforge.data.shards import has_split as has_shard_split
from ganforge.utils.errors import ConfigError, DataLayoutError, ImageFileError
from ganforge.utils.imageio import (
    IMG_EXTENSIONS,
    image_to_tensor,
    is_image_file,
    load_image,
)

log = logging.getLogger(__name__)

CROPS = ("center", "random")


def find_images(root: Path, classes: Sequence[str] | None = None) -> tuple[list[Path], list[str]]:
    """Image files under `root` (recursive, sorted) and their class: the first subfolder's name."""
    if not root.is_dir():
        raise DataLayoutError(f"data.root={root} is not a folder; point it at a folder of images (subfolders allowed)")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and is_image_file(p) and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    labels = [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else "" for p in files]
    if classes is not None:
        missing = sorted(set(classes) - set(labels))
        if missing:
            raise DataLayoutError(
                f"data.classes names {missing}, which {root} has no subfolder of images for; its classes are {sorted(set(labels) - {''})}"
            )
        kept = [(f, c) for f, c in zip(files, labels) if c in classes]
        files, labels = [f for f, _ in kept], [c for _, c in kept]
    if not files:
        raise DataLayoutError(f"No images under {root}. Accepted extensions (any case): {' '.join(IMG_EXTENSIONS)}")
    return list(files), list(labels)


def fit_image(img: Image.Image, load_size: int, image_size: int, random_crop: bool, flip: bool) -> torch.Tensor:
    """Shorter side to `load_size` (bicubic), an `image_size` square crop, an optional flip: (C, S, S) in [-1, 1].
    Random draws use the global `random` stream (seeded by Lightning, per worker too, and restored on resume)."""
    w, h = img.size
    scale = load_size / min(w, h)
    if (w, h) != (round(w * scale), round(h * scale)):
        img = img.resize((max(load_size, round(w * scale)), max(load_size, round(h * scale))), Image.Resampling.BICUBIC)
    w, h = img.size
    if random_crop:
        x, y = random.randint(0, w - image_size), random.randint(0, h - image_size)
    else:
        x, y = (w - image_size) // 2, (h - image_size) // 2
    img = img.crop((x, y, x + image_size, y + image_size))
    if flip and random.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image_to_tensor(img)


class UnconditionalDataset(Dataset):
    """Items {"real", "label"} from `load(i) -> (PIL image, label)`; `on_bad_file=skip` takes the next
    readable item instead of a bad one and reports each bad file once."""

    def __init__(self, n: int, load, load_size: int, image_size: int, train: bool, crop: str, flip: bool, on_bad_file: str):
        self.n, self.load = n, load
        self.load_size, self.image_size = load_size, image_size
        self.random_crop, self.flip = train and crop == "random", train and flip
        self.on_bad_file = on_bad_file
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        for i in (j % self.n for j in range(index, index + self.n)):
            if i in self._bad:
                continue
            try:
                img, label = self.load(i)
            except ImageFileError as e:
                if self.on_bad_file == "error":
                    raise
                self._bad.add(i)
                log.warning("Skipping a bad file (data.on_bad_file=skip): %s", e)
                continue
            return {"real": fit_image(img, self.load_size, self.image_size, self.random_crop, self.flip), "label": torch.tensor(label)}
        raise DataLayoutError(f"Every one of the {self.n} images is unreadable (data.on_bad_file=skip)")


class UnconditionalDataModule(GANDataModule):
    """What the unconditional modules share: checks, loaders, the fixed grid batch. Subclasses
    implement `_dataset(train)`."""

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        load_size: int | None = None,
        crop: str = "center",
        flip: bool = False,
        classes: Sequence[str] | None = None,
        batch_size: int = 64,
        val_batch_size: int | None = None,
        num_workers: int = 2,
        on_bad_file: str = "error",
        num_val_images: int | None = None,
        # `debug=tiny` sets the crop-based datasets' crop_size; here image_size is the crop.
        crop_size: int | None = None,
    ):
        super().__init__()
        self.image_size, self.channels = image_size, channels
        self.load_size = load_size or image_size
        self.crop, self.flip = crop, flip
        self.classes = list(classes) if classes is not None else None
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.num_workers, self.on_bad_file, self.num_val_images = num_workers, on_bad_file, num_val_images
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def _check(self) -> None:
        # In setup, not __init__: Hydra would wrap an error raised while instantiating.
        if self.channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 or 3, got {self.channels}")
        if self.crop not in CROPS:
            raise ConfigError(f"data.crop must be one of {CROPS}, got {self.crop!r}")
        if self.on_bad_file not in BAD_FILE_CHOICES:
            raise ConfigError(f"data.on_bad_file must be 'error' or 'skip', got {self.on_bad_file!r}")
        if self.load_size < self.image_size:
            raise ConfigError(f"data.load_size ({self.load_size}) must be >= data.image_size ({self.image_size})")
        if min(self.batch_size, self.val_batch_size) < 1:
            raise ConfigError(f"data.batch_size and data.val_batch_size must be >= 1, got {self.batch_size}, {self.val_batch_size}")

    def _dataset(self, train: bool) -> Dataset:
        raise NotImplementedError

    def _wrap(self, n: int, load, train: bool) -> UnconditionalDataset:
        return UnconditionalDataset(n, load, self.load_size, self.image_size, train, self.crop, self.flip, self.on_bad_file)

    def setup(self, stage: str | None = None) -> None:
        self._check()
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._dataset(train=True)
        if self.val_set is None:
            val = self._dataset(train=False)
            n = self.num_val_images
            self.val_set = Subset(val, range(min(n, len(val)))) if n is not None else val  # type: ignore[arg-type]  # torch's Dataset declares no __len__; map-style datasets have one

    def _loader(self, ds: Dataset | None, batch_size: int, shuffle: bool) -> DataLoader:
        if ds is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for a dataloader")
        # Not persistent: each epoch's workers are seeded from the checkpointed main stream (exact resume).
        return DataLoader(
            ds, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers, persistent_workers=False, drop_last=False
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.val_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()


class ImageFolderDataModule(UnconditionalDataModule):
    """Any folder of images. Every file is checked before the first step (data/prescan.py, `verify`)."""

    def __init__(self, root: str | None = None, val_root: str | None = None, format: str = "folders", verify: str = "header", **kwargs):
        super().__init__(**kwargs)
        if format not in FORMATS:
            raise ConfigError(f"data.format must be one of {', '.join(FORMATS)}, got {format!r}")
        self.root, self.val_root, self.shards, self.verify = root, val_root, format == "shards", verify
        self.prescan: PreScan | None = None

    def _check(self) -> None:
        super()._check()
        self.prescan = self.prescan or PreScan(self.on_bad_file, self.verify)

    def _folder(self, train: bool) -> Path:
        if not self.root:
            raise ConfigError("data.root=<folder of images> is required, e.g. data.root=../shared/data/cifar10_frog/train")
        return Path(self.val_root if (self.val_root and not train) else self.root).expanduser()

    def _files(self, train: bool) -> tuple[list[Path], list[int]]:
        files, labels = find_images(self._folder(train), self.classes)
        names = sorted(set(labels))
        return files, [names.index(c) for c in labels]

    def _checked_files(self, train: bool) -> tuple[list[Path], list[int]]:
        """`_files` less the bad ones the pre-scan found (on_bad_file=skip; error stops here, naming them all)."""
        files, ids = self._files(train)
        assert self.prescan is not None, "setup() runs _check first"
        bad = self.prescan.bad_paths([FileCheck(f, self.channels) for f in files], self._folder(train))
        kept = [(f, i) for f, i in zip(files, ids) if f not in bad]
        if not kept:
            raise DataLayoutError(f"Every image under {self._folder(train)} is bad ({len(files)} files, e.g. {files[0]})")
        return [f for f, _ in kept], [i for _, i in kept]

    def _dataset(self, train: bool) -> Dataset:
        if self.shards:
            if not self.root:
                raise ConfigError("data.format=shards needs data.root=<the folder ganforge-prepare wrote>")
            check_shards(self.root)
            split = ShardSplit(self.root, "val" if not train and has_shard_split(self.root, "val") else "train", single=True)
            return self._wrap(len(split), _ShardLoader(split, self.channels), train)
        files, ids = self._checked_files(train)
        return self._wrap(len(files), _FileLoader(files, ids, self.channels), train)

    def shard_splits(self) -> dict[str, tuple[list, list[int]]]:
        """What ganforge-prepare writes: the images of data.root (train) and data.val_root (val), with their
        class ids; `data.classes` chooses the classes at this point."""
        splits = {}
        for split, train in (("train", True),) + ((("val", False),) if self.val_root else ()):
            files, ids = self._files(train)
            splits[split] = ([(f,) for f in files], ids)
        return splits


class _ShardLoader:
    """Item i of a prepared split: its image and the class id stored with it."""

    def __init__(self, split: ShardSplit, channels: int):
        self.split, self.channels = split, channels

    def __call__(self, i: int) -> tuple[Image.Image, int]:
        return load_image(self.split[i], channels=self.channels), self.split.label(i)


class _FileLoader:
    """Item i of a file list (a class, not a lambda: DataLoader workers may need to pickle it)."""

    def __init__(self, files: list[Path], ids: list[int], channels: int):
        self.files, self.ids, self.channels = files, ids, channels

    def __call__(self, i: int) -> tuple[Image.Image, int]:
        return load_image(self.files[i], channels=self.channels), self.ids[i]
