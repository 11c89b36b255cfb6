"""ganforge-predict: names and sizes kept, bad files reported, written outputs kept."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from tests.conftest import PREDICT, SHARED_DATA, run_cli

pytestmark = pytest.mark.slow


def test_predict_folder_with_a_bad_file(tmp_path, tiny_checkpoint):
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted((SHARED_DATA / "pix2pix_samples" / "facades_pairs").glob("*-targets.png"))[:2]:
        shutil.copy(p, src / p.name)
    Image.new("RGB", (301, 199), "gray").save(src / "odd_size.jpg")
    Image.new("L", (70, 50), 128).save(src / "gray.png")
    (src / "corrupt.png").write_text("not an image")
    out = tmp_path / "out"
    proc = run_cli([f"ckpt_path={tiny_checkpoint}", f"input={src}", f"output={out}"], script=PREDICT)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "corrupt.png" in proc.stdout
    report = json.loads((out / "predict_report.json").read_text())
    assert list(report["failed"]) == [str(src / "corrupt.png")]
    assert len(report["written"]) == 4
    for p in src.iterdir():
        if p.name == "corrupt.png":
            continue
        with Image.open(out / f"{p.stem}.png") as o, Image.open(p) as i:
            assert o.size == i.size


def test_predict_ab_pairs_and_missing_input(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    proc = run_cli(
        [f"ckpt_path={tiny_checkpoint}", f"input={SHARED_DATA / 'pix2pix_paired_mini' / 'test'}", f"output={out}", "pair=true"],
        script=PREDICT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("3.png", "33_AB.png"):
        with Image.open(out / name) as o:
            assert o.size == (256, 256)
    proc = run_cli([f"ckpt_path={tiny_checkpoint}", f"input={tmp_path / 'missing'}", f"output={out}"], script=PREDICT)
    assert proc.returncode != 0 and "missing" in proc.stderr and "Traceback" not in proc.stderr
