"""The CycleGAN family as the papers: update order, frozen nets per phase, the image pool, loss
weights; end to end: learning, exact resume (pool included), DDP, two-way prediction."""

from __future__ import annotations

import csv
import random
from functools import partial
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
import torch.nn.functional as F

from ganforge.cli.predict import TorchModel
from ganforge.cli.predict import outputs as predict_outputs
from ganforge.cli.train import train
from ganforge.gans.cyclegan import CycleGAN
from ganforge.gans.discogan import DiscoGAN
from ganforge.gans.dualgan import DualGAN
from ganforge.nets import NLayerDiscriminator, ResnetGenerator, UnetGenerator
from ganforge.nets.simple import (
    ConvDiscriminator,
    ConvResGenerator,
    EncoderDecoderGenerator,
)
from ganforge.utils.errors import ConfigError
from ganforge.utils.image_pool import ImagePool
from tests.conftest import (
    PREDICT,
    SHARED_DATA,
    compose_train,
    quiet_trainer,
    run_cli,
    train_checkpoint,
)

CAT2DOG = ["debug=tiny", "logger=csv", "data=cat2dog"]
ADAM = partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999))
SCHED = {"policy": "linear", "n_epochs": 1, "n_epochs_decay": 1}


def tiny_cyclegan(in_nc=3, out_nc=3, **kw) -> CycleGAN:
    return CycleGAN(
        netG_A=ResnetGenerator(in_nc, out_nc, ngf=4, n_blocks=1),
        netG_B=ResnetGenerator(out_nc, in_nc, ngf=4, n_blocks=1),
        netD_A=NLayerDiscriminator(out_nc, ndf=4, n_layers=2, norm="instance"),
        netD_B=NLayerDiscriminator(in_nc, ndf=4, n_layers=2, norm="instance"),
        optimizer_g=ADAM,
        optimizer_d=ADAM,
        scheduler=SCHED,
        **kw,
    )


def twin_nets_gan(cls, make_g, make_d, optimizer=ADAM, **kw):
    """A tiny `cls` whose two generators are alike (`make_g()`) and whose two critics are alike (`make_d()`)."""
    nets = {"netG_A": make_g(), "netG_B": make_g(), "netD_A": make_d(), "netD_B": make_d()}
    return cls(**nets, optimizer_g=optimizer, optimizer_d=optimizer, scheduler=SCHED, **kw)


def tiny_seed() -> CycleGAN:
    g, d = partial(ConvResGenerator, conv_dim=4, n_blocks=1), partial(ConvDiscriminator, ndf=4)
    return twin_nets_gan(CycleGAN, g, d, lambda_identity=0.0, pool_size=0, order="d_first")


def tiny_discogan(**kw) -> DiscoGAN:
    adam = partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999), weight_decay=1e-5)
    return twin_nets_gan(DiscoGAN, partial(EncoderDecoderGenerator, ngf=4, nz=8), partial(ConvDiscriminator, ndf=4), adam, **kw)


def tiny_dualgan(**kw) -> DualGAN:
    d = partial(NLayerDiscriminator, 3, ndf=4, n_layers=2, norm="instance")
    return twin_nets_gan(DualGAN, partial(UnetGenerator, num_downs=5, ngf=4), d, partial(torch.optim.RMSprop, lr=5e-5), **kw)


def images(n=2, size=64, nc=3, seed=0):
    return torch.rand(n, nc, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class Batches(L.LightningDataModule):
    def __init__(self, n_batches=1, batch_size=1, size=64):
        super().__init__()
        self.data = [{"A": a, "B": b} for a, b in zip(images(n_batches * batch_size, size), images(n_batches * batch_size, size, seed=1))]
        self.batch_size = batch_size

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.data, batch_size=self.batch_size)


def record_phases(model, n_batches=1, batch_size=1) -> list[tuple[str, bool, bool]]:
    """(phase, G weights unchanged, D weights unchanged) for every optimizer step of a short fit."""
    events = []
    snap = lambda nets: [p.detach().clone() for n in nets for p in n.parameters()]  # noqa: E731
    same = lambda a, b: all(torch.equal(x, y) for x, y in zip(a, b))  # noqa: E731
    gs, ds = [model.netG_A, model.netG_B], [model.netD_A, model.netD_B]
    cls, real_step = type(model), type(model).step

    def recording_step(self, opt, loss):
        g0, d0 = snap(gs), snap(ds)
        real_step(self, opt, loss)
        name = "D" if opt.optimizer is self.trainer.optimizers[1] else "G"
        events.append((name, same(g0, snap(gs)), same(d0, snap(ds))))

    cls.step = recording_step
    try:
        quiet_trainer(max_epochs=1, limit_train_batches=n_batches).fit(model, datamodule=Batches(n_batches, batch_size))
    finally:
        cls.step = real_step
    return events


