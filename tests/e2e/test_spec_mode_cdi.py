"""Spec mode beside CDI (README §Beside CDI and DRA): a config.json into which an engine
injected GPU 0 from ``gpu-ctk cdi generate``'s spec, as container-device-interface applies it,
through the shim in spec mode with real runc and crun: not widened, whatever
NVIDIA_VISIBLE_DEVICES says, and nothing of the shim's own added."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
from containers import Bundle, Runtime
from engines import GPU_CTK, SYSTEM_PATH
from spec_mode import nvidia_nodes, spec_hooks, spec_runtime

if TYPE_CHECKING:
    from simulator.testing import SimHost

pytestmark = pytest.mark.e2e

MakeBundle = Callable[..., Bundle]
MakeRuntime = Callable[..., Runtime]
WriteConfig = Callable[[str], Path]
SimHostFactory = Callable[..., "SimHost"]


def cdi_spec(config: Path) -> dict[str, Any]:
    """``gpu-ctk cdi generate --format json`` under shim configuration ``config``."""
    generated = subprocess.run([GPU_CTK, "cdi", "generate", "--format", "json"],
                               capture_output=True, text=True, timeout=60, check=True,
                               env={"PATH": SYSTEM_PATH, "GPU_CONTAINER_SHIM_CONFIG": str(config)})
    loaded: dict[str, Any] = json.loads(generated.stdout)
    return loaded


def inject(spec: dict[str, Any], cdi: dict[str, Any], device: str) -> None:
    """Apply the CDI spec's common edits and ``device``'s edits to ``spec`` as engines do
    (container-device-interface's ``ContainerEdits.Apply``): env, device nodes with an rw
    allow rule, bind mounts, hooks, and the ``cdi.k8s.io/`` annotation."""
    [chosen] = [d for d in cdi["devices"] if d["name"] == device]
    linux = spec.setdefault("linux", {})
    for edits in (cdi.get("containerEdits", {}), chosen["containerEdits"]):
        spec["process"]["env"] += edits.get("env", [])
        for node in edits.get("deviceNodes", []):
            linux.setdefault("devices", []).append(
                {"path": node["path"], "type": node.get("type", "c"), "major": node["major"],
                 "minor": node["minor"], "fileMode": 0o666, "uid": 0, "gid": 0})
            linux.setdefault("resources", {}).setdefault("devices", []).append(
                {"allow": True, "type": node.get("type", "c"), "major": node["major"],
                 "minor": node["minor"], "access": node.get("permissions", "rwm")})
        for mount in edits.get("mounts", []):
            spec["mounts"].append({"destination": mount["containerPath"],
                                   "source": mount["hostPath"], "type": mount.get("type", "bind"),
                                   "options": mount.get("options", [])})
        for hook in edits.get("hooks", []):
            entry = {k: hook[k] for k in ("path", "args", "env", "timeout") if k in hook}
            spec.setdefault("hooks", {}).setdefault(hook["hookName"], []).append(entry)
    spec.setdefault("annotations", {})[f"cdi.k8s.io/{cdi['kind'].replace('/', '_')}"] = \
        f"{cdi['kind']}={device}"


@pytest.mark.parametrize("visible", ["void", "all", "3"])
def test_cdi_injected_container_is_not_widened(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, low_level: str, visible: str) -> None:
    """A config.json carrying GPU 0 as an engine injects it from ``gpu-ctk cdi generate``'s
    spec, whatever NVIDIA_VISIBLE_DEVICES then says (runc and crun): the container has
    /dev/nvidia0 and no other GPU node, nvidia-smi lists GPU 0 alone, and the shim added no
    device, mount or hook of its own."""
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(["/bin/sh", "-c", "ls -l /dev; nvidia-smi -L; head -c1 /dev/nvidia0"],
                         env=[f"NVIDIA_VISIBLE_DEVICES={visible}"])
    runtime = spec_runtime(host, make_runtime, write_config, low_level)
    cdi = cdi_spec(runtime.config)
    bundle.edit(lambda spec: inject(spec, cdi, "0"))
    injected = bundle.spec()
    result = runtime.run(bundle)
    assert result.returncode in (0, 1), result.stderr
    gpus = {n for n in nvidia_nodes(result.stdout) if n[6:].isdigit()}
    assert gpus == {"nvidia0"}, result.stdout + result.stderr
    gpu = host.topology["gpus"][0]
    assert f"GPU 0: {gpu['name']} (UUID: {gpu['uuid']})" in result.stdout, result.stdout
    assert result.stdout.count("(UUID: GPU-") == 1
    assert "No such device or address" in result.stderr and \
        "Operation not permitted" not in result.stderr, result.stderr
    edited = bundle.spec()
    assert edited["linux"]["devices"] == injected["linux"]["devices"]
    assert edited["mounts"] == injected["mounts"]
    assert len(spec_hooks(edited)) == len(spec_hooks(injected))
    assert edited.get("hooks", {}).get("prestart", []) == \
        injected.get("hooks", {}).get("prestart", [])
