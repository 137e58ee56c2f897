"""nvidia-ml-py's pynvml pointed at a simulated host's NVML: an independent reader of the
simulated library (the product reads NVML through gpu_core/nvml_lib.py)."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.testing import SimHost


@contextlib.contextmanager
def nvml(host: SimHost) -> Iterator[Any]:
    """pynvml bound to ``host``'s library and initialized; restored afterwards."""
    import pynvml

    with pynvml.libLoadLock:
        saved = pynvml.nvmlLib
        pynvml.nvmlLib = ctypes.CDLL(str(host.nvml_library))
        pynvml._nvmlGetFunctionPointer_cache.clear()
    pynvml.nvmlInit()
    try:
        yield pynvml
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
        with pynvml.libLoadLock:
            pynvml.nvmlLib = saved
            pynvml._nvmlGetFunctionPointer_cache.clear()


def text(value: Any) -> str:
    """An NVML string as pynvml returns it (bytes or str) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)
