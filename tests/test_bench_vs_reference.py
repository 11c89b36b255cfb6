"""bench/vs_reference.py --quick end to end: every reference and ganforge run starts, and the table has every row.

It needs local clones of the pinned reference repositories (no network here or in CI):
GANFORGE_REF_SOURCES="cyclegan=<dir>,bicyclegan=<dir>,spade=<dir>,sync_batchnorm=<dir>,singan=<dir>"
(docs/benchmarks.md, "ganforge vs the reference code"); without them the test is skipped.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NAMES = ("cyclegan", "bicyclegan", "spade", "sync_batchnorm", "singan")


def ref_sources() -> dict[str, str]:
    items = [s for s in os.environ.get("GANFORGE_REF_SOURCES", "").split(",") if "=" in s]
    return dict(s.split("=", 1) for s in items)


@pytest.mark.slow
def test_quick_run_has_every_row(tmp_path):
    sources = ref_sources()
    missing = [n for n in NAMES if not Path(sources.get(n, "/nonexistent")).exists()]
    if missing:
        pytest.skip(f"no local source for the reference(s) {', '.join(missing)}: set GANFORGE_REF_SOURCES (docs/benchmarks.md)")
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "vs_reference.py"), "--quick", "--threads", "1", "--ref-cache", str(tmp_path / "refs")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout
    assert "failed" not in table, table
    rows = [f"| {m} |" for m in ("pix2pix", "bicyclegan", "cyclegan", "spade")] + [f"| singan scale {n} |" for n in range(3)]
    for row in rows:
        assert re.search(re.escape(row) + r" \d+\.\d+ \| \d+\.\d+ \| \*\*\d+\.\d+\*\* \| \d+\.\d+ / \d+\.\d+ \|", table), (row, table)
    inference = [line for line in table.splitlines() if re.match(r"\| (pix2pix|cyclegan) \| \S+ / \S+ \| \*\*", line)]
    assert [line.split("|")[1].strip() for line in inference] == ["pix2pix", "cyclegan"], table
    native_bf16 = {"avx512_bf16", "amx_bf16"} & set(Path("/proc/cpuinfo").read_text().split())
    option_rows = re.findall(r"\| (\w+), ganforge `([^`]+)` \| \S+ / \S+ \| \*\*", table)
    options = ["compile=true", *(["precision=bf16-mixed", "precision=bf16-mixed compile=true"] if native_bf16 else [])]
    assert option_rows == [(m, o) for m in ("pix2pix", "cyclegan") for o in options], table
    assert re.search(r"torch threads seen in the training processes: reference \[1\], ganforge \[1\]", table), table
    assert re.search(r"Machine: .+ cores available .+; torch \d", table), table
    # the pinned commits were checked out
    for name in ("cyclegan-2a7afba", "bicyclegan-40b9d52", "spade-fecacc9", "singan-f3678a0"):
        assert (tmp_path / "refs" / name / ".pinned").is_file(), name
