"""The metrics ganforge computes, by name, and what a model must supply for each.

A GAN module takes part through a small protocol (all images are batches in [-1, 1]):
  * `metric_batch(batch) -> {"fake": images, "real": images}`: generated images and the real
    images they are compared with (every metric needs it);
  * `metric_paired = True`: fake[i] and real[i] show the same content (pix2pix), which LPIPS,
    PSNR and SSIM need;
  * `sample_diverse(batch, n) -> (n, B, C, H, W)`: n outputs per input with different latents
    (multimodal models such as BicycleGAN), for the diversity score;
  * `metric_single_image = True`: the model is trained on one image (SinGAN), for SIFID.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganforge.errors import ConfigError

#: requirement -> (model check, what is missing, said in the error)
REQUIREMENTS = {
    "images": (lambda m: callable(getattr(m, "metric_batch", None)), "it has no metric_batch(batch) method"),
    "pairs": (lambda m: bool(getattr(m, "metric_paired", False)), "its outputs have no paired ground truth"),
    "diverse": (
        lambda m: callable(getattr(m, "sample_diverse", None)),
        "it is not multimodal (no sample_diverse(batch, n): one output per input)",
    ),
    "single_image": (
        lambda m: bool(getattr(m, "metric_single_image", False)),
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
        names = supported(model)
        if not names:
            raise ConfigError(f"{model_name} supplies no metric: it has no metric_batch(batch) method")
        return names
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
