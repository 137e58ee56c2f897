"""Programs the tests take from Debian packages that scripts/bootstrap unpacks into
``.venv/debian`` instead of installing (their packages would start system services)."""

from __future__ import annotations

import shutil
from pathlib import Path

UNPACKED = Path(__file__).resolve().parents[2] / ".venv" / "debian" / "usr" / "bin"


def debian_tool(name: str) -> str:
    """The unpacked ``name``, else the one on PATH; an AssertionError naming the package step
    when neither exists."""
    unpacked = UNPACKED / name
    if unpacked.is_file():
        return str(unpacked)
    found = shutil.which(name)
    assert found, f"{name} missing: scripts/bootstrap unpacks it into {UNPACKED.parent.parent}"
    return found
