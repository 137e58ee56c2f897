"""``gpu-ctk cdi generate``: a CDI spec of this host's GPUs and MIG devices, for engines that read
CDI themselves (podman, containerd and CRI-O with CDI enabled, Docker 25+).

The devices come from the discovery the shim uses (``gpu_core.discovery``): ``<kind>=<index>``,
``=<GPU-uuid>``, ``=<gpu>:<mig>``, ``=<MIG-uuid>`` and ``=all``, each naming its device nodes
(a MIG device: its parent GPU's node and its two access capability nodes). The edits every
device shares hold the control nodes and the driver files libnvidia-container reports, selected
by capabilities exactly as its mount call selects them (``gpu_core.driver_files``).

One hook, ``gpu-container-spec-hook`` (``ctk.cdi_hook``), as a ``createContainer`` hook in the
shared edits: the
engine's runtime runs it inside the container's mount namespace after the mounts, before
``pivot_root``. It gets the library directories (``--folder``), the compatibility links of the
mounted libraries (``--link TARGET::LINK``, ``gpu_core.driver_files.symlinks``), the driver
version (``--driver-version``, for CUDA forward compatibility from the image's
``/usr/local/cuda/compat``) and the driver's ``/proc/driver/nvidia`` under the driver root
(``--proc-driver``: the container's copy says ``ModifyDeviceFiles: 0``); it builds the
container's ld cache with the host's static ldconfig chrooted into the rootfs, resolving every
path inside the rootfs (never an image symlink out of it, the CVE-2025-23267 class) and running
nothing from the image. Its path is ``--hook-path``, else the configuration's
``spec.hook_path``, else ``/usr/bin/gpu-container-spec-hook``.

Each library is still bind-mounted at the names of its host links too (``libcuda.so.1``,
``libcuda.so``), so ``dlopen("libcuda.so.1")`` finds it in the directory the loader searches by
default even where an engine applies a spec's mounts but not its hooks; ldconfig leaves such a
name alone (it is not a link) and the hook leaves existing entries alone. ``--lib-dir`` picks
another directory for images whose loader searches elsewhere (``/usr/lib64`` for a RHEL image on
a Debian host). ``NVIDIA_VISIBLE_DEVICES=void`` keeps a GPU shim in the same engine from adding
the devices a second time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import posixpath
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

from ctk import cdi_hook
from gpu_core import atomic_file, driver_files
from gpu_core.errors import ShimError, one_line

if TYPE_CHECKING:
    from gpu_core.config import Config
    from gpu_core.inventory import DeviceNode, Inventory
    from libnvc_bindings import DriverInfo

STAGE = "cdi"
DEFAULT_VENDOR = "nvidia.com"
DEFAULT_CLASS = "gpu"
DEFAULT_CAPABILITIES = ("utility", "compute")
MOUNT_OPTIONS = ("ro", "nosuid", "nodev", "bind")
PERMISSIONS = "rw"
"""Device cgroup access for each node: read and write, no mknod (as the shim declares them)."""

_VENDOR_OR_CLASS = re.compile(r"[A-Za-z](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?", re.ASCII)
_DEVICE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.:-]*[A-Za-z0-9])?", re.ASCII)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    generate = actions.add_parser("generate", help="write the CDI spec of this host's GPUs")
    generate.add_argument("--format", choices=("yaml", "json"),
                          help="output format (default: json for an --output ending in .json, "
                               "else yaml)")
    generate.add_argument("--output", metavar="FILE",
                          help="write here, atomically (e.g. /etc/cdi/nvidia.yaml); default: "
                               "standard output")
    generate.add_argument("--vendor", default=DEFAULT_VENDOR,
                          help=f"vendor part of the kind (default: {DEFAULT_VENDOR})")
    generate.add_argument("--class", dest="device_class", default=DEFAULT_CLASS,
                          help=f"class part of the kind (default: {DEFAULT_CLASS})")
    generate.add_argument("--capabilities", metavar="LIST", default=",".join(DEFAULT_CAPABILITIES),
                          help="driver capabilities whose files every device brings, as "
                               "NVIDIA_DRIVER_CAPABILITIES spells them (default: utility,compute)")
    generate.add_argument("--hook-path", metavar="PATH",
                          help="the ld-cache hook the spec names (default: the configuration's "
                               f"spec.hook_path, else {cdi_hook.DEFAULT_PATH})")
    generate.add_argument("--lib-dir", metavar="DIR",
                          help="container directory for the driver libraries (default: the "
                               "host's own, relative to the driver root)")


def kind_of(vendor: str, device_class: str) -> str:
    """``vendor/class`` after CDI's rules for each part; a ``cdi`` error names the bad one."""
    for flag, value in (("--vendor", vendor), ("--class", device_class)):
        if not _VENDOR_OR_CLASS.fullmatch(value):
            raise ShimError(STAGE, one_line(
                f"{flag} {value[:64]!r}: must start with a letter, end with a letter or digit and "
                "hold only letters, digits, '_', '-' and '.'"))
    return f"{vendor}/{device_class}"


