"""Make the DCGAN golden fixture from the reference code (pytorch/examples dcgan/main.py), for tests/test_golden_dcgan.py.

    python -m tests.golden.make_dcgan --ref <folder of a pytorch/examples checkout>

(or GANFORGE_REF_DCGAN=<folder>). main.py runs as it is, as a script, with these arguments:
`--dataset folder` on 12 CIFAR-10 frogs of the shared data (main.py's folder pipeline: Resize(64) bilinear,
CenterCrop, ToTensor, Normalize), --imageSize 64 --nz 4 --ngf 2 --ndf 2 --batchSize 4 --niter 1 --workers 0
--manualSeed 0, on the CPU. The only change is torch's default dtype, float64, so that the comparison can be
close: main.py's nets, images (ToTensor follows the default dtype) and noises follow it. Its DataLoader is
wrapped to record, at every batch, the torch RNG state and the images, and the nets, losses and Adam states
as each step left them (read from main.py's globals). Output: dcgan.safetensors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.golden import FIXTURES, MACHINE, check_files

FROGS = FIXTURES.parents[2].parent / "shared" / "data" / "cifar10_frog" / "train" / "frog"
#: the pytorch/examples commit whose dcgan/main.py was run
PINNED = "77f55b912142e11fcfdf5b530231fb9c52f181e8"
#: SHA-256 of each file run, line endings as LF (a checkout may have CRLF), checked before anything runs
FILES = {
    "dcgan/main.py": "4f6aef3527822a32bcca366e336e941a67d04081f66f568cc24a0a642b5f9555",
}
SEED = 0
ARGS = {"imageSize": 64, "nz": 4, "ngf": 2, "ndf": 2, "batchSize": 4, "niter": 1, "workers": 0, "manualSeed": SEED}
NUM_IMAGES = 12


def as_levels(real: torch.Tensor) -> torch.Tensor:
    """main.py's batch (ToTensor's u / 255, normalised to [-1, 1]) as the 8-bit levels u it came from, which
    give it back exactly (`real_from_levels`): a quarter of the bytes of float64."""
    levels = torch.round((real * 0.5 + 0.5) * 255).to(torch.uint8)
    assert torch.equal(real_from_levels(levels), real)
    return levels


def real_from_levels(levels: torch.Tensor) -> torch.Tensor:
    mean = std = torch.tensor(0.5, dtype=torch.float64)
    return (levels.to(torch.float64) / 255 - mean) / std  # ToTensor, then Normalize((0.5,) * 3, (0.5,) * 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--ref", default=os.environ.get("GANFORGE_REF_DCGAN"), help="folder of a pytorch/examples checkout (or GANFORGE_REF_DCGAN)"
    )
    ap.add_argument("--out", default=str(FIXTURES / "dcgan.safetensors"))
    args = ap.parse_args()
    script = Path(args.ref or "") / "dcgan" / "main.py"
    if not script.is_file():
        sys.exit(f"give --ref <folder with dcgan/main.py> (a pytorch/examples checkout at {PINNED})")
    check_files(Path(args.ref), FILES, PINNED)
    out: dict[str, torch.Tensor] = {}
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "frogs"
        (root / "frog").mkdir(parents=True)
        for f in sorted(FROGS.glob("*.jpg"))[:NUM_IMAGES]:
            shutil.copy(f, root / "frog" / f.name)
        argv = ["main.py", "--dataset", "folder", "--dataroot", str(root), "--outf", str(Path(work) / "out")]
        for k, v in ARGS.items():
            argv += [f"--{k}", str(v)]
        g = {"__name__": "__main__", "__file__": str(script)}
        step = {"i": -1}

        def record_step() -> None:
            i = step["i"]
            for net in ("netG", "netD"):
                for k, v in g[net].state_dict().items():
                    out[f"step{i}/{net}/{k}"] = v.detach().clone()
            for k in ("errD_real", "errD_fake", "errG"):
                out[f"step{i}/loss/{k}"] = g[k].detach().reshape(1).clone()

        class RecordedDataLoader(torch.utils.data.DataLoader):
            def __iter__(self):
                for data in super().__iter__():
                    if step["i"] < 0:
                        for net in ("netG", "netD"):
                            out.update({f"init/{net}/{k}": v.detach().clone() for k, v in g[net].state_dict().items()})
                        out["fixed_noise"] = g["fixed_noise"].clone()
                    else:
                        record_step()
                    step["i"] += 1
                    out[f"step{step['i']}/rng"] = torch.get_rng_state()
                    out[f"step{step['i']}/real"] = as_levels(data[0])
                    yield data
                record_step()
                for name in ("optimizerG", "optimizerD"):
                    opt = g[name]
                    for i, p in enumerate(opt.param_groups[0]["params"]):
                        for k in ("exp_avg", "exp_avg_sq", "step"):
                            out[f"{name}/{i}/{k}"] = opt.state[p][k].reshape(-1).clone()

        torch.set_default_dtype(torch.float64)  # see the module doc
        torch.utils.data.DataLoader = RecordedDataLoader  # main.py makes its loader after this
        saved_argv, saved_stdout = sys.argv, sys.stdout
        sys.argv = argv
        try:
            with open(Path(work) / "log.txt", "w") as log:
                sys.stdout = log  # main.py prints its options, nets and losses
                exec(compile(script.read_text(), str(script), "exec"), g)
        finally:
            sys.argv, sys.stdout = saved_argv, saved_stdout
    meta = {
        "reference": "pytorch/examples dcgan/main.py",
        "commit": PINNED,
        "args": ARGS,
        "steps": step["i"] + 1,
        "images": NUM_IMAGES,
        "torch": torch.__version__,
        "machine": MACHINE,
    }
    save_file({k: v.contiguous() for k, v in out.items()}, args.out, metadata={"meta": json.dumps(meta)})
    print(f"wrote {args.out} ({Path(args.out).stat().st_size // 1024} KiB, {len(out)} tensors, {meta['steps']} steps)")


if __name__ == "__main__":
    main()
