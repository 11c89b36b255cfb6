"""notebooks/evaluate.ipynb runs headless on a real debug=tiny checkpoint and is committed without outputs."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

pytestmark = pytest.mark.slow
NOTEBOOK = REPO / "notebooks" / "evaluate.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_evaluate_notebook_runs_on_a_tiny_checkpoint(tmp_path, tiny_checkpoint, fake_torch_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(fake_torch_home))  # the kernel inherits it
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Inject parameters after the cell tagged "parameters", as papermill does.
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    params = {
        "ckpt_path": str(tiny_checkpoint),
        "output": str(tmp_path / "eval"),
        "overrides": ["lpips_net=squeeze", "fid_feature=64", "kid_subsets=10"],
    }
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in params.items())))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 2  # the sample grid and the loss curves
    text = "".join(o.get("text", "") + json.dumps(o.get("data", {})) for o in outputs)
    assert "fid" in text and "not multimodal" in text
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["model"] == "pix2pix"  # the registered model name
