"""Inference copies of generators for export (ONNX, TorchScript): no Lightning, one forward.

* `eval_copy`: a deep copy in eval mode (BatchNorm on running statistics, dropout off).
* `reference_test_copy`: pix2pix's test protocol (pytorch-CycleGAN-and-pix2pix `test.py` leaves G in
  train mode unless `--eval`, at batch size 1). Each BatchNorm becomes a normalisation by the image's
  own statistics (what train-mode BatchNorm computes for a batch of one; in a batch every image gets
  its own, as the reference's one-image batches do), and each Dropout takes its mask from
  `rand_like`, scaled by a graph input `dropout` in [0, 1]: 1 is the reference's dropout, 0 a
  deterministic graph (used by the parity check, and by users who want repeatable outputs).
* `BatchStatsNorm`: BatchNorm on the statistics of the batch (DCGAN sampled as pytorch/examples
  `dcgan/main.py`, which never calls eval()).
All compute mean and variance explicitly, so the ONNX graph has no training-mode BatchNormalization.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize


class ImageStatsNorm(nn.Module):
    """Train-mode BatchNorm of a batch of one image, applied to every image alone: its per-channel
    mean and (biased) variance over H, W, then BatchNorm's affine weights."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.eps = bn.eps
        self.weight = None if bn.weight is None else nn.Parameter(bn.weight.detach().clone(), requires_grad=False)
        self.bias = None if bn.bias is None else nn.Parameter(bn.bias.detach().clone(), requires_grad=False)

    def reduce_dims(self) -> tuple[int, ...]:
        return (2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = self.reduce_dims()
        mean = x.mean(dims, keepdim=True)
        var = (x - mean).pow(2).mean(dims, keepdim=True)
        y = (x - mean) / torch.sqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


class BatchStatsNorm(ImageStatsNorm):
    """Train-mode BatchNorm without the running-statistics update: statistics over N, H, W."""

    def reduce_dims(self) -> tuple[int, ...]:
        return (0, 2, 3)


class DropoutGate:
    """The `dropout` graph input, shared by every GatedDropout of one export wrapper."""

    def __init__(self):
        self.value: torch.Tensor | None = None


class GatedDropout(nn.Module):
    """Dropout whose masks are drawn in the graph (RandomUniformLike in ONNX), weighted by the gate:
    x * (1 - g + g * mask / (1 - p)); g = 1 is train-mode dropout, g = 0 the identity."""

    def __init__(self, p: float, gate: DropoutGate):
        super().__init__()
        self.p = p
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gate.value
        keep = (torch.rand_like(x) >= self.p).to(x.dtype) / (1.0 - self.p)
        return x * (1.0 - g + g * keep)


def eval_copy(net: nn.Module) -> nn.Module:
    """A deep copy in eval mode, spectral norms baked into plain weights (in eval mode they divide by the
    stored estimate of sigma and run no power iteration, so the weight is a constant; the exporters
    cannot trace the parametrization's vdot)."""
    net = copy.deepcopy(net).eval()
    for m in net.modules():
        if parametrize.is_parametrized(m):
            for name in list(m.parametrizations):
                parametrize.remove_parametrizations(m, name, leave_parametrized=True)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _replace(net: nn.Module, make) -> int:
    """Replace every child module for which make(child) returns a module; the count replaced."""
    count = 0
    for name, child in list(net.named_children()):
        new = make(child)
        if new is not None:
            setattr(net, name, new)
            count += 1
        else:
            count += _replace(child, make)
    return count


def has_dropout(net: nn.Module) -> bool:
    return any(isinstance(m, nn.Dropout) and m.p > 0 for m in net.modules())


def reference_test_copy(net: nn.Module, gate: DropoutGate) -> nn.Module:
    """`net` as the reference's test.py runs it (see the module docstring), in eval mode otherwise."""
    net = eval_copy(net)

    def make(m: nn.Module):
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return ImageStatsNorm(m)
        if isinstance(m, nn.Dropout) and m.p > 0:
            return GatedDropout(m.p, gate)
        return None

    _replace(net, make)
    return net


def batch_stats_copy(net: nn.Module) -> nn.Module:
    net = eval_copy(net)
    _replace(net, lambda m: BatchStatsNorm(m) if isinstance(m, nn.modules.batchnorm._BatchNorm) else None)
    return net


class ImageToImage(nn.Module):
    """G(image) [with the `dropout` gate as a second input]; `pre`/`post` map value ranges around G
    (DiscoGAN's nets work on [0, 1])."""

    def __init__(self, net: nn.Module, gate: DropoutGate | None = None, unit_range: bool = False):
        super().__init__()
        self.net, self.gate, self.unit_range = net, gate, unit_range

    def forward(self, image: torch.Tensor, dropout: torch.Tensor | None = None) -> torch.Tensor:
        if self.gate is not None:
            self.gate.value = dropout
        if self.unit_range:
            return self.net((image + 1) / 2) * 2 - 1
        return self.net(image)


class ImageAndCode(nn.Module):
    """G(image, z) (BicycleGAN)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(image, z)


class CodeOf(nn.Module):
    """An encoder's mean code for an image: E(image)[0] for a VAE encoder, else E(image)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.net(image)
        return out[0] if isinstance(out, tuple) else out


class LabelMapToImage(nn.Module):
    """SPADE's G on label ids (N, 1, H, W) int64: the one-hot map (`n_labels` channels, don't-care
    included) [+ an all-zero instance-edge channel, as predict gives G without instance maps] [, z]."""

    def __init__(self, net: nn.Module, n_labels: int, instance_channel: bool, use_z: bool):
        super().__init__()
        self.net, self.n_labels, self.instance_channel, self.use_z = net, n_labels, instance_channel, use_z

    def forward(self, label: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        ids = torch.arange(self.n_labels, device=label.device).view(1, -1, 1, 1)
        sem = (label == ids).to(torch.float32)
        if self.instance_channel:
            sem = torch.cat([sem, torch.zeros_like(sem[:, :1])], 1)
        return self.net(sem, z if self.use_z else None)
