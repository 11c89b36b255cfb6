"""SinGAN: the pyramid, frozen scales, reconstruction, exact resume mid-pyramid, every application."""

from __future__ import annotations

import csv
import json
import math
from functools import partial
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

import ganforge
from ganforge.cli.app import CONF_DIR
from ganforge.cli.predict import predict, run_singan_app
from ganforge.cli.train import train
from ganforge.data.single_image import SingleImageDataModule, pyramid_sizes
from ganforge.gans.singan import SinGAN
from ganforge.models.loading import read_checkpoint
from ganforge.nets.imresize import imresize
from ganforge.utils.errors import ConfigError, ImageFileError
from ganforge.utils.imageio import tensor_to_image
from tests.conftest import (
    PREDICT,
    SHARED_DATA,
    compose_train,
    quiet_trainer,
    run_cli,
    train_checkpoint,
)

SG = SHARED_DATA / "singan"
TINY_SG = ["model=singan", "data=single_image", "debug=tiny", "logger=csv", f"data.path={SG / 'Images' / 'stone.png'}"]


@pytest.mark.parametrize(
    ("hw", "expected_scales", "finest", "coarsest"),
    [
        ((186, 248), 9, (186, 248), (25, 34)),  # balloons.png: the reference trains scales 0..8
        ((366, 585), 9, (157, 250), (25, 40)),  # mountains.jpg: shrunk to max_size 250 first
        # 33039_LR.png, portrait: 80 * sf ** 6 is 25.000000000000004, which the reference's ceil() makes 26
        ((120, 80), 7, (120, 80), (38, 26)),
        ((1000, 1000), 10, (250, 250), (26, 26)),  # 25.000000000000014: 26 in the reference too
    ],
)
def test_pyramid_matches_the_recipe(hw, expected_scales, finest, coarsest):
    sizes, sf = pyramid_sizes(*hw)  # min 25, max 250, factor 0.75
    assert len(sizes) == expected_scales
    assert sizes[-1] == finest
    assert sizes[0] == coarsest, "the coarsest shorter side is min_size, up to the reference's float rounding"
    assert 0.75 <= sf < 0.85, "the factor is refit from 0.75 so the pyramid ends at min_size"
    top = len(sizes) - 1
    for n, (h, w) in enumerate(sizes):  # reference imresize: ceil(side * factor ** (top - n)), no slack
        assert (h, w) == (math.ceil(finest[0] * sf ** (top - n)), math.ceil(finest[1] * sf ** (top - n)))


def reference_stack(in_nc: int, out_nc: int, nfc: int, min_nfc: int, num_layer: int = 5, ker: int = 3) -> nn.Sequential:
    """The layers of the reference `models.py` (WDiscriminator, GeneratorConcatSkip2CleanAdd), from its formulas."""
    layers, n = [nn.Conv2d(in_nc, nfc, ker), nn.BatchNorm2d(nfc)], nfc
    for i in range(num_layer - 2):
        n = int(nfc / 2 ** (i + 1))
        layers += [nn.Conv2d(max(2 * n, min_nfc), max(n, min_nfc), ker), nn.BatchNorm2d(max(n, min_nfc))]
    return nn.Sequential(*layers, nn.Conv2d(max(n, min_nfc), out_nc, ker))


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_widths_and_parameter_counts_match_the_reference_at_every_scale():
    model = tiny_model(pyramid=[[25 + i, 30 + i] for i in range(10)], nfc=32, min_nfc=32)
    assert [model.nfc_at(n) for n in range(10)] == [32] * 4 + [64] * 4 + [128] * 2
    for n in range(10):
        # reference training.py: nfc and min_nfc both min(32 * 2 ** floor(n / 4), 128)
        width = min(32 * 2 ** math.floor(n / 4), 128)
        assert n_params(model.netG[n]) == n_params(reference_stack(3, 3, width, width)), f"G at scale {n}"
        assert n_params(model.netD[n]) == n_params(reference_stack(3, 1, width, width)), f"D at scale {n}"
        convs = [m for m in model.netG[n].modules() if isinstance(m, nn.Conv2d)]
        assert [c.out_channels for c in convs[:-1]] == [width] * 4, "every layer of a scale is nfc wide"
    assert n_params(model.netG[4]) == 114_819  # a reference G at nfc 64 with 3 channels
    assert n_params(model.netG[8]) == 450_819


