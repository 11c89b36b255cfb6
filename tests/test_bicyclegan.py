"""BicycleGAN as the paper and the reference: halves, frozen nets per phase, loss weights, diversity."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import hydra
import lightning.pytorch as L
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ganforge.cli.train import train
from ganforge.gans.bicyclegan import BicycleGAN
from ganforge.gans.losses import kl_divergence
from ganforge.nets import MultiscaleDiscriminator, ResnetEncoder, UnetGenerator
from ganforge.utils.errors import ConfigError
from tests.conftest import (
    PAIRED_MINI,
    PREDICT,
    SHARED_DATA,
    TINY,
    compose_train,
    quiet_trainer,
    run_cli,
    train_checkpoint,
)

BICYCLE_TINY = [*TINY, "model=bicyclegan"]


def tiny_bicyclegan(**kw) -> BicycleGAN:
    adam = partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999))
    return BicycleGAN(
        netG=UnetGenerator(3, 3, num_downs=5, ngf=8, norm="instance", use_dropout=False, init_type="xavier", nz=8, where_add="all"),
        netE=ResnetEncoder(3, 8, nef=8, n_blocks=3),
        netD=MultiscaleDiscriminator(3, ndf=8, n_layers=2),
        netD2=MultiscaleDiscriminator(3, ndf=8, n_layers=2),
        optimizer_g=adam,
        optimizer_e=adam,
        optimizer_d=adam,
        optimizer_d2=adam,
        scheduler={"policy": "linear", "n_epochs": 1, "n_epochs_decay": 1},
        **kw,
    )


def random_batch(n: int = 4, size: int = 32) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"A": torch.rand(n, 3, size, size, generator=g) * 2 - 1, "B": torch.rand(n, 3, size, size, generator=g) * 2 - 1}


class OneBatch(L.LightningDataModule):
    def train_dataloader(self):
        b = random_batch()
        data = [{"A": b["A"][i], "B": b["B"][i]} for i in range(4)]
        return torch.utils.data.DataLoader(data, batch_size=4)


def fit_one_batch(model: BicycleGAN, callbacks=()) -> None:
    quiet_trainer(max_epochs=1, limit_train_batches=1, callbacks=list(callbacks)).fit(model, datamodule=OneBatch())


@pytest.mark.slow
def test_latent_loss_reaches_g_but_leaves_e_untouched():
    torch.manual_seed(0)
    model = tiny_bicyclegan()
    model.manual_backward = lambda loss, **kw: loss.backward(**kw)  # plain autograd instead of a Trainer
    b = random_batch()
    f = model.forward_halves(b["A"], b["B"])
    model.encoder_generator_losses(f)["loss_EG"].backward(retain_graph=True)
    grads_E = [p.grad.clone() for p in model.netE.parameters()]
    grads_G = [p.grad.clone() for p in model.netG.parameters()]
    loss_z = model.backward_latent(f)["loss_z_L1"]
    assert loss_z > 0
    assert all(torch.equal(g, p.grad) for g, p in zip(grads_E, model.netE.parameters(), strict=True)), "E got latent-loss gradient"
    assert any(not torch.equal(g, p.grad) for g, p in zip(grads_G, model.netG.parameters(), strict=True)), "G got none"
    assert all(p.requires_grad for p in model.netE.parameters())  # E trainable again afterwards


@pytest.mark.slow
def test_loss_weights_and_summed_kl_match_the_recipe():
    torch.manual_seed(0)
    model = tiny_bicyclegan()
    b = random_batch()
    f = model.forward_halves(b["A"], b["B"])
    assert f["fake_B_encoded"].shape[0] == f["fake_B_random"].shape[0] == 2
    eg = model.encoder_generator_losses(f)
    mu, logvar = f["mu"], f["logvar"]
    kl_summed = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    assert torch.allclose(eg["loss_kl"], 0.01 * kl_summed)
    assert torch.allclose(kl_divergence(mu, logvar), kl_summed)
    assert torch.allclose(eg["loss_G_L1"], 10.0 * F.l1_loss(f["fake_B_encoded"], f["real_B_encoded"]))
    lsgan_g = sum(F.mse_loss(s, torch.ones_like(s)) for s in model.netD(f["fake_B_encoded"]))  # 2 scales summed
    assert torch.allclose(eg["loss_G_GAN"], lsgan_g)
    assert torch.allclose(eg["loss_EG"], eg["loss_G_GAN"] + eg["loss_G_GAN2"] + eg["loss_G_L1"] + eg["loss_kl"])
    model.manual_backward = lambda loss, **kw: None
    mu2 = model.netE(f["fake_B_random"])[0]
    assert torch.allclose(model.backward_latent(f)["loss_z_L1"], 0.5 * (mu2 - f["z_random"]).abs().mean())


class Recorder(L.Callback):
    """Wraps each optimizer's step to record which nets it changed; hooks record net inputs/outputs."""

    def __init__(self, model: BicycleGAN):
        nets = {"G": model.netG, "E": model.netE, "D": model.netD, "D2": model.netD2}
        self.nets = {name: net for name, net in nets.items() if net is not None}  # no D2 with use_same_D
        self.steps, self.calls = [], {name: [] for name in self.nets}
        for name, net in self.nets.items():
            net.register_forward_hook(
                lambda m, inp, out, name=name: self.calls[name].append(
                    (inp[0].detach().clone(), out.detach().clone() if name == "G" else None)
                )
            )

    def on_train_start(self, trainer, pl_module):
        for name, opt in zip(self.nets, trainer.optimizers, strict=True):  # G, E, D[, D2]: configure_optimizers' order
            opt.step = self._wrap(name, opt.step)

    def _wrap(self, name, step):
        def recording_step(*args, **kwargs):
            before = {n: [p.detach().clone() for p in net.parameters()] for n, net in self.nets.items()}
            out = step(*args, **kwargs)
            changed = sorted(
                n for n, net in self.nets.items() if any(not torch.equal(a, p) for a, p in zip(before[n], net.parameters(), strict=True))
            )
            self.steps.append((name, changed))
            return out

        return recording_step


