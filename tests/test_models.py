"""The inference models and the model folder: `save_pretrained` -> `ganforge.load` -> the training module's outputs,
the checkpoint path, what an import pulls in, the folder's size, and ganforge-predict's pixels kept from before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf, open_dict
from PIL import Image

import ganforge
from ganforge.cli.app import CONF_DIR
from ganforge.cli.predict import predict
from ganforge.utils.errors import CheckpointError, ConfigError
from tests.conftest import PAIRED_MINI, SHARED_DATA, compose_train

COCO = SHARED_DATA / "coco_stuff_sample"
H2Z = SHARED_DATA / "horse2zebra_mini"
GOLDEN = Path(__file__).parent / "fixtures" / "predict_golden"
SPADE = [
    "model=spade",
    "data=coco_stuff",
    f"data.root={COCO}",
    "data.load_size=36",
    "data.crop_size=32",
    "model.netG.ngf=4",
    "model.netD.ndf=4",
]
#: tiny models of every family, as `debug=tiny` builds them (the goldens were written from these, seeded 0)
TINY = {
    "pix2pix": ["model=pix2pix", f"data.root={PAIRED_MINI}", "data.direction=BtoA"],
    "bicyclegan": ["model=bicyclegan", "data=paired", f"data.root={PAIRED_MINI}"],
    "cyclegan": ["model=cyclegan", "data=horse2zebra", f"data.root={H2Z}"],
    "discogan": ["model=discogan", "data=horse2zebra", f"data.root={H2Z}"],
    "dualgan": ["model=dualgan", "data=horse2zebra", f"data.root={H2Z}"],
    "spade": SPADE,
    "spade_vae": [*SPADE, "model.use_vae=true"],
    "dcgan": [
        "model=dcgan",
        "data=image_folder",
        f"data.root={SHARED_DATA / 'cifar10_frog' / 'train'}",
        f"data.val_root={SHARED_DATA / 'cifar10_frog' / 'test'}",
    ],
    "singan": ["model=singan", "data=single_image", f"data.path={SHARED_DATA / 'singan' / 'Images' / 'stone.png'}"],
}
PHOTO = sorted(H2Z.rglob("*.jpg"))[0]
LABEL = sorted((COCO / "val_label").glob("*"))[0]
STYLE = sorted((COCO / "val_img").glob("*"))[0]


def tiny_module(name: str, tmp_path: Path):
    """The training module `debug=tiny` builds, seeded 0 (SinGAN: its pyramid filled, He-scaled weights and
    noise amps of 0.3, since N(0, 0.02) weights draw a constant image whatever the noise)."""
    torch.manual_seed(0)
    cfg = compose_train(tmp_path / name, ["debug=tiny", "logger=csv", *TINY[name]])
    dm = hydra.utils.instantiate(cfg.data)
    with open_dict(cfg):
        cfg.model.update(dm.model_settings())
    module = hydra.utils.instantiate(cfg.model)
    module.run_config = OmegaConf.to_container(cfg, resolve=True)
    if name == "singan":
        dm.prepare_data()
        dm.setup("fit")
        for n, r in enumerate(dm.reals):
            module.real(n).copy_(r)
        for p in module.parameters():
            if p.dim() > 1:
                torch.nn.init.kaiming_normal_(p)
        module.noise_amp.fill_(0.3)
    return module


def tiny_checkpoint(name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}.ckpt"
    torch.save(tiny_module(name, tmp_path).weights_checkpoint(), path)
    return path


def fixed_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every tensor of a state dict drawn from one seeded stream in name order (BatchNorm statistics and spectral
    norm's u, v set to valid values): outputs then depend on the architecture alone, not on how a version of
    ganforge initialises it. tests/fixtures/predict_golden was written this way from ganforge 0.1.0 (the commit
    before the inference models), whose predict built the model as a LightningModule."""
    gen = torch.Generator().manual_seed(0)
    out = {}
    for key in sorted(state):
        value = state[key]
        if not value.is_floating_point():
            out[key] = value
        elif key.endswith("running_var"):
            out[key] = torch.ones_like(value)
        elif key.endswith("running_mean"):
            out[key] = torch.zeros_like(value)
        elif key.endswith(("._u", "._v")):
            v = torch.randn(value.shape, generator=gen)
            out[key] = v / v.norm()
        elif key == "noise_amp":  # SinGAN's buffers
            out[key] = torch.rand(value.shape, generator=gen) * 0.5
        elif key.startswith(("z_opt", "real_")):
            out[key] = torch.randn(value.shape, generator=gen).clamp(-1, 1)
        elif value.dim() > 1:  # conv and linear weights: unit-variance activations, so no output saturates
            out[key] = torch.randn(value.shape, generator=gen) * (value[0].numel() ** -0.5)
        elif key.endswith("weight"):  # norm scales
            out[key] = 1 + 0.1 * torch.randn(value.shape, generator=gen)
        else:
            out[key] = 0.05 * torch.randn(value.shape, generator=gen)
    return out


