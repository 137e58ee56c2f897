"""scripts/bootstrap: it installs everything the tests read, and nothing reads outside the clone."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import oci_schema

ROOT = Path(__file__).resolve().parents[2]


def bootstrap_packages() -> set[str]:
    text = (ROOT / "scripts" / "bootstrap").read_text(encoding="utf-8")
    match = re.search(r'^PACKAGES="([^"]*)"', text, re.MULTILINE)
    assert match is not None
    return set(match.group(1).replace("\\\n", " ").split())


def test_bootstrap_installs_the_oci_schema_package() -> None:
    """The package holding the OCI schemas the tests validate against is in bootstrap's list."""
    assert oci_schema.PACKAGE in bootstrap_packages()


def test_oci_schema_directory_belongs_to_that_package() -> None:
    """dpkg names the bootstrap package as the owner of the schema file the tests read."""
    owner = subprocess.run(["dpkg", "-S", str(oci_schema.schema_dir() / "config-schema.json")],
                           capture_output=True, text=True, check=True).stdout
    assert owner.split(":")[0] == oci_schema.PACKAGE


def test_no_file_reads_a_directory_beside_the_clone() -> None:
    """No source, test or script names the sibling `shared` directory of a developer checkout."""
    sibling = re.compile(r"\.\./" + "shared" + r"|/work/" + "shared" + r"|parent / \"" + "shared")
    offenders = [str(path.relative_to(ROOT)) for top in ("tests", "scripts", "bench", "ctk",
                                                         "hook", "runtime_shim", "simulator",
                                                         "libnvc_bindings", "packaging")
                 for path in (ROOT / top).rglob("*") if path.is_file()
                 and "__pycache__" not in path.parts
                 and sibling.search(path.read_text(encoding="utf-8", errors="replace"))]
    assert offenders == []


def test_demo_installs_no_engines() -> None:
    """scripts/demo bootstraps with --demo: runc and the simulator's needs, no engines."""
    text = (ROOT / "scripts" / "bootstrap").read_text(encoding="utf-8")
    match = re.search(r'^DEMO_PACKAGES="([^"]*)"', text, re.MULTILINE)
    assert match is not None
    demo = set(match.group(1).split())
    assert {"runc", "busybox-static", "gcc"} <= demo
    assert not demo & {"docker.io", "podman", "containerd", "crun"}
    assert "./scripts/bootstrap --demo" in (ROOT / "scripts" / "demo").read_text()
