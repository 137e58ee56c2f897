"""Our version and the --version/--help recognition every command shares."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomlkit

from gpu_core import about

REPO = Path(__file__).resolve().parents[2]


def test_version_is_the_projects() -> None:
    """The version printed is pyproject.toml's, the one the packages are built with."""
    project = tomlkit.parse((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["version"] == about.VERSION


@pytest.mark.parametrize(("args", "asked"), [
    (["--version"], "version"), (["-version"], "version"), (["-v"], "version"),
    (["--help"], "help"), (["-help"], "help"), (["-h"], "help"), (["help"], "help"),
    (["prestart"], ""), ([], ""), (["--version", "prestart"], ""), (["--verbose"], ""),
])
def test_about_flag_recognises_only_a_lone_request(args: list[str], asked: str) -> None:
    """Only a lone version or help flag is a request; anything else is left to the command."""
    assert about.about_flag(args) == asked


def test_version_line_names_the_command() -> None:
    assert about.version_line("gpu-ctk") == f"gpu-ctk version {about.VERSION}"
