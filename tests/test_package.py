"""ganforge works as an installed package: the top-level conf/ and the embedded sample ship inside the wheel,
and an editable install finds conf/ where it is."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", "logs", "build", "dist", "*.egg-info")


def test_every_package_under_src_is_in_the_wheel():
    # pyproject.toml lists the packages by hand (its conf/ -> ganforge.conf mapping needs it): a package
    # missing there would be missing from the wheel.
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    src = REPO / "src"
    found = {".".join(p.parent.relative_to(src).parts) for p in src.rglob("__init__.py")}
    assert found - listed == set(), f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == {"ganforge.conf"}


def test_the_ganforge_command_prints_the_version_and_every_command(capsys):
    from ganforge import __version__
    from ganforge.cli.commands import COMMANDS, main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"ganforge {__version__}\n"
    main([])
    out = capsys.readouterr().out
    scripts = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"])
    assert set(COMMANDS) == scripts - {"ganforge"}, "commands.COMMANDS lists [project.scripts]"
    assert out.startswith(f"ganforge {__version__}\n") and all(f"  {name} " in out for name in COMMANDS)


@pytest.mark.slow
def test_wheel_trains_from_an_unrelated_directory(tmp_path):
    # From a copy: setuptools leaves build/ in the source tree it builds.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=COPY_IGNORE)
    (source / "conf" / "local" / "default.yaml").write_text("seed: 1\n")  # someone's own override
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = dist.glob("ganforge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ganforge/conf/train.yaml" in names and "ganforge/conf/model/pix2pix.yaml" in names
    assert not any(n.startswith("ganforge/conf/local/") for n in names), "conf/local/ is the builder's own"
    assert "ganforge/py.typed" in names
    assert {n.rsplit("/", 1)[-1] for n in names if "/licenses/" in n} == {"LICENSE", "NOTICE"}
    assert any(n.startswith("ganforge/assets/sample_edges2photo/train/") for n in names)

    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The wheel's copy, not this checkout's (editable) one; the dependencies come from this venv.
    env = {**os.environ, "PYTHONPATH": str(target), "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import ganforge.cli.app; print(ganforge.__file__, ganforge.cli.app.CONF_DIR)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0, where.stderr[-2000:]
    package, conf = where.stdout.split()
    assert Path(package).is_relative_to(target) and Path(conf) == target / "ganforge" / "conf", where.stdout
    version = subprocess.run([str(target / "bin" / "ganforge"), "--version"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert version.stdout.strip() == f"ganforge {wheel.name.split('-')[1]}", version.stdout + version.stderr
    run = subprocess.run(
        [str(target / "bin" / "ganforge-train"), "debug=fast_dev_run", "logger=csv"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (elsewhere / "logs").is_dir(), "the run writes its logs under the working directory"


@pytest.mark.slow
def test_editable_install_finds_the_top_level_conf(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=COPY_IGNORE)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # The dependencies (and setuptools) come from this interpreter's site-packages. A path in a .pth file
    # does not run the .pth files inside it, so this checkout's own editable install stays out.
    Path(purelib, "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"WANDB_MODE": "offline"}
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-build-isolation", "-e", str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [
            python,
            "-c",
            "import importlib.resources, ganforge.cli.app; print(ganforge.cli.app.CONF_DIR, importlib.resources.files('ganforge.conf'))",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0, where.stderr[-2000:]
    assert [Path(p) for p in where.stdout.split()] == [source / "conf"] * 2, where.stdout
    # An edit to the checkout's conf/ reaches the installed command.
    (source / "conf" / "local" / "default.yaml").write_text("# @package _global_\nseed: 1234\n")
    composed = subprocess.run(
        [venv / "bin" / "ganforge-train", "--cfg", "job"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert composed.returncode == 0, composed.stdout[-3000:] + composed.stderr[-3000:]
    assert "seed: 1234" in composed.stdout.splitlines()
