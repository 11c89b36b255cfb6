"""LitData shards (ganforge-prepare, data.format=shards): the same items and the same training as the
folders, exact resume, every sample once per epoch under DDP, and the errors."""

from __future__ import annotations

import random
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch import Callback
from PIL import Image

from ganforge.cli.app import CONF_DIR
from ganforge.cli.prepare import prepare
from ganforge.cli.train import train
from ganforge.utils.errors import DataLayoutError, ImageFileError
from tests.conftest import PAIRED_MINI, SHARED_DATA, compose_train, run_cli

COCO = SHARED_DATA / "coco_stuff_sample"
FROGS = SHARED_DATA / "cifar10_frog"


def run_prepare(data: list[str], output: Path) -> dict[str, int]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("prepare", overrides=[*data, f"output={output}", "num_workers=1"])
    return prepare(cfg)


def items(overrides: list[str], n: int, train_split: bool = True) -> list[dict]:
    """The first n training items of the data config, with the same random stream."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "data.num_workers=0"])
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    ds = dm.train_set if train_split else dm.val_set
    random.seed(0)
    torch.manual_seed(0)
    return [ds[i] for i in range(min(n, len(ds)))]


def assert_same_items(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        tensors = [k for k, v in x.items() if isinstance(v, torch.Tensor)]
        assert tensors and all(torch.equal(x[k], y[k]) for k in tensors)


@pytest.fixture(scope="module")
def paired_shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("paired_shards")
    assert run_prepare([f"data.root={PAIRED_MINI}"], out) == {"train": 2, "test": 2}
    return out


@pytest.mark.slow
def test_paired_items_from_shards_equal_the_folders(paired_shards):
    folders = items([f"data.root={PAIRED_MINI}"], 2)
    shards = items([f"data.root={paired_shards}", "data.format=shards"], 2)
    assert_same_items(folders, shards)
    assert shards[0]["A_path"].startswith(str(paired_shards / "train"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "data, n",
    [
        (["data=unpaired", f"data.root={SHARED_DATA / 'horse2zebra_mini'}"], 2),
        (["data=coco_stuff", f"data.root={COCO}"], 4),
        (["data=image_folder", f"data.root={FROGS / 'train'}", "data.classes=null", "data.image_size=32"], 6),
    ],
)
def test_unpaired_label_map_and_image_folder_items_from_shards_equal_the_folders(tmp_path, data, n):
    run_prepare(data, tmp_path / "shards")
    folders = items(data, n)
    shards = items([*data, f"data.root={tmp_path / 'shards'}", "data.format=shards"], n)
    assert_same_items(folders, shards)


@pytest.mark.slow
def test_training_from_shards_equals_training_from_folders_and_resumes_exactly(tmp_path, paired_shards):
    tiny = ["debug=tiny", "logger=csv", "data.direction=BtoA", "callbacks.image_grid=null", "trainer.max_epochs=2"]
    _, objs = train(compose_train(tmp_path / "folders", [*tiny, f"data.root={PAIRED_MINI}"]))
    from_folders = {k: v.clone() for k, v in objs["model"].state_dict().items()}
    shard_args = [*tiny, f"data.root={paired_shards}", "data.format=shards"]
    _, objs = train(compose_train(tmp_path / "shards", shard_args))
    from_shards = objs["model"].state_dict()
    assert all(torch.equal(v, from_shards[k]) for k, v in from_folders.items())

    train(compose_train(tmp_path / "first", [*shard_args, "trainer.max_epochs=1"]))
    _, objs = train(compose_train(tmp_path / "resumed", [*shard_args, f"ckpt_path={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}"]))
    resumed = objs["model"].state_dict()
    assert all(torch.equal(v, resumed[k]) for k, v in from_shards.items()), "resume from shards is not exact"


class RecordPaths(Callback):
    """Writes the A paths each rank trains on, one file a rank and epoch."""

    def __init__(self, out: str):
        self.out = Path(out)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        with open(self.out / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.txt", "a") as f:
            f.writelines(p + "\n" for p in batch["A_path"])


@pytest.mark.slow
def test_ddp_on_two_processes_sees_every_shard_sample_once_per_epoch(tmp_path):
    src = tmp_path / "pairs" / "train"
    src.mkdir(parents=True)
    frogs = sorted(p for p in (FROGS / "train").rglob("*") if p.is_file())[:16]
    for i in range(8):  # 8 real A|B pairs: two frogs side by side
        a, b = (Image.open(f).convert("RGB") for f in frogs[2 * i : 2 * i + 2])
        ab = Image.new("RGB", (64, 32))
        ab.paste(a, (0, 0))
        ab.paste(b, (32, 0))
        ab.save(src / f"{i}.png")
    run_prepare([f"data.root={tmp_path / 'pairs'}"], tmp_path / "shards")
    record = tmp_path / "record"
    record.mkdir()
    proc = run_cli(
        [
            "debug=tiny",
            "logger=csv",
            "trainer=ddp_cpu",
            f"data.root={tmp_path / 'shards'}",
            "data.format=shards",
            "data.load_size=32",
            "data.crop_size=32",
            "trainer.limit_train_batches=1.0",
            "callbacks.image_grid=null",
            "data.batch_size=2",
            f"+callbacks.record={{_target_: tests.test_shards.RecordPaths, out: {record}}}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for epoch in (0, 1):
        seen = [line for rank in (0, 1) for line in (record / f"rank{rank}_epoch{epoch}.txt").read_text().split()]
        assert sorted(Path(p).name for p in seen) == sorted(f"{i}.png" for i in range(8)), seen
        assert (record / f"rank0_epoch{epoch}.txt").read_text() != (record / f"rank1_epoch{epoch}.txt").read_text()


@pytest.mark.slow
def test_bad_files_are_caught_when_preparing_and_shards_missing_say_how_to_make_them(tmp_path):
    data = tmp_path / "pairs" / "train"
    data.mkdir(parents=True)
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(data / "good.png")
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(ImageFileError, match="broken.png"):
        run_prepare([f"data.root={tmp_path / 'pairs'}"], tmp_path / "shards")
    assert run_prepare([f"data.root={tmp_path / 'pairs'}", "data.on_bad_file=skip"], tmp_path / "shards") == {"train": 1}
    with pytest.raises(DataLayoutError, match=r"ganforge-prepare data=<its data config> output="):
        train(compose_train(tmp_path / "run", ["debug=tiny", f"data.root={tmp_path / 'nothing'}", "data.format=shards"]))
