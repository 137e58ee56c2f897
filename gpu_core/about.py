"""Our version and the help text of each command (``--version``, ``--help``).

Pure text: nothing here reads the host, so printing it costs a command no start-up time."""

from __future__ import annotations

VERSION = "0.1.0"
"""The release; tests/gpu_core/test_about.py keeps it equal to pyproject.toml's version."""

RUNTIME_HELP = """\
gpu-container-runtime: an OCI runtime shim that gives GPU containers their devices.
  create, run    rewrite the bundle's config.json (devices, hook, cgroup parent, oom score,
                 workload policies), then exec the low-level runtime
  anything else  exec the low-level runtime (runc, then crun; `runtimes` in config.yaml)
  configuration  /etc/gpu-container-shim/config.yaml or $GPU_CONTAINER_SHIM_CONFIG
The low-level runtime's own help follows.
"""

HOOK_HELP = """\
usage: gpu-container-hook STAGE < OCI-STATE
An OCI hook that waits for a GPU container's GPUs to be ready and mounts the driver.
  prestart, createRuntime   select the devices, wait for readiness, mount the driver
  poststart                 nothing
  poststop                  release the container's MIG leases
The OCI state comes on stdin. Configuration: /etc/gpu-container-shim/config.yaml or
$GPU_CONTAINER_SHIM_CONFIG.
"""


def version_line(command: str) -> str:
    """``gpu-ctk version 0.1.0``: the first line of every ``--version``."""
    return f"{command} version {VERSION}"


def about_flag(args: list[str]) -> str:
    """``version`` or ``help`` when ``args`` is only a request for one (``--version``, ``-v``,
    ``--help``, ``-h``, the single-dash long forms runc accepts too), else ``""``."""
    if len(args) != 1:
        return ""
    flag = args[0]
    if flag in ("--version", "-version", "-v"):
        return "version"
    if flag in ("--help", "-help", "-h", "help"):
        return "help"
    return ""
