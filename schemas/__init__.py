"""JSON Schemas shipped as package data; this module only says where they are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent


def load(name: str) -> dict[str, Any]:
    """Return the parsed schema ``name`` (for example ``config.schema.json``)."""
    with open(SCHEMA_DIR / name, encoding="utf-8") as stream:
        schema: dict[str, Any] = json.load(stream)
    return schema
