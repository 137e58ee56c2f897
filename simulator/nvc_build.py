"""Compiling the simulated ``libnvidia-container.so.1`` for one release of the real library.

The C sources in ``csrc/nvc*.c`` carry every ABI generation behind ``#if`` on the version
macros; this module picks the version, exports exactly that release's functions (through a
version script, under the real library's ``NVC_1.0`` symbol version) and runs gcc.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.errors import SimulatorError, one_line

if TYPE_CHECKING:
    import cffi

Version = tuple[int, int, int]
"""A release as (major, minor, patch)."""

# One release per ABI generation (libnvc_bindings/declarations.py), plus the releases where the
# exported functions or options change inside a generation (1.2: no nvcaps yet; 1.16: imex without
# cuda-compat-mode). Oldest first; the newest is the default.
SUPPORTED_VERSIONS: tuple[str, ...] = ("1.0.7", "1.2.1", "1.3.3", "1.14.6", "1.16.2", "1.17.8")
DEFAULT_VERSION = SUPPORTED_VERSIONS[-1]

SONAME = "libnvidia-container.so.1"
CSRC = Path(__file__).resolve().parent / "csrc"

_BASE_FUNCTIONS = (
    "nvc_version", "nvc_context_new", "nvc_context_free", "nvc_config_new", "nvc_config_free",
    "nvc_init", "nvc_shutdown", "nvc_error", "nvc_container_config_new",
    "nvc_container_config_free", "nvc_container_new", "nvc_container_free",
    "nvc_driver_info_new", "nvc_driver_info_free", "nvc_device_info_new", "nvc_device_info_free",
    "nvc_driver_mount", "nvc_device_mount", "nvc_ldcache_update",
)
# (first release, functions it added)
_ADDED: tuple[tuple[Version, tuple[str, ...]], ...] = (
    ((1, 1, 0), ("nvc_mig_device_access_caps_mount", "nvc_mig_config_global_caps_mount",
                 "nvc_mig_monitor_global_caps_mount", "nvc_device_mig_caps_mount")),
    ((1, 3, 0), ("nvc_nvcaps_style", "nvc_nvcaps_device_from_proc_path")),
    ((1, 15, 0), ("nvc_imex_channel_mount",)),
)


def parse_version(version: str) -> Version:
    """``"1.17.8"`` -> ``(1, 17, 8)`` for a supported release; otherwise a one-line error."""
    if version not in SUPPORTED_VERSIONS:
        raise SimulatorError(
            "simulate",
            f"unsupported libnvidia-container version {one_line(version, 40)!r} "
            f"(supported: {', '.join(SUPPORTED_VERSIONS)})",
        )
    major, minor, patch = (int(part) for part in version.split("."))
    return (major, minor, patch)


def exported_functions(version: str) -> tuple[str, ...]:
    """The nvc_* functions the released library of that version exports, sorted."""
    release = parse_version(version)
    names = list(_BASE_FUNCTIONS)
    for first, added in _ADDED:
        if release >= first:
            names.extend(added)
    return tuple(sorted(names))


def version_script(version: str) -> str:
    """A linker version script exporting exactly that release's functions as NVC_1.0."""
    body = "".join(f"        {name};\n" for name in exported_functions(version))
    return "NVC_1.0 {\n    global:\n" + body + "    local:\n        *;\n};\n"


def gcc_command(
    gcc: str, header_dir: Path, out: Path, version: str, script: Path,
    extra_flags: Sequence[str] = (),
) -> list[str]:
    """The gcc argv building the library (pure; sources are every csrc/nvc*.c)."""
    major, minor, patch = parse_version(version)
    sources = sorted(str(path) for path in CSRC.glob("nvc*.c"))
    return [
        gcc, "-std=gnu11", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra",
        f"-DNVC_MAJOR={major}", f"-DNVC_MINOR={minor}", f"-DNVC_PATCH={patch}",
        f"-I{header_dir}", f"-I{CSRC}",
        *extra_flags,
        *sources,
        f"-Wl,-soname,{SONAME}", f"-Wl,--version-script={script}",
        "-Wl,-z,defs", "-Wl,-z,noexecstack", "-Wl,-z,relro", "-Wl,-z,now",
        "-o", str(out),
    ]