def golden_checkpoint(name: str, tmp_path: Path) -> Path:
    """The tiny checkpoint of `name` with `fixed_weights`."""
    ckpt = tiny_module(name, tmp_path).weights_checkpoint()
    ckpt["state_dict"] = fixed_weights(ckpt["state_dict"])
    path = tmp_path / f"{name}.ckpt"
    torch.save(ckpt, path)
    return path


def outputs(model, name: str) -> list[torch.Tensor]:
    """Every generator output a model gives for fixed inputs and seeds (training module or inference model)."""
    inference = model.inference_model() if hasattr(model, "inference_model") else model
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    if name == "pix2pix":
        return [inference.generate(x, seed=3)]
    if name in ("cyclegan", "discogan", "dualgan"):
        return [inference.generate(x, "AtoB"), inference.generate(x, "BtoA")]
    if name == "bicyclegan":
        return [inference.generate(x, inference.latents(2, seed=4)), inference.encode_tensor(x)]
    if name.startswith("spade"):
        label = torch.randint(0, inference.n_labels, (2, 1, 32, 32), generator=torch.Generator().manual_seed(2))
        z = torch.randn(2, 256, generator=torch.Generator().manual_seed(3)) if inference.use_vae else None
        return [inference.generate(label, z=z)]
    if name == "dcgan":
        return [inference.generate(inference.latents(4, seed=5))]
    if name == "singan":
        return [inference.generate(noises=inference.seeded_noises(1, 6)[0])]
    raise AssertionError(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TINY))
def test_save_pretrained_then_load_gives_the_training_modules_outputs(name, tmp_path):
    module = tiny_module(name, tmp_path)
    module.inference_model().save_pretrained(tmp_path / "folder")
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = ganforge.load(tmp_path / "folder")
    torch.save(module.weights_checkpoint(), tmp_path / "m.ckpt")
    from_ckpt = ganforge.load(tmp_path / "m.ckpt")
    expected = outputs(module, name)
    for got in (outputs(loaded, name), outputs(from_ckpt, name)):
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True)), name
    assert not loaded.training  # loaded models are in eval mode
    config = json.loads((tmp_path / "folder" / "config.json").read_text())
    assert config["model"] == ("spade" if name.startswith("spade") else name)


def test_the_training_module_shares_its_nets_and_keeps_its_mode(tmp_path):
    module = tiny_module("pix2pix", tmp_path)
    module.train()
    inference = module.inference_model()
    assert inference.netG is module.netG
    inference.translate(torch.zeros(1, 3, 64, 64))
    assert module.netG.training  # inference ran in its own mode and gave the net back as it found it


@pytest.mark.slow
def test_images_come_back_in_the_kind_and_size_they_came_in(tmp_path):
    module = tiny_module("cyclegan", tmp_path)
    model = module.inference_model()
    pil = Image.open(PHOTO).convert("RGB").resize((50, 37))  # not a multiple of anything
    out = model.translate(pil)
    assert isinstance(out, Image.Image) and out.size == (50, 37) and out.mode == "RGB"
    arr = model.translate(np.asarray(pil))
    assert isinstance(arr, np.ndarray) and arr.shape == (37, 50, 3) and arr.dtype == np.uint8
    assert np.array_equal(arr, np.asarray(out))
    batch = model.translate([pil, pil], direction="BtoA")
    assert isinstance(batch, list) and len(batch) == 2 and np.array_equal(np.asarray(batch[0]), np.asarray(batch[1]))
    t = model.translate(torch.zeros(3, 40, 40))
    assert torch.is_tensor(t) and t.shape == (3, 40, 40)
    gray = model.translate(pil.convert("L"))  # grayscale in: the model's 3 channels
    assert gray.mode == "RGB"
    with pytest.raises(ConfigError, match="direction must be AtoB or BtoA"):
        model.translate(pil, direction="sideways")


