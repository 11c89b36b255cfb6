"""CIFAR-10 and MNIST through torchvision's dataset classes, which download the official archives with a
progress bar and check their MD5 (CIFAR-10: `cifar-10-python.tar.gz`, md5 c58f30108f718f92721af3b95e74349a).
Batches as ganforge.data.image_folder: {"real", "label"}; `data.classes=[frog]` keeps chosen classes.
Images are resized as dcgan/main.py's `transforms.Resize(opt.imageSize)` does: the shorter side to
`load_size` with PIL's bilinear filter (`data.interpolation`)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets

from ganforge.data.image_folder import UnconditionalDataModule
from ganforge.utils.errors import ConfigError, DatasetUnavailableError

SETS = {"cifar10": datasets.CIFAR10, "mnist": datasets.MNIST}
SPLITS = ("train", "test")
INTERPOLATIONS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def _url(name: str) -> str:
    cls = SETS[name]
    return cls.url if name == "cifar10" else f"{cls.mirrors[0]}{cls.resources[0][0]} (and {len(cls.resources) - 1} more files)"


class _Indexed:
    """Item i of a torchvision dataset restricted to `indices`, as (image in `mode` with its shorter side
    resized to `load_size` by `resample`, label)."""

    def __init__(self, ds, indices: list[int], mode: str, load_size: int, resample: Image.Resampling):
        self.ds, self.indices, self.mode, self.load_size, self.resample = ds, indices, mode, load_size, resample

    def __call__(self, i: int) -> tuple[Image.Image, int]:
        img, label = self.ds[self.indices[i]]
        img = img.convert(self.mode)
        w, h = img.size
        if min(w, h) != self.load_size:  # torchvision's Resize(int): the shorter side, the other in proportion
            short, long = self.load_size, int(self.load_size * max(w, h) / min(w, h))
            img = img.resize((short, long) if w <= h else (long, short), self.resample)
        return img, int(label)


class TorchvisionDataModule(UnconditionalDataModule):
    name: str  # the torchvision set (Lightning's LightningDataModule.name, optional there, is always set here)

    def __init__(
        self,
        name: str = "cifar10",
        root: str = "data",
        download: bool = True,
        val_split: str = "train",
        interpolation: str = "bilinear",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.name, self.root, self.download, self.val_split = name, Path(root).expanduser(), download, val_split
        self.interpolation = interpolation

    def _load(self, train: bool):
        try:
            return SETS[self.name](str(self.root), train=train, download=self.download)
        except (OSError, RuntimeError) as e:  # URLError is an OSError; a missing/corrupt set without download a RuntimeError
            raise DatasetUnavailableError(
                f"Could not get {self.name} ({e}). It downloads from {_url(self.name)} into {self.root}; on an offline "
                f"machine download it elsewhere and put the archive (or its extracted folder) in {self.root}, "
                f"or set data.root=<folder that holds it>"
            ) from None

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node: the download happens once.
        self._check_name()
        self._load(train=True)
        self._load(train=False)

    def _check_name(self) -> None:
        if self.name not in SETS:
            raise ConfigError(f"data.name={self.name!r} is unknown; choose one of {sorted(SETS)}")
        if self.val_split not in SPLITS:
            raise ConfigError(f"data.val_split must be one of {SPLITS}, got {self.val_split!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"data.interpolation must be one of {sorted(INTERPOLATIONS)}, got {self.interpolation!r}")

    def _dataset(self, train: bool) -> Dataset:
        self._check_name()
        ds = self._load(train=train or self.val_split == "train")
        indices = list(range(len(ds)))
        if self.classes is not None:
            unknown = sorted(set(self.classes) - set(ds.classes))
            if unknown:
                raise ConfigError(f"data.classes names {unknown}, which {self.name} lacks; its classes are {ds.classes}")
            keep = {ds.classes.index(c) for c in self.classes}
            indices = [i for i, t in enumerate(ds.targets) if int(t) in keep]
        load = _Indexed(ds, indices, "RGB" if self.channels == 3 else "L", self.load_size, INTERPOLATIONS[self.interpolation])
        return self._wrap(len(indices), load, train)
