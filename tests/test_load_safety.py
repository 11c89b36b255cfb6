"""Loading never runs code: crafted checkpoints through every entry point (ganforge.load, predict, eval, export, the
demo's backend, the notebook's data helper). Each must leave no marker file and stop with one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import ganforge
from ganforge.utils.errors import CheckpointError, GanforgeError
from tests.conftest import EVAL, PREDICT, run_cli
from tests.test_models import PHOTO, tiny_module

EXPORT = str(Path(PREDICT).parent / "ganforge-export")


def _resolver_payload(marker: Path) -> str:
    """The report's payload: ${oc.create:...} builds a config after any _target_ check, which writes a pickle
    that numpy.load(allow_pickle=True) runs (os.system)."""
    code = list(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    stage = marker.parent / "stage2.pkl"
    payload = (
        "{_target_: builtins.dict, "
        f"w: {{_target_: pathlib.Path.write_bytes, _args_: [{{_target_: pathlib.Path, _args_: [{stage}]}}, "
        f"{{_target_: builtins.bytes, _args_: [{code}]}}]}}, "
        f"r: {{_target_: numpy.load, file: {stage}, allow_pickle: true}}}}"
    )
    return '${oc.create:"' + payload + '"}'


def payloads(marker: Path) -> dict[str, callable]:
    def resolver(c):
        c["ganforge"]["config"]["model"]["scheduler"]["note"] = _resolver_payload(marker)

    def data_target(c):
        c["ganforge"]["config"]["data"]["evil"] = {
            "_target_": "pathlib.Path.touch",
            "_args_": [{"_target_": "pathlib.Path", "_args_": [str(marker)]}],
        }

    def decode(c):
        c["ganforge"]["config"]["model"]["netG"]["ngf"] = "${oc.decode:'{a: ${oc.env:HOME}}'}"

    def merge(c):
        c["ganforge"]["config"]["model"]["netG"] = "${merge:{_target_: pathlib.Path.touch},{self: " + str(marker) + "}}"

    def sqlite_url(c):
        c["ganforge"]["config"]["data"]["root"] = "${sqlite_url:" + str(marker / "a" / "x.db") + "}"

    return {"resolver": resolver, "data_target": data_target, "oc.decode": decode, "merge": merge, "sqlite_url": sqlite_url}


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("good")
    return tiny_module("pix2pix", tmp).weights_checkpoint()


def crafted(good: dict, name: str, tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "marker_code_ran"
    ckpt = {**good, "ganforge": {**good["ganforge"], "config": _copy(good["ganforge"]["config"])}}
    payloads(marker)[name](ckpt)
    path = tmp_path / f"{name}.ckpt"
    torch.save(ckpt, path)
    return path, marker


def _copy(node):
    if isinstance(node, dict):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy(v) for v in node]
    return node


@pytest.mark.parametrize("name", ["resolver", "data_target", "oc.decode", "merge", "sqlite_url"])
def test_load_and_the_backends_refuse_or_ignore_every_payload(name, good, tmp_path):
    path, marker = crafted(good, name, tmp_path)
    try:
        ganforge.load(path)  # data_target: the data config is not what a model is built from
    except CheckpointError as e:
        assert "\n" not in str(e)
    from ganforge.cli.demo.backend import CheckpointBackend
    from ganforge.cli.evaluate import build_datamodule, data_config
    from ganforge.models.loading import read_checkpoint

    with pytest.raises(GanforgeError):
        CheckpointBackend({"ckpt_path": str(path), "use_ema": True}, tmp_path / "demo")
        stored = read_checkpoint(path)["ganforge"]["config"]["data"]
        build_datamodule(data_config(stored, None), str(path), batch_size=1, num_workers=0)  # the notebook's helper
    assert not marker.exists() and not (tmp_path / "stage2.pkl").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resolver", "data_target", "sqlite_url"])
@pytest.mark.parametrize("tool", ["predict", "eval", "export"])
def test_the_command_line_tools_refuse_every_payload(tool, name, good, tmp_path):
    path, marker = crafted(good, name, tmp_path)
    out = tmp_path / "out"
    args = {"predict": [f"input={PHOTO}"], "eval": ["metrics=[psnr]", "num_samples=2"], "export": []}[tool]
    script = {"predict": PREDICT, "eval": EVAL, "export": EXPORT}[tool]
    proc = run_cli([f"ckpt_path={path}", f"output={out}", *args], script=script)
    if name == "data_target" and tool != "eval":
        # only eval reads the data config: predict and export build the model from its spec alone, and run
        assert proc.returncode == 0, proc.stderr[-2000:]
    else:
        assert proc.returncode == 2, proc.stderr[-2000:]
        errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert not marker.exists() and not (tmp_path / "stage2.pkl").exists()


def _tampered(good: dict, tmp_path: Path, change) -> Path:
    ckpt = {**good, "ganforge": {**good["ganforge"], "config": _copy(good["ganforge"]["config"])}, "state_dict": dict(good["state_dict"])}
    change(ckpt)
    path = tmp_path / "tampered.ckpt"
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["ganforge"]["config"].update(data=["a", "list"]), "the stored run config's data is a list"),
        (lambda c: c["state_dict"].update({"netG.model.model.0.weight": "not a tensor"}), r"weight\(s\) are not tensors"),
        (lambda c: c.update(callbacks={"GeneratorEMA": {"nets": ["netG"]}}), "'nets' must be a mapping"),
        (lambda c: c.update(callbacks={"GeneratorEMA": {"nets": {"__class__": {}}}}), "names a net '__class__'"),
        (
            lambda c: c.update(
                callbacks={"GeneratorEMA": {"nets": {"netG": {"n_averaged": torch.tensor(3), "module.bogus": torch.zeros(1)}}}}
            ),
            "the EMA average of netG does not fit",
        ),
        (lambda c: c["ganforge"]["config"]["data"].update(crop_size=10_000_000), r"train_size=10000000 is out of range"),
    ],
)
def test_malformed_checkpoints_are_one_checkpoint_error(change, message, good, tmp_path):
    with pytest.raises(CheckpointError, match=message):
        ganforge.load(_tampered(good, tmp_path, change))


@pytest.mark.parametrize("module", ["paired.PairedDataModule", "unpaired.UnpairedDataModule", "image_folder.ImageFolderDataModule"])
def test_a_stored_data_key_no_data_module_takes_is_one_checkpoint_error(module):
    """The data modules pass the keys they share on to their base class (**options): the check reads both."""
    from ganforge.cli.evaluate import build_datamodule

    with pytest.raises(CheckpointError, match=r"DataModule takes no argument\(s\) \['evil'\]"):
        build_datamodule({"_target_": f"ganforge.data.{module}", "root": "x", "evil": 1}, "run.ckpt")


def test_a_stored_data_config_builds_with_its_own_and_its_base_class_keys():
    from ganforge.cli.evaluate import build_datamodule

    stored = {"_target_": "ganforge.data.paired.PairedDataModule", "root": "x", "direction": "BtoA", "load_size": 64}
    datamodule = build_datamodule(stored, "run.ckpt", crop_size=64, num_workers=0)
    assert (datamodule.hparams.direction, datamodule.hparams.load_size, datamodule.hparams.crop_size) == ("BtoA", 64, 64)


def test_non_finite_weights_load_with_a_warning_naming_them(good, tmp_path, caplog):
    def nan(c):
        c["state_dict"]["netG.model.model.0.weight"] = torch.full_like(c["state_dict"]["netG.model.model.0.weight"], float("nan"))

    model = ganforge.load(_tampered(good, tmp_path, nan))
    assert "netG.model.model.0.weight" in caplog.text and "NaN or infinite" in caplog.text
    assert model.check_finite() == ["netG.model.model.0.weight"]


# ----- fuzzing: random edits of a real checkpoint's stored config and EMA state ---------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
FUZZ = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _set(node, path, value):
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


@FUZZ
@given(data=st.data())
def test_random_edits_of_the_stored_config_load_or_give_one_checkpoint_error(data, good, tmp_path):
    config = _copy(good["ganforge"]["config"])
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(config) if p]  # again after each edit: an edit can remove what a path led to
        _set(config, data.draw(st.sampled_from(paths)), data.draw(JSON))
    path = _tampered(good, tmp_path, lambda c: c["ganforge"].update(config=config))
    try:
        ganforge.load(path)
    except GanforgeError:
        pass


NET_STATE = st.dictionaries(st.sampled_from(["n_averaged", "module.model.model.0.weight", "x"]), JSON | st.just(torch.ones(1)), max_size=3)


@FUZZ
@given(
    state=st.dictionaries(
        st.sampled_from(["nets", "decay", "n_averaged", "netG"]),
        JSON | st.dictionaries(st.sampled_from(["netG", "netE", "__class__", "module"]), JSON | NET_STATE, max_size=2),
        max_size=3,
    )
)
def test_random_ema_states_load_or_give_one_checkpoint_error(state, good, tmp_path):
    try:
        ganforge.load(_tampered(good, tmp_path, lambda c: c.update(callbacks={"GeneratorEMA": state})))
    except GanforgeError:
        pass
