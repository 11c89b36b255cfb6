"""Known user errors exit non-zero with one clear message and no Python traceback."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from tests.conftest import PAIRED_MINI, TINY, run_cli

pytestmark = pytest.mark.slow


def assert_clean_error(proc, *needles):
    assert proc.returncode != 0
    err = proc.stderr + proc.stdout
    assert "Traceback" not in err, err[-2000:]
    for n in needles:
        assert n in err, f"{n!r} not in:\n{err[-2000:]}"


def test_missing_folder(tmp_path):
    missing = tmp_path / "nope"
    proc = run_cli(["debug=tiny", "logger=csv", "data=paired", f"data.root={missing}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert_clean_error(proc, str(missing))


def test_unknown_dataset_name(tmp_path):
    proc = run_cli(
        ["debug=tiny", "logger=csv", "data=paired", "data.name=facadez", f"data.root={tmp_path / 'x'}", f"hydra.run.dir={tmp_path / 'run'}"]
    )
    assert_clean_error(proc, "facadez", "facades")


def test_offline_download_names_url_and_folder(tmp_path):
    root = tmp_path / "facades"
    proc = run_cli(["debug=tiny", "logger=csv", "data=facades", f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert_clean_error(proc, "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz", str(root))


def test_odd_width_pair(tmp_path):
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    Image.new("RGB", (129, 64), "white").save(root / "train" / "odd.png")
    proc = run_cli(["debug=tiny", "logger=csv", f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert_clean_error(proc, "odd.png", "even")


def test_corrupt_file_stops_naming_it_or_is_skipped(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(PAIRED_MINI, root)
    bad = root / "train" / "broken.jpg"
    bad.write_bytes((root / "train" / "1.jpg").read_bytes()[:2000])
    proc = run_cli(["debug=tiny", "logger=csv", f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert_clean_error(proc, "broken.jpg")
    proc = run_cli(["debug=tiny", "logger=csv", f"data.root={root}", "data.on_bad_file=skip", f"hydra.run.dir={tmp_path / 'run2'}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "broken.jpg" in proc.stderr + proc.stdout


def test_checkpoint_from_another_config(tmp_path, tiny_checkpoint):
    proc = run_cli([*TINY, "model.netG.ngf=16", f"ckpt_path={tiny_checkpoint}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert_clean_error(proc, "does not fit", "ngf")


def test_missing_checkpoint_path(tmp_path):
    proc = run_cli([*TINY, f"ckpt_path={tmp_path / 'none.ckpt'}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert_clean_error(proc, "none.ckpt")


def test_full_error_env_shows_traceback(tmp_path):
    proc = run_cli(
        ["debug=tiny", "logger=csv", "data=paired", f"data.root={tmp_path / 'nope'}", f"hydra.run.dir={tmp_path / 'run'}"],
        env={"HYDRA_FULL_ERROR": "1"},
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr
