"""Normalization choices shared by every network, selected by a config string.

`batch`, `instance` and `none` are the pix2pix/CycleGAN choices. `spectral` adds no norm
layer and wraps every conv in spectral normalization instead; `spectralinstance` and
`spectralbatch` do both, as SPADE's discriminator (`spectralinstance`) does.

`SpectralNorm` is spectral normalization computed as `torch.nn.utils.spectral_norm` computes it (the
function NVlabs/SPADE uses), registered as a parametrization (`spectral_norm(module, "reference")`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as torch_spectral_norm

from ganforge.utils.errors import ConfigError

NORM_CHOICES = ("batch", "instance", "none", "spectral", "spectralbatch", "spectralinstance")

NormFactory = Callable[[int], nn.Module]
ConvWrapper = Callable[[nn.Module], nn.Module]


def _parse(norm: str) -> tuple[str, bool]:
    """Split a norm name into (layer kind, spectral?), rejecting unknown names."""
    if norm not in NORM_CHOICES:
        raise ConfigError(f"unknown norm {norm!r}; choose one of: {', '.join(NORM_CHOICES)}")
    spectral = norm.startswith("spectral")
    kind = norm.removeprefix("spectral") or "none"
    return kind, spectral


def get_norm_layer(norm: str) -> NormFactory:
    """Return a factory `num_features -> nn.Module`.

    `none` (and plain `spectral`) gives `nn.Identity`, as the reference does, so that module
    indices (and therefore state-dict keys) are the same whatever the norm.
    """
    kind, _ = _parse(norm)
    if kind == "batch":
        return lambda n: nn.BatchNorm2d(n, affine=True, track_running_stats=True)
    if kind == "instance":
        # No affine and no running stats: CycleGAN's choice; test-time statistics are per image.
        return lambda n: InstanceNorm2d(n, affine=False, track_running_stats=False)
    return lambda n: nn.Identity()


class InstanceNorm2d(nn.InstanceNorm2d):
    """`nn.InstanceNorm2d` (a subclass: the same state dict, and isinstance holds), computed by torch's GroupNorm
    kernel with one group per channel when it keeps no running statistics: the same mean and biased variance over
    H, W per image and channel, so the same result up to float rounding.

    Why: torch's instance_norm reshapes to (1, N*C, H, W), runs BatchNorm and returns a view of its output, and
    the in-place ReLU after every norm of these nets then makes autograd copy each gradient through CopySlices;
    the GroupNorm kernel is also faster by itself. A CycleGAN resnet_9blocks G forward + backward at 256 px took
    7 % less CPU time (docs/benchmarks.md). `reference_kernel` (train.yaml `precise`, through GANModule) runs
    torch's instance_norm, as the reference code does; so do tracing and ONNX export, whose graphs keep the
    InstanceNormalization op."""

    #: torch's instance_norm instead of the GroupNorm kernel (set by GANModule.precise)
    reference_kernel: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reference_kernel or self.track_running_stats or x.dim() != 4 or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return super().forward(x)
        F._verify_spatial_size(x.size())  # the error instance_norm gives for a 1x1 map
        return F.group_norm(x, x.shape[1], self.weight, self.bias, self.eps)


def use_reference_kernels(module: nn.Module, flag: bool) -> None:
    """`InstanceNorm2d.reference_kernel` on every such norm in `module` (train.yaml `precise`)."""
    for m in module.modules():
        if isinstance(m, InstanceNorm2d):
            m.reference_kernel = flag


def conv_wrapper(norm: str) -> ConvWrapper:
    """Return the function every net passes its convs through (spectral norm or identity)."""
    _, spectral = _parse(norm)
    if spectral:
        return torch_spectral_norm
    return lambda module: module


def use_bias(norm: str) -> bool:
    """Whether a conv followed by this norm needs a bias.

    BatchNorm's affine shift makes a bias redundant. The reference keeps the bias before
    InstanceNorm, and we keep it when there is no norm layer at all (the reference's type check
    drops it there too, which leaves a norm-free net with no bias anywhere).
    """
    kind, _ = _parse(norm)
    return kind != "batch"


SPECTRAL_NORM_CHOICES = ("reference", "torch")


class SpectralNorm(nn.Module):
    """W / sigma(W), with sigma estimated as `torch.nn.utils.spectral_norm` (the old hook API) does.

    One power-iteration step per training forward, v = normalize(W^T u) first, then u = normalize(W v),
    starting from the random unit u and v drawn here, with no warm-up. torch's parametrization
    (`torch.nn.utils.parametrizations.spectral_norm`) steps u first, then v, and runs 15 steps when it is
    registered; from the same weights the two give other sigmas at every step, so training differs from
    the first step on. As a parametrization (torch.nn.utils.parametrize) it keeps what the hook API lacks:
    the state-dict names of torch's (`parametrizations.weight.original`, `parametrizations.weight.0._u`,
    `._v`), `torch.compile`, and `parametrize.remove_parametrizations` for export.
    """

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, eps: float = 1e-12):
        super().__init__()
        if weight.ndim < 2:
            raise ConfigError(f"spectral norm needs a weight of 2 or more dimensions, got shape {tuple(weight.shape)}")
        self.n_power_iterations, self.eps = n_power_iterations, eps
        h, w = weight.shape[0], weight[0].numel()
        with torch.no_grad():
            self.register_buffer("_u", F.normalize(weight.new_empty(h).normal_(0, 1), dim=0, eps=eps))
            self.register_buffer("_v", F.normalize(weight.new_empty(w).normal_(0, 1), dim=0, eps=eps))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / self.sigma(weight)

    def sigma(self, weight: torch.Tensor) -> torch.Tensor:
        """The estimated largest singular value of `weight`, after this forward's power iteration (training)."""
        weight_mat = weight.reshape(weight.shape[0], -1)
        u, v = self._u, self._v
        if self.training:
            with torch.no_grad():
                for _ in range(self.n_power_iterations):
                    v = F.normalize(torch.mv(weight_mat.t(), u), dim=0, eps=self.eps, out=v)
                    u = F.normalize(torch.mv(weight_mat, v), dim=0, eps=self.eps, out=u)
            # The buffers change in place at the next forward; a graph that still needs them (two
            # forwards before one backward, as a GAN's D on real and fake) keeps these copies.
            u = u.clone(memory_format=torch.contiguous_format)
            v = v.clone(memory_format=torch.contiguous_format)
        return torch.dot(u, torch.mv(weight_mat, v))

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value


