"""SPADE against NVlabs/SPADE's own training code (tests/fixtures/golden/spade.safetensors, made by
tests/golden/make_fixtures.py): from the reference's initial weights and the same batches, two iterations
of ganforge's SPADEModel give every parameter, buffer and loss the reference gave, bit for bit on the
machine that made the fixture. Also checks that ganforge's default init is the one the reference's GPU
path gives (what its published models trained with)."""

from __future__ import annotations

import functools
import json
import math

import pytest
import torch

from ganforge.cli.import_weights import map_state_dict, spade_reference_mapping
from ganforge.gans.losses import VGGLoss
from ganforge.gans.spade import SPADEModel
from ganforge.nets import SPADEDiscriminator, SPADEGenerator
from ganforge.nets.spade import SPADEResnetBlock
from tests.golden import compare, fixture_batches, is_fixture_machine, load_fixture, recording, section, train_iterations, vgg19_features

pytestmark = pytest.mark.reference

#: ganforge's loss names -> the reference's (pix2pix_model.py compute_generator_loss / compute_discriminator_loss)
LOSSES = {"loss_G_GAN": "GAN", "loss_G_feat": "GAN_Feat", "loss_G_VGG": "VGG", "loss_D_fake": "D_Fake", "loss_D_real": "D_real"}


@pytest.fixture(scope="module")
def fixture():
    tensors, meta = load_fixture("spade")
    return tensors, meta, json.loads(meta["options"])


def nets(o: dict, **kw) -> tuple[SPADEGenerator, SPADEDiscriminator]:
    sem = o["label_nc"] + int(o["contain_dontcare_label"]) + int(not o["no_instance"])
    g = SPADEGenerator(sem, ngf=o["ngf"], crop_size=o["crop_size"], nhidden=o["nhidden"], init_gain=o["init_variance"], **kw)
    d = SPADEDiscriminator(sem + 3, ndf=o["ndf"], n_layers=o["n_layers_D"], num_D=o["num_D"], init_gain=o["init_variance"], **kw)
    return g, d