def test_update_order_and_each_discriminator_sees_only_its_half():
    torch.manual_seed(0)
    model = tiny_bicyclegan()
    rec = Recorder(model)
    fit_one_batch(model, [rec])
    # reference order: E and G step (after both backwards), then D, then D2; each touches its own net
    assert rec.steps == [("E", ["E"]), ("G", ["G"]), ("D", ["D"]), ("D2", ["D2"])]

    b = random_batch()
    B1, B2 = b["B"][:2], b["B"][2:]
    (e_in1, _), (e_in2, _) = rec.calls["E"]
    assert torch.equal(e_in1, B1), "E must encode the first (cVAE-GAN) half"
    (_, g_out1), (_, g_out2) = rec.calls["G"]
    fake_random = e_in2  # E's second input is the cLR fake it regresses z from
    fake_encoded = g_out1 if torch.equal(g_out2, fake_random) else g_out2
    assert torch.equal(g_out1, fake_random) or torch.equal(g_out2, fake_random)
    d_inputs = [x for x, _ in rec.calls["D"]]
    d2_inputs = [x for x, _ in rec.calls["D2"]]
    assert len(d_inputs) == 3 and len(d2_inputs) == 3  # G's adversarial term, then fake and real
    assert all(torch.equal(x, fake_encoded) or torch.equal(x, B1) for x in d_inputs)
    assert all(torch.equal(x, fake_random) or torch.equal(x, B2) for x in d2_inputs)
    assert sum(torch.equal(x, B1) for x in d_inputs) == 1 and sum(torch.equal(x, B2) for x in d2_inputs) == 1


@pytest.mark.slow
def test_use_same_d_trains_one_discriminator_on_both_halves():
    torch.manual_seed(0)
    model = tiny_bicyclegan(use_same_D=True)
    assert model.netD2 is None
    rec = Recorder(model)
    fit_one_batch(model, [rec])
    assert rec.steps == [("E", ["E"]), ("G", ["G"]), ("D", ["D"])]
    assert len(rec.calls["D"]) == 6  # 2 adversarial terms for G, then real + fake of both halves


def test_nz_mismatch_is_a_config_error():
    with pytest.raises(ConfigError, match="nz"):
        tiny_bicyclegan(nz=16)


