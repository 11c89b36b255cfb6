"""The named datasets (pix2pix and CycleGAN archives from Berkeley) and their download.

`download_and_extract` is the only code here that touches the network. It fails with one
DatasetUnavailableError that says where to put the files when the machine is offline.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from tqdm.auto import tqdm

from ganforge.utils.errors import ConfigError, DatasetUnavailableError

log = logging.getLogger(__name__)

Kind = Literal["paired", "unpaired", "labelmap"]

# Tests replace this (monkeypatch `ganforge.data.datasets.urlopen`) or pass `opener=`.
urlopen: Callable = urllib.request.urlopen
TIMEOUT_S = 30
CHUNK = 1 << 20


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    url: str
    archive: Literal["tar.gz", "zip"]
    sha256: str | None
    kind: Kind
    folder: str  # the top-level folder the archive extracts to
    default_direction: Literal["AtoB", "BtoA"] = "AtoB"

    @property
    def filename(self) -> str:
        return f"{self.name}.{self.archive}"


_PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{}.tar.gz"
_CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{}.zip"

# pix2pix: no published checksums exist; the computed one is logged after a download.
# facades and cityscapes store photo|labels, so label->photo is BtoA (reference scripts).
_PIX2PIX: dict[str, Literal["AtoB", "BtoA"]] = {
    "facades": "BtoA",
    "cityscapes": "BtoA",
    "maps": "AtoB",
    "edges2shoes": "AtoB",
    "edges2handbags": "AtoB",
    "night2day": "AtoB",
}

# CycleGAN sha256 from TensorFlow Datasets `tensorflow_datasets/url_checksums/cycle_gan.txt`,
# published for the same archives at their former address
# https://people.eecs.berkeley.edu/~taesung_park/CycleGAN/datasets/<name>.zip.
_CYCLEGAN = {
    "apple2orange": "845a191e9af8926408ea597001cd03a452e3300a1f44a79fe329b3d59f6e3eb8",
    "summer2winter_yosemite": "167fe1726807a9d22bd106b4a6c0bd7953b688af924ac1bf967439c4961e49f9",
    "horse2zebra": "a74d9d392eecca9966b51287a76ca126af473d9de4f3e8fc0e9cda08fa1730a1",
    "monet2photo": "88f91b00fc228f97c9411fbf1880ec1d119c98f1722e4cfcfaa2fb35fac05b04",
    "cezanne2photo": "3a6c10ca21f9485862f1cbd707744b9dc258954a04631271d23a3605eeb63cff",
    "ukiyoe2photo": "02a2a2fb5ecf425ca1bf86aca7304377da64a2a1d3b86df54eb65e4068bf3b08",
    "vangogh2photo": "362c3473e70be0944bda08d49d660eafdc2854df55d697835b8186d1d79caaff",
    "maps": "639534f69dbf9f36bef8d6292a7698006361221f83f0285d7c9ca78afe6e8a9e",
    "cityscapes": "d2f6910fd056c1ee9873777ae838e7ac4a2c833598ae62a04188e5ab2f4ea036",
    "facades": "9a31ebf3a31b9b5cd195dd5bf62e9308e00cb94604d1019e3889ac84248695c0",
    "iphone2dslr_flower": "8fcb5e374d631b107e1d961b8c4cd0a186aa2a4ff3e279923f4c426128de7113",
}

# Keyed by (kind, name): maps, facades and cityscapes exist as both kinds.
REGISTRY: dict[tuple[str, str], DatasetSpec] = {
    **{("paired", n): DatasetSpec(n, _PIX2PIX_URL.format(n), "tar.gz", None, "paired", n, d) for n, d in _PIX2PIX.items()},
    **{("unpaired", n): DatasetSpec(n, _CYCLEGAN_URL.format(n), "zip", s, "unpaired", n) for n, s in _CYCLEGAN.items()},
}


def known_names(kind: Kind) -> list[str]:
    return sorted(n for k, n in REGISTRY if k == kind)


def get_spec(name: str, kind: Kind) -> DatasetSpec:
    try:
        return REGISTRY[(kind, name)]
    except KeyError:
        raise ConfigError(
            f"Unknown {kind} dataset {name!r}. Known {kind} datasets: {', '.join(known_names(kind))}. "
            f"For your own data in the standard layout use data={kind} data.root=<dir>"
        ) from None


def _expected_subdir(spec: DatasetSpec) -> str:
    return "train" if spec.kind == "paired" else "trainA"


def _offline_error(spec: DatasetSpec, root: Path, reason: object) -> DatasetUnavailableError:
    return DatasetUnavailableError(
        f"Could not download {spec.name} from {spec.url} ({reason}). This machine seems to be "
        f"offline. Download the archive on a connected machine and extract it so that "
        f"{root / _expected_subdir(spec)} exists (or point data.root=<dir> at a local copy)."
    )


def _download(spec: DatasetSpec, root: Path, part: Path, opener: Callable) -> str:
    """Stream the archive into `part` with a progress bar; return its sha256.

    Network failures (refused, DNS, timeout, reset) become one DatasetUnavailableError;
    local disk errors while writing stay OSErrors so they are not blamed on the network.
    """
    digest = hashlib.sha256()
    try:
        with open(part, "wb") as f:
            try:
                resp = opener(spec.url, timeout=TIMEOUT_S)
            except urllib.error.HTTPError as e:
                # The server answered, so the machine is online: say what it said.
                raise DatasetUnavailableError(
                    f"Could not download {spec.name} from {spec.url}: HTTP {e.code} {e.reason}. Download "
                    f"it elsewhere and extract it so that {root / _expected_subdir(spec)} exists."
                ) from None
            except OSError as e:  # URLError, socket.timeout and connection errors are OSErrors
                raise _offline_error(spec, root, getattr(e, "reason", e)) from None
            with resp, tqdm(total=_content_length(resp), unit="B", unit_scale=True, desc=spec.filename) as bar:
                while True:
                    try:
                        chunk = resp.read(CHUNK)
                    except OSError as e:
                        raise _offline_error(spec, root, f"connection lost: {e}") from None
                    if not chunk:
                        break
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def _content_length(resp) -> int | None:
    length = getattr(resp, "headers", {}).get("Content-Length")
    return int(length) if length else None


def _check_members(names: list[str], archive: Path) -> None:
    """Refuse absolute paths and '..' before extracting anything."""
    for n in names:
        p = PurePosixPath(n.replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts:
            raise DatasetUnavailableError(f"{archive} contains an unsafe path {n!r}; not extracting it.")


def _extract(archive: Path, kind: str, dest: Path) -> None:
    if kind == "zip":
        with zipfile.ZipFile(archive) as z:
            _check_members(z.namelist(), archive)
            z.extractall(dest)
    else:
        with tarfile.open(archive, "r:gz") as t:
            _check_members(t.getnames(), archive)
            t.extractall(dest, filter="data")  # also refuses links and devices pointing outside


def download_and_extract(spec: DatasetSpec, root: str | Path, opener: Callable | None = None) -> Path:
    """Download `spec` and extract it so that its content is at `root` (root/train for
    paired data, root/trainA for unpaired). Returns `root`.

    The archive is written to `root.parent/<file>.part`, checked against `spec.sha256`
    when known, extracted into a scratch folder beside `root` and its top folder renamed
    to `root`, then the archive is deleted.
    """
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise DatasetUnavailableError(
            f"{root} exists but has no {_expected_subdir(spec)}/, so {spec.name} cannot be extracted "
            f"there without mixing files. Move it away, or set data.root to an empty or new folder."
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    archive = root.parent / spec.filename
    part = archive.with_name(archive.name + ".part")
    log.info("Downloading %s from %s to %s", spec.name, spec.url, archive)
    sha = _download(spec, root, part, opener or urlopen)
    if spec.sha256 is None:
        log.info("%s sha256 = %s (no published checksum; pin this value to verify later downloads)", archive.name, sha)
    elif sha != spec.sha256:
        part.unlink(missing_ok=True)
        raise DatasetUnavailableError(
            f"Checksum mismatch for {spec.url}: expected sha256 {spec.sha256}, got {sha}. The download "
            f"was corrupted or the server's file changed; the partial file was deleted. Try again, or "
            f"extract a copy you trust so that {root / _expected_subdir(spec)} exists."
        )
    part.replace(archive)

    scratch = root.parent / f".{root.name}.extracting"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        _extract(archive, spec.archive, scratch)
        top = scratch / spec.folder
        if not top.is_dir():
            entries = [p for p in scratch.iterdir() if p.is_dir()]
            top = entries[0] if len(entries) == 1 else scratch
        if root.exists():
            root.rmdir()  # empty: checked above
        top.replace(root)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        archive.unlink()
        raise DatasetUnavailableError(f"{spec.url} did not give a valid {spec.archive} archive ({e}); it was deleted, try again.") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    archive.unlink()
    if not (root / _expected_subdir(spec)).is_dir():
        raise DatasetUnavailableError(f"{spec.filename} extracted to {root}, but {root / _expected_subdir(spec)} is missing.")
    log.info("Extracted %s to %s", spec.name, root)
    return root


# ----- label-map datasets (SPADE) ------------------------------------------------------------------
# Each is one or more archives, extracted beside `root` and moved into the layout data/labelmap.py reads.
# No sha256 is published for these archives; the computed one is logged after a download.
LABELMAP_ARCHIVES: dict[str, tuple[tuple[DatasetSpec, tuple[tuple[str, str], ...]], ...]] = {
    # ADE20K scene parsing (ade20k_dataset.py layout: ADEChallengeData2016/images|annotations/...)
    "ade20k": (
        (
            DatasetSpec(
                "ADEChallengeData2016",
                "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",
                "zip",
                None,
                "labelmap",
                "ADEChallengeData2016",
            ),
            (("ADEChallengeData2016", "ADEChallengeData2016"),),
        ),
    ),
    # COCO-Stuff label maps (github.com/nightrome/cocostuff) and the COCO 2017 photos, moved into SPADE's
    # train_img/ train_label/ val_img/ val_label/ layout (coco_dataset.py).
    "coco_stuff": (
        (
            DatasetSpec(
                "stuffthingmaps_trainval2017",
                "http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/stuffthingmaps_trainval2017.zip",
                "zip",
                None,
                "labelmap",
                "",
            ),
            (("train2017", "train_label"), ("val2017", "val_label")),
        ),
        (
            DatasetSpec("train2017", "http://images.cocodataset.org/zips/train2017.zip", "zip", None, "labelmap", "train2017"),
            (("train2017", "train_img"),),
        ),
        (
            DatasetSpec("val2017", "http://images.cocodataset.org/zips/val2017.zip", "zip", None, "labelmap", "val2017"),
            (("val2017", "val_img"),),
        ),
    ),
}

LABELMAP_LAYOUT_HELP = {
    "ade20k": "{root}/ADEChallengeData2016/images/training/ and .../annotations/training/ exist",
    "coco_stuff": "{root}/train_img/ (COCO train2017 photos), {root}/train_label/ (stuffthingmaps train2017), "
    "{root}/val_img/ and {root}/val_label/ exist",
}


def fetch_labelmap_dataset(name: str, root: str | Path, opener: Callable | None = None) -> Path:
    """Download and arrange a label-map dataset (`LABELMAP_ARCHIVES`) under `root`, with progress bars;
    offline, one DatasetUnavailableError says which files go where."""
    if name not in LABELMAP_ARCHIVES:
        raise ConfigError(
            f"Unknown label-map dataset {name!r}. Known: {', '.join(sorted(LABELMAP_ARCHIVES))}; "
            "for your own data use data=labelmaps data.image_dir=<photos> data.label_dir=<label maps>"
        )
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    where = LABELMAP_LAYOUT_HELP[name].format(root=root)
    for spec, moves in LABELMAP_ARCHIVES[name]:
        if all((root / dst).is_dir() for _, dst in moves):
            continue
        archive = root.parent / spec.filename
        part = archive.with_name(archive.name + ".part")
        log.info("Downloading %s from %s", spec.filename, spec.url)
        try:
            sha = _download(spec, root, part, opener or urlopen)
        except DatasetUnavailableError as e:
            raise DatasetUnavailableError(
                f"Could not download {spec.url} ({str(e).split(' (', 1)[-1].split(')', 1)[0]}). Download "
                f"{', '.join(s.url for s, _ in LABELMAP_ARCHIVES[name])} on a connected machine and extract them "
                f"so that {where} (or point data.root=<dir> at a local copy)."
            ) from None
        log.info("%s sha256 = %s (no published checksum)", spec.filename, sha)
        part.replace(archive)
        scratch = root.parent / f".{root.name}.{spec.name}.extracting"
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            _extract(archive, spec.archive, scratch)
            for src, dst in moves:
                found = scratch / src
                if not found.is_dir():
                    raise DatasetUnavailableError(f"{spec.filename} has no {src}/ folder; extract it by hand so that {where}")
                found.replace(root / dst)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
            raise DatasetUnavailableError(f"{spec.url} did not give a valid archive ({e}); delete {archive} and try again") from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        archive.unlink()
    return root
