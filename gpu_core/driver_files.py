"""Which host driver files libnvidia-container gives a container, and where they land.

``nvc_driver_info_new`` reports every driver file it found; ``nvc_driver_mount`` then mounts
only those whose class the container's capabilities select (its ``nvc_container_new`` option
flags). ``gpu-ctk plan`` shows what the hook will mount and ``gpu-ctk cdi generate`` writes
the same files as CDI mounts, so both read the selection from here, as plain values.

The tables follow libnvidia-container's own (``nvc_info.c``): a library matches by its name up
to the version suffix, a binary by its whole name.
"""

import os
import posixpath
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from libnvc_bindings import DeviceNode, DriverInfo

NV_MAJOR = 195
MODESET_MINOR = 254

LIBRARY_CLASSES: tuple[tuple[str, str], ...] = (
    ("libnvidia-ml.so", "utility"), ("libnvidia-cfg.so", "utility"),
    ("libnvidia-nscq.so", "utility"),
    ("libcuda.so", "compute"), ("libcudadebugger.so", "compute"),
    ("libnvidia-opencl.so", "compute"), ("libnvidia-gpucomp.so", "compute"),
    ("libnvidia-ptxjitcompiler.so", "compute"), ("libnvidia-fatbinaryloader.so", "compute"),
    ("libnvidia-allocator.so", "compute"), ("libnvidia-compiler.so", "compute"),
    ("libnvidia-nvvm.so", "compute"), ("libnvidia-pkcs11.so", "compute"),
    ("libnvidia-pkcs11-openssl3.so", "compute"),
    ("libvdpau_nvidia.so", "video"), ("libnvidia-encode.so", "video"),
    ("libnvidia-opticalflow.so", "video"), ("libnvcuvid.so", "video"),
    ("libnvidia-eglcore.so", "graphics"), ("libnvidia-glcore.so", "graphics"),
    ("libnvidia-tls.so", "graphics"), ("libnvidia-glsi.so", "graphics"),
    ("libnvidia-fbc.so", "graphics"), ("libnvidia-ifr.so", "graphics"),
    ("libnvidia-rtcore.so", "graphics"), ("libnvoptix.so", "graphics"),
    ("libGLX_nvidia.so", "graphics"), ("libEGL_nvidia.so", "graphics"),
    ("libGLESv2_nvidia.so", "graphics"), ("libGLESv1_CM_nvidia.so", "graphics"),
    ("libnvidia-glvkspirv.so", "graphics"),
    ("libnvidia-ngx.so", "ngx"),
)
"""Library name (up to ``.so``) -> the class of files it belongs to."""

BINARY_CLASSES: dict[str, str] = {
    "nvidia-smi": "utility", "nvidia-debugdump": "utility", "nvidia-persistenced": "utility",
    "nvidia-cuda-mps-control": "compute", "nvidia-cuda-mps-server": "compute",
}
"""Binary name -> its class (binaries have their own flags: ``utility`` and ``compute``)."""

LIBRARY_FLAGS: dict[str, frozenset[str]] = {
    "utility": frozenset({"utility"}),
    "compute": frozenset({"compute"}),
    "video": frozenset({"video", "compute"}),
    "graphics": frozenset({"graphics"}),
    "display": frozenset({"graphics"}),
    "ngx": frozenset({"ngx"}),
}
"""Container capability -> the library classes it selects (``video`` brings compute's too)."""

BINARY_FLAGS: dict[str, frozenset[str]] = {
    "utility": frozenset({"utility"}),
    "compute": frozenset({"compute"}),
}
"""Container capability -> the binary classes it selects."""

UTILITY_SOCKETS = ("nvidia-persistenced/socket", "nvidia-fabricmanager/socket")
"""IPC paths only ``utility`` gets; every other IPC path (MPS) comes with ``compute``."""

LIBCUDA_DEV_LINK = "libcuda.so"


class DriverFileLists(Protocol):
    """The driver's files as found on the host: libnvidia-container's driver info, or
    ``gpu_core.driver_scan.HostDriver`` (spec mode, without the library)."""

    @property
    def bins(self) -> Sequence[str]: ...
    @property
    def libs(self) -> Sequence[str]: ...
    @property
    def libs32(self) -> Sequence[str]: ...
    @property
    def ipcs(self) -> Sequence[str]: ...
    @property
    def firmwares(self) -> Sequence[str]: ...


class FileMount(NamedTuple):
    """One host file bind-mounted read-only into the container."""

    host_path: str
    container_path: str
    kind: str
    """``bin``, ``lib``, ``lib32``, ``ipc`` or ``firmware``."""


class Symlink(NamedTuple):
    """A link the library creates beside the libraries it mounted: ``path -> target``."""

    path: str
    target: str


def library_class(name: str) -> str:
    """The class of library file ``name`` (``libcuda.so.535.104.05``), or '' if unknown."""
    for prefix, kind in LIBRARY_CLASSES:
        if name == prefix or name.startswith(prefix + "."):
            return kind
    return ""


