"""MetricSuite: the configured metrics fed from generated/real image batches, shared by the training
callback and ganforge-eval. Images come in as float batches in [-1, 1] (as every ganforge model
outputs them), or as lists of (C, H, W) images when sizes differ.

FID, KID and IS are torchmetrics' implementations on torch-fidelity's Inception, fed in uint8
exactly as torch-fidelity feeds it (so the numbers equal torch-fidelity's on the same images).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.classification import MulticlassJaccardIndex
from torchmetrics.image import (
    FrechetInceptionDistance,
    InceptionScore,
    KernelInceptionDistance,
    LearnedPerceptualImagePatchSimilarity,
    PeakSignalNoiseRatio,
    StructuralSimilarityIndexMeasure,
)

from ganforge.metrics.inception import (
    LAYER_NAMES,
    RESIZE,
    SIFID,
    Precomputed,
    load_inception,
)
from ganforge.metrics.registry import METRICS
from ganforge.metrics.weights import LPIPS_BACKBONES, hub_cache_with, resolve
from ganforge.utils.errors import ConfigError
from ganforge.utils.imageio import to_uint8

Images = torch.Tensor | Sequence[torch.Tensor]
FEATURE_DIMS = {"2048": 2048, "logits_unbiased": 1008, "64": 64}
LPIPS_NETS = tuple(LPIPS_BACKBONES)


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    x = x.detach().float().clamp(-1, 1)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]


def groups(x: Images) -> list[torch.Tensor]:
    """Batches of equal-size images, in order: a tensor as is, a list in runs of one size."""
    if torch.is_tensor(x):
        return [x]
    out: list[list[torch.Tensor]] = []
    for img in x:
        if out and out[-1][0].shape == img.shape:
            out[-1].append(img)
        else:
            out.append([img])
    return [torch.stack(g) for g in out]


def items(x: Images) -> list[torch.Tensor]:
    return [x] if torch.is_tensor(x) else [img.unsqueeze(0) for img in x]


def global_count(n: int, device) -> int:
    """A count summed over DDP processes, so every rank takes the same decision."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        t = torch.tensor(n, device=device)
        torch.distributed.all_reduce(t)
        return int(t)
    return n


