"""What keeps a training run's peak memory down: checkpoints written straight to their file, and the last
step's gradients released before the model folder is written (docs/benchmarks.md, "Peak memory")."""

from __future__ import annotations

import lightning.fabric.utilities.cloud_io as cloud_io
import pytest
import torch

from ganforge.callbacks.checkpointing import StreamingCheckpointIO
from ganforge.cli.train import train


def _no_in_memory_copy(checkpoint, filepath):
    raise AssertionError(f"Lightning's _atomic_save (the whole checkpoint in a BytesIO first) was used for {filepath}")


def test_a_checkpoint_streams_to_its_file_and_loads_back(tmp_path, monkeypatch):
    monkeypatch.setattr(cloud_io, "_atomic_save", _no_in_memory_copy)
    state = {"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 3}
    path = tmp_path / "sub" / "last.ckpt"
    StreamingCheckpointIO().save_checkpoint(state, path)
    back = torch.load(path, weights_only=True)
    assert back["epoch"] == 3 and torch.equal(back["state_dict"]["w"], state["state_dict"]["w"])
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    StreamingCheckpointIO().save_checkpoint({"epoch": 1}, path)

    def half_written(obj, f):
        open(f, "wb").write(b"PK\x03\x04 cut short")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(OSError, match="disk full"):
        StreamingCheckpointIO().save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_remote_paths_keep_lightnings_writer(monkeypatch):
    seen = []
    monkeypatch.setattr(cloud_io, "_atomic_save", lambda checkpoint, filepath: seen.append(str(filepath)))
    monkeypatch.setattr("lightning.fabric.plugins.io.torch_io._atomic_save", lambda checkpoint, filepath: seen.append(str(filepath)))
    StreamingCheckpointIO().save_checkpoint({"epoch": 1}, "memory://bucket/last.ckpt")
    assert seen == ["memory://bucket/last.ckpt"]


@pytest.mark.slow
def test_training_streams_its_checkpoints_and_ends_without_gradients(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(cloud_io, "_atomic_save", _no_in_memory_copy)
    monkeypatch.setattr("lightning.fabric.plugins.io.torch_io._atomic_save", _no_in_memory_copy)
    _, objects = train(tiny_cfg())
    assert isinstance(objects["trainer"].strategy.checkpoint_io, StreamingCheckpointIO)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file() and (tmp_path / "checkpoints" / "model").is_dir()
    assert all(p.grad is None for p in objects["model"].parameters())
