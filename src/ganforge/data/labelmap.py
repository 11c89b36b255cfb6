"""Label-map data for semantic image synthesis (SPADE): photo + label ids (+ instance ids).

Layouts (NVlabs/SPADE data/*_dataset.py):
  * `spade`: `<root>/{train,val}_img/`, `{train,val}_label/`, optional `{train,val}_inst/`, matched by
    stem (coco_dataset.py; the COCO-Stuff sample uses it);
  * `ade20k`: `<root>/ADEChallengeData2016/images|annotations/{training,validation}/` (or root being that
    folder) (ade20k_dataset.py);
  * `cityscapes`: `<root>/leftImg8bit/<split>/<city>/*_leftImg8bit.png` with
    `<root>/gtFine/<split>/<city>/*_gtFine_labelIds.png` and `*_gtFine_instanceIds.png` (cityscapes_dataset.py);
  * `folders`: any `data.image_dir` + `data.label_dir` (+ `data.instance_dir`), matched by stem
    (custom_dataset.py); validation uses the same folders.

Every photo, label map and instance map is opened before the first step (the pre-scan of
data/prescan.py: `data.verify`, `data.on_bad_file`), and every label map is checked when it is first
read: ids >= label_nc (other than the don't-care id), colour masks, and a size that differs from the
photo stop with one message naming the file and the fix
(the reference crashes in scatter_ or with a CUDA assert instead: NVlabs/SPADE #68, #72, #138).
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from ganforge.data.module import BAD_FILE_CHOICES, GANDataModule, item_or_next_good
from ganforge.data.prescan import FileCheck, PreScan
from ganforge.data.shards import FORMATS, ShardSplit, check_shards
from ganforge.data.shards import has_split as has_shard_split
from ganforge.utils.errors import (
    ConfigError,
    DataLayoutError,
    DatasetUnavailableError,
    ImageFileError,
)
from ganforge.utils.imageio import (
    LabelIds,
    image_to_tensor,
    list_images,
    load_image,
    load_label_ids,
)

log = logging.getLogger(__name__)

LAYOUTS = ("spade", "ade20k", "cityscapes", "folders")
PREPROCESS = ("resize_and_crop", "fixed", "crop", "none")

Triple = tuple[Path, Path, Path | None]


# ----- reading label maps ------------------------------------------------------------------------
def load_palette(path: str | Path) -> dict[tuple[int, int, int], int]:
    """A JSON palette: {"<id>": [r, g, b], ...} (or a list of [r, g, b], the index being the id)."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"data.palette={path}: cannot read it as JSON ({e})") from None
    items = enumerate(raw) if isinstance(raw, list) else ((int(k), v) for k, v in raw.items())
    try:
        return {(int(r), int(g), int(b)): int(i) for i, (r, g, b) in items}
    except (TypeError, ValueError):
        raise ConfigError(f'data.palette={path}: expected {{"<id>": [r, g, b], ...}} or a list of [r, g, b]') from None


