"""End-to-end training through the real config: artifacts, learning, exact resume, CLI contract."""

from __future__ import annotations

import csv
import re

import pytest
import torch

from ganforge.cli.train import train
from tests.conftest import PAIRED_MINI, TINY, needs_sweep, run_cli

pytestmark = pytest.mark.slow


def test_tiny_run_writes_checkpoints_grids_and_metrics(tiny_cfg, tmp_path):
    metrics, objects = train(tiny_cfg())
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and any(n.startswith("epoch_") for n in ckpts)
    grids = list((tmp_path / "samples").glob("*.png"))
    assert grids, "the image-grid callback wrote no PNG"
    for key in ("val/psnr", "val/ssim", "val/l1", "train/loss_G_L1", "train/loss_D"):
        assert key in metrics and metrics[key] == metrics[key], key  # present and not NaN
    assert objects["trainer"].current_epoch == 2


def test_training_lowers_l1_when_overfitting_one_pair(tiny_cfg, tmp_path):
    cfg = tiny_cfg(
        "data.flip=false",
        "data.load_size=64",
        "data.max_dataset_size=1",
        "trainer.limit_train_batches=1",
        "trainer.max_epochs=50",
        "model.scheduler.n_epochs=50",
        "model.scheduler.n_epochs_decay=0",
        "model.optimizer_g.lr=0.001",
        "callbacks.image_grid.every_n_batches=0",
        "trainer.check_val_every_n_epoch=50",
    )
    train(cfg)
    with open(tmp_path / "csv" / "metrics.csv") as f:
        l1 = [float(r["train/loss_G_L1"]) for r in csv.DictReader(f) if r.get("train/loss_G_L1")]
    assert len(l1) >= 30
    first, last = sum(l1[:5]) / 5, sum(l1[-5:]) / 5
    assert last < 0.6 * first, (first, last)


def test_resume_equals_uninterrupted(tmp_path):
    from tests.conftest import compose_train

    common = [*TINY, "model.scheduler.n_epochs=1", "model.scheduler.n_epochs_decay=2", "callbacks.image_grid.every_n_batches=1"]
    full = compose_train(tmp_path / "full", [*common, "trainer.max_epochs=3"])
    _, objs = train(full)
    straight = {k: v.clone() for k, v in objs["model"].state_dict().items()}
    lr_straight = objs["trainer"].optimizers[0].param_groups[0]["lr"]

    first = compose_train(tmp_path / "first", [*common, "trainer.max_epochs=1"])
    train(first)
    ckpt = tmp_path / "first" / "checkpoints" / "last.ckpt"
    second = compose_train(tmp_path / "second", [*common, "trainer.max_epochs=3", f"ckpt_path={ckpt}"])
    _, objs = train(second)
    resumed = objs["model"].state_dict()
    assert objs["trainer"].optimizers[0].param_groups[0]["lr"] == pytest.approx(lr_straight)
    assert lr_straight < 2e-4  # the decay really ran
    for k, v in straight.items():
        assert torch.equal(v, resumed[k]), f"{k} differs after resume"


def test_cli_leaves_checkpoint_and_grids_under_run_dir(tiny_checkpoint):
    run_dir = tiny_checkpoint.parent.parent
    assert tiny_checkpoint.is_file()
    assert list(run_dir.glob("samples/*.png"))
    assert (run_dir / ".hydra" / "config.yaml").is_file()