@pytest.mark.slow
def test_family_methods(tmp_path):
    bicycle = tiny_module("bicyclegan", tmp_path).inference_model()
    img = Image.open(PHOTO).convert("RGB").resize((64, 64))
    styles = bicycle.sample_diverse(img, n=3, seed=0)
    assert len(styles) == 3 and not np.array_equal(np.asarray(styles[0]), np.asarray(styles[1]))
    assert np.array_equal(np.asarray(bicycle.translate(img, seed=7)), np.asarray(bicycle.translate(img, seed=7)))
    assert bicycle.encode(img).shape == (8,)
    spade = tiny_module("spade_vae", tmp_path).inference_model()
    label = Image.open(LABEL)
    photo = spade.synthesize(label, style=Image.open(STYLE).convert("RGB"))
    assert isinstance(photo, Image.Image) and photo.size == label.size
    assert np.array_equal(np.asarray(spade.synthesize(label, seed=1)), np.asarray(spade.synthesize(label, seed=1)))
    dcgan = tiny_module("dcgan", tmp_path).inference_model()
    assert len(dcgan.sample(4, seed=0)) == 4 and len(dcgan.interpolate(0, 1, steps=5)) == 5
    singan = tiny_module("singan", tmp_path).inference_model()
    wide = singan.sample(1, scale_w=1.5, seed=0)[0]
    assert wide.size[0] == round(singan.spec.pyramid[-1][1] * 1.5)
    out, masked = singan.harmonize(
        Image.open(SHARED_DATA / "singan" / "Images" / "stone.png"), Image.new("L", (40, 40), 255), inject_scale=1
    )
    assert out.size == masked.size
    assert len(singan.animate(frames=3, gen_start_scale=1)) == 3


