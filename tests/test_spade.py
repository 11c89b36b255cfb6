"""SPADE: the modulation, the objective's signs and weights, TTUR, the update order, the semantic input,
VGG19 loading, and runs of the real config on the COCO-Stuff sample (train, grids, exact resume, predict)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from ganforge.cli.train import train
from ganforge.gans.losses import GANLoss, VGGLoss, feature_matching_loss, kl_divergence
from ganforge.gans.spade import SPADEModel
from ganforge.metrics.weights import WEIGHTS, PretrainedWeightsError
from ganforge.nets import SPADEDiscriminator, SPADEEncoder, SPADEGenerator
from ganforge.nets.spade import label_edges
from ganforge.utils.errors import ConfigError
from tests.conftest import PREDICT, SHARED_DATA, SPADE_COCO, SPADE_TINY, compose_train, quiet_trainer, run_cli

COCO = SHARED_DATA / "coco_stuff_sample"
NC = 5  # label ids 0..4, + don't-care + instance edges


def tiny_model(use_vae=False, **kw) -> SPADEModel:
    torch.manual_seed(0)
    sem = NC + 2
    g = SPADEGenerator(sem, ngf=4, crop_size=32, nhidden=8, use_vae=use_vae, z_dim=8)
    d = SPADEDiscriminator(sem + 3, ndf=4, n_layers=2, num_D=2)
    e = SPADEEncoder(ndf=4, z_dim=8, load_size=32) if use_vae else None
    adam = functools.partial(torch.optim.Adam)
    args = dict(label_nc=NC, contain_dontcare_label=True, use_instance=True, use_vae=use_vae, lambda_vgg=0.0)
    args.update(kw)
    return SPADEModel(netG=g, netD=d, optimizer_g=adam, optimizer_d=adam, netE=e, **args)


def batch(n=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    label = torch.randint(0, NC + 1, (n, 1, 32, 32), generator=gen)
    return {"label": label, "instance": label * 2, "image": torch.rand(n, 3, 32, 32, generator=gen) * 2 - 1}


def test_the_modulation_uses_the_label_map_in_every_block():
    torch.manual_seed(0)
    g = SPADEGenerator(NC, ngf=4, crop_size=32, nhidden=8, use_vae=True, z_dim=8).eval()
    outs: dict[str, list] = {}
    for name in ["head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3"]:
        getattr(g, name).register_forward_hook(lambda m, i, o, name=name: outs.setdefault(name, []).append(o))
    z = torch.randn(1, 8)
    seg = torch.zeros(1, NC, 32, 32)
    seg[:, 0] = 1
    other = seg.clone()
    other[:, :, :16] = 0
    other[:, 1, :16] = 1  # the top half relabelled
    with torch.no_grad():
        g(seg, z), g(other, z)
    assert len(outs) == 7
    for name, (a, b) in outs.items():
        assert not torch.allclose(a, b), f"{name}'s output does not depend on the label map"


@pytest.mark.slow
def test_generator_shapes_for_every_upsampling_mode_and_aspect_ratio():
    for mode, crop, aspect in (("normal", 64, 2.0), ("more", 64, 1.0), ("most", 128, 1.0)):
        g = SPADEGenerator(NC, ngf=4, crop_size=crop, aspect_ratio=aspect, num_upsampling_layers=mode, nhidden=4)
        h = round(crop / aspect)
        assert (g.sh, g.sw) == (h // g.size_multiple, crop // g.size_multiple)
        assert g(torch.rand(2, NC, h, crop)).shape == (2, 3, h, crop)


@pytest.mark.slow
def test_discriminator_returns_every_layer_of_every_scale_and_caps_at_512():
    d = SPADEDiscriminator(NC, ndf=64, n_layers=5, num_D=2)
    assert [m.out_channels for m in d.scales[0].modules() if isinstance(m, nn.Conv2d)] == [64, 128, 256, 512, 512, 1]
    out = SPADEDiscriminator(NC, ndf=4, n_layers=4, num_D=2)(torch.zeros(1, NC, 32, 32))
    assert len(out) == 2 and all(len(s) == 5 for s in out)
    assert out[1][0].shape[-1] == 9  # the second scale sees 16 px (avg-pooled): k4 pad 2 stride 2 -> 9


def test_encoder_resizes_to_its_load_size_and_gives_mu_and_logvar():
    e = SPADEEncoder(ndf=4, z_dim=16, load_size=256)
    assert sum(isinstance(m, nn.Conv2d) for m in e.modules()) == 6
    mu, logvar = e(torch.zeros(2, 3, 40, 40))
    assert mu.shape == logvar.shape == (2, 16)


def test_hinge_signs_match_spade():
    crit = GANLoss("hinge")
    x = [[torch.full((1, 1, 2, 2), 0.5)], [torch.full((1, 1, 1, 1), -2.0)]]
    # D real: relu(1 - x); D fake: relu(1 + x); G: -x; each averaged over the scales
    assert crit(x, True).item() == pytest.approx((0.5 + 3.0) / 2)
    assert crit(x, False).item() == pytest.approx((1.5 + 0.0) / 2)
    assert crit(x, True, for_discriminator=False).item() == pytest.approx((-0.5 + 2.0) / 2)


def test_feature_matching_divides_by_num_d_and_skips_the_score_map():
    fake = [[torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1)] for _ in range(2)]
    real = [[torch.ones(1, 2), torch.full((1, 2), 2.0), torch.full((1,), 100.0)] for _ in range(2)]
    assert feature_matching_loss(fake, real, statistic="pixel_l1").item() == pytest.approx((1 + 2) * 2 / 2)


@pytest.mark.slow
def test_generator_loss_weights_feature_matching_and_kld():
    m = tiny_model(use_vae=True, lambda_feat=10.0, lambda_kld=0.05)
    m.netD.eval(), m.netE.eval()  # spectral norm does no power iteration in eval: both passes see the same nets
    b = batch()
    sem = m.batch_semantics(b)
    g_state = copy.deepcopy(m.netG.state_dict())  # G trains (batch statistics); its power iteration is undone
    torch.manual_seed(1)
    losses = m.generator_losses(sem, b["image"])
    m.netG.load_state_dict(g_state)
    torch.manual_seed(1)
    fake, _ = m.generate(sem, b["image"])
    pred_fake, pred_real = m.discriminate(sem, fake, b["image"])
    assert losses["loss_G_feat"].item() == pytest.approx(10 * feature_matching_loss(pred_fake, pred_real).item(), rel=1e-5)
    mu, logvar = m.netE(b["image"])
    assert losses["loss_G_KLD"].item() == pytest.approx(0.05 * kl_divergence(mu, logvar).item(), rel=1e-5)
    total = losses["loss_G_GAN"] + losses["loss_G_feat"] + losses["loss_G_KLD"]
    assert losses["loss_G"].item() == pytest.approx(total.item(), rel=1e-6)


def test_vgg_layer_weights_and_slices():
    feats = nn.Sequential(*[nn.Identity() for _ in range(37)])
    loss = VGGLoss(feats)
    assert [len(s) for s in loss.slices] == [2, 5, 5, 9, 9]  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
    x, y = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    assert loss(x, y).item() == pytest.approx(1 / 32 + 1 / 16 + 1 / 8 + 1 / 4 + 1)
    vgg = torchvision.models.vgg19(weights=None).features
    ends = [vgg[i - 1] for i in (2, 7, 12, 21, 30)]
    assert all(isinstance(m, nn.ReLU) for m in ends) and isinstance(vgg[27], nn.MaxPool2d)


@pytest.fixture(scope="module")
def fake_vgg_home(tmp_path_factory):
    """A TORCH_HOME with a randomly initialised torchvision VGG19 under the name torchvision downloads."""
    home = tmp_path_factory.mktemp("vgg_home")
    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg19(weights=None).state_dict(), ckpt / WEIGHTS["vgg19"].file)
    return home


@pytest.mark.slow
def test_vgg_weights_load_offline_and_missing_weights_fail_before_training(tmp_path, monkeypatch, fake_vgg_home):
    m = tiny_model(lambda_vgg=10.0)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setattr(
        "ganforge.metrics.weights.torch.hub.download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline"))
    )
    with pytest.raises(PretrainedWeightsError, match="vgg19-dcbb9e9d.pth.*SPADE"):
        m.setup("fit")
    monkeypatch.setenv("TORCH_HOME", str(fake_vgg_home))
    m.setup("fit")
    b = batch()
    losses = m.generator_losses(m.batch_semantics(b), b["image"])
    assert losses["loss_G_VGG"] > 0
    assert not any(k.startswith("_vgg") or "slices" in k for k in m.state_dict())  # not in checkpoints


def test_ttur_and_no_ttur_learning_rates_and_betas():
    opts, _ = tiny_model().configure_optimizers()
    assert [(o.param_groups[0]["lr"], o.param_groups[0]["betas"]) for o in opts] == [(1e-4, (0.0, 0.9)), (4e-4, (0.0, 0.9))]
    opts, _ = tiny_model(no_ttur=True).configure_optimizers()
    assert [(o.param_groups[0]["lr"], o.param_groups[0]["betas"]) for o in opts] == [(2e-4, (0.5, 0.999))] * 2
    opts, _ = tiny_model(use_vae=True).configure_optimizers()
    vae = tiny_model(use_vae=True)
    n_ge = len(list(vae.netG.parameters())) + len(list(vae.netE.parameters()))
    assert len(opts[0].param_groups[0]["params"]) == n_ge  # E trains with G


def reference_learning_rates(lr: float, niter: int, niter_decay: int, no_ttur: bool) -> list[tuple[float, float]]:
    """(G, D) rates of each 1-based epoch, as NVlabs/SPADE train.py gets them: trainers/pix2pix_trainer.py
    update_learning_rate(epoch) after every epoch, its arithmetic copied."""
    old_lr, rates = lr, []
    for epoch in range(1, niter + niter_decay + 1):
        rates.append((old_lr, old_lr) if no_ttur else (old_lr / 2, old_lr * 2))
        new_lr = old_lr - lr / niter_decay if epoch > niter else old_lr
        if new_lr != old_lr:
            old_lr = new_lr
    return rates


@pytest.mark.parametrize("no_ttur", [False, True])
def test_the_learning_rate_of_every_epoch_is_the_references_to_the_bit(no_ttur):
    m = tiny_model(no_ttur=no_ttur, lr=0.0002, scheduler={"policy": "linear", "n_epochs": 3, "n_epochs_decay": 7})
    opts, scheds = m.configure_optimizers()
    rates = []
    for _ in range(10):
        rates.append(tuple(o.param_groups[0]["lr"] for o in opts))
        for s in scheds:
            s["scheduler"].step()
    assert rates == reference_learning_rates(0.0002, 3, 7, no_ttur)


def test_spectral_norm_steps_as_torch_nn_utils_spectral_norm():
    """SPADE's spectral norm (the reference's hook API) from the same weights and vectors: the same outputs,
    gradients and u, v after every training forward, bit for bit; in eval mode no step. Under torch's state-dict
    names, and torch.compile runs it."""
    from torch.nn.utils import parametrize

    from ganforge.nets.norms import spectral_norm

    torch.manual_seed(0)
    hook, ours = nn.Conv2d(6, 10, 3), nn.Conv2d(6, 10, 3)
    ours.load_state_dict(hook.state_dict())
    torch.manual_seed(1)
    torch.nn.utils.spectral_norm(hook)
    torch.manual_seed(1)
    spectral_norm(ours, "reference")
    assert sorted(ours.state_dict()) == [
        "bias",
        "parametrizations.weight.0._u",
        "parametrizations.weight.0._v",
        "parametrizations.weight.original",
    ]
    sn = ours.parametrizations.weight[0]
    assert torch.equal(hook.weight_u, sn._u) and torch.equal(hook.weight_v, sn._v)  # drawn alike, no warm-up
    compiled = torch.compile(ours, backend="aot_eager")
    x = torch.randn(2, 6, 8, 8)
    for net in (ours, compiled):
        for _ in range(3):
            hook.zero_grad(), ours.zero_grad()
            a, b = hook(x), net(x)
            a.square().mean().backward(), b.square().mean().backward()
            assert torch.equal(a, b) and torch.equal(hook.weight_orig.grad, ours.parametrizations.weight.original.grad)
            assert torch.equal(hook.weight_u, sn._u) and torch.equal(hook.weight_v, sn._v)
    hook.eval(), ours.eval()
    u = sn._u.clone()
    assert torch.equal(hook(x), ours(x)) and torch.equal(sn._u, u)
    parametrize.remove_parametrizations(ours, "weight", leave_parametrized=True)  # what export does
    assert torch.equal(hook(x), ours(x))


@pytest.mark.parametrize("channels, size, stride", [(64, 4, 1), (4, 16, 1), (64, 8, 2)], ids=["weight_larger", "output_larger", "strided"])
def test_sigma_on_the_output_is_the_same_spectral_norm(channels, size, stride):
    """SpectralConv2d.sigma_on_output divides the conv's output by sigma where the weight is larger (SPADE's
    1024-channel convs at 4-16 px), else the weight: the same outputs and gradients to float64 rounding, and
    the same power iteration (u, v bit for bit); off, it is the plain parametrized conv."""
    from ganforge.nets.norms import SpectralConv2d, spectral_norm, use_sigma_on_output

    torch.manual_seed(0)
    plain = spectral_norm(SpectralConv2d(channels, channels, 3, stride=stride, padding=1), "reference").double()
    fast = copy.deepcopy(plain)
    use_sigma_on_output(fast, True)
    assert fast.sigma_on_output and not plain.sigma_on_output
    x = torch.randn(2, channels, size, size, dtype=torch.float64)
    for _ in range(3):
        a, b = plain(x), fast(x)
        plain.zero_grad(), fast.zero_grad()
        (a.square().sum() + a.sum()).backward(), (b.square().sum() + b.sum()).backward()
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
        for p, q in zip(plain.parameters(), fast.parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-12, atol=1e-12)
        for p, q in zip(plain.buffers(), fast.buffers()):
            assert torch.equal(p, q)


def test_spade_model_divides_outputs_by_sigma_in_training_unless_precise():
    from ganforge.nets.norms import SpectralConv2d

    for precise in (False, True):
        model = tiny_model()
        model.precise = precise
        model.on_train_start()
        convs = [m for net in (model.netG, model.netD) for m in net.modules() if isinstance(m, SpectralConv2d)]
        assert len(convs) == 7 * 2 + 4 + 2 * 1  # G: conv_0, conv_1 a block (+ conv_s in the 4 up blocks); D: 1 a scale
        assert all(m.sigma_on_output is not precise for m in convs)


def test_the_generator_resizes_the_label_map_once_a_size_exactly_as_each_spade_would():
    """SPADEGenerator hands each block the label map resized to its size (once a size; the full-size map
    itself at full size); the reference resizes it in every SPADE. The output is the same, bit for bit."""
    torch.manual_seed(0)
    g = SPADEGenerator(NC + 2, ngf=4, crop_size=128, nhidden=8, num_upsampling_layers="most")
    seg = torch.zeros(2, NC + 2, 128, 128).scatter_(1, torch.randint(0, NC + 2, (2, 1, 128, 128)), 1.0)
    g.eval()
    ours = g(seg)
    hooks = [b.register_forward_pre_hook(lambda m, args: (args[0], seg)) for b in g.blocks()]  # every SPADE resizes
    try:
        assert torch.equal(g(seg), ours)
    finally:
        for h in hooks:
            h.remove()


def test_ade20k_trains_on_raw_ids_and_scores_miou_on_classes_1_to_150(tmp_path):
    """data=ade20k: 151 channels for the stored ids 0 ('other') .. 150, as the reference's checkpoints; mIoU
    leaves 'other' out and scores id k as class k - 1. data=ade20k_shifted: 150 classes + don't-care."""
    raw = compose_train(tmp_path / "raw", ["model=spade", "data=ade20k", "debug=tiny"])
    assert (raw.data.label_nc, raw.data.contain_dontcare_label, raw.data.label_shift) == (151, False, 0)
    assert raw.model.metric_label_shift == 1 and raw.model.netG.semantic_nc == 151
    shifted = compose_train(tmp_path / "shifted", ["model=spade", "data=ade20k_shifted", "debug=tiny"])
    assert (shifted.data.label_nc, shifted.data.contain_dontcare_label, shifted.data.label_shift) == (150, True, 1)
    assert shifted.model.metric_label_shift == 0 and shifted.model.netG.semantic_nc == 151
    m = tiny_model(metric_label_shift=1)
    label = torch.tensor([0, 1, NC - 1, NC]).view(1, 1, 1, 4).expand(2, 1, 32, 4).repeat(1, 1, 1, 8)
    out = m.metric_batch({"label": label, "instance": label, "image": torch.zeros(2, 3, 32, 32)})
    assert m.metric_label_classes == NC - 1
    # 'other' (0) and don't-care (NC) -> the left-out id NC - 1; the rest one down
    assert out["label"][0, 0, 0, :4].tolist() == [NC - 1, 0, NC - 2, NC - 1]


