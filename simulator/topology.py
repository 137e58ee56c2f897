"""Load and validate a simulated host's topology YAML into the normalized dict every part of the
simulator (C header, driver tree, topology.json, tests) reads.

A topology names the driver and CUDA versions, NUMA nodes and GPUs; MIG-capable GPUs list their
MIG devices by profile. Omitted details (minors, MIG UUIDs, GPU-instance ids, placements, caps
minors) are filled in the way a real host would have them. Keys starting with ``x-`` are ignored
so a file can hold YAML anchors (``x-a100: &a100``) for repeated GPUs.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any, Optional

from simulator import profiles
from simulator.errors import SimulatorError

Topology = dict[str, Any]
"""The normalized topology: plain JSON-able data (see ``normalize``), written as topology.json."""

BUILTIN_DIR = Path(__file__).resolve().parent / "topologies"

BRANDS = {
    "unknown": 0, "quadro": 1, "tesla": 2, "nvs": 3, "grid": 4, "geforce": 5, "titan": 6,
    "nvidia_vapps": 7, "nvidia_vpc": 8, "nvidia_vcs": 9, "nvidia_vws": 10,
    "nvidia_cloud_gaming": 11, "quadro_rtx": 12, "nvidia_rtx": 13, "nvidia": 14,
    "geforce_rtx": 15, "titan_rtx": 16,
}
"""nvmlBrandType_t values by the lowercase name NVIDIA_REQUIRE_BRAND uses."""

ARCHITECTURES = {"pascal": 4, "volta": 5, "turing": 6, "ampere": 7, "ada": 8, "hopper": 9,
                 "blackwell": 10}
"""nvmlDeviceArchitecture_t values."""

_ARCH_BY_CC = {(6, 0): "pascal", (6, 1): "pascal", (7, 0): "volta", (7, 2): "volta",
               (7, 5): "turing", (8, 0): "ampere", (8, 6): "ampere", (8, 7): "ampere",
               (8, 9): "ada", (9, 0): "hopper", (10, 0): "blackwell"}

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_BUS_ID = re.compile(r"^(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$")
_UUID_SHAPE = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
_CPULIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?$")
_TEXT = re.compile(r"^[\x20-\x7e]+$")
_MIG_NAMESPACE = uuid.UUID("6f1b5a3e-6d0c-4c53-9a57-3c1f5d0a2b11")

_TOP_KEYS = {"name", "driver_version", "cuda_version", "numa_nodes", "gpus"}
_GPU_KEYS = {"name", "brand", "compute_capability", "architecture", "memory_mib", "bus_id",
             "uuid", "minor", "numa_node", "persistence_mode", "pci_device_id",
             "pci_subsystem_id", "multiprocessor_count", "serial", "mig"}
_MIG_KEYS = {"profiles", "enabled", "devices"}
_DEVICE_KEYS = {"profile", "uuid", "gi", "ci", "placement"}


class _Problems:
    """Collects ``where: what`` lines so a bad file reports every problem at once."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.lines.append(f"{where}: {what}")


def builtin_names() -> list[str]:
    """Names of the topologies shipped as package data."""
    return sorted(path.stem for path in BUILTIN_DIR.glob("*.yaml"))


