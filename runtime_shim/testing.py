"""Test helpers shipped with the package (as structlog does): contexts and GPU requests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from gpu_core import config as config_mod
from gpu_core.request import DeviceRequest
from runtime_shim.context import Context, HostFacts

if TYPE_CHECKING:
    from runtime_shim.cdi_injection import Injection

GPU0 = DeviceRequest(devices=("0",), capabilities=frozenset({"compute", "utility"}))
"""A request for GPU 0 with the default capabilities."""


def context(config_text: str = "", request: Optional[DeviceRequest] = None,
            container_id: str = "ctr", oom_score_adj: int = 0, cap_sys_resource: bool = True,
            systemd_cgroup: bool = False, source: str = "test.yaml",
            injected: Optional[Injection] = None) -> Context:
    """A Context from YAML text, with host facts given explicitly; ``injected``: what the
    engine injected from a CDI spec (runtime_shim.cdi_injection)."""
    config = config_mod.parse(config_text, source)
    return Context(config=config, request=request, container_id=container_id, injected=injected,
                   host=HostFacts(oom_score_adj=oom_score_adj, cap_sys_resource=cap_sys_resource,
                                  systemd_cgroup=systemd_cgroup))