def spectral_norm(module: nn.Module, kind: str = "reference") -> nn.Module:
    """Spectral normalization of `module.weight`: `reference` is `SpectralNorm` (torch.nn.utils.spectral_norm's
    numerics), `torch` is torch.nn.utils.parametrizations.spectral_norm (u first, 15 steps at registration)."""
    if kind == "torch":
        return torch_spectral_norm(module)
    if kind != "reference":
        raise ConfigError(f"spectral_norm={kind!r}: choose one of {', '.join(SPECTRAL_NORM_CHOICES)}")
    # unsafe=True skips the registration's check, which would run the parametrization once (a power step).
    parametrize.register_parametrization(module, "weight", SpectralNorm(module.weight), unsafe=True)
    return module


class SpectralConv2d(nn.Conv2d):
    """A Conv2d for `spectral_norm(conv, "reference")` that can divide its output by sigma instead of its weight.

    conv(x, W / sigma) + b = conv(x, W) / sigma + b: the same function and the same gradients, rounded
    otherwise. With `sigma_on_output` the division goes to whichever is smaller, the weight or the output:
    SPADE's 1024-channel convs at 4-16 px have weights of 9.4M elements and outputs of 16-256k, and W / sigma
    (and its backward, three more weight-sized tensors) was a fifth of a SPADE training step on a CPU. Off (the
    default; SPADEModel turns it on for training unless `precise=true`) it divides the weight, as the
    reference's spectral norm does.
    The parametrization, and so the state-dict names, are those of any spectral-normed conv.
    """

    sigma_on_output = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.sigma_on_output and parametrize.is_parametrized(self, "weight")):
            return super().forward(x)
        norm = self.parametrizations.weight
        weight = norm.original
        if not isinstance(norm[0], SpectralNorm) or weight.numel() <= x.numel() // x.shape[1] * self.out_channels // math.prod(self.stride):
            return super().forward(x)
        y = self._conv_forward(x, weight, None) / norm[0].sigma(weight)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


