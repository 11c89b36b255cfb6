"""Resuming a crafted checkpoint: file paths in ModelCheckpoint's state never reach outside the run's
checkpoint folder (Lightning deletes the previous best/last file), and a malformed training state is one
CheckpointError, exit 2 (issue 25, section 2)."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch

from ganforge.callbacks.checkpointing import ModelCheckpoint
from ganforge.callbacks.resume_checks import check_resume_state
from ganforge.utils.errors import CheckpointError
from tests.conftest import TINY, quiet_trainer, run_cli, train_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished `debug=tiny` run folder (2 epochs)."""
    return train_checkpoint(tmp_path_factory, "resume_run", TINY).parent.parent


def crafted_resume(tiny_run: Path, tmp_path: Path, craft) -> tuple[Path, Path]:
    """A copy of the run whose last.ckpt went through `craft(ckpt, checkpoint_folder)`; (run, checkpoint)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    ckpt_path = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    craft(ckpt, os.path.realpath(run / "checkpoints"))
    crafted = tmp_path / "crafted.ckpt"
    torch.save(ckpt, crafted)
    return run, crafted


def test_resuming_a_checkpoint_that_names_a_file_outside_the_run_deletes_nothing(tiny_run, tmp_path):
    victim = tmp_path / "victim" / "important.txt"
    victim.parent.mkdir()
    victim.write_text("keep me")

    def craft(ckpt, folder):
        outside = f"{folder}/../../victim/important.txt"
        for key, state in ckpt["callbacks"].items():
            if key.startswith("ModelCheckpoint"):
                state.update(
                    dirpath=folder,
                    last_model_path=outside,
                    best_model_path=outside,
                    kth_best_model_path=outside,
                    kth_value=torch.tensor(float("-inf")),
                    best_k_models={outside: torch.tensor(float("-inf"))},
                )

    run, crafted = crafted_resume(tiny_run, tmp_path, craft)
    # one more epoch, so both checkpoint callbacks save and would remove their previous files
    proc = run_cli([*TINY, "model.scheduler.n_epochs=2", f"ckpt_path={crafted}", f"hydra.run.dir={run}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert victim.read_text() == "keep me"
    assert "names files outside its folder" in proc.stderr and "victim/important.txt" in proc.stderr
    assert (run / "checkpoints" / "epoch_002.ckpt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()


def test_a_malformed_loops_entry_is_one_line_exit_2(tiny_run, tmp_path):
    run, crafted = crafted_resume(tiny_run, tmp_path, lambda ckpt, folder: ckpt.update(loops={"fit_loop": "garbage"}))
    proc = run_cli([*TINY, f"ckpt_path={crafted}", f"hydra.run.dir={tmp_path / 'resumed'}"])
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert str(crafted) in errors[0] and "loops.fit_loop is a str" in errors[0]


# --- the checks themselves, in-process ------------------------------------------------------------


@pytest.fixture
def callback(tmp_path) -> ModelCheckpoint:
    (tmp_path / "ckpts").mkdir()
    return ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val/psnr", mode="max", save_top_k=1)


def state_of(folder: str, path: str) -> dict:
    return {
        "monitor": "val/psnr",
        "best_model_score": torch.tensor(7.0),
        "best_model_path": path,
        "current_score": torch.tensor(7.0),
        "dirpath": folder,
        "best_k_models": {path: torch.tensor(7.0)},
        "kth_best_model_path": path,
        "kth_value": torch.tensor(7.0),
        "last_model_path": path,
    }


def test_a_state_inside_the_folder_is_restored_as_lightning_restores_it(callback):
    inside = f"{callback.dirpath}/epoch_000.ckpt"
    callback.load_state_dict(state_of(callback.dirpath, inside))
    assert callback.best_k_models == {inside: torch.tensor(7.0)}
    assert callback.kth_best_model_path == callback.best_model_path == callback.last_model_path == inside
    assert callback.best_model_score == 7.0


@pytest.mark.parametrize("where", ["dotdot", "absolute", "link", "remote", "not_a_string"])
def test_paths_outside_the_folder_are_dropped_with_a_warning(callback, tmp_path, where):
    folder = callback.dirpath
    (tmp_path / "victim.txt").write_text("x")
    (Path(folder) / "link.ckpt").symlink_to(tmp_path / "victim.txt")
    path = {
        "dotdot": f"{folder}/../victim.txt",
        "absolute": str(tmp_path / "victim.txt"),
        "link": f"{folder}/link.ckpt",
        "remote": "s3://bucket/victim.txt",
        "not_a_string": 3,
    }[where]
    with pytest.warns(UserWarning, match="names files outside its folder"):
        callback.load_state_dict(state_of(folder, path))
    assert callback.best_k_models == {} and callback.kth_best_model_path == ""
    assert callback.best_model_path == callback.last_model_path == ""


def test_a_changed_folder_still_drops_a_best_path_that_climbs_into_the_new_one(callback, tmp_path):
    """Lightning restores best_model_path whatever the folder, and the last-checkpoint callback removes the
    previous one when its text lies inside the new folder."""
    climbing = f"{callback.dirpath}/../../victim.txt"
    with pytest.warns(UserWarning, match="names files outside its folder"):
        callback.load_state_dict(state_of(str(tmp_path / "old"), climbing))
    assert callback.best_model_path == ""


@pytest.mark.parametrize(
    "change",
    [
        {"best_k_models": ["a"]},
        {"best_k_models": {}, "kth_best_model_path": "elsewhere.ckpt"},
        {"kth_value": "high"},
        {"best_model_score": [1]},
    ],
)
def test_inconsistent_top_k_bookkeeping_starts_afresh(callback, change):
    state = {**state_of(callback.dirpath, f"{callback.dirpath}/epoch_000.ckpt"), **change}
    with pytest.warns(UserWarning):
        callback.load_state_dict(state)
    assert callback.best_k_models == {} and callback.kth_best_model_path == "" and callback.best_model_score is None


@pytest.fixture(scope="module")
def good_checkpoint(tiny_run) -> dict:
    return torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.fixture(scope="module")
def trainer() -> L.Trainer:
    return quiet_trainer()


def test_a_checkpoint_ganforge_wrote_passes(good_checkpoint, trainer):
    check_resume_state(good_checkpoint, "last.ckpt", trainer)


def _set(path: str, value):
    def edit(ckpt):
        *keys, last = path.split("/")
        node = ckpt
        for key in keys:
            node = node[int(key) if isinstance(node, list) else key]
        node[int(last) if isinstance(node, list) else last] = value

    return edit


@pytest.mark.parametrize(
    "edit, needle",
    [
        (_set("loops", "garbage"), "'loops' is a str"),
        (_set("loops", {"validate_loop": {}}), "no 'fit_loop'"),
        (_set("loops/fit_loop", "garbage"), "loops.fit_loop is a str"),
        (_set("loops/fit_loop/epoch_progress", []), "loops.fit_loop.epoch_progress is a list"),
        (_set("loops/fit_loop/epoch_progress/total/ready", "3"), "epoch_progress.total.ready is '3'"),
        (_set("loops/fit_loop/epoch_progress/total/ready", -1), "non-negative int"),
        (_set("loops/fit_loop/epoch_progress/total/reset", 1), "has the keys"),
        (_set("loops/fit_loop/epoch_loop.batch_progress/is_last_batch", 1), "is_last_batch is 1, not a bool"),
        (_set("loops/fit_loop/epoch_loop.state_dict", None), "epoch_loop.state_dict is a NoneType"),
        (_set("loops/fit_loop/epoch_loop.state_dict/_batches_that_stepped", 1.5), "_batches_that_stepped"),
        (_set("loops/fit_loop/state_dict/combined_loader", "x"), "combined_loader"),
        (_set("epoch", -1), "'epoch' is -1"),
        (_set("global_step", "9"), "'global_step'"),
        (_set("optimizer_states", {"0": {}}), "optimizer_states"),
        (_set("optimizer_states/0/param_groups", "x"), "optimizer_states"),
        (_set("lr_schedulers", "x"), "lr_schedulers"),
        (_set("callbacks", ["x"]), "callbacks"),
    ],
)
def test_a_malformed_training_state_is_one_checkpoint_error(good_checkpoint, trainer, edit, needle):
    ckpt = copy.deepcopy(good_checkpoint)
    edit(ckpt)
    with pytest.raises(CheckpointError, match="cannot resume a run: its training state is malformed") as e:
        check_resume_state(ckpt, "crafted.ckpt", trainer)
    assert needle in str(e.value)
