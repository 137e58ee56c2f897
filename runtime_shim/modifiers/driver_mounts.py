"""Spec mode (README §Spec mode): declare the driver's files in config.json, for the runtime to
mount, and register the lean hook that does what a mount cannot.

For a GPU container with a request (not one the engine injected from a CDI spec) under
``mode: spec``: the files ``gpu_core.driver_files`` selects for the request's capabilities
(from ``gpu_core.driver_scan``, the host's files as libnvidia-container reports them), each a
read-only ``nosuid,nodev`` bind mount at the path libnvidia-container would use for this image
(the multiarch library directories when it has ``/etc/debian_version``, else lib64/lib32); and
one ``createContainer`` hook, ``gpu-container-spec-hook``, with the library links, the
``/proc/driver/nvidia`` entries of the selected GPUs, the MIG capability files naming the
nvidia-caps nodes the ``devices`` modifier declares (``gpu_core.device_nodes.mig_cap_files``)
and the ld cache to make. Device nodes and their allow rules stay the ``devices`` modifier's.

A second pass over its own output (a retried create on the same bundle) replaces its entries
rather than adding them again: mounts equal to ones it adds, and every spec-hook entry, are
taken out first.
"""

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

from gpu_core import driver_files, driver_scan, spec_hook_entry
from gpu_core.device_nodes import global_caps_of, mig_cap_files
from gpu_core.errors import ShimError
from runtime_shim.cdi_injection import SPEC_MARK
from runtime_shim.context import Context, Notes, Spec

if TYPE_CHECKING:
    from gpu_core.driver_files import FileMount, Symlink
    from gpu_core.inventory import Gpu

STAGE = "driver-mounts"
HOOK_NAME = spec_hook_entry.NAME
HOOK_STAGE = spec_hook_entry.STAGE
HOOK_ENV = (*spec_hook_entry.ENV, SPEC_MARK)
"""The hook's whole environment; the mark tells a retried create this entry is the shim's own
(runtime_shim.cdi_injection)."""
MOUNT_OPTIONS = ("ro", "nosuid", "nodev", "bind")
HOOK_STAGES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
               "poststop")


class Declared(NamedTuple):
    """What spec mode declares for one container (``gpu-ctk plan`` shows it too)."""

    mounts: tuple[dict[str, Any], ...]
    hook: dict[str, Any]
    notes: tuple[str, ...]


def apply(spec: Spec, ctx: Context) -> tuple[Spec, Notes]:
    if ctx.config.mode != "spec" or not ctx.gpu:
        return spec, []
    if ctx.injected is not None:
        return spec, ["driver-mounts: none: the engine injected the driver from a CDI spec"]
    declared = declare(spec, ctx)
    if declared is None:
        return spec, []
    return edit(spec, list(declared.mounts), declared.hook, ctx.config.spec.hook_path,
                list(declared.notes))


def declare(spec: Spec, ctx: Context) -> Optional[Declared]:
    """The mounts and the hook entry for ``spec``'s request (None without one); requirements
    are checked first."""
    if ctx.request is None:
        return None
    from gpu_core.bundle import rootfs_path
    from gpu_core.image_facts import has_debian_version

    request = ctx.request
    inventory = ctx.inventory()
    selection = ctx.selection(request)
    check_requirements(ctx)
    driver = ctx.host_driver()
    multiarch = has_debian_version(rootfs_path(spec, ctx.bundle))
    dirs = driver_files.container_dirs(multiarch)
    root = ctx.config.host.driver_root
    files = driver_files.mounts(driver, request.capabilities, driver_root=root, dirs=dirs)
    proc = driver_scan.proc_driver(root)
    gpus = [name for name in (driver_scan.proc_gpu_name(proc, gpu.bus_id)
                              for gpu in selection.checked_gpus) if name]
    has_proc = os.path.isdir(proc)
    caps = mig_cap_files(selection, global_caps_of(request)) if has_proc else []
    entry = hook_entry(ctx, files, dirs, inventory.driver_version, proc if has_proc else "",
                       gpus, caps)
    notes = describe(files, driver_files.symlinks(files), selection.checked_gpus, multiarch,
                     caps)
    return Declared(tuple(mount_entry(f) for f in files), entry, tuple(notes))


