"""Render sim_topology.h, the C view of a topology that both simulated libraries include.

The struct shapes ``sim_gpu`` and ``sim_mig`` are fixed by the simulator contract; everything
else here (profiles, NUMA masks, the ``SIM_*_COUNT`` macros, per-GPU extras) is additive.
Every static array is marked unused: each library reads only part of the header.
"""

from __future__ import annotations

from typing import Any

from simulator import profiles
from simulator.errors import SimulatorError
from simulator.topology import (
    ARCHITECTURES,
    BRANDS,
    Topology,
    cpulist_cpus,
    cuda_version_int,
)

UVM_MAJOR = 510
CAPS_MAJOR = 509
NVIDIA_MAJOR = 195

DIR_CAPACITY = 1024
"""Bytes reserved in each library for DIR (with its NUL): the longest DIR is 1023 bytes."""

DIR_PLACEHOLDER = "@@GPU_CTK_SIM_DIR@@".ljust(DIR_CAPACITY - 1, "_")
"""What the builder compiles in for DIR: the libraries are compiled once per topology and
``relocate``d into each directory, so a new DIR costs a copy, not a compile."""

# SIM_DIR is read through a volatile pointer so that the compiler cannot fold the placeholder's
# length or contents into the code: relocate() rewrites the bytes after compilation.
_DIR_ACCESS = """\
static const char sim_dir_storage[SIM_DIR_CAPACITY] SIM_UNUSED = {dir};
static SIM_UNUSED const char *sim_dir_path(void)
{{
    const char *volatile path = sim_dir_storage;
    return path;
}}
#define SIM_DIR (sim_dir_path())
"""

_STRUCTS = """\
struct sim_mig {
    const char *uuid;                /* "MIG-<uuid>" */
    unsigned gi_id, ci_id;
    const char *profile;             /* "1g.10gb" */
    unsigned profile_id;             /* NVML GPU-instance profile *id* (not the enum index) */
    unsigned profile_index;          /* NVML_GPU_INSTANCE_PROFILE_* enum index */
    unsigned slice_count;
    unsigned long long memory_mib;
    unsigned gi_cap_minor, ci_cap_minor;
    unsigned placement_start;
};
struct sim_gpu {
    unsigned index, minor;
    const char *uuid, *name, *busid;  /* busid like "00000000:07:00.0" (NVML's 8-digit domain) */
    int brand;                        /* nvmlBrandType_t value */
    int cc_major, cc_minor;
    const char *arch;                 /* "Ampere", "Turing" */
    unsigned long long memory_total;  /* bytes */
    int mig_mode;                     /* 0 or 1 */
    unsigned max_mig;                 /* max MIG devices (7 on A100) */
    unsigned nmig;
    const struct sim_mig *migs;
    int numa_node;
    unsigned persistence_mode;
};
/* One GPU-instance profile a MIG-capable GPU offers (nvidia-smi mig -lgip). */
struct sim_profile {
    unsigned index, id, slice_count, instance_count, multiprocessor_count, copy_engine_count,
        decoder_count, encoder_count, jpeg_count, ofa_count, placement_size;
    unsigned long long memory_mib;
    const char *name;                 /* "MIG 1g.10gb", as NVML names it */
};
/* What NVML reports beyond the contract's sim_gpu, same order as SIM_GPUS. */
struct sim_gpu_extra {
    unsigned arch;                    /* nvmlDeviceArchitecture_t */
    unsigned pci_device_id, pci_subsystem_id, multiprocessor_count;
    const char *serial;
    const struct sim_profile *profiles;
    unsigned nprofiles;
    unsigned mig_base;                /* index of this GPU's first MIG device among all GPUs' */
};
struct sim_numa {
    int id;
    const char *cpulist;
    unsigned long long mask[SIM_CPU_WORDS];
};
"""


