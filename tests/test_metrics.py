"""Metric math against known values, and the offline weight lookup with weight files made here
in each library's own format (random kaiming weights: the loading path is real, the numbers are not
the published Inception's)."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from ganforge.metrics import (
    MetricSuite,
    PretrainedWeightsError,
    check_metrics,
    load_vgg19,
    resolve,
)
from ganforge.metrics.weights import WEIGHTS
from ganforge.utils.errors import ConfigError
from tests.conftest import SHARED_DATA

INCEPTION_FILE = WEIGHTS["inception"].file
SQUEEZE_FILE = WEIGHTS["squeezenet1_1"].file


@pytest.fixture
def torch_home(fake_torch_home, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(fake_torch_home))
    return fake_torch_home


@pytest.fixture
def offline(monkeypatch):
    """No network, even on a connected machine."""

    def fail(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)


def frogs(n: int, offset: int = 0) -> torch.Tensor:
    """n real 32x32 CIFAR-10 frogs in [-1, 1]."""
    from PIL import Image

    files = sorted((SHARED_DATA / "cifar10_frog" / "train" / "frog").glob("*.jpg"))[offset : offset + n]
    arr = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1


# ----- injected feature extractor: the metric math through the same path as images ------------------
class TableExtractor(nn.Module):
    """Reads an index from each image's first pixels and returns that row of a feature table, so
    known feature sets go through the suite exactly as images do (uint8 conversion included)."""

    def __init__(self, table: dict[str, torch.Tensor]):
        super().__init__()
        self.table = table
        self.feature_dims = {k: v.shape[1] for k, v in table.items()}

    def forward(self, u8: torch.Tensor):
        idx = u8[:, 0, 0, 0].long() * 256 + u8[:, 1, 0, 0].long()
        return tuple(self.table[k][idx] for k in sorted(self.table))


def index_images(indices) -> torch.Tensor:
    idx = torch.as_tensor(list(indices))
    img = torch.zeros(len(idx), 3, 4, 4)
    img[:, 0, 0, 0], img[:, 1, 0, 0] = (idx // 256).float(), (idx % 256).float()
    return img / 127.5 - 1


def exact_gaussian(n: int, mean: np.ndarray, cov: np.ndarray, rng) -> np.ndarray:
    """n samples whose sample mean and (n-1)-covariance are exactly `mean` and `cov`."""
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return mean + z @ np.linalg.cholesky(cov).T


def test_fid_of_two_gaussians_equals_the_closed_form():
    rng = np.random.default_rng(0)
    d, n = 4, 60
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a @ a.T + 0.5 * np.eye(d), b @ b.T + 0.5 * np.eye(d)
    x, y = exact_gaussian(n, mu1, s1, rng), exact_gaussian(n, mu2, s2, rng)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)

    table = {"2048": torch.from_numpy(np.concatenate([x, y]))}
    suite = MetricSuite(["fid"], feature_extractor=TableExtractor(table))
    suite.update(index_images(range(n, 2 * n)), index_images(range(n)))
    assert suite.compute()["fid"] == pytest.approx(expected, rel=1e-6)
    assert suite.protocol()["fid"]["weights"] == "injected"


def test_kid_of_identical_sets_is_near_zero_and_is_of_constant_predictions_is_one():
    rng = np.random.default_rng(1)
    n = 400
    feats = torch.from_numpy(np.concatenate([rng.normal(size=(n, 8)), rng.normal(size=(n, 8)) + 1.0]))
    logits = torch.zeros(2 * n, 1008, dtype=torch.float64)
    logits[:, 3] = 5.0  # every image "predicted" as the same class
    extractor = TableExtractor({"2048": feats, "logits_unbiased": logits})
    same, shifted = index_images(range(n)), index_images(range(n, 2 * n))
    suite = MetricSuite(["kid", "is"], kid_subsets=50, kid_subset_size=40, feature_extractor=extractor)
    suite.update(same, same)
    out = suite.compute()
    suite.reset()
    suite.update(shifted, same)
    # Unbiased MMD^2 between random subsets of one set: ~0 next to a mean shift of 1.
    assert abs(out["kid"]) < 0.05 * suite.compute()["kid"]
    assert out["is"] == pytest.approx(1.0, abs=1e-6)


# ----- real torch-fidelity Inception (fake weights) -------------------------------------------------
@pytest.mark.slow
def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(torch_home):
    real = frogs(12)
    suite = MetricSuite(["fid"], fid_feature=64)
    assert suite.protocol()["fid"]["weights"] == str(torch_home / "hub" / "checkpoints" / INCEPTION_FILE)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(real.shape, generator=gen)
    fids = []
    for sigma in (0.0, 0.1, 0.3, 0.6):
        suite.reset()
        suite.update((real + sigma * noise).clamp(-1, 1), real)
        fids.append(suite.compute()["fid"])
    assert abs(fids[0]) < 1e-6
    assert fids == sorted(fids) and fids[1] > 1e-4, fids


@pytest.mark.slow
def test_fid_equals_torch_fidelity_on_the_same_image_files(torch_home, tmp_path):
    from PIL import Image
    from torch_fidelity import calculate_metrics

    from ganforge.metrics.suite import to_uint8

    fake, real = frogs(10), frogs(10, offset=10)
    for name, batch in (("fake", fake), ("real", real)):
        (tmp_path / name).mkdir()
        for i, img in enumerate(to_uint8(batch)):
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(tmp_path / name / f"{i}.png")
    suite = MetricSuite(["fid"], fid_feature=64)
    suite.update(fake, real)
    ours = suite.compute()["fid"]
    theirs = calculate_metrics(
        input1=str(tmp_path / "fake"),
        input2=str(tmp_path / "real"),
        fid=True,
        feature_layer_fid="64",
        cache=False,
        cuda=False,
        feature_extractor_weights_path=str(torch_home / "hub" / "checkpoints" / INCEPTION_FILE),
        verbose=False,
    )["frechet_inception_distance"]
    assert ours == pytest.approx(theirs, rel=1e-4)


@pytest.mark.slow
def test_mixed_sizes_are_resized_by_inception_and_recorded(torch_home):
    real = frogs(4)
    big = torch.nn.functional.interpolate(real, size=48, mode="bilinear")
    images = [*real, *big]
    suite = MetricSuite(["fid"], fid_feature=64)
    suite.update(images, images)
    assert abs(suite.compute()["fid"]) < 1e-6
    proto = suite.protocol()["fid"]
    assert proto["mixed_sizes"] is True and proto["input_sizes"] == [[32, 32], [48, 48]]
    assert "299x299" in proto["resize"]


@pytest.mark.slow
def test_too_few_samples_for_fid_says_the_minimum(torch_home):
    suite = MetricSuite(["fid"], fid_feature=64)
    suite.update(frogs(1), frogs(1))
    with pytest.raises(ConfigError, match="at least 2 generated and 2 real"):
        suite.compute()


@pytest.mark.slow
def test_lpips_paired_metrics_and_diversity(torch_home):
    x = frogs(4)
    y = frogs(4, offset=4)
    suite = MetricSuite(["lpips", "psnr", "ssim", "diversity"], lpips_net="squeeze", diversity_samples=3)
    suite.update(x, x, diverse=torch.stack([x, x, x]))
    out = suite.compute()
    assert out["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert out["ssim"] == pytest.approx(1.0, abs=1e-4) and out["diversity"] == pytest.approx(0.0, abs=1e-6)
    suite.reset()
    suite.update(x, y, diverse=torch.stack([x, y, x]))
    out = suite.compute()
    assert out["lpips"] > 0 and out["diversity"] > 0 and out["psnr"] < 30
    assert suite.protocol()["diversity"]["inputs"] == 4


def test_sifid_of_an_image_with_itself_is_zero(torch_home):
    x = frogs(2)
    suite = MetricSuite(["sifid"])
    suite.update(x, x)
    assert abs(suite.compute()["sifid"]) < 1e-6
    suite.reset()
    suite.update(x, x.flip(0))
    assert suite.compute()["sifid"] > 0


# ----- offline lookup -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_config_path_comes_before_the_cache(fake_torch_home, tmp_path, monkeypatch, offline):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    inception = fake_torch_home / "hub" / "checkpoints" / INCEPTION_FILE
    squeeze = fake_torch_home / "hub" / "checkpoints" / SQUEEZE_FILE
    suite = MetricSuite(
        ["fid", "lpips"], fid_feature=64, lpips_net="squeeze", weights={"inception": str(inception), "squeezenet1_1": str(squeeze)}
    )
    assert suite.protocol()["fid"]["weights"] == str(inception)
    x = frogs(2)
    suite.update(x, x)
    assert suite.compute()["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert not (tmp_path / "empty" / "hub" / "checkpoints" / SQUEEZE_FILE).exists()


@pytest.mark.parametrize("names, key", [(["fid"], "inception"), (["lpips"], "alexnet")])
def test_missing_file_offline_names_file_url_and_folder(names, key, tmp_path, monkeypatch, offline):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PretrainedWeightsError) as e:
        MetricSuite(names)
    msg = str(e.value)
    spec = WEIGHTS[key]
    assert spec.file in msg and spec.url in msg and str(tmp_path / "hub" / "checkpoints") in msg


@pytest.mark.slow
def test_bad_config_path_and_wrong_file(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="weights.inception"):
        resolve("inception", tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    torch.save({"x": torch.zeros(1)}, junk)
    with pytest.raises(PretrainedWeightsError, match="not torch-fidelity's Inception"):
        MetricSuite(["fid"], weights={"inception": str(junk)})
    with pytest.raises(PretrainedWeightsError, match="not torchvision's VGG19"):
        load_vgg19(junk)
    with pytest.raises(PretrainedWeightsError, match=WEIGHTS["vgg19"].file):
        load_vgg19()


# ----- what a model can supply ------------------------------------------------------------------------
class Paired:
    """The metric flags of the GAN contract (ganforge.gans.base.GANModule), for a paired model."""

    metric_paired, metric_multimodal, metric_single_image = True, False, False


class Multimodal(Paired):
    metric_multimodal = True


def test_metrics_a_model_cannot_supply_are_config_errors():
    assert check_metrics("auto", Paired()) == ["fid", "kid", "is", "lpips", "psnr", "ssim"]
    assert "diversity" in check_metrics("auto", Multimodal())
    with pytest.raises(ConfigError, match="'diversity' cannot be computed for Paired: it is not multimodal"):
        check_metrics(["fid", "diversity"], Paired())
    with pytest.raises(ConfigError, match="multi-image dataset"):
        check_metrics(["sifid"], Paired())
    with pytest.raises(ConfigError, match="unknown metric"):
        check_metrics(["fid", "precision"], Paired())
    with pytest.raises(ConfigError, match="lpips_net"):
        MetricSuite(["lpips"], lpips_net="resnet")


def test_callback_metrics_of_pix2pix_do_not_depend_on_its_batch_size():
    # pix2pix generates in train mode (BatchNorm, dropout) one image at a time, as the reference test.py:
    # the callback's loader batch size changes neither the outputs nor the numbers.
    from types import SimpleNamespace

    from ganforge.callbacks.metrics import GenerativeMetrics
    from tests.test_pix2pix import eight_images, tiny_pix2pix

    torch.manual_seed(0)
    model = tiny_pix2pix()
    val = torch.utils.data.DataLoader([{"A": a, "B": b} for a, b in zip(eight_images(), eight_images().flip(0))])
    trainer = SimpleNamespace(val_dataloaders=val, global_rank=0, world_size=1, callbacks=[])
    values = []
    for batch_size in (1, 8):
        callback = GenerativeMetrics(metrics=["psnr", "ssim"], num_samples=8, batch_size=batch_size)
        callback.setup(trainer, model, "fit")
        values.append(callback.evaluate(trainer, model))
    assert values[0] == pytest.approx(values[1], rel=1e-5)


def test_miou_is_the_mean_over_present_classes_with_dont_care_ignored():
    from tests.segmenters import FixedPrediction

    # 4 classes (ids 0..3), don't-care = 4. Label and prediction on a 4x4 map, at 2x2 blocks:
    label = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 4, 4], [2, 2, 4, 4]])
    pred = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [2, 2, 2, 2], [2, 2, 2, 2]])
    # class 0: |∩| 4, |∪| 8 -> 0.5; class 1: 0 / 4 -> 0; class 2: 4 / 4 (the don't-care pixels do not count) -> 1;
    # class 3: absent from both -> left out. mIoU = (0.5 + 0 + 1) / 3
    suite = MetricSuite(["miou"], segmenter=FixedPrediction(pred, 4), label_classes=4)
    fake = torch.zeros(2, 3, 4, 4)
    suite.update(fake, fake, label=torch.stack([label, label])[:, None])
    assert suite.compute()["miou"] == pytest.approx(0.5, abs=1e-6)
    proto = suite.protocol()["miou"]
    assert proto["segmenter"] == "tests.segmenters.FixedPrediction" and proto["samples"] == 2 and proto["classes"] == 4


def test_miou_needs_a_label_map_model_and_a_segmenter_with_one_score_per_class():
    from tests.segmenters import BrightnessSegmenter

    class LabelModel:
        metric_paired = metric_multimodal = metric_single_image = False
        metric_label_classes = 3

    class ImageModel(LabelModel):
        metric_label_classes = None

    assert "miou" not in check_metrics("auto", LabelModel())  # auto leaves it out without a segmenter
    assert "miou" in check_metrics("auto", LabelModel(), segmenter=True)
    with pytest.raises(ConfigError, match=r"needs a segmentation model.*segmenter=\{_target_"):
        check_metrics(["miou"], LabelModel())
    with pytest.raises(ConfigError, match="does not generate from label maps"):
        check_metrics(["miou"], ImageModel(), segmenter=True)
    suite = MetricSuite(["miou"], segmenter=BrightnessSegmenter(5), label_classes=3)
    with pytest.raises(ConfigError, match=r"returned shape \(2, 5, 8, 8\); mIoU needs class scores \(B, 3, H, W\)"):
        suite.update(torch.zeros(2, 3, 8, 8), None, label=torch.zeros(2, 8, 8))
