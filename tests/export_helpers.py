"""Checkpoints of untrained tiny models (weights and run config, as ganforge-import writes them), for
the export and import tests: building one takes a second where a training run takes a minute."""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from omegaconf import OmegaConf, open_dict

from tests.conftest import compose_train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

#: per model: the overrides of a tiny run on the shared data
TINY_MODELS = {
    "pix2pix": ["model=pix2pix", f"data.root={SHARED / 'pix2pix_paired_mini'}", "data.direction=BtoA"],
    "cyclegan": ["model=cyclegan", "data=horse2zebra", f"data.root={SHARED / 'horse2zebra_mini'}"],
    "discogan": ["model=discogan", "data=horse2zebra", f"data.root={SHARED / 'horse2zebra_mini'}"],
    "dualgan": ["model=dualgan", "data=horse2zebra", f"data.root={SHARED / 'horse2zebra_mini'}"],
    "bicyclegan": ["model=bicyclegan", f"data.root={SHARED / 'pix2pix_paired_mini'}", "data.direction=BtoA"],
    "spade": [
        "model=spade",
        "data=coco_stuff",
        f"data.root={SHARED / 'coco_stuff_sample'}",
        "data.load_size=36",
        "data.crop_size=32",
        "model.netG.ngf=4",
        "model.netD.ndf=4",
    ],
    "dcgan": ["model=dcgan", "data=image_folder", f"data.root={SHARED / 'cifar10_frog' / 'train'}"],
    "singan": ["model=singan", "data=single_image", f"data.path={SHARED / 'singan' / 'Images' / 'stone.png'}"],
}


def tiny_model(tmp_path: Path, name: str, extra: list[str] = ()):
    """The tiny `name` model, untrained, with its run config set (as train() builds it)."""
    cfg = compose_train(tmp_path, ["debug=tiny", "logger=csv", *TINY_MODELS[name], *extra])
    if name == "singan":  # its pyramid comes from the image
        datamodule = hydra.utils.instantiate(cfg.data)
        with open_dict(cfg):
            cfg.model.update(datamodule.model_settings())
    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.model)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    return model


def tiny_checkpoint(tmp_path: Path, name: str, extra: list[str] = ()) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    model = tiny_model(tmp_path, name, extra)
    path = tmp_path / f"{name}.ckpt"
    torch.save(model.weights_checkpoint(), path)
    return path
