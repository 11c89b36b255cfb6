"""Cluster launch and sweeps: hydra/launcher=slurm's sbatch script, a submitit_local sweep, ckpt_path=last in a
requeued sweep job, and the FID-driven Optuna sweeps (sqlite study, per-epoch reports, pruning)."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write

from ganforge.cli.train import check_sweeper_installed, resolve_ckpt_path
from ganforge.utils.errors import ConfigError
from tests.conftest import REPO, SHARED_DATA, TINY, compose_train, needs_sweep, run_cli

SLURM = ["hydra/launcher=slurm", "trainer=slurm", "hydra.launcher.nodes=4", "hydra.launcher.partition=gpu"]


def test_slurm_trainer_takes_its_gpus_and_nodes_from_the_launcher(tmp_path):
    cfg = compose_train(tmp_path, [*TINY, *SLURM])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (4, 8, 8)
    assert (cfg.trainer.num_nodes, cfg.trainer.devices) == (4, 8)
    assert cfg.trainer.strategy == "ddp_find_unused_parameters_true" and cfg.trainer.accelerator == "gpu"


@pytest.mark.slow
def test_slurm_launcher_writes_the_sbatch_script(tmp_path):
    """The real launcher and submitit write the script; a stand-in `sbatch` keeps it and refuses the job."""
    bin_dir, script = tmp_path / "bin", tmp_path / "job.sbatch"
    bin_dir.mkdir()
    for name, body in (
        ("sbatch", f'cp "$1" {script}\necho "sbatch: error: this is a test" >&2\nexit 1'),
        ("srun", "exit 1"),
    ):  # submitit looks for srun before it submits
        fake = bin_dir / name
        fake.write_text(f"#!/bin/sh\n{body}\n")
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    proc = run_cli(
        ["-m", *TINY, *SLURM, "ckpt_path=last", "model.lambda_l1=10,100", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    assert proc.returncode != 0 and "this is a test" in proc.stderr + proc.stdout
    text = script.read_text()
    lines = set(text.splitlines())
    for flag in (
        "--nodes=4",
        "--gpus-per-node=8",
        "--ntasks-per-node=8",
        "--cpus-per-task=8",
        "--time=1440",
        "--partition=gpu",
        "--requeue",
        "--signal=USR2@120",
        "--job-name=debug",
        "--array=0-1%2",
    ):  # one array task per sweep job
        assert f"#SBATCH {flag}" in lines, (flag, text)
    assert f"#SBATCH --output={tmp_path / 'sweep'}/.submitit/%A_%a/%A_%a_0_log.out" in lines, text
    # one srun task per GPU runs submitit's entry point, which unpickles the launcher and runs the job
    assert any(line.startswith("srun ") and "submitit.core._submit" in line for line in lines), text


@pytest.mark.slow
def test_submitit_local_runs_a_two_job_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        [
            "-m",
            *TINY,
            "hydra/launcher=submitit_local",
            "trainer=cpu",
            "trainer.max_epochs=1",
            "ckpt_path=last",
            "model.lambda_l1=10,100",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
        assert "no last.ckpt in this sweep job's folder" in (sweep / job / "debug.log").read_text()
    logs = list((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2  # each job ran as its own submitit process


def test_ckpt_path_last_in_a_sweep_job_resumes_only_its_own_folder(tmp_path):
    job = tmp_path / "multiruns" / "t" / "1"
    other = tmp_path / "multiruns" / "t" / "0" / "checkpoints" / "last.ckpt"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"")
    cfg = compose_train(job, [*TINY, "ckpt_path=last", f"paths.log_dir={tmp_path}", "task_name=multiruns"])
    with read_write(cfg.hydra):
        cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig().set_config(cfg)
    assert resolve_ckpt_path(cfg) is None  # job 0's checkpoint is another setting
    own = job / "checkpoints" / "last.ckpt"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"")
    assert resolve_ckpt_path(cfg) == str(own)  # a requeued job runs again in its folder: its own last.ckpt
    with read_write(cfg.hydra):
        cfg.hydra.mode = RunMode.RUN
    HydraConfig().set_config(cfg)
    own.unlink()
    assert resolve_ckpt_path(cfg) == str(other)  # a single run relaunched into a new folder: the newest


CYCLEGAN = [
    "-m",
    "debug=tiny",
    "logger=csv",
    "model=cyclegan",
    "data=cat2dog",
    "data.load_size=32",
    "data.crop_size=32",
    "trainer.limit_train_batches=1",
    "callbacks.metrics.fid_feature=64",
    "hparams_search=cyclegan_optuna",
]


@pytest.mark.slow
@needs_sweep
def test_cyclegan_fid_sweep_keeps_its_study_in_sqlite_resumes_and_prunes(tmp_path, fake_torch_home):
    import optuna

    env = {"TORCH_HOME": str(fake_torch_home)}
    logs = tmp_path / "logs"
    proc = run_cli([*CYCLEGAN, "hydra.sweeper.n_trials=3", f"paths.log_dir={logs}", f"hydra.sweep.dir={tmp_path / 'a'}"], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    storage = f"sqlite:///{logs / 'optuna' / 'cyclegan.db'}"
    trials = optuna.load_study(study_name="cyclegan", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    for t in trials:  # val/fid (A -> B) reported after each of the 2 epochs; the value is the last one
        assert sorted(t.intermediate_values) == [0, 1] and t.value == t.intermediate_values[1]
        assert "pruned_at_epoch" not in t.user_attrs
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 3

    # The same sweep again (as after a crash) loads the study and adds a trial, which a pruner that rejects
    # any FID stops after its first epoch.
    pruner = [
        "callbacks.optuna_pruning.pruner._target_=optuna.pruners.ThresholdPruner",
        "~callbacks.optuna_pruning.pruner.n_startup_trials",
        "~callbacks.optuna_pruning.pruner.n_warmup_steps",
        "+callbacks.optuna_pruning.pruner.upper=0.0",
    ]
    proc = run_cli([*CYCLEGAN, "hydra.sweeper.n_trials=1", *pruner, f"paths.log_dir={logs}", f"hydra.sweep.dir={tmp_path / 'b'}"], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = optuna.load_study(study_name="cyclegan", storage=storage).trials
    assert len(trials) == 4
    assert trials[3].user_attrs["pruned_at_epoch"] == 0 and list(trials[3].intermediate_values) == [0]
    assert trials[3].value == trials[3].intermediate_values[0]


@pytest.mark.parametrize(
    ("model", "extra", "metric"),
    [
        ("dcgan", ["data=image_folder", "data.root=x"], "val/fid"),
        ("singan", ["data=single_image", "data.path=x"], "val/sifid"),
        ("cyclegan", [], "val/fid"),
    ],
)
@needs_sweep
def test_fid_sweeps_optimise_their_metric_with_sqlite_and_pruning(tmp_path, model, extra, metric):
    cfg = compose_train(tmp_path, [f"model={model}", *extra, f"hparams_search={model}_optuna", f"paths.log_dir={tmp_path}"])
    assert cfg.optimized_metric == metric
    assert cfg.hydra.sweeper.direction == "minimize" and cfg.hydra.sweeper.study_name == model
    assert cfg.hydra.sweeper.storage == f"sqlite:///{tmp_path / 'optuna' / model}.db"
    assert (tmp_path / "optuna").is_dir()  # sqlite needs the folder
    cb = cfg.callbacks
    assert cb.metrics.every_n_epochs == 1 and cb.metrics.metrics == [metric.removeprefix("val/")]
    assert (cb.model_checkpoint.monitor, cb.model_checkpoint.mode) == (metric, "min")
    assert cb.optuna_pruning.monitor == metric and cb.optuna_pruning.storage == cfg.hydra.sweeper.storage
    assert cb.optuna_pruning.study_name == model


@pytest.mark.slow
@needs_sweep
def test_singan_sifid_sweep_reports_every_epoch(tmp_path, fake_torch_home):
    import optuna

    proc = run_cli(
        [
            "-m",
            "debug=tiny",
            "logger=csv",
            "model=singan",
            "data=single_image",
            f"data.path={SHARED_DATA / 'singan' / 'Images' / 'balloons.png'}",
            "hparams_search=singan_optuna",
            "hydra.sweeper.n_trials=1",
            f"paths.log_dir={tmp_path / 'logs'}",
            f"hydra.sweep.dir={tmp_path / 'a'}",
        ],
        env={"TORCH_HOME": str(fake_torch_home)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = optuna.load_study(study_name="singan", storage=f"sqlite:///{tmp_path / 'logs' / 'optuna' / 'singan.db'}").trials
    # debug=tiny SinGAN: 3 scales x 16 iterations, 8 an epoch: SIFID of 2 samples (data.num_val_images) after each of 6 epochs
    assert sorted(trial.intermediate_values) == list(range(6)) and trial.value == trial.intermediate_values[5] > 0


@pytest.mark.parametrize("override", ["hparams_search=pix2pix_optuna", "+hparams_search=dcgan_optuna", "hydra/sweeper=optuna_sqlite"])
def test_a_sweep_without_the_sweep_extra_says_how_to_get_it(monkeypatch, override):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("hydra_plugins.hydra_optuna_sweeper") else find_spec(name, *a)
    )
    with pytest.raises(ConfigError, match=r'needs the Optuna sweeper, which is not installed: pip install "ganforge\[sweep\]"'):
        check_sweeper_installed(["-m", "debug=tiny", override])
    check_sweeper_installed(["-m", "hparams_search=null", "~hparams_search", "hydra/sweeper=basic", "model.lambda_l1=1,2"])


@pytest.mark.slow
def test_python_train_py_sweep_without_the_extra_exits_2_with_one_line(tmp_path):
    # train.py as a user runs it, in an interpreter where the sweeper's plugin cannot be found.
    hide = (
        "import importlib.util as u, runpy, sys; f = u.find_spec; "
        "u.find_spec = lambda n, *a: None if n.startswith('hydra_plugins.hydra_optuna_sweeper') else f(n, *a); "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            hide,
            str(REPO / "train.py"),
            "-m",
            "hparams_search=pix2pix_optuna",
            *TINY,
            "hydra.sweeper.n_trials=1",
            f"hydra.sweep.dir={tmp_path}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == (
        'Error: hparams_search=pix2pix_optuna needs the Optuna sweeper, which is not installed: pip install "ganforge[sweep]"'
    )
