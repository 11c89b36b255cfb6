"""model=dcgan_seed against the seed's Keras GAN (Deep Learning with Python §8.5) run in Keras 3
(tests/fixtures/golden/keras_dcgan.safetensors, made by tests/golden/make_keras_dcgan.py, which says what it
had to change for Keras 3 to run the book's Keras 2 code): from Keras' initial weights, on the same frogs, with
the same latents, label noise and dropout masks (drawn by numpy there, replayed here), three iterations of
ganforge's KerasDCGAN give both losses, every weight and the RMSprop accumulators that Keras gave.

Tolerance, float64: Keras' D ends in a sigmoid whose output its binary_crossentropy clips and turns back into a
logit; ganforge's D gives the logit to BCE with logits (the same loss). They differ in the last bits, and the
layouts differ (NHWC there, NCHW here: the convs sum in another order). All is held to 1e-10; a change of the
update (epsilon 1e-7 instead of Keras 2.0.8's 1e-8, another label, D's dropout off in the G step) moves it by
far more.
"""

from __future__ import annotations

import functools
import json

import pytest
import torch
from torch import nn

from ganforge.gans.dcgan_seed import KerasDCGAN, KerasRMSprop
from ganforge.nets.dcgan import ConvDropoutDiscriminator, DenseConvGenerator
from tests.golden import compare, load_fixture, recording, section, train_iterations

pytestmark = pytest.mark.reference

#: Keras layer index -> ganforge module, in each model (`make_keras_dcgan.build`'s layer order)
G_LAYERS = {"1": "dense.0", "4": "convs.0", "6": "convs.2", "8": "convs.4", "10": "convs.6", "12": "convs.8"}
D_LAYERS = {"1": "features.0", "3": "features.2", "5": "features.4", "7": "features.6", "11": "score"}


def from_keras(
    keras: dict[str, torch.Tensor], layers: dict[str, str], dense_hwc: dict[str, tuple[int, int, int]]
) -> dict[str, torch.Tensor]:
    """Keras variables (or accumulators, laid out alike) as ganforge's state dict. Conv kernels (kh, kw, in, out)
    and Conv2DTranspose kernels (kh, kw, out, in) both become torch's layout by permute(3, 2, 0, 1). A Dense that
    meets an NHWC map (G's, reshaped to (h, w, c); D's, after Flatten) has its map side reordered to CHW."""
    out = {}
    for key, value in keras.items():
        index, kind = key.split("/")
        name = f"{layers[index]}.{'weight' if kind == 'kernel' else 'bias'}"
        if value.dim() == 4:
            value = value.permute(3, 2, 0, 1)
        elif index in dense_hwc:
            h, w, c = dense_hwc[index]
            if layers[index].startswith("dense"):  # G: the map is the output
                value = (
                    value.T.reshape(h, w, c, -1).permute(2, 0, 1, 3).reshape(h * w * c, -1)
                    if kind == "kernel"
                    else value.reshape(h, w, c).permute(2, 0, 1).reshape(-1)
                )
            elif kind == "kernel":  # D: the map is the input
                value = value.reshape(h, w, c, -1).permute(3, 2, 0, 1).reshape(value.shape[1], -1)
        elif kind == "kernel":
            value = value.T
        out[name] = value.contiguous()
    return out


def hwc_mask(mask: torch.Tensor, side: int, channels: int) -> torch.Tensor:
    """A dropout mask over Keras' Flatten of (side, side, channels) as a mask over torch's (channels, side, side)."""
    return mask.reshape(-1, side, side, channels).permute(0, 3, 1, 2).reshape(mask.shape[0], -1)


class ReplayedDropout(nn.Module):
    """Dropout with the fixture's masks, in order; scaled as Keras does (x / (1 - rate)). Counts its calls in
    training mode, so the test sees D's dropout on in both the D step and the GAN step."""

    def __init__(self, rate: float, masks: list[torch.Tensor]):
        super().__init__()
        self.rate, self.masks, self.calls = rate, masks, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        mask = self.masks[self.calls]
        self.calls += 1
        assert mask.shape == x.shape, (mask.shape, x.shape)
        return torch.where(mask.bool(), x / (1.0 - self.rate), torch.zeros((), dtype=x.dtype))


