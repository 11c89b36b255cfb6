"""The data-module contract (GANDataModule) and what the folder-based modules share: config checks,
download, split fallbacks, loaders."""

from __future__ import annotations

import logging
import warnings
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset, default_collate
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import RandomSampler

from ganforge.data.datasets import Kind, download_and_extract, get_spec
from ganforge.data.prescan import PreScan
from ganforge.data.shards import FORMATS, check_shards
from ganforge.data.transforms import Preprocessing, check_preprocess

if TYPE_CHECKING:
    from lightning.fabric.utilities.data import AttributeDict

from ganforge.utils.errors import (
    ConfigError,
    DataLayoutError,
    DatasetUnavailableError,
    ImageFileError,
)

BAD_FILE_CHOICES = ("error", "skip")

# torchdata 0.11's StatefulDataLoader calls torch's deprecated set_vital on every construction; the
# warning is about torchdata's code, not the user's, and would print in every run.
warnings.filterwarnings("ignore", message="'set_vital' is deprecated", category=UserWarning)


def item_or_next_good(ds, index: int, example) -> dict:
    """Item `index` of a dataset with `_item`, `_bad` and `on_bad_file`: with skip, the next readable
    item instead, each bad file warned about once (per worker)."""
    if ds.on_bad_file == "error":
        return ds._item(index)
    for i in (j % len(ds) for j in range(index, index + len(ds))):
        if i in ds._bad:
            continue
        try:
            return ds._item(i)
        except ImageFileError as e:
            ds._bad.add(i)
            logging.getLogger(type(ds).__module__).warning("Skipping a bad file (data.on_bad_file=skip): %s", e)
    raise DataLayoutError(f"Every file in this split is unreadable ({len(ds)} files, e.g. {example})")


class TwoDomainDataset(Dataset):
    """What the paired and unpaired datasets share: their checked settings and the transform of one image.

    `preprocessing`: the keys of `Preprocessing` (preprocess, load_size, crop_size, flip, size_multiple, fit).
    train=False applies them as the reference does at test time (`Preprocessing.at_test_time`), with centre crops.
    """

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        on_bad_file: str = "error",
        max_dataset_size: int | None = None,
        train: bool = True,
        **preprocessing: Any,
    ):
        if on_bad_file not in BAD_FILE_CHOICES:
            raise ConfigError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
        settings = Preprocessing(**preprocessing)
        self.preprocessing = settings if train else settings.at_test_time()
        self.channels = {"A": input_nc, "B": output_nc}
        self.on_bad_file, self.max_dataset_size, self.train = on_bad_file, max_dataset_size, train

    def crop_params(self, size: tuple[int, int]) -> dict:
        """The crop position and flip for an image of `size` (w, h): random in training, the centre crop otherwise."""
        return self.preprocessing.params(size, self.train)

    def transform(self, domain: str, img: Image.Image, params: dict) -> torch.Tensor:
        """`img` of `domain` ("A" | "B") as a tensor in [-1, 1], cropped and flipped as `params` say."""
        return self.preprocessing(img, params, self.channels[domain])


class GANDataModule(L.LightningDataModule):
    """What the framework asks of every ganforge data module, besides Lightning's loaders."""

    #: input sides must be multiples of this; the trainer sets it from the model before `setup`
    size_multiple: int = 1
    #: the validation items, built by `setup`; None until then (and in SinGAN's module, which samples instead)
    val_set: Dataset | None = None

    if TYPE_CHECKING:
        # save_hyperparameters stores the config as an AttributeDict (keys read as attributes); Lightning's
        # annotation, a plain MutableMapping or it, would not let the type checker see those reads
        @property
        def hparams(self) -> AttributeDict: ...

    def model_settings(self) -> dict:
        """Model config keys that follow from the data (SinGAN's pyramid comes from its image); the
        trainer writes them into the run config before it builds the model."""
        return {}

    def fixed_val_batch(self, n: int) -> dict:
        """The same `n` validation items at every call: the inputs of the sample grids. Here the first `n`
        of `val_set`, collated; a module without one overrides this."""
        if self.val_set is None:
            self.setup("validate")
        val = self.val_set
        assert val is not None, "setup('validate') builds it"
        return default_collate([val[i] for i in range(min(n, len(val)))])  # type: ignore[arg-type]  # torch's Dataset declares no __len__; map-style datasets have one


