"""Build a simulated GPU host in a directory (``gpu-ctk simulate``).

Everything is checked and compiled before DIR changes: the topology, the fault specs, the
target directory (an existing one must already hold a simulated host), and the C libraries
(through a content-keyed cache). Then DIR is laid out as the simulator contract describes.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import stat
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

from simulator import compile as cc_tools
from simulator import driver_tree, faults, header, host_files, topology
from simulator.errors import SimulatorError, one_line
from simulator.topology import Topology

MARKER = "topology.json"
MANAGED = ("dev", "driver", "sys", "proc")
STATE = ("run", "log")
NVML_SOURCES = ("nvml.c", "sim_faults.h")


def build(topology_ref: str, into: Path, fault_specs: Sequence[str] = (),
          nvc_version: Optional[str] = None, *, cache_dir: Optional[Path] = None,
          compiler: Optional[str] = None, reset_state: bool = False) -> Topology:
    """Build the host of ``topology_ref`` (built-in name or YAML file) in ``into``; return the
    normalized topology. ``reset_state`` also empties DIR/run and DIR/log."""
    topo = topology.load(topology_ref)
    chosen = faults.parse_all(fault_specs, len(topo["gpus"]))
    sim_dir = Path(os.path.abspath(into))
    check_target(sim_dir)
    cache, distrust = cc_tools.safe_cache(cache_dir or cc_tools.default_cache_dir())
    if distrust is not None:
        print(one_line(f"gpu-ctk: simulate: not using the compile cache ({distrust}): "
                       f"compiling into {cache}"), file=sys.stderr)
    nvc = _nvc_module()
    version = _nvc_version(nvc, nvc_version) if nvc is not None else ""
    compiler_path: list[str] = []

    def cc() -> str:
        # Resolved on the first cache miss: a warm cache builds without a compiler.
        if not compiler_path:
            compiler_path.append(cc_tools.find_compiler(compiler))
        return compiler_path[0]

    if len(str(sim_dir).encode("utf-8")) >= header.DIR_CAPACITY:
        raise SimulatorError("simulate", one_line(
            f"{sim_dir}: the path is longer than {header.DIR_CAPACITY - 1} bytes"))
    # Compiled once per topology for a placeholder DIR, then relocated into sim_dir.
    header_text = header.render(topo, header.DIR_PLACEHOLDER)
    # The three compiles are independent; gcc runs outside the GIL.
    with ThreadPoolExecutor(max_workers=3) as pool:
        nvml_job = pool.submit(_compile_nvml, cc, cache, header_text)
        nvc_job = pool.submit(_compile_nvc, cc, cache, header_text, nvc, version) \
            if nvc is not None else None
        stubs_job = pool.submit(_compile_stubs, cc, cache, topo["driver_version"])
        nvml_entry = nvml_job.result()
        nvc_entry = nvc_job.result() if nvc_job is not None else None
        stubs = stubs_job.result()

    if os.geteuid() != 0:
        # Checked before DIR changes: the device nodes need CAP_MKNOD.
        raise SimulatorError("simulate", "creating the device nodes needs root (CAP_MKNOD): run "
                                        "gpu-ctk simulate as root")
    _write_host(sim_dir, topo, nvml_entry, nvc_entry, stubs, chosen, reset_state)
    if nvc is None:
        raise SimulatorError("simulate", one_line(
            f"libnvidia-container: simulator.nvc_build is missing from this installation, so "
            f"{sim_dir}/lib has no libnvidia-container.so.1 (everything else was built)"))
    return topo


def set_faults(into: Path, fault_specs: Sequence[str]) -> Topology:
    """Replace the faults of the host already built in ``into``; nothing is recompiled."""
    sim_dir = Path(os.path.abspath(into))
    check_owned(sim_dir)
    topo = read_topology(sim_dir)
    faults.apply(sim_dir, faults.parse_all(fault_specs, len(topo["gpus"])))
    return topo


def read_topology(sim_dir: Path) -> Topology:
    """The topology of the host built in ``sim_dir``."""
    try:
        document: Topology = json.loads((sim_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SimulatorError("simulate", one_line(
            f"{sim_dir} holds no simulated host ({MARKER}: {exc})")) from None
    return document


def check_target(sim_dir: Path) -> None:
    """Refuse a target that exists but is not a directory, or is a non-empty directory without a
    simulated host in it (the build replaces whole subdirectories), and one that someone else
    owns or could change: the root hook loads the libraries built there."""
    check_owned(sim_dir)
    if sim_dir.is_dir() and any(sim_dir.iterdir()) and not (sim_dir / MARKER).is_file():
        raise SimulatorError("simulate", one_line(
            f"{sim_dir} is not empty and holds no simulated host ({MARKER}); refusing to "
            f"write into it"))


def check_owned(sim_dir: Path) -> None:
    """``simulate --into``: a directory of the caller that nobody else can write, under
    directories nobody else can swap (gpu_core.private_dirs); a new one is made so."""
    from gpu_core import private_dirs

    try:
        info: Optional[os.stat_result] = sim_dir.lstat()
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise SimulatorError("simulate", one_line(f"{sim_dir}: {exc.strerror or exc}")) from None
    if info is not None and (stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode)):
        raise SimulatorError("simulate", f"{sim_dir} exists and is not a directory")
    problem = private_dirs.ancestor_problem(str(sim_dir.parent))
    if info is not None and info.st_uid != os.geteuid():
        problem = f"{sim_dir} is owned by uid {info.st_uid}, not by you"
    elif info is not None and info.st_mode & 0o022:
        problem = (f"{sim_dir} is writable by group or others (mode "
                   f"{stat.S_IMODE(info.st_mode):04o})")
    if problem is not None:
        raise SimulatorError("simulate", one_line(
            f"--into {sim_dir}: {problem}; the root hook would load libraries others can "
            "swap: choose a directory of your own"))


def config_document(sim_dir: Path, topo: Topology) -> dict[str, Any]:
    """config.yaml pointing every component at the simulated host in ``sim_dir``."""
    d = str(sim_dir)
    python = os.path.abspath(sys.executable)
    return {
        "nvml": {"library": f"{d}/lib/libnvidia-ml.so.1"},
        "libnvidia_container": {"library": f"{d}/lib/libnvidia-container.so.1",
                                "load_kmods": False},
        "host": {"dev_root": f"{d}/dev", "driver_root": f"{d}/driver", "sysfs_root": f"{d}/sys"},
        "log": {"file": f"{d}/log/gpu-container-shim.log"},
        "mig": {"lease_dir": f"{d}/run/leases"},
        "hook": hook_entry(python),
        "simulation": {"dir": d, "topology": topo["name"]},
    }


def hook_entry(python: str) -> dict[str, Any]:
    """This Python, isolated (no PYTHONPATH or user site of the caller), runs the hook from the
    tree this process imported it from: ``-m hook`` alone would miss a tree on no default path,
    such as the packages' private /usr/lib/gpu-container-shim."""
    import hook

    tree = os.path.dirname(os.path.dirname(os.path.abspath(hook.__file__)))
    code = (f"import sys; sys.path.insert(0, {json.dumps(tree)}); "
            f"from hook.main import main; sys.exit(main())")
    return {"path": python, "args": [python, "-I", "-c", code]}


