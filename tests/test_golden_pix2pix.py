"""pix2pix against pytorch-CycleGAN-and-pix2pix's own training code (tests/fixtures/golden/pix2pix.safetensors,
made by tests/golden/make_fixtures.py): from the reference's initial weights, on the same batches and with
the same dropout masks (the same seed before each iteration), two iterations of ganforge's Pix2Pix give every
parameter, buffer and loss the reference gave: bit for bit on the machine that made the fixture with `precise`
(the reference's single-tensor Adam loop), and to float64 rounding with the default fused Adam."""

from __future__ import annotations

import json

import pytest
import torch

from ganforge.gans.pix2pix import Pix2Pix
from ganforge.nets import NLayerDiscriminator, UnetGenerator
from tests.golden import compare_iteration, fixture_batches, is_fixture_machine, load_fixture, recording, section, train_iterations
from tests.golden.options import module_options, reference_adam

pytestmark = pytest.mark.reference

#: ganforge's loss names -> the reference's (pix2pix_model.py loss_names)
LOSSES = {"loss_G_GAN": "G_GAN", "loss_G_L1": "G_L1", "loss_D_real": "D_real", "loss_D_fake": "D_fake"}


def state(net) -> dict[str, torch.Tensor]:
    """ganforge's U-Net and PatchGAN keep the reference's module layout: the same names."""
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("precise", [True, False], ids=["precise", "fused_adam"])
def test_two_iterations_match_the_reference(tmp_path, precise):
    tensors, meta = load_fixture("pix2pix")
    o = json.loads(meta["options"])
    g = UnetGenerator(3, 3, num_downs=o["num_downs"], ngf=o["ngf"], norm=o["norm"], use_dropout=not o["no_dropout"])
    d = NLayerDiscriminator(6, ndf=o["ndf"], n_layers=o["n_layers_D"], norm=o["norm"])
    for net, name in ((g, "G"), (d, "D")):
        net.double().load_state_dict(section(tensors, f"init/{name}"))
    adam = reference_adam(o)
    model = Pix2Pix(netG=g, netD=d, optimizer_g=adam, optimizer_d=adam, **module_options(o, "gan_mode", lambda_l1="lambda_L1"))
    model.precise = precise
    g_losses, d_losses = [], []
    model.generator_losses = recording(model.generator_losses, g_losses)
    model.discriminator_losses = recording(model.discriminator_losses, d_losses)
    snaps = train_iterations(model, fixture_batches(tensors, meta), lambda: {"G": state(g), "D": state(d)}, tmp_path)

    # Bit for bit where the kernels are the fixture's; elsewhere float64 rounding of other summation orders.
    exact = precise and is_fixture_machine(meta)
    for i, snap in enumerate(snaps):
        losses = {LOSSES[k]: v for k, v in {**g_losses[i], **d_losses[i]}.items() if k in LOSSES}
        compare_iteration(i, snap, losses, tensors, exact)
