"""Guards for adversarial and fault tests: canary trees on the host, snapshots of the real host
paths an image's symlinks aim at, traps that record code from an image running on the host, and
overlay bundles.

Importable from any test as ``hostguard`` (pyproject puts tests/support on sys.path)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from containers import Bundle, tree_digest

HOST_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/passwd", "/etc/shadow",
              "/etc/hostname")
"""Real host files an image's symlinks point at: their bytes must never change."""

HOST_DIRS = ("/etc", "/etc/ld.so.conf.d", "/usr/lib/x86_64-linux-gnu", "/usr/lib64",
             "/usr/lib32", "/usr/bin", "/usr/local/cuda", "/lib/firmware", "/run", "/var/run",
             "/tmp", "/dev", "/proc/driver")
"""Real host directories those symlinks point at. Other tests and daemons write into some of
them (``/run``, ``/tmp``), so only names a driver mount or an ldconfig run would leave count."""

DRIVER_NAMES = re.compile(r"nvidia|libcuda|libnvcuvid|ld\.so\.cache~|image-code-ran|gsp_")
"""Names the hook or libnvidia-container would create, and the traps' own marker name."""


def _sha256(path: str) -> str:
    try:
        with open(path, "rb") as stream:
            return hashlib.sha256(stream.read()).hexdigest()
    except FileNotFoundError:
        return "absent"


def mount_points() -> list[str]:
    """Mount points of this process's mount namespace (the host's), unescaped."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace",
              newline="\n") as stream:  # a path may hold \r, which the kernel leaves as is
        for line in stream:
            raw = line.split(" ")[4]
            points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), raw))
    return points


def host_snapshot(extra_roots: Sequence[Path] = ()) -> dict[str, Any]:
    """What must stay as it is on the real host: watched files' digests, driver-like names in
    watched directories, and mounts on driver-like paths or under ``extra_roots``."""
    roots = tuple(str(r) for r in extra_roots)
    listing = {}
    for directory in HOST_DIRS:
        try:
            names = os.listdir(directory)
        except OSError:
            names = []
        listing[directory] = sorted(n for n in names if DRIVER_NAMES.search(n))
    mounts = sorted(p for p in mount_points()
                    if DRIVER_NAMES.search(p) or any(p == r or p.startswith(r + "/")
                                                     for r in roots))
    return {"files": {path: _sha256(path) for path in HOST_FILES}, "names": listing,
            "mounts": mounts}


CANARY_FILES = {
    "etc/ld.so.cache": b"canary ld.so.cache\n",
    "etc/ld.so.conf": b"include /etc/ld.so.conf.d/*.conf\n",
    "etc/ld.so.conf.d/canary.conf": b"/canary/lib\n",
    "etc/passwd": b"canary:x:0:0::/:/bin/sh\n",
    "usr/lib64/libcanary.so": b"canary library\n",
    "usr/lib/x86_64-linux-gnu/libcanary.so": b"canary library\n",
    "usr/bin/canary": b"#!/bin/sh\n",
    "usr/local/cuda/compat/libcuda.so.1": b"canary compat library\n",
    "run/canary": b"canary run file\n",
    "dev/canary": b"canary device\n",
    "proc/driver/nvidia/canary": b"canary proc file\n",
    "tmp/canary": b"canary tmp file\n",
    "lib/firmware/canary": b"canary firmware\n",
}


@dataclass
class Canary:
    """A host tree an image's symlinks point at; any entry added, changed or removed in it,
    and any mount on it, means the hook or the library left the container's rootfs."""

    root: Path
    before: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, root: Path) -> Canary:
        for relative, data in CANARY_FILES.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return cls(root=root, before=tree_digest(root))

    def path(self, relative: str) -> str:
        """The host path of ``relative`` in the canary, as an absolute symlink target."""
        return str(self.root / relative)

    def changes(self) -> list[str]:
        """Entries added, removed or changed since the canary was built, and mounts on it."""
        after = tree_digest(self.root)
        changed = sorted(k for k in set(self.before) | set(after)
                         if self.before.get(k) != after.get(k))
        mounted = [p for p in mount_points()
                   if p == str(self.root) or p.startswith(str(self.root) + "/")]
        return [f"changed: {k}" for k in changed] + [f"mounted: {m}" for m in mounted]


EVIL_SOURCE = r"""
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void) {
    int fd = open(MARKER, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) { (void)write(fd, "shared object\n", 14); close(fd); }
}
"""

PYTHON_TRAP = """\
with open({marker!r}, "a") as _stream:
    _stream.write("python " + __name__ + "\\n")
"""

SHELL_TRAP = """\
#!/bin/sh
echo "shell $0" >> {marker}
echo "$0" > /.image-code-ran
"""

PYTHON_TRAP_MODULES = ("sitecustomize", "usercustomize", "json", "yaml", "jsonschema",
                       "pynvml", "cffi", "encodings")


@dataclass(frozen=True)
class Traps:
    """Code that records where it ran: a shared object with a constructor, Python modules a
    Python process would import from PYTHONPATH, and shell scripts where an ldconfig or a hook
    might be looked for. All append to ``marker`` (a host path), so the marker exists exactly
    when code they belong to ran on the host."""

    dir: Path
    marker: Path
    shared_object: Path
    """Also installed under the names a loader would search LD_LIBRARY_PATH for."""
    library_dir: Path
    python_dir: Path
    python_home: Path
    startup: Path
    script: Path
    config: Path
    """A shim configuration that would load the trap as libnvidia-container and run the
    image's own ldconfig."""

    def ran(self) -> str:
        return self.marker.read_text() if self.marker.exists() else ""