def parse_capabilities(text: str) -> frozenset[str]:
    """``utility,compute`` or ``all`` as a set; an unknown name is a ``cdi`` error."""
    from gpu_core.request import CAPABILITIES

    names = {item.strip().lower() for item in text.split(",") if item.strip()}
    if "all" in names:
        return CAPABILITIES
    unknown = sorted(names - CAPABILITIES)
    if unknown:
        raise ShimError(STAGE, f"--capabilities: unknown {', '.join(unknown)} (known: "
                               f"{', '.join(sorted(CAPABILITIES))}, all)")
    return frozenset(names)


def node_edit(node: DeviceNode) -> dict[str, Any]:
    """One CDI ``deviceNodes`` entry; numbers given so no runtime has to stat the host path."""
    edit: dict[str, Any] = {"path": node.path}
    if node.host_path != node.path:
        edit["hostPath"] = node.host_path
    edit.update({"type": "c", "major": node.major, "minor": node.minor,
                 "permissions": PERMISSIONS})
    return edit


def device_entries(inventory: Inventory) -> list[dict[str, Any]]:
    """Every named device: per GPU its index and UUID, per MIG device ``<gpu>:<mig>`` and its
    UUID, then ``all`` with the nodes of them all."""
    entries: list[dict[str, Any]] = []
    every: dict[str, DeviceNode] = {}

    def add(names: Sequence[str], nodes: Sequence[DeviceNode]) -> None:
        for node in nodes:
            every.setdefault(node.path, node)
        # A fresh mapping per name: shared ones would come out as YAML anchors and aliases.
        entries.extend({"name": name,
                        "containerEdits": {"deviceNodes": [node_edit(node) for node in nodes]}}
                       for name in names)

    for gpu in inventory.gpus:
        node = inventory.gpu_nodes.get(gpu.minor)
        if node is None:
            raise ShimError(STAGE, f"GPU {gpu.index} ({gpu.uuid}) has no device node "
                                   f"/dev/nvidia{gpu.minor} (nvidia-modprobe -c {gpu.minor} "
                                   "creates it)")
        add((str(gpu.index), gpu.uuid), (node,))
        for mig in gpu.mig_devices:
            caps = [inventory.cap_nodes.get(minor) for minor in (mig.gi_cap_minor,
                                                                 mig.ci_cap_minor)
                    if minor is not None]
            if len(caps) != 2 or None in caps:
                raise ShimError(STAGE, f"MIG device {gpu.index}:{mig.index} ({mig.uuid}) lacks "
                                       "an access capability node")
            add((f"{gpu.index}:{mig.index}", mig.uuid),
                (node, *(cap for cap in caps if cap is not None)))
    if inventory.gpus:
        add(("all",), tuple(every.values()))
    return entries


