"""Python views of what libnvidia-container reports about the driver and the devices.

Views are plain frozen values that callers and tests can build by hand. The ones built from C
carry a ``Handle``: the C pointer a later mount call needs, plus the owned struct it points
into, so the struct lives exactly as long as some view of it does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional


class Handle:
    """A C pointer and the owned (``ffi.gc``) cdata it points into; holding one keeps the
    owner, and so the pointer, valid."""

    __slots__ = ("owner", "ptr")

    def __init__(self, ptr: Any, owner: Any) -> None:
        self.ptr = ptr
        self.owner = owner


@dataclass(frozen=True)
class DeviceNode:
    """A character device the library will create in the container."""

    path: str
    major: int
    minor: int


@dataclass(frozen=True)
class MigDevice:
    """A MIG device (GPU instance ``gi`` / compute instance ``ci``) of the GPU ``parent_uuid``."""

    uuid: str
    parent_uuid: str
    gi: int
    ci: int
    gi_caps_path: str
    ci_caps_path: str
    handle: Optional[Handle] = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Gpu:
    """A full GPU; the MIG fields stay empty before 1.1."""

    model: str
    uuid: str
    busid: str
    arch: str
    brand: str
    node: DeviceNode
    mig_capable: bool = False
    mig_caps_path: str = ""
    mig_devices: tuple[MigDevice, ...] = ()
    handle: Optional[Handle] = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class DeviceInfo:
    """Every GPU the library sees, in its order."""

    gpus: tuple[Gpu, ...]

    @property
    def mig_devices(self) -> tuple[MigDevice, ...]:
        return tuple(mig for gpu in self.gpus for mig in gpu.mig_devices)


@dataclass(frozen=True)
class DriverInfo:
    """The host driver's files and control devices; ``firmwares`` stays empty before 1.5."""

    nvrm_version: str
    cuda_version: str
    bins: tuple[str, ...]
    libs: tuple[str, ...]
    libs32: tuple[str, ...]
    ipcs: tuple[str, ...]
    devices: tuple[DeviceNode, ...]
    firmwares: tuple[str, ...] = ()
    handle: Optional[Handle] = field(default=None, repr=False, compare=False)


def has_field(ffi: Any, struct: str, name: str) -> bool:
    """Whether the generation's declaration of ``struct`` has field ``name``."""
    return any(field_name == name for field_name, _ in ffi.typeof(struct).fields)


def text(ffi: Any, ptr: Any) -> str:
    """A C string as ``str``; NULL becomes ""; undecodable bytes survive as surrogates."""
    if ptr == ffi.NULL:
        return ""
    raw: bytes = ffi.string(ptr)
    return raw.decode("utf-8", "surrogateescape")


def texts(ffi: Any, array: Any, count: int) -> tuple[str, ...]:
    """A C ``char **`` of ``count`` entries as a tuple."""
    if array == ffi.NULL:
        return ()
    return tuple(text(ffi, array[i]) for i in range(count))


def device_node(ffi: Any, node: Any) -> DeviceNode:
    """A ``struct nvc_device_node`` as a view; ``dev_t`` splits with the C library's rules."""
    return DeviceNode(path=text(ffi, node.path), major=os.major(node.id), minor=os.minor(node.id))


def driver_info(ffi: Any, info: Any) -> DriverInfo:
    """View of an owned ``struct nvc_driver_info *``."""
    devices = () if info.devs == ffi.NULL else tuple(
        device_node(ffi, info.devs[i]) for i in range(info.ndevs))
    firmwares: tuple[str, ...] = ()
    if has_field(ffi, "struct nvc_driver_info", "firmwares"):
        firmwares = texts(ffi, info.firmwares, info.nfirmwares)
    return DriverInfo(
        nvrm_version=text(ffi, info.nvrm_version),
        cuda_version=text(ffi, info.cuda_version),
        bins=texts(ffi, info.bins, info.nbins),
        libs=texts(ffi, info.libs, info.nlibs),
        libs32=texts(ffi, info.libs32, info.nlibs32),
        ipcs=texts(ffi, info.ipcs, info.nipcs),
        devices=devices,
        firmwares=firmwares,
        handle=Handle(info, info),
    )


def _mig_devices(ffi: Any, gpu: Any, parent_uuid: str, owner: Any) -> tuple[MigDevice, ...]:
    migs = gpu.mig_devices
    if migs.devices == ffi.NULL:
        return ()
    views = []
    for j in range(migs.ndevices):
        mig = migs.devices[j]
        views.append(MigDevice(
            uuid=text(ffi, mig.uuid),
            parent_uuid=parent_uuid,
            gi=mig.gi,
            ci=mig.ci,
            gi_caps_path=text(ffi, mig.gi_caps_path),
            ci_caps_path=text(ffi, mig.ci_caps_path),
            handle=Handle(migs.devices + j, owner),
        ))
    return tuple(views)


def device_info(ffi: Any, info: Any) -> DeviceInfo:
    """View of an owned ``struct nvc_device_info *``; each view's handle keeps ``info`` alive."""
    with_mig = has_field(ffi, "struct nvc_device", "mig_capable")
    gpus = []
    for i in range(info.ngpus if info.gpus != ffi.NULL else 0):
        gpu = info.gpus[i]
        uuid = text(ffi, gpu.uuid)
        gpus.append(Gpu(
            model=text(ffi, gpu.model),
            uuid=uuid,
            busid=text(ffi, gpu.busid),
            arch=text(ffi, gpu.arch),
            brand=text(ffi, gpu.brand),
            node=device_node(ffi, gpu.node),
            mig_capable=bool(gpu.mig_capable) if with_mig else False,
            mig_caps_path=text(ffi, gpu.mig_caps_path) if with_mig else "",
            mig_devices=_mig_devices(ffi, gpu, uuid, info) if with_mig else (),
            handle=Handle(info.gpus + i, info),
        ))
    return DeviceInfo(gpus=tuple(gpus))