# ----- the dataset -------------------------------------------------------------------------------
class LabelMapDataset(Dataset):
    """Items: {"image": (3, H, W) in [-1, 1], "label": (1, H, W) int64 ids (don't-care = label_nc),
    ["instance": (1, H, W) int64], "image_path", "label_path"}. Image, label and instance map get the same
    resize, crop and flip; label and instance maps are resized with NEAREST only."""

    def __init__(
        self,
        triples: list[Triple],
        ids: LabelIds,
        preprocess: str = "resize_and_crop",
        load_size: int = 286,
        crop_size: int = 256,
        aspect_ratio: float = 1.0,
        flip: bool = True,
        use_instance: bool = False,
        size_multiple: int = 1,
        on_bad_file: str = "error",
        palette: dict | None = None,
        train: bool = True,
    ):
        if preprocess not in PREPROCESS:
            raise ConfigError(f"data.preprocess={preprocess!r}: choose one of {', '.join(PREPROCESS)}")
        self.triples, self.ids, self.preprocess = triples, ids, preprocess
        # Test time: load_size = crop_size (the reference's datasets set it so for is_train=False).
        self.load_size = load_size if train else crop_size
        self.crop_size, self.aspect_ratio, self.flip = crop_size, aspect_ratio, flip and train
        self.use_instance, self.size_multiple, self.on_bad_file = use_instance, size_multiple, on_bad_file
        self.palette, self.train = palette, train
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.triples)

    def file_checks(self) -> list[FileCheck]:
        """What the pre-scan opens: each photo, label map and (with use_instance) instance map; the ids
        and sizes are checked as each item loads."""
        return [
            FileCheck(p, channels=3 if k == 0 else 1)
            for t in self.triples
            for k, p in enumerate(t[: 3 if self.use_instance else 2])
            if p is not None
        ]

    def drop(self, bad: set[Path]) -> None:
        """Leave out the items with a bad file (on_bad_file=skip after the pre-scan)."""
        kept = [t for t in self.triples if not bad.intersection(t)]
        if not kept:
            raise DataLayoutError(f"Every file in this split is bad ({len(self.triples)} items, e.g. {self.triples[0][1]})")
        self.triples, self._bad = kept, set()

    def _geometry(self, w: int, h: int) -> tuple[tuple[int, int], tuple[int, int, int, int] | None, bool]:
        """(resize to (w, h), crop box or None, flip), drawn once per item (base_dataset.py get_params)."""
        if self.preprocess == "resize_and_crop":
            size = (self.load_size, self.load_size)
        elif self.preprocess == "fixed":  # base_dataset.py: width crop_size, height crop_size / aspect_ratio
            size = (self.crop_size, round(self.crop_size / self.aspect_ratio))
        else:
            size = (w, h)
        box = None
        if self.preprocess in ("resize_and_crop", "crop"):
            cw, ch = min(self.crop_size, size[0]), min(self.crop_size, size[1])
            x = random.randint(0, size[0] - cw) if self.train else (size[0] - cw) // 2
            y = random.randint(0, size[1] - ch) if self.train else (size[1] - ch) // 2
            box = (x, y, x + cw, y + ch)
        flip = self.flip and random.random() > 0.5
        return size, box, flip

    def _apply(self, img: Image.Image, size, box, flip, method) -> Image.Image:
        if img.size != size:
            img = img.resize(size, method)
        if box is not None:
            img = img.crop(box)
        if flip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        m = self.size_multiple
        w, h = img.size
        if m > 1 and (w % m or h % m):
            img = img.resize((max(m, round(w / m) * m), max(m, round(h / m) * m)), method)
        return img

    def _item(self, index: int) -> dict:
        img_path, label_path, inst_path = self.triples[index]
        image = load_image(img_path)
        label = self.ids.convert(load_label_ids(label_path, self.palette), label_path)
        if label.shape != (image.size[1], image.size[0]):
            raise ImageFileError(
                label_path,
                f"the label map is {label.shape[1]}x{label.shape[0]} but its photo {img_path} is {image.size[0]}x{image.size[1]}",
                "give each photo a label map of its own size, or set data.on_bad_file=skip",
            )
        size, box, flip = self._geometry(*image.size)
        nearest = Image.Resampling.NEAREST
        image_t = image_to_tensor(self._apply(image, size, box, flip, Image.Resampling.BICUBIC))
        label_img = self._apply(Image.fromarray(label.astype(np.int32), "I"), size, box, flip, nearest)
        out = {
            "image": image_t,
            "label": torch.from_numpy(np.asarray(label_img, dtype=np.int64)).unsqueeze(0),
            "image_path": str(img_path),
            "label_path": str(label_path),
        }
        if self.use_instance:
            if inst_path is None:
                raise ImageFileError(label_path, "has no instance map", "add it, or set data.use_instance=false")
            inst = load_label_ids(inst_path, what="instance map")
            if inst.shape != label.shape:
                raise ImageFileError(
                    inst_path,
                    f"the instance map is {inst.shape[1]}x{inst.shape[0]} but its label "
                    f"map {label_path} is {label.shape[1]}x{label.shape[0]}",
                    "give them the same size",
                )
            inst_img = self._apply(Image.fromarray(inst.astype(np.int32), "I"), size, box, flip, nearest)
            out["instance"] = torch.from_numpy(np.asarray(inst_img, dtype=np.int64)).unsqueeze(0)
        return out

    def __getitem__(self, index: int) -> dict:
        return item_or_next_good(self, index, self.triples[0][1])


