"""Unpaired data: the CycleGAN layout, epoch length, random vs serial B, bad files, downloads."""

from __future__ import annotations

import random
import shutil
import urllib.error
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from ganforge.data import datasets
from ganforge.data.unpaired import UnpairedDataModule, UnpairedDataset
from ganforge.utils.errors import (
    ConfigError,
    DataLayoutError,
    DatasetUnavailableError,
    ImageFileError,
)
from tests.conftest import SHARED_DATA, compose_train

CAT2DOG = SHARED_DATA / "cifar10_cat2dog"
H2Z = SHARED_DATA / "horse2zebra_mini"
CYCLEGAN_DATA = [
    "horse2zebra",
    "apple2orange",
    "summer2winter_yosemite",
    "monet2photo",
    "cezanne2photo",
    "ukiyoe2photo",
    "vangogh2photo",
    "iphone2dslr_flower",
    "maps_unpaired",
    "facades_unpaired",
    "cityscapes_unpaired",
]


def make_domains(root: Path, n_a: int, n_b: int, split: str = "train") -> Path:
    """A folder in the CycleGAN layout with n_a cats and n_b dogs copied from the shared set."""
    for domain, n in (("A", n_a), ("B", n_b)):
        (root / f"{split}{domain}").mkdir(parents=True)
        for p in sorted((CAT2DOG / f"train{domain}").iterdir())[:n]:
            shutil.copy(p, root / f"{split}{domain}" / p.name)
    return root


def test_epoch_is_the_larger_domain_and_serial_b_cycles(tmp_path):
    root = make_domains(tmp_path, 3, 5)
    ds = UnpairedDataset(root, "train", load_size=32, crop_size=32, serial_batches=True)
    assert len(ds) == 5
    names = [(Path(ds[i]["A_path"]).name, Path(ds[i]["B_path"]).name) for i in range(5)]
    a_files, b_files = sorted(p.name for p in (root / "trainA").iterdir()), sorted(p.name for p in (root / "trainB").iterdir())
    assert names == [(a_files[i % 3], b_files[i]) for i in range(5)]


def test_b_is_drawn_at_random_unless_serial(tmp_path):
    ds = UnpairedDataset(make_domains(tmp_path, 2, 20), "train", load_size=32, crop_size=32)
    random.seed(0)
    picks = {ds[0]["B_path"] for _ in range(30)}
    assert len(picks) > 5  # the same A index meets many Bs
    evaluation = UnpairedDataset(tmp_path, "train", load_size=32, crop_size=32, train=False)
    assert len({evaluation[0]["B_path"] for _ in range(5)}) == 1


def test_items_are_tensors_in_range_with_each_domains_channels():
    ds = UnpairedDataset(H2Z, "train", load_size=72, crop_size=64, input_nc=1, output_nc=3)
    item = ds[0]
    assert item["A"].shape == (1, 64, 64) and item["B"].shape == (3, 64, 64)
    assert item["A"].min() >= -1 and item["B"].max() <= 1


def test_a_and_b_get_independent_crops_and_flips(tmp_path):
    # the same image in both domains: with a shared crop/flip A and B would always be equal
    for d in "AB":
        (tmp_path / f"train{d}").mkdir()
        shutil.copy(H2Z / "trainA" / "1.jpg", tmp_path / f"train{d}" / "1.jpg")
    ds = UnpairedDataset(tmp_path, "train", load_size=96, crop_size=64)
    random.seed(0)
    assert any(not torch.equal(ds[0]["A"], ds[0]["B"]) for _ in range(5))


def test_bad_file_errors_by_default_and_is_skipped_on_request(tmp_path, caplog):
    root = make_domains(tmp_path, 2, 2)
    (root / "trainB" / "broken.jpg").write_bytes(b"not a jpeg")
    serial = dict(load_size=32, crop_size=32, serial_batches=True)
    strict = UnpairedDataset(root, "train", **serial)
    index = sorted(p.name for p in (root / "trainB").iterdir()).index("broken.jpg")
    with pytest.raises(ImageFileError, match="broken.jpg"):
        strict[index]
    lenient = UnpairedDataset(root, "train", on_bad_file="skip", **serial)
    item = lenient[index]
    assert Path(item["B_path"]).name != "broken.jpg" and item["B"].shape == (3, 32, 32)
    assert "broken.jpg" in caplog.text