def use_sigma_on_output(module: nn.Module, flag: bool) -> None:
    """Turn `SpectralConv2d.sigma_on_output` on or off in every such conv of `module`."""
    for m in module.modules():
        if isinstance(m, SpectralConv2d):
            m.sigma_on_output = flag


SPADE_PARAM_FREE_NORMS = ("batch", "syncbatch", "instance")


class SPADE(nn.Module):
    """Spatially-adaptive normalization (NVlabs/SPADE models/networks/normalization.py SPADE):
    norm(x) * (1 + gamma(seg)) + beta(seg), with a parameter-free norm and gamma, beta from a shared
    3x3 conv (`nhidden` channels, ReLU) on the label map resized (nearest) to x's size.

    `batch` is BatchNorm2d(affine=False): under DDP the model synchronizes it (`synchronize_batchnorm`),
    which is the reference's synchronized default; `syncbatch` builds torch's SyncBatchNorm directly.
    """

    def __init__(self, norm_nc: int, label_nc: int, param_free_norm: str = "batch", nhidden: int = 128):
        super().__init__()
        if param_free_norm == "instance":
            self.param_free_norm: nn.Module = nn.InstanceNorm2d(norm_nc, affine=False)
        elif param_free_norm == "batch":
            self.param_free_norm = nn.BatchNorm2d(norm_nc, affine=False)
        elif param_free_norm == "syncbatch":
            self.param_free_norm = nn.SyncBatchNorm(norm_nc, affine=False)
        else:
            raise ConfigError(f"SPADE param_free_norm={param_free_norm!r}: choose one of {', '.join(SPADE_PARAM_FREE_NORMS)}")
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, nhidden, kernel_size=3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(nhidden, norm_nc, kernel_size=3, padding=1)
        self.mlp_beta = nn.Conv2d(nhidden, norm_nc, kernel_size=3, padding=1)

    def forward(self, x, segmap):
        normalized = self.param_free_norm(x)
        # Nearest to the same size is the identity (the generator hands each block the map at its size); an
        # export's trace always resizes, as a comparison of shapes there would become a constant of the graph.
        if torch.jit.is_tracing() or segmap.shape[2:] != x.shape[2:]:
            segmap = nn.functional.interpolate(segmap, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(segmap)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class CrossProcessBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch, on any backend.

    torch's SyncBatchNorm refuses CPU tensors (its statistics kernels are GPU-only), so DDP on gloo
    would train each process on its own half-batch statistics. Here each process sums x and x^2 per
    channel, and a differentiable all_reduce (torch.distributed.nn) adds them over the processes: the
    output and its gradient are those of one BatchNorm over the whole batch, and so are the running
    statistics (unbiased variance over all N samples).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        stats = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), x.new_full((1,), x.numel() // c)])
        stats = dist_fn.all_reduce(stats)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp_min(1), m)
        y = (x - mean.view(1, c, 1, 1)) * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y


def synchronize_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm in `module` normalizing by the statistics of all DDP processes: torch's
    SyncBatchNorm on GPUs, CrossProcessBatchNorm elsewhere (same statistics; state copied over)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, _BatchNorm) and not isinstance(module, CrossProcessBatchNorm):
        converted = CrossProcessBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        converted.load_state_dict(module.state_dict())
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, synchronize_batchnorm(child, device))
    return module
