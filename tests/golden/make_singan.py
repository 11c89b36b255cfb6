"""Make the SinGAN golden fixture from the reference code (tamarott/SinGAN), for tests/test_golden_singan.py.

    python -m tests.golden.make_singan --ref <folder of a tamarott/SinGAN checkout>

(or GANFORGE_REF_SINGAN=<folder>), from the repository root. It writes imresize.safetensors too: the
reference's `imresize` on three small images, by several factors and to one size (tests/test_imresize.py).
The reference needs scikit-image and scikit-learn (it imports them) beside this project's packages.
Its files are imported as they are; this script changes only module attributes, each for a reason
written beside it, and records what the run does through wrappers that return what they wrap. It trains
a tiny pyramid (3 scales, 3 iterations each) on singan_input.png, the shared balloons.png shrunk to 40x30, in
float64, and writes singan.safetensors: the pyramid, every scale's initial weights, the torch RNG state at the
start of every iteration, and after every iteration the G and D parameters and buffers and the losses of its last D and G step, with the
Adam states and the noise amp at the end of each scale.

Gsteps is 1: with more, the reference backpropagates its second G step through the first step's graph,
which current torch refuses (an in-place error), and ganforge recomputes the fake instead (docs/faithfulness.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from tests.golden import FIXTURES, MACHINE, check_files

SHARED = FIXTURES.parents[2].parent / "shared" / "data"
INPUT = FIXTURES / "singan_input.png"
#: the commit whose files were run (SinGAN/training.py, functions.py, imresize.py and config.py)
PINNED = "f3678a0f47805b28bd46726738785ae48425a732"
#: SHA-256 of each file run, line endings as LF (a checkout may have CRLF), checked before anything runs
FILES = {
    "SinGAN/training.py": "936c42c02f2c5962018abc20097bd4b7590897ab1f5c5fe227c9a1d503576e5f",
    "SinGAN/functions.py": "d1faff637532b0f39da80ffb7008f4cc27e6758bc290a058c9acadd6cd10e35b",
    "SinGAN/imresize.py": "8589c6dfd22eb4e7eca4fd34feb980b1e513d542016f31e3805ec80872e57fbb",
    "SinGAN/models.py": "cab207e3678f863902d633a49475ffeb96f544a8fbad69616e015326e1c04597",
    "config.py": "8e4ba38f4e9b54ffcab48d63c5136b706d69520e54f4cc5dbc90894fb6595dbb",
}
SEED = 0
SETTINGS = {"nfc": 4, "min_nfc": 4, "max_size": 32, "min_size": 20, "niter": 3, "Dsteps": 3, "Gsteps": 1}


def make_input() -> None:
    from PIL import Image

    if not INPUT.exists():
        Image.open(SHARED / "singan" / "Images" / "balloons.png").convert("RGB").resize((40, 30), Image.Resampling.LANCZOS).save(INPUT)


def reference_options(config, functions):
    args = ["--not_cuda", "--manualSeed", str(SEED)]
    for key in ("nfc", "min_nfc", "max_size", "min_size", "niter", "Dsteps", "Gsteps"):
        args += [f"--{key}", str(SETTINGS[key])]
    opt = config.get_arguments().parse_args(args)
    opt.input_dir, opt.input_name, opt.mode = str(INPUT.parent), INPUT.name, "train"  # main_train.py's arguments
    return functions.post_config(opt)


class Recorder:
    """What the reference run does, scale by scale and iteration by iteration."""

    def __init__(self, opt):
        self.opt, self.out, self.scale, self.it = opt, {}, -1, 0
        self.d_outputs, self.g_outputs, self.penalties = [], [], []
        self.netG = self.netD = None
        self.hooks = []

    def nets_made(self, netD, netG):
        self.scale += 1
        self.it = 0
        self.netG, self.netD = netG, netD
        self.put("init/G", netG.state_dict())
        self.put("init/D", netD.state_dict())
        self.hooks = [
            netD.register_forward_hook(lambda m, a, out: self.d_outputs.append(out.detach().clone())),
            netG.register_forward_hook(lambda m, a, out: self.g_outputs.append(out.detach().clone())),
        ]

    def put(self, prefix: str, tensors: dict) -> None:
        for k, v in tensors.items():
            self.out[f"s{self.scale}/{prefix}/{k}"] = v.detach().clone().contiguous()

    def loop_starts(self) -> None:
        self.out[f"s{self.scale}/it0/rng"] = torch.get_rng_state()

    def iteration_ends(self, optimizer_d, optimizer_g, reals) -> None:
        o, d, g = self.opt, self.d_outputs, self.g_outputs
        last_d = 3 * (o.Dsteps - 1)  # per D step: D(real), D(fake), D(interpolates)
        real = reals[self.scale]
        losses = {
            "loss_D_real": -d[last_d].mean(),
            "loss_D_fake": d[last_d + 1].mean(),
            "loss_D_gp": self.penalties[-1],
            "loss_G_GAN": -d[3 * o.Dsteps + o.Gsteps - 1].mean(),
            "loss_G_rec": o.alpha * F.mse_loss(g[o.Dsteps + o.Gsteps - 1], real),
        }
        self.put(f"it{self.it}/loss", {k: v.reshape(1) for k, v in losses.items()})
        self.put(f"it{self.it}/G", self.netG.state_dict())
        self.put(f"it{self.it}/D", self.netD.state_dict())
        self.d_outputs, self.g_outputs, self.penalties = [], [], []
        self.it += 1
        if self.it < o.niter:
            self.out[f"s{self.scale}/it{self.it}/rng"] = torch.get_rng_state()
        else:
            for h in self.hooks:  # the finished scale runs again in draw_concat, and the reference pickles it
                h.remove()
            for name, opt in (("adam_G", optimizer_g), ("adam_D", optimizer_d)):
                for i, p in enumerate(opt.param_groups[0]["params"]):
                    st = opt.state[p]
                    self.put(f"{name}/{i}", {"exp_avg": st["exp_avg"], "exp_avg_sq": st["exp_avg_sq"], "step": st["step"].reshape(1)})


def run(reference: Path, work: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    sys.path.insert(0, str(reference))
    import config
    import SinGAN.functions as functions
    import SinGAN.imresize as imresize_module
    import SinGAN.training as training

    # float64, so that the comparison can be to 1e-10: the nets and noises follow the default dtype;
    # np2torch casts every image to float32 (FloatTensor), kept here and then widened, exactly.
    torch.set_default_dtype(torch.float64)
    for module in (functions, imresize_module):
        module.np2torch = (lambda f: lambda x, opt: f(x, opt).double())(module.np2torch)

    opt = reference_options(config, functions)
    rec = Recorder(opt)
    make_nets = training.init_models
    training.init_models = lambda o: (lambda nets: (rec.nets_made(*nets), nets)[1])(make_nets(o))
    penalty = functions.calc_gradient_penalty

    def recorded_penalty(*args):
        gp = penalty(*args)
        rec.penalties.append(gp.detach().clone())
        return gp

    functions.calc_gradient_penalty = recorded_penalty
    reals: list[torch.Tensor] = []
    made = []

    class RecordedMultiStepLR(torch.optim.lr_scheduler.MultiStepLR):
        """train_single_scale makes D's scheduler, then G's, right before its loop, and steps them last in
        each iteration: G's marks the loop start and every iteration's end."""

        def __init__(self, optimizer, **kw):
            super().__init__(optimizer=optimizer, **kw)
            made.append(self)
            if len(made) % 2 == 0:
                rec.loop_starts()

        def step(self, *a, **kw):
            super().step(*a, **kw)
            if made and self is made[-1] and len(made) % 2 == 0:  # (not the step MultiStepLR makes when built)
                rec.iteration_ends(made[-2].optimizer, self.optimizer, reals)

    torch.optim.lr_scheduler.MultiStepLR = RecordedMultiStepLR
    os.chdir(work)  # the reference writes TrainedModels/ and its images into the working folder
    Gs, Zs, NoiseAmp = [], [], []
    real = functions.read_image(opt)  # main_train.py
    functions.adjust_scales2image(real, opt)
    training.train(opt, Gs, Zs, reals, NoiseAmp)
    for n, (r, z, amp) in enumerate(zip(reals, Zs, NoiseAmp)):
        rec.out[f"s{n}/real"] = r.contiguous()
        rec.out[f"s{n}/z_opt"] = z.double().contiguous()
        rec.out[f"s{n}/noise_amp"] = torch.as_tensor(float(amp), dtype=torch.float64).reshape(1)
    meta = {
        "reference": "tamarott/SinGAN",
        "commit": PINNED,
        "seed": SEED,
        "settings": SETTINGS,
        "scale_factor": opt.scale_factor,
        "pyramid": [list(r.shape[2:]) for r in reals],
        "torch": torch.__version__,
        "machine": MACHINE,
    }
    return rec.out, meta


#: imresize.safetensors: the reference's imresize on these images (8-bit, H x W x 3) by these factors and to one size
IMRESIZE_SCALES = [0.31, 0.5, 0.75, 0.9, 1.0, 1 / 0.75, 2.0]
IMRESIZE_SIZE = (19, 40)


def imresize_images() -> dict[str, np.ndarray]:
    from PIL import Image

    photo = np.asarray(Image.open(SHARED / "singan" / "Images" / "balloons.png").convert("RGB"))
    stone = np.asarray(Image.open(SHARED / "singan" / "Images" / "stone.png").convert("RGB"))
    yy, xx = np.mgrid[0:16, 0:21]
    return {
        "balloons_23x17": photo[60:77, 100:123].copy(),
        "stone_29x21": stone[40:61, 10:39].copy(),
        "checker_21x16": (np.stack([(yy + xx) % 2] * 3, -1) * 255).astype(np.uint8),  # 0/255: the cubic overshoots
    }


def make_imresize_fixture(reference: Path, out: Path) -> None:
    from types import SimpleNamespace

    sys.path.insert(0, str(reference))
    import SinGAN.imresize as imresize_module

    opt = SimpleNamespace(nc_im=3, not_cuda=True)
    tensors = {}
    for name, image in imresize_images().items():
        tensors[f"{name}/levels"] = torch.from_numpy(image)
        x = imresize_module.np2torch(image, opt)
        for scale in IMRESIZE_SCALES:
            tensors[f"{name}/scale_{scale!r}"] = imresize_module.imresize(x, scale, opt).contiguous()
        tensors[f"{name}/size"] = imresize_module.imresize_to_shape(x, IMRESIZE_SIZE, opt).contiguous()
    meta = {
        "reference": "tamarott/SinGAN SinGAN/imresize.py",
        "commit": PINNED,
        "scales": IMRESIZE_SCALES,
        "size": IMRESIZE_SIZE,
        "machine": MACHINE,
    }
    save_file(tensors, str(out), metadata={"meta": json.dumps(meta)})
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--ref", default=os.environ.get("GANFORGE_REF_SINGAN"), help="folder of a tamarott/SinGAN checkout (or GANFORGE_REF_SINGAN)"
    )
    ap.add_argument("--out", default=str(FIXTURES / "singan.safetensors"))
    args = ap.parse_args()
    if not args.ref or not (Path(args.ref) / "SinGAN" / "training.py").is_file():
        sys.exit("give --ref <folder with SinGAN/training.py> (a tamarott/SinGAN checkout at " + PINNED + ")")
    check_files(Path(args.ref), FILES, PINNED)
    make_input()
    make_imresize_fixture(Path(args.ref).resolve(), FIXTURES / "imresize.safetensors")
    out = Path(args.out).resolve()
    with tempfile.TemporaryDirectory() as work:
        # the reference prints its nets and progress: keep them out of the way
        with open(Path(work) / "log.txt", "w") as log, _stdout_to(log):
            tensors, meta = run(Path(args.ref).resolve(), Path(work))
    save_file(tensors, str(out), metadata={"meta": json.dumps(meta)})
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB, {len(tensors)} tensors): pyramid {meta['pyramid']}")


class _stdout_to:
    def __init__(self, f):
        self.f = f

    def __enter__(self):
        self.saved, sys.stdout = sys.stdout, self.f

    def __exit__(self, *exc):
        sys.stdout = self.saved


if __name__ == "__main__":
    main()
