"""The parsed device request as ``gpu-ctk plan`` shows it: one summary line for the text report
and the whole request as JSON (README §``gpu-ctk plan``), each part with where it came from.

Sources are written ``env:<VARIABLE>``, ``swarm:<VARIABLE>``, ``mounts`` (the
``/var/run/nvidia-container-devices`` list), ``legacy:CUDA_VERSION`` (the legacy CUDA image
rule), ``cdi:<name>`` (a CDI device name), and ``default``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from gpu_core.request import DeviceRequest
    from gpu_core.selection import Selection


def devices_source(request: DeviceRequest) -> str:
    """Where the device list came from, as one source string."""
    if request.source in ("env", "swarm"):
        return ",".join(f"{request.source}:{name}" for name in request.origin)
    if request.source == "legacy":
        return "legacy:CUDA_VERSION"
    return request.source


def summary(request: Optional[DeviceRequest]) -> str:
    """The text report's ``request:`` line."""
    if request is None:
        return "none: not a GPU container (no GPU edits, no hook)"
    devices = ",".join(request.devices) or "none (driver only)"
    line = (f"devices {devices} (from {devices_source(request)}), capabilities "
            f"{','.join(sorted(request.capabilities)) or 'none'} "
            f"(from {capabilities_source(request)})")
    if request.cdi:
        line += ", CDI " + ",".join(f"{name}->{token}" for name, token in request.cdi)
    if request.checked_requirements:
        line += ", requirements " + " AND ".join(request.checked_requirements)
    elif request.disable_require:
        line += ", requirements disabled"
    if request.imex_channels:
        line += f", IMEX channels {','.join(request.imex_channels)}"
    return line


def capabilities_source(request: DeviceRequest) -> str:
    return {"env": "env:NVIDIA_DRIVER_CAPABILITIES", "legacy": "legacy:CUDA_VERSION"}.get(
        request.capabilities_source, "default")


def to_json(request: Optional[DeviceRequest],
            select: Optional[Callable[[], Selection]] = None) -> dict[str, Any]:
    """The whole parsed request; ``select`` resolves it against the host (None: not resolved,
    ``gpus``/``mig_devices`` then empty; ``selection_error`` says why when it failed)."""
    if request is None:
        return {"gpu_container": False, "summary": summary(None)}
    mig_config, mig_monitor = request.mig_config, request.mig_monitor
    document: dict[str, Any] = {
        "gpu_container": True,
        "summary": summary(request),
        "privileged": request.privileged,
        "devices": list(request.devices),
        "devices_source": devices_source(request),
        "cdi": [{"name": name, "device": token} for name, token in request.cdi],
        "gpus": [], "mig_devices": [],
        "capabilities": sorted(request.capabilities),
        "capabilities_source": capabilities_source(request),
        "requirements": list(request.requirements),
        "requirement_sources": _requirement_sources(request),
        "requirements_disabled": request.disable_require,
        "mig_config": list(mig_config),
        "mig_config_source": "env:NVIDIA_MIG_CONFIG_DEVICES" if mig_config else None,
        "mig_monitor": list(mig_monitor),
        "mig_monitor_source": "env:NVIDIA_MIG_MONITOR_DEVICES" if mig_monitor else None,
        "imex_channels": list(request.imex_channels),
        "imex_channels_source": _imex_source(request),
    }
    if select is not None:
        from gpu_core.errors import ShimError

        try:
            selection = select()
        except ShimError as error:
            document["selection_error"] = f"{error.stage}: {error.cause}"
            return document
        document["gpus"] = [_gpu(request, gpu.index, gpu.uuid) for gpu in selection.gpus]
        document["mig_devices"] = [
            {"gpu": mig.parent_index, "index": mig.index, "uuid": mig.uuid,
             "parent_uuid": mig.parent_uuid, "source": _device_source(request, mig.uuid,
                                                                      mig.parent_index,
                                                                      mig.index)}
            for mig in selection.mig_devices]
    return document


def _gpu(request: DeviceRequest, index: int, uuid: str) -> dict[str, Any]:
    return {"index": index, "uuid": uuid, "source": _device_source(request, uuid, index)}


def _device_source(request: DeviceRequest, uuid: str, index: int,
                   mig_index: Optional[int] = None) -> str:
    """The source of the token that named this device (``all`` names every device)."""
    spelled = {uuid.lower(), str(index) if mig_index is None else f"{index}:{mig_index}"}
    for name, token in request.cdi:
        if token.lower() in spelled or token == "all":
            return f"cdi:{name}"
    return devices_source(request)


def _requirement_sources(request: DeviceRequest) -> list[str]:
    sources = list(request.requirement_sources)
    sources += ["env"] * (len(request.requirements) - len(sources))
    return [s if s.startswith("legacy:") else f"env:{s}" if s != "env" else s for s in sources]


def _imex_source(request: DeviceRequest) -> Optional[str]:
    if request.imex_source == "env":
        return "env:NVIDIA_IMEX_CHANNELS"
    return request.imex_source or None