def check_requirements(ctx: Context) -> None:
    """``NVIDIA_REQUIRE_*`` against each selected GPU (a MIG device: its parent), else the host:
    in spec mode no hook checks them later."""
    from gpu_core.requirements import GpuFacts, check

    request = ctx.request
    if request is None or not request.checked_requirements:
        return
    inventory = ctx.inventory()
    cuda, driver = inventory.cuda_version, inventory.driver_version
    facts = [GpuFacts(cuda=cuda, driver=driver, arch=gpu.cc, brand=gpu.brand)
             for gpu in ctx.selection(request).checked_gpus]
    check(request.checked_requirements, facts or [GpuFacts(cuda=cuda, driver=driver)])


def mount_entry(mount: "FileMount") -> dict[str, Any]:
    return {"destination": mount.container_path, "type": "bind", "source": mount.host_path,
            "options": list(MOUNT_OPTIONS)}


def hook_entry(ctx: Context, files: "Sequence[FileMount]", dirs: tuple[str, str], version: str,
               proc: str, gpus: Sequence[str], caps: Sequence[str] = ()) -> dict[str, Any]:
    """The ``createContainer`` entry of the spec hook (its argv: README §Spec mode); ``caps``
    are capability files relative to ``proc``, passed only with it."""
    settings = ctx.config.spec
    args = [HOOK_NAME, "--folder", dirs[0]]
    if any(f.kind == "lib32" for f in files):
        args += ["--folder", dirs[1]]
    for link in driver_files.symlinks(files):
        args += ["--link", f"{link.target}::{link.path}"]
    args += ["--driver-version", version]
    if proc:
        args += ["--proc-driver", proc]
    for name in gpus:
        args += ["--gpu", name]
    if proc:
        for rel in caps:
            args += ["--proc-file", rel]
    args += ["--ldconfig", settings.ldconfig,
             "--timeout", str(max(1, settings.hook_timeout - 1))]
    return {"path": settings.hook_path, "args": args, "env": list(HOOK_ENV),
            "timeout": settings.hook_timeout}


def is_spec_hook(entry: Any, hook_path: str) -> bool:
    """Our spec hook's entry, of this configuration or another (any path named like it)."""
    path = entry.get("path") if isinstance(entry, dict) else None
    return isinstance(path, str) and (path == hook_path or
                                      os.path.basename(path) == HOOK_NAME)


def edit(spec: Spec, mounts: list[dict[str, Any]], entry: dict[str, Any], hook_path: str,
         notes: Notes) -> tuple[Spec, Notes]:
    """``spec`` with ``mounts`` appended and ``entry`` as the last createContainer hook, earlier
    copies of either taken out; the same object when that changes nothing."""
    existing = spec.get("mounts", [])
    if not isinstance(existing, list):
        raise ShimError(STAGE, f"config.json mounts is {type(existing).__name__}, not an array")
    hooks = spec.get("hooks", {})
    if hooks is None:
        hooks = {}
    if not isinstance(hooks, dict):
        raise ShimError(STAGE, f"config.json hooks is {type(hooks).__name__}, not an object")
    new_hooks = dict(hooks)
    for name in HOOK_STAGES:
        entries = hooks.get(name)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise ShimError(STAGE, f"config.json hooks.{name} is {type(entries).__name__}, "
                                   "not a list")
        new_hooks[name] = [e for e in entries if not is_spec_hook(e, hook_path)]
    new_hooks[HOOK_STAGE] = [*new_hooks.get(HOOK_STAGE, []), entry]
    new_mounts = [m for m in existing if m not in mounts] + mounts
    if new_mounts == existing and new_hooks == hooks:
        return spec, []
    return {**spec, "mounts": new_mounts, "hooks": new_hooks}, notes


def describe(files: "Sequence[FileMount]", links: "Sequence[Symlink]", gpus: "Sequence[Gpu]",
             multiarch: bool, caps: Sequence[str] = ()) -> Notes:
    kinds: dict[str, int] = {}
    for mount in files:
        kinds[mount.kind] = kinds.get(mount.kind, 0) + 1
    counted = ", ".join(f"{count} {kind}" for kind, count in kinds.items()) or "no files"
    layout = "multiarch" if multiarch else "lib64"
    shown = ", ".join(f"GPU {gpu.index}" for gpu in gpus) or "no GPU"
    return [f"driver-mounts: {counted} bound read-only ({layout} layout)",
            f"driver-mounts: {HOOK_STAGE} {HOOK_NAME}: {len(links)} links, ld cache, "
            f"/proc/driver/nvidia for {shown}"
            + (f" with {len(caps)} MIG capability files" if caps else "")]