def test_config_defaults_match_the_recipe(tmp_path):
    m = compose_train(tmp_path, ["model=bicyclegan"]).model
    assert m.nz == m.netG.nz == m.netE.output_nc == 8
    assert (m.gan_mode, m.lambda_l1, m.lambda_gan, m.lambda_gan2, m.lambda_z, m.lambda_kl) == ("lsgan", 10.0, 1.0, 1.0, 0.5, 0.01)
    assert (m.netG.num_downs, m.netG.where_add, m.netG.use_dropout, m.netG.norm) == (8, "all", False, "instance")
    assert (m.netE._target_.rsplit(".", 1)[1], m.netE.n_blocks, m.netE.nef) == ("ResnetEncoder", 5, 64)
    for d in (m.netD, m.netD2):
        assert (d.num_D, d.n_layers, d.ndf, d.ndf_scale, d.norm) == (2, 3, 64, 0.5, "instance")
    for net in (m.netG, m.netE, m.netD, m.netD2):
        assert (net.init_type, net.init_gain) == ("xavier", 0.02)
    for opt in (m.optimizer_g, m.optimizer_e, m.optimizer_d, m.optimizer_d2):
        assert (opt.lr, list(opt.betas)) == (0.0002, [0.5, 0.999])
    assert m.use_same_D is False
    assert m.scheduler.step_size == 100  # train_options.py --lr_decay_iters
    assert compose_train(tmp_path, ["model=bicyclegan_seed"]).model.netG.where_add == "input"
    shoes = compose_train(tmp_path, ["experiment=bicyclegan_edges2shoes"])
    assert (shoes.model.scheduler.n_epochs, shoes.model.scheduler.n_epochs_decay) == (30, 30)
    # scripts/train.sh sets NO_FLIP='--no_flip' for edges2shoes but never passes it: the reference flips
    assert (shoes.data.input_nc, shoes.data.flip, shoes.data.batch_size, shoes.model.netG.input_nc) == (1, True, 2, 1)
    facades = compose_train(tmp_path, ["experiment=bicyclegan_facades"])
    assert (facades.model.scheduler.n_epochs, facades.data.direction) == (200, "BtoA")
    for name in ("maps", "edges2handbags", "night2day"):
        cfg = compose_train(tmp_path, [f"experiment=bicyclegan_{name}"])
        assert cfg.model._target_.endswith("BicycleGAN") and cfg.data.batch_size == 2 and cfg.data.name == name


@pytest.mark.slow
def test_a_short_last_batch_is_skipped_even_when_its_size_is_even():
    # 6 images at batch size 4: a full batch of 4, then 2 (even, so it could be halved). The reference
    # trains only on batches of opt.batch_size (bicycle_gan_model.py is_train).
    b = random_batch(6)
    data = [{"A": b["A"][i], "B": b["B"][i]} for i in range(6)]
    model = tiny_bicyclegan()
    trained = []
    forward = model.forward_halves
    model.forward_halves = lambda A, B: trained.append(len(A)) or forward(A, B)
    quiet_trainer(max_epochs=1).fit(model, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=4))
    assert trained == [4]


# ----- end-to-end runs on the shared real images ------------------------------------------------------
@pytest.mark.slow
def test_odd_batch_size_stops_before_training(tmp_path):
    cfg = compose_train(tmp_path, [*BICYCLE_TINY, "data.batch_size=3"])
    with pytest.raises(ConfigError, match=r"data\.batch_size=3"):
        train(cfg)
    assert not list((tmp_path / "checkpoints").glob("*.ckpt"))