class FolderDataModule(GANDataModule):
    """A named dataset (downloaded when missing) or any folder in the subclass's layout.

    The data config keys both layouts take are this class's arguments; a subclass takes its own and
    passes the rest on. Subclasses set `kind` (the registry's "paired" | "unpaired") and `train_marker`
    (what a folder with training data holds), and implement `_has_split`, `_dataset` and `_layout_error`;
    their datasets (`TwoDomainDataset`s, built with `_dataset_options`) implement `file_checks()` and
    `drop(bad_paths)` for the pre-scan.

    `size_multiple` is a plain attribute: the trainer sets it from the generator after construction
    (e.g. 256 for unet_256), and `setup` reads it.
    """

    kind: Kind
    train_marker: str

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
        size_multiple: int = 1,
        fit: str = "resize",
        on_bad_file: str = "error",
        verify: str = "header",
        max_dataset_size: int | None = None,
        val_batch_size: int | None = None,
        num_val_images: int | None = None,
        format: str = "folders",
    ):
        super().__init__()
        self.save_hyperparameters()  # with the subclass's own arguments: Lightning reads every __init__ up the call
        self._check()

    def _check(self) -> None:
        hp = self.hparams
        if hp.root is None and hp.name is None:
            raise ConfigError(f"Set data.name (a known dataset) or data.root (a folder with {self.train_marker})")
        for key, value in (("batch_size", hp.batch_size), ("val_batch_size", hp.val_batch_size or 1)):
            if value < 1:
                raise ConfigError(f"data.{key} must be >= 1, got {value}")
        check_preprocess(hp.preprocess, hp.fit)
        if hp.on_bad_file not in BAD_FILE_CHOICES:
            raise ConfigError(f"data.on_bad_file must be 'error' or 'skip', got {hp.on_bad_file!r}")
        self.prescan = PreScan(hp.on_bad_file, hp.verify)
        if hp.format not in FORMATS:
            raise ConfigError(f"data.format must be one of {', '.join(FORMATS)}, got {hp.format!r}")
        self.shards = hp.format == "shards"
        if hp.preprocess in ("resize_and_crop", "scale_width_and_crop") and hp.load_size < hp.crop_size:
            raise ConfigError(f"data.load_size ({hp.load_size}) must be >= data.crop_size ({hp.crop_size}) for {hp.preprocess}")
        self.root = Path(hp.root).expanduser() if hp.root is not None else Path("data") / hp.name
        self.size_multiple = hp.size_multiple
        self._sampler_state: torch.Tensor | None = None
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    # ----- layout, implemented by the subclasses -----------------------------------------------
    def _has_split(self, split: str) -> bool:
        raise NotImplementedError

    def _dataset(self, split: str | None, train: bool) -> Dataset:
        raise NotImplementedError

    def _layout_error(self, wanted: str) -> DataLayoutError:
        raise NotImplementedError

    def _dataset_options(self, train: bool) -> dict[str, Any]:
        """The `TwoDomainDataset` arguments, from the data config."""
        keys = ("input_nc", "output_nc", "on_bad_file", "max_dataset_size", *(f.name for f in fields(Preprocessing)))
        return {**{key: self.hparams[key] for key in keys}, "size_multiple": self.size_multiple, "train": train}

    def _no_split(self, wanted: str) -> str | None:
        """What to use when no split folder exists (the paired layout accepts loose images)."""
        raise self._layout_error(wanted)

    def _has_data(self) -> bool:
        return self._has_split("train")

    # ----- Lightning hooks ----------------------------------------------------------------------
    def prepare_data(self) -> None:
        # Lightning calls this on one process per node, before `setup` on every process.
        if self.shards:
            check_shards(self.root)
            return
        if self._has_data():
            return
        name = self.hparams.name
        if name is None:
            raise self._layout_error("train")
        if not self.hparams.download:
            raise DatasetUnavailableError(
                f"{name} is not in {self.root} and data.download=false. Set data.download=true, "
                f"or extract the archive so that {self.root} holds {self.train_marker}."
            )
        download_and_extract(get_spec(name, self.kind), self.root)

    def _resolve(self, wanted: str, fallbacks: tuple[str, ...]) -> str | None:
        """The first split that exists, logging a fallback."""
        for split in (wanted, *fallbacks):
            if self._has_split(split):
                if split != wanted and getattr(rank_zero_only, "rank", 0) == 0:
                    logging.getLogger(type(self).__module__).info("No %s split in %s: using %r for %s", wanted, self.root, split, wanted)
                return split
        return self._no_split(wanted)

    def setup(self, stage: str | None = None) -> None:
        built = {}
        if stage in (None, "fit"):
            built["train"] = self._dataset(self._resolve("train", ()), train=True)
        if stage in (None, "fit", "validate"):
            built["val"] = self._dataset(self._resolve("val", ("test", "train")), train=False)
        if stage in (None, "test", "predict"):
            built["test"] = self._dataset(self._resolve("test", ("val", "train")), train=False)
        # Before any step, not in a worker mid-epoch: see data/prescan.py. Shards were checked when
        # ganforge-prepare wrote them.
        if not self.shards:
            self.prescan.drop_bad(built.values(), self.root)
        if "train" in built:
            self.train_set = built["train"]
        if "val" in built:
            val, n = built["val"], self.hparams.num_val_images
            self.val_set = Subset(val, range(min(n, len(val)))) if n is not None else val  # type: ignore[arg-type]  # torch's Dataset declares no __len__; map-style datasets have one
        if "test" in built:
            self.test_set = built["test"]

    def _loader(self, ds: Dataset | None, batch_size: int, sampler=None) -> DataLoader:
        if ds is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for a dataloader")
        # Workers are not persistent: each epoch's workers are seeded from the main random stream,
        # which checkpoints carry, so a resumed run crops and flips exactly as the uninterrupted one.
        # A StatefulDataLoader: a checkpoint written inside an epoch (callbacks.mid_epoch_checkpoint)
        # resumes at the next batch, in the same order.
        return StatefulDataLoader(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            persistent_workers=False,
            pin_memory=False,
            drop_last=False,
        )

    def _shuffle_train(self) -> bool:
        return True

    def train_dataloader(self) -> DataLoader:
        sampler = None
        if self._shuffle_train():
            # One generator draws every epoch's order (torchdata's RandomSampler). Its state goes into
            # checkpoints (state_dict below): a run resumed at an epoch end draws the next epoch's order
            # from it, as the uninterrupted run does, instead of seeding anew from the restored stream.
            generator = torch.Generator()
            if self._sampler_state is not None:
                generator.set_state(self._sampler_state)
            else:
                generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
            sampler = RandomSampler(self.train_set, generator=generator)
        self._train_sampler = sampler
        return self._loader(self.train_set, self.hparams.batch_size, sampler)

    def state_dict(self) -> dict:
        sampler = getattr(self, "_train_sampler", None)
        return {"train_sampler": sampler.generator.get_state()} if sampler is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self._sampler_state = state_dict.get("train_sampler")

    def _eval_batch_size(self) -> int:
        return self.hparams.val_batch_size or self.hparams.batch_size

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self._eval_batch_size())

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self._eval_batch_size())

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


def split_name(split: str) -> str:
    return "training" if split == "train" else split
