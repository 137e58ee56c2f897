"""The nvml.h structs the product's NVML calls fill (``gpu_core.nvml_lib``), field for field as the
C library lays them out; tests/gpu_core/test_nvml_lib.py checks each against nvidia-ml-py's."""

from __future__ import annotations

import ctypes
from ctypes import c_char, c_uint, c_ulonglong, c_void_p


class PciInfo(ctypes.Structure):
    """nvmlPciInfo_t (the v3 call's layout)."""

    _fields_ = [("busIdLegacy", c_char * 16), ("domain", c_uint), ("bus", c_uint),
                ("device", c_uint), ("pciDeviceId", c_uint), ("pciSubSystemId", c_uint),
                ("busId", c_char * 32)]


class Memory(ctypes.Structure):
    """nvmlMemory_t."""

    _fields_ = [("total", c_ulonglong), ("free", c_ulonglong), ("used", c_ulonglong)]


class DeviceAttributes(ctypes.Structure):
    """nvmlDeviceAttributes_t."""

    _fields_ = [("multiprocessorCount", c_uint), ("sharedCopyEngineCount", c_uint),
                ("sharedDecoderCount", c_uint), ("sharedEncoderCount", c_uint),
                ("sharedJpegCount", c_uint), ("sharedOfaCount", c_uint),
                ("gpuInstanceSliceCount", c_uint), ("computeInstanceSliceCount", c_uint),
                ("memorySizeMB", c_ulonglong)]


class GpuInstancePlacement(ctypes.Structure):
    """nvmlGpuInstancePlacement_t."""

    _fields_ = [("start", c_uint), ("size", c_uint)]


class GpuInstanceInfo(ctypes.Structure):
    """nvmlGpuInstanceInfo_t."""

    _fields_ = [("device", c_void_p), ("id", c_uint), ("profileId", c_uint),
                ("placement", GpuInstancePlacement)]


_PROFILE_COUNTS = [("id", c_uint), ("isP2pSupported", c_uint), ("sliceCount", c_uint),
                   ("instanceCount", c_uint), ("multiprocessorCount", c_uint),
                   ("copyEngineCount", c_uint), ("decoderCount", c_uint),
                   ("encoderCount", c_uint), ("jpegCount", c_uint), ("ofaCount", c_uint),
                   ("memorySizeMB", c_ulonglong)]


class GpuInstanceProfileInfo(ctypes.Structure):
    """nvmlGpuInstanceProfileInfo_t (v1: no version, no name)."""

    _fields_ = _PROFILE_COUNTS


class GpuInstanceProfileInfoV2(ctypes.Structure):
    """nvmlGpuInstanceProfileInfo_v2_t; ``version`` must be ``PROFILE_INFO_V2``."""

    _fields_ = [("version", c_uint), *_PROFILE_COUNTS, ("name", c_char * 96)]


PROFILE_INFO_V2 = ctypes.sizeof(GpuInstanceProfileInfoV2) | (2 << 24)
"""NVML_STRUCT_VERSION(nvmlGpuInstanceProfileInfo_v2_t, 2), 0x02000098 on x86_64."""