@pytest.mark.slow
def test_loading_imports_no_lightning_hydra_or_wandb(tmp_path):
    tiny_module("pix2pix", tmp_path).inference_model().save_pretrained(tmp_path / "folder")
    code = (
        "import sys, ganforge; m = ganforge.load(sys.argv[1]); m.translate(__import__('torch').zeros(1, 3, 64, 64));"
        "print(sorted(k for k in ('lightning', 'hydra', 'wandb', 'omegaconf', 'pytorch_lightning') if k in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "folder")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_the_pix2pix_model_folder_is_its_generator(tmp_path):
    module = tiny_module("pix2pix", tmp_path)
    module.inference_model().save_pretrained(tmp_path / "folder")
    weights = sum(v.numel() * v.element_size() for v in module.netG.state_dict().values())
    assert (tmp_path / "folder" / "model.safetensors").stat().st_size <= weights * 1.01 + 4096  # + the safetensors header


@pytest.mark.slow
def test_a_hub_id_without_network_is_one_clear_error(tmp_path):
    code = "import ganforge; ganforge.load('ganforge-test/no-such-model')"
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0
    assert "the Hugging Face Hub could not be reached" in proc.stderr and "hf download" in proc.stderr


def test_a_folder_with_a_foreign_model_or_spec_is_refused(tmp_path):
    module = tiny_module("pix2pix", tmp_path)
    module.inference_model().save_pretrained(tmp_path / "folder")
    config_path = tmp_path / "folder" / "config.json"
    good = json.loads(config_path.read_text())
    cases = {
        "model": ({**good, "model": "os.system"}, "is not a ganforge model"),
        "unknown spec key": ({**good, "spec": {**good["spec"], "_target_": "os.system"}}, r"unknown key\(s\) \['_target_'\]"),
        "interpolation": ({**good, "spec": {**good["spec"], "direction": "${oc.env:HOME}"}}, "interpolation"),
        "net name": ({**good, "spec": {**good["spec"], "nets": {"netG": {"name": "Popen", "kwargs": {}}}}}, "not a ganforge network"),
        "huge net": (
            {**good, "spec": {**good["spec"], "nets": {"netG": {"name": "UnetGenerator", "kwargs": {"ngf": 10**9}}}}},
            "out of range",
        ),
        "type": ({**good, "spec": {**good["spec"], "train_size": "abc"}}, "must be an integer"),
    }
    for what, (config, message) in cases.items():
        config_path.write_text(json.dumps(config))
        with pytest.raises(CheckpointError, match=message):
            ganforge.load(tmp_path / "folder")
        assert what


# ----- ganforge-predict: the same pixels as before the inference models -----------------------------------
GOLDEN_RUNS = {
    "bicyclegan_0": ("bicyclegan", {"input": str(PHOTO), "n_samples": 3, "seed": 5}),
    "cyclegan_1": ("cyclegan", {"input": str(PHOTO), "direction": "BtoA", "reconstruct": True}),
    "discogan_0": ("discogan", {"input": str(PHOTO)}),
    "spade_vae_0": ("spade_vae", {"input": str(LABEL), "n_samples": 2, "seed": 3}),
    "dcgan_0": ("dcgan", {"num_samples": 4, "seed": 1}),
    # written again by ganforge.load when sampling took the reference's imresize between scales (issue 26)
    "singan_0": ("singan", {"app": "samples", "num_samples": 2, "sifid": False, "seed": 3}),
}


@pytest.mark.slow
@pytest.mark.parametrize("run", list(GOLDEN_RUNS))
def test_predict_writes_the_pixels_it_wrote_before_the_refactor(run, tmp_path):
    """The goldens are ganforge-predict's files from before ganforge.load existed (the LightningModule path) for the
    same tiny models with `fixed_weights`; a CPU with other vector units may round a level differently."""
    name, opts = GOLDEN_RUNS[run]
    base = OmegaConf.load(Path(CONF_DIR) / "predict.yaml")
    cfg = OmegaConf.merge(
        {k: v for k, v in OmegaConf.to_container(base).items() if k not in ("defaults", "hydra")},
        opts,
        {"ckpt_path": str(golden_checkpoint(name, tmp_path)), "output": str(tmp_path / "out")},
    )
    predict(cfg)
    for golden in sorted((GOLDEN / run).glob("*.png")):
        want = np.asarray(Image.open(golden), dtype=np.int16)
        got = np.asarray(Image.open(tmp_path / "out" / golden.name), dtype=np.int16)
        assert got.shape == want.shape, golden.name
        diff = np.abs(got - want)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.001, f"{golden.name}: max {diff.max()}, {(diff > 0).mean():.2%} differ"


def test_push_to_hub_uploads_the_model_folder(tmp_path, monkeypatch):
    """huggingface_hub's HfApi does the upload (no network here: it is replaced by a recorder)."""
    import huggingface_hub

    calls = {}

    class Api:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls["repo"] = repo_id
            return type("Repo", (), {"repo_id": f"user/{repo_id}"})()

        def upload_folder(self, repo_id, folder_path, commit_message, revision=None, create_pr=None):
            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            calls["config"] = json.loads((Path(folder_path) / "config.json").read_text())
            return f"https://huggingface.co/{repo_id}/commit/1"

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    model = tiny_module("dcgan", tmp_path).inference_model()
    url = model.push_to_hub("frogs-dcgan", token="t")
    assert url == "https://huggingface.co/user/frogs-dcgan/commit/1" and calls["repo"] == "frogs-dcgan"
    assert calls["files"] == ["README.md", "config.json", "model.safetensors"] and calls["config"]["model"] == "dcgan"


@pytest.mark.slow
def test_a_training_run_writes_its_model_folder_beside_last_ckpt(tmp_path):
    from ganforge.cli.train import train
    from tests.conftest import TINY

    cfg = compose_train(tmp_path, TINY)
    train(cfg)
    folder = tmp_path / "checkpoints" / "model"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    from_folder, from_ckpt = ganforge.load(folder), ganforge.load(tmp_path / "checkpoints" / "last.ckpt")
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert torch.equal(from_folder.generate(x, seed=0), from_ckpt.generate(x, seed=0))
    card = (folder / "README.md").read_text()
    assert "pix2pix" in card and "python train.py debug=tiny" in card and "## Metrics" in card