def test_semantic_input_has_dontcare_and_instance_edge_channels():
    m = tiny_model()
    b = batch()
    sem = m.batch_semantics(b)
    assert sem.shape == (2, NC + 2, 32, 32)
    assert torch.equal(sem[:, : NC + 1].argmax(1, keepdim=True), b["label"])
    assert torch.equal(sem[:, NC : NC + 1], (b["label"] == NC).float())  # don't-care is channel label_nc
    assert torch.equal(sem[:, NC + 1 :], label_edges(b["instance"]))
    with pytest.raises(ConfigError, match="data.label_nc=9"):
        m.semantics(torch.full((1, 1, 4, 4), 8), torch.zeros(1, 1, 4, 4))
    no_inst = tiny_model(use_instance=False, contain_dontcare_label=False)
    assert no_inst.semantics(b["label"].clamp(max=NC - 1)).shape[1] == NC


@pytest.mark.slow
def test_g_step_leaves_d_unchanged_then_d_steps_on_a_fake_without_grad(tmp_path):
    from torch.utils.data import DataLoader

    m = tiny_model()
    d_before = copy.deepcopy(m.netD.state_dict())
    g_before = copy.deepcopy(m.netG.state_dict())
    seen = {}
    original = m.discriminator_losses

    def spy(sem, real):
        seen["d_params_unchanged"] = all(
            torch.equal(p, d_before[k]) for k, p in m.netD.state_dict().items() if "original" in k or "bias" in k
        )
        seen["g_stepped"] = any(not torch.equal(p, g_before[k]) for k, p in m.netG.state_dict().items())
        out = original(sem, real)
        seen["fake_grad_fn"] = out["loss_D"].grad_fn is not None and not any(
            p.grad is not None for p in m.netG.parameters() if p.requires_grad
        )
        return out

    m.discriminator_losses = spy
    items = [{k: v[0] for k, v in batch(1, s).items()} for s in range(4)]
    trainer = quiet_trainer(max_steps=2, default_root_dir=tmp_path, limit_val_batches=0)
    trainer.fit(m, DataLoader(items, batch_size=2))
    assert seen == {"d_params_unchanged": True, "g_stepped": True, "fake_grad_fn": True}
    assert any(not torch.equal(p, d_before[k]) for k, p in m.netD.state_dict().items() if "original" in k)