def test_warm_start_copies_only_when_the_width_is_unchanged():
    model = tiny_model(pyramid=[[25 + i, 30 + i] for i in range(6)], nfc=8, min_nfc=8)
    for n in range(6):
        model.noise_amp[n] = 1.0
    model.start_scale(3)  # 8 -> 8: the reference copies scale 2's weights
    assert torch.equal(model.netG[3].head[0].weight, model.netG[2].head[0].weight)
    assert torch.equal(model.netD[3].tail[0].weight, model.netD[2].tail[0].weight)
    model.start_scale(4)  # 8 -> 16: fresh weights, as the reference
    assert model.netG[4].head[0].weight.shape != model.netG[3].head[0].weight.shape


def test_any_image_works(tmp_path):
    """Grayscale and RGBA files load as RGB (or as L with channels=1); big ones are shrunk to max_size."""
    gray, rgba, big = tmp_path / "g.png", tmp_path / "a.png", tmp_path / "big.jpg"
    Image.new("L", (90, 60), 128).save(gray)
    Image.new("RGBA", (90, 60), (10, 200, 30, 0)).save(rgba)
    Image.effect_noise((1200, 800), 40).convert("RGB").save(big)
    for path, channels in [(gray, 3), (gray, 1), (rgba, 3)]:
        dm = SingleImageDataModule(str(path), channels=channels)
        dm.setup("fit")
        assert dm.reals[-1].shape == (1, channels, 60, 90)
    dm = SingleImageDataModule(str(big))
    dm.setup("fit")
    # 26, not 25: the reference's ceil() of 25.000000000000004 (its pyramid for zebra.png, 572x380, is the same)
    assert dm.reals[-1].shape[-2:] == (167, 250) and dm.reals[0].shape[-2:] == (26, 38)
    with pytest.raises(ImageFileError, match="min_size"):
        SingleImageDataModule(str(gray), min_size=80).setup("fit")
    with pytest.raises(ConfigError, match="data.path"):
        SingleImageDataModule(None).setup("fit")


def tiny_model(**kw) -> SinGAN:
    opt = partial(torch.optim.Adam, lr=5e-4, betas=(0.5, 0.999))
    return SinGAN(optimizer_g=opt, optimizer_d=opt, **{"nfc": 8, "min_nfc": 8, "iters_per_scale": 4, **kw})


def fit_tiny(dm: SingleImageDataModule, callbacks=(), **kw) -> SinGAN:
    """A tiny SinGAN on `dm`'s image, built and trained as the CLI does (pyramid from the data)."""
    model = tiny_model(**dm.model_settings(), **kw)
    quiet_trainer(callbacks=list(callbacks), limit_val_batches=0, max_epochs=model.max_epochs).fit(model, datamodule=dm)
    return model


class Snapshots(L.Callback):
    """Scale 0's nets (weights and BN running stats) when scale 0 ends, and their grads later."""

    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch == module.epochs_per_scale - 1:
            self.scale0 = {k: v.clone() for k, v in module.netG[0].state_dict().items()}

    def on_train_batch_end(self, trainer, module, *args):
        if module.n_frozen > 0:
            assert all(p.grad is None for p in [*module.netG[0].parameters(), *module.netD[0].parameters()])
            assert not module.netG[0].training, "frozen scales run in eval mode"


@pytest.mark.slow
def test_frozen_scales_get_no_gradient_and_do_not_change():
    dm = SingleImageDataModule(str(SG / "Images" / "stone.png"), max_size=40, min_size=20, iters_per_epoch=2)
    snap = Snapshots()
    model = fit_tiny(dm, callbacks=[snap])
    assert model.num_scales == 3 and model.n_frozen == 2
    for k, v in model.netG[0].state_dict().items():
        assert torch.equal(v, snap.scale0[k]), f"frozen scale 0 changed: {k}"
    # warm start: scale 1 began as a copy of scale 0 (same width) and then trained away from it
    assert not torch.equal(model.netG[1].head[0].weight, model.netG[0].head[0].weight)
    assert model.noise_amp[0] == 1 and 0 < model.noise_amp[1] < 0.2


