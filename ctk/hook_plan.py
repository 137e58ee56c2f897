"""What ``gpu-container-hook`` would do for a bundle, asked of the library without mounting.

The hook's sequence is ``nvc_init`` -> container -> driver and device info -> mounts -> ldcache
(``hook.mounts.configure``). ``nvc_driver_info_new`` and ``nvc_device_info_new`` need only an
initialised context, no container and no pid, so the plan runs exactly those, matches the
selection to the library's devices with the hook's own ``hook.mounts.plan`` and lists what the
mount calls would bind, from ``gpu_core.driver_files``. Kernel modules are never loaded here
(``load-kmods`` off), whatever the configuration says: a plan touches nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from gpu_core import driver_files
from gpu_core.errors import ShimError

if TYPE_CHECKING:
    from gpu_core.config import Config
    from gpu_core.inventory import Inventory
    from gpu_core.request import DeviceRequest
    from gpu_core.selection import Selection


@dataclass(frozen=True)
class HookPlan:
    """The hook's part of a plan: each list holds display lines; ``problem`` is the hook's
    error line when it would fail the start ('' when it would not)."""

    injected: bool
    stage: str = ""
    library: str = ""
    checks: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    files: tuple[driver_files.FileMount, ...] = ()
    links: tuple[driver_files.Symlink, ...] = ()
    ldcache: str = ""
    notes: tuple[str, ...] = ()
    problem: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "injected": self.injected, "stage": self.stage, "library": self.library,
            "checks": list(self.checks), "devices": list(self.devices),
            "nodes": list(self.nodes),
            "files": [{"host": f.host_path, "container": f.container_path, "kind": f.kind}
                      for f in self.files],
            "links": [{"path": link.path, "target": link.target} for link in self.links],
            "ldcache": self.ldcache, "notes": list(self.notes), "problem": self.problem,
        }


@dataclass
class _Draft:
    """The plan as it is filled in; a failure keeps what was learned before it."""

    stage: str
    library: str = ""
    checks: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    files: list[driver_files.FileMount] = field(default_factory=list)
    links: list[driver_files.Symlink] = field(default_factory=list)
    ldcache: str = ""
    notes: list[str] = field(default_factory=list)

    def done(self, problem: str = "") -> HookPlan:
        return HookPlan(injected=True, stage=self.stage, library=self.library,
                        checks=tuple(self.checks), devices=tuple(self.devices),
                        nodes=tuple(self.nodes), files=tuple(self.files),
                        links=tuple(self.links), ldcache=self.ldcache, notes=tuple(self.notes),
                        problem=problem)


def has_debian_version(rootfs: str) -> Optional[bool]:
    """Whether the image has ``/etc/debian_version`` (libnvidia-container then uses the
    multiarch library directories); None when it cannot tell without following a link of the
    image (``/etc`` a symlink, or no rootfs yet). Never leaves the rootfs."""
    flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        root = os.open(rootfs, flags)
    except OSError:
        return None
    try:
        etc = os.open("etc", flags | os.O_NOFOLLOW, dir_fd=root)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    finally:
        os.close(root)
    try:
        os.stat("debian_version", dir_fd=etc, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False
    except OSError:
        return None
    finally:
        os.close(etc)


def plan_hook(config: Config, spec: Mapping[str, Any], bundle: str,
              request: Optional[DeviceRequest], discover: Callable[[], Inventory]) -> HookPlan:
    """The hook's plan for the spec the shim would write, with ``request`` as the shim left it
    (MIG profiles already turned into the devices a lease would give); ``discover`` gives the
    inventory (the shim's, discovered once)."""
    if request is None:
        return HookPlan(injected=False)
    from gpu_core.bundle import rootfs_path
    from gpu_core.selection import select
    from hook.preflight import check_requirements, host_ldconfig

    draft = _Draft(stage=config.hook.stage)
    try:
        inventory = discover()
        selection = select(request, inventory)
        check_requirements(request, inventory, selection)
        draft.checks.append(_requirements_line(request, selection))
        ready = [f"GPU {g.index}" for g in selection.checked_gpus] + \
            [f"MIG {m.parent_index}:{m.index}" for m in selection.mig_devices]
        if ready:
            draft.checks.append(f"readiness: waits up to {config.readiness.timeout}s"
                                f" for {', '.join(ready)} to answer NVML")
        rootfs = rootfs_path(spec, bundle)
        ldconfig = host_ldconfig(config)
    except ShimError as error:
        return draft.done(f"{error.stage}: {error.cause}")
    multiarch = has_debian_version(rootfs)
    if multiarch is None:
        draft.notes.append(f"library directory: decided at start inside {rootfs} (shown: the "
                           "Debian layout)")
    try:
        _library_part(config, draft, request, selection, inventory,
                      multiarch is not False, ldconfig)
    except ShimError as error:
        return draft.done(f"{error.stage}: {error.cause}")
    return draft.done()


def _requirements_line(request: DeviceRequest, selection: Selection) -> str:
    if not request.checked_requirements:
        why = "disabled" if request.disable_require else "none asked"
        return f"requirements: {why}"
    gpus = ", ".join(f"GPU {g.index}" for g in selection.checked_gpus) or "the host"
    return f"requirements: {' AND '.join(request.checked_requirements)} satisfied by {gpus}"


def _library_part(config: Config, draft: _Draft, request: DeviceRequest, selection: Selection,
                  inventory: Inventory, multiarch: bool, ldconfig: str) -> None:
    import libnvc_bindings
    from hook import mounts

    driver_root = config.host.driver_root
    library, cli, reason = mounts.library_or_cli(config.libnvidia_container)
    if library is None:
        draft.library = f"nvidia-container-cli {cli} (fallback: {reason})"
        draft.notes.append("the CLI decides the mounts itself; listed: the devices only")
        draft.devices += [_gpu_line(g.index, g.uuid, g.minor, inventory) for g in selection.gpus]
        return
    draft.library = f"libnvidia-container {library.version_string} ({library.path})"
    try:
        with libnvc_bindings.Session(library, root=driver_root, ldconfig=ldconfig) as session:
            session.init(load_kmods=False)
            driver = session.driver_info()
            devices = session.device_info()
    except libnvc_bindings.NvcError as error:
        if error.transient:  # the hook retries these; the plan does not wait to see
            draft.notes.append(f"{error.stage} failed with a transient error the hook retries "
                               f"({error.message}); driver files not listed")
            return
        raise ShimError("initialization" if error.stage == "nvc_init" else "detection",
                        error.message) from None
    mounted = mounts.plan(request, selection, devices)
    capabilities = request.capabilities
    draft.notes.append("nvc_container_new options: "
                       + " ".join(mounts.container_options(capabilities, library.version)))
    by_uuid = {g.uuid.lower(): g for g in inventory.gpus}
    for gpu in mounted.gpus:
        found = by_uuid.get(gpu.uuid.lower())
        draft.devices.append(_gpu_line(found.index if found else -1, gpu.uuid,
                                       gpu.node.minor, inventory, gpu.node.major)
                             + f", /proc/driver/nvidia/gpus/{gpu.busid}")
    migs = {m.uuid.lower(): m for g in inventory.gpus for m in g.mig_devices}
    for mig in mounted.migs:
        known = migs.get(mig.uuid.lower())
        caps = [inventory.cap_nodes.get(minor) for minor in
                ((known.gi_cap_minor, known.ci_cap_minor) if known else ())
                if minor is not None]
        where = f"MIG {known.parent_index}:{known.index}" if known else "MIG"
        nodes = ", ".join(f"{n.path} ({n.major}:{n.minor})" for n in caps if n is not None)
        draft.devices.append(f"{where} ({mig.uuid}): access capabilities {nodes or 'none'}")
    for name, gpus in (("config", mounted.mig_config), ("monitor", mounted.mig_monitor)):
        if gpus:
            draft.devices.append(f"MIG {name} capability (global) and the MIG capabilities of "
                                 + ", ".join(g.uuid for g in gpus))
    draft.nodes += [f"{n.path} ({n.major}:{n.minor})"
                    for n in driver_files.control_devices(driver, capabilities)]
    draft.files += driver_files.mounts(driver, capabilities, driver_root=driver_root,
                                       dirs=driver_files.container_dirs(multiarch))
    draft.links += driver_files.symlinks(draft.files)
    libs_dir = driver_files.container_dirs(multiarch)[0]
    draft.ldcache = f"host {ldconfig.lstrip('@')} over {libs_dir} in the container's root"


def _gpu_line(index: int, uuid: str, minor: int, inventory: Inventory,
              major: int = driver_files.NV_MAJOR) -> str:
    node = inventory.gpu_nodes.get(minor)
    path = node.path if node else f"/dev/nvidia{minor}"
    label = f"GPU {index}" if index >= 0 else "GPU"
    return f"{label} ({uuid}): {path} ({major}:{minor})"
