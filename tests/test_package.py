"""ganforge works as an installed package: configs and the embedded sample ship inside the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_trains_from_an_unrelated_directory(tmp_path):
    # From a copy: setuptools leaves build/ in the source tree it builds.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "logs", "build", "dist", "*.egg-info"))
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = dist.glob("ganforge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ganforge/conf/train.yaml" in names and "ganforge/conf/model/pix2pix.yaml" in names
    assert any(n.startswith("ganforge/assets/sample_edges2photo/train/") for n in names)

    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The wheel's copy, not this checkout's (editable) one; the dependencies come from this venv.
    env = {**os.environ, "PYTHONPATH": str(target), "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
    where = subprocess.run([sys.executable, "-c", "import ganforge; print(ganforge.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(target)), where.stdout + where.stderr
    run = subprocess.run(
        [str(target / "bin" / "ganforge-train"), "debug=fast_dev_run", "logger=csv"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (elsewhere / "logs").is_dir(), "the run writes its logs under the working directory"