def compile_nvc(
    header_dir: Path, out: Path, version: str, extra_flags: Sequence[str] = (),
) -> None:
    """Build ``out`` (SONAME libnvidia-container.so.1) for ``version`` against the generated
    ``header_dir/sim_topology.h``. ``extra_flags`` are for tests (``-Werror``,
    ``-DNVC_FORCE_WALK`` to exercise the resolver without openat2)."""
    exported_functions(version)  # validates the version before anything is touched
    gcc = shutil.which("gcc")
    if gcc is None:
        raise SimulatorError(
            "simulate", "gcc not found on PATH (the simulated libraries are compiled from C)"
        )
    if not (Path(header_dir) / "sim_topology.h").is_file():
        raise SimulatorError("simulate", f"no sim_topology.h in {header_dir}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".nvc-build-", dir=out.parent) as tmp:
        script = Path(tmp) / "nvc.ver"
        script.write_text(version_script(version))
        built = Path(tmp) / SONAME
        argv = gcc_command(gcc, Path(header_dir), built, version, script, extra_flags)
        result = subprocess.run(
            argv, capture_output=True, text=True, check=False,
            env={"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"},
        )
        if result.returncode != 0:
            raise SimulatorError(
                "simulate",
                f"compiling libnvidia-container {version} failed: {one_line(result.stderr, 600)}",
            )
        # Rename into place so a concurrent reader never maps a half-written library.
        os.replace(built, out)


def abi_cdef(version: str) -> str:
    """cffi (ABI mode) declarations of that release's structs and exported functions, written
    from the released layouts (csrc/nvc.h's comment lists them) independently of the C header:
    tests check one against the other."""
    release = parse_version(version)
    mig, imex, firmware = release >= (1, 1, 0), release >= (1, 15, 0), release >= (1, 5, 0)
    parts = [
        "typedef int pid_t; typedef unsigned int uid_t; typedef unsigned int gid_t;",
        "typedef unsigned long dev_t;",
        "struct nvc_context; struct nvc_container;",
        "struct nvc_imex_channel { int id; };" if imex else "",
        "struct nvc_imex_info { struct nvc_imex_channel *chans; size_t nchans; };" if imex else "",
        "struct nvc_version { unsigned int major; unsigned int minor; unsigned int patch;"
        " const char *string; };",
        "struct nvc_config { char *root; char *ldcache; uid_t uid; gid_t gid;"
        + (" struct nvc_imex_info imex;" if imex else "") + " };",
        "struct nvc_device_node { char *path; dev_t id; };",
        "struct nvc_driver_info { char *nvrm_version; char *cuda_version; char **bins;"
        " size_t nbins; char **libs; size_t nlibs; char **libs32; size_t nlibs32; char **ipcs;"
        " size_t nipcs; struct nvc_device_node *devs; size_t ndevs;"
        + (" char **firmwares; size_t nfirmwares;" if firmware else "") + " };",
    ]
    if mig:
        parts += [
            "struct nvc_mig_device { struct nvc_device *parent; char *uuid; unsigned int gi;"
            " unsigned int ci; char *gi_caps_path; char *ci_caps_path; };",
            "struct nvc_mig_device_info { struct nvc_mig_device *devices; size_t ndevices; };",
        ]
    parts += [
        "struct nvc_device { char *model; char *uuid; char *busid; char *arch; char *brand;"
        " struct nvc_device_node node;"
        + (" bool mig_capable; char *mig_caps_path; struct nvc_mig_device_info mig_devices;"
           if mig else "") + " };",
        "struct nvc_device_info { struct nvc_device *gpus; size_t ngpus; };",
        "struct nvc_container_config { pid_t pid; char *rootfs; char *bins_dir; char *libs_dir;"
        " char *libs32_dir; char *cudart_dir; char *ldconfig; };",
    ]
    functions = set(exported_functions(version))
    parts += [decl for name, decl in _FUNCTION_DECLS if name in functions]
    return "\n".join(part for part in parts if part)


def open_library(path: Path, version: str) -> tuple[cffi.FFI, Any]:
    """(ffi, lib) of a built library through ``abi_cdef(version)`` (tests and tools)."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(abi_cdef(version))
    return ffi, ffi.dlopen(str(path))


_CTX = "struct nvc_context *"
_CNT = "const struct nvc_container *"
_FUNCTION_DECLS: tuple[tuple[str, str], ...] = (
    ("nvc_version", "const struct nvc_version *nvc_version(void);"),
    ("nvc_context_new", f"{_CTX}nvc_context_new(void);"),
    ("nvc_context_free", f"void nvc_context_free({_CTX});"),
    ("nvc_config_new", "struct nvc_config *nvc_config_new(void);"),
    ("nvc_config_free", "void nvc_config_free(struct nvc_config *);"),
    ("nvc_init", f"int nvc_init({_CTX}, const struct nvc_config *, const char *);"),
    ("nvc_shutdown", f"int nvc_shutdown({_CTX});"),
    ("nvc_error", f"const char *nvc_error({_CTX});"),
    ("nvc_container_config_new",
     "struct nvc_container_config *nvc_container_config_new(pid_t, const char *);"),
    ("nvc_container_config_free",
     "void nvc_container_config_free(struct nvc_container_config *);"),
    ("nvc_container_new", f"struct nvc_container *nvc_container_new({_CTX},"
     " const struct nvc_container_config *, const char *);"),
    ("nvc_container_free", "void nvc_container_free(struct nvc_container *);"),
    ("nvc_driver_info_new",
     f"struct nvc_driver_info *nvc_driver_info_new({_CTX}, const char *);"),
    ("nvc_driver_info_free", "void nvc_driver_info_free(struct nvc_driver_info *);"),
    ("nvc_device_info_new",
     f"struct nvc_device_info *nvc_device_info_new({_CTX}, const char *);"),
    ("nvc_device_info_free", "void nvc_device_info_free(struct nvc_device_info *);"),
    ("nvc_driver_mount",
     f"int nvc_driver_mount({_CTX}, {_CNT}, const struct nvc_driver_info *);"),
    ("nvc_device_mount", f"int nvc_device_mount({_CTX}, {_CNT}, const struct nvc_device *);"),
    ("nvc_ldcache_update", f"int nvc_ldcache_update({_CTX}, {_CNT});"),
    ("nvc_mig_device_access_caps_mount", f"int nvc_mig_device_access_caps_mount({_CTX},"
     f" {_CNT}, const struct nvc_mig_device *);"),
    ("nvc_mig_config_global_caps_mount",
     f"int nvc_mig_config_global_caps_mount({_CTX}, {_CNT});"),
    ("nvc_mig_monitor_global_caps_mount",
     f"int nvc_mig_monitor_global_caps_mount({_CTX}, {_CNT});"),
    ("nvc_device_mig_caps_mount",
     f"int nvc_device_mig_caps_mount({_CTX}, {_CNT}, const struct nvc_device *);"),
    ("nvc_nvcaps_style", "int nvc_nvcaps_style(void);"),
    ("nvc_nvcaps_device_from_proc_path", f"int nvc_nvcaps_device_from_proc_path({_CTX},"
     " const char *, struct nvc_device_node *);"),
    ("nvc_imex_channel_mount", f"int nvc_imex_channel_mount({_CTX}, {_CNT},"
     " const struct nvc_imex_channel *);"),
)
