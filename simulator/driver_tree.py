"""The simulated driver tree (DIR/driver), laid out like a host root with the NVIDIA driver
installed: versioned libraries with their SONAME links, the driver's binaries, and the
/proc/driver/nvidia files libnvidia-container reads for MIG capabilities.

The libraries are small real ELF objects with the right SONAME (so ldconfig indexes them in a
container), except libnvidia-ml.so.VERSION, which is the simulated NVML itself
(``install_host_root``: tools that load NVML from the driver root get a working one).
nvidia-smi is a POSIX sh stand-in that lists the GPUs whose device nodes it can see, numbered as
NVML numbers them in a container.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

from simulator import profiles
from simulator.compile import CSRC, compile_shared
from simulator.topology import Topology

LIB_DIR = "usr/lib/x86_64-linux-gnu"
BIN_DIR = "usr/bin"
STUB_SOURCE = CSRC / "driver_stub.c"

# (library, SONAME or None when the SONAME is the versioned name, driver capability)
LIBRARIES: tuple[tuple[str, Optional[str], str], ...] = (
    ("libnvidia-ml.so", "libnvidia-ml.so.1", "utility"),
    ("libnvidia-cfg.so", "libnvidia-cfg.so.1", "utility"),
    ("libcuda.so", "libcuda.so.1", "compute"),
    ("libcudadebugger.so", "libcudadebugger.so.1", "compute"),
    ("libnvidia-opencl.so", "libnvidia-opencl.so.1", "compute"),
    ("libnvidia-ptxjitcompiler.so", "libnvidia-ptxjitcompiler.so.1", "compute"),
    ("libnvidia-allocator.so", "libnvidia-allocator.so.1", "compute"),
    ("libnvidia-nvvm.so", "libnvidia-nvvm.so.4", "compute"),
    ("libnvcuvid.so", "libnvcuvid.so.1", "video"),
    ("libnvidia-encode.so", "libnvidia-encode.so.1", "video"),
    ("libnvidia-opticalflow.so", "libnvidia-opticalflow.so.1", "video"),
    ("libnvidia-eglcore.so", None, "graphics"),
    ("libnvidia-glcore.so", None, "graphics"),
    ("libnvidia-tls.so", None, "graphics"),
    ("libnvidia-glsi.so", None, "graphics"),
    ("libGLX_nvidia.so", "libGLX_nvidia.so.0", "graphics"),
    ("libEGL_nvidia.so", "libEGL_nvidia.so.0", "graphics"),
    ("libGLESv2_nvidia.so", "libGLESv2_nvidia.so.2", "graphics"),
    ("libnvidia-ngx.so", "libnvidia-ngx.so.1", "ngx"),
)

# The development links a driver install also creates (lib.so -> SONAME).
DEV_LINKS = ("libcuda.so", "libnvidia-ml.so")

# DIR/driver/NAME -> DIR/NAME: the host's kernel-facing trees, shared by both layouts.
ROOT_LINKS = ("dev", "sys")

BINARIES: tuple[tuple[str, str], ...] = (
    ("nvidia-smi", "utility"),
    ("nvidia-debugdump", "utility"),
    ("nvidia-persistenced", "compute"),
    ("nvidia-cuda-mps-control", "compute"),
    ("nvidia-cuda-mps-server", "compute"),
)


def soname(library: str, explicit: Optional[str], driver_version: str) -> str:
    """A library's SONAME; the graphics internals carry the full driver version."""
    return explicit or f"{library}.{driver_version}"


def compile_stubs(cc: str, out: Path, driver_version: str) -> None:
    """Compile every stand-in library for ``driver_version`` into ``out`` (as lib.so.VERSION)."""
    include = out / "include"
    include.mkdir()
    (include / "driver_stub_version.h").write_text(
        f'#define SIM_STUB_DRIVER_VERSION "{driver_version}"\n', encoding="utf-8")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        jobs = [pool.submit(compile_shared, cc, [STUB_SOURCE], out / f"{library}.{driver_version}",
                            soname(library, explicit, driver_version), [include])
                for library, explicit, _ in LIBRARIES]
        for job in jobs:
            job.result()
    shutil.rmtree(include)


