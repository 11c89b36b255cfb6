"""The GAN contract: a model lacking a required hook fails when it is built, naming the hook; and every
model config and every experiment trains for a few steps under debug=tiny."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import open_dict

from ganforge.cli.app import CONF_DIR
from ganforge.cli.train import train
from ganforge.gans.base import GANModule
from ganforge.utils.errors import ConfigError
from tests.conftest import PAIRED_MINI, SHARED_DATA, compose_train

MODELS = sorted(p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
TINY_CONFIGS = {p.stem.removeprefix("tiny_") for p in (Path(CONF_DIR) / "debug_model").glob("tiny_*.yaml")}

#: real data for each kind of model, from ../shared/data
DATA_FOR = {
    "paired": [f"data.root={PAIRED_MINI}", "data.direction=BtoA"],
    "two_domain": ["data=unpaired", f"data.root={SHARED_DATA / 'horse2zebra_mini'}"],
    "single_image": ["data=single_image", f"data.path={SHARED_DATA / 'singan' / 'Images' / 'stone.png'}"],
    "unconditional": ["data=image_folder", f"data.root={SHARED_DATA / 'cifar10_frog' / 'train'}"],
    # the experiments' own layouts (ADE20K, Cityscapes) set back to the COCO-Stuff sample's
    "label_map": [
        "data=coco_stuff",
        f"data.root={SHARED_DATA / 'coco_stuff_sample'}",
        "data.layout=spade",
        "data.label_nc=182",
        "data.contain_dontcare_label=true",
        "data.dontcare_label=255",
        "data.label_shift=0",
        "data.preprocess=resize_and_crop",
    ],
}


def kind_of(target: str) -> str:
    if target.endswith(("Pix2Pix", "BicycleGAN")):
        return "paired"
    if target.endswith("SinGAN"):
        return "single_image"
    if target.endswith("DCGAN"):
        return "unconditional"
    if target.endswith("SPADEModel"):
        return "label_map"
    return "two_domain"


def test_a_model_without_a_required_hook_fails_when_built_naming_it():
    class NoGrid(GANModule):
        def configure_optimizers(self):
            return []

        def training_step(self, batch, batch_idx):
            pass

        def metric_batch(self, batch, direction="AtoB"):
            return {}

    with pytest.raises(TypeError, match="grid_rows"):
        NoGrid()


def test_the_defaults_of_the_contract():
    class Minimal(GANModule):
        def configure_optimizers(self):
            return []

        def training_step(self, batch, batch_idx):
            pass

        def grid_rows(self, batch):
            return {}

        def inference_model(self):
            return None

    m = Minimal()
    assert (m.input_size_multiple, m.max_epochs, m.directions) == (1, None, ("AtoB",))
    assert not (m.metric_paired or m.metric_multimodal or m.metric_single_image)
    assert m.checkpoint_extras() == {}

    class Unregistered(Minimal):
        inference_model = GANModule.inference_model  # the generic one: it needs a registered model_name

    with pytest.raises(ConfigError, match="model_name='' names no registered inference model"):
        Unregistered().inference_model()


@pytest.mark.parametrize("model", MODELS)
def test_every_model_has_a_tiny_config(model):
    assert model in TINY_CONFIGS, f"model={model} has no conf/debug_model/tiny_{model}.yaml (debug=tiny must shrink it)"


def _short(cfg):
    with open_dict(cfg):
        cfg.callbacks.rich_progress_bar = None
        if "SinGAN" not in cfg.model._target_:
            cfg.trainer.max_epochs = 1
            cfg.trainer.limit_train_batches = 2
            cfg.trainer.limit_val_batches = 1
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_under_debug_tiny(tmp_path, model):
    target = compose_train(tmp_path, [f"model={model}"]).model._target_
    cfg = _short(compose_train(tmp_path, [f"model={model}", "debug=tiny", "logger=csv", *DATA_FOR[kind_of(target)]]))
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step > 0, f"model={model} took no optimizer step"
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_trains_under_debug_tiny(tmp_path, experiment):
    target = compose_train(tmp_path, [f"experiment={experiment}"]).model._target_
    data = DATA_FOR[kind_of(target)]
    # The experiment chose its dataset; point that dataset's loader at the shared sample.
    overrides = [o for o in data if not o.startswith("data=")]
    if kind_of(target) == "single_image":
        overrides = [o.replace("stone.png", "33039_LR.png") for o in overrides]
    cfg = _short(compose_train(tmp_path, [f"experiment={experiment}", "debug=tiny", "logger=csv", *overrides]))
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step > 0, f"experiment={experiment} took no optimizer step"
