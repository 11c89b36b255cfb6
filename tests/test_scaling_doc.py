"""docs/scaling.md shows what bench/scaling.py computes from the FLOP counts bench/flops.py measured (bench/flops.json)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from tests.conftest import REPO


def test_scaling_doc_tables_are_the_estimates_of_the_measured_counts():
    out = subprocess.run(
        [sys.executable, "bench/scaling.py", "bench/flops.json"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    doc = (REPO / "docs" / "scaling.md").read_text()
    tables = out.split("\n\n")
    assert len(tables) == 2
    for table in tables:
        assert table in doc, table[:300]
    models = {r["model"] for r in json.loads((REPO / "bench" / "flops.json").read_text())}
    assert models == {"pix2pix", "bicyclegan", "cyclegan", "discogan", "dualgan", "spade", "dcgan", "singan"}


def test_ring_allreduce_arithmetic():
    spec = importlib.util.spec_from_file_location("scaling", REPO / "bench" / "scaling.py")
    scaling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scaling)

    # 100 M fp32 gradients, 2 backwards, 8 GPUs at 200 GB/s: 2 x 400 MB x 2 x 7/8 / 200 GB/s = 7 ms
    assert abs(scaling.allreduce_s(100e6, 2, 8, 200e9) - 7e-3) < 1e-9
