"""Evaluation metrics (FID, KID, IS, LPIPS, PSNR, SSIM, diversity, SIFID) on torchmetrics and
torch-fidelity, with pretrained weights found offline first (see docs/evaluation.md)."""

from ganforge.metrics.registry import METRICS, check_metrics, supported
from ganforge.metrics.suite import MetricSuite
from ganforge.metrics.weights import (
    WEIGHTS,
    PretrainedWeightsError,
    load_vgg19,
    resolve,
)

__all__ = ["METRICS", "WEIGHTS", "MetricSuite", "PretrainedWeightsError", "check_metrics", "load_vgg19", "resolve", "supported"]