@pytest.mark.slow
def test_short_run_logs_psnr_draws_grid_and_outputs_depend_on_z(tmp_path):
    cfg = compose_train(
        tmp_path,
        [
            *BICYCLE_TINY,
            "model.scheduler.n_epochs=15",
            "model.scheduler.n_epochs_decay=0",
            "trainer.check_val_every_n_epoch=15",
            "callbacks.image_grid.every_n_batches=0",
        ],
    )
    untrained = hydra.utils.instantiate(cfg.model)
    metrics, objects = train(cfg)
    assert metrics["val/psnr"] == metrics["val/psnr"]
    for key in ("train/loss_G_L1", "train/loss_D", "train/loss_D2", "train/loss_z_L1", "train/loss_kl"):
        assert key in metrics, key
    model = objects["model"]
    batch = objects["datamodule"].fixed_val_batch(2)
    rows = model.grid_rows(batch)
    assert list(rows) == ["input", "target", "encoded", "random_1", "random_2", "random_3"]
    with Image.open(tmp_path / "samples" / "epoch_0014.png") as grid:
        assert grid.size[0] > 6 * 64  # six columns
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))

    def z_effect(m: BicycleGAN) -> float:
        g = m.inference_model()
        return (g.generate(batch["A"], z[:1].expand(2, -1)) - g.generate(batch["A"], z[1:].expand(2, -1))).abs().mean()

    # Measured: 0.004 untrained (xavier gain 0.02 keeps outputs near flat), 0.023 after these 15 steps.
    assert z_effect(model) > max(0.01, 2 * z_effect(untrained)), "G ignores z"
    diverse = model.inference_model().diverse(batch["A"], 3)
    assert diverse.shape == (3, *batch["B"].shape)


@pytest.mark.slow
def test_resume_equals_uninterrupted(tmp_path):
    common = [*BICYCLE_TINY, "model.scheduler.n_epochs=1", "model.scheduler.n_epochs_decay=2", "callbacks.image_grid.every_n_batches=1"]
    _, objs = train(compose_train(tmp_path / "full", [*common, "trainer.max_epochs=3"]))
    straight = {k: v.clone() for k, v in objs["model"].state_dict().items()}
    lrs = [o.param_groups[0]["lr"] for o in objs["trainer"].optimizers]
    train(compose_train(tmp_path / "first", [*common, "trainer.max_epochs=1"]))
    ckpt = tmp_path / "first" / "checkpoints" / "last.ckpt"
    _, objs = train(compose_train(tmp_path / "second", [*common, "trainer.max_epochs=3", f"ckpt_path={ckpt}"]))
    assert len(lrs) == 4 and lrs[0] < 2e-4
    assert [o.param_groups[0]["lr"] for o in objs["trainer"].optimizers] == pytest.approx(lrs)
    resumed = objs["model"].state_dict()
    for k, v in straight.items():
        assert torch.equal(v, resumed[k]), f"{k} differs after resume"


@pytest.fixture(scope="module")
def paired_seven(tmp_path_factory) -> Path:
    """Seven real A|B pairs (facades, edges2shoes, edges2handbags, maps) in one train/ folder."""
    root = tmp_path_factory.mktemp("paired7")
    (root / "train").mkdir()
    files = [
        *sorted((PAIRED_MINI / "train").glob("*.jpg")),
        *sorted((PAIRED_MINI / "test").glob("*.jpg")),
        *sorted((SHARED_DATA / "pix2pix_samples" / "AB").glob("*.jpg")),
    ]
    for i, p in enumerate(files):
        shutil.copy(p, root / "train" / f"{i}_{p.name}")
    assert len(files) == 7
    return root


