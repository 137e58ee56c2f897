"""packaging/kubernetes: the manifests validate against the Kubernetes schemas (offline, with
kubernetes-validate's bundled schemas), agree with the packages and with `gpu-ctk runtime
configure`, and the installer's node script restarts containerd only when its configuration
changed (run against the session's Debian root standing in for a node)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import tomllib
import yaml

from ctk.configure import DEFAULT_NAME

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "packaging" / "kubernetes"
VERSIONS = ("1.25.0", "1.37.0")
"""The oldest and newest Kubernetes releases kubernetes-validate ships schemas for."""


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            found.append((f"{path.name}:{document['kind']}", document))
    return found


def resource(kind: str) -> dict[str, Any]:
    [found] = [d for _, d in documents() if d["kind"] == kind]
    return found


def installer_container() -> dict[str, Any]:
    [init] = resource("DaemonSet")["spec"]["template"]["spec"]["initContainers"]
    return init


def project_version() -> str:
    version: str = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    return version


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("name", "document"), documents(), ids=[n for n, _ in documents()])
def test_manifest_validates_strictly(name: str, document: dict[str, Any], version: str) -> None:
    """Each resource matches the Kubernetes schema, unknown fields rejected."""
    kubernetes_validate.validate(document, version, strict=True)


def test_manifests_are_the_expected_resources() -> None:
    """A RuntimeClass, and the installer's Namespace, ConfigMap and DaemonSet."""
    assert [name for name, _ in documents()] == [
        "installer.yaml:Namespace", "installer.yaml:ConfigMap", "installer.yaml:DaemonSet",
        "runtimeclass.yaml:RuntimeClass"]


def test_runtime_class_handler_is_the_configured_runtime_name() -> None:
    """handler: gpu, the runtime `gpu-ctk runtime configure` adds to containerd by default."""
    assert resource("RuntimeClass")["handler"] == DEFAULT_NAME == "gpu"


def test_runtime_class_schedules_where_the_installer_runs() -> None:
    """Pods of the class go only to nodes the DaemonSet configured."""
    daemonset = resource("DaemonSet")["spec"]["template"]["spec"]
    assert resource("RuntimeClass")["scheduling"]["nodeSelector"] == daemonset["nodeSelector"]


def test_installer_names_this_version_and_its_packages(make_packages: ModuleType) -> None:
    """The image tag is the pyproject version; DEB and RPM are packaging/build's file names."""
    container = installer_container()
    version = project_version()
    assert container["image"] == f"gpu-container-shim-installer:{version}"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"DEB": make_packages.package_name("deb", version),
                   "RPM": make_packages.package_name("rpm", version)}


FAKE_SYSTEMCTL = "#!/bin/sh\necho \"systemctl $*\" >> /var/log/systemctl-calls\n"


def run_installer(root: Any, dist: Path, script: Path, enter: Path
                  ) -> subprocess.CompletedProcess[str]:
    version = project_version()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PACKAGES": str(dist),
           "HOST_ROOT": str(root.path), "NODE_ENTER": str(enter),
           "DEB": f"gpu-container-shim_{version}_amd64.deb",
           "RPM": f"gpu-container-shim-{version}-1.x86_64.rpm"}
    return subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_installer_restarts_containerd_only_when_its_configuration_changed(
        debian_root: Any, packages: dict[str, Path], in_root_script: Path,
        tmp_path: Path) -> None:
    """The node script installs the .deb with apt and adds the gpu runtime to containerd: the
    first run changes config.toml and restarts containerd, a second run changes nothing and
    restarts nothing."""
    script = tmp_path / "install-on-node"
    script.write_text(resource("ConfigMap")["data"]["install-on-node"])
    enter = tmp_path / "enter-node"
    enter.write_text(f"#!/bin/sh\nexec {in_root_script} {debian_root.path} env -i "
                     f"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "
                     f"\"$@\"\n")
    enter.chmod(0o755)
    systemctl = debian_root.path / "usr" / "local" / "bin" / "systemctl"
    systemctl.write_text(FAKE_SYSTEMCTL)
    systemctl.chmod(0o755)
    (debian_root.path / "var" / "lib" / "gpu-container-shim-installer").mkdir(exist_ok=True)
    calls = debian_root.path / "var" / "log" / "systemctl-calls"
    calls.unlink(missing_ok=True)
    dist = packages["deb"].parent

    first = run_installer(debian_root, dist, script, enter)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "containerd configuration changed: restarting containerd" in first.stdout
    assert calls.read_text() == "systemctl restart containerd\n"
    config = tomllib.loads((debian_root.path / "etc" / "containerd" / "config.toml").read_text())
    runtime = config["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["gpu"]
    assert runtime["options"]["BinaryName"] == "/usr/bin/gpu-container-runtime"

    second = run_installer(debian_root, dist, script, enter)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "containerd configuration unchanged: containerd left running" in second.stdout
    assert calls.read_text() == "systemctl restart containerd\n"