def record_step_gradients(model: SinGAN) -> list[tuple[str, set[str], set[str]]]:
    """Wrap `model.step`: each optimizer step appends (which optimizer, e.g. "G1", the parameters that received a
    gradient during it, the parameters it changed), parameters named as in `model.named_parameters()`."""
    params = dict(model.named_parameters())
    got: set[str] = set()
    for name, p in params.items():
        p.register_post_accumulate_grad_hook(lambda p, name=name: got.add(name))
    steps, step = [], model.step

    def recording(opt, *losses):
        index = next(i for i, o in enumerate(model.trainer.optimizers) if o is opt.optimizer)
        before = {k: p.detach().clone() for k, p in params.items()}
        got.clear()
        step(opt, *losses)
        changed = {k for k, p in params.items() if not torch.equal(p, before[k])}
        steps.append((f"{'GD'[index % 2]}{index // 2}", set(got), changed))

    model.step = recording
    return steps


@pytest.mark.slow
@pytest.mark.parametrize("precise", [False, True])
def test_each_step_reaches_and_updates_exactly_the_net_it_trains(precise):
    """D steps put gradients into the current scale's D alone, G steps into its G alone (not D, which a G loss
    runs through), and each step changes only those parameters: earlier scales stay frozen, later ones untouched."""
    dm = SingleImageDataModule(str(SG / "Images" / "stone.png"), max_size=40, min_size=20, iters_per_epoch=2)
    model = tiny_model(**dm.model_settings(), iters_per_scale=2, d_steps=2, g_steps=2)
    model.precise = precise
    steps = record_step_gradients(model)
    quiet_trainer(limit_val_batches=0, max_epochs=model.max_epochs).fit(model, datamodule=dm)
    assert [name for name, _, _ in steps] == [f"{net}{n}" for n in range(3) for _ in range(2) for net in "DDGG"]
    for name, got, changed in steps:
        net = f"net{name[0]}.{name[1]}."
        trained = {k for k, _ in model.named_parameters() if k.startswith(net)}
        assert got == trained, f"step of {name}: gradients reached {sorted(got ^ trained)} wrongly"
        # (D's last bias may keep its value: the WGAN loss's gradient for it is -1 + 1 = 0)
        assert changed <= trained and len(changed) >= len(trained) - 1, f"step of {name}: changed {sorted(changed ^ trained)}"


class TrainValues(L.Callback):
    """The module's `train_values` after every batch, as floats."""

    def __init__(self):
        self.seen: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, module, *args):
        self.seen.append({k: float(v) for k, v in module.train_values.items()})