@pytest.mark.slow
def test_ddp_cpu_two_processes(tmp_path, paired_seven):
    proc = run_cli([*BICYCLE_TINY, f"data.root={paired_seven}", "trainer=ddp_cpu", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "terminate called" not in proc.stderr
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    # 7 pairs padded to 8 over 2 ranks: 2 batches of 2 per rank, 2 epochs, 4 optimizer steps a batch
    assert ckpt["global_step"] == 2 * 2 * 4


@pytest.fixture(scope="module")
def bicycle_checkpoint(tmp_path_factory) -> Path:
    return train_checkpoint(tmp_path_factory, "bicycle_run", BICYCLE_TINY)


@pytest.mark.slow
def test_predict_samples_style_and_interpolation(tmp_path, bicycle_checkpoint):
    src = tmp_path / "in"
    src.mkdir()
    facade = SHARED_DATA / "pix2pix_samples" / "facades_pairs"
    shutil.copy(facade / "1-inputs.png", src / "label.png")  # BtoA: the label map is the input
    out = tmp_path / "out"
    proc = run_cli(
        [f"ckpt_path={bicycle_checkpoint}", f"input={src}", f"output={out}", "n_samples=3", "interp=7", "interp_steps=4"], script=PREDICT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    samples = [torch.tensor(list(Image.open(out / f"label_{k}.png").getdata()), dtype=torch.float) for k in range(3)]
    assert all(Image.open(out / f"label_{k}.png").size == (256, 256) for k in range(3))
    assert not torch.equal(samples[0], samples[1]) and not torch.equal(samples[1], samples[2])
    strip = Image.open(out / "label_interp.png")
    assert strip.size == (4 * 256, 256)
    with Image.open(out / "label_interp.gif") as gif:
        assert gif.n_frames == 4
    first = torch.tensor(list(strip.crop((0, 0, 256, 256)).getdata()), dtype=torch.float)
    assert torch.equal(first, samples[0])  # the strip starts at the first sample's z

    styled = tmp_path / "styled"
    proc = run_cli(
        [f"ckpt_path={bicycle_checkpoint}", f"input={src}", f"output={styled}", f"z_from={facade / '5-targets.png'}"], script=PREDICT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (styled / "label_0.png").is_file()
    proc = run_cli(
        [f"ckpt_path={bicycle_checkpoint}", f"input={src}", f"output={styled}", f"z_from={facade / '5-targets.png'}", "n_samples=2"],
        script=PREDICT,
    )
    assert proc.returncode == 2 and "z_from" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_metrics_protocol_offers_fid_and_diversity_but_no_pixel_metrics():
    from ganforge.metrics.registry import supported

    model = tiny_bicyclegan()
    assert supported(model) == ["fid", "kid", "is", "diversity"]
    b = random_batch()
    out = model.metric_batch(b)
    assert out["fake"].shape == b["B"].shape and out["real"] is b["B"]
    torch.manual_seed(0)
    diverse = model.inference_model().diverse(b["A"], 4)
    assert diverse.shape == (4, *b["B"].shape)
    assert not torch.equal(diverse[0], diverse[1])  # a fresh z per sample


@pytest.mark.slow
def test_diversity_score_through_the_metrics_callback(tmp_path, monkeypatch):
    import torchvision

    # LPIPS's squeezenet backbone from the offline cache; random weights suffice to tell outputs apart.
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(torchvision.models.squeezenet1_1().state_dict(), hub / "squeezenet1_1-b8a52dc0.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    gm = "callbacks.metrics"
    cfg = compose_train(
        tmp_path / "run",
        [
            *BICYCLE_TINY,
            "callbacks=default_metrics",
            f"{gm}.metrics=[diversity]",
            f"{gm}.lpips_net=squeeze",
            f"{gm}.diversity_samples=3",
            f"{gm}.num_samples=2",
            f"{gm}.every_n_epochs=1",
        ],
    )
    metrics, _ = train(cfg)
    assert metrics["val/diversity"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["edges2shoes", "edges2handbags", "facades", "maps", "night2day"])
def test_every_experiment_builds_and_computes_its_losses(tmp_path, name):
    cfg = compose_train(tmp_path, [f"experiment=bicyclegan_{name}", "debug=tiny", f"data.root={PAIRED_MINI}"])
    model = hydra.utils.instantiate(cfg.model)
    model.manual_backward = lambda loss, **kw: loss.backward(**kw)
    A = torch.rand(2, cfg.data.input_nc, cfg.data.crop_size, cfg.data.crop_size) * 2 - 1
    B = torch.rand(2, cfg.data.output_nc, cfg.data.crop_size, cfg.data.crop_size) * 2 - 1
    f = model.forward_halves(A, B)
    model.encoder_generator_losses(f)["loss_EG"].backward(retain_graph=True)
    model.backward_latent(f)
    assert f["fake_B_random"].shape == (1, cfg.data.output_nc, cfg.data.crop_size, cfg.data.crop_size)


def test_plain_bicyclegan_command_gets_an_even_batch(tmp_path):
    cfg = compose_train(tmp_path, ["model=bicyclegan", "data=edges2shoes"])
    assert cfg.data.batch_size == 2
    assert compose_train(tmp_path, ["model=bicyclegan", "data=edges2shoes", "data.batch_size=4"]).data.batch_size == 4
    assert compose_train(tmp_path, ["model=pix2pix", "data=edges2shoes"]).data.batch_size == 1