class MetricSuite:
    """Build the named metrics (loading every pretrained network first), `update` with batches,
    `compute()` the values and `protocol()` how they were measured."""

    def __init__(
        self,
        names: Sequence[str],
        *,
        lpips_net: str = "alex",
        diversity_samples: int = 20,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        is_splits: int = 10,
        fid_feature: int | str = 2048,
        weights: Mapping[str, str | None] | None = None,
        batch_size: int = 32,
        feature_extractor: torch.nn.Module | None = None,
        seed: int = 0,
        segmenter: torch.nn.Module | None = None,
        label_classes: int | None = None,
    ):
        unknown = [n for n in names if n not in METRICS]
        if unknown:
            raise ConfigError(f"unknown metric(s) {unknown}; choose from {sorted(METRICS)}")
        if lpips_net not in LPIPS_NETS:
            raise ConfigError(f"lpips_net={lpips_net!r} is unknown; choose one of {LPIPS_NETS}")
        if diversity_samples < 2:
            raise ConfigError(f"diversity_samples must be >= 2 (consecutive pairs), got {diversity_samples}")
        if str(fid_feature) not in ("64", "192", "768", "2048"):
            raise ConfigError(f"fid_feature={fid_feature} is not an Inception layer; choose 64, 192, 768 or 2048 (the standard)")
        self.fid_feature = str(fid_feature)
        self.names, self.lpips_net, self.diversity_samples = list(names), lpips_net, diversity_samples
        self.kid_subsets, self.kid_subset_size, self.is_splits = kid_subsets, kid_subset_size, is_splits
        self.weights = dict(weights or {})
        self.batch_size, self.seed = batch_size, seed
        if "miou" in self.names and (segmenter is None or not label_classes):
            raise ConfigError("mIoU needs a segmenter and the label maps' class count (a label-map model such as SPADE)")
        self.segmenter, self.label_classes = (segmenter.eval() if segmenter is not None else None), label_classes
        self.layers = sorted({self._layer(n) for n in self.names if self._layer(n) is not None and n != "sifid"})
        self.extractor, self.injected = None, feature_extractor is not None
        if any(METRICS[n].inception for n in self.names):
            self.extractor = feature_extractor or load_inception(self.layers or ["64"], self.weights.get("inception"))
        dims = {"192": 192, "768": 768, **FEATURE_DIMS, **getattr(self.extractor, "feature_dims", {})}
        self.metrics: dict[str, Metric] = {}
        for n in self.names:
            self.metrics[n] = self._build(n, dims)
        self.reset()

    def _build(self, name: str, dims: dict) -> Metric:
        if name == "fid":
            return FrechetInceptionDistance(feature=Precomputed(dims[self.fid_feature]))
        if name == "kid":
            return KernelInceptionDistance(
                feature=Precomputed(dims[self.fid_feature]), subsets=self.kid_subsets, subset_size=self.kid_subset_size
            )
        if name == "is":
            return InceptionScore(feature=Precomputed(dims["logits_unbiased"]), splits=self.is_splits)
        if name in ("lpips", "diversity"):
            key = LPIPS_BACKBONES[self.lpips_net]
            with hub_cache_with(key, resolve(key, self.weights.get(key))):
                return LearnedPerceptualImagePatchSimilarity(net_type=self.lpips_net, reduction="mean")
        if name == "psnr":
            return PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))
        if name == "ssim":
            return StructuralSimilarityIndexMeasure(data_range=1.0)
        if name == "miou":
            # Don't-care pixels (id = label_classes) are left out; classes absent from a map and its
            # prediction do not count (torchmetrics' macro average skips an empty union).
            return MulticlassJaccardIndex(num_classes=self.label_classes + 1, ignore_index=self.label_classes, average="macro")
        return SIFID(self.extractor)

    def _layer(self, name: str) -> str | None:
        """The Inception feature a metric reads: FID/KID use `fid_feature`, IS the logits."""
        layer = METRICS[name].inception
        return self.fid_feature if layer == "2048" else layer

    def to(self, device) -> MetricSuite:
        self.device = torch.device(device)
        if self.extractor is not None:
            self.extractor.to(self.device)
        if self.segmenter is not None:
            self.segmenter.to(self.device)
        for m in self.metrics.values():
            m.to(self.device)
        return self

    def reset(self) -> None:
        for m in self.metrics.values():
            m.reset()
        self.n_fake = self.n_real = self.n_pairs = self.n_diverse_inputs = self.n_labelled = 0
        self.sizes: set[tuple[int, int]] = set()
        self.pairs_resized = False

    # ----- feeding --------------------------------------------------------------------------------
    @torch.no_grad()
    def features(self, images: Images) -> dict[str, torch.Tensor]:
        """Inception features of `images`, one network pass for every metric that reads them."""
        out: dict[str, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        for batch in groups(images):
            self.sizes.add(tuple(batch.shape[-2:]))
            u8 = to_uint8(batch, rgb=True)
            for chunk in u8.split(self.batch_size):
                for layer, f in zip(self.layers, self.extractor(chunk)):
                    out[layer].append(f.double())
        return {layer: torch.cat(fs) for layer, fs in out.items()}

    @torch.no_grad()
    def update(
        self, fake: Images, real: Images | None = None, diverse: torch.Tensor | None = None, label: torch.Tensor | None = None
    ) -> None:
        """fake: generated images; real: the real images (for paired metrics, fake[i]'s target);
        diverse: (n, B, C, H, W) outputs of n latents per input, for `diversity`; label: the label maps
        (B, [1,] H, W) the fakes were generated from, for `miou`."""
        self.n_fake += len(fake)
        needs_real = [n for n in self.names if n not in ("is", "diversity", "miou")]
        if needs_real and real is None:
            raise ValueError(f"metrics {needs_real} need real images")
        if real is not None:
            self.n_real += len(real)
        if self.layers:
            fake_f = self.features(fake)
            real_f = self.features(real) if {"fid", "kid"} & set(self.names) else {}
            for n in ("fid", "kid"):
                if n in self.metrics:
                    self.metrics[n].update(real_f[self.fid_feature], real=True)
                    self.metrics[n].update(fake_f[self.fid_feature], real=False)
            if "is" in self.metrics:
                self.metrics["is"].update(fake_f["logits_unbiased"])
        if {"lpips", "psnr", "ssim", "sifid"} & set(self.names):
            for f, r in zip(items(fake), items(real)):
                self._update_pair(f, r)
        if "miou" in self.metrics:
            self._update_miou(fake, label)
        if "diversity" in self.metrics:
            if diverse is None or diverse.shape[0] != self.diversity_samples:
                raise ValueError(f"diversity needs (n={self.diversity_samples}, B, C, H, W) samples")
            for b in range(diverse.shape[1]):
                s = to_rgb(diverse[:, b])
                self.metrics["diversity"].update(s[:-1], s[1:])
            self.n_diverse_inputs += diverse.shape[1]

    def _update_miou(self, fake: torch.Tensor, label: torch.Tensor | None) -> None:
        if label is None:
            raise ValueError("miou needs the label maps the images were generated from")
        label = (label.squeeze(1) if label.dim() == 4 else label).long()
        logits = self.segmenter(fake.float())
        if logits.dim() != 4 or logits.shape[1] != self.label_classes:
            raise ConfigError(
                f"the segmenter returned shape {tuple(logits.shape)}; mIoU needs class scores (B, {self.label_classes}, H, W), "
                f"one channel per label class of the model"
            )
        if logits.shape[-2:] != label.shape[-2:]:
            logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
        self.metrics["miou"].update(logits.argmax(1), label.to(logits.device))
        self.n_labelled += len(label)

    def _update_pair(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        if "sifid" in self.metrics:
            self.metrics["sifid"].update(to_uint8(fake, rgb=True), to_uint8(real, rgb=True))
        if fake.shape[-2:] != real.shape[-2:]:
            fake = F.interpolate(fake.float(), size=real.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
            self.pairs_resized = True
        self.n_pairs += len(fake)
        if "lpips" in self.metrics:
            self.metrics["lpips"].update(to_rgb(fake), to_rgb(real))
        for n in ("psnr", "ssim"):
            if n in self.metrics:
                self.metrics[n].update((fake.float().clamp(-1, 1) + 1) / 2, (real.float().clamp(-1, 1) + 1) / 2)

    # ----- results --------------------------------------------------------------------------------
    def compute(self) -> dict[str, float]:
        """{name: value}, plus kid_std and is_std. Raises a ConfigError when there are too few samples."""
        device = getattr(self, "device", torch.device("cpu"))
        n_fake, n_real = global_count(self.n_fake, device), global_count(self.n_real, device)
        for n in ("fid", "kid"):
            if n in self.metrics and min(n_fake, n_real) < 2:
                raise ConfigError(
                    f"{n.upper()} needs at least 2 generated and 2 real images to estimate feature statistics "
                    f"(covariance / unbiased MMD); got {n_fake} generated and {n_real} real. Raise num_samples "
                    f"(use >= 2048 for a FID comparable with published numbers)"
                )
        out: dict[str, float] = {}
        # KID and IS draw random subsets: a fixed seed makes them repeatable and equal on every rank.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for n, m in self.metrics.items():
                if n == "kid":
                    m.subset_size = min(self.kid_subset_size, n_fake, n_real)
                if n == "is":
                    m.splits = min(self.is_splits, n_fake)
                value = m.compute()
                if isinstance(value, tuple):
                    out[n], out[f"{n}_std"] = float(value[0]), float(value[1])
                else:
                    out[n] = float(value)
        return out

    def protocol(self) -> dict[str, dict]:
        """How each number was measured: sample counts, layer, resize, weights (for metrics.json)."""
        sizes = sorted(self.sizes)
        inception = {
            "network": "torch-fidelity InceptionV3 (inception-v3-compat)",
            "resize": RESIZE,
            "input_sizes": [list(s) for s in sizes],
            "mixed_sizes": len(sizes) > 1,
            "weights": str(resolve("inception", self.weights.get("inception"), download=False))
            if self.extractor is not None and not self.injected
            else "injected",
        }
        pair_resize = "generated image resized to its target's size (bilinear, antialias)" if self.pairs_resized else "none"
        layer = LAYER_NAMES.get(self.fid_feature, f"{self.fid_feature}-d pooled")
        lpips = {"net": self.lpips_net, "version": "LPIPS v0.1 linear layers (torchmetrics)"}
        per = {
            "fid": {**inception, "feature_layer": layer, "samples": self.n_fake, "reference_samples": self.n_real},
            "kid": {
                **inception,
                "feature_layer": layer,
                "samples": self.n_fake,
                "reference_samples": self.n_real,
                "subsets": self.kid_subsets,
                "subset_size": min(self.kid_subset_size, self.n_fake, self.n_real),
                "kernel": "polynomial, degree 3, gamma 1/d, coef 1",
            },
            "is": {
                **inception,
                "feature_layer": LAYER_NAMES["logits_unbiased"],
                "samples": self.n_fake,
                "splits": min(self.is_splits, self.n_fake),
            },
            "lpips": {**lpips, "pairs": self.n_pairs, "resize": pair_resize},
            "psnr": {"pairs": self.n_pairs, "data_range": "[0, 1]", "reduction": "mean of per-image PSNR", "resize": pair_resize},
            "ssim": {"pairs": self.n_pairs, "data_range": "[0, 1]", "window": "gaussian 11, sigma 1.5", "resize": pair_resize},
            "diversity": {**lpips, "inputs": self.n_diverse_inputs, "samples_per_input": self.diversity_samples, "pairs": "consecutive"},
            "sifid": {
                **inception,
                "feature_layer": LAYER_NAMES["64"] + ", every spatial position a sample",
                "resize": "none (native resolution, as SinGAN)",
                "samples": self.n_pairs,
            },
            "miou": {
                "segmenter": f"{type(self.segmenter).__module__}.{type(self.segmenter).__qualname__}",
                "classes": self.label_classes,
                "samples": self.n_labelled,
                "reduction": "mean over classes present in a label map or a prediction; don't-care pixels ignored",
                "resize": "segmenter scores resized to the label map (bilinear) when their sizes differ",
            },
        }
        return {n: {"higher_is_better": METRICS[n].higher_is_better, **per[n]} for n in self.names}