def install(driver_dir: Path, stubs: Path, topology: Topology) -> None:
    """Lay out the driver tree in ``driver_dir`` (which must be empty or absent)."""
    version = topology["driver_version"]
    libs = driver_dir / LIB_DIR
    libs.mkdir(parents=True, exist_ok=True)
    for library, explicit, _ in LIBRARIES:
        versioned = f"{library}.{version}"
        shutil.copyfile(stubs / versioned, libs / versioned)
        os.chmod(libs / versioned, 0o755)
        name = soname(library, explicit, version)
        if name != versioned:
            os.symlink(versioned, libs / name)
        if library in DEV_LINKS:
            os.symlink(name, libs / library)
    bins = driver_dir / BIN_DIR
    bins.mkdir(parents=True, exist_ok=True)
    for binary, _ in BINARIES:
        text = nvidia_smi(topology) if binary == "nvidia-smi" else _stub_binary(binary, version)
        (bins / binary).write_text(text, encoding="utf-8")
        os.chmod(bins / binary, 0o755)
    for relative, content in proc_files(topology).items():
        path = driver_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def install_host_root(sim_dir: Path, topology: Topology) -> None:
    """Make DIR/driver a whole host root, as tools that take one root for the driver's files and
    /dev expect (NVIDIA Container Toolkit's ``nvidia-container-cli.root``): its
    libnvidia-ml.so.VERSION becomes the simulated NVML of DIR/lib (the SONAME links keep
    pointing at it), and DIR/driver/dev, DIR/driver/sys are links to DIR/dev, DIR/sys, so one
    set of device nodes serves both layouts. Runs after ``install`` and after DIR/lib."""
    driver_dir = sim_dir / "driver"
    versioned = driver_dir / LIB_DIR / f"libnvidia-ml.so.{topology['driver_version']}"
    temporary = versioned.with_name(f".{versioned.name}.tmp")
    shutil.copyfile(sim_dir / "lib" / "libnvidia-ml.so.1", temporary)
    os.chmod(temporary, 0o755)
    os.replace(temporary, versioned)
    for name in ROOT_LINKS:
        os.symlink(f"../{name}", driver_dir / name)


def _stub_binary(name: str, version: str) -> str:
    return (f"#!/bin/sh\n# {name} stand-in of the simulated NVIDIA driver {version}.\n"
            f'echo "{name}: simulated NVIDIA driver {version}"\n')


def _cap(minor: int, mode: int) -> str:
    return f"DeviceFileMinor: {minor}\nDeviceFileMode: {mode}\n"


PARAMS = ("ResmanDebugLevel: 4294967295\nRmLogonRC: 1\nModifyDeviceFiles: 1\n"
          "DeviceFileUID: 0\nDeviceFileGID: 0\nDeviceFileMode: 438\n"
          "InitializeSystemMemoryAllocations: 1\nUsePageAttributeTable: 4294967295\n"
          "EnableMSI: 1\nEnablePCIeGen3: 0\nMemoryPoolSize: 0\nKMallocHeapMaxSize: 0\n"
          "VMallocHeapMaxSize: 0\nIgnoreMMIOCheck: 0\nTCEBypassMode: 0\n"
          "EnableStreamMemOPs: 0\nEnableUserNUMAManagement: 1\nNvLinkDisable: 0\n"
          "RmProfilingAdminOnly: 1\nPreserveVideoMemoryAllocations: 0\n"
          "EnableS0ixPowerManagement: 0\nS0ixPowerManagementVideoMemoryThreshold: 256\n"
          "DynamicPowerManagement: 3\nDynamicPowerManagementVideoMemoryThreshold: 200\n"
          "RegisterPCIDriver: 1\nEnablePCIERelaxedOrderingMode: 0\nEnableGpuFirmware: 18\n"
          "EnableGpuFirmwareLogs: 2\nEnableDbgBreakpoint: 0\nOpenRmEnableUnsupportedGpus: 0\n"
          "DmaRemapPeerMmio: 1\nRegistryDwords: \"\"\nRegistryDwordsPerDevice: \"\"\n"
          "RmMsg: \"\"\nGpuBlacklist: \"\"\nTemporaryFilePath: \"\"\n"
          "ExcludedGpus: \"\"\n")
"""/proc/driver/nvidia/params of a 535 driver with its default module parameters."""


