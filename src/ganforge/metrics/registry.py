"""The metrics ganforge computes, by name, and what a model must declare for each.

A model takes part through the GAN contract (ganforge.gans.base.GANModule): every model supplies
`metric_batch`; the flags `metric_paired`, `metric_multimodal` and `metric_single_image` say which
of the metrics below also apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganforge.utils.errors import ConfigError

#: requirement -> (check of the model and whether a segmenter is given, what is missing, said in the error)
REQUIREMENTS = {
    "images": (lambda m, seg: True, ""),
    "pairs": (lambda m, seg: m.metric_paired, "its outputs have no paired ground truth"),
    "diverse": (lambda m, seg: m.metric_multimodal, "it is not multimodal (one output per input)"),
    "labels": (lambda m, seg: getattr(m, "metric_label_classes", None) is not None, "it does not generate from label maps"),
    "segmenter": (
        lambda m, seg: seg,
        "it needs a segmentation model, which ganforge does not ship: give segmenter={_target_: <your class>, ...} "
        "(docs/evaluation.md, mIoU)",
    ),
    "single_image": (
        lambda m, seg: m.metric_single_image,
        "SIFID compares with the one training image of a single-image model (SinGAN); this model trains on a multi-image dataset",
    ),
}


@dataclass(frozen=True)
class MetricSpec:
    name: str
    needs: tuple[str, ...]
    inception: str | None  # the torch-fidelity Inception feature it reads
    higher_is_better: bool
    about: str


METRICS: dict[str, MetricSpec] = {
    s.name: s
    for s in (
        MetricSpec("fid", ("images",), "2048", False, "Fréchet Inception Distance"),
        MetricSpec("kid", ("images",), "2048", False, "Kernel Inception Distance (unbiased MMD, polynomial kernel)"),
        MetricSpec("is", ("images",), "logits_unbiased", True, "Inception Score of the generated images"),
        MetricSpec("lpips", ("images", "pairs"), None, False, "LPIPS between each output and its target"),
        MetricSpec("psnr", ("images", "pairs"), None, True, "PSNR between each output and its target"),
        MetricSpec("ssim", ("images", "pairs"), None, True, "SSIM between each output and its target"),
        MetricSpec("diversity", ("images", "diverse"), None, True, "BicycleGAN's LPIPS diversity score"),
        MetricSpec("sifid", ("images", "single_image"), "64", False, "Single-Image FID (SinGAN)"),
        MetricSpec(
            "miou",
            ("images", "labels", "segmenter"),
            None,
            True,
            "mean IoU of a user-supplied segmenter's prediction on the outputs against their label maps",
        ),
    )
}


def supported(model, segmenter: bool = False) -> list[str]:
    """Every metric the model can supply, in registry order (what `metrics: auto` computes)."""
    return [n for n, s in METRICS.items() if all(REQUIREMENTS[r][0](model, segmenter) for r in s.needs)]


def check_metrics(names, model, segmenter: bool = False) -> list[str]:
    """The requested metric names (`auto` = all supported), or a ConfigError before any work starts.
    `segmenter`: whether a segmentation model is given (mIoU needs one)."""
    model_name = type(model).__name__
    if names in (None, "auto"):
        return supported(model, segmenter)
    names = [names] if isinstance(names, str) else [str(n).lower() for n in names]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; choose from {sorted(METRICS)} or auto")
    if not names:
        raise ConfigError("metrics=[] asks for nothing; give a list such as [fid,kid] or auto")
    for n in names:
        for req in METRICS[n].needs:
            ok, why = REQUIREMENTS[req]
            if not ok(model, segmenter):
                raise ConfigError(
                    f"metric {n!r} cannot be computed for {model_name}: {why}. Metrics this model supports: {supported(model, segmenter)}"
                )
    return list(dict.fromkeys(names))