# ----- the real config on the COCO-Stuff sample -----------------------------------------------------
SAMPLE = [
    *SPADE_TINY,
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "callbacks.rich_progress_bar=null",
    "callbacks.image_grid.every_n_batches=1",
]


def _g_weights(model):
    return {k: v.clone() for k, v in model.netG.state_dict().items()}


@pytest.mark.slow
def test_trains_writes_grids_resumes_exactly_and_predicts(tmp_path):
    full = compose_train(tmp_path / "full", SAMPLE)
    _, objs = train(full)
    grids = sorted((tmp_path / "full" / "samples").glob("*.png"))
    assert grids, "no sample grid"
    from PIL import Image

    w, h = Image.open(grids[0]).size
    assert w >= 3 * 32  # label | output | photo
    final = _g_weights(objs["model"])

    first = compose_train(tmp_path / "first", [*SAMPLE, "trainer.max_epochs=1"])
    train(first)
    resumed = compose_train(tmp_path / "resumed", [*SAMPLE, f"ckpt_path={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}"])
    _, objs2 = train(resumed)
    again = _g_weights(objs2["model"])
    assert all(torch.equal(final[k], again[k]) for k in final), "resume is not exact"

    out = tmp_path / "pred"
    labels = COCO / "val_label"
    proc = run_cli([f"ckpt_path={tmp_path / 'full' / 'checkpoints' / 'last.ckpt'}", f"input={labels}", f"output={out}"], script=PREDICT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = sorted(out.glob("*.png"))
    assert len(written) == 8
    src = Image.open(labels / (written[0].stem + ".png"))
    assert Image.open(written[0]).size == src.size and Image.open(written[0]).mode == "RGB"


@pytest.mark.slow
def test_vae_trains_and_predict_encodes_a_style_or_draws_n_styles(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from PIL import Image

    from ganforge.cli.app import CONF_DIR
    from ganforge.cli.predict import predict

    cfg = compose_train(
        tmp_path / "run", [*SAMPLE, "model.use_vae=true", "model.netE.load_size=32", "trainer.max_epochs=1", "callbacks.image_grid=null"]
    )
    _, objs = train(cfg)
    assert objs["model"].netE is not None and objs["model"].generator_names == ("netG", "netE")
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    label = COCO / "val_label" / "000000000139.png"

    def run(*extra):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            pcfg = compose("predict", overrides=[f"ckpt_path={ckpt}", f"input={label}", f"output={tmp_path / 'p'}", *extra])
        return predict(pcfg)

    styled = run(f"style={COCO / 'val_img' / '000000000785.jpg'}")
    assert styled["written"] == [str(tmp_path / "p" / "000000000139.png")] and not styled["failed"]
    a = np.asarray(Image.open(styled["written"][0]))
    styled2 = run(f"style={COCO / 'val_img' / '000000001268.jpg'}")
    assert not np.array_equal(a, np.asarray(Image.open(styled2["written"][0])))  # the style changes the photo
    drawn = run("n_samples=2")
    assert [Path(p).name for p in drawn["written"]] == ["000000000139_0.png", "000000000139_1.png"]
    assert Image.open(drawn["written"][0]).size == Image.open(label).size


def test_spade_on_data_without_label_maps_names_the_data_configs_that_have_them(tmp_path):
    cfg = compose_train(tmp_path, ["model=spade", "debug=tiny"])  # the default data=sample: paired photos
    with pytest.raises(
        ConfigError, match=r"model=spade reads data.label_nc, which data=sample does not set; .*data=coco_stuff.*data=labelmaps"
    ):
        train(cfg)


@pytest.mark.slow
def test_eval_scores_miou_with_a_user_supplied_segmenter(tmp_path):
    import json

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ganforge.cli.app import CONF_DIR
    from ganforge.cli.evaluate import evaluate

    train(compose_train(tmp_path / "run", [*SAMPLE, "trainer.max_epochs=1", "callbacks.image_grid=null"]))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "eval",
            overrides=[
                f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}",
                f"output={tmp_path / 'eval'}",
                "metrics=[miou]",
                "split=val",
                "save_images=false",
                "segmenter={_target_: tests.segmenters.BrightnessSegmenter, num_classes: 182}",
            ],
        )
    evaluate(cfg)
    miou = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]["miou"]
    assert 0 <= miou["value"] <= 1 and miou["classes"] == 182 and miou["samples"] == 2  # debug=tiny keeps 2 val maps
    assert miou["segmenter"] == "tests.segmenters.BrightnessSegmenter"


