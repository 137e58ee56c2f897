"""TOML engine files (containerd, CRI-O) read through tomlkit, which keeps comments, order and
indentation when we write them back."""

from __future__ import annotations

from typing import Optional

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.toml_document import TOMLDocument

from gpu_core.errors import ShimError, one_line


def parse(text: Optional[str], path: str, stage: str) -> TOMLDocument:
    """The document of ``text`` (empty when absent); a syntax error is ``<stage>: <path>: …``."""
    try:
        return tomlkit.parse(text or "")
    except TOMLKitError as exc:
        raise ShimError(stage, f"{path}: {one_line(str(exc), 300)}") from None


def same(path: str, a: str, b: str, stage: str) -> bool:
    """Whether two texts of one file mean the same, whatever their layout."""
    return parse(a, path, stage).unwrap() == parse(b, path, stage).unwrap()