def reference_state(net) -> dict[str, torch.Tensor]:
    """`net`'s state dict under the reference's names. SynchronizedBatchNorm2d normalises with
    F.batch_norm, which leaves num_batches_tracked at 0; BatchNorm2d counts. With momentum 0.1 the count is
    never read, so it is left out of the comparison."""
    mapping = spade_reference_mapping(net)
    return {mapping[k][0]: v.detach().clone() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def biases_before_batch_norm(g: SPADEGenerator) -> set[str]:
    """G's conv biases (reference names) whose output reaches nothing but SPADE's batch norms: fc's, and
    conv_0's and conv_1's of every block but the last (their outputs, and the identity shortcuts they pass
    through, go only into the next block's norms). Their gradient is 0 but for float64 rounding, which Adam
    scales up (see tests.golden.biases_before_instance_norm), so they are compared at noise level."""
    blocks = [name for name, m in g.named_children() if isinstance(m, SPADEResnetBlock)]
    names = {"fc.bias"} | {f"{b}.conv_0.bias" for b in blocks} | {f"{b}.conv_1.bias" for b in blocks[:-1]}
    mapping = spade_reference_mapping(g)
    return {mapping[k][0] for k in names}


def run_ganforge(fixture, root, precise: bool = True, **net_options) -> tuple[list[dict], list[dict]]:
    """ganforge's SPADEModel trained on the fixture's batches from its initial weights: the state after each
    iteration (reference names) and each iteration's losses. `precise`: the reference's Adam loop."""
    tensors, meta, o = fixture
    g, d = nets(o, **net_options)
    g, d = g.double(), d.double()
    for net, name in ((g, "G"), (d, "D")):
        init = section(tensors, f"init/{name}")
        net.load_state_dict(map_state_dict(net, init, spade_reference_mapping(net), f"the fixture's init/{name}"))
    adam = functools.partial(torch.optim.Adam)
    model = SPADEModel(
        netG=g,
        netD=d,
        optimizer_g=adam,
        optimizer_d=adam,
        label_nc=o["label_nc"],
        contain_dontcare_label=o["contain_dontcare_label"],
        use_instance=not o["no_instance"],
        gan_mode=o["gan_mode"],
        lambda_feat=o["lambda_feat"],
        lambda_vgg=o["lambda_vgg"],
        lr=o["lr"],
        no_ttur=o["no_TTUR"],
        betas=(o["beta1"], o["beta2"]),
    )
    model.precise = precise
    model._vgg.append(VGGLoss(vgg19_features()))
    g_losses, d_losses = [], []
    model.generator_losses = recording(model.generator_losses, g_losses)
    model.discriminator_losses = recording(model.discriminator_losses, d_losses)
    snaps = train_iterations(model, fixture_batches(tensors, meta), lambda: {"G": reference_state(g), "D": reference_state(d)}, root)
    losses = [{LOSSES[k]: v for k, v in {**gl, **dl}.items() if k in LOSSES} for gl, dl in zip(g_losses, d_losses)]
    return snaps, losses


@pytest.mark.slow
@pytest.mark.parametrize("precise", [True, False], ids=["precise", "fused_adam"])
def test_two_iterations_match_the_reference(fixture, tmp_path, precise):
    tensors, meta, _ = fixture
    snaps, losses = run_ganforge(fixture, tmp_path, precise)
    # Bit for bit where the kernels are the fixture's and the Adam loop is the reference's (precise); elsewhere
    # float64 rounding of other summation orders.
    exact = precise and is_fixture_machine(meta)
    noise_only = {"G": frozenset() if exact else biases_before_batch_norm(nets(fixture[2])[0]), "D": frozenset()}
    for i, snap in enumerate(snaps):
        for name in ("G", "D"):
            expected = {k: v for k, v in section(tensors, f"step{i}/{name}").items() if not k.endswith("num_batches_tracked")}
            compare(snap[name], expected, f"iteration {i + 1}, {name}", exact, noise_only=noise_only[name])
        # GAN_Feat: the reference adds each layer's L1 x lambda_feat / num_D; ganforge sums the layers, then
        # weights (the same gradients, another rounding of the value), so losses compare to float64 rounding.
        compare(losses[i], section(tensors, f"step{i}/loss"), f"iteration {i + 1}, losses", exact=False)


@pytest.mark.parametrize("init_spectral, reference", [(False, "init"), (True, "init_cpu_std")])
def test_init_is_the_reference_gpu_path_by_default_and_its_cpu_path_as_an_option(fixture, init_spectral, reference):
    """The reference's create_network moves a net to the GPU before init_weights, which then misses the
    spectral-normed weights: they keep PyTorch's default init (`init/`, made that way). On CPU the init
    reaches them (`init_cpu_std/`). Each weight of 200+ values has about its reference std; the two
    paths differ about 30-fold on the spectral convs, so this tells them apart. Two independent draws of n
    values have stds whose log-ratio has a standard deviation of about 1/sqrt(n): 5 of those are allowed."""
    tensors, _, o = fixture
    torch.manual_seed(0)
    g, d = nets(o, init_spectral=init_spectral)
    checked = 0
    for net, name in ((g, "G"), (d, "D")):
        mapping = spade_reference_mapping(net)
        expected = section(tensors, f"{reference}/{name}")
        for k, v in net.state_dict().items():
            if v.dim() > 1 and v.numel() >= 200:
                want = expected[mapping[k][0]]
                want = want.std() if reference == "init" else want
                assert abs(math.log(v.std().item() / want.item())) < 5 / math.sqrt(v.numel()), (
                    f"{name}.{k}: std {v.std().item():.4g}, reference {want.item():.4g}"
                )
                checked += 1
            elif k.endswith("bias"):
                assert not v.any(), f"{name}.{k}: the reference zeroes every conv bias"
    assert checked >= 20
