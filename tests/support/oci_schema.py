"""The official OCI runtime-spec schemas, compiled once per test session.

The schemas come from Debian's ``golang-github-opencontainers-specs-dev``, which
``scripts/bootstrap`` installs: the tests need nothing outside the repository and its own set-up.
``GPU_SHIM_OCI_SCHEMA_DIR`` names another directory holding the same files. Importable from any
test as ``oci_schema`` (pyproject puts tests/support on sys.path)."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

PACKAGE = "golang-github-opencontainers-specs-dev"
SCHEMA_DIR = Path(os.environ.get(
    "GPU_SHIM_OCI_SCHEMA_DIR",
    "/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema"))


def schema_dir() -> Path:
    """The schema directory, or a one-line error naming the package that provides it."""
    if not (SCHEMA_DIR / "config-schema.json").is_file():
        raise FileNotFoundError(f"no OCI runtime-spec schemas in {SCHEMA_DIR}: install {PACKAGE} "
                                "(scripts/bootstrap does)")
    return SCHEMA_DIR


@functools.cache
def validator(name: str) -> Any:
    """A Draft-4 validator for ``name`` (``config-schema.json``, ``state-schema.json``) with every
    schema file registered by name (the files refer to each other as ``defs.json`` and so on)."""
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    where = schema_dir()
    resources = [(path.name, Resource.from_contents(json.loads(path.read_text(encoding="utf-8")),
                                                    default_specification=DRAFT4))
                 for path in sorted(where.glob("*.json"))]
    registry: Registry[Any] = Registry().with_resources(resources)
    schema = json.loads((where / name).read_text(encoding="utf-8"))
    return jsonschema.Draft4Validator(schema, registry=registry)


def config_validator() -> Any:
    """The validator of config.json."""
    return validator("config-schema.json")


def state_validator() -> Any:
    """The validator of the OCI state a hook reads on stdin."""
    return validator("state-schema.json")


def config_errors(spec: Any) -> list[str]:
    """Each schema violation of ``spec`` as ``path: message``; empty when it validates."""
    return [f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
            for error in config_validator().iter_errors(spec)]
