"""FID throughput: ganforge's pipeline vs torch-fidelity called directly, on the same image files.

    .venv/bin/python bench/fid_throughput.py [--n 200] [--feature 2048] [--data DIR]

Both sides start from image files on disk and end with the FID value: network loading, decoding,
Inception features and the Fréchet distance are all timed. Without the real Inception weights in
$TORCH_HOME/hub/checkpoints, a randomly initialised file in torch-fidelity's format stands in:
the work (and so the time) is the same, the value is not the published FID.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def ensure_inception() -> tuple[Path, bool]:
    """(weight file, is_real): the cached real weights, else a stand-in written to a temp TORCH_HOME."""
    from ganforge.metrics.weights import WEIGHTS, hub_checkpoints

    real = hub_checkpoints() / WEIGHTS["inception"].file
    if real.is_file():
        return real, True
    from tests.conftest import write_fake_weights

    home = Path(tempfile.mkdtemp(prefix="fid-bench-"))
    write_fake_weights(home)
    os.environ["TORCH_HOME"] = str(home)
    return home / "hub" / "checkpoints" / WEIGHTS["inception"].file, False


def load_folder(folder: Path) -> torch.Tensor:
    arr = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.iterdir())])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1


def run_ganforge(a: Path, b: Path, feature: str, batch: int) -> float:
    from ganforge.metrics import MetricSuite

    suite = MetricSuite(["fid"], fid_feature=feature, batch_size=batch)
    suite.update(load_folder(a), load_folder(b))
    return suite.compute()["fid"]


def run_torch_fidelity(a: Path, b: Path, feature: str, batch: int, weights: Path) -> float:
    from torch_fidelity import calculate_metrics

    return calculate_metrics(
        input1=str(a),
        input2=str(b),
        fid=True,
        feature_layer_fid=feature,
        batch_size=batch,
        cuda=False,
        cache=False,
        verbose=False,
        feature_extractor_weights_path=str(weights),
    )["frechet_inception_distance"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="images per set")
    ap.add_argument("--feature", default="2048", help="Inception layer: 2048 | 768 | 192 | 64")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cifar10_frog" / "train" / "frog")
    args = ap.parse_args()
    weights, is_real = ensure_inception()
    files = sorted(args.data.iterdir())[: 2 * args.n]
    if len(files) < 2 * args.n:
        sys.exit(f"{args.data} has {len(files)} images; --n {args.n} needs {2 * args.n}")
    with tempfile.TemporaryDirectory() as tmp:
        sets = [Path(tmp) / "a", Path(tmp) / "b"]
        for folder, chunk in zip(sets, (files[: args.n], files[args.n :])):
            folder.mkdir()
            for f in chunk:
                os.symlink(f, folder / f.name)
        results = {}
        # torch-fidelity first, ganforge second, then again in the other order: no warm-cache advantage.
        for name in ("torch-fidelity", "ganforge", "ganforge", "torch-fidelity"):
            t = time.perf_counter()
            fid = (
                run_torch_fidelity(*sets, args.feature, args.batch, weights)
                if name == "torch-fidelity"
                else run_ganforge(*sets, args.feature, args.batch)
            )
            results.setdefault(name, []).append((time.perf_counter() - t, fid))
    size = Image.open(files[0]).size
    print(
        f"FID of {args.n} vs {args.n} images ({size[0]}x{size[1]}), feature {args.feature}, batch {args.batch}, "
        f"{torch.get_num_threads()} threads, {'real' if is_real else 'stand-in'} Inception weights"
    )
    best = {k: min(t for t, _ in v) for k, v in results.items()}
    for name, runs in results.items():
        print(f"  {name:15s} {2 * args.n / best[name]:7.1f} images/s  (best of {len(runs)}: {best[name]:.1f} s)  FID {runs[0][1]:.6f}")
    print(f"  ratio ganforge / torch-fidelity: {best['torch-fidelity'] / best['ganforge']:.2f}x")


if __name__ == "__main__":
    main()