def c_string(text: str) -> str:
    """A C string literal for ``text``: printable ASCII as is, everything else octal-escaped."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\?' or not 0x20 <= byte < 0x7F:
            out.append(f"\\{byte:03o}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _mig_row(device: dict[str, Any]) -> str:
    return (f"    {{{c_string(device['uuid'])}, {device['gi']}, {device['ci']}, "
            f"{c_string(device['profile'])}, {device['profile_id']}, {device['profile_index']}, "
            f"{device['slice_count']}, {device['memory_mib']}ULL, {device['gi_cap_minor']}, "
            f"{device['ci_cap_minor']}, {device['placement']}}},")


def _gpu_row(gpu: dict[str, Any]) -> str:
    major, minor = gpu["compute_capability"].split(".")
    mig = gpu["mig"]
    migs = f"SIM_MIGS_{gpu['index']}" if mig["devices"] else "0"
    max_mig = mig["max_devices"] if mig["capable"] else 0
    return (f"    {{{gpu['index']}, {gpu['minor']}, {c_string(gpu['uuid'])}, "
            f"{c_string(gpu['name'])}, {c_string(gpu['bus_id'])}, {BRANDS[gpu['brand']]}, "
            f"{major}, {minor}, {c_string(gpu['architecture'].capitalize())}, "
            f"{gpu['memory_mib'] * 1024 * 1024}ULL, {int(mig['enabled'])}, {max_mig}, "
            f"{len(mig['devices'])}, {migs}, {gpu['numa_node']}, "
            f"{int(gpu['persistence_mode'])}}},")


def _profile_table(name: str) -> list[str]:
    rows = [f"static const struct sim_profile SIM_PROFILES_{_ident(name)}[] SIM_UNUSED = {{"]
    for p in profiles.TABLES[name]:
        rows.append(f"    {{{p.index}, {p.id}, {p.slice_count}, {p.instance_count}, "
                    f"{p.multiprocessor_count}, {p.copy_engine_count}, {p.decoder_count}, "
                    f"{p.encoder_count}, {p.jpeg_count}, {p.ofa_count}, {p.placement_size}, "
                    f"{p.memory_mib}ULL, {c_string('MIG ' + p.name)}}},")
    rows.append("};")
    return rows


def _ident(name: str) -> str:
    return "".join(ch.upper() if ch.isalnum() else "_" for ch in name)


def _extra_row(gpu: dict[str, Any], mig_base: int) -> str:
    table = gpu["mig"]["profiles"]
    table_ref = f"SIM_PROFILES_{_ident(table)}" if table else "0"
    count = len(profiles.TABLES[table]) if table else 0
    return (f"    {{{ARCHITECTURES[gpu['architecture']]}, {gpu['pci_device_id']}U, "
            f"{gpu['pci_subsystem_id']}U, {gpu['multiprocessor_count']}, "
            f"{c_string(gpu['serial'])}, {table_ref}, {count}, {mig_base}}},")


def _numa_row(node: dict[str, Any], words: int) -> str:
    mask = [0] * words
    for cpu in cpulist_cpus(node["cpus"]):
        mask[cpu // 64] |= 1 << (cpu % 64)
    words_text = ", ".join(f"0x{word:x}ULL" for word in mask)
    return f"    {{{node['id']}, {c_string(node['cpus'])}, {{{words_text}}}}},"


def render(topology: Topology, sim_dir: str) -> str:
    """The text of sim_topology.h for ``topology`` simulated in directory ``sim_dir`` (or in
    ``DIR_PLACEHOLDER``, to be ``relocate``d)."""
    if len(sim_dir.encode("utf-8")) >= DIR_CAPACITY:
        raise SimulatorError("simulate", f"directory path longer than {DIR_CAPACITY - 1} bytes")
    gpus = topology["gpus"]
    nodes = topology["numa_nodes"]
    max_cpu = max(max(cpulist_cpus(node["cpus"])) for node in nodes)
    words = max_cpu // 64 + 1
    total_migs = sum(len(gpu["mig"]["devices"]) for gpu in gpus)
    lines = [
        f"/* Generated by gpu-ctk simulate from topology {topology['name']}; do not edit. */",
        "#ifndef SIM_TOPOLOGY_H",
        "#define SIM_TOPOLOGY_H",
        "",
        "#ifndef SIM_UNUSED",
        "#define SIM_UNUSED __attribute__((unused))",
        "#endif",
        f"#define SIM_DIR_CAPACITY {DIR_CAPACITY}",
        _DIR_ACCESS.format(dir=c_string(sim_dir)),
        f"#define SIM_TOPOLOGY_NAME {c_string(topology['name'])}",
        f"#define SIM_DRIVER_VERSION {c_string(topology['driver_version'])}",
        f"#define SIM_CUDA_VERSION {cuda_version_int(topology['cuda_version'])}",
        f"#define SIM_NVIDIA_MAJOR {NVIDIA_MAJOR}",
        f"#define SIM_UVM_MAJOR {UVM_MAJOR}",
        f"#define SIM_CAPS_MAJOR {CAPS_MAJOR}",
        f"#define SIM_GPU_COUNT {len(gpus)}",
        f"#define SIM_MIG_COUNT {total_migs}",
        f"#define SIM_NUMA_COUNT {len(nodes)}",
        f"#define SIM_CPU_WORDS {words}",
        "",
        _STRUCTS,
    ]
    for gpu in gpus:
        if gpu["mig"]["devices"]:
            lines.append(f"static const struct sim_mig SIM_MIGS_{gpu['index']}[] SIM_UNUSED = {{")
            lines.extend(_mig_row(device) for device in gpu["mig"]["devices"])
            lines.append("};")
    lines.append("static const struct sim_gpu SIM_GPUS[] SIM_UNUSED = {")
    lines.extend(_gpu_row(gpu) for gpu in gpus)
    lines.append("};")
    lines.append(f"static const unsigned SIM_NGPUS SIM_UNUSED = {len(gpus)};")
    for table in sorted({gpu["mig"]["profiles"] for gpu in gpus if gpu["mig"]["profiles"]}):
        lines.extend(_profile_table(table))
    lines.append("static const struct sim_gpu_extra SIM_GPU_EXTRAS[] SIM_UNUSED = {")
    base = 0
    for gpu in gpus:
        lines.append(_extra_row(gpu, base))
        base += len(gpu["mig"]["devices"])
    lines.append("};")
    lines.append("static const struct sim_numa SIM_NUMA[] SIM_UNUSED = {")
    lines.extend(_numa_row(node, words) for node in nodes)
    lines.append("};")
    lines += ["", "#endif /* SIM_TOPOLOGY_H */", ""]
    return "\n".join(lines)


def relocate(library: bytes, sim_dir: str) -> bytes:
    """``library`` (compiled against ``DIR_PLACEHOLDER``) with DIR set to ``sim_dir``."""
    placeholder = DIR_PLACEHOLDER.encode("ascii")
    if placeholder not in library:
        raise SimulatorError("simulate", "library has no DIR placeholder to relocate")
    path = sim_dir.encode("utf-8")
    if len(path) >= DIR_CAPACITY:
        raise SimulatorError("simulate", f"directory path longer than {DIR_CAPACITY - 1} bytes")
    return library.replace(placeholder, path.ljust(len(placeholder), b"\0"))
