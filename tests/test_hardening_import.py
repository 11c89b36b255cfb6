"""ganforge-import on files that are no reference state dict: one ganforge error each, never a traceback
(issue 25, section 5: a text file ended in `KeyError: 101`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from ganforge.cli.import_weights import read_pth
from ganforge.utils.errors import CheckpointError
from tests.conftest import run_cli

IMPORT = str(Path(sys.executable).parent / "ganforge-import")


def _good(path: Path) -> Path:
    torch.save({"model.0.weight": torch.ones(2, 3, 4, 4), "model.0.bias": torch.zeros(2)}, path)
    return path


# each was a traceback before: KeyError (pickle's BINGET / LONG_BINGET of a missing memo entry), AttributeError
BAD_FILES = {
    "text_h": (lambda p: p.write_text("hello, these are my notes about the model\n"), "KeyError: 101"),
    "text_j": (lambda p: p.write_text("just a text file\n"), "not a readable torch state dict"),
    "html": (lambda p: p.write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>\n"), "not a readable torch state dict"),
    "truncated": (lambda p: p.write_bytes(_good(p).read_bytes()[:300]), "not a readable torch state dict"),
    "cut_at_the_end": (lambda p: p.write_bytes(_good(p).read_bytes()[:-40]), "not a readable torch state dict"),
    "empty": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "dict_of_non_tensors": (
        lambda p: torch.save({"model.0.weight": 1.5, "model.0.bias": "zeros"}, p),
        "2 entries are not name: tensor, e.g. 'model.0.weight': float",
    ),
    "state_dict_of_lists": (lambda p: torch.save({"state_dict": {"model.0.weight": [1.0, 2.0]}}, p), "'model.0.weight': list"),
    "integer_keys": (lambda p: torch.save({0: torch.ones(2)}, p), "e.g. 0: Tensor"),
    "a_tensor": (lambda p: torch.save(torch.ones(3), p), "holds a Tensor, not a state dict"),
    "a_list": (lambda p: torch.save([torch.ones(3)], p), "holds a list, not a state dict"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_file_that_is_no_state_dict_of_tensors_is_one_checkpoint_error(tmp_path, name):
    make, expected = BAD_FILES[name]
    path = tmp_path / "latest_net_G.pth"
    make(path)
    with pytest.raises(CheckpointError, match="G=") as err:
        read_pth(path, "G")
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_a_good_file_still_reads(tmp_path):
    sd = read_pth(_good(tmp_path / "g.pth"), "G")
    assert sorted(sd) == ["model.0.bias", "model.0.weight"]


def test_import_of_a_text_file_prints_one_line_and_exits_2(tmp_path):
    notes = tmp_path / "latest_net_G.pth"
    BAD_FILES["text_h"][0](notes)
    proc = run_cli(["model=pix2pix", f"G={notes}", f"output={tmp_path / 'o'}", "debug=tiny", "logger=csv"], script=IMPORT)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"G={notes} is not a readable torch state dict" in errors[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "o" / "imported.ckpt").exists()
