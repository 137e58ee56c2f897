"""A small ctypes binding of the NVML calls the product makes (README §Performance).

``import pynvml`` costs about 31 ms (it imports ``ctypes.util``, which pulls in subprocess,
shutil and tempfile); the shim's create and the hook only need some twenty calls, so they go
through this module instead: plain ``ctypes`` (about 3 ms), the library dlopened by path — the
configured ``nvml.library`` or the dynamic linker's ``libnvidia-ml.so.1`` — and the struct
layouts of nvml.h (``gpu_core.nvml_structs``). Every failure is an ``NvmlError`` carrying
NVML's return code, the library's own ``nvmlErrorString`` text and the C symbol that failed.
"""

from __future__ import annotations

import _thread
import contextlib
import ctypes
from ctypes import byref, c_int, c_uint, c_void_p
from typing import Any, Optional, TypeVar

from gpu_core.errors import ShimError, one_line
from gpu_core.nvml_structs import (
    PROFILE_INFO_V2,
    DeviceAttributes,
    GpuInstanceInfo,
    GpuInstanceProfileInfo,
    GpuInstanceProfileInfoV2,
    Memory,
    PciInfo,
)

DEFAULT_LIBRARY = "libnvidia-ml.so.1"

S = TypeVar("S", bound=ctypes.Structure)

# nvmlReturn_t values the product tells apart (nvml.h).
SUCCESS = 0
ERROR_UNINITIALIZED = 1
ERROR_INVALID_ARGUMENT = 2
ERROR_NOT_SUPPORTED = 3
ERROR_NOT_FOUND = 6
ERROR_LIBRARY_NOT_FOUND = 12
ERROR_FUNCTION_NOT_FOUND = 13
ERROR_GPU_IS_LOST = 15
ERROR_RESET_REQUIRED = 16

DEVICE_MIG_ENABLE = 1
FEATURE_ENABLED = 1
GPU_INSTANCE_PROFILE_COUNT = 0x12
"""How many ``NVML_GPU_INSTANCE_PROFILE_*`` enum values there are (nvml.h 12.x)."""

_TEXT_SIZE = 96  # NVML_DEVICE_UUID_V2_BUFFER_SIZE / NAME_V2: the largest the calls used need


class NvmlError(Exception):
    """One failed NVML call: ``value`` is the nvmlReturn_t, ``call`` the C symbol, and the text
    what the library's ``nvmlErrorString`` says about the code."""

    def __init__(self, value: int, message: str, call: str) -> None:
        super().__init__(message)
        self.value = value
        self.call = call


