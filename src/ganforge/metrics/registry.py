"""The metrics ganforge computes, by name, and what a model must declare for each.

A model takes part through the GAN contract (ganforge.gans.base.GANModule): every model supplies
`metric_batch`; the flags `metric_paired`, `metric_multimodal` and `metric_single_image` say which
of the metrics below also apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganforge.errors import ConfigError

#: requirement -> (model check, what is missing, said in the error)
REQUIREMENTS = {
    "images": (lambda m: True, ""),
    "pairs": (lambda m: m.metric_paired, "its outputs have no paired ground truth"),
    "diverse": (lambda m: m.metric_multimodal, "it is not multimodal (one output per input)"),
    "single_image": (
        lambda m: m.metric_single_image,
        "SIFID compares with the one training image of a single-image model (SinGAN); this model trains on a "
        "multi-image dataset",
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
    )
}


def supported(model) -> list[str]:
    """Every metric the model can supply, in registry order (what `metrics: auto` computes)."""
    return [n for n, s in METRICS.items() if all(REQUIREMENTS[r][0](model) for r in s.needs)]


def check_metrics(names, model) -> list[str]:
    """The requested metric names (`auto` = all supported), or a ConfigError before any work starts."""
    model_name = type(model).__name__
    if names in (None, "auto"):
        return supported(model)
    names = [names] if isinstance(names, str) else [str(n).lower() for n in names]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; choose from {sorted(METRICS)} or auto")
    if not names:
        raise ConfigError("metrics=[] asks for nothing; give a list such as [fid,kid] or auto")
    for n in names:
        for req in METRICS[n].needs:
            ok, why = REQUIREMENTS[req]
            if not ok(model):
                raise ConfigError(
                    f"metric {n!r} cannot be computed for {model_name}: {why}. "
                    f"Metrics this model supports: {supported(model)}"
                )
    return list(dict.fromkeys(names))
