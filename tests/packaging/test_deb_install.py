"""The .deb on a clean Debian 12 root with only Debian's repositories: apt resolves its
dependencies, the installed commands check the host, build a simulated GPU host and start a GPU
container through gpu-container-runtime and runc; purge leaves nothing of ours behind."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from containers import build_busybox_image

DebianRoot = Any
"""conftest.DebianRoot (conftest is not importable by name under --import-mode=importlib)."""

SIM = "/var/lib/gpu-sim"
SIM_ENV = {"GPU_CONTAINER_SHIM_CONFIG": f"{SIM}/config.yaml"}
DEPENDENCIES = ("python3", "python3-yaml", "python3-jsonschema", "python3-cffi",
                "python3-tomlkit")
OURS = ("usr/lib/gpu-container-shim", "usr/libexec/gpu-container-shim", "etc/gpu-container-shim",
        "usr/share/gpu-container-shim", "usr/share/doc/gpu-container-shim",
        "usr/bin/gpu-container-runtime", "usr/bin/gpu-container-hook", "usr/bin/gpu-ctk",
        "usr/bin/nvidia-container-runtime-hook", "etc/alternatives/nvidia-container-runtime-hook",
        "var/lib/dpkg/alternatives/nvidia-container-runtime-hook", "run/gpu-container-shim",
        "usr/share/man/man1/gpu-ctk.1.gz")


def install(root: DebianRoot, deb: Path) -> subprocess.CompletedProcess[str]:
    """``apt-get install ./the.deb`` inside the root, as an admin would."""
    (root.path / "tmp" / deb.name).write_bytes(deb.read_bytes())
    return root.run("apt-get", "install", "-y", "-q", f"/tmp/{deb.name}",
                    env={"DEBIAN_FRONTEND": "noninteractive"})


@pytest.fixture(scope="module")
def installed(debian_root: DebianRoot, packages: dict[str, Path]
              ) -> subprocess.CompletedProcess[str]:
    """The .deb installed in the session's Debian root."""
    done = install(debian_root, packages["deb"])
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def simulated(debian_root: DebianRoot, installed: Any) -> subprocess.CompletedProcess[str]:
    """``gpu-ctk simulate --topology t4`` run inside the root by the installed command."""
    return debian_root.run("gpu-ctk", "simulate", "--topology", "t4", "--into", SIM)


def gpu_bundle(root: DebianRoot, name: str, args: Sequence[str]) -> str:
    """A bundle inside the root whose busybox container asks for GPU 0; its path in the root."""
    bundle = root.path / "srv" / name
    rootfs = bundle / "rootfs"
    if not rootfs.is_dir():
        build_busybox_image(rootfs)
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["root"] = {"path": "rootfs", "readonly": False}
    spec["process"]["terminal"] = False
    spec["process"]["args"] = list(args)
    spec["process"]["env"].append("NVIDIA_VISIBLE_DEVICES=0")
    (bundle / "config.json").write_text(json.dumps(spec))
    return f"/srv/{name}"


LIST_GPU = ["/bin/sh", "-c", "ls -l /dev/nvidia0; ls /usr/lib64 /usr/lib/x86_64-linux-gnu "
            "/usr/bin 2>/dev/null"]


