"""bf16 on a CPU without bf16 instructions: refused before training, unless the config forces it.

Such a CPU (AVX2 only, no avx512_bf16 or amx_bf16) emulates every bf16 convolution: a pix2pix step under
`bf16-mixed` measured about 50x slower than in fp32. Falling back to fp32 quietly would leave a run whose stored
config says bf16 while its numbers are fp32's, so the run stops and says how to choose.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from ganforge.utils.errors import ConfigError

#: flags of /proc/cpuinfo that mean native bf16 arithmetic: x86's AVX-512 BF16 and AMX, Arm's BF16 extension
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
#: a bf16 convolution this many times slower than fp32 is emulated (on bf16 hardware it is faster than fp32)
EMULATED_SLOWDOWN = 2.0


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether the CPU reports bf16 instructions; None where its flags cannot be read (not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, Arm
            return not BF16_FLAGS.isdisjoint(value.split())
    return None


def bf16_conv_slowdown() -> float:
    """bf16 / fp32 time of a GAN-sized 3x3 convolution under autocast, best of 3 each (well under a second)."""
    x, w = torch.randn(1, 64, 64, 64), torch.randn(64, 64, 3, 3)

    def best(dtype: torch.dtype | None) -> float:
        times = []
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            for _ in range(4):  # the first call sets up the kernel
                t0 = time.perf_counter()
                torch.nn.functional.conv2d(x, w, padding=1)
                times.append(time.perf_counter() - t0)
        return min(times[1:])

    return best(torch.bfloat16) / best(None)


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively: its flags, or where they cannot be read, the timing probe."""
    native = cpu_has_bf16()
    return bf16_conv_slowdown() < EMULATED_SLOWDOWN if native is None else native


def runs_on_cpu(accelerator: object) -> bool:
    if str(accelerator) == "auto":  # Lightning's choice: CUDA, then Apple's MPS, then the CPU
        mps = getattr(torch.backends, "mps", None)
        return not torch.cuda.is_available() and not (mps is not None and mps.is_available())
    return str(accelerator) == "cpu"


def check_cpu_bf16(cfg: DictConfig) -> None:
    """Refuse a bf16 precision (bf16, bf16-mixed, bf16-true) on a CPU that would emulate it, unless `allow_slow_bf16`."""
    precision = str(cfg.trainer.get("precision", "32-true"))
    if not precision.startswith("bf16") or cfg.get("allow_slow_bf16") or not runs_on_cpu(cfg.trainer.get("accelerator", "auto")):
        return
    refuse_emulated_bf16("trainer.precision", precision, "a pix2pix step measured about 50x slower than fp32")


def refuse_emulated_bf16(key: str, precision: str, cost: str) -> None:
    """One ConfigError, naming `key` and the way out, where this CPU would emulate bf16 (training and predict)."""
    if not cpu_native_bf16():
        raise ConfigError(
            f"{key}={precision} on this CPU: it has no bf16 instructions (avx512_bf16 or amx_bf16), so bf16 is "
            f"emulated ({cost}); use {key}=32-true, or allow_slow_bf16=true to run it anyway"
        )
