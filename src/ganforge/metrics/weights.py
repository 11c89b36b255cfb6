"""Pretrained weights for metrics and perceptual losses, found on disk before any download.

Lookup order for each network: the path given in config (`weights.<key>`), then
`$TORCH_HOME/hub/checkpoints/<file>` under the file name the library itself expects (so a file
pre-fetched by torch-fidelity or torchvision on any machine is reused as is). Only when both are
missing is the file downloaded; an offline machine then gets one message naming the file, its URL
and the folder to put it in (see docs/evaluation.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ganforge.utils.errors import ConfigError, GanforgeError


class PretrainedWeightsError(GanforgeError):
    """A pretrained network's weight file is not on disk and cannot be downloaded."""


@dataclass(frozen=True)
class WeightFile:
    key: str  # the config key: weights.<key>=<path>
    file: str  # the name the library looks for in $TORCH_HOME/hub/checkpoints
    url: str
    used_by: str


def _torchvision(arch: str, used_by: str) -> WeightFile:
    url = {
        "alexnet": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
        "squeezenet1_1": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
        "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    }[arch]
    return WeightFile(arch, url.rsplit("/", 1)[1], url, used_by)


WEIGHTS: dict[str, WeightFile] = {
    "inception": WeightFile(
        "inception",
        "weights-inception-2015-12-05-6726825d.pth",
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
        "FID, KID, IS, SIFID (torch-fidelity's InceptionV3)",
    ),
    "alexnet": _torchvision("alexnet", "LPIPS net=alex, diversity"),
    "vgg16": _torchvision("vgg16", "LPIPS net=vgg"),
    "squeezenet1_1": _torchvision("squeezenet1_1", "LPIPS net=squeeze"),
    "vgg19": _torchvision("vgg19", "VGG perceptual loss (SPADE)"),
}
#: LPIPS backbone per torchmetrics `net_type`; its linear layers ship inside the torchmetrics wheel.
LPIPS_BACKBONES = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}


def hub_checkpoints() -> Path:
    """`$TORCH_HOME/hub/checkpoints` (torch.hub's cache), read at call time so TORCH_HOME set later counts."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve(key: str, configured: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The local file of a pretrained network: the configured path, else the torch.hub cache,
    else downloaded into the cache (hash-checked as torch.hub does)."""
    spec = WEIGHTS[key]
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise ConfigError(f"weights.{key}={path} does not exist; give the path of {spec.file} ({spec.used_by})")
        return path
    cached = hub_checkpoints() / spec.file
    if cached.is_file():
        return cached
    if download:
        cached.parent.mkdir(parents=True, exist_ok=True)
        prefix = torch.hub.HASH_REGEX.search(spec.file)
        try:
            torch.hub.download_url_to_file(spec.url, str(cached), prefix.group(1) if prefix else None, progress=True)
            return cached
        except (OSError, RuntimeError):  # URLError is an OSError; a hash mismatch is a RuntimeError
            pass
    raise PretrainedWeightsError(
        f"{spec.file} ({spec.used_by}) is not on this machine and could not be downloaded. "
        f"Download {spec.url} on a connected machine and put it in {cached.parent}/ "
        f"(or set TORCH_HOME, or weights.{key}=<path to the file>); see docs/evaluation.md"
    )


@contextlib.contextmanager
def hub_cache_with(key: str, path: Path):
    """Make torch.hub find `path` under the name its library expects, for libraries that only
    load through torch.hub (torchvision backbones inside torchmetrics' LPIPS)."""
    spec = WEIGHTS[key]
    if path.resolve() == (hub_checkpoints() / spec.file).resolve():
        yield
        return
    with tempfile.TemporaryDirectory(prefix="ganforge-hub-") as tmp:
        link = Path(tmp) / "hub" / "checkpoints" / spec.file
        link.parent.mkdir(parents=True)
        try:
            link.symlink_to(path.resolve())
        except OSError:  # no symlinks (some Windows setups): a copy works the same
            shutil.copy(path, link)
        # TORCH_HOME, not torch.hub.set_dir: set_dir cannot be undone and would pin the cache for good.
        old_home, old_dir = os.environ.get("TORCH_HOME"), torch.hub.get_dir()
        os.environ["TORCH_HOME"] = tmp
        pinned = Path(torch.hub.get_dir()) != Path(tmp) / "hub"  # the user called set_dir: follow suit
        if pinned:
            torch.hub.set_dir(str(Path(tmp) / "hub"))
        try:
            yield
        finally:
            if old_home is None:
                os.environ.pop("TORCH_HOME", None)
            else:
                os.environ["TORCH_HOME"] = old_home
            if pinned:
                torch.hub.set_dir(old_dir)


def load_vgg19(path: str | os.PathLike | None = None) -> torch.nn.Module:
    """torchvision's ImageNet VGG19 (for perceptual losses), from a local file when there is one."""
    import torchvision

    model = torchvision.models.vgg19(weights=None)
    file = resolve("vgg19", path)
    try:
        model.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    except Exception as e:  # noqa: BLE001 - any load failure means "not this network's weights"
        raise PretrainedWeightsError(f"{file} is not torchvision's VGG19 weight file ({type(e).__name__}: {e})") from e
    return model.eval()
