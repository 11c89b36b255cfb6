"""The repository as committed: no file carries a path of the machine it was written on."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# An absolute path under a folder that is someone's machine: temp folders, home folders, work trees, mounts.
LOCAL_PATH = re.compile(r"(?<![\w.~$}/-])/((?:tmp|root|home|work|Users|var/folders|private/var|mnt|scratch)/[^\s'\"`)\],;:]*)")

# (file, path prefix without its leading slash) -> why it belongs there
ALLOWED = {
    ("README.md", "tmp/demo"): "the first run's transcript names its run folder: hydra.run.dir=/tmp/demo",
    ("docs/spade.md", "tmp/sppred"): "the predict command shown sets output=/tmp/sppred",
    ("docs/training.md", "tmp/nanrun"): "the error message quoted is that of a run whose folder was /tmp/nanrun",
    ("docs/export.md", "tmp/ho/doc"): "the refusal quoted names the resolved paths; that transcript ran in /tmp/ho/doc",
    ("tests/test_demo.py", "home/someone/secret.ckpt"): "a made-up secret path that the test checks is never served",
    ("tests/test_repository.py", ""): "this file: the examples below of what the check finds",
}


def tracked_text_files() -> dict[str, str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: no list of tracked files")
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    files = {}
    for name in names.decode().split("\0"):
        path = REPO / name
        if not name or not path.is_file():
            continue  # deleted in the work tree, not yet committed
        try:
            files[name] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images
    return files


def local_paths(name: str, text: str) -> list[str]:
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for m in LOCAL_PATH.finditer(line):
            if not any(name == f and m.group(1).startswith(prefix) for f, prefix in ALLOWED):
                found.append(f"{name}:{lineno}: /{m.group(1)}")
    return found


def test_no_tracked_file_holds_a_local_absolute_path():
    found = [hit for name, text in tracked_text_files().items() for hit in local_paths(name, text)]
    assert not found, (
        "local absolute paths in tracked files (use a relative path or <placeholder>, "
        "or add a reasoned entry to ALLOWED in tests/test_repository.py):\n" + "\n".join(found)
    )


@pytest.mark.parametrize(
    "line",
    [
        "[INFO] - using 36.3 GB on /tmp/sh1/train.",
        'DATA = "/home/alice/datasets/facades"',
        "see /work/main/logs/train/runs/x/train.log",
        "cache: /root/.cache/torch/hub",
    ],
)
def test_the_check_sees_a_local_path(line):
    assert local_paths("some_file.md", line)


@pytest.mark.parametrize(
    "line",
    [
        "ganforge-predict input=../shared/data/x output=out/",
        "https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix/tree/master/options",
        "${paths.root_dir}/work/x and ~/tmp/x and ./tmp/x",
        "$ python train.py hydra.run.dir=/tmp/demo",
    ],
)
def test_the_check_leaves_other_paths_alone(line):
    assert not local_paths("README.md", line)
