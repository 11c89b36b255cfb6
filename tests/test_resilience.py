"""Kill it anywhere, lose at most one interval, resume exactly; non-finite losses stop or skip."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ganforge.gans.checkpoint import read_checkpoint
from tests.conftest import PAIRED_MINI, REPO, SHARED_DATA, TINY, run_cli

SAMPLES = SHARED_DATA / "pix2pix_samples" / "AB"
CAT2DOG = [
    "model=cyclegan",
    "data=cat2dog",
    f"data.root={SHARED_DATA / 'cifar10_cat2dog'}",
    "debug=tiny",
    "logger=csv",
    "data.load_size=32",
    "data.crop_size=32",
    "model.pool_size=3",
]


@pytest.fixture(scope="module")
def five_pairs(tmp_path_factory):
    """Five real A|B pairs, so an epoch of debug=tiny has 4 batches (it stops at 4)."""
    root = tmp_path_factory.mktemp("five_pairs")
    (root / "train").mkdir()
    (root / "val").mkdir()
    for src in [
        *sorted((PAIRED_MINI / "train").glob("*.jpg")),
        PAIRED_MINI / "test" / "3.jpg",
        SAMPLES / "edges2shoes.jpg",
        SAMPLES / "edges2handbags.jpg",
    ]:
        shutil.copy(src, root / "train" / f"{len(list((root / 'train').iterdir()))}.jpg")
    shutil.copy(PAIRED_MINI / "test" / "33_AB.jpg", root / "val" / "0.jpg")
    return root


def _weights(ckpt) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def _run(args, out, **kw):
    proc = run_cli([*args, f"hydra.run.dir={out}"], **kw)
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_sigkill_mid_epoch_then_resume_equals_the_uninterrupted_run(tmp_path, five_pairs, model):
    if model == "pix2pix":
        args = [*TINY, f"data.root={five_pairs}"]
    else:
        args = [*CAT2DOG]
    args += ["trainer.max_epochs=2", "callbacks.mid_epoch_checkpoint.every_n_batches=2", "callbacks.image_grid.every_n_batches=1"]
    straight = _run(args, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]

    # Killed as batch 2 of epoch 2 starts (run batch 6 of 4 + 4): the last checkpoint is the one
    # written after batch 1 of epoch 2, inside the epoch.
    killed = _run([*args, "+callbacks.kill._target_=tests.faults.KillAtBatch", "+callbacks.kill.at=6"], tmp_path / "run")
    assert killed.returncode == -9, killed.stderr[-2000:]
    meta = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert meta["ganforge"]["mid_epoch"] and meta["epoch"] == 1
    if model == "cyclegan":
        assert len(meta["ganforge"]["extras"]["image_pools"]["fake_B"]["images"]) == 3  # the pool went in too

    resumed = _run([*args, f"ckpt_path={tmp_path / 'run'}"], tmp_path / "run")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr
    a, b = _weights(tmp_path / "straight" / "checkpoints" / "last.ckpt"), _weights(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after a kill and a resume"


@pytest.mark.slow
def test_a_kill_at_any_moment_leaves_a_loadable_last_ckpt(tmp_path):
    """Checkpoints after every batch, SIGKILL at random moments (also during writes): the last.ckpt on
    disk always loads, and the run resumes from it."""
    args = [
        *CAT2DOG,
        "trainer.max_epochs=50",
        "trainer.limit_train_batches=20",
        "callbacks.mid_epoch_checkpoint.every_n_batches=1",
        "callbacks.image_grid.every_n_batches=1000",
    ]
    rng = random.Random(0)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    steps = []
    for _ in range(4):
        cmd = [
            sys.executable,
            str(REPO / "train.py"),
            *args,
            f"hydra.run.dir={tmp_path}",
            *([f"ckpt_path={tmp_path}"] if ckpt.exists() else []),
        ]
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "WANDB_MODE": "offline"}
        )
        # Kill once this process has written checkpoints of its own, at a random moment after.
        before = ckpt.stat().st_mtime_ns if ckpt.exists() else 0
        deadline = time.monotonic() + 120
        while (not ckpt.exists() or ckpt.stat().st_mtime_ns == before) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        time.sleep(rng.uniform(0.5, 3.0))
        proc.kill()
        proc.wait()
        steps.append(read_checkpoint(ckpt)["global_step"])  # raises if the file were half-written
    assert steps == sorted(steps) and steps[-1] > steps[0], f"each relaunch resumed and went on: {steps}"


def nan_input_run(five_pairs: Path, max_epochs: int, at: int) -> list[str]:
    """A tiny pix2pix run on `five_pairs` whose input batch `at` is NaN (tests.faults.NaNInputAt)."""
    nan = ["+callbacks.nan._target_=tests.faults.NaNInputAt", f"+callbacks.nan.at={at}"]
    return [*TINY, f"data.root={five_pairs}", f"trainer.max_epochs={max_epochs}", *nan]


@pytest.mark.slow
def test_a_nan_loss_stops_naming_the_loss_the_step_and_the_last_good_checkpoint(tmp_path, five_pairs):
    args = [*nan_input_run(five_pairs, max_epochs=3, at=5), "callbacks.nonfinite.check_every_n_batches=1"]
    proc = _run(args, tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    err = proc.stderr
    assert "Traceback" not in err and "training stopped at step" in err and "is not finite" in err
    assert "train/loss_" in err and "=nan" in err
    assert f"the last good checkpoint is {tmp_path / 'checkpoints'}" in err
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):
        assert all(torch.isfinite(v).all() for v in _weights(path).values() if v.is_floating_point()), path


def test_a_nan_loss_is_named_from_the_last_step_even_when_it_was_not_logged():
    from types import SimpleNamespace

    from ganforge.callbacks.nonfinite import NonFiniteLoss

    module = SimpleNamespace(train_values={"train/loss_D": torch.tensor(float("nan")), "train/scale": 0.0})
    trainer = SimpleNamespace(callback_metrics={"train/loss_D": torch.tensor(0.5), "val/psnr": torch.tensor(20.0)}, lightning_module=module)
    assert NonFiniteLoss._culprit(trainer) == "train/loss_D=nan"  # not the logged 0.5 of an earlier step


@pytest.mark.slow
def test_skip_step_skips_a_nan_step_and_stops_after_too_many_in_a_row(tmp_path, five_pairs):
    base = [*nan_input_run(five_pairs, max_epochs=2, at=2), "callbacks.nonfinite.on_nonfinite=skip_step"]
    once = _run([*base, "+callbacks.nan.until=3"], tmp_path / "once")
    assert once.returncode == 0, once.stderr[-3000:]
    assert "its update was skipped" in once.stderr
    ckpt = torch.load(tmp_path / "once" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2 * 8 - 2  # pix2pix: D and G a batch, 8 batches; both steps of batch 2 skipped
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())

    always = _run([*base, "callbacks.nonfinite.max_consecutive_skips=4"], tmp_path / "always")
    assert always.returncode == 2 and "4 steps in a row had a non-finite loss" in always.stderr


@pytest.mark.slow
def test_ckpt_path_last_relaunches_and_a_finished_run_reports_its_metrics(tmp_path):
    logs = tmp_path / "logs"
    args = [*TINY, "trainer.max_epochs=1", f"paths.log_dir={logs}", "ckpt_path=last"]
    first = run_cli([*args, f"hydra.run.dir={logs / 'debug' / 'runs' / 'a'}"])
    assert first.returncode == 0 and "no last.ckpt under" in first.stdout + first.stderr, first.stderr[-2000:]
    # The same command again (a relaunched job), into a new run folder: it finds run a's last.ckpt,
    # sees max_epochs reached, and returns the stored metrics with exit 0.
    again = run_cli([*args, f"hydra.run.dir={logs / 'debug' / 'runs' / 'b'}", "optimized_metric=val/psnr"])
    out = again.stdout + again.stderr
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming {logs / 'debug' / 'runs' / 'a' / 'checkpoints' / 'last.ckpt'}" in out
    assert "finished run" in out