def proc_files(topology: Topology) -> dict[str, str]:
    """The driver's /proc files, relative to the host root: version, per-GPU information, the
    nvidia-caps minors and the MIG capability files (the kernel's formats)."""
    version = topology["driver_version"]
    files = {
        "proc/driver/nvidia/version":
            f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {version}  (simulated)\n"
            f"GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n",
        # The module parameters as the driver lists them; ModifyDeviceFiles: 1 lets it create
        # and fix up /dev/nvidia* itself, which a container's copy must turn off.
        "proc/driver/nvidia/params": PARAMS,
        "proc/driver/nvidia/registry": "Binary: \"\"\n",
        "proc/driver/nvidia/capabilities/mig/config": _cap(profiles.CONFIG_CAP_MINOR, 256),
        "proc/driver/nvidia/capabilities/mig/monitor": _cap(profiles.MONITOR_CAP_MINOR, 292),
    }
    minors = [f"config {profiles.CONFIG_CAP_MINOR}", f"monitor {profiles.MONITOR_CAP_MINOR}"]
    for gpu in topology["gpus"]:
        bus = gpu["bus_id"][4:].lower()  # the kernel's 4-digit domain
        files[f"proc/driver/nvidia/gpus/{bus}/information"] = (
            f"Model: \t\t {gpu['name']}\nIRQ:   \t\t {100 + gpu['index']}\n"
            f"GPU UUID: \t {gpu['uuid']}\nVideo BIOS: \t 92.00.45.00.06\nBus Type: \t PCIe\n"
            f"DMA Size: \t 47 bits\nDMA Mask: \t 0x7fffffffffff\nBus Location: \t {bus}\n"
            f"Device Minor: \t {gpu['minor']}\nGPU Excluded:\t No\n")
        for device in gpu["mig"]["devices"]:
            base = f"proc/driver/nvidia/capabilities/gpu{gpu['minor']}/mig/gi{device['gi']}"
            files[f"{base}/access"] = _cap(device["gi_cap_minor"], 292)
            files[f"{base}/ci{device['ci']}/access"] = _cap(device["ci_cap_minor"], 292)
            minors.append(f"gpu{gpu['minor']}/gi{device['gi']}/access {device['gi_cap_minor']}")
            minors.append(f"gpu{gpu['minor']}/gi{device['gi']}/ci{device['ci']}/access "
                          f"{device['ci_cap_minor']}")
    files["proc/driver/nvidia-caps/mig-minors"] = "\n".join(minors) + "\n"
    return files


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _gpu_lines(gpu: dict[str, Any]) -> list[str]:
    title = "{} (UUID: {})".format(gpu["name"], gpu["uuid"])
    lines = [f'if [ -e "$dev/nvidia{gpu["minor"]}" ]; then', f"  say {_sh_quote(title)}"]
    for device in gpu["mig"]["devices"]:
        label = f"MIG {device['profile']}"
        lines.append(f'  if [ -e "$dev/nvidia-caps/nvidia-cap{device["ci_cap_minor"]}" ]; then')
        lines.append(f"    say_mig {_sh_quote(label)} {_sh_quote(device['uuid'])}")
        lines.append("  fi")
    lines.append("fi")
    return lines


def nvidia_smi(topology: Topology) -> str:
    """The nvidia-smi stand-in: ``-L`` lists the visible GPUs and MIG devices like the real one;
    no argument prints the driver banner first. Outside a container it looks at DIR/dev (found
    from its own path), inside one at /dev."""
    version = topology["driver_version"]
    cuda = topology["cuda_version"]
    body = [line for gpu in topology["gpus"] for line in _gpu_lines(gpu)]
    return "\n".join([
        "#!/bin/sh",
        f"# nvidia-smi stand-in of the simulated GPU host {topology['name']!s}.",
        'here=$(dirname "$0")',
        "dev=/dev",
        'if [ -e "$here/../../../topology.json" ] && [ -d "$here/../../../dev" ]; then',
        '  dev="$here/../../../dev"',
        "fi",
        "gpu=-1",
        "mig=0",
        'say() { gpu=$((gpu + 1)); mig=0; echo "GPU $gpu: $1"; }',
        'say_mig() { printf "  %-15s Device %2d: (UUID: %s)\\n" "$1" "$mig" "$2";'
        " mig=$((mig + 1)); }",
        "list() {",
        *("  " + line for line in body),
        "}",
        'case "${1:-}" in',
        "  -L|--list-gpus) out=$(list) ;;",
        f"  --version) printf 'NVIDIA-SMI version  : {version}\\n"
        f"DRIVER version      : {version}\\nCUDA Version        : {cuda}\\n'; exit 0 ;;",
        f"  '') out=$(list); [ -n \"$out\" ] && printf '%s\\n' "
        f"'NVIDIA-SMI {version}   Driver Version: {version}   CUDA Version: {cuda}' ;;",
        '  *) echo "nvidia-smi (simulated): unsupported option $1" >&2; exit 2 ;;',
        "esac",
        'if [ -z "$out" ]; then echo "No devices were found"; exit 6; fi',
        'printf "%s\\n" "$out"',
        "",
    ])