def assert_gpu_container(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr
    assert re.search(r"^c\S+\s+\d+\s+\S+\s+\S+\s+195,\s+0\s.*/dev/nvidia0$", done.stdout,
                     re.MULTILINE), done.stdout
    assert "libcuda.so.1" in done.stdout.split() and "nvidia-smi" in done.stdout.split()


class TestInstall:
    def test_apt_resolves_the_dependencies_from_debian(self, debian_root: DebianRoot,
                                                       installed: Any) -> None:
        """Python and its modules were absent from the clean root; apt installed them from
        Debian's repositories together with the package."""
        assert not set(DEPENDENCIES) & debian_root.preinstalled
        assert set(DEPENDENCIES) | {"gpu-container-shim"} <= debian_root.installed()

    def test_the_install_reconfigures_no_engine(self, installed: Any) -> None:
        """The maintainer scripts only offer the compatibility hook name."""
        setup = installed.stdout[installed.stdout.index("Setting up gpu-container-shim"):]
        assert "update-alternatives: using /usr/libexec/gpu-container-shim/nvidia-container-" \
               "runtime-hook to provide /usr/bin/nvidia-container-runtime-hook" in setup
        assert not re.search(r"containerd|dockerd|systemctl|restart", setup), setup

    def test_commands_answer_help(self, debian_root: DebianRoot, installed: Any) -> None:
        """gpu-ctk --help from /usr/bin runs on the distribution's Python and modules."""
        done = debian_root.run("gpu-ctk", "--help")
        assert done.returncode == 0, done.stderr
        assert "simulate" in done.stdout and "runtime" in done.stdout

    def test_doctor_checks_the_simulated_host(self, debian_root: DebianRoot,
                                              simulated: Any) -> None:
        """gpu-ctk doctor --json runs on the simulated host: a finding per check, and exit
        status 1 exactly when one failed."""
        done = debian_root.run("gpu-ctk", "doctor", "--json", env=SIM_ENV)
        assert "Traceback" not in done.stderr, done.stderr
        findings = json.loads(done.stdout)
        assert findings and all({"check", "status", "what", "why", "fix"} <= set(f)
                                for f in findings)
        assert any(f["status"] == "ok" for f in findings), findings
        assert done.returncode == (1 if any(f["status"] == "fail" for f in findings) else 0)

    def test_simulate_builds_a_host(self, debian_root: DebianRoot, simulated: Any) -> None:
        """gpu-ctk simulate compiles the simulated libraries with the root's gcc."""
        assert simulated.returncode == 0, simulated.stderr
        assert (debian_root.path / SIM.lstrip("/") / "dev" / "nvidia0").exists()


class TestGpuContainer:
    def test_container_on_the_simulated_config_sees_gpu_zero(
            self, debian_root: DebianRoot, simulated: Any) -> None:
        """With the config gpu-ctk simulate wrote, runc starts the container through the
        installed shim and hook: /dev/nvidia0 and the driver files are inside."""
        bundle = gpu_bundle(debian_root, "sim-config", LIST_GPU)
        done = debian_root.run("gpu-container-runtime", "run", "--bundle", bundle, "c-sim",
                               env=SIM_ENV)
        assert_gpu_container(done)

    def test_container_through_the_installed_hook_launcher_sees_gpu_zero(
            self, debian_root: DebianRoot, simulated: Any) -> None:
        """Without a hook entry in the config, the shim injects /usr/bin/gpu-container-hook
        (the packaged launcher), which gives the container GPU 0."""
        config = debian_root.path / SIM.lstrip("/") / "config.yaml"
        text = re.sub(r"^hook:\n(?:[ -].*\n)+", "", config.read_text(), flags=re.MULTILINE)
        assert "hook:" not in text
        (config.parent / "packaged-hook.yaml").write_text(text)
        bundle = gpu_bundle(debian_root, "packaged-hook", LIST_GPU)
        done = debian_root.run("gpu-container-runtime", "run", "--bundle", bundle, "c-pkg",
                               env={"GPU_CONTAINER_SHIM_CONFIG": f"{SIM}/packaged-hook.yaml"})
        assert_gpu_container(done)
        spec = json.loads((debian_root.path / bundle.lstrip("/") / "config.json").read_text())
        assert spec["hooks"]["prestart"][0]["path"] == "/usr/bin/gpu-container-hook"


class TestPurge:
    def test_purge_leaves_nothing_of_ours(self, debian_root: DebianRoot, simulated: Any) -> None:
        """After purge: no files, alternatives, configuration or runtime state of ours, and
        dpkg forgot the package; the dependencies stay, as apt leaves them."""
        done = debian_root.run("apt-get", "purge", "-y", "-q", "gpu-container-shim",
                               env={"DEBIAN_FRONTEND": "noninteractive"})
        assert done.returncode == 0, done.stdout + done.stderr
        assert "warning" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
        left = [p for p in OURS if (debian_root.path / p).exists()
                or (debian_root.path / p).is_symlink()]
        assert left == []
        status = debian_root.run("dpkg-query", "-W", "gpu-container-shim")
        assert status.returncode != 0
        assert set(DEPENDENCIES) <= debian_root.installed()