@pytest.mark.slow
def test_a_short_run_lowers_the_patch_swd_of_val_outputs_against_val_photos(tmp_path):
    """ngf 8 at 32 px, 25 epochs of the 13 training pairs: the patch SWD between G's outputs for the 8
    held-out val label maps and their photos must fall well below the untrained G's (docs/spade.md)."""
    import csv

    from ganforge.metrics.swd import patch_swd
    from tests.conftest import train_from_untrained

    cfg = compose_train(
        tmp_path,
        [
            *SPADE_COCO,
            "model.scheduler.n_epochs=25",
            "model.scheduler.n_epochs_decay=0",
            "trainer.limit_train_batches=1.0",
            "trainer.limit_val_batches=1.0",
            "data.num_val_images=8",
            "seed=42",
            "callbacks.image_grid.every_n_batches=0",
            "callbacks.rich_progress_bar=null",
        ],
    )
    untrained, objects = train_from_untrained(cfg)
    val = list(objects["datamodule"].val_dataloader())

    def swd(model) -> float:
        fake = torch.cat([model.synthesize(b, style=b["image"]) for b in val])
        return patch_swd(fake, torch.cat([b["image"] for b in val]))

    before, after = swd(untrained), swd(objects["model"])
    rows = [r for r in csv.DictReader(open(next(tmp_path.glob("csv/**/metrics.csv")))) if r.get("val/swd")]
    print(
        f"patch SWD x100 on the val maps: untrained {before:.2f} -> trained {after:.2f}; val/swd by epoch "
        f"{[round(float(r['val/swd']), 1) for r in rows]}"
    )
    assert after < 0.85 * before
    assert len(rows) == 25