# ----- update order: each phase moves only its own nets --------------------------------------------
@pytest.mark.slow
def test_cyclegan_g_step_then_d_step_each_touching_only_its_nets():
    # reference order: G step (Ds untouched), then one step for both Ds (Gs untouched)
    assert record_phases(tiny_cyclegan()) == [("G", False, True), ("D", True, False)]


@pytest.mark.slow
def test_seed_variant_steps_ds_first():
    assert record_phases(tiny_seed()) == [("D", True, False), ("G", False, True)]


@pytest.mark.slow
def test_dualgan_one_critic_step_per_batch_then_g_every_n_critic_th_batch():
    # model.py run_optim: a critic step every batch; G when the counter (2 on the first batch) % n_critic == 0
    D, G = ("D", True, False), ("G", False, True)
    assert record_phases(tiny_dualgan(), n_batches=2) == [D, G, D, G]
    assert record_phases(tiny_dualgan(n_critic=2), n_batches=3) == [D, G, D, D, G]


@pytest.mark.slow
def test_discogan_steps_ds_every_third_iteration():
    events = record_phases(tiny_discogan(), n_batches=4, batch_size=2)
    assert events == [("D", True, False), ("G", False, True), ("G", False, True), ("D", True, False)]


# ----- the image pool ----------------------------------------------------------------------------
def test_pool_stores_until_full_then_returns_stored_images_half_the_time():
    torch.manual_seed(0)
    pool = ImagePool(50)
    first = images(50, 4)
    assert torch.equal(pool.query(first), first) and len(pool) == 50  # not full yet: every fake as is
    stored = {tuple(t.flatten().tolist()) for t in first}
    n, from_pool = 2000, 0
    for i in range(n):
        new = images(1, 4, seed=1000 + i)
        out = pool.query(new)
        if not torch.equal(out, new):
            assert tuple(out.flatten().tolist()) in stored  # a stored image, not a made-up one
            from_pool += 1
        stored = {tuple(t.flatten().tolist()) for t in pool.images}
    assert 0.45 < from_pool / n < 0.55
    assert len(pool) == 50


def test_pool_of_size_zero_passes_fakes_through_and_state_round_trips():
    x = images(3, 4)
    assert ImagePool(0).query(x) is x
    pool = ImagePool(5)
    pool.query(x)
    other = ImagePool(5)
    other.load_state_dict(pool.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(pool.images, other.images))


def reference_pool_query(pool: list, pool_size: int, images: torch.Tensor) -> torch.Tensor:
    """pytorch-CycleGAN-and-pix2pix util/image_pool.py `query`, drawing from Python's global `random`."""
    out = []
    for image in images:
        image = image.unsqueeze(0)
        if len(pool) < pool_size:
            pool.append(image)
            out.append(image)
        elif random.uniform(0, 1) > 0.5:
            i = random.randint(0, pool_size - 1)
            out.append(pool[i].clone())
            pool[i] = image
        else:
            out.append(image)
    return torch.cat(out, 0)


def test_two_pools_on_one_generator_swap_as_the_reference_and_resume_exactly():
    """Seeded as the reference's random.seed(7), the two pools (queried B then A, as backward_D_A, backward_D_B)
    return what the reference's pools return; a state_dict mid-way continues the same draws."""
    rng = random.Random(7)
    pool_a, pool_b = ImagePool(3, rng), ImagePool(3, rng)
    random.seed(7)
    ref_a, ref_b = [], []
    steps = [(images(2, 4, seed=2 * k), images(2, 4, seed=2 * k + 1)) for k in range(12)]
    for k, (fake_a, fake_b) in enumerate(steps):
        if k == 6:  # a checkpoint and a resume on fresh pools
            state_a, state_b = pool_a.state_dict(), pool_b.state_dict()
            rng = random.Random(0)
            pool_a, pool_b = ImagePool(3, rng), ImagePool(3, rng)
            pool_a.load_state_dict(state_a)
            pool_b.load_state_dict(state_b)
        assert torch.equal(pool_b.query(fake_b), reference_pool_query(ref_b, 3, fake_b)), f"step {k}, pool B"
        assert torch.equal(pool_a.query(fake_a), reference_pool_query(ref_a, 3, fake_a)), f"step {k}, pool A"


