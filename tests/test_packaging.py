"""``pip install .`` (not editable) gives a working command from any directory: the configs ship
inside the package, and the package list in pyproject.toml names every package of the tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
import tomllib
from setuptools import find_namespace_packages

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_lists_every_package():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        p for p in find_namespace_packages(str(ROOT), include=["domain_distil*", "lightning_modules*",
                                                              "datamodules*", "callbacks*"])
        if (ROOT / p.replace(".", "/") / "__init__.py").is_file() or p == "domain_distil.conf"
    }
    assert found - listed == set(), f"packages missing from pyproject.toml: {sorted(found - listed)}"
    assert listed - found - {"domain_distil.conf"} == set()


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs_from_another_directory(tmp_path):
    # Build from a copy: setuptools writes build/ and *.egg-info into the source folder.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".ci-venv", "cache", "outputs", "multirun", "wandb", "build", "*.egg-info", "__pycache__"))
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(wheels.glob("domain_distil-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = Path(subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    # The dependencies (torch, lightning, ...) come from this test's environment, appended after the
    # fresh site-packages; .pth files there (the editable checkout) are not processed, so only the
    # wheel provides domain_distil, lightning_modules, datamodules and callbacks.
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    if install.returncode != 0 and "no such option: --python" in install.stderr:
        pytest.skip("pip too old for --python")
    assert install.returncode == 0, install.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": "", "DOMAIN_DISTIL_CACHE": str(tmp_path / "cache")}
    where = subprocess.run([str(python), "-c", "import domain_distil, lightning_modules; "
                            "print(domain_distil.__file__); print(lightning_modules.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    assert all(str(purelib) in line for line in where.stdout.split()), where.stdout
    command = env_dir / "bin" / "domain-distil"
    result = subprocess.run([str(command), "task=list", "hydra.run.dir=."], cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "0 artifacts" in result.stdout
    result = subprocess.run([str(python), "-m", "domain_distil.cli", "task=homonyms", "--cfg", "job"],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "homonyms:" in result.stdout, result.stderr[-3000:]
    assert (purelib / "domain_distil" / "conf" / "config.yaml").is_file()
