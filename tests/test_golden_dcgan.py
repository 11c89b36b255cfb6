"""DCGAN against its reference, pytorch/examples dcgan/main.py, step for step; and main.py's CIFAR-10 images.

tests/golden/make_dcgan.py ran main.py itself (--dataset folder on 12 CIFAR-10 frogs at 64 px,
nz 4, ngf = ndf = 2, batch 4, 3 steps) in float64 and recorded its initial weights and fixed noise, and at
every step the torch RNG state, the batch, and then the weights, BatchNorm buffers and losses, with the
Adam states at the end. ganforge trains from the same weights on the same batches, its noise drawn from
the same RNG state (so the draw order is tested too).

Tolerance, float64: main.py's D ends in a sigmoid read by BCELoss, ganforge's D gives the logit to BCE with
logits (the same loss, computed stably), so the two differ in the last bits (1e-16 in the losses; after
three steps 1e-17 in the weights and 1e-15 in Adam's moments on the machine that made the fixture). All
are held to 1e-10 (relative and absolute); a change of the computation (a missing G forward in train
mode, another loss, another noise) moves them by 1e-3 and more.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from torch.utils.data import DataLoader
from torchvision import transforms

from ganforge.data.torchvision_sets import TorchvisionDataModule
from ganforge.gans.dcgan import DCGAN
from ganforge.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from ganforge.utils.errors import ConfigError
from tests.golden import float64_trainer

pytestmark = pytest.mark.reference

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
LOSS_TOL = STATE_TOL = {"rtol": 1e-10, "atol": 1e-10}
LOSSES = {"loss_D_real": "errD_real", "loss_D_fake": "errD_fake", "loss_G": "errG"}


def load_fixture() -> tuple[dict[str, torch.Tensor], dict]:
    with safe_open(str(GOLDEN / "dcgan.safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["meta"])


def real_from_levels(levels: torch.Tensor) -> torch.Tensor:
    """The batch as main.py had it: ToTensor (u / 255 in the default dtype) and Normalize(0.5, 0.5), in float64."""
    mean = std = torch.tensor(0.5, dtype=torch.float64)
    return (levels.to(torch.float64) / 255 - mean) / std


def assert_state(ref, prefix: str, net: torch.nn.Module, where: str) -> None:
    for name, ours in net.state_dict().items():  # main.py's Sequential `main` has the same layer indices
        theirs = ref[prefix + name]
        if theirs.is_floating_point():
            torch.testing.assert_close(ours, theirs, **STATE_TOL, msg=lambda m, name=name: f"{where} {name}: {m}")
        else:
            assert torch.equal(ours, theirs), f"{where} {name}: {ours.tolist()} != {theirs.tolist()}"


class Golden(L.Callback):
    def __init__(self, ref):
        self.ref, self.checked, self.losses = ref, 0, {}

    def on_train_start(self, trainer, module):
        for name in ("discriminator_losses", "generator_losses"):
            method = getattr(module, name)
            setattr(module, name, lambda *a, _m=method: self.losses.update(out := _m(*a)) or out)

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        torch.set_rng_state(self.ref[f"step{batch_idx}/rng"])

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        where = f"step {batch_idx}"
        for ours, theirs in LOSSES.items():
            torch.testing.assert_close(
                self.losses[ours].reshape(1),
                self.ref[f"step{batch_idx}/loss/{theirs}"],
                **LOSS_TOL,
                msg=lambda m, k=ours: f"{where} {k}: {m}",
            )
        assert_state(self.ref, f"step{batch_idx}/netG/", module.netG, f"{where} G")
        assert_state(self.ref, f"step{batch_idx}/netD/", module.netD, f"{where} D")
        self.checked += 1

    def on_train_end(self, trainer, module):
        for name, opt in (("optimizerG", module.optimizers()[0]), ("optimizerD", module.optimizers()[1])):
            for i, p in enumerate(opt.optimizer.param_groups[0]["params"]):
                for key in ("exp_avg", "exp_avg_sq", "step"):
                    torch.testing.assert_close(
                        opt.optimizer.state[p][key].reshape(-1),
                        self.ref[f"{name}/{i}/{key}"],
                        **STATE_TOL,
                        check_dtype=key != "step",  # the fused Adam kernel counts steps in float32 whatever the params
                        msg=lambda m, name=name, i=i, k=key: f"{name} param {i} {k}: {m}",
                    )


def test_dcgan_trains_as_main_py_step_for_step():
    ref, meta = load_fixture()
    a = meta["args"]
    adam = partial(torch.optim.Adam, lr=0.0002, betas=(0.5, 0.999))  # main.py --lr 0.0002 --beta1 0.5
    model = DCGAN(
        netG=DCGANGenerator(nz=a["nz"], ngf=a["ngf"], image_size=a["imageSize"]),
        netD=DCGANDiscriminator(ndf=a["ndf"], image_size=a["imageSize"]),
        optimizer_g=adam,
        optimizer_d=adam,
        num_fixed_noise=a["batchSize"],
    ).double()
    with torch.no_grad():
        for net in ("netG", "netD"):
            for name, t in getattr(model, net).state_dict().items():
                t.copy_(ref[f"init/{net}/{name}"])
        model.fixed_noise.copy_(ref["fixed_noise"])
    batches = [{"real": real_from_levels(ref[f"step{i}/real"])} for i in range(meta["steps"])]
    golden = Golden(ref)
    float64_trainer(max_epochs=1, callbacks=[golden]).fit(model, train_dataloaders=DataLoader(batches, batch_size=None))
    assert golden.checked == meta["steps"] == 3


class FakeCIFAR:
    """torchvision's CIFAR10 as the data module reads it: PIL images of 32x32 and their targets."""

    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    def __init__(self, root, train=True, download=False):
        rng = np.random.default_rng(0)
        self.images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(4)]
        self.targets = [6] * 4

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.targets[i]


def test_cifar10_is_resized_to_64_px_bilinear_as_main_py(tmp_path, monkeypatch):
    """data=cifar10's defaults give main.py --dataset cifar10's images: Resize(64) (PIL bilinear), ToTensor, Normalize."""
    from omegaconf import OmegaConf

    from ganforge.cli.app import CONF_DIR

    cfg = OmegaConf.load(Path(CONF_DIR) / "data" / "cifar10.yaml")
    assert (cfg.image_size, cfg.interpolation) == (64, "bilinear")
    monkeypatch.setitem(__import__("ganforge.data.torchvision_sets", fromlist=["SETS"]).SETS, "cifar10", FakeCIFAR)
    dm = TorchvisionDataModule(
        name="cifar10", root=str(tmp_path), image_size=cfg.image_size, interpolation=cfg.interpolation, num_workers=0
    )
    dm.setup("fit")
    main_py = transforms.Compose([transforms.Resize(64), transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    ds = FakeCIFAR(tmp_path)
    for i in range(len(ds)):
        ours = dm.train_set[i]["real"]
        assert ours.shape == (3, 64, 64)
        # the same 8-bit image; u / 127.5 - 1 here, (u / 255 - 0.5) / 0.5 there: float32 rounding apart
        torch.testing.assert_close(ours, main_py(ds[i][0]), rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match=r"data.interpolation must be one of \['bicubic', 'bilinear'\], got 'nearest'"):
        TorchvisionDataModule(name="cifar10", root=str(tmp_path / "none"), interpolation="nearest").prepare_data()