@pytest.mark.slow
def test_discriminators_see_pooled_fakes():
    model = tiny_cyclegan()
    marker_A, marker_B = torch.full((1, 3, 64, 64), 0.25), torch.full((1, 3, 64, 64), -0.75)
    model.fake_A_pool.query = lambda fakes: marker_A  # noqa: E731
    model.fake_B_pool.query = lambda fakes: marker_B  # noqa: E731
    seen = {"A": [], "B": []}
    model.netD_A.register_forward_hook(lambda m, inp, out: seen["A"].append(inp[0]))
    model.netD_B.register_forward_hook(lambda m, inp, out: seen["B"].append(inp[0]))
    real_A, real_B = images(1), images(1, seed=1)
    out = model.cycle(real_A, real_B)
    model.discriminator_losses(real_A, real_B, out["fake_A"], out["fake_B"])
    assert any(torch.equal(x, marker_B) for x in seen["A"]) and any(torch.equal(x, marker_A) for x in seen["B"])
    assert not any(torch.equal(x, out["fake_B"]) for x in seen["A"])  # not the fresh fake


# ----- loss weights --------------------------------------------------------------------------------
@pytest.mark.slow
def test_cyclegan_losses_carry_the_recipe_weights():
    torch.manual_seed(0)
    model = tiny_cyclegan()  # defaults: lambda 10, identity 0.5
    A, B = images(2), images(2, seed=1)
    out = model.cycle(A, B)
    g = model.generator_losses(A, B, out)
    assert torch.allclose(g["loss_cycle_A"], 10 * F.l1_loss(out["rec_A"], A))
    assert torch.allclose(g["loss_cycle_B"], 10 * F.l1_loss(out["rec_B"], B))
    assert torch.allclose(g["loss_idt_A"], 5 * F.l1_loss(model.netG_A(B), B))
    assert torch.allclose(g["loss_idt_B"], 5 * F.l1_loss(model.netG_B(A), A))
    lsgan = lambda pred: F.mse_loss(pred, torch.ones_like(pred))  # noqa: E731
    assert torch.allclose(g["loss_G_A"], lsgan(model.netD_A(out["fake_B"])))
    parts = [v for k, v in g.items() if k != "loss_G"]
    assert torch.allclose(g["loss_G"], sum(parts))
    d = model.discriminator_losses(A, B, out["fake_A"], out["fake_B"])
    d["loss_D"].backward()
    assert all(p.grad is None for n in (model.netG_A, model.netG_B) for p in n.parameters()), "D's loss reached a G"


def test_identity_loss_off_when_lambda_is_zero():
    A, B = images(1), images(1, seed=1)
    model = tiny_cyclegan(lambda_identity=0.0)
    calls = []
    model.netG_A.register_forward_hook(lambda m, inp, out: calls.append(inp[0]))
    g = model.generator_losses(A, B, model.cycle(A, B))
    assert "loss_idt_A" not in g and "loss_idt_B" not in g
    assert not any(torch.equal(x, B) for x in calls)  # G_A never ran on real B


def test_identity_loss_with_unequal_channels_is_refused_at_setup():
    # The reference asserts input_nc == output_nc when lambda_identity > 0 (cycle_gan_model.py).
    with pytest.raises(
        ConfigError,
        match=r"model\.lambda_identity=0\.5 .*data\.input_nc=1 and data\.output_nc=3; "
        r"set model\.lambda_identity=0 or equal channel counts",
    ):
        tiny_cyclegan(in_nc=1, out_nc=3)
    gray = tiny_cyclegan(in_nc=1, out_nc=3, lambda_identity=0.0)
    A1, B = images(1, nc=1), images(1, seed=1)
    assert "loss_idt_A" not in gray.generator_losses(A1, B, gray.cycle(A1, B))


@pytest.mark.slow
def test_discogan_losses_and_curriculum():
    torch.manual_seed(0)
    model = tiny_discogan(gan_curriculum=10)
    A, B = images(2), images(2, seed=1)
    out = model.cycle(A, B)
    g = model.generator_losses(A, B, out)
    assert model.rate() == 0.01
    assert torch.allclose(g["loss_rec_A"], 0.01 * F.mse_loss(out["rec_A"], A))
    feats_fake, feats_real = model.netD_A.features(out["fake_B"]), model.netD_A.features(B)
    gan = F.binary_cross_entropy_with_logits(feats_fake[-1], torch.ones_like(feats_fake[-1]))
    fm = sum(((r.mean(0) - f.mean(0)) ** 2).mean() for r, f in zip(feats_real[:-1], feats_fake[:-1]))
    assert torch.allclose(g["loss_G_B"], (0.1 * gan + 0.9 * fm) * 0.99)
    model.iteration.fill_(10)
    assert model.rate() == 0.5
    g = model.generator_losses(A, B, out)
    assert torch.allclose(g["loss_rec_B"], 0.5 * F.mse_loss(out["rec_B"], B))


