"""BicycleGAN against junyanz/BicycleGAN's own training code (tests/fixtures/golden/bicyclegan.safetensors, made
by tests/golden/make_fixtures.py): from the reference's initial weights, on the same batches and with the same
z draws (the same seed before each iteration: the reparameterization noise, then the random z), two iterations
of ganforge's BicycleGAN give every parameter, buffer and loss of G, E, D and D2 that the reference gave."""

from __future__ import annotations

import json

import pytest
import torch

from ganforge.cli.import_weights import multiscale_discriminator_mapping, resnet_encoder_mapping, unet_with_z_mapping
from ganforge.gans.bicyclegan import BicycleGAN
from ganforge.nets import MultiscaleDiscriminator, ResnetEncoder, UnetGenerator
from tests.golden import biases_before_instance_norm, compare_iteration, fixture_batches, load_fixture, recording, section, train_iterations
from tests.golden.options import module_options, reference_adam

pytestmark = pytest.mark.reference


def to_reference(net, mapping) -> dict[str, torch.Tensor]:
    """`net`'s state under the reference's names. The one transform (the U-Net's up-conv halves swapped) is
    its own inverse."""
    return {mapping[k][0]: mapping[k][1](v.detach().clone()) for k, v in net.state_dict().items()}


def test_two_iterations_match_the_reference(tmp_path):
    tensors, meta = load_fixture("bicyclegan")
    o = json.loads(meta["options"])
    nets = {
        "G": UnetGenerator(
            3, 3, num_downs=o["num_downs"], ngf=o["ngf"], norm=o["norm"], use_dropout=o["use_dropout"], nz=o["nz"], where_add=o["where_add"]
        ),
        "E": ResnetEncoder(3, o["nz"], nef=o["nef"], n_blocks=o["e_blocks"], norm=o["norm"], vae=True),
        **{n: MultiscaleDiscriminator(3, ndf=o["ndf"], n_layers=o["n_layers_D"], num_D=o["num_Ds"], norm=o["norm"]) for n in ("D", "D2")},
    }
    mappings = {
        "G": unet_with_z_mapping(nets["G"]),
        "E": resnet_encoder_mapping(nets["E"]),
        "D": multiscale_discriminator_mapping(nets["D"]),
        "D2": multiscale_discriminator_mapping(nets["D2"]),
    }
    for name, net in nets.items():
        init = section(tensors, f"init/{name}")
        net.double().load_state_dict({k: fn(init[src]) for k, (src, fn) in mappings[name].items()})
    model = BicycleGAN(
        *nets.values(),  # netG, netE, netD, netD2
        *[reference_adam(o)] * 4,  # optimizer_g, _e, _d, _d2
        **module_options(o, "nz", "gan_mode", "lambda_z", "lambda_kl", "use_same_D", lambda_gan="lambda_GAN", lambda_gan2="lambda_GAN2"),
        lambda_l1=o["lambda_L1"],
    )
    eg_losses, z_losses, d_losses = [], [], []
    model.encoder_generator_losses = recording(model.encoder_generator_losses, eg_losses)
    model.backward_latent = recording(model.backward_latent, z_losses)
    model.discriminator_losses = recording(model.discriminator_losses, d_losses)
    snaps = train_iterations(
        model, fixture_batches(tensors, meta), lambda: {n: to_reference(net, mappings[n]) for n, net in nets.items()}, tmp_path
    )

    noise_only = {name: {mappings[name][k][0] for k in biases_before_instance_norm(net)} for name, net in nets.items()}
    for i, snap in enumerate(snaps):
        eg, d, d2 = eg_losses[i], d_losses[2 * i], d_losses[2 * i + 1]
        losses = {
            "G_GAN": eg["loss_G_GAN"],
            "G_GAN2": eg["loss_G_GAN2"],
            "G_L1": eg["loss_G_L1"],
            "kl": eg["loss_kl"],
            "z_L1": z_losses[i]["loss_z_L1"],
            "D": d["loss_D"],
            "D2": d2["loss_D"],
        }
        compare_iteration(i, snap, losses, tensors, exact=False, noise_only=noise_only)
