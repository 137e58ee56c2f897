"""podman: an OCI hooks.d file that runs the standalone hook (``hook.compat``) at prestart.

For podman without the shim (with the shim as podman's ``--runtime``, the shim injects its own
hook and drops this one). podman reads hooks.d for every container, so nothing restarts. The
file is ours: written whole, removed by unconfigure.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ctk.configure import Engine, Settings, Texts
from gpu_core.config import ENV_VAR

DEFAULT_CONFIG = "/etc/containers/oci/hooks.d/oci-gpu-container-hook.json"
SAFE_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The hook's whole environment: podman passes a hook exactly the ``env`` listed here."""


def paths(settings: Settings) -> tuple[str, ...]:
    return (settings.config,)


def hook_document(settings: Settings) -> dict[str, Any]:
    env = [SAFE_PATH]
    if settings.shim_config:
        env.append(f"{ENV_VAR}={settings.shim_config}")
    return {
        "version": "1.0.0",
        "hook": {"path": settings.hook_path,
                 "args": [os.path.basename(settings.hook_path), "prestart"], "env": env},
        "when": {"always": True},
        "stages": ["prestart"],
    }


def render(settings: Settings) -> str:
    return json.dumps(hook_document(settings), indent=2) + "\n"


def configure(texts: Texts, settings: Settings) -> Texts:
    text = texts.get(settings.config)
    wanted = render(settings)
    return {settings.config: text if text is not None and same("", text, wanted) else wanted}


def unconfigure(texts: Texts, backups: Texts, settings: Settings) -> Texts:
    return {settings.config: None}


def same(path: str, a: str, b: str) -> bool:
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return False


ENGINE = Engine(paths=paths, backed_up=lambda settings: (), configure=configure,
                unconfigure=unconfigure, same=same, default_config=lambda name: DEFAULT_CONFIG,
                hint="podman reads hooks.d for each container: nothing to restart")