@pytest.mark.slow
def test_training_values_reach_the_logger_on_the_steps_it_writes(tmp_path):
    """GANModule.log_train logs only on the steps the logger writes (every log_every_n_steps batches): each written
    row holds that step's values, and the progress bar shows the last written step's."""
    from lightning.pytorch.loggers import CSVLogger

    dm = SingleImageDataModule(str(SG / "Images" / "stone.png"), max_size=40, min_size=20, iters_per_epoch=4)
    model = tiny_model(**dm.model_settings())  # 3 scales x 4 iterations: 12 batches
    values = TrainValues()
    trainer = L.Trainer(
        logger=CSVLogger(tmp_path),
        log_every_n_steps=5,
        limit_val_batches=0,
        max_epochs=model.max_epochs,
        callbacks=[values],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    rows = [r for r in csv.DictReader(open(next(tmp_path.glob("**/metrics.csv")))) if r.get("train/loss_D")]
    assert [int(r["step"]) for r in rows] == [4, 9]  # Lightning's step column: the batches before the 5th and the 10th
    for row, batch in zip(rows, (4, 9)):
        assert values.seen[batch]["train/scale"] == batch // 4
        for key, value in values.seen[batch].items():
            assert float(row[key]) == pytest.approx(value, rel=1e-6), f"{key} of batch {batch}"
    assert float(trainer.progress_bar_metrics["train/loss_G_rec"]) == pytest.approx(values.seen[9]["train/loss_G_rec"])


@pytest.mark.slow
def test_grayscale_model_trains_and_samples(tmp_path):
    path = tmp_path / "gray.png"
    Image.effect_noise((48, 36), 60).save(path)
    dm = SingleImageDataModule(str(path), channels=1, max_size=40, min_size=20, iters_per_epoch=2)
    model = fit_tiny(dm, channels=1, iters_per_scale=2)
    model.eval()
    with torch.no_grad():
        assert model.inference_model().generate(scale_w=2.0).shape == (1, 1, 30, 80)


@pytest.fixture(scope="module")
def singan_ckpt(tmp_path_factory) -> Path:
    """A real `debug=tiny` run of train.py on the shared stone.png."""
    return train_checkpoint(tmp_path_factory, "singan_run", TINY_SG)


@pytest.mark.slow
def test_reconstruction_chain_reproduces_the_image(singan_ckpt):
    model = ganforge.load(singan_ckpt)
    assert read_checkpoint(singan_ckpt)["ganforge"]["config"]["model"]["pyramid"] == [[20, 30], [24, 35], [27, 40]]
    assert model.spec.pyramid == [[20, 30], [24, 35], [27, 40]]
    with torch.no_grad():
        zeros = torch.zeros(1, 3, *model.pyramid[0])
        rec = model.chain(0, model.num_scales - 1, zeros, model.rec_noise)
        sample = model.generate()
    real = model.real(model.num_scales - 1)
    mse = torch.mean((rec - real) ** 2)
    psnr = 10 * torch.log10(4 / mse)  # images in [-1, 1]
    assert psnr > 18, f"reconstruction PSNR {psnr:.1f} dB"
    assert mse < 0.5 * torch.mean((sample - real) ** 2), "the fixed noise must reconstruct better than random noise"


class CrashAt(L.Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


@pytest.mark.slow
def test_resume_mid_pyramid_is_exact(tmp_path):
    common = [*TINY_SG, "callbacks.image_grid.every_n_batches=3"]
    _, objs = train(compose_train(tmp_path / "full", common))
    straight = {k: v.clone() for k, v in objs["model"].state_dict().items()}

    first = compose_train(tmp_path / "first", [*common, "+callbacks.crash._target_=tests.test_singan.CrashAt", "+callbacks.crash.epoch=3"])
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(first)  # dies in scale 1 (2 epochs per scale), after epoch 2's checkpoint
    ckpt = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    _, objs = train(compose_train(tmp_path / "second", [*common, f"ckpt_path={ckpt}"]))
    resumed = objs["model"].state_dict()
    for k, v in straight.items():
        assert torch.equal(v, resumed[k]), f"{k} differs after resume"


def run_app(ckpt: Path, out: Path, **opts) -> list[Path]:
    cfg = OmegaConf.load(Path(CONF_DIR) / "predict.yaml")
    del cfg["defaults"], cfg["hydra"]
    cfg.merge_with({"ckpt_path": str(ckpt), "output": str(out), **opts})
    return [Path(p) for p in predict(cfg)["written"]]


@pytest.mark.slow
def test_samples_at_another_size_and_aspect_ratio_with_sifid(singan_ckpt, tmp_path, monkeypatch):
    from tests.conftest import write_fake_weights

    monkeypatch.setenv("TORCH_HOME", str(write_fake_weights(tmp_path / "torch_home")))
    written = run_app(singan_ckpt, tmp_path, app="samples", num_samples=3, scale_h=1.5, scale_w=0.75, gen_start_scale=1)
    images = [Image.open(p) for p in written if p.suffix == ".png"]
    assert len(images) == 3
    assert all(im.size == (round(40 * 0.75), round(27 * 1.5)) for im in images)
    assert len({im.tobytes() for im in images}) == 3, "samples differ"
    report = json.loads((tmp_path / "sifid.json").read_text())
    assert len(report["sifid"]) == 3 and report["sifid_mean"] == pytest.approx(sum(report["sifid"]) / 3)
    assert all(v > 0 for v in report["sifid"])


class CoarsestInputs(L.Callback):
    """Every input of scale 0's G while it trains: its noise and z_opt are one channel shared by all."""

    def on_train_start(self, trainer, module):
        self.inputs = []
        module.netG[0].register_forward_pre_hook(lambda net, args: self.inputs.append(args[0].detach().clone()))


@pytest.mark.slow
def test_sr_experiment_trains_the_ordinary_pyramid(tmp_path):
    """Reference SR.py sets opt.mode = 'train' before train(): the random-mode pyramid with alpha 100."""
    cfg = compose_train(
        tmp_path,
        [
            *TINY_SG,
            "experiment=singan_sr",
            "data.min_size=18",
            "model.iters_per_scale=8",
            "model.lr_milestone=6",
            "data.iters_per_epoch=8",
            "callbacks.image_grid.every_n_batches=100",
            "+callbacks.coarsest._target_=tests.test_singan.CoarsestInputs",
        ],
    )
    assert cfg.model.alpha == 100 and "mode" not in cfg.model
    _, objs = train(cfg)
    model = objs["model"]
    # adjust_scales2image_SR on stone.png (250x168, shrunk to max side 40), refit to min side 18
    assert model.pyramid == pyramid_sizes(168, 250, 18, 40, 4 ** (-1 / 6), rounding="floor")[0]
    # 27 * sf ** 3 is 18.000000000000004: 19 rows, as the reference's ceil() makes it
    assert model.pyramid[0] == (19, 27) and model.pyramid[-1] == (27, 40)
    z = model.z_opt
    assert z.abs().sum() > 0 and torch.equal(z, z[:, :1].expand_as(z)), "z_opt: coarsest noise, one channel"
    coarsest = next(c for c in objs["callbacks"] if isinstance(c, CoarsestInputs)).inputs
    assert len(coarsest) > 16 and all(torch.equal(x, x[:, :1].expand_as(x)) for x in coarsest)
    assert model.noise_amp[0] == 1
    model.eval()
    model._rec_cache.clear()
    with torch.no_grad():
        for n in range(1, model.num_scales):  # 0.1 * RMSE(real, upsampled reconstruction), as training.py
            rmse = torch.sqrt(torch.mean((model.real(n) - model.prev_for(n, "rec")) ** 2))
            assert model.noise_amp[n] == pytest.approx(0.1 * float(rmse), rel=1e-4)


def test_sr_pyramid_rounds_the_scale_count_down():
    """adjust_scales2image_SR counts with int() where adjust_scales2image uses ceil()."""
    sf = 4 ** (-1 / 6)
    ceil_sizes, ceil_sf = pyramid_sizes(80, 120, 18, 250, sf)
    floor_sizes, floor_sf = pyramid_sizes(80, 120, 18, 250, sf, rounding="floor")
    assert (len(ceil_sizes), len(floor_sizes)) == (9, 8)  # int(log(18/80, sf)) = int(6.46) = 6 steps
    assert floor_sf == pytest.approx((18 / 80) ** (1 / 7)) and ceil_sf == pytest.approx((18 / 80) ** (1 / 8))
    assert floor_sizes[0][0] == 18 and floor_sizes[-1] == (80, 120)
    with pytest.raises(ConfigError, match="data.scale_rounding"):
        SingleImageDataModule(str(SG / "Images" / "stone.png"), scale_rounding="up").setup("fit")


def test_sr_app_follows_the_reference_sr_func(tmp_path):
    """SR.py + SinGAN_generate: k = round(log(1/f) / log(2 ** (-1/3))) applications of the finest G
    with the finest noise amp, each on the last output upsampled by the reference's imresize by
    1 / opt.scale_factor = 1 / (1 / f ** (1/k)) (to ceil(side * that)); the first draws one-channel noise;
    the result is cropped to int(f * side)."""
    model = tiny_model(pyramid=[[18, 24], [22, 30], [27, 40]])
    model.real(2).copy_(torch.rand(1, 3, 27, 40) * 2 - 1)
    model.noise_amp.copy_(torch.tensor([1.0, 0.3, 0.2]))
    calls = []
    model.netG[2].register_forward_hook(lambda net, args, out: calls.append((args[0].clone(), args[1].clone(), out.clone())))
    for net in model.netG[:2]:
        net.register_forward_hook(lambda *a: pytest.fail("SR uses only the finest G"))
    (path,) = run_singan_app({"app": "sr", "sr_factor": 4.0, "seed": 3}, model.inference_model(), tmp_path)
    assert len(calls) == 6  # round(log(1/4) / log(2 ** (-1/3))) = 6
    step, h, w = 1 / (1 / 4 ** (1 / 6)), 27, 40
    for k, (noisy, prev, out) in enumerate(calls):
        h, w = math.ceil(h * step), math.ceil(w * step)
        assert prev.shape[-2:] == (h + 10, w + 10) and out.shape[-2:] == (h, w)
        z = (noisy - prev)[..., 5:-5, 5:-5] / 0.2  # noise amp of the finest scale
        assert torch.allclose(z.std(), torch.tensor(1.0), atol=0.15)
        assert torch.allclose(z[:, 0], z[:, 1], atol=1e-5) == (k == 0), "one-channel noise at the first step only"
        if k:  # the previous output, upsampled (the reference's imresize), is the next input
            assert torch.equal(prev[..., 5:-5, 5:-5], imresize(calls[k - 1][2], step))
    assert (h, w) == (115, 167)  # 27 -> 35 -> 45 -> 57 -> 72 -> 91 -> 115, 40 -> 51 -> ... -> 167
    out = Image.open(path)
    assert out.size == (int(4 * 40), int(4 * 27)) == (160, 108)
    expected = calls[-1][2][..., :108, :160]
    assert np.array_equal(np.asarray(out), np.asarray(tensor_to_image(expected)))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("app", "opts", "names"),
    [
        ("paint2image", {"ref": SG / "Paint" / "cows.png", "inject_scale": 1}, ["paint2image_scale1.png"]),
        (
            "editing",
            {"ref": SG / "Editing" / "stone_edit.png", "mask": SG / "Editing" / "stone_edit_mask.png", "inject_scale": 2},
            ["editing_scale2.png", "editing_scale2_masked.png"],
        ),
        (
            "harmonization",
            {
                "ref": SG / "Harmonization" / "starry_night_naive.png",
                "mask": SG / "Harmonization" / "starry_night_naive_mask.png",
                "inject_scale": 1,
            },
            ["harmonization_scale1.png", "harmonization_scale1_masked.png"],
        ),
        ("sr", {"sr_factor": 2.0}, ["sr_x2.png"]),
    ],
)
def test_applications_on_the_shared_inputs(singan_ckpt, tmp_path, app, opts, names):
    written = run_app(singan_ckpt, tmp_path, app=app, **{k: str(v) if isinstance(v, Path) else v for k, v in opts.items()})
    assert [p.name for p in written] == names
    size = (80, 54) if app == "sr" else (40, 27)
    assert all(Image.open(p).size == size for p in written)


@pytest.mark.slow
def test_animation_gif_and_cli_errors(singan_ckpt, tmp_path):
    proc = run_cli([f"ckpt_path={singan_ckpt}", "app=animation", "gen_start_scale=1", f"output={tmp_path}"], script=PREDICT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    gif = Image.open(tmp_path / "animation_start1.gif")
    assert gif.n_frames == 100 and gif.size == (40, 27)
    proc = run_cli(
        [f"ckpt_path={singan_ckpt}", "app=editing", f"ref={SG / 'Editing' / 'stone_edit.png'}", "inject_scale=7", f"output={tmp_path}"],
        script=PREDICT,
    )
    assert proc.returncode == 2 and "inject_scale=7 is out of range" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sr_experiment_sets_the_reference_sr_settings(tmp_path):
    cfg = compose_train(tmp_path, ["experiment=singan_sr", "data.path=x.png"])
    assert (cfg.model.alpha, cfg.data.min_size, cfg.data.scale_rounding) == (100, 18, "floor")
    assert cfg.data.scale_factor == 4 ** (-1 / 6)  # SR.py's 1 / in_scale for sr_factor 4
