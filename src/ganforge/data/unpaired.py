"""Unpaired (unaligned) two-domain data for CycleGAN, DiscoGAN and DualGAN.

Layout (the CycleGAN archives): `<root>/trainA/`, `<root>/trainB/`, `<root>/testA/`, `<root>/testB/`
(`valA/` + `valB/` are used for validation when present, else the test split).

As the reference `unaligned_dataset.py`: an epoch has max(|A|, |B|) items; item i is A[i % |A|]
and a B drawn at random (`serial_batches=true`: B[i % |B|], and the loader does not shuffle).
A and B get independent random crops and flips. Evaluation splits pair A[i % |A|] with
B[i % |B|] deterministically.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from ganforge.data.datasets import download_and_extract, get_spec
from ganforge.data.images import list_images, load_image
from ganforge.data.paired import BAD_FILE_CHOICES
from ganforge.data.transforms import build_transform, center_params, check_preprocess, get_params
from ganforge.errors import ConfigError, DataLayoutError, DatasetUnavailableError, ImageFileError

log = logging.getLogger(__name__)


def has_split(root: Path, split: str) -> bool:
    return (root / f"{split}A").is_dir() and (root / f"{split}B").is_dir()


class UnpairedDataset(Dataset):
    """One split. Items: {"A": (input_nc,H,W), "B": (output_nc,H,W), "A_path", "B_path"} in [-1, 1]."""

    def __init__(
        self,
        root: str | Path,
        split: str,
        load_size: int = 286,
        crop_size: int = 256,
        preprocess: str = "resize_and_crop",
        flip: bool = True,
        input_nc: int = 3,
        output_nc: int = 3,
        size_multiple: int = 1,
        fit: str = "resize",
        on_bad_file: str = "error",
        max_dataset_size: int | None = None,
        serial_batches: bool = False,
        train: bool = True,
    ):
        check_preprocess(preprocess, fit)
        if on_bad_file not in BAD_FILE_CHOICES:
            raise ConfigError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
        root = Path(root)
        self.files = {d: list_images(root / f"{split}{d}")[:max_dataset_size] for d in "AB"}
        self.channels = {"A": input_nc, "B": output_nc}
        self.preprocess, self.crop_size = preprocess, crop_size
        # Reference test time: load_size = crop_size, so resize_and_crop is a plain resize.
        self.load_size = load_size if train or preprocess in ("crop", "scale_width", "none") else crop_size
        self.flip, self.size_multiple, self.fit = flip and train, size_multiple, fit
        self.on_bad_file, self.train = on_bad_file, train
        # Evaluation is deterministic; training draws B at random unless serial_batches.
        self.random_b = train and not serial_batches
        self._bad: dict[str, set[int]] = {"A": set(), "B": set()}

    def __len__(self) -> int:
        return max(len(self.files["A"]), len(self.files["B"]))

    def _load(self, domain: str, index: int) -> dict:
        path = self.files[domain][index]
        img = load_image(path, self.channels[domain])
        args = (self.preprocess, self.load_size, self.crop_size)
        params = get_params(*args, img.size, self.flip) if self.train else center_params(*args, img.size)
        t = build_transform(*args, params, self.channels[domain], self.size_multiple, self.fit)(img)
        return {domain: t, f"{domain}_path": str(path)}

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
        n_b = len(self.files["B"])
        # The global `random` stream: seeded by Lightning (per worker too) and restored on resume.
        b_index = random.randint(0, n_b - 1) if self.random_b else index % n_b
        return {**self._load_good("A", index % len(self.files["A"])), **self._load_good("B", b_index)}


class UnpairedDataModule(L.LightningDataModule):
    """A named CycleGAN dataset (downloaded when missing) or any folder with trainA/ trainB/ (testA/ testB/)."""

    def __init__(
        self,
        name: str | None = None,
        root: str | None = None,
        download: bool = True,
        load_size: int = 286,
        crop_size: int = 256,
        preprocess: str = "resize_and_crop",
        flip: bool = True,
        input_nc: int = 3,
        output_nc: int = 3,
        batch_size: int = 1,
        num_workers: int = 2,
        serial_batches: bool = False,
        size_multiple: int = 1,
        fit: str = "resize",
        on_bad_file: str = "error",
        max_dataset_size: int | None = None,
        val_batch_size: int | None = None,
        num_val_images: int | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        if root is None and name is None:
            raise ConfigError("Set data.name (a known dataset) or data.root (a folder with trainA/ and trainB/)")
        for key, value in (("batch_size", batch_size), ("val_batch_size", val_batch_size or 1)):
            if value < 1:
                raise ConfigError(f"data.{key} must be >= 1, got {value}")
        check_preprocess(preprocess, fit)
        if on_bad_file not in BAD_FILE_CHOICES:
            raise ConfigError(f"data.on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
        if preprocess in ("resize_and_crop", "scale_width_and_crop") and load_size < crop_size:
            raise ConfigError(f"data.load_size ({load_size}) must be >= data.crop_size ({crop_size}) for {preprocess}")
        self.root = Path(root).expanduser() if root is not None else Path("data") / name
        #: set by the trainer from the generators (e.g. 4 for the ResNet generator), read in `setup`
        self.size_multiple = size_multiple
        self.train_set: UnpairedDataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: UnpairedDataset | None = None

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node, before `setup` on every process.
        if has_split(self.root, "train"):
            return
        if self.hparams.name is None:
            raise DataLayoutError(f"No training data in {self.root}: expected {self.root}/trainA/ and {self.root}/trainB/")
        if not self.hparams.download:
            raise DatasetUnavailableError(
                f"{self.hparams.name} is not in {self.root} and data.download=false. Set data.download=true, "
                f"or extract the archive so that {self.root}/trainA exists."
            )
        download_and_extract(get_spec(self.hparams.name, "unpaired"), self.root)

    def _dataset(self, split: str, train: bool) -> UnpairedDataset:
        hp = self.hparams
        return UnpairedDataset(
            self.root, split, hp.load_size, hp.crop_size, hp.preprocess, hp.flip, hp.input_nc, hp.output_nc,
            self.size_multiple, hp.fit, hp.on_bad_file, hp.max_dataset_size, hp.serial_batches, train,
        )

    def _resolve(self, wanted: str, fallbacks: tuple[str, ...]) -> str:
        for split in (wanted, *fallbacks):
            if has_split(self.root, split):
                if split != wanted and rank_zero_only.rank == 0:
                    log.info("No %sA/ + %sB/ in %s: using %r for %s", wanted, wanted, self.root, split, wanted)
                return split
        raise DataLayoutError(f"No {wanted} data in {self.root}: expected {self.root}/{wanted}A/ and {self.root}/{wanted}B/")

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.train_set = self._dataset(self._resolve("train", ()), train=True)
        if stage in (None, "fit", "validate"):
            val = self._dataset(self._resolve("val", ("test", "train")), train=False)
            n = self.hparams.num_val_images
            self.val_set = Subset(val, range(min(n, len(val)))) if n is not None else val
        if stage in (None, "test", "predict"):
            self.test_set = self._dataset(self._resolve("test", ("val", "train")), train=False)

    def _loader(self, ds: Dataset | None, batch_size: int, shuffle: bool) -> DataLoader:
        if ds is None:
            raise RuntimeError("UnpairedDataModule.setup() must run before asking for a dataloader")
        workers = self.hparams.num_workers
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=workers, persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        # The reference shuffles unless serial_batches (then A and B are both in order).
        return self._loader(self.train_set, self.hparams.batch_size, shuffle=not self.hparams.serial_batches)

    def _eval_batch_size(self) -> int:
        return self.hparams.val_batch_size or self.hparams.batch_size

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self._eval_batch_size(), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self._eval_batch_size(), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def fixed_val_batch(self, n: int) -> dict:
        """The first n validation items (A and B), collated: a fixed batch for image grids."""
        if self.val_set is None:
            self.setup("validate")
        return default_collate([self.val_set[i] for i in range(min(n, len(self.val_set)))])