def control_nodes(inventory: Inventory, capabilities: Iterable[str]) -> list[DeviceNode]:
    """The control nodes every device needs, chosen as the devices modifier chooses them."""
    wanted = set(capabilities)
    names = ["nvidiactl"]
    if "compute" in wanted:
        names += ["nvidia-uvm", "nvidia-uvm-tools"]
    if "display" in wanted:
        names.append("nvidia-modeset")
    return [node for node in (inventory.control_node(name) for name in names)
            if node is not None]


def mount_edits(files: Iterable[driver_files.FileMount],
                links: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """CDI mounts for the driver files, plus each library again at the names of its host links
    (``links``: host path -> link names), so the names resolve even without the hook."""
    edits: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(host: str, container: str) -> None:
        if container not in seen:
            seen.add(container)
            edits.append({"hostPath": host, "containerPath": container,
                          "options": list(MOUNT_OPTIONS)})

    for mount in files:
        add(mount.host_path, mount.container_path)
        if mount.kind in ("lib", "lib32"):
            directory = posixpath.dirname(mount.container_path)
            for name in links.get(mount.host_path, ()):
                add(mount.host_path, posixpath.join(directory, name))
            if posixpath.basename(mount.container_path).startswith("libcuda.so."):
                add(mount.host_path, posixpath.join(directory, driver_files.LIBCUDA_DEV_LINK))
    return edits


def library_dirs(info: DriverInfo, driver_root: str, lib_dir: Optional[str]) -> tuple[str, str]:
    """The container's (libs, 32-bit libs) directories: ``lib_dir`` when given, else where the
    host keeps them, seen from the driver root."""
    if lib_dir:
        return lib_dir, lib_dir
    def host_dir(paths: Sequence[str], fallback: str) -> str:
        return driver_files.under_root(posixpath.dirname(paths[0]), driver_root) if paths \
            else fallback
    return (host_dir(info.libs, driver_files.MULTIARCH_DIRS[0]),
            host_dir(info.libs32, driver_files.MULTIARCH_DIRS[1]))


def minimum_version(spec: Mapping[str, Any]) -> str:
    """The lowest CDI version whose rules this spec keeps: device names starting with a digit
    and ``hostPath`` in device nodes need 0.5.0; a dot in the class needs 0.6.0."""
    device_class = str(spec["kind"]).partition("/")[2]
    return "0.6.0" if "." in device_class else "0.5.0"


def build_spec(inventory: Inventory, driver: DriverInfo, *, kind: str,
               capabilities: frozenset[str], driver_root: str,
               links: Mapping[str, Sequence[str]], lib_dir: Optional[str] = None,
               hook_path: str = cdi_hook.DEFAULT_PATH, ldconfig: str = "") -> dict[str, Any]:
    """The CDI spec as a plain mapping (pure: ``links`` was read from the host beforehand)."""
    files = driver_files.mounts(driver, capabilities, driver_root=driver_root,
                                dirs=library_dirs(driver, driver_root, lib_dir))
    hook = cdi_hook.hook_edit(files, hook_path=hook_path, driver_version=driver.nvrm_version,
                              proc_driver=posixpath.join(driver_root, "proc/driver/nvidia"),
                              ldconfig=ldconfig)
    spec: dict[str, Any] = {"cdiVersion": "", "kind": kind,
                            "devices": device_entries(inventory),
                            "containerEdits": {
                                "env": ["NVIDIA_VISIBLE_DEVICES=void"],
                                "deviceNodes": [node_edit(node) for node in
                                                control_nodes(inventory, capabilities)],
                                "mounts": mount_edits(files, links),
                                "hooks": [hook],
                            }}
    for name in (entry["name"] for entry in spec["devices"]):
        if not _DEVICE_NAME.fullmatch(name):
            raise ShimError(STAGE, one_line(f"device name {name[:80]!r} is not a CDI name"))
    spec["cdiVersion"] = minimum_version(spec)
    return spec


def render(spec: Mapping[str, Any], fmt: str, header: str) -> str:
    """The spec as YAML (with ``header`` as a comment) or JSON."""
    if fmt == "json":
        return json.dumps(spec, indent=2) + "\n"
    import yaml

    class Dumper(yaml.SafeDumper):
        """Quotes every device name: YAML 1.1 readers take an unquoted ``1:0`` for the
        base-60 number 60."""

    def name(dumper: yaml.SafeDumper, value: _Name) -> yaml.Node:
        return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="'")

    Dumper.add_representer(_Name, name)
    document = {**spec, "devices": [{**entry, "name": _Name(entry["name"])}
                                    for entry in spec["devices"]]}
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + yaml.dump(document, Dumper=Dumper, sort_keys=False,
                               default_flow_style=False)


