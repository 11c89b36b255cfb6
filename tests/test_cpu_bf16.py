"""bf16 on a CPU without bf16 instructions is refused with one line (exit 2) unless allow_slow_bf16=true;
a CPU with them, and a GPU run, go through unchanged."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ganforge.cli import precision
from ganforge.cli.train import train
from ganforge.utils.errors import ConfigError
from tests.conftest import REPO, TINY, compose_train

X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n"


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (X86_AVX2, False),
        ("flags\t\t: avx2 avx512f avx512_bf16\n", True),
        ("flags\t\t: avx2 amx_tile amx_bf16\n", True),
        ("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n", True),  # Arm
        ("processor\t: 0\n", None),
    ],
)
def test_flag_reader(tmp_path, cpuinfo, expected):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert precision.cpu_has_bf16(path) is expected


def test_unreadable_flags_mean_unknown(tmp_path):
    assert precision.cpu_has_bf16(tmp_path / "absent") is None


@pytest.mark.parametrize("value", ["bf16-mixed", "bf16-true", "bf16"])
def test_refused_without_bf16_instructions(tmp_path, monkeypatch, value):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    cfg = compose_train(tmp_path, [*TINY, f"trainer.precision={value}", "trainer.accelerator=cpu"])
    with pytest.raises(ConfigError, match=rf"trainer.precision={value} .*no bf16 instructions.*50x.*allow_slow_bf16=true"):
        precision.check_cpu_bf16(cfg)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    precision.check_cpu_bf16(cfg)


def test_flags_unreadable_falls_back_to_the_timing_probe(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: None)
    cfg = compose_train(tmp_path, [*TINY, "trainer.precision=bf16-mixed", "trainer.accelerator=cpu"])
    monkeypatch.setattr(precision, "bf16_conv_slowdown", lambda: 50.0)
    with pytest.raises(ConfigError, match="no bf16 instructions"):
        precision.check_cpu_bf16(cfg)
    monkeypatch.setattr(precision, "bf16_conv_slowdown", lambda: 0.5)
    precision.check_cpu_bf16(cfg)


def test_probe_measures_a_ratio():
    assert precision.bf16_conv_slowdown() > 0


@pytest.mark.parametrize("overrides", [["trainer=gpu"], ["trainer.accelerator=auto"], ["trainer.precision=32-true"]])
def test_gpu_runs_and_fp32_are_not_checked(tmp_path, monkeypatch, overrides):
    def no_read():
        raise AssertionError("the CPU flags were read")

    monkeypatch.setattr(precision, "cpu_has_bf16", no_read)
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: True)  # accelerator=auto picks the GPU
    cfg = compose_train(tmp_path, [*TINY, "trainer.precision=bf16-mixed", *overrides])
    precision.check_cpu_bf16(cfg)


@pytest.mark.slow
def test_cli_refuses_with_one_line_and_exit_2(tmp_path):
    script = (
        "import sys; import ganforge.cli.precision as p; p.cpu_has_bf16 = lambda: False; "
        "from ganforge.cli.train import train_main; sys.argv[0] = 'train.py'; train_main()"
    )
    args = [*TINY, "trainer.precision=bf16-mixed", "trainer.accelerator=cpu", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "no bf16 instructions" in lines[0] and "allow_slow_bf16=true" in lines[0] and "trainer.precision=32-true" in lines[0]


@pytest.mark.slow
def test_allow_slow_bf16_trains_anyway(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    cfg = compose_train(
        tmp_path,
        [*TINY, "trainer.precision=bf16-mixed", "trainer.accelerator=cpu", "allow_slow_bf16=true", "trainer.limit_train_batches=1"],
    )
    _, objects = train(cfg)
    assert objects["trainer"].precision == "bf16-mixed"
    assert objects["trainer"].global_step > 0
