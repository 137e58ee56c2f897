"""Fault specs of the simulated host (``NAME=VALUE``) and their files in DIR/faults.

The C libraries read DIR/faults/<name> on every call (sim_faults.h), so writing these files
changes a built host at once, in every process, without a rebuild.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from simulator.errors import SimulatorError, one_line

Fault = tuple[str, str]
"""A parsed fault: its name and the value written to DIR/faults/<name>."""

_COUNT = r"\d{1,9}"
_FORMATS: dict[str, tuple[str, str, str]] = {
    # name: (value pattern, value syntax, what it does)
    "nvml-not-ready": (rf"^{_COUNT}$", "N", "the first N nvmlDeviceGetHandleByUUID calls miss"),
    "nvml-unknown-error": (rf"^{_COUNT}$", "N",
                           "the first N nvmlDeviceGetCount calls fail with Unknown Error"),
    "nvc-init-transient": (rf"^{_COUNT}(:[^\n]+)?$", "N[:MESSAGE]",
                           "the first N nvc_init calls fail"),
    "nvc-init-permanent": (r"^[^\n]+$", "MESSAGE", "every nvc_init fails"),
    "gpu-lost": (rf"^{_COUNT}(,{_COUNT})*$", "INDEX[,INDEX...]", "NVML reports the GPU lost"),
    "nvc-mount-delay": (rf"^{_COUNT}$", "MS", "nvc_driver_mount sleeps first"),
}
NAMES = tuple(_FORMATS)


def parse(spec: str, gpu_count: int) -> Fault:
    """Parse one ``--fault`` spec; a bad one is a one-line error naming it."""
    name, sep, value = spec.partition("=")
    if not sep or name not in _FORMATS:
        known = ", ".join(f"{key}={_FORMATS[key][1]}" for key in NAMES)
        raise SimulatorError("simulate",
                             one_line(f"fault {spec!r}: unknown fault (expected {known})"))
    pattern, syntax, meaning = _FORMATS[name]
    if not re.match(pattern, value):
        raise SimulatorError("simulate", one_line(f"fault {spec!r}: expected {name}={syntax}: "
                                             f"{meaning}"))
    if name == "gpu-lost":
        for index in value.split(","):
            if int(index) >= gpu_count:
                raise SimulatorError("simulate", one_line(
                    f"fault {spec!r}: no GPU {int(index)} (the topology has {gpu_count})"))
    return name, value


def parse_all(specs: Iterable[str], gpu_count: int) -> list[Fault]:
    """Parse every spec; a later spec of the same fault replaces an earlier one."""
    chosen: dict[str, str] = {}
    for spec in specs:
        name, value = parse(spec, gpu_count)
        chosen[name] = value
    return list(chosen.items())


def apply(sim_dir: Path, faults: Sequence[Fault]) -> None:
    """Make DIR/faults hold exactly ``faults``, with every use counter back at zero."""
    directory = sim_dir / "faults"
    directory.mkdir(mode=0o755, exist_ok=True)
    wanted = {name for name, _ in faults}
    for entry in directory.iterdir():
        if entry.name.endswith(".count") or entry.name not in wanted:
            entry.unlink()
    from simulator.compile import write_new

    for name, value in faults:
        # The directory is world-writable: an exclusive temporary, never a planted link.
        write_new((value + "\n").encode("utf-8"), directory / name, 0o644)
    # Sticky and world-writable like /tmp: a process of any user creates its counter file.
    os.chmod(directory, 0o1777)


def active(sim_dir: Path) -> dict[str, str]:
    """The faults set in ``sim_dir`` now, by name."""
    directory = sim_dir / "faults"
    if not directory.is_dir():
        return {}
    return {entry.name: entry.read_text(encoding="utf-8").rstrip("\n")
            for entry in sorted(directory.iterdir())
            if entry.name in _FORMATS}
