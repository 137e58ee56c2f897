"""The OCI runtime-spec 1.2.1 config schema from ../shared, compiled once per test session.

Importable from any test as ``oci_schema`` (pyproject puts tests/support on sys.path)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "oci-runtime-spec-v1.2.1"


@functools.cache
def config_validator() -> Any:
    """A Draft-4 validator for config-schema.json with every schema file registered by name (the
    files refer to each other as ``defs.json`` and so on)."""
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    resources = [(path.name, Resource.from_contents(json.loads(path.read_text()),
                                                    default_specification=DRAFT4))
                 for path in sorted(SHARED.glob("*.json"))]
    registry: Registry[Any] = Registry().with_resources(resources)
    schema = json.loads((SHARED / "config-schema.json").read_text())
    return jsonschema.Draft4Validator(schema, registry=registry)


def config_errors(spec: Any) -> list[str]:
    """Each schema violation of ``spec`` as ``path: message``; empty when it validates."""
    return [f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
            for error in config_validator().iter_errors(spec)]
