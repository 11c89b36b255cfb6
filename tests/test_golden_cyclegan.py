"""CycleGAN against pytorch-CycleGAN-and-pix2pix's own training code (tests/fixtures/golden/cyclegan.safetensors,
made by tests/golden/make_fixtures.py): from the reference's initial weights and the same batches, three
iterations of ganforge's CycleGAN give every parameter, buffer and loss the reference gave, to float64 rounding."""

from __future__ import annotations

import json

import pytest

from ganforge.gans.cyclegan import CycleGAN
from ganforge.nets import NLayerDiscriminator, ResnetGenerator
from tests.golden import biases_before_instance_norm, compare_iteration, fixture_batches, load_fixture, recording, section, train_iterations
from tests.golden.options import module_options, reference_adam

pytestmark = pytest.mark.reference
#: ganforge's loss names -> the reference's (cycle_gan_model.py loss_names)
LOSSES = {
    "loss_G_A": "G_A",
    "loss_G_B": "G_B",
    "loss_cycle_A": "cycle_A",
    "loss_cycle_B": "cycle_B",
    "loss_idt_A": "idt_A",
    "loss_idt_B": "idt_B",
    "loss_D_A": "D_A",
    "loss_D_B": "D_B",
}


@pytest.mark.slow
def test_three_iterations_match_the_reference(tmp_path):
    tensors, meta = load_fixture("cyclegan")
    o = json.loads(meta["options"])
    g = {
        n: ResnetGenerator(3, 3, ngf=o["ngf"], norm=o["norm"], use_dropout=not o["no_dropout"], n_blocks=o["n_blocks"])
        for n in ("G_A", "G_B")
    }
    d = {n: NLayerDiscriminator(3, ndf=o["ndf"], n_layers=o["n_layers_D"], norm=o["norm"]) for n in ("D_A", "D_B")}
    nets = {**g, **d}
    for name, net in nets.items():  # ganforge's ResNet and PatchGAN keep the reference's names
        net.double().load_state_dict(section(tensors, f"init/{name}"))
    adam = reference_adam(o)
    model = CycleGAN(
        **{f"net{name}": net for name, net in nets.items()},
        optimizer_g=adam,
        optimizer_d=adam,
        **module_options(o, "gan_mode", "lambda_A", "lambda_B", "lambda_identity", "pool_size"),
    )
    g_losses, d_losses = [], []
    model.generator_losses = recording(model.generator_losses, g_losses)
    model.discriminator_losses = recording(model.discriminator_losses, d_losses)
    snaps = train_iterations(
        model,
        fixture_batches(tensors, meta),
        lambda: {n: {k: v.detach().clone() for k, v in net.state_dict().items()} for n, net in nets.items()},
        tmp_path,
    )

    # Not bit for bit: the reference runs the identity passes before the GAN terms and D on real before fake;
    # ganforge the other way round, so autograd adds the same gradient terms in another order. In float64 that
    # rounding stays below 1e-10 (in float32 Adam amplifies it, tests/golden/__init__.py), except in the conv
    # biases before an InstanceNorm, whose gradient is that rounding alone (biases_before_instance_norm).
    noise_only = {name: biases_before_instance_norm(net) for name, net in nets.items()}
    for i, snap in enumerate(snaps):
        losses = {LOSSES[k]: v for k, v in {**g_losses[i], **d_losses[i]}.items() if k in LOSSES}
        compare_iteration(i, snap, losses, tensors, exact=False, noise_only=noise_only)