def build_traps(where: Path) -> Traps:
    """Compile and write every trap under ``where`` (once per session)."""
    where.mkdir(parents=True, exist_ok=True)
    marker = where / "image-code-ran"
    source = where / "evil.c"
    source.write_text(EVIL_SOURCE)
    shared = where / "evil.so"
    subprocess.run(["gcc", "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(shared),
                    str(source)], check=True)
    library_dir = where / "lib"
    library_dir.mkdir()
    for name in ("libffi.so.8", "libnvidia-ml.so.1", "libnvidia-container.so.1", "libyaml-0.so.2",
                 "libz.so.1"):
        (library_dir / name).write_bytes(shared.read_bytes())
    python_dir = where / "python"
    python_dir.mkdir()
    for module in PYTHON_TRAP_MODULES:
        package = python_dir / module
        package.mkdir()
        (package / "__init__.py").write_text(PYTHON_TRAP.format(marker=str(marker)))
    python_home = where / "python-home"
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (python_home / "lib" / version / "encodings").mkdir(parents=True)
    (python_home / "lib" / version / "encodings" / "__init__.py").write_text(
        PYTHON_TRAP.format(marker=str(marker)))
    startup = where / "startup.py"
    startup.write_text(PYTHON_TRAP.format(marker=str(marker)))
    script = where / "script.sh"
    script.write_text(SHELL_TRAP.format(marker=marker))
    script.chmod(0o755)
    config = where / "evil-config.yaml"
    config.write_text(json.dumps({"libnvidia_container": {"library": str(shared),
                                                          "ldconfig": "/sbin/ldconfig"},
                                  "nvml": {"library": str(shared)}}))
    return Traps(dir=where, marker=marker, shared_object=shared, library_dir=library_dir,
                 python_dir=python_dir, python_home=python_home, startup=startup,
                 script=script, config=config)


def plant_image_traps(image: Path, traps: Traps) -> None:
    """Put the traps where a careless hook would run image code: the image's ldconfig and
    nvidia-container-cli, a shared object and a Python directory."""
    script = traps.script.read_bytes()
    for relative in ("sbin/ldconfig", "sbin/ldconfig.real", "usr/sbin/ldconfig",
                     "usr/bin/nvidia-container-cli", "usr/bin/nvidia-container-runtime-hook"):
        path = image / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(script)
        path.chmod(0o755)
    (image / "lib" / "evil.so").write_bytes(traps.shared_object.read_bytes())
    pytrap = image / "pytrap"
    pytrap.mkdir()
    for module in PYTHON_TRAP_MODULES:
        (pytrap / f"{module}.py").write_text(PYTHON_TRAP.format(marker=str(traps.marker)))


def overlay_bundle(image: Path, path: Path, args: Sequence[str] = ("/bin/true",),
                   env: Sequence[str] = (), annotations: Optional[Mapping[str, str]] = None,
                   ) -> Bundle:
    """A bundle whose rootfs is a writable overlay over ``image`` (as engines give it), running
    ``args`` with ``env`` added; unmount with ``unmount``."""
    path.mkdir()
    subprocess.run(["runc", "spec", "--bundle", str(path)], check=True)
    bundle = Bundle(path)
    rootfs, upper, work = path / "rootfs", path / "upper", path / "work"
    for directory in (rootfs, upper, work):
        directory.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={image},upperdir={upper},workdir={work}", str(rootfs)], check=True)
    bundle.mounts.append(rootfs)

    def shape(spec: dict[str, Any]) -> None:
        spec["root"] = {"path": str(rootfs), "readonly": False}
        spec["process"]["terminal"] = False
        spec["process"]["args"] = list(args)
        spec["process"]["env"] = [*spec["process"]["env"], *env]
        if annotations:
            spec["annotations"] = dict(annotations)

    bundle.edit(shape)
    return bundle


def unmount(bundle: Bundle) -> None:
    for mount in bundle.mounts:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    bundle.mounts.clear()


def sim_runtime_config(sim_config: Path, runtimes: Sequence[str], log: Path,
                       **sections: Any) -> str:
    """A shim configuration: the simulated host's, with ``runtimes``, our log and ``sections``
    merged in (a mapping into its section, anything else, such as ``mode="spec"``, replaces
    the key; YAML is a superset of JSON, so JSON text is written)."""
    import yaml

    document = yaml.safe_load(sim_config.read_text()) or {}
    for name, values in sections.items():
        if isinstance(values, Mapping):
            document.setdefault(name, {}).update(values)
        else:
            document[name] = values
    document["runtimes"] = list(runtimes)
    document.setdefault("log", {})["file"] = str(log)
    return json.dumps(document, indent=1)


def one_line_with(stderr: str, needle: str) -> str:
    """The single stderr line holding ``needle`` (AssertionError when there is not exactly
    one): a failure must be one line, whatever prints it."""
    lines = [line for line in stderr.splitlines() if needle in line]
    assert len(lines) == 1, f"expected one line with {needle!r} in:\n{stderr}"
    return lines[0]
