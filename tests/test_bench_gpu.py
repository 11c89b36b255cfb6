"""bench/gpu.py --dry-run: every model trains through the script on the CPU (eager and compiled) and the table
has one row per combination, timed or skipped with its reason."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

#: a U-Net GAN and SinGAN (whose critics stay eager under compile); `--dry-run` alone runs all six
MODELS = ("pix2pix", "singan")


def test_dry_run_prints_a_row_per_combination():
    args = ["--dry-run", "--models", ",".join(MODELS), "--precisions", "32-true,16-mixed", "--channels-last", "no"]
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), *args], cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("device: CPU (dry run)")
    rows = {tuple(line.split()[:4]): line.split()[4:] for line in lines if line.split()[:1] and line.split()[0] in MODELS}
    expected = {(m, p, c, "no") for m in MODELS for p in ("32-true", "16-mixed") for c in ("no", "yes")}
    assert set(rows) == expected
    for (model, precision, compiled, _), rest in rows.items():
        if precision == "16-mixed":
            assert rest[:2] == ["skipped:", "16-mixed:"], (model, rest)
            continue
        batch, images_per_s, ms_per_step, first, gflop, tflops, share = rest
        assert int(batch) >= 1 and float(images_per_s) > 0 and float(ms_per_step) > 0 and float(first) > 0, (model, rest)
        assert float(gflop) > 0, (model, compiled, rest)  # counted in the eager row, shown in the compiled row too
        assert share == "-"  # no known peak for a CPU
