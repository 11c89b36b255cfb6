"""GPU step-time and DDP scaling estimates (docs/scaling.md) from the FLOP counts bench/flops.py measured.

    .venv/bin/python bench/flops.py json=flops.json && .venv/bin/python bench/scaling.py flops.json [flops2.json ...]

Nothing here is measured: each number follows from a measured FLOP or parameter count and the assumptions
below, which the doc states. Prints markdown tables.
"""

from __future__ import annotations

import json
import sys

#: dense bf16 tensor-core peaks, TFLOP/s (NVIDIA A100 and H100 SXM datasheets, without sparsity)
PEAK = {"A100": 312e12, "H100": 989e12}
#: fraction of the peak the convolutions reach (assumed: batch-1..64 conv nets at 64-256 px)
UTILISATION = 0.35
#: per-GPU all-reduce link bandwidth, bytes/s (assumed, see the doc): NVLink inside a node (NCCL bus bandwidth
#: of a DGX A100 / H100), one InfiniBand NIC per GPU between nodes (HDR 200 Gb/s, NDR 400 Gb/s)
INTRA = {"A100": 230e9, "H100": 450e9}
INTER = {"A100": 25e9, "H100": 50e9}
#: host time per dispatched aten op in eager mode (assumed): PyTorch dispatch + one CUDA kernel launch. When
#: the kernels are small the GPU waits for the host, and the step takes at least ops x this.
LAUNCH_S = 5e-6
GRAD_BYTES = 4
#: trained on one image at batch 1: nothing to split over GPUs, so no DDP rows
NO_DDP = {"singan"}  # DDP reduces fp32 gradients (bf16-mixed keeps fp32 parameters)


def allreduce_s(params: float, backwards: float, n: int, bandwidth: float) -> float:
    """Ring all-reduce of every parameter's gradient after each backward (find_unused_parameters: the
    buckets of the other net's parameters are reduced too): 2 (n-1)/n of the bytes cross each link."""
    return backwards * params * GRAD_BYTES * 2 * (n - 1) / n / bandwidth


def step_s(r: dict, gpu: str) -> tuple[float, bool]:
    """The estimated step time and whether the host's op launches, not the FLOPs, set it."""
    compute, launch = r["flops_per_step"] / (PEAK[gpu] * UTILISATION), r["ops_per_step"] * LAUNCH_S
    return max(compute, launch), launch > compute


def main(paths: list[str]) -> None:
    rows = [r for p in paths for r in json.load(open(p))]
    print(
        "| model | reference step | GFLOP/step | aten ops/step | params M | backwards/step "
        "| A100 floor ms | A100 est. ms | A100 img/s | H100 floor ms | H100 est. ms | H100 img/s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        f = r["flops_per_step"]
        cells = []
        for gpu in PEAK:
            t, launch_bound = step_s(r, gpu)
            cells += [
                f"{f / PEAK[gpu] * 1e3:.2f}",
                f"{t * 1e3:.2f}{' (launch)' if launch_bound else ''}",
                f"{r['reference_batch'] / t:.0f}",
            ]
        print(
            f"| {r['model']} | {r['reference']} | {f / 1e9:.1f} | {r['ops_per_step']:.0f} | {r['params'] / 1e6:.2f} "
            f"| {r['backwards_per_step']:g} | " + " | ".join(cells) + " |"
        )
    print()
    print(
        "| model | GPU | step ms | all-reduce ms, 8 GPUs | efficiency, 8 GPUs | all-reduce ms, 4 nodes x 8 "
        "| efficiency, 4 nodes | 4 nodes, full overlap |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in (r for r in rows if r["model"] not in NO_DDP):
        for gpu in PEAK:
            t, _ = step_s(r, gpu)
            c8 = allreduce_s(r["params"], r["backwards_per_step"], 8, INTRA[gpu])
            # 32 GPUs: the ring crosses the node links, whose bandwidth bounds it (NCCL's hierarchical
            # algorithms do about as well at these sizes)
            c32 = allreduce_s(r["params"], r["backwards_per_step"], 32, INTER[gpu])
            print(
                f"| {r['model']} | {gpu} | {t * 1e3:.2f} | {c8 * 1e3:.2f} | {t / (t + c8):.0%} | {c32 * 1e3:.2f} "
                f"| {t / (t + c32):.0%} | {t / max(t, c32):.0%} |"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
