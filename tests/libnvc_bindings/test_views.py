"""Python views of driver and device info, read from structs built in memory per generation."""

from __future__ import annotations

import os
from typing import Any

import pytest

from libnvc_bindings import declarations, views
from libnvc_bindings.views import DeviceNode, MigDevice


class Arena:
    """Keeps every cdata a hand-built struct points at alive for the test."""

    def __init__(self, version: tuple[int, int, int]) -> None:
        self.ffi = declarations.ffi_for(version)
        self.keep: list[Any] = []

    def new(self, ctype: str, init: Any = None) -> Any:
        cdata = self.ffi.new(ctype, init)
        self.keep.append(cdata)
        return cdata

    def s(self, text: str) -> Any:
        return self.new("char[]", text.encode())

    def strv(self, items: list[str]) -> Any:
        return self.new("char *[]", [self.s(item) for item in items])


def _driver(arena: Arena, with_firmware: bool) -> Any:
    info = arena.new("struct nvc_driver_info *")
    info.nvrm_version = arena.s("550.54.15")
    info.cuda_version = arena.s("12.4")
    info.bins, info.nbins = arena.strv(["/usr/bin/nvidia-smi"]), 1
    info.libs, info.nlibs = arena.strv(["/lib/libcuda.so.550.54.15", "/lib/libnvidia-ml.so.1"]), 2
    info.libs32, info.nlibs32 = arena.ffi.NULL, 0
    info.ipcs, info.nipcs = arena.strv(["/run/nvidia-persistenced/socket"]), 1
    devs = arena.new("struct nvc_device_node[]", 1)
    devs[0].path = arena.s("/dev/nvidiactl")
    devs[0].id = os.makedev(195, 255)
    info.devs, info.ndevs = devs, 1
    if with_firmware:
        info.firmwares, info.nfirmwares = arena.strv(["/lib/firmware/nvidia/gsp.bin"]), 1
    return info


@pytest.mark.parametrize(("version", "firmwares"), [
    ((1, 4, 0), ()), ((1, 5, 0), ("/lib/firmware/nvidia/gsp.bin",)),
])
def test_driver_info_view(version: tuple[int, int, int], firmwares: tuple[str, ...]) -> None:
    """Every list comes across; NULL lists are empty; firmwares only from 1.5."""
    arena = Arena(version)
    view = views.driver_info(arena.ffi, _driver(arena, with_firmware=bool(firmwares)))
    assert (view.nvrm_version, view.cuda_version) == ("550.54.15", "12.4")
    assert view.bins == ("/usr/bin/nvidia-smi",)
    assert view.libs == ("/lib/libcuda.so.550.54.15", "/lib/libnvidia-ml.so.1")
    assert view.libs32 == ()
    assert view.ipcs == ("/run/nvidia-persistenced/socket",)
    assert view.devices == (DeviceNode("/dev/nvidiactl", 195, 255),)
    assert view.firmwares == firmwares


def _gpu(arena: Arena, gpu: Any, index: int) -> None:
    gpu.model = arena.s("NVIDIA A100-SXM4-40GB")
    gpu.uuid = arena.s(f"GPU-{index}")
    gpu.busid = arena.s(f"00000000:0{index}:00.0")
    gpu.arch = arena.s("8.0")
    gpu.brand = arena.s("Nvidia")
    gpu.node.path = arena.s(f"/dev/nvidia{index}")
    gpu.node.id = os.makedev(195, index)


def test_device_info_view_before_mig() -> None:
    """1.0 GPUs come across with empty MIG fields."""
    arena = Arena((1, 0, 2))
    info = arena.new("struct nvc_device_info *")
    gpus = arena.new("struct nvc_device[]", 2)
    for i in range(2):
        _gpu(arena, gpus[i], i)
    info.gpus, info.ngpus = gpus, 2
    view = views.device_info(arena.ffi, info)
    assert [g.uuid for g in view.gpus] == ["GPU-0", "GPU-1"]
    assert view.gpus[1].node == DeviceNode("/dev/nvidia1", 195, 1)
    assert view.gpus[0].busid == "00000000:00:00.0"
    assert (view.gpus[0].mig_capable, view.gpus[0].mig_caps_path, view.mig_devices) == (
        False, "", ())


def test_device_info_view_with_mig() -> None:
    """From 1.1 each GPU carries its MIG devices, with gi/ci and caps paths."""
    arena = Arena((1, 17, 8))
    info = arena.new("struct nvc_device_info *")
    gpus = arena.new("struct nvc_device[]", 1)
    _gpu(arena, gpus[0], 0)
    gpus[0].mig_capable = True
    gpus[0].mig_caps_path = arena.s("/proc/driver/nvidia/capabilities/gpu0/mig")
    migs = arena.new("struct nvc_mig_device[]", 1)
    migs[0].parent = gpus
    migs[0].uuid = arena.s("MIG-a")
    migs[0].gi, migs[0].ci = 3, 0
    migs[0].gi_caps_path = arena.s("/proc/driver/nvidia/capabilities/gpu0/mig/gi3/access")
    migs[0].ci_caps_path = arena.s("/proc/driver/nvidia/capabilities/gpu0/mig/gi3/ci0/access")
    gpus[0].mig_devices.devices, gpus[0].mig_devices.ndevices = migs, 1
    info.gpus, info.ngpus = gpus, 1
    view = views.device_info(arena.ffi, info)
    assert view.gpus[0].mig_capable is True
    assert view.gpus[0].mig_caps_path == "/proc/driver/nvidia/capabilities/gpu0/mig"
    assert view.mig_devices == (MigDevice(
        uuid="MIG-a", parent_uuid="GPU-0", gi=3, ci=0,
        gi_caps_path="/proc/driver/nvidia/capabilities/gpu0/mig/gi3/access",
        ci_caps_path="/proc/driver/nvidia/capabilities/gpu0/mig/gi3/ci0/access"),)


def test_handles_point_into_the_owner() -> None:
    """Each GPU's handle points at its own element and keeps the whole info alive."""
    arena = Arena((1, 17, 8))
    info = arena.new("struct nvc_device_info *")
    gpus = arena.new("struct nvc_device[]", 2)
    for i in range(2):
        _gpu(arena, gpus[i], i)
    info.gpus, info.ngpus = gpus, 2
    view = views.device_info(arena.ffi, info)
    handle = view.gpus[1].handle
    assert handle is not None
    assert handle.owner is info
    assert arena.ffi.string(handle.ptr.uuid) == b"GPU-1"


def test_undecodable_bytes_survive() -> None:
    """A path with invalid UTF-8 is kept byte for byte (as surrogates), not replaced."""
    arena = Arena((1, 5, 0))
    raw = b"/dev/nv\xffidia0"
    assert views.text(arena.ffi, arena.new("char[]", raw)).encode(
        "utf-8", "surrogateescape") == raw


def test_null_string_is_empty() -> None:
    """A NULL char* reads as the empty string."""
    arena = Arena((1, 5, 0))
    assert views.text(arena.ffi, arena.ffi.NULL) == ""
