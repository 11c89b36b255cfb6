"""Write tests/fixtures/golden/<model>.safetensors by training tiny nets with a reference repository's own code.

    python -m tests.golden.make_fixtures spade --ref <NVlabs/SPADE tree>
    python -m tests.golden.make_fixtures pix2pix --ref <pytorch-CycleGAN-and-pix2pix tree>
    python -m tests.golden.make_fixtures cyclegan --ref <pytorch-CycleGAN-and-pix2pix tree>
    python -m tests.golden.make_fixtures bicyclegan --ref <junyanz/BicycleGAN tree>

(or GANFORGE_REF_SPADE, GANFORGE_REF_CYCLEGAN, GANFORGE_REF_BICYCLEGAN instead of --ref). Run from the
repository root, one model a process: the repositories share top-level module names (models, options,
util, data). docs/faithfulness.md says how to get each tree; the files this script imports are checked
against the pinned commit (git blob hashes) before anything runs.

Each fixture holds the fixed batches (`data/<i>/...`, 8-bit pixels and ids as data files hold them), the
initial weights (`init/<net>/<name>`; SPADE also each weight's std under the reference's CPU path,
`init_cpu_std/<net>/<name>`) and, after each training iteration i, every parameter and buffer
(`step<i>/<net>/<name>`) and loss (`step<i>/loss/<name>`), under the reference's names, in float64
(tests/golden/__init__.py says why).
The reference trains on CPU. What this script changes in it, all by module or object attributes (no
reference file is edited), is listed per model in its *_PATCHES list and written into the fixture's metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from tests.golden import batch as fixture_batch
from tests.golden import fixed_uniform, save_fixture, to_uint8, vgg19_features

PINNED = {
    "spade": ("NVlabs/SPADE", "fecacc920c1367a038995c45a39c15f6521ca64f"),
    "sync_batchnorm": ("vacancy/Synchronized-BatchNorm-PyTorch", "7553990fb9a917cddd9342e89b6dc12a70573f5b"),
    "cyclegan": ("junyanz/pytorch-CycleGAN-and-pix2pix", "2a7afba2895d52556dd5dfe07e8555ef657ced6f"),
    "bicyclegan": ("junyanz/BicycleGAN", "40b9d52c27b9831f56c1c7c7a6ddde8bc9149067"),
}

#: git blob hashes, at the pinned commits, of the reference files each run imports
BLOBS = {
    "spade": {
        "models/__init__.py": "1512d2b868e148cd17eafe0760df389dfb0a5b71",
        "models/pix2pix_model.py": "784cb15ae34c3370a322a84cf1e44e13bb536b7f",
        "models/networks/__init__.py": "08194611e49ffe8e9dbacc3c83beea01619ffbe8",
        "models/networks/architecture.py": "273d7866ddde3a811e556f54854913ca772583dd",
        "models/networks/base_network.py": "f79189f3c4c9b0032ea5e8ec28c8915a9112a754",
        "models/networks/discriminator.py": "5207bbcc77f5bb58c33fcc54df1c75742d4f0da4",
        "models/networks/encoder.py": "c6705929f9fa77bd009bb429a8e1266a3f94084f",
        "models/networks/generator.py": "945666c2d7fb7072d3f59773a4a8d2663847a290",
        "models/networks/loss.py": "b2485d77cd29a51d83da5379147abfd0a49188ec",
        "models/networks/normalization.py": "f4977b66fc39a135a077eac314821f3e1c6f75fa",
        "models/networks/sync_batchnorm/batchnorm.py": "bf8d7a7325b474771a11a137053971fd40426079",
        "options/base_options.py": "939a26dc101dbec80542a5c1be21c3c40a7fef64",
        "options/train_options.py": "e620a0569c6dd732737e2bd400c1e516724a6df3",
        "trainers/pix2pix_trainer.py": "ba6e061f40fab13372861339ad16f2abe68193b1",
    },
    "cyclegan": {
        "models/__init__.py": "151b104b63e7f540c290339f92824e9e9d575dbd",
        "models/base_model.py": "e4aff7ee3212ff33836dde0184250ce3ef6ae881",
        "models/cycle_gan_model.py": "9fa37b148c44bc08bd186a6bf1f15fa95ae745fc",
        "models/networks.py": "ec1686f6492f85085eb07af8938fefd874f09c52",
        "models/pix2pix_model.py": "d4753e1130c20508f9cc3b19b82c2e6908da0ec4",
        "options/base_options.py": "eba63f6a0c9d3fbe6820150ab84eb37137eed882",
        "options/train_options.py": "83623f0f5ac6fdc82f34705d73209ef4b1fea912",
        "util/image_pool.py": "7f2639242ce7459c12724050f26fb31146cc5061",
    },
    "bicyclegan": {
        "models/__init__.py": "db54358570685423ff103d635d39129cb101531b",
        "models/base_model.py": "2104c211a940eb564c3a058b15ef38aee899e61e",
        "models/bicycle_gan_model.py": "6bc4066ce36ff782ca39a8f4b53faa6706d4768c",
        "models/networks.py": "640759e3b59954796587c0baa8f188d2adf26856",
        "options/base_options.py": "33e234184e46a351eeec6481f4e6458853dc31bb",
        "options/train_options.py": "7c20d45e0a4625e1489653d531d3e0b658fc2733",
    },
}
BLOB_REPO = {"spade": "spade", "pix2pix": "cyclegan", "cyclegan": "cyclegan", "bicyclegan": "bicyclegan"}
ENV = {
    "spade": "GANFORGE_REF_SPADE",
    "pix2pix": "GANFORGE_REF_CYCLEGAN",
    "cyclegan": "GANFORGE_REF_CYCLEGAN",
    "bicyclegan": "GANFORGE_REF_BICYCLEGAN",
}


def git_blob(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def check_tree(model: str, ref: Path) -> None:
    """Stop unless `ref` holds the pinned reference files (so the fixture is the pinned code's)."""
    wrong = []
    for rel, blob in BLOBS[BLOB_REPO[model]].items():
        f = ref / rel
        if not f.is_file():
            wrong.append(f"{rel} is missing")
        elif git_blob(f) != blob:
            wrong.append(f"{rel} is not the pinned commit's")
    if wrong:
        raise SystemExit(
            f"{ref}: " + "; ".join(wrong) + f". Check out {PINNED[BLOB_REPO[model]][0]} at "
            f"{PINNED[BLOB_REPO[model]][1]} (docs/faithfulness.md)"
        )


def options(**values) -> list[str]:
    """Command-line options, in order: options(ngf=2, batch_size=1) is ["--ngf", "2", "--batch_size", "1"]."""
    return [arg for name, value in values.items() for arg in (f"--{name}", str(value))]


def import_reference(ref: Path, argv: list[str]):
    """Put the reference tree first on sys.path and parse its TrainOptions from `argv` (gather_options:
    the options parse() computes, without the files it writes)."""
    sys.path.insert(0, str(ref))
    sys.argv = ["train.py", *argv]
    from options.train_options import TrainOptions

    return TrainOptions().gather_options()


def state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def put(out: dict, prefix: str, tensors: dict[str, torch.Tensor]) -> None:
    out.update({f"{prefix}/{k}": v for k, v in tensors.items()})


def fixed_images(n: int, c: int, size: int, offset: int) -> torch.Tensor:
    """n images in [-1, 1) that are not noise: smooth gradients plus a fixed pattern."""
    yy, xx = torch.meshgrid(
        torch.linspace(-1, 1, size, dtype=torch.float64), torch.linspace(-1, 1, size, dtype=torch.float64), indexing="ij"
    )
    base = torch.stack([torch.sin(2.0 * xx + k + offset) * torch.cos(1.5 * yy - k) for k in range(n * c)])
    pattern = fixed_uniform(n * c * size * size, offset).view(n * c, size, size)
    return (0.7 * base + 0.3 * pattern).clamp(-1, 1).view(n, c, size, size)


def fixture(out: dict[str, torch.Tensor], opt, option_keys: tuple[str, ...], extra: dict, iterations: int, patches: list[str]) -> dict:
    """What a maker returns: the tensors, all float64 but the 8-bit data and ids, and the metadata: the reference's
    `option_keys` plus `extra` (settings it has no option for), the iteration count and the patches."""
    assert all(v.dtype in (torch.float64, torch.int64, torch.uint8) for v in out.values()), "a float32 tensor in the float64 run"
    options = {k: getattr(opt, k) for k in option_keys}
    return {
        "tensors": out,
        "meta": {
            "options": json.dumps({**options, **extra}),
            "iterations": str(iterations),
            "patches": json.dumps(patches),
            "iteration_seeds": "torch.manual_seed(1000 + i) before iteration i",
        },
    }


# ---------------------------------------------------------------- SPADE
SPADE_ARGS = dict(label_nc=3, ngf=1, ndf=4, n_layers_D=3, num_D=2, crop_size=32, batch=2, nhidden=8, iterations=2)
SPADE_PATCHES = [
    "sys.modules['dill'] = pickle: util/util.py imports dill for its option files, which are not written here",
    "models.networks.architecture.torchvision: vgg19(pretrained=True) returns tests/golden vgg19_features(), "
    "fixed weights instead of the ImageNet download",
    "models.networks.architecture.SPADE: SPADE whose mlp_shared/mlp_gamma/mlp_beta are rebuilt with 8 hidden "
    "channels (normalization.py hard-codes 128) right after its own __init__, before init; forward is the reference's",
    "torch.set_default_dtype(float64); model.FloatTensor, criterionGAN.Tensor = torch.DoubleTensor: float64 run",
    "the GPU path of create_network, as the published models were built: torch.cuda.is_available() -> True and "
    "Module.cuda -> Module._apply(lambda t: t.clone()) while the nets are built (gpu_ids [0]), then gpu_ids [] "
    "to train on CPU; trainers.pix2pix_trainer.Pix2PixModel returns that built model",
]


def make_narrow_spade(base: type, nhidden: int) -> type:
    class NarrowSPADE(base):
        def __init__(self, config_text, norm_nc, label_nc):
            super().__init__(config_text, norm_nc, label_nc)
            ks = self.mlp_gamma.kernel_size[0]
            pw = ks // 2
            self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, nhidden, kernel_size=ks, padding=pw), nn.ReLU())
            self.mlp_gamma = nn.Conv2d(nhidden, norm_nc, kernel_size=ks, padding=pw)
            self.mlp_beta = nn.Conv2d(nhidden, norm_nc, kernel_size=ks, padding=pw)

    return NarrowSPADE