def test_three_iterations_match_the_keras_model(tmp_path, monkeypatch):
    tensors, meta = load_fixture("keras_dcgan")
    a, opts = json.loads(meta["args"]), json.loads(meta["optimizers"])
    half, side = a["size"] // 2, 2  # D: 32 -> 30 -> 14 -> 6 -> 2
    g = DenseConvGenerator(nz=a["latent_dim"], width=a["width"], ngf=a["ngf"], nc=a["channels"], image_size=a["size"])
    d = ConvDropoutDiscriminator(ndf=a["ndf"], nc=a["channels"], image_size=a["size"], dropout=a["dropout"])
    g_map, d_map = {"1": (half, half, a["width"])}, {"11": (side, side, a["ndf"])}
    g.double().load_state_dict(from_keras(section(tensors, "init/G"), G_LAYERS, g_map))
    d.double().load_state_dict(from_keras(section(tensors, "init/D"), D_LAYERS, d_map))
    iterations = a["iterations"]
    masks = []
    for i in range(iterations):
        masks += [hwc_mask(tensors[f"step{i}/mask_d"], side, a["ndf"]), hwc_mask(tensors[f"step{i}/mask_g"], side, a["ndf"])]
    assert isinstance(d.features[-1], nn.Dropout)
    d.features[-1] = ReplayedDropout(a["dropout"], masks)

    rms_d = functools.partial(KerasRMSprop, **opts["D"])
    rms_g = functools.partial(KerasRMSprop, **opts["GAN"])
    model = KerasDCGAN(netG=g, netD=d, optimizer_g=rms_g, optimizer_d=rms_d, label_noise=0.05, seed_data_range=True)
    # the notebook's np.random draws, in its order: the latents of generator.predict, then the GAN step's
    latents = [tensors[f"step{i}/{k}"] for i in range(iterations) for k in ("z_d", "z_g")]
    model.noise = lambda n, generator=None: latents.pop(0).reshape(n, -1, 1, 1)
    uniforms = [torch.cat([tensors[f"step{i}/label_uniform"]]) for i in range(iterations)]
    rand_like = torch.rand_like
    monkeypatch.setattr(torch, "rand_like", lambda t, **kw: uniforms.pop(0).to(t) if t.shape == (2 * a["batch"],) else rand_like(t, **kw))
    d_losses, g_losses = [], []
    model.discriminator_losses = recording(model.discriminator_losses, d_losses)
    model.generator_losses = recording(model.generator_losses, g_losses)

    frogs = tensors["data/frogs"].permute(0, 3, 1, 2).double() / 127.5 - 1  # ganforge's [-1, 1]; seed_data_range gives D x / 255
    batches = [{"real": frogs[i * a["batch"] : (i + 1) * a["batch"]]} for i in range(iterations)]
    snaps = train_iterations(
        model, batches, lambda: {n: {k: v.clone() for k, v in net.state_dict().items()} for n, net in (("G", g), ("D", d))}, tmp_path
    )

    assert not latents and not uniforms and d.features[-1].calls == 2 * iterations
    for i, snap in enumerate(snaps):
        expected = {
            "G": from_keras(section(tensors, f"step{i}/G"), G_LAYERS, g_map),
            "D": from_keras(section(tensors, f"step{i}/D"), D_LAYERS, d_map),
        }
        for net in ("D", "G"):
            compare(snap[net], expected[net], f"iteration {i + 1}, {net}", exact=False)
        losses = {"d_loss": d_losses[i]["loss_D"].reshape(1), "a_loss": g_losses[i]["loss_G"].reshape(1)}
        compare(losses, section(tensors, f"step{i}/loss"), f"iteration {i + 1}, losses", exact=False)
    opt_g, opt_d = model.trainer.optimizers
    for opt, net, layers, dense, name in ((opt_d, d, D_LAYERS, d_map, "D"), (opt_g, g, G_LAYERS, g_map, "G")):
        assert all(group["iterations"] == iterations for group in opt.param_groups)
        ours = {k: opt.state[p]["square_avg"] for k, p in net.named_parameters()}
        compare(ours, from_keras(section(tensors, f"rmsprop/{name}"), layers, dense), f"RMSprop accumulators of {name}", exact=False)
