"""Loading a checkpoint never runs code from it, and every malformed file gives one clear message."""

from __future__ import annotations

import zipfile

import pytest
import torch

import ganforge
from ganforge.gans.checkpoint import FORMAT_VERSION
from ganforge.models.loading import read_checkpoint
from ganforge.utils.errors import CheckpointError
from tests.conftest import PREDICT, run_cli


class _Payload:
    """Unpickling this with weights_only=False would create `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_checkpoint(tmp_path, marker):
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "ganforge": {"config": {"model": {}}}, "payload": _Payload(marker)}, path)
    return path


@pytest.mark.slow
def test_a_pickle_that_would_create_a_file_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = _crafted_checkpoint(tmp_path, marker)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="nothing in it was run"):
        read_checkpoint(path)
    assert not marker.exists()
    # The same file through the real CLI: exit 2, one message, no traceback, no file.
    proc = run_cli([f"ckpt_path={path}", f"input={tmp_path}", f"output={tmp_path / 'out'}"], script=PREDICT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "nothing in it was run" in proc.stderr
    assert not marker.exists()
    # And as a resume checkpoint of train.py.
    proc = run_cli(["debug=fast_dev_run", "logger=csv", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode == 2 and "nothing in it was run" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def _good(tiny_checkpoint):
    return torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, expected",
    [
        ("empty", "is empty"),
        ("truncated", "truncated or not a torch file"),
        ("text", "truncated or not a torch file"),
        ("not_a_dict", "no state_dict"),
        ("no_config", "not written by ganforge-train"),
        ("newer_format", "newer than this ganforge reads"),
    ],
)
def test_malformed_files_give_one_message(tmp_path, tiny_checkpoint, case, expected):
    path = tmp_path / f"{case}.ckpt"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        data = tiny_checkpoint.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "text":
        path.write_text("this is not a checkpoint\n")
    elif case == "not_a_dict":
        torch.save([1, 2, 3], path)
    elif case == "no_config":
        ckpt = _good(tiny_checkpoint)
        del ckpt["ganforge"]
        torch.save(ckpt, path)
    elif case == "newer_format":
        ckpt = _good(tiny_checkpoint)
        ckpt["ganforge"]["format_version"] = FORMAT_VERSION + 1
        torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=expected):
        read_checkpoint(path)
    proc = run_cli([f"ckpt_path={path}", f"input={tmp_path}", f"output={tmp_path / 'out'}"], script=PREDICT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and expected in proc.stderr


@pytest.mark.slow
def test_missing_state_dict_keys_are_named(tmp_path, tiny_checkpoint):
    ckpt = _good(tiny_checkpoint)
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("netG.model.model.1")}
    torch.save(ckpt, tmp_path / "partial.ckpt")
    with pytest.raises(CheckpointError, match=r"missing \(e\.g\. netG\.model\.model\.1"):
        ganforge.load(tmp_path / "partial.ckpt")


@pytest.mark.slow
def test_a_foreign_target_in_the_stored_config_is_refused(tmp_path, tiny_checkpoint):
    marker = tmp_path / "called"
    ckpt = _good(tiny_checkpoint)
    # A _target_ is a call: this one would write a file if instantiated.
    ckpt["ganforge"]["config"]["model"]["netG"] = {"_target_": "pathlib.Path.touch", "self": str(marker)}
    torch.save(ckpt, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointError, match=r"model\.netG\._target_='pathlib\.Path\.touch' is not a ganforge network; refused"):
        ganforge.load(tmp_path / "foreign.ckpt")
    proc = run_cli([f"ckpt_path={tmp_path / 'foreign.ckpt'}", f"input={tmp_path}", f"output={tmp_path / 'out'}"], script=PREDICT)
    assert proc.returncode == 2 and "pathlib.Path.touch" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_checkpoints_load_with_weights_only(tiny_checkpoint):
    assert zipfile.is_zipfile(tiny_checkpoint)
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)  # raises on any pickled object
    assert ckpt["ganforge"]["format_version"] == FORMAT_VERSION
    model = ganforge.load(tiny_checkpoint)
    assert model.model_name == "pix2pix" and ckpt["ganforge"]["config"]["model"]["_target_"] == "ganforge.gans.pix2pix.Pix2Pix"
    for key, value in model.state_dict().items():
        assert torch.equal(ckpt["state_dict"][key], value), key
