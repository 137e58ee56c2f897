"""What the hook checks before libnvidia-container runs: the configured ldconfig is the host's,
and the request's ``NVIDIA_REQUIRE_*`` hold. The hook (hook/main.py) and ``gpu-ctk`` (plan,
cdi) call these same functions, so the admin tool decides as the hook does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpu_core.errors import ShimError, one_line

if TYPE_CHECKING:
    from gpu_core.config import Config
    from gpu_core.inventory import Inventory
    from gpu_core.request import DeviceRequest
    from gpu_core.selection import Selection

__all__ = ["check_requirements", "host_ldconfig"]


def host_ldconfig(config: Config) -> str:
    """The configured ldconfig, which must be the host's (``@/sbin/ldconfig``): without the
    ``@`` libnvidia-container runs the image's own binary as root over the image."""
    value = config.libnvidia_container.ldconfig
    if not value.startswith("@/") or "\x00" in value:
        raise ShimError("config", one_line(
            f"libnvidia_container.ldconfig: must name the host's ldconfig as @/path, got "
            f"{value!r}"))
    return value


def check_requirements(request: DeviceRequest, inventory: Inventory,
                       selection: Selection) -> None:
    """``NVIDIA_REQUIRE_*`` against each selected GPU (a MIG device: its parent), or against the
    host alone when no GPU is selected."""
    from gpu_core.requirements import GpuFacts, check

    if not request.checked_requirements:
        return
    facts = [GpuFacts(cuda=inventory.cuda_version, driver=inventory.driver_version,
                      arch=gpu.cc, brand=gpu.brand) for gpu in selection.checked_gpus]
    check(request.checked_requirements,
          facts or [GpuFacts(cuda=inventory.cuda_version, driver=inventory.driver_version)])