def test_multirun_two_jobs(tmp_path):
    proc = run_cli(["-m", *TINY, "model.lambda_l1=10,100", f"hydra.sweep.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in ("0", "1"):
        assert (tmp_path / job / "checkpoints" / "last.ckpt").is_file()
    lambdas = {(tmp_path / j / ".hydra" / "overrides.yaml").read_text().count("lambda_l1=10\n") for j in "01"}
    assert lambdas == {0, 1}


@needs_sweep
def test_optuna_sweep_returns_the_metric(tmp_path):
    proc = run_cli(
        [
            "-m",
            *TINY,
            "hparams_search=pix2pix_optuna",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=1",
            f"hydra.sweep.dir={tmp_path}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = (tmp_path / "optimization_results.yaml").read_text()
    assert "best_params" in result and "best_value" in result


def test_ddp_cpu_two_processes(tmp_path):
    proc = run_cli([*TINY, "trainer=ddp_cpu", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert "terminate called" not in proc.stderr
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    # the 2 training pairs split over 2 ranks: 1 batch per epoch, 2 epochs, 2 optimizer steps a batch
    assert ckpt["global_step"] == 1 * 2 * 2


def test_bf16_mixed_trains(tiny_cfg, tmp_path):
    metrics, _ = train(tiny_cfg("trainer.precision=bf16-mixed"))
    assert metrics["val/psnr"] == metrics["val/psnr"]


def test_logger_many_writes_csv_tensorboard_and_an_offline_wandb_run(tmp_path, capfd):
    from tests.conftest import compose_train

    _, objects = train(compose_train(tmp_path, [*TINY, "logger=many", "trainer.max_epochs=1"]))
    assert (tmp_path / "csv" / "metrics.csv").is_file()
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs and list(runs[0].glob("*.wandb"))
    # Lightning's WandbLogger passes anonymous=None, which wandb warns about on every run; ours does not.
    (wandb_logger,) = [lg for lg in objects["trainer"].loggers if lg.__class__.__name__ == "WandbLogger"]
    assert "anonymous" not in wandb_logger._wandb_init
    out, err = capfd.readouterr()
    assert "anonymous setting" not in out + err


@pytest.mark.parametrize("debug", ["fast_dev_run", "overfit", "limit"])
def test_debug_configs_compose_and_fast_dev_run_trains(tmp_path, debug):
    from tests.conftest import compose_train

    small = [
        "logger=csv",
        f"data.root={PAIRED_MINI}",
        "model.netG.ngf=8",
        "model.netG.num_downs=6",
        "model.netD.ndf=8",
        "data.load_size=72",
        "data.crop_size=64",
        "data.num_workers=0",
    ]
    cfg = compose_train(tmp_path, [f"debug={debug}", *small])
    assert cfg.task_name == "debug"
    if debug == "fast_dev_run":
        _, objects = train(cfg)
        assert objects["trainer"].global_step == 2  # one batch: the D step and the G step


# ---------------------------------------------------------------- the first run: `python train.py`

FIRST_RUN_SMALL = ["model.netG.ngf=8", "model.netD.ndf=8", "data.num_workers=0"]


def test_first_run_learns_to_draw_the_unseen_val_photo(tmp_path):
    """The default run's task (the embedded sample, photo -> line drawing) with narrow nets at 128 px:
    after its 5 epochs, what G draws of the held-out rocket photos correlates with their edge maps.
    (At 256 px with the reference nets the correlation is 0.67: docs/training.md, "The first run".)"""
    from tests.conftest import compose_train, train_from_untrained

    cfg = compose_train(
        tmp_path,
        [
            "logger=csv",
            *FIRST_RUN_SMALL,
            "data.load_size=143",
            "data.crop_size=128",
            "model.netG.num_downs=7",
            "callbacks.image_grid.every_n_batches=0",
        ],
    )
    assert cfg.data.direction == "BtoA" and cfg.model._target_.endswith("Pix2Pix")
    untrained, objects = train_from_untrained(cfg)
    assert objects["trainer"].current_epoch == 5

    def correlations(model) -> list[float]:
        torch.manual_seed(0)
        out = []
        for batch in objects["datamodule"].val_dataloader():
            assert all("rocket" in p for p in batch["A_path"])  # photos training never saw
            for drawn, edges in zip(model.inference_model().translate(batch["A"]), batch["B"]):
                out.append(torch.corrcoef(torch.stack([drawn.mean(0).flatten(), edges.mean(0).flatten()]))[0, 1].item())
        return out

    before, after = correlations(untrained), correlations(objects["model"])
    assert max(abs(r) for r in before) < 0.1, before
    assert min(after) > 0.25 and sum(after) / len(after) > 0.35, after


def test_first_run_prints_no_warnings(tmp_path):
    """`python train.py` with its default W&B logger (offline here), checkpoints, grids and LR monitor:
    nothing on stdout or stderr is a warning (W&B's "anonymous setting has no effect" was one)."""
    proc = run_cli(
        [
            *FIRST_RUN_SMALL,
            "model.netG.num_downs=6",
            "data.load_size=72",
            "data.crop_size=64",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2",
            "+trainer.limit_val_batches=1",
            f"hydra.run.dir={tmp_path}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file() and list((tmp_path / "wandb").glob("offline-run-*"))
    # UserWarning, "wandb: WARNING", "warn:"; not the run folder (test_first_run_prints_no_warni...) or ignore_warnings
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if re.search(r"Warning|\bWARN(ING)?\b|\bwarn(ing)?\b", ln)]
    assert not lines, "\n".join(lines)