class Nvml:
    """One NVML library. ``None`` with a ``path``: the default could not be loaded yet; each
    call tries again (a readiness wait outlives a driver still being installed) and, failing,
    reports NVML's LIBRARY_NOT_FOUND, as an init would. ``references`` counts the inits not yet
    shut down through this object."""

    def __init__(self, library: Optional[ctypes.CDLL], path: str = "") -> None:
        self._library = library
        self._path = path
        self.references = 0

    def error_string(self, code: int) -> str:
        """``nvmlErrorString(code)``; a fixed text when the library cannot say."""
        try:
            function = self._symbol("nvmlErrorString")
            function.restype = ctypes.c_char_p
            text = function(c_int(code))
        except Exception:  # no library or no such symbol: the code alone must do
            text = None
        if isinstance(text, bytes) and text:
            return text.decode(errors="replace")
        return f"NVML Error with code {code}"

    def _symbol(self, name: str) -> Any:
        if self._library is None and self._path:
            with contextlib.suppress(OSError):
                self._library = ctypes.CDLL(self._path)
        if self._library is None:
            raise NvmlError(ERROR_LIBRARY_NOT_FOUND, "NVML Shared Library Not Found", name)
        try:
            return getattr(self._library, name)
        except AttributeError:
            raise NvmlError(ERROR_FUNCTION_NOT_FOUND, "Function Not Found", name) from None

    def call(self, name: str, *args: Any) -> None:
        """Call the C function ``name``; a return code other than SUCCESS raises."""
        code = self._symbol(name)(*args)
        if code != SUCCESS:
            raise NvmlError(int(code), self.error_string(int(code)), name)

    # -- the session --
    def init(self, flags: int = 0) -> None:
        self.call("nvmlInitWithFlags", c_uint(flags))
        self.references += 1

    def shutdown(self) -> None:
        self.call("nvmlShutdown")
        self.references = max(0, self.references - 1)

    # -- the system --
    def driver_version(self) -> str:
        return self._text("nvmlSystemGetDriverVersion", 80)

    def cuda_driver_version(self) -> int:
        return self._int("nvmlSystemGetCudaDriverVersion", c_int)

    def device_count(self) -> int:
        return self._int("nvmlDeviceGetCount_v2")

    # -- handles --
    def handle_by_index(self, index: int) -> c_void_p:
        return self._handle("nvmlDeviceGetHandleByIndex_v2", c_uint(index))

    def handle_by_uuid(self, uuid: str) -> c_void_p:
        return self._handle("nvmlDeviceGetHandleByUUID", uuid.encode())

    def mig_handle_by_index(self, device: c_void_p, index: int) -> c_void_p:
        return self._handle("nvmlDeviceGetMigDeviceHandleByIndex", device, c_uint(index))

    def parent_of_mig(self, mig: c_void_p) -> c_void_p:
        return self._handle("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", mig)

    def gpu_instance_by_id(self, device: c_void_p, gi_id: int) -> c_void_p:
        return self._handle("nvmlDeviceGetGpuInstanceById", device, c_uint(gi_id))

    # -- one device --
    def uuid(self, device: c_void_p) -> str:
        return self._text("nvmlDeviceGetUUID", _TEXT_SIZE, device)

    def name(self, device: c_void_p) -> str:
        return self._text("nvmlDeviceGetName", _TEXT_SIZE, device)

    def minor_number(self, device: c_void_p) -> int:
        return self._int("nvmlDeviceGetMinorNumber", c_uint, device)

    def brand(self, device: c_void_p) -> int:
        return self._int("nvmlDeviceGetBrand", c_int, device)

    def pci_info(self, device: c_void_p) -> PciInfo:
        return self._struct("nvmlDeviceGetPciInfo_v3", PciInfo(), device)

    def memory_info(self, device: c_void_p) -> Memory:
        return self._struct("nvmlDeviceGetMemoryInfo", Memory(), device)

    def persistence_mode(self, device: c_void_p) -> int:
        return self._int("nvmlDeviceGetPersistenceMode", c_uint, device)

    def compute_capability(self, device: c_void_p) -> tuple[int, int]:
        major, minor = c_int(), c_int()
        self.call("nvmlDeviceGetCudaComputeCapability", device, byref(major), byref(minor))
        return major.value, minor.value

    def mig_mode(self, device: c_void_p) -> tuple[int, int]:
        """(current, pending)."""
        current, pending = c_uint(), c_uint()
        self.call("nvmlDeviceGetMigMode", device, byref(current), byref(pending))
        return current.value, pending.value

    def max_mig_device_count(self, device: c_void_p) -> int:
        return self._int("nvmlDeviceGetMaxMigDeviceCount", c_uint, device)

    def gpu_instance_id(self, mig: c_void_p) -> int:
        return self._int("nvmlDeviceGetGpuInstanceId", c_uint, mig)

    def compute_instance_id(self, mig: c_void_p) -> int:
        return self._int("nvmlDeviceGetComputeInstanceId", c_uint, mig)

    def attributes(self, mig: c_void_p) -> DeviceAttributes:
        return self._struct("nvmlDeviceGetAttributes_v2", DeviceAttributes(), mig)

    def gpu_instance_info(self, instance: c_void_p) -> GpuInstanceInfo:
        return self._struct("nvmlGpuInstanceGetInfo", GpuInstanceInfo(), instance)

    def gpu_instance_profile_info(self, device: c_void_p, profile: int) -> GpuInstanceProfileInfoV2:
        info = GpuInstanceProfileInfoV2(version=PROFILE_INFO_V2)
        return self._struct("nvmlDeviceGetGpuInstanceProfileInfoV", info, device, c_uint(profile))

    def gpu_instance_profile_info_v1(self, device: c_void_p, profile: int
                                     ) -> GpuInstanceProfileInfo:
        return self._struct("nvmlDeviceGetGpuInstanceProfileInfo", GpuInstanceProfileInfo(),
                            device, c_uint(profile))

    # -- the shapes of out-parameters --
    def _int(self, name: str, kind: Any = c_uint, *args: Any) -> int:
        out = kind()
        self.call(name, *args, byref(out))
        return int(out.value)

    def _text(self, name: str, size: int, *args: Any) -> str:
        buffer = ctypes.create_string_buffer(size)
        self.call(name, *args, buffer, c_uint(size))
        return buffer.value.decode(errors="replace")

    def _handle(self, name: str, *args: Any) -> c_void_p:
        out = c_void_p()
        self.call(name, *args, byref(out))
        return out

    def _struct(self, name: str, out: S, *args: Any) -> S:
        self.call(name, *args, byref(out))
        return out


_loaded: dict[str, Nvml] = {}
_lock = _thread.allocate_lock()  # threading.Lock itself, without importing threading


def open_nvml(library: str = "") -> Nvml:
    """The NVML at ``library`` (the configured path) or the dynamic linker's default, loaded
    once per process and path, so every user in one start shares one init count. A configured
    path that cannot be loaded is a ``discovery`` ShimError; a missing default is reported by
    the first call, as NVML's LIBRARY_NOT_FOUND (readiness waits on a driver still loading)."""
    wanted = library or DEFAULT_LIBRARY
    with _lock:
        if wanted in _loaded:
            return _loaded[wanted]
        try:
            nvml = Nvml(ctypes.CDLL(wanted))
        except OSError as exc:
            if library:
                raise ShimError("discovery", one_line(f"nvml: cannot load {library}: {exc}")) \
                    from None
            return Nvml(None, wanted)  # not cached: the next start looks afresh
        _loaded[wanted] = nvml
        return nvml
