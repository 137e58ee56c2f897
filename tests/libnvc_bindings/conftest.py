"""Fixtures for the bindings tests: tiny stand-in libraries the loader must refuse."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

# Only nvc_version: enough for the loader's version check and its "lacks" check.
STUB_SOURCE = """
struct nvc_version { unsigned int major, minor, patch; const char *string; };
static const struct nvc_version v = { %d, %d, %d, "%d.%d.%d-stub" };
const struct nvc_version *nvc_version(void) { return &v; }
"""

StubBuilder = Callable[[tuple[int, int, int]], Path]
"""Builds (once per version) a shared library exporting only nvc_version()."""


@pytest.fixture(scope="session")
def version_stub(tmp_path_factory: pytest.TempPathFactory) -> StubBuilder:
    """Compile a stub libnvidia-container that exports only ``nvc_version``."""
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build the stub library"
    root = tmp_path_factory.mktemp("nvc-stub")
    built: dict[tuple[int, int, int], Path] = {}

    def build(version: tuple[int, int, int]) -> Path:
        if version not in built:
            name = "_".join(map(str, version))
            source = root / f"stub_{name}.c"
            source.write_text(STUB_SOURCE % (version * 2))
            target = root / f"libstub_{name}.so"
            subprocess.run([gcc, "-shared", "-fPIC", "-o", str(target), str(source)],
                           check=True, env={"PATH": "/usr/bin:/bin"})
            built[version] = target
        return built[version]

    return build