def render_config(sim_dir: Path, topo: Topology) -> str:
    """The text of DIR/config.yaml."""
    import yaml

    body = yaml.safe_dump(config_document(sim_dir, topo), sort_keys=False,
                          default_flow_style=False)
    return (f"# Written by gpu-ctk simulate: the simulated GPU host {topo['name']} in {sim_dir}.\n"
            f"# Use it with GPU_CONTAINER_SHIM_CONFIG={sim_dir}/config.yaml\n{body}")


def _nvc_module() -> Optional[Any]:
    """A2's simulated libnvidia-container builder, or None when this tree lacks it."""
    try:
        return importlib.import_module("simulator.nvc_build")
    except ModuleNotFoundError as exc:
        if exc.name == "simulator.nvc_build":
            return None
        raise


def _nvc_version(nvc: Any, wanted: Optional[str]) -> str:
    supported = [str(version) for version in nvc.SUPPORTED_VERSIONS]
    version = wanted or str(nvc.DEFAULT_VERSION)
    if version not in supported:
        raise SimulatorError("simulate", one_line(
            f"--nvc-version {version}: not simulated (supported: {', '.join(supported)})"))
    return version


def _compile_nvml(cc: Any, cache: Path, header_text: str) -> Path:
    sources = [cc_tools.CSRC / name for name in NVML_SOURCES]
    # Keyed without the compiler's path so that a warm cache needs no compiler at all.
    key = cc_tools.cache_key(["nvml", *sources, header_text, *cc_tools.CFLAGS])

    def produce(scratch: Path) -> None:
        (scratch / "sim_topology.h").write_text(header_text, encoding="utf-8")
        cc_tools.compile_shared(cc(), [cc_tools.CSRC / "nvml.c"],
                                scratch / "libnvidia-ml.so.1", "libnvidia-ml.so.1",
                                [scratch, cc_tools.CSRC])

    return cc_tools.cached(cache, key, produce)