class _Name(str):
    """A device name, which the YAML output always quotes."""


def make_directories(directory: str) -> None:
    """Create ``directory`` and its missing parents as 0755 whatever the umask: /etc/cdi does
    not exist on a fresh Debian 12, and the engines that read it run as root."""
    missing = []
    while not os.path.isdir(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for new in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(new, 0o755)
        os.chmod(new, 0o755)


def write_atomic(path: str, text: str) -> None:
    """Replace ``path`` whole or not at all: temp file beside it, fsync, rename. Run as root
    into a directory others may reach, so no link is followed: a symlink at ``path`` is refused
    in one line, and gpu_core.atomic_file makes the temporary exclusively under a random name
    and renames it over a link raced in rather than writing through it."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.islink(path):
        raise ShimError(STAGE, one_line(f"writing {path}: it is a symlink (to "
                                        f"{os.readlink(path)}); name the file itself"))
    try:
        make_directories(directory)
        atomic_file.write(path, text.encode("utf-8"), 0o644)
    except atomic_file.DirectorySyncError:
        pass  # the spec is in place; its directory entry's durability was never promised
    except OSError as exc:
        raise ShimError(STAGE, f"writing {path}: {exc.strerror or exc}") from None


def driver_info(config: Config) -> DriverInfo:
    """libnvidia-container's view of the driver's files (the list the hook mounts from)."""
    import libnvc_bindings
    from hook.preflight import host_ldconfig

    try:
        library = libnvc_bindings.load(config.libnvidia_container.library)
        with libnvc_bindings.Session(library, root=config.host.driver_root,
                                     ldconfig=host_ldconfig(config)) as session:
            session.init(load_kmods=False)
            return session.driver_info()
    except (libnvc_bindings.NvcLoadError, libnvc_bindings.NvcError) as error:
        raise ShimError(STAGE, one_line(f"libnvidia-container: {error}")) from None


def host_links(info: DriverInfo) -> dict[str, list[str]]:
    """Host library path -> the names of the links beside it that point at it."""
    return {path: driver_files.soname_links(path) for path in (*info.libs, *info.libs32)}


def run(args: argparse.Namespace) -> int:
    from gpu_core import config as config_mod
    from gpu_core.discovery import discover_from_config

    kind = kind_of(args.vendor, args.device_class)
    capabilities = parse_capabilities(args.capabilities)
    fmt = args.format or ("json" if (args.output or "").endswith(".json") else "yaml")
    config = config_mod.load()
    inventory = discover_from_config(config)
    info = driver_info(config)
    spec = build_spec(inventory, info, kind=kind, capabilities=capabilities,
                      driver_root=config.host.driver_root,
                      links=host_links(info), lib_dir=args.lib_dir,
                      hook_path=args.hook_path or config.spec.hook_path
                      or cdi_hook.DEFAULT_PATH,
                      ldconfig=config.spec.ldconfig)
    header = (f"CDI spec of {len(inventory.gpus)} GPUs, driver {inventory.driver_version}, "
              f"written by gpu-ctk cdi generate\nUse: --device {kind}=0 | {kind}=all | "
              f"{kind}=<UUID>; capabilities {','.join(sorted(capabilities))}")
    text = render(spec, fmt, header)
    if args.output:
        write_atomic(args.output, text)
        devices = len(spec["devices"])
        print(f"wrote {args.output}: {kind}, {devices} device names", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