# ----- layouts -----------------------------------------------------------------------------------
def _by_stem(folder: Path, suffix: str = "") -> dict[str, Path]:
    out = {}
    for p in list_images(folder):
        stem = p.stem[: -len(suffix)] if suffix and p.stem.endswith(suffix) else p.stem
        out[stem] = p
    return out


def _match(images: dict[str, Path], labels: dict[str, Path], insts: dict[str, Path] | None, img_dir: Path, label_dir: Path) -> list[Triple]:
    missing = sorted(images.keys() - labels.keys())
    if missing:
        raise DataLayoutError(f"{len(missing)} photos in {img_dir} have no label map in {label_dir} (matched by name), e.g. {missing[:5]}")
    return [(images[s], labels[s], insts.get(s) if insts is not None else None) for s in sorted(images)]


def _rglob(folder: Path, suffix: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataLayoutError(f"Folder not found: {folder}")
    return {p.name[: -len(suffix)]: p for p in sorted(folder.rglob(f"*{suffix}"))}


def find_triples(
    layout: str,
    root: Path | None,
    split: str,
    image_dir: str | None = None,
    label_dir: str | None = None,
    instance_dir: str | None = None,
    use_instance: bool = False,
) -> list[Triple]:
    """(photo, label map, instance map or None) of one split ("train" | "val") in `layout`."""
    if layout == "folders":
        if image_dir is None or label_dir is None:
            raise ConfigError("data.layout=folders needs data.image_dir=<photos> and data.label_dir=<label maps>")
        img_d, lab_d = Path(image_dir).expanduser(), Path(label_dir).expanduser()
        insts = _by_stem(Path(instance_dir).expanduser()) if use_instance and instance_dir else None
        return _match(_by_stem(img_d), _by_stem(lab_d), insts, img_d, lab_d)
    if layout not in LAYOUTS:
        raise ConfigError(f"data.layout={layout!r}: choose one of {', '.join(LAYOUTS)}")
    if root is None:
        raise ConfigError(f"data.layout={layout} needs data.root=<dir>")
    if layout == "spade":
        inst = root / f"{split}_inst"
        return _match(
            _by_stem(root / f"{split}_img"),
            _by_stem(root / f"{split}_label"),
            _by_stem(inst) if use_instance and inst.is_dir() else None,
            root / f"{split}_img",
            root / f"{split}_label",
        )
    if layout == "ade20k":
        base = root / "ADEChallengeData2016" if (root / "ADEChallengeData2016").is_dir() else root
        sub = "training" if split == "train" else "validation"
        return _match(
            _by_stem(base / "images" / sub), _by_stem(base / "annotations" / sub), None, base / "images" / sub, base / "annotations" / sub
        )
    # cityscapes
    images = _rglob(root / "leftImg8bit" / split, "_leftImg8bit.png")
    labels = _rglob(root / "gtFine" / split, "_gtFine_labelIds.png")
    insts = _rglob(root / "gtFine" / split, "_gtFine_instanceIds.png") if use_instance else None
    if not images:
        raise DataLayoutError(f"No *_leftImg8bit.png under {root / 'leftImg8bit' / split}")
    return _match(images, labels, insts, root / "leftImg8bit" / split, root / "gtFine" / split)


def layout_marker(layout: str, root: Path | None) -> Path | None:
    """The folder whose presence means the data is on disk."""
    if root is None:  # layout=folders: no marker
        return None
    if layout == "spade":
        return root / "train_img"
    if layout == "ade20k":
        return root / "ADEChallengeData2016" / "images" if not (root / "images").is_dir() else root / "images"
    if layout == "cityscapes":
        return root / "leftImg8bit"
    return None


CITYSCAPES_HELP = (
    "Cityscapes needs a login: register at https://www.cityscapes-dataset.com/, download "
    "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip, and unzip both into {root} so that "
    "{root}/leftImg8bit/train/ and {root}/gtFine/train/ exist"
)


class LabelMapDataModule(GANDataModule):
    """Label maps + photos for SPADE in one of `LAYOUTS` (see the module docstring)."""

    def __init__(
        self,
        name: str | None = None,
        root: str | None = None,
        layout: str = "spade",
        image_dir: str | None = None,
        label_dir: str | None = None,
        instance_dir: str | None = None,
        label_nc: int = 182,
        contain_dontcare_label: bool = True,
        dontcare_label: int | None = 255,
        label_shift: int = 0,
        metric_label_shift: int = 0,
        use_instance: bool = True,
        palette: str | None = None,
        class_names: list[str] | None = None,
        preprocess: str = "resize_and_crop",
        load_size: int = 286,
        crop_size: int = 256,
        aspect_ratio: float = 1.0,
        flip: bool = True,
        output_nc: int = 3,
        batch_size: int = 1,
        val_batch_size: int | None = None,
        num_workers: int = 2,
        size_multiple: int = 1,
        on_bad_file: str = "error",
        verify: str = "header",
        max_dataset_size: int | None = None,
        num_val_images: int | None = None,
        download: bool = True,
        format: str = "folders",
    ):
        super().__init__()
        self.save_hyperparameters()
        if format not in FORMATS:
            raise ConfigError(f"data.format must be one of {', '.join(FORMATS)}, got {format!r}")
        self.shards = format == "shards"
        if output_nc != 3:
            raise ConfigError(f"data.output_nc={output_nc}: label-map data holds RGB photos (output_nc=3)")
        if layout not in LAYOUTS:
            raise ConfigError(f"data.layout={layout!r}: choose one of {', '.join(LAYOUTS)}")
        if layout != "folders" and root is None:
            raise ConfigError(f"data.layout={layout} needs data.root=<dir>")
        if on_bad_file not in BAD_FILE_CHOICES:
            raise ConfigError(f"data.on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
        if preprocess not in PREPROCESS:
            raise ConfigError(f"data.preprocess={preprocess!r}: choose one of {', '.join(PREPROCESS)}")
        if preprocess == "resize_and_crop" and load_size < crop_size:
            raise ConfigError(f"data.load_size ({load_size}) must be >= data.crop_size ({crop_size}) for resize_and_crop")
        if (dontcare_label is not None or label_shift) and not contain_dontcare_label:
            raise ConfigError(
                "data.dontcare_label / data.label_shift map ids to don't-care, which needs "
                "data.contain_dontcare_label=true (or set data.dontcare_label=null and data.label_shift=0)"
            )
        if not 0 <= metric_label_shift < label_nc:
            raise ConfigError(f"data.metric_label_shift={metric_label_shift}: it must be >= 0 and below data.label_nc={label_nc}")
        for key, value in (("batch_size", batch_size), ("val_batch_size", val_batch_size or 1)):
            if value < 1:
                raise ConfigError(f"data.{key} must be >= 1, got {value}")
        self.root = Path(root).expanduser() if root is not None else None
        self.ids = LabelIds(label_nc, dontcare_label, label_shift)
        self.palette_map = load_palette(palette) if palette else None
        # The class of each id: not used in training (SPADE's `label_classes` reads it from the run config).
        # A plain list, as checkpoints (datamodule_hyper_parameters) must load with weights_only=True.
        self.hparams.class_names = [str(n) for n in class_names] if class_names is not None else None
        self.size_multiple = size_multiple
        self.prescan = PreScan(on_bad_file, verify)
        self.train_set: LabelMapDataset | None = None
        self.val_set: LabelMapDataset | Subset | None = None

    @property
    def shard_root(self) -> Path:
        """data.root, where ganforge-prepare wrote the shards (data.format=shards)."""
        if self.root is None:
            raise ConfigError("data.format=shards needs data.root=<the folder ganforge-prepare wrote>")
        return self.root

    def prepare_data(self) -> None:
        if self.shards:
            check_shards(self.shard_root)
            return
        marker = layout_marker(self.hparams.layout, self.root)
        if self.root is None or marker is None or marker.is_dir():
            return
        if self.hparams.layout == "cityscapes":
            raise DatasetUnavailableError(CITYSCAPES_HELP.format(root=self.root))
        if self.hparams.name is None or not self.hparams.download:
            raise DataLayoutError(f"No data in {self.root}: expected {marker}/ (data.layout={self.hparams.layout})")
        from ganforge.data.datasets import fetch_labelmap_dataset

        fetch_labelmap_dataset(self.hparams.name, self.root)

    def _dataset(self, split: str, train: bool) -> LabelMapDataset:
        hp = self.hparams
        if self.shards:
            triples = ShardSplit(self.shard_root, split)[: hp.max_dataset_size]
        else:
            triples = find_triples(hp.layout, self.root, split, hp.image_dir, hp.label_dir, hp.instance_dir, hp.use_instance)[
                : hp.max_dataset_size
            ]
            if hp.use_instance and any(t[2] is None for t in triples):
                first = next(t for t in triples if t[2] is None)
                raise DataLayoutError(
                    f"No instance map for {first[1]} (data.use_instance=true): add the {split}_inst/ maps, or set data.use_instance=false"
                )
        return LabelMapDataset(
            triples,
            self.ids,
            hp.preprocess,
            hp.load_size,
            hp.crop_size,
            hp.aspect_ratio,
            hp.flip,
            hp.use_instance,
            self.size_multiple,
            hp.on_bad_file,
            self.palette_map,
            train,
        )

    def shard_splits(self) -> dict[str, tuple[list, None]]:
        """What ganforge-prepare writes: each split's (photo, label map, instance map or None)."""
        hp, splits = self.hparams, {}
        for split in ("train", "val"):
            try:
                splits[split] = (
                    find_triples(hp.layout, self.root, split, hp.image_dir, hp.label_dir, hp.instance_dir, hp.use_instance),
                    None,
                )
            except DataLayoutError:
                if split == "train":
                    raise
        return splits

    def _val_split(self) -> str:
        if self.shards:
            return "val" if has_shard_split(self.shard_root, "val") else "train"
        if self.hparams.layout == "folders":
            return "train"
        try:
            find_triples(self.hparams.layout, self.root, "val", use_instance=False)
            return "val"
        except DataLayoutError:
            log.info("No val split in %s: validating on train", self.root)
            return "train"

    def setup(self, stage: str | None = None) -> None:
        built = {}
        if stage in (None, "fit"):
            built["train"] = self._dataset("train", train=True)
        if self.val_set is None:
            built["val"] = self._dataset(self._val_split(), train=False)
        if not self.shards:  # shards were checked when ganforge-prepare wrote them
            self.prescan.drop_bad(built.values(), self.root or Path(self.hparams.label_dir))
        if "train" in built:
            self.train_set = built["train"]
        if "val" in built:
            val, n = built["val"], self.hparams.num_val_images
            self.val_set = Subset(val, range(min(n, len(val)))) if n is not None else val

    def _loader(self, ds, batch_size: int, shuffle: bool) -> DataLoader:
        if ds is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for a dataloader")
        # Training drops the last partial batch, as the reference (data/__init__.py drop_last=opt.isTrain):
        # G's BatchNorm cannot normalise a 1x1 grid of one image. Workers are not persistent, so each
        # epoch's crops and flips follow the checkpointed random stream (exact resume).
        return DataLoader(
            ds, batch_size=batch_size, shuffle=shuffle, num_workers=self.hparams.num_workers, persistent_workers=False, drop_last=shuffle
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_set is not None and len(self.train_set) < self.hparams.batch_size:
            raise ConfigError(
                f"data.batch_size={self.hparams.batch_size} is larger than the {len(self.train_set)} "
                f"training items in {self.root}; lower it"
            )
        return self._loader(self.train_set, self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.hparams.val_batch_size or self.hparams.batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
