"""torch-fidelity's InceptionV3, loaded from a local weight file, shared by FID, KID, IS and SIFID.

The network runs once per batch for every metric that needs it: torchmetrics' FID/KID/IS then get
the features through `Precomputed` (their documented custom-`feature` hook), so asking for three
Inception metrics costs one Inception pass, as in torch-fidelity itself.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torchmetrics import Metric
from torchmetrics.image.fid import FrechetInceptionDistance

from ganforge.metrics.weights import PretrainedWeightsError, resolve

#: how every image reaches Inception's 299x299 input, whatever its size (recorded in metrics.json)
RESIZE = "bilinear to 299x299 as TensorFlow 1.x (torch-fidelity's interpolate_bilinear_2d_like_tensorflow1x)"
LAYER_NAMES = {
    "2048": "pool3 (2048-d)",
    "768": "Mixed_6e, average-pooled (768-d)",
    "192": "second max-pool, average-pooled (192-d)",
    "64": "first max-pool (64-d)",
    "logits_unbiased": "logits_unbiased (1008-d)",
}


def load_inception(features: list[str], weights_path: str | None = None) -> FeatureExtractorInceptionV3:
    """torch-fidelity's Inception (the TF FID network) returning `features` for uint8 images."""
    path = resolve("inception", weights_path)
    try:
        return FeatureExtractorInceptionV3("inception-v3-compat", list(features), feature_extractor_weights_path=str(path))
    except (RuntimeError, KeyError, EOFError, OSError) as e:
        raise PretrainedWeightsError(f"{path} is not torch-fidelity's Inception weight file ({type(e).__name__}: {e})") from e


class Precomputed(nn.Module):
    """A torchmetrics `feature=` module for features computed once outside the metric."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def spatial_features(net: FeatureExtractorInceptionV3, images_u8: torch.Tensor) -> torch.Tensor:
    """(B, H'*W', 64): every position after Inception's first max-pool is a sample, at the image's
    own resolution, as SinGAN's SIFID does (pytorch-fid block 0, no resize)."""
    x = (images_u8.float() - 128) / 128  # torch-fidelity's input normalization
    for layer in (net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, net.MaxPool_1):
        x = layer(x)
    return x.flatten(2).transpose(1, 2)


class SIFID(Metric):
    """Single-image FID (Shaham et al. 2019): for each generated image, the Fréchet distance between
    the distributions of its spatial Inception features and the real image's; the mean over images."""

    higher_is_better = False
    full_state_update = False

    def __init__(self, net: FeatureExtractorInceptionV3, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.add_state("scores", [], dist_reduce_fx="cat")

    def update(self, fake_u8: torch.Tensor, real_u8: torch.Tensor) -> None:
        fake, real = spatial_features(self.net, fake_u8), spatial_features(self.net, real_u8)
        for f, r in zip(fake, real):
            fid = FrechetInceptionDistance(feature=Precomputed(f.shape[1])).to(f.device)
            fid.update(r, real=True)
            fid.update(f, real=False)
            self.scores.append(fid.compute().reshape(1).float())

    def compute(self) -> torch.Tensor:
        scores = torch.cat(self.scores) if isinstance(self.scores, list) else self.scores
        return scores.mean()