@pytest.mark.slow
def test_dualgan_losses_clip_and_gradient_penalty():
    torch.manual_seed(0)
    model = tiny_dualgan()
    A, B = images(1), images(1, seed=1)
    out = model.cycle(A, B)
    g = model.generator_losses(A, B, out)
    assert torch.allclose(g["loss_rec_A"], 500 * F.l1_loss(out["rec_A"], A))
    assert torch.allclose(g["loss_G_A"], -model.netD_A(out["fake_B"]).mean())
    d = model.critic_losses(A, B, out["fake_A"], out["fake_B"])
    assert d["loss_D_A_gp"] > 0 and "loss_D_B_gp" in d
    clipped = tiny_dualgan(regularizer="clip")
    record_phases(clipped)
    for net in (clipped.netD_A, clipped.netD_B):
        assert all(p.abs().max() <= 0.01 for p in net.parameters())
    assert "loss_D_A_gp" not in clipped.critic_losses(A, B, out["fake_A"], out["fake_B"])


def test_predict_protocol_both_directions_and_reconstruction():
    model = tiny_cyclegan(in_nc=1, out_nc=3, lambda_identity=0.0)
    model.run_config = {"data": {"input_nc": 1, "output_nc": 3}}
    predictor = object.__new__(TorchModel)  # the predict loop's view of the inference model, without a file
    predictor.model, predictor.kind, predictor.directions = model.inference_model(), "TwoDomainModel", ("AtoB", "BtoA")
    assert predictor.input_channels({"direction": "AtoB"}) == 1 and predictor.input_channels({"direction": "BtoA"}) == 3
    out = predict_outputs(predictor, images(1, nc=3), {"direction": "BtoA", "reconstruct": True})
    assert out[""].shape[1] == 1 and out["_rec"].shape[1] == 3
    assert set(predict_outputs(predictor, images(1, nc=1), {"direction": None})) == {""}


def test_metrics_protocol_is_unpaired_in_both_directions():
    from ganforge.metrics import check_metrics

    model = tiny_cyclegan()
    assert set(check_metrics("auto", model)) == {"fid", "kid", "is"}  # no LPIPS/PSNR/SSIM: nothing is paired
    batch = {"A": images(2), "B": images(2, seed=1)}
    out = model.metric_batch(batch)
    assert out["fake"].shape == out["real"].shape == (2, 3, 64, 64) and torch.equal(out["real"], batch["B"])
    back = model.metric_batch(batch, direction="BtoA")
    assert torch.equal(back["real"], batch["A"]) and not torch.equal(back["fake"], out["fake"])


# ----- end to end through the real configs --------------------------------------------------------
pytest_slow = pytest.mark.slow


def _csv_column(run_dir: Path, key: str) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return [float(r[key]) for r in csv.DictReader(f) if r.get(key)]


