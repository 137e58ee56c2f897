"""Which driver files a container's capabilities select, and where they land."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpu_core import driver_files
from libnvc_bindings import DeviceNode, DriverInfo

LIB = "/drv/usr/lib/x86_64-linux-gnu"
LIB32 = "/drv/usr/lib/i386-linux-gnu"
INFO = DriverInfo(
    nvrm_version="535.104.05", cuda_version="12.2",
    bins=tuple(f"/drv/usr/bin/{b}" for b in ("nvidia-smi", "nvidia-cuda-mps-control")),
    libs=tuple(f"{LIB}/{n}.so.535.104.05" for n in (
        "libnvidia-ml", "libcuda", "libnvcuvid", "libGLX_nvidia", "libnvidia-ngx",
        "libnvidia-opticalflow", "libunknown")),
    libs32=(f"{LIB32}/libcuda.so.535.104.05",),
    ipcs=("/drv/run/nvidia-persistenced/socket", "/drv/tmp/nvidia-mps"),
    devices=(DeviceNode("/dev/nvidiactl", 195, 255), DeviceNode("/dev/nvidia-uvm", 510, 0),
             DeviceNode("/dev/nvidia-modeset", 195, 254)),
    firmwares=("/drv/lib/firmware/nvidia/535.104.05/gsp_tu10x.bin",),
)


def names(capabilities: set[str]) -> list[str]:
    return [os.path.basename(m.container_path)
            for m in driver_files.mounts(INFO, capabilities, driver_root="/drv")
            if m.kind in ("bin", "lib", "lib32")]


@pytest.mark.parametrize(("capabilities", "expected"), [
    ({"utility"}, ["nvidia-smi", "libnvidia-ml.so.535.104.05"]),
    ({"compute"}, ["nvidia-cuda-mps-control", "libcuda.so.535.104.05"]),
    ({"video"}, ["libcuda.so.535.104.05", "libnvcuvid.so.535.104.05",
                 "libnvidia-opticalflow.so.535.104.05"]),
    ({"display"}, ["libGLX_nvidia.so.535.104.05"]),
    ({"ngx"}, ["libnvidia-ngx.so.535.104.05"]),
    ({"compute", "compat32"}, ["nvidia-cuda-mps-control", "libcuda.so.535.104.05",
                               "libcuda.so.535.104.05"]),
    (set(), []),
])
def test_capabilities_select_file_classes(capabilities: set[str], expected: list[str]) -> None:
    """Each capability brings its classes as libnvidia-container's flags do (video brings the
    compute libraries but not the MPS binaries); unknown libraries are never mounted."""
    assert names(capabilities) == expected


def test_destinations_follow_the_image_layout() -> None:
    """Binaries go to /usr/bin, libraries to the given directories, firmware and IPC to their
    own path below the driver root."""
    found = {m.kind: m.container_path for m in driver_files.mounts(
        INFO, {"utility", "compute", "compat32"}, driver_root="/drv",
        dirs=driver_files.container_dirs(False))}
    assert found == {"bin": "/usr/bin/nvidia-cuda-mps-control",
                     "lib": "/usr/lib64/libcuda.so.535.104.05",
                     "lib32": "/usr/lib32/libcuda.so.535.104.05",
                     "firmware": "/lib/firmware/nvidia/535.104.05/gsp_tu10x.bin",
                     "ipc": "/tmp/nvidia-mps"}


def test_ipc_sockets_follow_utility_and_compute() -> None:
    """The persistenced socket comes with utility, every other IPC path with compute."""
    def ipcs(capabilities: set[str]) -> list[str]:
        return [m.container_path for m in driver_files.mounts(INFO, capabilities,
                                                              driver_root="/drv")
                if m.kind == "ipc"]
    assert ipcs({"utility"}) == ["/run/nvidia-persistenced/socket"]
    assert ipcs({"compute"}) == ["/tmp/nvidia-mps"]


@pytest.mark.parametrize(("capabilities", "expected"), [
    ({"utility"}, ["/dev/nvidiactl"]),
    ({"compute"}, ["/dev/nvidiactl", "/dev/nvidia-uvm"]),
    ({"video"}, ["/dev/nvidiactl", "/dev/nvidia-uvm"]),
    ({"display", "compute"}, ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-modeset"]),
])
def test_control_devices(capabilities: set[str], expected: list[str]) -> None:
    """nvidiactl always, uvm with the compute libraries (compute, or video, which brings
    them), modeset only with display."""
    assert [n.path for n in driver_files.control_devices(INFO, capabilities)] == expected


def test_symlinks_beside_mounted_libraries() -> None:
    """libcuda.so, libGLX_indirect.so.0 and libnvidia-opticalflow.so, in library order."""
    mounted = driver_files.mounts(INFO, {"compute", "video", "graphics"}, driver_root="/drv")
    links = [(link.path, link.target) for link in driver_files.symlinks(mounted)]
    d = "/usr/lib/x86_64-linux-gnu"
    assert links == [(f"{d}/libcuda.so", "libcuda.so.1"),
                     (f"{d}/libGLX_indirect.so.0", "libGLX_nvidia.so.535.104.05"),
                     (f"{d}/libnvidia-opticalflow.so", "libnvidia-opticalflow.so.1")]


def test_soname_links_are_the_host_links_to_the_file(tmp_path: Path) -> None:
    """Only links in the same directory naming the file itself count."""
    lib = tmp_path / "libcuda.so.535.104.05"
    lib.write_bytes(b"")
    (tmp_path / "libcuda.so.1").symlink_to("libcuda.so.535.104.05")
    (tmp_path / "libcuda.so").symlink_to("libcuda.so.1")
    (tmp_path / "elsewhere.so").symlink_to("/other/libcuda.so.535.104.05")
    assert driver_files.soname_links(str(lib)) == ["libcuda.so.1"]


@pytest.mark.parametrize(("path", "root", "expected"), [
    ("/drv/lib/firmware/x.bin", "/drv", "/lib/firmware/x.bin"),
    ("/lib/firmware/x.bin", "/", "/lib/firmware/x.bin"),
    ("/other/x.bin", "/drv", "/other/x.bin"),
])
def test_under_root(path: str, root: str, expected: str) -> None:
    """The driver root comes off a path below it; other paths stay as they are."""
    assert driver_files.under_root(path, root) == expected
