"""Spec mode (README §Spec mode) for end-to-end tests: the simulated host's configuration with
``mode: spec``, one shell probe that prints what a GPU container sees, and the checks every
engine's test makes on its output.

Importable as ``spec_mode`` (pyproject puts tests/support on sys.path).
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

if TYPE_CHECKING:
    from containers import Bundle, Runtime

    from simulator.testing import SimHost

SPEC_HOOK = str(Path(sys.executable).parent / "gpu-container-spec-hook")
"""The venv's console script of the lean hook, as tests point ``hook.path`` at the venv's."""

SPEC_HOOK_NAME = "gpu-container-spec-hook"
LIB_DIRS = ("/usr/lib64", "/usr/lib/x86_64-linux-gnu")
"""Where libnvidia-container puts the libraries: lib64 for the busybox image (no
/etc/debian_version), the multiarch directory for a Debian one."""

PROBE = ("echo '== dev'; ls -l /dev; echo '== open'; head -c1 /dev/nvidia{minor}; "
         "echo '== libs'; ls /usr/lib64 /usr/lib/x86_64-linux-gnu 2>/dev/null; "
         "echo '== smi'; nvidia-smi -L; "
         "echo '== params'; cat /proc/driver/nvidia/params; "
         "echo '== gpus'; ls /proc/driver/nvidia/gpus; "
         "echo '== cache'; base64 /etc/ld.so.cache; echo '== end'")
"""``/bin/sh -c`` script of a container given GPU ``minor``: its sections are read back with
``sections``. Opening the node gives ENXIO (the driver has no node behind it) when the device
cgroup allows it, EPERM when it does not; that message goes to stderr."""

_NODE = re.compile(r"^c\S+\s+\d+\s+\S+\s+\S+\s+(\d+),\s+(\d+)\s+.*\s(\S+)$")
_CACHE_LINE = re.compile(r"^\s+(\S+) \(([^)]*)\) => (\S+)$")


def config_document(host: SimHost, mode: str = "spec", **sections: Any) -> dict[str, Any]:
    """The simulated host's configuration with ``mode`` and (for spec) the venv's spec hook,
    then ``sections`` merged in (``runtimes`` replaced when given as a list)."""
    document: dict[str, Any] = yaml.safe_load(host.config_path.read_text())
    document["mode"] = mode
    if mode == "spec":
        document.setdefault("spec", {})["hook_path"] = SPEC_HOOK
    for name, values in sections.items():
        if isinstance(values, dict):
            document.setdefault(name, {}).update(values)
        else:
            document[name] = values
    return document


def write_config(host: SimHost, path: Path, mode: str = "spec", **sections: Any) -> Path:
    """``config_document`` written to ``path`` (log to the host's log file, as its own)."""
    path.write_text(yaml.safe_dump(config_document(host, mode, **sections)))
    return path


def sections(stdout: str) -> dict[str, str]:
    """PROBE's output split by its ``== name`` lines."""
    found: dict[str, list[str]] = {}
    current = ""
    for line in stdout.splitlines():
        if line.startswith("== "):
            current = line[3:].strip()
            found[current] = []
        elif current:
            found[current].append(line)
    return {name: "\n".join(lines) for name, lines in found.items()}


def nvidia_nodes(listing: str) -> dict[str, tuple[int, int]]:
    """``ls -l /dev`` output -> {name: (major, minor)} of the character nodes named nvidia*."""
    nodes = {}
    for line in listing.splitlines():
        match = _NODE.match(line)
        if match and match.group(3).startswith("nvidia"):
            nodes[match.group(3)] = (int(match.group(1)), int(match.group(2)))
    return nodes


@dataclass(frozen=True)
class CacheEntry:
    name: str
    flags: str
    path: str


def ld_cache(data: bytes) -> list[CacheEntry]:
    """The entries of an ld.so.cache, in the cache's order, as the host's ``ldconfig -p`` reads
    them (a cache it cannot read fails the test)."""
    with tempfile.NamedTemporaryFile(prefix="ld.so.cache.") as stream:
        stream.write(data)
        stream.flush()
        listed = subprocess.run(["ldconfig", "-p", "-C", stream.name], capture_output=True,
                                text=True, check=False)
    assert listed.returncode == 0, f"ld.so.cache unreadable: {listed.stderr}"
    return [CacheEntry(*m.groups()) for m in map(_CACHE_LINE.match, listed.stdout.splitlines())
            if m]


def cache_from_probe(section: str) -> list[CacheEntry]:
    """The container's ld cache from PROBE's base64 section."""
    text = "".join(section.split())
    assert text, "the container has no /etc/ld.so.cache"
    return ld_cache(base64.b64decode(text))


def first_path(entries: list[CacheEntry], name: str) -> str:
    """Where the dynamic loader finds ``name``: the first entry of that name (x86-64)."""
    for entry in entries:
        if entry.name == name and "x86-64" in entry.flags:
            return entry.path
    raise AssertionError(f"{name} not in the ld cache: {[e.name for e in entries]}")


def assert_sees_one_gpu(stdout: str, stderr: str, host: SimHost, index: int,
                        proc_gpu: bool = True) -> None:
    """What a spec-mode container given GPU ``index`` (PROBE) must show: its node and the
    control nodes, usable (ENXIO, not EPERM); no other GPU's node; the driver libraries;
    ``nvidia-smi -L`` naming that GPU alone; /proc/driver/nvidia with ModifyDeviceFiles 0 and
    that GPU's entry only (none with ``proc_gpu`` false: a CDI spec's shared hook cannot know
    the injected devices, README §cdi generate); and an ld cache that resolves libcuda.so.1 to
    a mounted library."""
    gpu = host.topology["gpus"][index]
    parts = sections(stdout)
    assert "end" in parts, stdout + stderr
    nodes = nvidia_nodes(parts["dev"])
    gpus = {name for name in nodes if name[6:].isdigit()}
    assert gpus == {f"nvidia{gpu['minor']}"}, parts["dev"]
    assert nodes[f"nvidia{gpu['minor']}"] == (195, gpu["minor"])
    assert "nvidiactl" in nodes, parts["dev"]
    assert "No such device or address" in stderr and "Operation not permitted" not in stderr, \
        stderr
    libs = set(parts["libs"].split())
    assert {"libcuda.so.1", "libnvidia-ml.so.1"} <= libs, parts["libs"]
    assert parts["smi"].splitlines() == [f"GPU 0: {gpu['name']} (UUID: {gpu['uuid']})"], \
        parts["smi"]
    assert re.search(r"^ModifyDeviceFiles: 0$", parts["params"], re.MULTILINE), parts["params"]
    assert parts["gpus"].split() == ([gpu["bus_id"][4:].lower()] if proc_gpu else []), \
        parts["gpus"]
    libcuda = first_path(cache_from_probe(parts["cache"]), "libcuda.so.1")
    assert libcuda.rsplit("/", 1)[0] in LIB_DIRS, libcuda


def spec_runtime(host: SimHost, make_runtime: Callable[..., Runtime],
                 write_config: Callable[[str], Path], low_level: str = "runc",
                 **sections: Any) -> Runtime:
    """A runtime (the e2e ``make_runtime`` fixture's) whose shim runs the simulated host in
    spec mode over ``low_level``, with ``sections`` merged into its configuration."""
    document = config_document(host, "spec", runtimes=[low_level], **sections)
    return make_runtime(write_config(yaml.safe_dump(document)), low_level)


def spec_hooks(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every hook entry of an OCI ``spec`` that runs our lean hook, whatever its stage."""
    return [entry for entries in spec.get("hooks", {}).values() for entry in entries
            if Path(entry.get("path", "")).name == SPEC_HOOK_NAME]


def container_cache(bundle: Bundle) -> list[CacheEntry]:
    """The ld cache a container on an overlay bundle was left with (the upper layer)."""
    return ld_cache((bundle.path / "upper" / "etc" / "ld.so.cache").read_bytes())


def assert_one_line(stderr: str) -> None:
    """A refused start says why in one line: runc's (carrying our hook's line) or crun's own,
    or, when crun adds a line of its own, one line naming our hook (crun's ``error executing
    hook `.../gpu-container-spec-hook```)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    naming = [line for line in lines if SPEC_HOOK_NAME in line]
    assert len(lines) == 1 or len(naming) == 1, stderr