def load(name_or_path: str) -> Topology:
    """Read a built-in topology by name, or a user file by path, and normalize it."""
    builtin = BUILTIN_DIR / f"{name_or_path}.yaml"
    if "/" not in name_or_path and builtin.is_file():
        path = builtin
    else:
        path = Path(name_or_path)
        if not path.is_file():
            known = ", ".join(builtin_names())
            raise SimulatorError("simulate", f"topology {name_or_path!r}: no such built-in "
                                             f"topology ({known}) or file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SimulatorError("simulate", f"topology {path}: {exc}") from None
    return parse(text, str(path), default_name=path.stem)


def parse(text: str, source: str, default_name: str = "custom") -> Topology:
    """Parse YAML ``text`` (from ``source``, named in errors) into a normalized topology."""
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        raise SimulatorError("simulate",
                             f"topology {source}: {where}{exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise SimulatorError("simulate", f"topology {source}: {exc}") from None
    problems = _Problems()
    topology = normalize(document, problems, default_name)
    if problems.lines:
        raise SimulatorError("simulate", f"topology {source}: " + "; ".join(problems.lines))
    assert topology is not None
    return topology


def normalize(document: Any, problems: _Problems, default_name: str) -> Optional[Topology]:
    """Check ``document`` and return the normalized topology (None when there were problems)."""
    if not isinstance(document, dict):
        problems.add("<root>", "expected a mapping")
        return None
    _unknown_keys(document, _TOP_KEYS, "", problems)
    name = _text(document.get("name", default_name), "name", problems)
    driver = _version(document.get("driver_version"), "driver_version", problems)
    cuda = _version(document.get("cuda_version"), "cuda_version", problems)
    nodes = _numa_nodes(document.get("numa_nodes", [{"id": 0, "cpus": "0"}]), problems)
    raw_gpus = document.get("gpus")
    if not isinstance(raw_gpus, list) or not raw_gpus:
        problems.add("gpus", "expected a non-empty list")
        raw_gpus = []
    node_ids = {node["id"] for node in nodes}
    gpus = [_gpu(raw, index, node_ids, problems) for index, raw in enumerate(raw_gpus)]
    _check_unique(gpus, problems)
    if problems.lines:
        return None
    return {"name": name, "driver_version": driver, "cuda_version": cuda, "numa_nodes": nodes,
            "gpus": gpus}


def cuda_version_int(cuda_version: str) -> int:
    """NVML's integer form of a CUDA version: 1000 * major + 10 * minor."""
    major, minor = (int(part) for part in cuda_version.split(".")[:2])
    return 1000 * major + 10 * minor


def cpulist_cpus(cpulist: str) -> list[int]:
    """Expand a kernel cpulist ("0-3,8") to CPU numbers."""
    cpus: list[int] = []
    for part in cpulist.split(","):
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def _unknown_keys(mapping: dict[Any, Any], known: set[str], where: str,
                  problems: _Problems) -> None:
    for key in mapping:
        if isinstance(key, str) and key.startswith("x-"):
            continue
        if key not in known:
            expected = ", ".join(sorted(known))
            problems.add(f"{where}{key}", f"unknown key (expected one of {expected})")


def _text(value: Any, where: str, problems: _Problems) -> str:
    if isinstance(value, str) and _TEXT.match(value) and '"' not in value and "\\" not in value:
        return value
    problems.add(where, "expected printable text without quotes or backslashes")
    return ""


def _int(value: Any, where: str, problems: _Problems, low: int = 0, high: int = 2**31) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.add(where, f"expected an integer from {low} to {high}")
        return low
    return value


def _version(value: Any, where: str, problems: _Problems) -> str:
    text = str(value) if isinstance(value, (str, float)) else ""
    if not _VERSION.match(text):
        problems.add(where, 'expected a version such as "535.104.05" (quote it)')
    return text


def _numa_nodes(value: Any, problems: _Problems) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        problems.add("numa_nodes", "expected a non-empty list of {id, cpus}")
        return []
    nodes = []
    for position, raw in enumerate(value):
        where = f"numa_nodes[{position}]"
        if not isinstance(raw, dict):
            problems.add(where, "expected a mapping with id and cpus")
            continue
        _unknown_keys(raw, {"id", "cpus"}, f"{where}.", problems)
        node_id = _int(raw.get("id"), f"{where}.id", problems, 0, 1023)
        cpus = str(raw.get("cpus", ""))
        if not _CPULIST.match(cpus) or max(cpulist_cpus(cpus)) >= 4096:
            problems.add(f"{where}.cpus", 'expected a cpulist such as "0-63" (CPUs below 4096)')
        nodes.append({"id": node_id, "cpus": cpus})
    if len({node["id"] for node in nodes}) != len(nodes):
        problems.add("numa_nodes", "node ids must be unique")
    return nodes


def _bus_id(value: Any, where: str, problems: _Problems) -> str:
    match = _BUS_ID.match(value) if isinstance(value, str) else None
    if not match:
        problems.add(where, 'expected a PCI bus id such as "00000000:07:00.0"')
        return ""
    domain, bus, device, function = match.groups()
    return f"{int(domain or '0', 16):08X}:{int(bus, 16):02X}:{int(device, 16):02X}.{function}"


def _gpu_uuid(value: Any, where: str, problems: _Problems, prefix: str) -> str:
    if not isinstance(value, str) or not value.startswith(prefix) \
            or not _UUID.match(value[len(prefix):]):
        problems.add(where, f"expected {prefix}{_UUID_SHAPE} (lowercase hex)")
        return ""
    return value


def _compute_capability(value: Any, where: str, problems: _Problems) -> tuple[int, int]:
    text = str(value) if isinstance(value, (str, float)) else ""
    match = re.match(r"^(\d+)\.(\d+)$", text)
    if not match:
        problems.add(where, 'expected "major.minor" such as "8.0"')
        return (0, 0)
    return int(match.group(1)), int(match.group(2))


def _gpu(raw: Any, index: int, node_ids: set[int], problems: _Problems) -> dict[str, Any]:
    where = f"gpus[{index}]"
    if not isinstance(raw, dict):
        problems.add(where, "expected a mapping")
        return {"index": index}
    _unknown_keys(raw, _GPU_KEYS, f"{where}.", problems)
    cc = _compute_capability(raw.get("compute_capability"), f"{where}.compute_capability",
                             problems)
    brand = raw.get("brand")
    if brand not in BRANDS:
        problems.add(f"{where}.brand", f"expected one of {', '.join(BRANDS)}")
    arch = raw.get("architecture", _ARCH_BY_CC.get(cc, ""))
    if arch not in ARCHITECTURES:
        problems.add(f"{where}.architecture", f"expected one of {', '.join(ARCHITECTURES)}")
    memory = _int(raw.get("memory_mib"), f"{where}.memory_mib", problems, 1, 1 << 24)
    gpu_uuid = _gpu_uuid(raw.get("uuid"), f"{where}.uuid", problems, "GPU-")
    minor = _int(raw.get("minor", index), f"{where}.minor", problems, 0, 253)
    default_node = min(node_ids) if node_ids else 0
    numa_node = _int(raw.get("numa_node", default_node), f"{where}.numa_node", problems, -1, 1023)
    if numa_node != -1 and numa_node not in node_ids:
        problems.add(f"{where}.numa_node", f"no NUMA node {numa_node} in numa_nodes")
    persistence = raw.get("persistence_mode", True)
    if not isinstance(persistence, bool):
        problems.add(f"{where}.persistence_mode", "expected true or false")
    gpu: dict[str, Any] = {
        "index": index,
        "minor": minor,
        "uuid": gpu_uuid,
        "name": _text(raw.get("name"), f"{where}.name", problems),
        "brand": brand,
        "compute_capability": f"{cc[0]}.{cc[1]}",
        "architecture": arch,
        "memory_mib": memory,
        "bus_id": _bus_id(raw.get("bus_id"), f"{where}.bus_id", problems),
        "numa_node": numa_node,
        "persistence_mode": persistence,
        "pci_device_id": _int(raw.get("pci_device_id", 0), f"{where}.pci_device_id", problems,
                              0, 2**32 - 1),
        "pci_subsystem_id": _int(raw.get("pci_subsystem_id", 0), f"{where}.pci_subsystem_id",
                                 problems, 0, 2**32 - 1),
        "multiprocessor_count": _int(raw.get("multiprocessor_count", 0),
                                     f"{where}.multiprocessor_count", problems, 0, 4096),
        "serial": _text(raw.get("serial", f"{1320000000000 + index * 7919}"),
                        f"{where}.serial", problems),
    }
    gpu["mig"] = _mig(raw.get("mig"), gpu, f"{where}.mig", problems)
    return gpu


def _mig(raw: Any, gpu: dict[str, Any], where: str, problems: _Problems) -> dict[str, Any]:
    off: dict[str, Any] = {"capable": False, "enabled": False, "max_devices": 0,
                           "profiles": None, "devices": []}
    if raw is None:
        return off
    if not isinstance(raw, dict):
        problems.add(where, "expected a mapping with profiles, enabled, devices")
        return off
    _unknown_keys(raw, _MIG_KEYS, f"{where}.", problems)
    table = raw.get("profiles", profiles.default_table(gpu["memory_mib"]))
    if table not in profiles.TABLES:
        problems.add(f"{where}.profiles", f"expected one of {', '.join(profiles.TABLES)}")
        return off
    devices_raw = raw.get("devices", [])
    if not isinstance(devices_raw, list):
        problems.add(f"{where}.devices", "expected a list")
        devices_raw = []
    enabled = raw.get("enabled", bool(devices_raw))
    if not isinstance(enabled, bool):
        problems.add(f"{where}.enabled", "expected true or false")
    if devices_raw and enabled is not True:
        problems.add(f"{where}.devices", "MIG devices need enabled: true")
    devices = _mig_devices(devices_raw, gpu, profiles.by_name(table), f"{where}.devices",
                           problems)
    return {"capable": True, "enabled": enabled is True, "max_devices": profiles.MAX_MIG_DEVICES,
            "profiles": table, "devices": devices}


def _mig_devices(raw_devices: list[Any], gpu: dict[str, Any],
                 table: dict[str, profiles.Profile], where: str,
                 problems: _Problems) -> list[dict[str, Any]]:
    used_slices = [False] * profiles.MEMORY_SLICES
    used_gis: set[int] = set()
    compute_slices = 0
    devices = []
    for position, raw in enumerate(raw_devices):
        here = f"{where}[{position}]"
        if isinstance(raw, str):
            raw = {"profile": raw}
        if not isinstance(raw, dict):
            problems.add(here, "expected a profile name or a mapping with profile")
            continue
        _unknown_keys(raw, _DEVICE_KEYS, f"{here}.", problems)
        profile = table.get(raw.get("profile"))  # type: ignore[arg-type]  # checked just below
        if profile is None:
            problems.add(f"{here}.profile", f"expected one of {', '.join(table)}")
            continue
        placement = _placement(raw.get("placement"), profile, used_slices, here, problems)
        if placement is None:
            continue
        for slot in range(placement, placement + profile.placement_size):
            used_slices[slot] = True
        compute_slices += profile.slice_count
        if compute_slices > profiles.MAX_MIG_DEVICES:
            problems.add(here, "the GPU has only 7 compute slices")
        gi = _gpu_instance_id(raw.get("gi"), profile, placement, used_gis, here, problems)
        used_gis.add(gi)
        ci = _int(raw.get("ci", 0), f"{here}.ci", problems, 0, 7)
        gi_minor, ci_minor = profiles.caps_minors(gpu["minor"], gi, ci)
        default_uuid = "MIG-" + str(uuid.uuid5(_MIG_NAMESPACE, f"{gpu['uuid']}/{gi}/{ci}"))
        devices.append({
            "uuid": _gpu_uuid(raw.get("uuid", default_uuid), f"{here}.uuid", problems, "MIG-"),
            "profile": profile.name, "gi": gi, "ci": ci, "placement": placement,
            "profile_id": profile.id, "profile_index": profile.index,
            "slice_count": profile.slice_count, "memory_mib": profile.memory_mib,
            "gi_cap_minor": gi_minor, "ci_cap_minor": ci_minor,
        })
    if len(devices) > profiles.MAX_MIG_DEVICES:
        problems.add(where, f"at most {profiles.MAX_MIG_DEVICES} MIG devices per GPU")
    devices.sort(key=lambda device: (device["gi"], device["ci"]))
    for index, device in enumerate(devices):
        device["index"] = index
    return devices


def _placement(value: Any, profile: profiles.Profile, used: list[bool], where: str,
               problems: _Problems) -> Optional[int]:
    def free(start: int) -> bool:
        return not any(used[start:start + profile.placement_size])

    if value is None:
        for start in profile.placements:
            if free(start):
                return start
        problems.add(where, f"no free placement left for {profile.name}")
        return None
    if value not in profile.placements:
        problems.add(f"{where}.placement",
                     f"{profile.name} starts at one of {list(profile.placements)}")
        return None
    if not free(value):
        problems.add(f"{where}.placement", f"overlaps another MIG device at {value}")
        return None
    chosen: int = value
    return chosen


def _gpu_instance_id(value: Any, profile: profiles.Profile, placement: int, used: set[int],
                     where: str, problems: _Problems) -> int:
    if value is not None:
        gi = _int(value, f"{where}.gi", problems, 0, profiles.MAX_GI_ID)
        if gi in used:
            problems.add(f"{where}.gi", f"GPU instance {gi} is used twice")
        return gi
    preferred = profiles.PREFERRED_GI_IDS.get((profile.slice_count, placement))
    if preferred is not None and preferred not in used:
        return preferred
    return min(set(range(1, profiles.MAX_GI_ID + 1)) - used)


def _check_unique(gpus: list[dict[str, Any]], problems: _Problems) -> None:
    seen: dict[tuple[str, str], str] = {}
    for gpu in gpus:
        where = f"gpus[{gpu['index']}]"
        keys = [("uuid", gpu.get("uuid", "")), ("bus_id", gpu.get("bus_id", "")),
                ("minor", str(gpu.get("minor", "")))]
        keys += [("uuid", device["uuid"]) for device in gpu.get("mig", {}).get("devices", [])]
        for kind, value in keys:
            if not value:
                continue
            if (kind, value) in seen:
                problems.add(where, f"{kind} {value} already used by {seen[(kind, value)]}")
            seen[(kind, value)] = where
