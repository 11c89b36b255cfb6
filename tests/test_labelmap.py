"""Label-map data for SPADE: layouts, id conversion, shared crop/flip, instance edges, bad-label messages."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data.labelmap import (
    LabelIds,
    LabelMapDataModule,
    LabelMapDataset,
    find_triples,
)
from ganforge.nets.spade import label_edges
from ganforge.utils.errors import (
    ConfigError,
    DataLayoutError,
    DatasetUnavailableError,
    ImageFileError,
)
from tests.conftest import SHARED_DATA

COCO = SHARED_DATA / "coco_stuff_sample"


def write_split(root, split="train", n=2, size=(40, 32), ids=(0, 1, 2, 3), inst=True, seed=0):
    """SPADE layout: photos whose grey value is 40 * label id (so alignment can be read back)."""
    rng = np.random.default_rng(seed)
    for d in ("img", "label", "inst"):
        (root / f"{split}_{d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        w, h = size
        label = np.repeat(np.repeat(rng.choice(ids, size=(h // 4, w // 4)), 4, 0), 4, 1).astype(np.uint8)
        Image.fromarray(label, "L").save(root / f"{split}_label" / f"{i:03d}.png")
        Image.fromarray(np.stack([label * 40] * 3, -1).astype(np.uint8), "RGB").save(root / f"{split}_img" / f"{i:03d}.png")
        if inst:
            Image.fromarray((label * 3 + 1).astype(np.uint8), "L").save(root / f"{split}_inst" / f"{i:03d}.png")
    return root


def dataset(root, **kw):
    args = dict(preprocess="crop", load_size=32, crop_size=16, use_instance=True, train=True)
    args.update(kw)
    ids = args.pop("ids", LabelIds(4, None))
    return LabelMapDataset(find_triples("spade", root, "train", use_instance=True), ids, **args)


def test_image_label_and_instance_get_the_same_crop_and_flip(tmp_path):
    ds = dataset(write_split(tmp_path), flip=True)
    random.seed(3)
    flips = 0
    for _ in range(12):
        item = ds[0]
        grey = torch.round((item["image"][0] + 1) * 127.5)
        assert torch.equal(grey, item["label"][0].float() * 40)
        assert torch.equal(item["instance"][0], item["label"][0] * 3 + 1)
        full = np.asarray(Image.open(tmp_path / "train_label" / "000.png"))
        flips += not any(np.array_equal(item["label"][0].numpy(), full[y : y + 16, x : x + 16]) for y in range(17) for x in range(25))
    assert 0 < flips < 12  # some crops were flipped, some not


def test_label_maps_are_resized_nearest_only(tmp_path):
    ds = dataset(write_split(tmp_path, ids=(0, 3)), preprocess="resize_and_crop", load_size=50, crop_size=40, ids=LabelIds(4, None))
    for i in range(2):
        assert set(ds[i]["label"].unique().tolist()) <= {0, 3}
        assert set(ds[i]["instance"].unique().tolist()) <= {1, 10}


def test_instance_edges_are_the_4_neighbour_differences():
    inst = torch.tensor([[1, 1, 1, 1], [1, 2, 2, 1], [1, 1, 1, 1], [3, 3, 3, 3]])
    expect = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]).float()
    assert torch.equal(label_edges(inst), expect)
    assert label_edges(torch.ones(3, 3)).sum() == 0


def test_dontcare_and_ade20k_shift_map_to_label_nc():
    coco = LabelIds(182, dontcare_id=255)
    assert coco.convert(np.array([[0, 181, 255]]), None).tolist() == [[0, 181, 182]]
    ade = LabelIds(150, dontcare_id=None, shift=1)  # ADE20K: 0 'other' -> don't-care, k -> k - 1
    assert ade.convert(np.array([[0, 1, 150]]), None).tolist() == [[150, 0, 149]]


def test_an_id_out_of_range_names_the_file_the_ids_and_the_fix(tmp_path):
    write_split(tmp_path, ids=(0, 1, 7, 9))
    ds = dataset(tmp_path, ids=LabelIds(4, None))
    with pytest.raises(ImageFileError) as e:
        ds[0]
    msg = str(e.value)
    assert "train_label/000.png" in msg and "7, 9" in msg and "data.label_nc=10" in msg


def test_the_dontcare_id_is_not_a_bad_id(tmp_path):
    write_split(tmp_path, ids=(0, 1, 255))
    item = dataset(tmp_path, ids=LabelIds(4, dontcare_id=255))[0]
    assert set(item["label"].unique().tolist()) <= {0, 1, 4}


def test_a_colour_mask_says_so_and_how_to_convert_it(tmp_path):
    write_split(tmp_path)
    mask = np.zeros((32, 40, 3), np.uint8)
    mask[:, :20] = (128, 64, 0)
    mask[:, 20:] = (0, 128, 192)
    Image.fromarray(mask, "RGB").save(tmp_path / "train_label" / "000.png")
    with pytest.raises(ImageFileError, match="colour image.*data.palette"):
        dataset(tmp_path)[0]
    palette = tmp_path / "palette.json"
    palette.write_text(json.dumps({"2": [128, 64, 0], "3": [0, 128, 192]}))
    from ganforge.data.labelmap import load_palette

    item = dataset(tmp_path, use_instance=False, palette=load_palette(palette), preprocess="none", flip=False)[0]
    assert item["label"][0, :, :20].eq(2).all() and item["label"][0, :, 20:].eq(3).all()


def test_a_size_mismatch_names_both_files(tmp_path):
    write_split(tmp_path)
    Image.new("L", (20, 20)).save(tmp_path / "train_label" / "001.png")
    with pytest.raises(ImageFileError) as e:
        dataset(tmp_path)[1]
    assert "train_label/001.png" in str(e.value) and "train_img/001.png" in str(e.value)


def test_on_bad_file_skip_warns_and_uses_the_next_item(tmp_path, caplog):
    write_split(tmp_path, n=3)
    Image.fromarray(np.full((32, 40), 9, np.uint8)).save(tmp_path / "train_label" / "001.png")
    ds = dataset(tmp_path, on_bad_file="skip")
    with caplog.at_level(logging.WARNING):
        item = ds[1]
    assert item["label_path"].endswith("002.png")
    assert "001.png" in caplog.text and "data.label_nc=10" in caplog.text


def test_layouts_cityscapes_and_folders(tmp_path):
    city = tmp_path / "cs"
    for split in ("train",):
        (city / "leftImg8bit" / split / "aachen").mkdir(parents=True)
        (city / "gtFine" / split / "aachen").mkdir(parents=True)
        stem = "aachen_000000_000019"
        Image.new("RGB", (8, 4)).save(city / "leftImg8bit" / split / "aachen" / f"{stem}_leftImg8bit.png")
        Image.new("L", (8, 4)).save(city / "gtFine" / split / "aachen" / f"{stem}_gtFine_labelIds.png")
        Image.new("I;16", (8, 4)).save(city / "gtFine" / split / "aachen" / f"{stem}_gtFine_instanceIds.png")
    ((img, lab, inst),) = find_triples("cityscapes", city, "train", use_instance=True)
    assert img.name.endswith("_leftImg8bit.png") and lab.name.endswith("_labelIds.png") and inst.name.endswith("_instanceIds.png")
    write_split(tmp_path / "f", n=2)
    triples = find_triples("folders", None, "train", tmp_path / "f" / "train_img", tmp_path / "f" / "train_label")
    assert [t[1].name for t in triples] == ["000.png", "001.png"]


def test_cityscapes_missing_says_where_to_put_the_files(tmp_path):
    dm = LabelMapDataModule(
        root=str(tmp_path / "none"), layout="cityscapes", label_nc=35, contain_dontcare_label=False, dontcare_label=None
    )
    with pytest.raises(DatasetUnavailableError, match="leftImg8bit_trainvaltest.zip.*gtFine"):
        dm.prepare_data()


def test_an_offline_download_says_where_to_put_the_files(tmp_path):
    from ganforge.data import datasets

    def offline(url, timeout):
        raise OSError("Network is unreachable")

    with pytest.raises(DatasetUnavailableError, match="ADEChallengeData2016.zip.*ADEChallengeData2016/images/training"):
        datasets.fetch_labelmap_dataset("ade20k", tmp_path / "ade", opener=offline)


def test_the_coco_stuff_sample_loads_with_its_dontcare_and_instances():
    dm = LabelMapDataModule(root=str(COCO), layout="spade", label_nc=182, load_size=72, crop_size=64, num_workers=0)
    dm.setup("fit")
    item = dm.train_set[0]
    assert item["image"].shape == (3, 64, 64) and item["label"].shape == item["instance"].shape == (1, 64, 64)
    assert item["label"].max() <= 182
    assert len(dm.val_set) == 8


def test_a_missing_split_folder_is_a_layout_error(tmp_path):
    with pytest.raises(DataLayoutError):
        find_triples("spade", tmp_path, "train")


def test_the_prescan_names_bad_photos_and_maps_before_training_or_skips_them(tmp_path, caplog):
    write_split(tmp_path, n=3)
    write_split(tmp_path, split="val", n=1)
    (tmp_path / "train_label" / "000.png").write_bytes(b"")
    photo = (tmp_path / "train_img" / "001.png").read_bytes()
    (tmp_path / "train_img" / "001.png").write_bytes(photo[: len(photo) // 2])
    (tmp_path / "train_inst" / "002.png").write_text("not an image")

    def module(**kw):
        return LabelMapDataModule(
            root=str(tmp_path),
            layout="spade",
            label_nc=4,
            contain_dontcare_label=False,
            dontcare_label=None,
            load_size=32,
            crop_size=16,
            num_workers=0,
            **kw,
        )

    with pytest.raises(ImageFileError) as e:
        module().setup("fit")  # before any item is read
    msg = str(e.value)
    assert "3 bad image file(s)" in msg and all(p in msg for p in ("train_label/000.png", "train_img/001.png", "train_inst/002.png"))
    dm = module(use_instance=False, on_bad_file="skip")
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert [Path(t[1]).name for t in dm.train_set.triples] == ["002.png"]  # its instance map is not read
    assert len(dm.val_set) == 1 and "train_label/000.png" in caplog.text


def test_shards_without_a_root_is_one_config_error(tmp_path):
    # layout=folders reads data.image_dir/label_dir and leaves data.root unset; shards live in data.root
    dm = LabelMapDataModule(layout="folders", image_dir=str(tmp_path), label_dir=str(tmp_path), label_nc=4, format="shards")
    with pytest.raises(ConfigError, match=r"data.format=shards needs data.root="):
        dm.prepare_data()
