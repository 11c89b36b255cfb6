"""Unconditional data: image_folder (recursive, classes, any size/mode, bad files) and the torchvision sets'
offline message and class filter."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import Image

from ganforge.data.image_folder import ImageFolderDataModule
from ganforge.data.torchvision_sets import TorchvisionDataModule
from ganforge.utils.errors import (
    ConfigError,
    DataLayoutError,
    DatasetUnavailableError,
    ImageFileError,
)
from tests.conftest import SHARED_DATA

FROGS = SHARED_DATA / "cifar10_frog"


@pytest.fixture
def odd_folder(tmp_path):
    """Two classes in subfolders (one nested deeper), odd sizes and modes, a broken file, a hidden file."""
    (tmp_path / "cats" / "deep").mkdir(parents=True)
    (tmp_path / "dogs").mkdir()
    Image.new("RGBA", (50, 30), (255, 0, 0, 128)).save(tmp_path / "cats" / "a.png")
    Image.new("P", (20, 40)).save(tmp_path / "cats" / "deep" / "b.gif")
    Image.new("I;16", (33, 33)).save(tmp_path / "dogs" / "c.png")
    (tmp_path / "dogs" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "dogs" / ".hidden.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


def dm(**kw) -> ImageFolderDataModule:
    m = ImageFolderDataModule(**{"image_size": 16, "batch_size": 2, "num_workers": 0, **kw})
    m.setup("fit")
    return m


def test_frogs_give_real_batches_in_range():
    m = dm(root=str(FROGS / "train"), image_size=32, val_root=str(FROGS / "test"), batch_size=8)
    assert (len(m.train_set), len(m.val_set)) == (1000, 100)
    batch = next(iter(m.train_dataloader()))
    assert batch["real"].shape == (8, 3, 32, 32) and batch["real"].min() >= -1 and batch["real"].max() <= 1
    assert (batch["label"] == 0).all()
    assert m.fixed_val_batch(3)["real"].shape == (3, 3, 32, 32)


def test_any_size_and_mode_is_resized_cropped_and_converted(odd_folder):
    m = dm(root=str(odd_folder), on_bad_file="skip", channels=1)
    items = [m.train_set[i] for i in range(len(m.train_set))]
    assert len(m.train_set) == 3  # a.png, deep/b.gif, c.png; not broken.jpg (pre-scan), the hidden file nor notes.txt
    assert all(it["real"].shape == (1, 16, 16) for it in items)
    assert sorted({int(it["label"]) for it in items}) == [0, 1]  # cats, dogs (deep/ is still a cat)


def test_the_prescan_names_every_bad_file_before_training_or_skips_them(odd_folder, caplog):
    (odd_folder / "cats" / "empty.png").write_bytes(b"")
    with pytest.raises(ImageFileError) as e:
        dm(root=str(odd_folder))  # setup: before any item is read
    msg = str(e.value)
    assert "2 bad image file(s)" in msg and "broken.jpg" in msg and "empty.png" in msg and "on_bad_file=skip" in msg
    m = dm(root=str(odd_folder), classes=["dogs"], on_bad_file="skip")
    assert [p.name for p in m.train_set.load.files] == ["c.png"]
    assert m.train_set[0]["real"].shape == (3, 16, 16)
    assert "broken.jpg" in caplog.text and "empty.png" not in caplog.text  # only the classes kept


def test_a_file_bad_past_its_header_stops_with_its_name_or_is_skipped(odd_folder, caplog):
    """verify=header (the default) opens headers only: a PNG whose pixel data is garbled is found when read."""
    from tests.test_bad_files import corrupt_pixels_png

    corrupt_pixels_png(odd_folder / "dogs" / "garbled.png")
    (odd_folder / "dogs" / "broken.jpg").unlink()
    m = dm(root=str(odd_folder), classes=["dogs"])
    bad = [p.name for p in m.train_set.load.files].index("garbled.png")
    with pytest.raises(ImageFileError, match="garbled.png"):
        m.train_set[bad]
    m = dm(root=str(odd_folder), classes=["dogs"], on_bad_file="skip")
    assert m.train_set[bad]["real"].shape == (3, 16, 16)
    assert "garbled.png" in caplog.text
    with pytest.raises(ImageFileError, match=r"data\.verify=full(.|\n)*garbled\.png"):
        dm(root=str(odd_folder), classes=["dogs"], verify="full")


def test_random_crop_and_flip_only_in_training(tmp_path):
    ramp = torch.arange(40, dtype=torch.uint8).repeat(40, 1) * 6  # left-to-right ramp: every crop and flip differs
    Image.fromarray(ramp.numpy()).save(tmp_path / "ramp.png")
    m = dm(root=str(tmp_path), crop="random", flip=True, load_size=40)
    random.seed(0)
    train_draws = {m.train_set[0]["real"][0, 0, :3].tolist().__repr__() for _ in range(20)}
    val_draws = {m.val_set[0]["real"].sum().item() for _ in range(3)}
    assert len(val_draws) == 1 and len(train_draws) > 3


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"channels": 2}, "channels"),
        ({"crop": "middle"}, "crop"),
        ({"on_bad_file": "ignore"}, "on_bad_file"),
        ({"load_size": 8}, "load_size"),
    ],
)
def test_bad_settings_are_config_errors(odd_folder, kw, match):
    with pytest.raises(ConfigError, match=match):
        dm(root=str(odd_folder), **kw)


def test_missing_folder_and_unknown_class_name_the_fix(tmp_path, odd_folder):
    with pytest.raises(DataLayoutError, match="is not a folder"):
        dm(root=str(tmp_path / "nope"))
    with pytest.raises(DataLayoutError, match="birds.*classes are \\['cats', 'dogs'\\]"):
        dm(root=str(odd_folder), classes=["birds"])
    with pytest.raises(ConfigError, match="data.root"):
        dm(root=None)


def test_cifar10_offline_names_the_url_and_folder(tmp_path, monkeypatch):
    import urllib.request

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    m = TorchvisionDataModule(name="cifar10", root=str(tmp_path / "c10"), image_size=32, num_workers=0)
    with pytest.raises(DatasetUnavailableError, match=r"cifar-10-python\.tar\.gz.*c10"):
        m.prepare_data()
    with pytest.raises(DatasetUnavailableError, match="c10"):
        TorchvisionDataModule(name="cifar10", root=str(tmp_path / "c10"), download=False, image_size=32).setup("fit")


def test_torchvision_sets_keep_the_chosen_classes(tmp_path, monkeypatch):
    """A stand-in for torchvision's CIFAR10 (same attributes): data.classes=[frog] keeps class 6 only."""

    class FakeCIFAR:
        classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

        def __init__(self, root, train=True, download=False):
            self.targets = [i % 10 for i in range(30)]

        def __len__(self):
            return 30

        def __getitem__(self, i):
            return Image.new("RGB", (32, 32), (i, 0, 0)), self.targets[i]

    monkeypatch.setitem(__import__("ganforge.data.torchvision_sets", fromlist=["SETS"]).SETS, "cifar10", FakeCIFAR)
    m = TorchvisionDataModule(name="cifar10", root=str(tmp_path), classes=["frog"], image_size=32, num_workers=0)
    m.setup("fit")
    assert len(m.train_set) == 3 and all(int(m.train_set[i]["label"]) == 6 for i in range(3))
    with pytest.raises(ConfigError, match="unicorn"):
        TorchvisionDataModule(name="cifar10", root=str(tmp_path), classes=["unicorn"], image_size=32).setup("fit")
