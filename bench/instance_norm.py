"""Instance norm on torch's GroupNorm kernel (the default) against torch's instance_norm (`precise=true`), A/B in one
process: one CycleGAN or BicycleGAN training step at the reference settings, written out as a plain loop on ganforge's
nets (fused Adam, the reference's step order), the two kernels alternated step by step (ABBA...), CPU time
(`time.process_time()`) on one torch thread, medians. CPU time on one thread is the steadier figure on a shared machine.

    python bench/instance_norm.py [--model cyclegan|bicyclegan] [--size 256] [--rounds 4]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ganforge.gans.base import set_requires_grad
from ganforge.gans.losses import kl_divergence
from ganforge.nets import MultiscaleDiscriminator, NLayerDiscriminator, ResnetEncoder, ResnetGenerator, UnetGenerator
from ganforge.nets.norms import InstanceNorm2d


def adam(params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, 2e-4, betas=(0.5, 0.999), fused=True)


def lsgan(outputs: torch.Tensor | list[torch.Tensor], target: float) -> torch.Tensor:
    outputs = outputs if isinstance(outputs, list) else [outputs]
    return sum(F.mse_loss(o, torch.full_like(o, target)) for o in outputs)  # type: ignore[return-value]


def cyclegan_step(size: int) -> Callable[[], None]:
    """resnet_9blocks Gs, 70x70 PatchGANs with instance norm, batch 1, identity 0.5 (the pool left out)."""
    g_a, g_b = ResnetGenerator(), ResnetGenerator()
    d_a, d_b = NLayerDiscriminator(3, norm="instance"), NLayerDiscriminator(3, norm="instance")
    opt_g, opt_d = adam([*g_a.parameters(), *g_b.parameters()]), adam([*d_a.parameters(), *d_b.parameters()])
    real_a, real_b = torch.rand(1, 3, size, size) * 2 - 1, torch.rand(1, 3, size, size) * 2 - 1

    def step() -> None:
        fake_b, fake_a = g_a(real_a), g_b(real_b)
        rec_a, rec_b = g_b(fake_b), g_a(fake_a)
        set_requires_grad([d_a, d_b], False)
        loss_g = lsgan(d_a(fake_b), 1.0) + lsgan(d_b(fake_a), 1.0) + F.l1_loss(rec_a, real_a) * 10 + F.l1_loss(rec_b, real_b) * 10
        loss_g = loss_g + F.l1_loss(g_a(real_b), real_b) * 5 + F.l1_loss(g_b(real_a), real_a) * 5
        loss_g.backward()
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        set_requires_grad([d_a, d_b], True)
        loss_d = (lsgan(d_a(fake_b.detach()), 0.0) + lsgan(d_a(real_b), 1.0)) * 0.5
        loss_d = loss_d + (lsgan(d_b(fake_a.detach()), 0.0) + lsgan(d_b(real_a), 1.0)) * 0.5
        loss_d.backward()
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)

    return step


def bicyclegan_step(size: int) -> Callable[[], None]:
    """The edges2shoes settings: unet_256 with z in every level (dropout on), E_ResNet, two 2-scale PatchGANs, batch 2
    split into the cVAE-GAN and cLR-GAN halves, 1-channel input."""
    g = UnetGenerator(1, 3, 8, 64, norm="instance", use_dropout=True, init_type="xavier", nz=8, where_add="all", bias_before_batchnorm=True)
    e = ResnetEncoder(3, 8, 64, 5)
    d, d2 = MultiscaleDiscriminator(3, bias_before_batchnorm=True), MultiscaleDiscriminator(3, bias_before_batchnorm=True)
    opt_g, opt_e, opt_d, opt_d2 = adam(g.parameters()), adam(e.parameters()), adam(d.parameters()), adam(d2.parameters())
    real_a, real_b = torch.rand(2, 1, size, size) * 2 - 1, torch.rand(2, 3, size, size) * 2 - 1

    def step() -> None:
        mu, logvar = e(real_b[:1])
        z_enc, z_rand = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar), torch.randn(1, 8)
        fake_enc, fake_rand = g(real_a[:1], z_enc), g(real_a[:1], z_rand)
        set_requires_grad([d, d2], False)
        loss = lsgan(d(fake_enc), 1.0) + lsgan(d2(fake_rand), 1.0) + F.l1_loss(fake_enc, real_b[:1]) * 10
        (loss + kl_divergence(mu, logvar) * 0.01).backward(retain_graph=True)
        set_requires_grad([e], False)
        (F.l1_loss(e(fake_rand)[0], z_rand) * 0.5).backward()
        set_requires_grad([e], True)
        for opt in (opt_e, opt_g):
            opt.step()
            opt.zero_grad(set_to_none=True)
        set_requires_grad([d, d2], True)
        for net, opt, fake, real in ((d, opt_d, fake_enc, real_b[:1]), (d2, opt_d2, fake_rand, real_b[1:])):
            (lsgan(net(fake.detach()), 0.0) + lsgan(net(real), 1.0)).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("cyclegan", "bicyclegan"), default="cyclegan")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=4, help="timed steps of each kernel")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    step = (cyclegan_step if args.model == "cyclegan" else bicyclegan_step)(args.size)
    kernels = {"instance_norm (precise)": True, "group_norm (default)": False}

    def run(reference: bool) -> float:
        InstanceNorm2d.reference_kernel = reference
        start = time.process_time()
        step()
        return time.process_time() - start

    for reference in kernels.values():  # warm-up
        run(reference)
    times: dict[str, list[float]] = {k: [] for k in kernels}
    for r in range(args.rounds):
        for name in kernels if r % 2 == 0 else list(kernels)[::-1]:
            times[name].append(run(kernels[name]))
    base = statistics.median(times["instance_norm (precise)"])
    print(f"{args.model} {args.size} px, one thread, CPU s a step (median of {args.rounds}, alternated):")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:24s} {med:7.3f}   instance_norm / this {base / med:.3f}   {[round(t, 2) for t in ts]}")


if __name__ == "__main__":
    main()
