"""A plain ``pip install`` (a wheel) carries everything the installed commands read at run time:
``python3 -m runtime_shim.launcher runtime DEST`` renders launcher.sh from the installed copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomlkit

REPO = Path(__file__).resolve().parents[2]


def sources() -> list[str]:
    """pyproject.toml, the README it names, and every top-level package it lists."""
    document = tomlkit.parse((REPO / "pyproject.toml").read_text()).unwrap()
    packages = document["tool"]["setuptools"]["packages"]
    return ["pyproject.toml", "README.md", *sorted({name.split(".")[0] for name in packages})]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel (from a copy, so no build files land in the clone) and
    unpacked with pip into a directory of its own."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in sources():
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(work / "dist"), str(source)], check=True, capture_output=True)
    (wheel,) = (work / "dist").glob("*.whl")
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)], check=True, capture_output=True)
    return target


def test_wheel_holds_the_launcher_template(installed: Path) -> None:
    """launcher.sh is package data: it is in the installed runtime_shim package."""
    assert (installed / "runtime_shim" / "launcher.sh").read_bytes() == \
        (REPO / "runtime_shim" / "launcher.sh").read_bytes()


def test_installed_copy_renders_the_runtime_launcher(installed: Path, tmp_path: Path) -> None:
    """`python3 -m runtime_shim.launcher runtime DEST` from the installed copy (not this
    checkout) writes an executable launcher."""
    dest = tmp_path / "gpu-container-runtime"
    probe = ("import runtime_shim, sys; assert runtime_shim.__file__.startswith(sys.argv[1]), "
             "runtime_shim.__file__; from runtime_shim.launcher import main; "
             "sys.exit(main(['runtime', sys.argv[2]]))")
    done = subprocess.run([sys.executable, "-c", probe, str(installed), str(dest)],
                          capture_output=True, text=True, cwd=tmp_path, check=False,
                          env={**os.environ, "PYTHONPATH": str(installed)})
    assert done.returncode == 0, done.stderr
    assert dest.read_text().startswith("#!/bin/sh\n") and os.access(dest, os.X_OK)