@pytest_slow
def test_tiny_run_on_cat2dog_lowers_the_cycle_loss(tmp_path):
    cfg = compose_train(
        tmp_path,
        [
            *CAT2DOG,
            "model=cyclegan",
            "data.load_size=32",
            "data.crop_size=32",
            "data.flip=false",
            "data.max_dataset_size=2",
            "data.serial_batches=true",
            "trainer.limit_train_batches=2",
            "model.scheduler.n_epochs=12",
            "model.scheduler.n_epochs_decay=0",
            "callbacks.image_grid.every_n_batches=0",
            "trainer.check_val_every_n_epoch=12",
            "model.netG_A.n_blocks=1",
        ],
    )
    metrics, _ = train(cfg)
    cyc = _csv_column(tmp_path, "train/loss_cycle_A")
    assert len(cyc) >= 20
    first, last = sum(cyc[:5]) / 5, sum(cyc[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    assert metrics["val/psnr"] == metrics["val/psnr"] and "val/cycle_l1" in metrics
    assert list((tmp_path / "checkpoints").glob("epoch_*.ckpt")), "the val/psnr monitor saved no best checkpoint"


@pytest_slow
@pytest.mark.parametrize("model", ["cyclegan_seed", "discogan", "dualgan"])
def test_every_variant_trains_through_its_config(tmp_path, model):
    metrics, objs = train(
        compose_train(tmp_path, [*CAT2DOG, f"model={model}", "trainer.limit_train_batches=3", "model.scheduler.n_epochs_decay=0"])
    )
    assert metrics["val/psnr"] == metrics["val/psnr"]
    assert list((tmp_path / "samples").glob("*.png"))


@pytest_slow
def test_resume_equals_uninterrupted_pool_included(tmp_path):
    common = [
        *CAT2DOG,
        "model=cyclegan",
        "data.load_size=32",
        "data.crop_size=32",
        "model.pool_size=3",
        "model.scheduler.n_epochs=1",
        "model.scheduler.n_epochs_decay=2",
        "trainer.limit_train_batches=2",
        "model.netG_A.n_blocks=1",
        "callbacks.image_grid.every_n_batches=1",
    ]
    _, objs = train(compose_train(tmp_path / "full", [*common, "trainer.max_epochs=3"]))
    straight = {k: v.clone() for k, v in objs["model"].state_dict().items()}
    pool_straight = [t.clone() for t in objs["model"].fake_B_pool.images]

    train(compose_train(tmp_path / "first", [*common, "trainer.max_epochs=1"]))
    ckpt = tmp_path / "first" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["ganforge"]["extras"]["image_pools"]
    assert len(saved["fake_B"]["images"]) == 2  # the pool's contents went into the checkpoint
    _, objs = train(compose_train(tmp_path / "second", [*common, "trainer.max_epochs=3", f"ckpt_path={ckpt}"]))
    resumed = objs["model"].state_dict()
    for k, v in straight.items():
        assert torch.equal(v, resumed[k]), f"{k} differs after resume"
    assert all(torch.equal(a, b) for a, b in zip(pool_straight, objs["model"].fake_B_pool.images))


@pytest.fixture(scope="module")
def cyclegan_checkpoint(tmp_path_factory) -> Path:
    return train_checkpoint(
        tmp_path_factory, "cyclegan_run", [*CAT2DOG, "model=cyclegan", "data.load_size=32", "data.crop_size=32", "trainer=ddp_cpu"]
    )


@pytest_slow
def test_ddp_cpu_two_processes_train(cyclegan_checkpoint):
    ckpt = torch.load(cyclegan_checkpoint, map_location="cpu", weights_only=True)
    # 4 batches per epoch, 2 epochs, 2 optimizer steps a batch (G, then both Ds)
    assert ckpt["global_step"] == 4 * 2 * 2
    assert "fake_B" in ckpt["ganforge"]["extras"]["image_pools"]


@pytest_slow
def test_predict_both_directions_with_reconstruction(cyclegan_checkpoint, tmp_path):
    inputs = SHARED_DATA / "cifar10_cat2dog" / "testB"
    proc = run_cli(
        [
            f"ckpt_path={cyclegan_checkpoint}",
            f"input={inputs / 'dog_0000.jpg'}",
            f"output={tmp_path}",
            "direction=BtoA",
            "reconstruct=true",
        ],
        script=PREDICT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["dog_0000.png", "dog_0000_rec.png"]
    bad = run_cli(
        [f"ckpt_path={cyclegan_checkpoint}", f"input={inputs / 'dog_0000.jpg'}", f"output={tmp_path / 'x'}", "direction=sideways"],
        script=PREDICT,
    )
    assert bad.returncode == 2 and "direction must be AtoB or BtoA" in bad.stderr


@pytest_slow
def test_fid_of_the_a_to_b_direction_through_the_metrics_callback(tmp_path, monkeypatch):
    from tests.conftest import write_fake_weights

    monkeypatch.setenv("TORCH_HOME", str(write_fake_weights(tmp_path / "torch_home")))
    metrics, _ = train(
        compose_train(
            tmp_path / "run",
            [
                *CAT2DOG,
                "model=cyclegan",
                "data.load_size=32",
                "data.crop_size=32",
                "model.scheduler.n_epochs_decay=0",
                "trainer.limit_train_batches=1",
                "data.num_val_images=4",
                "+callbacks/metrics=fid",
                "callbacks.metrics.num_samples=4",
                "callbacks.metrics.batch_size=4",
            ],
        )
    )
    assert metrics["val/fid"] == metrics["val/fid"] and metrics["val/fid"] >= 0


def test_discogan_gets_its_recipe_data_settings(tmp_path):
    from tests.conftest import compose_train

    cfg = compose_train(tmp_path, ["model=discogan", "data=cat2dog"])
    assert (cfg.data.batch_size, cfg.data.load_size, cfg.data.crop_size) == (64, 64, 64)
    assert compose_train(tmp_path, ["model=cyclegan", "data=cat2dog"]).data.batch_size == 1