def test_layout_errors_name_the_missing_folders(tmp_path):
    (tmp_path / "trainA").mkdir()
    dm = UnpairedDataModule(root=str(tmp_path))
    with pytest.raises(DataLayoutError, match="trainB"):
        dm.prepare_data()


def test_named_dataset_offline_gives_one_clear_error(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(datasets, "urlopen", offline)
    dm = UnpairedDataModule(name="horse2zebra", root=str(tmp_path / "horse2zebra"))
    with pytest.raises(DatasetUnavailableError, match="horse2zebra.zip.*offline.*trainA"):
        dm.prepare_data()
    dm = UnpairedDataModule(name="horse2zebra", root=str(tmp_path / "h2z"), download=False)
    with pytest.raises(DatasetUnavailableError, match="download=false"):
        dm.prepare_data()


def test_named_dataset_downloads_checks_and_extracts(tmp_path, monkeypatch):
    import hashlib
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for split in ("trainA", "trainB", "testA", "testB"):
            z.write(H2Z / split / sorted(p.name for p in (H2Z / split).iterdir())[0], f"horse2zebra/{split}/x.jpg")
    payload = buf.getvalue()
    spec = datasets.REGISTRY[("unpaired", "horse2zebra")]
    monkeypatch.setitem(
        datasets.REGISTRY,
        ("unpaired", "horse2zebra"),
        datasets.DatasetSpec(spec.name, spec.url, "zip", hashlib.sha256(payload).hexdigest(), "unpaired", "horse2zebra"),
    )

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

    monkeypatch.setattr(datasets, "urlopen", lambda url, timeout: Response(payload))
    dm = UnpairedDataModule(name="horse2zebra", root=str(tmp_path / "horse2zebra"), load_size=64, crop_size=64)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 1 and dm.train_set[0]["A"].shape == (3, 64, 64)


def test_fixed_val_batch_has_both_domains_from_the_test_split():
    dm = UnpairedDataModule(root=str(CAT2DOG), load_size=32, crop_size=32)
    batch = dm.fixed_val_batch(3)
    assert batch["A"].shape == (3, 3, 32, 32) and batch["B"].shape == (3, 3, 32, 32)
    assert all("/testA/" in p for p in batch["A_path"]) and all("/testB/" in p for p in batch["B_path"])


@pytest.mark.parametrize("name", CYCLEGAN_DATA)
def test_every_named_cyclegan_config_points_at_a_registered_archive(tmp_path, name):
    cfg = compose_train(tmp_path, ["model=cyclegan", f"data={name}"])
    dm = instantiate(cfg.data)
    spec = datasets.get_spec(dm.hparams.name, "unpaired")
    assert spec.archive == "zip" and spec.sha256
    assert dm.root.name == name  # the unpaired maps/facades do not share the paired folders


def test_cat2dog_config_reads_the_shared_data(tmp_path):
    dm = instantiate(compose_train(tmp_path, ["model=cyclegan", "data=cat2dog"]).data)
    dm.setup("fit")
    assert len(dm.train_set) == 200 and dm.train_set[0]["A"].shape == (3, 32, 32)


def test_epoch_length_min_takes_full_batches_of_the_smaller_domain_each_image_once(tmp_path):
    root = make_domains(tmp_path, 7, 4)
    ds = UnpairedDataset(root, "train", load_size=32, crop_size=32, epoch_length="min", batch_size=3)
    assert len(ds) == 3  # min(7, 4) // 3 full batches of 3 (DiscoGAN's n_batches, DualGAN's epoch_size)
    random.seed(0)
    assert len({ds[i]["B_path"] for i in range(3)}) == 3  # B, the smaller domain, follows the index
    assert len({ds[0]["A_path"] for _ in range(30)}) > 3  # A, the larger one, is drawn
    assert len(UnpairedDataset(root, "train", load_size=32, crop_size=32, epoch_length="min", train=False)) == 7
    with pytest.raises(ConfigError, match="data.batch_size=5"):
        UnpairedDataset(root, "train", load_size=32, crop_size=32, epoch_length="min", batch_size=5)
    with pytest.raises(ConfigError, match="data.epoch_length must be"):
        UnpairedDataModule(root=str(root), epoch_length="shortest")
