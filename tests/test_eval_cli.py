"""ganforge-eval end to end on a real debug=tiny checkpoint, and metrics logged during training."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ganforge.cli.train import train
from tests.conftest import EVAL, TINY, compose_train, run_cli

pytestmark = pytest.mark.slow
# Small and fast: 64-d Inception features, SqueezeNet LPIPS (the file the fixture fakes).
FAST = ["lpips_net=squeeze", "fid_feature=64", "kid_subsets=10"]


def test_eval_writes_metrics_json_grid_and_images(tmp_path, tiny_checkpoint, fake_torch_home):
    out = tmp_path / "eval"
    proc = run_cli([f"ckpt_path={tiny_checkpoint}", f"output={out}", *FAST], script=EVAL, env={"TORCH_HOME": str(fake_torch_home)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "metrics.json").read_text())
    assert list(report["metrics"]) == ["fid", "kid", "is", "lpips", "psnr", "ssim"]
    fid = report["metrics"]["fid"]
    assert fid["samples"] == fid["reference_samples"] == 2 and fid["reference_split"] == "test"
    assert fid["feature_layer"].startswith("first max-pool") and "299x299" in fid["resize"]
    assert fid["weights"].endswith("weights-inception-2015-12-05-6726825d.pth")
    assert report["metrics"]["lpips"]["net"] == "squeeze" and "std" in report["metrics"]["kid"]
    # pix2pix generates as the reference test.py: G in train mode, one image at a time, dropout on
    gen = report["generation"]
    assert (gen["generator_mode"], gen["per_sample"], gen["dropout"]) == ("train", True, True)
    assert (out / "samples.png").is_file() and len(list((out / "images").glob("*.png"))) == 2
    assert "fid" in proc.stdout and "metrics.json" in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["metrics=[fid,diversity]"], "not multimodal"),
        (["metrics=[sifid]"], "multi-image dataset"),
        (["metrics=[fid]", "num_samples=1"], "at least 2"),
        (["weights.inception=/nonexistent/inception.pth"], "weights.inception=/nonexistent/inception.pth does not exist"),
    ],
)
def test_eval_user_errors_stop_before_any_work(tmp_path, tiny_checkpoint, fake_torch_home, args, message):
    out = tmp_path / "eval"
    proc = run_cli([f"ckpt_path={tiny_checkpoint}", f"output={out}", *FAST, *args], script=EVAL, env={"TORCH_HOME": str(fake_torch_home)})
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (out / "metrics.json").exists()


def test_training_logs_generative_metrics_for_checkpoints_and_sweeps(tmp_path, fake_torch_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(fake_torch_home))
    cfg = compose_train(
        tmp_path,
        [
            *TINY,
            "+callbacks/metrics=default",
            "callbacks.metrics.every_n_epochs=1",
            *(f"callbacks.metrics.{a}" for a in FAST),
            "callbacks.model_checkpoint.monitor=val/fid",
            "callbacks.model_checkpoint.mode=min",
        ],
    )
    metrics, objects = train(cfg)
    for key in ("val/fid", "val/kid", "val/is", "val/lpips"):
        assert key in metrics, sorted(metrics)
    assert metrics["val/psnr"] == pytest.approx(float(objects["trainer"].callback_metrics["val/psnr"]))
    assert Path(objects["trainer"].checkpoint_callback.best_model_path).is_file()
    with open(tmp_path / "csv" / "metrics.csv") as f:
        fids = [r["val/fid"] for r in csv.DictReader(f) if r.get("val/fid")]
    assert len(fids) == 2  # every epoch of the 2-epoch tiny run


def test_training_refuses_a_metric_the_model_cannot_supply(tmp_path, fake_torch_home, monkeypatch):
    from ganforge.utils.errors import ConfigError

    monkeypatch.setenv("TORCH_HOME", str(fake_torch_home))
    cfg = compose_train(tmp_path, [*TINY, "+callbacks/metrics=default", "callbacks.metrics.metrics=[diversity]"])
    with pytest.raises(ConfigError, match="not multimodal"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()


def test_cyclegan_fid_per_direction(tmp_path, fake_torch_home):
    run = tmp_path / "run"
    proc = run_cli(
        [
            "debug=tiny",
            "logger=csv",
            "data=cat2dog",
            "model=cyclegan",
            "data.load_size=32",
            "data.crop_size=32",
            "trainer.limit_train_batches=1",
            f"hydra.run.dir={run}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = run / "checkpoints" / "last.ckpt"
    fids = {}
    for direction in ("AtoB", "BtoA"):
        out = tmp_path / direction
        proc = run_cli(
            [f"ckpt_path={ckpt}", f"output={out}", "metrics=[fid]", "num_samples=6", f"direction={direction}", *FAST],
            script=EVAL,
            env={"TORCH_HOME": str(fake_torch_home)},
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = json.loads((out / "metrics.json").read_text())
        assert report["reference"]["direction"] == direction
        assert report["generation"] == {"generator_mode": "eval", "per_sample": False}
        fids[direction] = report["metrics"]["fid"]["value"]
    assert fids["AtoB"] != fids["BtoA"]  # different generators, different reference domains
    proc = run_cli(
        [f"ckpt_path={ckpt}", f"output={tmp_path / 'bad'}", "direction=up", *FAST], script=EVAL, env={"TORCH_HOME": str(fake_torch_home)}
    )
    assert proc.returncode == 2 and "direction must be one of" in proc.stderr and "Traceback" not in proc.stderr