def _selected(capabilities: Iterable[str], flags: dict[str, frozenset[str]]) -> frozenset[str]:
    classes: set[str] = set()
    for capability in capabilities:
        classes |= flags.get(capability, frozenset())
    return frozenset(classes)


MULTIARCH_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/i386-linux-gnu")
LIB64_DIRS = ("/usr/lib64", "/usr/lib32")


def container_dirs(multiarch: bool) -> tuple[str, str]:
    """(libs dir, 32-bit libs dir) libnvidia-container picks: Debian's multiarch directories when
    the image has ``/etc/debian_version``, else the lib64/lib32 pair."""
    return MULTIARCH_DIRS if multiarch else LIB64_DIRS


def under_root(path: str, root: str) -> str:
    """``path`` as the container sees it: the host path with the driver root taken off."""
    root = os.path.normpath(root)
    if root == "/":
        return path
    relative = os.path.relpath(path, root)
    return "/" + relative if not relative.startswith("..") else path


def mounts(info: DriverFileLists, capabilities: Iterable[str], *, driver_root: str = "/",
           dirs: tuple[str, str] = MULTIARCH_DIRS,
           bins_dir: str = "/usr/bin") -> list[FileMount]:
    """The files ``nvc_driver_mount`` mounts for a container with ``capabilities``, in its
    order: binaries, libraries, 32-bit libraries (``compat32``), firmware, IPC sockets.
    ``dirs`` are the container's (libs, 32-bit libs) directories."""
    wanted = frozenset(capabilities)
    libs_dir, libs32_dir = dirs
    lib_classes = _selected(wanted, LIBRARY_FLAGS)
    bin_classes = _selected(wanted, BINARY_FLAGS)
    found: list[FileMount] = []
    for path in info.bins:
        name = posixpath.basename(path)
        if BINARY_CLASSES.get(name) in bin_classes:
            found.append(FileMount(path, posixpath.join(bins_dir, name), "bin"))
    libraries: list[tuple[str, str, Sequence[str]]] = [("lib", libs_dir, info.libs)]
    if "compat32" in wanted:
        libraries.append(("lib32", libs32_dir, info.libs32))
    for kind, directory, paths in libraries:
        for path in paths:
            name = posixpath.basename(path)
            if library_class(name) in lib_classes:
                found.append(FileMount(path, posixpath.join(directory, name), kind))
    for path in info.firmwares:
        found.append(FileMount(path, under_root(path, driver_root), "firmware"))
    for path in info.ipcs:
        needs = "utility" if any(s in path for s in UTILITY_SOCKETS) else "compute"
        if needs in wanted:
            found.append(FileMount(path, under_root(path, driver_root), "ipc"))
    return found


def symlinks(mounted: Iterable[FileMount]) -> list[Symlink]:
    """The compatibility links the library adds next to the libraries it mounted (ldconfig
    then adds the SONAME links)."""
    links: list[Symlink] = []
    for mount in mounted:
        if mount.kind not in ("lib", "lib32"):
            continue
        directory, name = posixpath.split(mount.container_path)
        if name.startswith("libcuda.so"):
            links.append(Symlink(posixpath.join(directory, LIBCUDA_DEV_LINK), "libcuda.so.1"))
        elif name.startswith("libGLX_nvidia.so"):
            links.append(Symlink(posixpath.join(directory, "libGLX_indirect.so.0"), name))
        elif name.startswith("libnvidia-opticalflow.so"):
            links.append(Symlink(posixpath.join(directory, "libnvidia-opticalflow.so"),
                                 "libnvidia-opticalflow.so.1"))
    return list(dict.fromkeys(links))


def control_devices(info: "DriverInfo", capabilities: Iterable[str]) -> "list[DeviceNode]":
    """The driver's control nodes the library mounts: nvidiactl always, nvidia-uvm* with the
    compute libraries (``compute`` or ``video``), nvidia-modeset with ``display``."""
    wanted = frozenset(capabilities)
    compute_libs = "compute" in _selected(wanted, LIBRARY_FLAGS)  # video brings them too
    chosen = []
    for node in info.devices:
        if node.major != NV_MAJOR and not compute_libs:
            continue
        if node.major == NV_MAJOR and node.minor == MODESET_MINOR and "display" not in wanted:
            continue
        chosen.append(node)
    return chosen


def soname_links(path: str) -> list[str]:
    """Names of the symlinks beside host library ``path`` that point at it (its SONAME link,
    ``libcuda.so.1 -> libcuda.so.535.104.05``, which the host's ldconfig made). Reads the
    directory only."""
    directory, name = os.path.split(path)
    links = []
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError:
        return []
    for entry in entries:
        if entry.name == name or not entry.is_symlink():
            continue
        try:
            target = os.readlink(entry.path)
        except OSError:
            continue
        if target in (name, "./" + name):
            links.append(entry.name)
    return links
