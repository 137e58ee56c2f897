"""The one hook a generated CDI spec carries: ``gpu-container-spec-hook`` as a ``createContainer``
hook of the shared edits (``ctk.cdi``). Its arguments follow the spec hook's command line: the
directories the libraries were mounted in, their compatibility links, the driver version (CUDA
forward compatibility) and the driver's ``/proc/driver/nvidia`` on the host; its environment is
an explicit ``PATH`` and nothing else. Pure: the caller passes what it read from the host.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any

from gpu_core import driver_files, spec_hook_entry

NAME = spec_hook_entry.NAME
DEFAULT_PATH = "/usr/bin/" + NAME
"""Where the packages install it; ``--hook-path`` or ``spec.hook_path`` name another."""
DEFAULT_LDCONFIG = "/sbin/ldconfig"
"""The ldconfig the hook runs unless told otherwise (``--ldconfig``)."""
ENV = spec_hook_entry.ENV


def hook_edit(files: Sequence[driver_files.FileMount], *, hook_path: str, driver_version: str,
              proc_driver: str, ldconfig: str = "") -> dict[str, Any]:
    """The CDI ``createContainer`` hook entry for the driver files ``files``: the directories
    of the mounted libraries, their compatibility links, the driver version and the host's
    ``/proc/driver/nvidia`` (``ldconfig``: the host's, passed when it is not the hook's
    default)."""
    args = [NAME]
    folders = dict.fromkeys(posixpath.dirname(mount.container_path) for mount in files
                            if mount.kind in ("lib", "lib32"))
    for folder in folders:
        args += ["--folder", folder]
    for link in driver_files.symlinks(files):
        args += ["--link", f"{link.target}::{link.path}"]
    args += ["--driver-version", driver_version, "--proc-driver", proc_driver]
    if ldconfig and ldconfig != DEFAULT_LDCONFIG:
        args += ["--ldconfig", ldconfig]
    return {"hookName": spec_hook_entry.STAGE, "path": hook_path, "args": args, "env": list(ENV)}