def _compile_nvc(cc: Any, cache: Path, header_text: str, nvc: Any, version: str) -> Path:
    sources = sorted(path for path in cc_tools.CSRC.iterdir()
                     if path.name.startswith("nvc") or path.name == "sim_faults.h")
    builder = Path(nvc.__file__)
    key = cc_tools.cache_key(["nvc", *sources, builder, header_text, version])

    def produce(scratch: Path) -> None:
        include = scratch / "include"
        include.mkdir()
        (include / "sim_topology.h").write_text(header_text, encoding="utf-8")
        cc()  # a clear error when there is no compiler, before the builder tries one
        nvc.compile_nvc(include, scratch / "libnvidia-container.so.1", version)
        shutil.copyfile(include / "sim_topology.h", scratch / "sim_topology.h")
        shutil.rmtree(include)

    return cc_tools.cached(cache, key, produce)


def _compile_stubs(cc: Any, cache: Path, driver_version: str) -> Path:
    key = cc_tools.cache_key(["driver-stubs", driver_tree.STUB_SOURCE, driver_version,
                              repr(driver_tree.LIBRARIES), *cc_tools.CFLAGS])
    return cc_tools.cached(cache, key,
                           lambda scratch: driver_tree.compile_stubs(cc(), scratch, driver_version))


def _clear(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _write_host(sim_dir: Path, topo: Topology, nvml_entry: Path, nvc_entry: Optional[Path],
                stubs: Path, chosen: list[faults.Fault], reset_state: bool) -> None:
    from gpu_core import private_dirs

    if not sim_dir.exists():
        private_dirs.make_parents(str(sim_dir.parent), 0o755)
        private_dirs.make_dir(str(sim_dir), 0o755)
    os.chmod(sim_dir, 0o755)
    _write_text(sim_dir / MARKER, json.dumps(topo, indent=2) + "\n")
    for name in MANAGED + (STATE if reset_state else ()):
        _clear(sim_dir / name)
    for entry, name in ((nvml_entry, "libnvidia-ml.so.1"),
                        (nvc_entry, "libnvidia-container.so.1")):
        if entry is not None:
            data = header.relocate((entry / name).read_bytes(), str(sim_dir))
            cc_tools.install(data, sim_dir / "lib" / name)
    host_files.write_nodes(sim_dir / "dev", host_files.device_nodes(topo))
    driver_tree.install(sim_dir / "driver", stubs, topo)
    driver_tree.install_host_root(sim_dir, topo)
    host_files.write_files(sim_dir, host_files.sys_files(topo))
    host_files.write_files(sim_dir, host_files.proc_files(topo))
    for directory, mode in ((sim_dir / "run", 0o755), (sim_dir / "run" / "leases", 0o700),
                            (sim_dir / "log", 0o755)):
        if not directory.exists():  # exact modes whatever the umask (gpu_core/private_dirs.py)
            private_dirs.make_dir(str(directory), mode)
    faults.apply(sim_dir, chosen)
    _write_text(sim_dir / "config.yaml", render_config(sim_dir, topo))


def _write_text(path: Path, text: str) -> None:
    cc_tools.write_new(text.encode("utf-8"), path, 0o644)
