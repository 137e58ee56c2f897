"""Which libnvidia-container failures are worth retrying, kept as data (README
§The prestart hook, bounded retry).

A message is matched case-insensitively against substrings of what ``nvc_error(ctx)`` returns.
PERMANENT is checked first, so a message naming both wins as permanent.

Unmatched messages are ``unclassified`` and are treated as permanent. Why: a retried
permanent failure turns into a slow one (the whole retry deadline, every concurrent start
holding its slot) that looks like flakiness and hides a new failure mode, whereas an
unretried transient one fails fast with its own message, and teaching the table a new
transient message is a one-line change here. The transient messages seen in the field are
listed explicitly, including NVML's generic ``unknown error``, which the driver returns while
devices are still binding.
"""

from __future__ import annotations

TRANSIENT: tuple[str, ...] = (
    # cuInit during driver start-up or while a device is still binding.
    "cuda error: unknown error",
    # NVSwitch systems before fabric manager is up.
    "cuda error: system not yet initialized",
    # The driver RPC helper process did not answer in time (host under load).
    "driver rpc error: timed out",
    # The kernel module is still loading.
    "nvml error: driver not loaded",
    # NVML's catch-all, seen while devices are binding; the NVML twin of cuda's.
    "nvml error: unknown error",
    "nvml error: timeout",
    # errno values that mean "not now" rather than "never".
    "resource temporarily unavailable",
    "device or resource busy",
    "interrupted system call",
)

PERMANENT: tuple[str, ...] = (
    # A driver upgrade without reboot: nothing but a reboot fixes it.
    "driver/library version mismatch",
    # A GPU that fell off the bus needs a reset, not a retry.
    "nvml error: gpu is lost",
    "unknown device",
    "invalid option",
    "invalid argument",
    "unsupported",
    "not supported",
    "permission denied",
    "insufficient permissions",
    "not provided by libnvidia-container",
)

KINDS = ("transient", "permanent", "unclassified")


def classify(message: str) -> str:
    """Return ``permanent``, ``transient`` or ``unclassified`` for an ``nvc_error`` message."""
    text = message.lower()
    if any(pattern in text for pattern in PERMANENT):
        return "permanent"
    if any(pattern in text for pattern in TRANSIENT):
        return "transient"
    return "unclassified"


def is_transient(message: str) -> bool:
    """Whether a retry may help; unclassified messages are not retried (see module docstring)."""
    return classify(message) == "transient"
