"""Training folders that mix the shared good images with bad files: the pre-scan finds every bad file
before the first step (on_bad_file=error lists them all; skip trains on the others, one warning)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from ganforge.cli.train import train
from ganforge.data.paired import PairedDataModule
from ganforge.data.prescan import FileCheck, find_bad_files
from ganforge.data.unpaired import UnpairedDataModule
from ganforge.utils.errors import ConfigError, ImageFileError
from tests.conftest import SHARED_DATA, compose_train, run_cli

PAIRED = SHARED_DATA / "pix2pix_paired_mini"
H2Z = SHARED_DATA / "horse2zebra_mini"
SMALL = dict(load_size=36, crop_size=32, num_workers=0)


def add_bad_files(folder: Path, good: Path, odd_width: bool = True) -> list[str]:
    """Bad files beside the good ones: empty, a JPEG cut in half, text named .png, and (for A|B
    folders) an image of odd width. Their names."""
    jpeg = good.read_bytes()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "notes.png").write_text("not an image")
    names = ["empty.jpg", "cut.jpg", "notes.png"]
    if odd_width:
        Image.new("RGB", (301, 150), (90, 120, 30)).save(folder / "odd.png")
        names.append("odd.png")
    return names


@pytest.fixture
def paired_root(tmp_path) -> tuple[Path, list[str]]:
    root = tmp_path / "pairs"
    shutil.copytree(PAIRED, root, ignore=shutil.ignore_patterns("LICENSE"))
    return root, add_bad_files(root / "train", PAIRED / "train" / "1.jpg")


@pytest.fixture
def unpaired_root(tmp_path) -> tuple[Path, list[str]]:
    root = tmp_path / "h2z"
    shutil.copytree(H2Z, root, ignore=shutil.ignore_patterns("LICENSE"))
    bad = add_bad_files(root / "trainA", H2Z / "trainA" / "1.jpg", odd_width=False)
    (root / "trainB" / "zero.jpg").write_bytes(b"")
    return root, [*bad, "zero.jpg"]


# ----------------------------------------------------------------- on_bad_file=error
def test_error_names_every_bad_file_at_setup(paired_root):
    root, bad = paired_root
    dm = PairedDataModule(root=str(root), **SMALL)
    with pytest.raises(ImageFileError) as e:
        dm.setup("fit")
    msg = str(e.value)
    assert msg.startswith(f"{root}: 4 bad image file(s), found before training by the pre-scan (data.verify=header)")
    for name in bad:
        assert f"{root / 'train' / name}: " in msg, name
    assert "width 301 is odd" in msg and "empty" in msg and "not an image" in msg and "truncated" in msg
    assert "on_bad_file=skip" in msg and "1.jpg" not in msg.replace("cut.jpg", "")


def test_error_names_the_bad_files_of_both_domains(unpaired_root):
    root, bad = unpaired_root
    dm = UnpairedDataModule(root=str(root), **SMALL)
    with pytest.raises(ImageFileError, match=r"4 bad image file\(s\)") as e:
        dm.setup("fit")
    assert all(name in str(e.value) for name in bad)


def test_training_stops_before_the_first_step(paired_root, tmp_path):
    root, bad = paired_root
    # Two workers: without the pre-scan the error would come out of a worker, mid-epoch, naming one file.
    cfg = compose_train(tmp_path / "run", ["debug=tiny", "logger=csv", f"data.root={root}", "data.num_workers=2"])
    with pytest.raises(ImageFileError, match="4 bad image file") as e:
        train(cfg)
    assert all(name in str(e.value) for name in bad)
    assert not list((tmp_path / "run").rglob("*.ckpt"))
    assert not (tmp_path / "run" / "csv" / "metrics.csv").exists()  # nothing was logged: no step ran


@pytest.mark.slow
def test_cli_prints_one_error_listing_the_files(paired_root, tmp_path):
    root, bad = paired_root
    proc = run_cli(["debug=tiny", "logger=csv", f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}"], timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "4 bad image file(s)" in proc.stderr and all(name in proc.stderr for name in bad)


# ----------------------------------------------------------------- on_bad_file=skip
def test_skip_keeps_the_good_files_and_warns_once(paired_root, caplog):
    root, bad = paired_root
    dm = PairedDataModule(root=str(root), on_bad_file="skip", **SMALL)
    with caplog.at_level(logging.WARNING, logger="ganforge.data.prescan"):
        dm.setup("fit")
        dm.setup("test")  # already scanned and warned about: silent
    assert sorted(Path(a).name for a, _ in dm.train_set.pairs) == ["1.jpg", "2.jpg"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipping 4 bad image file(s)" in warnings[0]
    assert all(name in warnings[0] for name in bad)
    for batch in dm.train_dataloader():
        assert batch["A"].shape[1:] == (3, 32, 32)
        assert all(Path(p).name in ("1.jpg", "2.jpg") for p in batch["A_path"])


def test_skip_unpaired_drops_bad_files_from_the_epoch(unpaired_root):
    root, _ = unpaired_root
    dm = UnpairedDataModule(root=str(root), on_bad_file="skip", **SMALL)
    dm.setup("fit")
    assert [len(dm.train_set.files[d]) for d in "AB"] == [2, 2] and len(dm.train_set) == 2
    items = [dm.train_set[i] for i in range(len(dm.train_set))]
    names = {Path(item[k]).name for item in items for k in ("A_path", "B_path")}
    assert names <= {"1.jpg", "2.jpg", "3.jpg", "4.jpg"}


@pytest.mark.slow
def test_skip_trains_on_the_good_files(paired_root, tmp_path, caplog):
    root, bad = paired_root
    cfg = compose_train(
        tmp_path / "run", ["debug=tiny", "logger=csv", f"data.root={root}", "data.on_bad_file=skip", "trainer.max_epochs=1"]
    )
    with caplog.at_level(logging.WARNING, logger="ganforge.data.prescan"):
        _, objects = train(cfg)
    assert objects["trainer"].global_step > 0 and (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    warnings = [r.getMessage() for r in caplog.records if r.name == "ganforge.data.prescan" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and all(name in warnings[0] for name in bad)


# ----------------------------------------------------------------- how deep the pre-scan looks
def corrupt_pixels_png(path: Path) -> None:
    """A PNG whose header and end marker are intact but whose compressed pixel data is garbage."""
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 200] = bytes(190)
    path.write_bytes(bytes(data))


def test_header_scan_decodes_nothing(paired_root, monkeypatch):
    root, _ = paired_root

    def no_decoding(self):
        raise AssertionError("the header pre-scan decoded pixels")

    Image.new("RGB", (64, 32)).save(root / "train" / "good.png")
    upright = Image.Exif()
    upright[0x0112] = 1
    Image.new("RGB", (64, 32)).save(root / "train" / "good_exif.png", exif=upright)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    dm = PairedDataModule(root=str(root), on_bad_file="skip", **SMALL)
    dm.setup("fit")
    assert sorted(Path(a).name for a, _ in dm.train_set.pairs) == ["1.jpg", "2.jpg", "good.png", "good_exif.png"]


def test_full_verify_also_catches_corrupt_pixel_data(tmp_path):
    root = tmp_path / "pairs"
    shutil.copytree(PAIRED, root, ignore=shutil.ignore_patterns("LICENSE"))
    corrupt_pixels_png(root / "train" / "garbled.png")
    PairedDataModule(root=str(root), **SMALL).setup("fit")  # the header looks fine
    with pytest.raises(ImageFileError, match=r"1 bad image file\(s\).*data\.verify=full(.|\n)*garbled\.png: truncated or corrupt"):
        PairedDataModule(root=str(root), verify="full", **SMALL).setup("fit")


def test_find_bad_files_checks_channels_and_side_by_side(tmp_path):
    Image.new("L", (7, 4)).save(tmp_path / "odd.png")
    results = find_bad_files([FileCheck(tmp_path / "odd.png", 1), FileCheck(tmp_path / "odd.png", side_by_side=True)])
    assert list(results.values()) == [None, f"{tmp_path / 'odd.png'}: width 7 is odd; an A|B side-by-side image must have an even width"]


def test_unknown_verify_is_a_config_error():
    with pytest.raises(ConfigError, match="data.verify must be 'header'.*or 'full'.*got 'deep'"):
        PairedDataModule(root=str(PAIRED), verify="deep")
