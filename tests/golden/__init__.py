"""Golden fixtures from the reference implementations, and what the golden tests share.

`make_fixtures.py` runs a reference repository's own training code on tiny nets and fixed batches and
writes `tests/fixtures/golden/<name>.safetensors`: the batches, the initial weights, and every parameter,
buffer and loss after each training iteration, under the reference's names. The `test_golden_*.py` tests
load the same initial weights into ganforge's modules, train them with ganforge's code on the same
batches and noise, and compare. They need only the fixtures, not the reference code.

All runs are float64: a CPU of another kind sums in another order (its BLAS and convolution kernels
differ), which moves float32 results in the last bits, and Adam turns last-bit noise in a gradient that
should be 0 into a full-size step (m / (sqrt(v) + 1e-8) is about 1 when |g| ~ 1e-9). In float64 that noise
stays near 1e-17, far below Adam's epsilon, so the results of a faithful implementation agree to 1e-10
on any machine, and bit for bit on the machine that made the fixture when the computation order is the
same (`MACHINE` is written into each fixture).
"""

from __future__ import annotations

import hashlib
import math
import platform
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "golden"

#: float64 agreement between implementations whose order of operations differs
FLOAT64_TOL = 1e-10


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: where a run's exact bits come from: the torch build, its CPU kernels' instruction set and the CPU
MACHINE = f"torch {torch.__version__} | {torch.backends.cpu.get_cpu_capability()} | {_cpu_model()}"


def check_files(reference: Path, files: dict[str, str], pinned: str) -> None:
    """Stop unless every file of `files` ({relative path: SHA-256 with line endings normalised}) is the pinned one."""
    for rel, digest in files.items():
        path = reference / rel
        text = path.read_bytes().replace(b"\r\n", b"\n") if path.is_file() else b""
        if hashlib.sha256(text).hexdigest() != digest:
            sys.exit(f"{path} is not the file of commit {pinned}: check that commit out")


def save_fixture(name: str, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> Path:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    path = FIXTURES / f"{name}.safetensors"
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path), metadata={**meta, "machine": MACHINE})
    return path


