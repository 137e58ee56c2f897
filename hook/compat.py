"""``nvidia-container-runtime-hook``: our hook standing alone, where no shim prepared the spec.

Stock dockerd offers ``docker run --gpus`` only when a program of exactly this name is on its
PATH, and then appends ``nvidia-container-runtime-hook prestart`` to the spec's prestart hooks
with the daemon's own environment (moby ``daemon/nvidia_linux.go``) and the request as
``NVIDIA_VISIBLE_DEVICES``/``NVIDIA_DRIVER_CAPABILITIES`` in the container's env; podman's
hooks.d file (``gpu-ctk runtime configure --runtime podman``) runs it the same way. Our hook
then does everything it does under the shim — request, requirements, readiness, mounts — plus
the one thing the shim would have done in config.json: read-write access to the GPU nodes the
spec's device rules deny, written to the container's v1 device cgroup as NVIDIA's legacy hook
does (``hook.device_cgroup`` says why and where that path is weaker than the shim's).

When the shim runs in front (docker ``--runtime gpu`` or ``default-runtime``), it replaces
this entry by its own hook, so both never run for one container.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

from hook.main import Run
from hook.main import main as hook_main

if TYPE_CHECKING:
    from gpu_core.config import Config
    from gpu_core.request import DeviceRequest
    from gpu_core.selection import Selection
    from hook.main import Budget
    from hook.rootfs_identity import Pinned

COMMAND = "nvidia-container-runtime-hook"


class StandaloneRun(Run):
    """A hook run that also grants device access no runtime declared."""

    spec: Mapping[str, Any]
    """The bundle's config.json as the hook read it (set by ``configure``)."""

    def configure(self, config: Config, budget: Budget, data: bytes, spec: Mapping[str, Any],
                  request: DeviceRequest) -> None:
        self.spec = spec
        super().configure(config, budget, data, spec, request)

    def mount(self, config: Config, budget: Budget, request: DeviceRequest,
              selection: Selection, pid: int, pinned: Pinned, ldconfig: str) -> None:
        from gpu_core.device_nodes import global_caps_of, wanted_nodes
        from hook import device_cgroup

        assert self.inventory is not None  # configure discovered before it mounts
        denied = device_cgroup.missing(
            self.spec, wanted_nodes(selection, self.inventory, request.capabilities,
                                    global_caps_of(request)))
        if denied:
            where = device_cgroup.grant(denied, pid)
            self.event("cgroup", cgroup=where,
                       granted=",".join(f"{node.path}={node.major}:{node.minor}"
                                        for node in denied))
        super().mount(config, budget, request, selection, pid, pinned, ldconfig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return hook_main(argv, StandaloneRun(time.monotonic()))


if __name__ == "__main__":
    sys.exit(main())