def spade_batches(a: dict) -> list[dict[str, torch.Tensor]]:
    n, s, nc = a["batch"], a["crop_size"], a["label_nc"]
    out = []
    for i in range(a["iterations"]):
        g = torch.Generator().manual_seed(100 + i)
        # blocks of ids (0..label_nc, label_nc being don't-care) and of instances, as label maps have
        label = torch.randint(0, nc + 1, (n, 1, s // 4, s // 4), generator=g).repeat_interleave(4, 2).repeat_interleave(4, 3)
        instance = torch.randint(0, 3, (n, 1, s // 8, s // 8), generator=g).repeat_interleave(8, 2).repeat_interleave(8, 3)
        out.append(
            {
                "label": label.to(torch.uint8),
                "instance": (label * 10 + instance).to(torch.uint8),
                "image": to_uint8(fixed_images(n, 3, s, i)),
            }
        )
    return out


def make_spade(ref: Path) -> dict:
    a = SPADE_ARGS
    sys.modules.setdefault("dill", pickle)
    opt = import_reference(
        ref,
        [
            *options(dataset_mode="custom", label_dir="unused", image_dir="unused", gpu_ids=0, label_nc=a["label_nc"]),
            "--contain_dontcare_label",
            *options(ngf=a["ngf"], ndf=a["ndf"], n_layers_D=a["n_layers_D"], num_D=a["num_D"]),
            *options(crop_size=a["crop_size"], load_size=a["crop_size"], batchSize=a["batch"]),
        ],
    )
    import models.networks.architecture as architecture
    import models.networks.normalization as normalization
    import trainers.pix2pix_trainer as pix2pix_trainer
    from models.pix2pix_model import Pix2PixModel

    opt.isTrain = True
    opt.semantic_nc = opt.label_nc + int(opt.contain_dontcare_label) + int(not opt.no_instance)
    opt.gpu_ids = [0]
    torch.set_default_dtype(torch.float64)
    architecture.torchvision = SimpleNamespace(
        models=SimpleNamespace(vgg19=lambda pretrained=False: SimpleNamespace(features=vgg19_features()))
    )
    architecture.SPADE = make_narrow_spade(normalization.SPADE, a["nhidden"])
    torch.manual_seed(0)
    available, to_cuda = torch.cuda.is_available, nn.Module.cuda
    torch.cuda.is_available = lambda: True
    nn.Module.cuda = lambda self, device=None: self._apply(lambda t: t.clone())
    try:
        model = Pix2PixModel(opt)
    finally:
        torch.cuda.is_available, nn.Module.cuda = available, to_cuda
    opt.gpu_ids = []
    model.FloatTensor = model.criterionGAN.Tensor = torch.DoubleTensor
    model.ByteTensor = torch.ByteTensor
    pix2pix_trainer.Pix2PixModel = lambda opt: model
    trainer = pix2pix_trainer.Pix2PixTrainer(opt)

    out: dict[str, torch.Tensor] = {}
    nets = {"G": model.netG, "D": model.netD}
    for name, net in nets.items():
        put(out, f"init/{name}", state(net))
    # The CPU path (--gpu_ids -1), where init_weights reaches the spectral-normed layers: each weight's std.
    import models.networks as networks

    torch.manual_seed(0)
    for name, net in (("G", networks.define_G(opt)), ("D", networks.define_D(opt))):
        put(out, f"init_cpu_std/{name}", {k: v.std() for k, v in net.state_dict().items() if v.dim() > 1})
    for i, stored in enumerate(spade_batches(a)):
        put(out, f"data/{i}", stored)
        batch = fixture_batch(out, i)
        data = {
            "label": batch["label"].double(),
            "instance": batch["instance"].double(),
            "image": batch["image"],
            "path": [f"{i}_{k}" for k in range(a["batch"])],
        }
        torch.manual_seed(1000 + i)
        trainer.run_generator_one_step(data)
        trainer.run_discriminator_one_step(data)
        for name, net in nets.items():
            put(out, f"step{i}/{name}", state(net))
        put(out, f"step{i}/loss", {k: v.detach().reshape(()) for k, v in trainer.get_latest_losses().items()})
    return fixture(
        out,
        opt,
        (
            "label_nc",
            "contain_dontcare_label",
            "no_instance",
            "ngf",
            "ndf",
            "n_layers_D",
            "num_D",
            "crop_size",
            "norm_G",
            "norm_D",
            "init_type",
            "init_variance",
            "lr",
            "beta1",
            "beta2",
            "no_TTUR",
            "gan_mode",
            "lambda_feat",
            "lambda_vgg",
        ),
        {"nhidden": a["nhidden"], "batch": a["batch"]},
        a["iterations"],
        SPADE_PATCHES,
    )


# ---------------------------------------------------------------- pytorch-CycleGAN-and-pix2pix
PIX2PIX_ARGS = dict(ngf=2, ndf=4, n_layers_D=3, num_downs=5, size=32, batch=1, iterations=2)
PIX2PIX_PATCHES = [
    "models.networks.define_G: netG='unet_32' builds UnetGenerator(input_nc, output_nc, 5, ngf, ...) as its unet_128 "
    "and unet_256 branches do with 7 and 8, so the U-Net fits 32 px; every other name is the original function",
    "torch.set_default_dtype(float64): float64 run",
    "opt.device = cpu (train.py sets it from util.init_ddp, which picks a GPU when there is one)",
]


def size_options(a: dict) -> dict:
    """The batch and image size options of the junyanz repositories: load_size = crop_size, no random crop."""
    return {"batch_size": a["batch"], "load_size": a["size"], "crop_size": a["size"]}


#: the options of pytorch-CycleGAN-and-pix2pix that the pix2pix and the CycleGAN fixture both record
CYCLEGAN_REPO_OPTIONS = ("ngf", "ndf", "n_layers_D", "norm", "no_dropout", "init_type", "init_gain", "lr", "beta1", "gan_mode")


def cyclegan_repo_options(ref: Path, argv: list[str]):
    opt = import_reference(ref, [*options(dataroot="unused", checkpoints_dir="unused"), *argv])
    opt.isTrain = True
    opt.device = torch.device("cpu")
    return opt


def train_ab_model(opt, a: dict, net_names: tuple[str, ...], offset: int) -> dict[str, torch.Tensor]:
    """The model `create_model(opt)` builds from seed 0, trained a["iterations"] steps on fixed A/B batches (the
    images of offsets `offset` + i and `offset` + 10 + i), seed 1000 + i before step i: the fixture's tensors."""
    from models import create_model

    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    model = create_model(opt)
    model.setup(opt)
    out: dict[str, torch.Tensor] = {}
    nets = {name: getattr(model, "net" + name) for name in net_names}
    for name, net in nets.items():
        put(out, f"init/{name}", state(net))
    for i in range(a["iterations"]):
        images = {d: to_uint8(fixed_images(a["batch"], 3, a["size"], offset + k + i)) for d, k in (("A", 0), ("B", 10))}
        put(out, f"data/{i}", images)
        batch = fixture_batch(out, i)
        model.set_input({**batch, "A_paths": ["a"] * a["batch"], "B_paths": ["b"] * a["batch"]})
        # BicycleGAN's train.py skips the batches its is_train() refuses; the other repository's models have none
        assert getattr(model, "is_train", lambda: True)()
        torch.manual_seed(1000 + i)
        model.optimize_parameters()
        for name, net in nets.items():
            put(out, f"step{i}/{name}", state(net))
        # BicycleGAN sets the losses its lambdas switch off to 0, a number
        put(out, f"step{i}/loss", {k: torch.as_tensor(getattr(model, "loss_" + k)).detach() for k in model.loss_names})
    return out


def unet_32(networks):
    define_g = networks.define_G

    def define_G(input_nc, output_nc, ngf, netG, norm="batch", use_dropout=False, init_type="normal", init_gain=0.02):
        if netG == "unet_32":
            return networks.UnetGenerator(
                input_nc, output_nc, 5, ngf, norm_layer=networks.get_norm_layer(norm_type=norm), use_dropout=use_dropout
            )
        return define_g(input_nc, output_nc, ngf, netG, norm, use_dropout, init_type, init_gain)

    return define_G


def make_pix2pix(ref: Path) -> dict:
    a = PIX2PIX_ARGS
    opt = cyclegan_repo_options(
        ref,
        options(model="pix2pix", netG="unet_32", ngf=a["ngf"], ndf=a["ndf"], n_layers_D=a["n_layers_D"], **size_options(a)),
    )
    import models.networks as networks

    networks.define_G = unet_32(networks)
    return fixture(
        train_ab_model(opt, a, ("G", "D"), 10),
        opt,
        (*CYCLEGAN_REPO_OPTIONS, "lambda_L1", "batch_size", "direction"),
        {"num_downs": a["num_downs"]},
        a["iterations"],
        PIX2PIX_PATCHES,
    )


CYCLEGAN_ARGS = dict(ngf=2, ndf=4, n_layers_D=2, n_blocks=6, size=32, batch=1, iterations=3)
CYCLEGAN_PATCHES = [
    "torch.set_default_dtype(float64): float64 run",
    "opt.device = cpu (train.py sets it from util.init_ddp, which picks a GPU when there is one)",
]


def make_cyclegan(ref: Path) -> dict:
    a = CYCLEGAN_ARGS
    opt = cyclegan_repo_options(
        ref,
        options(
            model="cycle_gan",
            netG=f"resnet_{a['n_blocks']}blocks",
            ngf=a["ngf"],
            ndf=a["ndf"],
            netD="n_layers",
            n_layers_D=a["n_layers_D"],
            **size_options(a),
        ),
    )
    # Fewer iterations than pool_size images: the pools only store, and draw nothing from `random`.
    return fixture(
        train_ab_model(opt, a, ("G_A", "G_B", "D_A", "D_B"), 30),
        opt,
        (*CYCLEGAN_REPO_OPTIONS, "lambda_A", "lambda_B", "lambda_identity", "pool_size", "batch_size"),
        {"n_blocks": a["n_blocks"]},
        a["iterations"],
        CYCLEGAN_PATCHES,
    )


# ---------------------------------------------------------------- BicycleGAN
BICYCLEGAN_ARGS = dict(ngf=2, nef=2, ndf=4, nz=8, num_downs=6, e_blocks=3, size=64, batch=2, iterations=2)
BICYCLEGAN_PATCHES = [
    "models.networks.define_G: netG='unet_64' builds G_Unet_add_all(..., 6, ngf, ...) as its unet_128/unet_256 "
    "branches do with 7 and 8 (6 is its least); models.networks.define_E: netE='resnet_64' builds E_ResNet(n_blocks=3) "
    "as resnet_128/256 do with 4 and 5 (its AvgPool2d(8) is then global at 64 px); both go through the original init_net",
    "torch.set_default_dtype(float64): float64 run (get_z_random's randn draws float64 too)",
]


def tiny_bicyclegan_nets(networks):
    define_g, define_e = networks.define_G, networks.define_E

    def define_G(
        input_nc,
        output_nc,
        nz,
        ngf,
        netG="unet_128",
        norm="batch",
        nl="relu",
        use_dropout=False,
        init_type="xavier",
        init_gain=0.02,
        gpu_ids=[],  # noqa: B006
        where_add="input",
        upsample="bilinear",
    ):
        if netG == "unet_64" and where_add == "all":
            net = networks.G_Unet_add_all(
                input_nc,
                output_nc,
                nz,
                6,
                ngf,
                norm_layer=networks.get_norm_layer(norm_type=norm),
                nl_layer=networks.get_non_linearity(layer_type=nl),
                use_dropout=use_dropout,
                upsample=upsample,
            )
            return networks.init_net(net, init_type, init_gain, gpu_ids)
        return define_g(input_nc, output_nc, nz, ngf, netG, norm, nl, use_dropout, init_type, init_gain, gpu_ids, where_add, upsample)

    def define_E(input_nc, output_nc, ndf, netE, norm="batch", nl="lrelu", init_type="xavier", init_gain=0.02, gpu_ids=[], vaeLike=False):  # noqa: B006
        if netE == "resnet_64":
            net = networks.E_ResNet(
                input_nc,
                output_nc,
                ndf,
                n_blocks=3,
                norm_layer=networks.get_norm_layer(norm_type=norm),
                nl_layer=networks.get_non_linearity(layer_type="lrelu"),
                vaeLike=vaeLike,
            )
            return networks.init_net(net, init_type, init_gain, gpu_ids)
        return define_e(input_nc, output_nc, ndf, netE, norm, nl, init_type, init_gain, gpu_ids, vaeLike)

    return define_G, define_E


def make_bicyclegan(ref: Path) -> dict:
    a = BICYCLEGAN_ARGS
    opt = import_reference(
        ref,
        options(
            dataroot="unused",
            checkpoints_dir="unused",
            gpu_ids=-1,
            netG="unet_64",
            netE="resnet_64",
            netD="basic_128_multi",
            netD2="basic_128_multi",
            ngf=a["ngf"],
            nef=a["nef"],
            ndf=a["ndf"],
            nz=a["nz"],
            **size_options(a),
        ),
    )
    opt.isTrain, opt.gpu_ids = True, []
    import models.networks as networks

    networks.define_G, networks.define_E = tiny_bicyclegan_nets(networks)
    return fixture(
        train_ab_model(opt, a, ("G", "E", "D", "D2"), 50),
        opt,
        (
            "ngf",
            "nef",
            "ndf",
            "nz",
            "num_Ds",
            "norm",
            "use_dropout",
            "where_add",
            "init_type",
            "init_gain",
            "lr",
            "beta1",
            "gan_mode",
            "lambda_L1",
            "lambda_GAN",
            "lambda_GAN2",
            "lambda_z",
            "lambda_kl",
            "use_same_D",
            "conditional_D",
            "batch_size",
            "upsample",
            "nl",
        ),
        {"num_downs": a["num_downs"], "e_blocks": a["e_blocks"], "n_layers_D": 2},
        a["iterations"],
        BICYCLEGAN_PATCHES,
    )


MAKERS = {"spade": make_spade, "pix2pix": make_pix2pix, "cyclegan": make_cyclegan, "bicyclegan": make_bicyclegan}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=sorted(MAKERS))
    parser.add_argument("--ref", help=f"the reference tree (default: ${{{'|'.join(sorted(set(ENV.values())))}}})")
    args = parser.parse_args()
    ref = args.ref or os.environ.get(ENV[args.model])
    if not ref:
        raise SystemExit(f"give --ref <tree> or {ENV[args.model]}=<tree>")
    ref = Path(ref).resolve()
    check_tree(args.model, ref)
    made = MAKERS[args.model](ref)
    repo, commit = PINNED[BLOB_REPO[args.model]]
    meta = {"reference": repo, "commit": commit, "torch": torch.__version__, **made["meta"]}
    if args.model == "spade":
        meta["sync_batchnorm"] = "{} {}".format(*PINNED["sync_batchnorm"])
    path = save_fixture(args.model, made["tensors"], meta)
    print(f"{path}: {len(made['tensors'])} tensors, {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
