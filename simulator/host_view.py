"""What ``gpu-ctk simulate run`` shows at the real paths: the plan of the simulated host's view.

Pure data, computed from DIR's layout; ``simulator.enter`` carries it out in a private mount
namespace. Three kinds of change, each chosen for the filesystem it lands on:

- ``Overlay``: an overlayfs over a directory of an ordinary filesystem (the library and binary
  directories), with DIR's files as the upper lower layers and a throw-away writable layer, so
  the directory keeps everything it had and gains the driver's files.
- ``Graft``: DIR's tree laid onto a kernel filesystem that overlayfs refuses (/dev, /proc/driver,
  /sys): a file that exists is bind-mounted over, a missing entry is created in a tmpfs that
  replaces its parent directory and keeps every entry the parent had (each bind-mounted back).
- ``Merge``: a file shown as its real content followed by DIR's lines (/proc/devices, whose real
  majors must stay visible).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from simulator import driver_tree
from simulator.errors import SimulatorError, one_line

LIB_DIR = "/" + driver_tree.LIB_DIR
BIN_DIR = "/" + driver_tree.BIN_DIR
# Characters that overlayfs' option string or our own argument cannot carry in a lower dir.
_UNSAFE = frozenset(",:\\\n")


class Overlay(NamedTuple):
    """overlayfs on ``target``: ``lowers`` first (highest), then the target's own content."""

    target: str
    lowers: tuple[str, ...]


class Graft(NamedTuple):
    """DIR's tree ``source`` laid onto the kernel filesystem directory ``target``, but for the
    ``omit`` entries (paths relative to ``source``)."""

    source: str
    target: str
    omit: frozenset[str] = frozenset()


PROC_DRIVER_OMITTED = frozenset({"nvidia/params"})
"""Not shown in the view's /proc/driver: a container gets a procfs of its own, which on a host
without the driver has no /proc/driver/nvidia, and NVIDIA Container Toolkit's
disable-device-node-modification hook fails opening the container's ``params`` when the host
has one. The simulated host keeps it (DIR/proc/driver/nvidia/params), where our hooks and the
simulated libnvidia-container read it outside the view; inside it, our spec hook writes
``ModifyDeviceFiles: 0`` all the same and the library, like the real one, has none to copy."""


class Merge(NamedTuple):
    """``target`` shown as its own content followed by the text of ``extra``."""

    target: str
    extra: str


class Plan(NamedTuple):
    overlays: tuple[Overlay, ...]
    grafts: tuple[Graft, ...]
    merges: tuple[Merge, ...]


def plan(sim_dir: Path) -> Plan:
    """The view of the simulated host in ``sim_dir`` (an absolute path holding a built host)."""
    d = str(sim_dir)
    if any(ch in _UNSAFE for ch in d):
        raise SimulatorError("simulate", one_line(
            f"{d}: a simulated host whose path holds ',', ':', '\\\\' or a newline cannot be "
            f"entered (overlayfs cannot name it); build it elsewhere"))
    driver = f"{d}/driver"
    return Plan(
        overlays=(
            # DIR/lib's libnvidia-container.so.1 as well: our tools find it with no config.
            Overlay(LIB_DIR, (f"{driver}{LIB_DIR}", f"{d}/lib")),
            Overlay(BIN_DIR, (f"{driver}{BIN_DIR}",)),
        ),
        grafts=(
            Graft(f"{d}/dev", "/dev"),
            Graft(f"{d}/proc/driver", "/proc/driver", PROC_DRIVER_OMITTED),
            Graft(f"{d}/sys", "/sys"),
        ),
        merges=(Merge("/proc/devices", f"{d}/proc/devices"),),
    )


def merged_devices(real: str, simulated: str) -> str:
    """/proc/devices with the simulated driver's majors added to the real host's sections, in
    major order; a major the host already registered keeps only the host's lines."""
    sections: dict[str, list[tuple[int, str]]] = {}
    for origin, text in enumerate((real, simulated)):
        title = ""
        for line in text.splitlines():
            if line.endswith(":"):
                title = line
                sections.setdefault(title, [])
                continue
            fields = line.split(None, 1)
            if not title or len(fields) != 2 or not fields[0].isdigit():
                continue
            major = int(fields[0])
            if origin == 1 and any(known == major for known, _ in sections[title]):
                continue
            sections[title].append((major, f"{major:3d} {fields[1]}"))
    blocks = []
    for title, rows in sections.items():
        ordered = [row for _, row in sorted(rows, key=lambda item: item[0])]
        blocks.append("\n".join([title, *ordered]) + "\n")
    return "\n".join(blocks)