def load_fixture(name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    path = FIXTURES / f"{name}.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    return load_file(str(path)), meta


#: batch keys that hold images (the rest hold ids: label and instance maps)
IMAGE_KEYS = ("image", "A", "B")


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """An image in [-1, 1] as the 8-bit pixels a photo file holds (fixtures store batches so)."""
    return ((image + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def batch(tensors: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    """Fixture batch i as both runs feed it: images pixel / 127.5 - 1 in float64, ids as int64."""
    return {k: (v.double() / 127.5 - 1) if k in IMAGE_KEYS else v.long() for k, v in section(tensors, f"data/{i}").items()}


def section(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under `prefix/`, without it."""
    return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + "/")}


def fixed_uniform(n: int, offset: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """n values in [-1, 1) from integer arithmetic (a Weyl sequence mod 2^32): exact, so the same on every
    machine and torch version, unlike an RNG's stream or a vectorised sin."""
    i = torch.arange(n, dtype=torch.int64)
    return (((i * 2654435769 + offset * 40503) % 4294967296).to(torch.float64) / 2147483648.0 - 1.0).to(dtype)


def vgg19_features(dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """VGG19's first 30 feature layers (to relu5_1) with fixed weights (`fixed_uniform`): the VGG loss
    without the ImageNet download. He-scaled (std sqrt(2 / fan_out), as torchvision's init) so the
    features stay in range through 13 convs."""
    import torchvision

    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])[:30].to(dtype)
    with torch.no_grad():
        for i, m in enumerate(features):
            if isinstance(m, nn.Conv2d):
                std = math.sqrt(2.0 / (m.out_channels * m.kernel_size[0] * m.kernel_size[1]))
                m.weight.copy_(fixed_uniform(m.weight.numel(), i, dtype).view_as(m.weight) * math.sqrt(3.0) * std)
                m.bias.copy_(fixed_uniform(m.out_channels, 1000 + i, dtype) * 0.01)
    return features


#: what a parameter whose gradient is 0 in exact arithmetic may reach in a few float64 Adam steps
NOISE_ONLY_BOUND = 1e-8


def biases_before_instance_norm(net: nn.Module) -> set[str]:
    """The biases of convs whose output goes straight into an InstanceNorm, by state-dict name. The norm
    subtracts each channel's mean, so their gradient is 0 in exact arithmetic and rounding noise (~1e-17 in
    float64) in practice; Adam scales that noise up to steps of lr * |g| / 1e-8, so the values these biases
    reach depend on the order of the sums, not on the method: both runs only have to keep them at noise level."""
    names = set()
    for prefix, m in net.named_modules():
        if isinstance(m, nn.Sequential):
            layers = list(m.named_children())
            for (name, layer), (_, nxt) in zip(layers, layers[1:]):
                if isinstance(layer, nn.modules.conv._ConvNd) and layer.bias is not None and isinstance(nxt, nn.InstanceNorm2d):
                    names.add(f"{prefix}.{name}.bias" if prefix else f"{name}.bias")
    return names


def compare(
    actual: dict[str, torch.Tensor],
    expected: dict[str, torch.Tensor],
    what: str,
    exact: bool,
    tol: float = FLOAT64_TOL,
    noise_only: set[str] = frozenset(),
) -> float:
    """Assert `actual` matches `expected` key for key: bit for bit when `exact`, else within `tol`
    (absolute, or relative for values above 1); the `noise_only` keys (`biases_before_instance_norm`)
    only within NOISE_ONLY_BOUND of 0 in both. Returns the largest difference."""
    assert sorted(actual) == sorted(expected), (
        f"{what}: names differ; only in ganforge {sorted(set(actual) - set(expected))[:5]}, "
        f"only in the reference {sorted(set(expected) - set(actual))[:5]}"
    )
    for k in noise_only:
        size = max(actual[k].abs().max().item(), expected[k].abs().max().item())
        assert size <= NOISE_ONLY_BOUND, f"{what}: {k} reached {size:.3g}; its gradient is 0 but for rounding"
    worst, worst_key = 0.0, None
    for k in sorted(set(expected) - set(noise_only)):
        a, e = actual[k].detach().to(expected[k].dtype).reshape(expected[k].shape), expected[k]
        if e.is_floating_point():
            diff = ((a - e).abs() / e.abs().clamp_min(1.0)).max().item() if e.numel() else 0.0
        else:
            diff = float((a != e).any())
        if diff > worst:
            worst, worst_key = diff, k
    limit = 0.0 if exact else tol
    if worst > limit:
        off = sum(
            1
            for k in set(expected) - set(noise_only)
            if not torch.equal(actual[k].detach().to(expected[k].dtype).reshape(expected[k].shape), expected[k])
        )
        raise AssertionError(f"{what}: {worst_key} differs by {worst:.3g} (allowed {limit:g}); {off} of {len(expected)} tensors differ")
    return worst


def compare_iteration(
    i: int,
    snap: dict[str, dict[str, torch.Tensor]],
    losses: dict[str, torch.Tensor],
    tensors: dict[str, torch.Tensor],
    exact: bool,
    noise_only: dict[str, set[str]] | None = None,
) -> None:
    """`compare` iteration `i` (from 0) with the fixture: each net's state in `snap` with `step<i>/<net>`,
    `losses` with `step<i>/loss`; `noise_only` per net."""
    for name, state in snap.items():
        expected = section(tensors, f"step{i}/{name}")
        compare(state, expected, f"iteration {i + 1}, {name}", exact, noise_only=(noise_only or {}).get(name, frozenset()))
    compare(losses, section(tensors, f"step{i}/loss"), f"iteration {i + 1}, losses", exact)


def is_fixture_machine(meta: dict[str, str]) -> bool:
    """Whether this run has the kernels the fixture was made with (so bit-identity can be asked)."""
    return meta.get("machine") == MACHINE


def train_iterations(module, batches: list[dict[str, torch.Tensor]], snapshot, root: Path) -> list[dict]:
    """Train `module` with a real Lightning Trainer in float64, one iteration per fixture batch, seeding
    torch as the fixture script did before each (`torch.manual_seed(1000 + i)`); `snapshot()` after each."""
    import lightning as L
    from torch.utils.data import DataLoader

    snaps: list[dict] = []

    class Iterations(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            torch.manual_seed(1000 + batch_idx)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            snaps.append(snapshot())

    size = len(next(iter(batches[0].values())))
    items = [{k: v[j] for k, v in b.items()} for b in batches for j in range(size)]
    trainer = float64_trainer(max_epochs=1, devices=1, callbacks=[Iterations()], default_root_dir=root)
    trainer.fit(module, DataLoader(items, batch_size=size, shuffle=False))
    assert len(snaps) == len(batches)
    return snaps


def fixture_batches(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> list[dict[str, torch.Tensor]]:
    """The fixture's batches, one an iteration (`batch`)."""
    return [batch(tensors, i) for i in range(int(meta["iterations"]))]


def float64_trainer(**kwargs):
    """A Lightning Trainer on CPU in float64 that trains only: no logger, checkpoints, progress bar,
    summary or validation. `kwargs`: the rest (max_epochs, callbacks, ...)."""
    import lightning as L

    return L.Trainer(
        precision="64-true",
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        **kwargs,
    )


def recording(method, into: list):
    """`method`, appending each call's returned loss dict (detached) to `into`."""

    def wrapper(*args, **kwargs):
        out = method(*args, **kwargs)
        into.append({k: v.detach().clone() for k, v in out.items()})
        return out

    return wrapper
