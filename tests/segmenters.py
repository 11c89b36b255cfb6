"""Stand-in segmentation models for the mIoU hook (`ganforge-eval segmenter={_target_: ...}`): real
segmenters (DeepLab, DRN, UperNet) are the user's; these make the metric's math checkable."""

from __future__ import annotations

import torch
from torch import nn


class FixedPrediction(nn.Module):
    """Predicts `prediction` (H, W class ids) for every image, as one-hot scores at half its size
    (so the suite's resize to the label map is exercised)."""

    def __init__(self, prediction: torch.Tensor, num_classes: int):
        super().__init__()
        self.register_buffer("scores", nn.functional.one_hot(prediction.long(), num_classes).permute(2, 0, 1).float())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        small = nn.functional.interpolate(self.scores[None], scale_factor=0.5, mode="nearest")
        return small.expand(len(images), -1, -1, -1)


class BrightnessSegmenter(nn.Module):
    """Class = the image's mean brightness bucket per pixel: a deterministic segmenter any output can run through."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        bucket = ((images.mean(1) + 1) / 2 * self.num_classes).long().clamp(0, self.num_classes - 1)
        return nn.functional.one_hot(bucket, self.num_classes).permute(0, 3, 1, 2).float()
