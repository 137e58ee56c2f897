"""``gpu-ctk doctor``: the simulated host is healthy; each broken thing is named with its fix."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

from ctk import doctor_checks as checks
from ctk import host_facts
from ctk.main import main
from leases import lock as lease_lock
from leases import write as lease_write
from leases.allocation import Holder, Lease, LeasedDevice

if TYPE_CHECKING:
    from simulator.testing import SimHost

SimHostFactory = Callable[..., "SimHost"]

DEAD_PID = 2 ** 30
"""Above any pid_max: a holder that certainly does not run."""

T4_PERSISTENCE_OFF = """\
name: t4-cold
driver_version: "535.104.05"
cuda_version: "12.2"
numa_nodes:
  - {id: 0, cpus: "0-7"}
gpus:
  - name: Tesla T4
    brand: tesla
    compute_capability: "7.5"
    architecture: turing
    memory_mib: 15360
    bus_id: "00000000:00:1E.0"
    uuid: GPU-6d4038db-c6de-43eb-9d7d-ecf72e1e7f91
    numa_node: 0
    persistence_mode: false
"""

CONTAINERD_OURS = """\
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = {runc}
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.gpu]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.gpu.options]
  BinaryName = "/usr/bin/gpu-container-runtime"
  SystemdCgroup = {ours}
"""


class Doctor:
    """Runs ``gpu-ctk doctor`` against one simulated host with engine files in a temp dir."""

    def __init__(self, host: SimHost, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.host = host
        self.docker = root / "daemon.json"
        self.containerd = root / "config.toml"
        self.capsys = capsys

    def run(self, *extra: str) -> tuple[int, list[dict[str, str]]]:
        status = main(["doctor", "--json", "--docker-config", str(self.docker),
                       "--containerd-config", str(self.containerd), *extra])
        return status, json.loads(self.capsys.readouterr().out)

    def text(self) -> tuple[int, str]:
        status = main(["doctor", "--docker-config", str(self.docker),
                       "--containerd-config", str(self.containerd)])
        return status, self.capsys.readouterr().out


def only(findings: list[dict[str, str]], check: str) -> list[dict[str, str]]:
    return [f for f in findings if f["check"] == check]


@pytest.fixture
def doctor_for(sim_host_factory: SimHostFactory, monkeypatch: pytest.MonkeyPatch,
               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., Doctor]:
    def make(topology: str, faults: tuple[str, ...] = ()) -> Doctor:
        host = sim_host_factory(topology, faults)
        monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(host.config_path))
        return Doctor(host, tmp_path, capsys)
    return make


def test_simulated_host_is_healthy(doctor_for: Callable[..., Doctor]) -> None:
    """On the simulated DGX A100 with MIG every check passes but `engines`, which warns that no
    engine uses the shim yet; warnings leave the exit status 0."""
    doctor = doctor_for("dgx-a100-mig")
    status, findings = doctor.run()
    assert status == 0
    assert [f["check"] for f in findings if f["status"] != "ok"] == ["engines"]
    assert [f["check"] for f in findings] == [name for name, _ in checks.CHECKS]
    assert only(findings, "nvml")[0]["what"] == ("NVML answers: 8 GPUs, driver 535.104.05, "
                                                 "CUDA 12.2")


def test_text_report_says_healthy_and_lists_each_check(doctor_for: Callable[..., Doctor]
                                                       ) -> None:
    """The text report opens with the verdict and gives a warning its why and fix lines."""
    status, out = doctor_for("t4").text()
    lines = out.splitlines()
    assert status == 0
    assert lines[0] == "gpu-ctk doctor: healthy (0 failed, 1 warnings, 14 findings)"
    assert any(line.startswith("warn  engines") for line in lines)
    assert "      fix: gpu-ctk runtime configure --runtime docker, or gpu-ctk runtime" in out


def test_lost_gpu_is_named_with_its_fix(doctor_for: Callable[..., Doctor]) -> None:
    """gpu-lost=0: the gpus check fails naming GPU 0, why it matters and how to reset it; the
    exit status is 1."""
    status, findings = doctor_for("dgx-a100", ("gpu-lost=0",)).run()
    (lost,) = [f for f in findings if f["status"] == "fail"]
    assert status == 1
    assert (lost["check"], lost["what"]) == ("gpus", "GPU 0: GPU is lost")
    assert "containers asking for it" in lost["why"]
    assert lost["fix"].startswith("nvidia-smi -r -i 0")


def test_json_findings_have_exactly_the_documented_keys(doctor_for: Callable[..., Doctor]
                                                        ) -> None:
    """--json: a list of {check, status, what, why, fix} objects, status ok|warn|fail."""
    _, findings = doctor_for("t4").run()
    assert all(set(f) == {"check", "status", "what", "why", "fix"} for f in findings)
    assert {f["status"] for f in findings} <= {"ok", "warn", "fail"}


def test_persistence_off_warns(doctor_for: Callable[..., Doctor], tmp_path: Path) -> None:
    """A GPU without persistence mode is a warning naming it and nvidia-persistenced."""
    topology = tmp_path / "t4-cold.yaml"
    topology.write_text(T4_PERSISTENCE_OFF)
    status, findings = doctor_for(str(topology)).run()
    (finding,) = only(findings, "persistence")
    assert status == 0
    assert (finding["status"], finding["what"]) == ("warn", "persistence mode off on GPU 0")
    assert "nvidia-persistenced" in finding["fix"]


def test_stale_lease_warns_with_gc(doctor_for: Callable[..., Doctor]) -> None:
    """A lease whose holder is gone is reported with `gpu-ctk leases gc` as the fix."""
    doctor = doctor_for("dgx-a100-mig")
    lease_dir = str(doctor.host.dir / "run" / "leases")
    lease = Lease(holder=Holder(container_id="gone", runtime_root="", bundle="/b",
                                shim_pid=DEAD_PID),
                  devices=(LeasedDevice(uuid="MIG-x", profile="1g.10gb", gpu="GPU-x",
                                        token="mig-1g.10gb"),), created=time.time())
    with lease_lock.locked(lease_dir):
        lease_write.write_lease(lease_dir, lease)
    _, findings = doctor.run()
    (finding,) = only(findings, "leases")
    assert (finding["status"], finding["what"], finding["fix"]) == (
        "warn", "1 stale MIG leases: gone (1 MIG)", "gpu-ctk leases gc")


def test_missing_uvm_node_fails(doctor_for: Callable[..., Doctor]) -> None:
    """No /dev/nvidia-uvm: a failure whose fix is nvidia-modprobe -u."""
    doctor = doctor_for("t4")
    (doctor.host.dev_dir / "nvidia-uvm").unlink()
    status, findings = doctor.run()
    (finding,) = only(findings, "nodes")
    assert status == 1
    assert finding["what"] == f"{doctor.host.dev_dir}/nvidia-uvm is missing"
    assert finding["fix"] == "nvidia-modprobe -u -c 0"


def test_stale_major_fails(doctor_for: Callable[..., Doctor]) -> None:
    """A node whose major is not the driver's in /proc/devices is named with both numbers."""
    doctor = doctor_for("t4")
    node = doctor.host.dev_dir / "nvidia-uvm"
    node.unlink()
    os.mknod(node, 0o20666, os.makedev(511, 0))
    _, findings = doctor.run()
    (finding,) = only(findings, "nodes")
    assert finding["what"] == f"{node} is 511:0 but nvidia-uvm has major 510 now"
    assert finding["fix"].startswith(f"rm {node}")


def test_driver_not_loaded_fails(doctor_for: Callable[..., Doctor]) -> None:
    """No nvidia module in sysfs: the driver check fails with modprobe as the fix."""
    doctor = doctor_for("t4")
    for name in ("version",):
        (doctor.host.sys_dir / "module" / "nvidia" / name).unlink()
    (doctor.host.sys_dir / "module" / "nvidia").rmdir()
    status, findings = doctor.run()
    (finding,) = only(findings, "driver")
    assert status == 1
    assert finding["status"] == "fail" and finding["fix"].startswith("modprobe nvidia")


def test_invalid_configuration_fails_and_the_rest_still_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown key: the config check fails naming it; every other check still reports."""
    config = tmp_path / "config.yaml"
    config.write_text("hook:\n  nope: 1\n")
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(config))
    status = main(["doctor", "--json", "--docker-config", str(tmp_path / "d.json"),
                   "--containerd-config", str(tmp_path / "c.toml")])
    findings = json.loads(capsys.readouterr().out)
    (finding,) = only(findings, "config")
    assert status == 1
    assert finding["status"] == "fail" and "hook.nope: unknown key" in finding["what"]
    assert {f["check"] for f in findings} == {name for name, _ in checks.CHECKS}


def test_containerd_runtime_of_ours_is_listed(doctor_for: Callable[..., Doctor]) -> None:
    """A containerd runtime whose BinaryName is ours counts as configured."""
    doctor = doctor_for("t4")
    doctor.containerd.write_text(CONTAINERD_OURS.format(runc="false", ours="false"))
    _, findings = doctor.run()
    assert only(findings, "engines") == [{"check": "engines", "status": "ok",
                                          "what": "configured: containerd runtime gpu",
                                          "why": "", "fix": ""}]
    assert only(findings, "cgroup-driver")[0]["status"] == "ok"


def test_cgroup_driver_mismatch_in_containerd_fails(doctor_for: Callable[..., Doctor]) -> None:
    """Our runtime on SystemdCgroup while the default runtime is on cgroupfs: a failure that
    says which value to set where."""
    doctor = doctor_for("t4")
    doctor.containerd.write_text(CONTAINERD_OURS.format(runc="false", ours="true"))
    status, findings = doctor.run()
    (finding,) = only(findings, "cgroup-driver")
    assert status == 1
    assert finding["what"] == ("containerd runtime gpu has SystemdCgroup = true, the default "
                               "runtime runc false")
    assert finding["fix"].startswith("set SystemdCgroup = false in [...runtimes.gpu.options] of "
                                     f"{doctor.containerd}")


def test_docker_runtime_of_ours_and_bad_json(doctor_for: Callable[..., Doctor]) -> None:
    """Docker's runtimes entry pointing at the shim is found; an unparseable file warns."""
    doctor = doctor_for("t4")
    doctor.docker.write_text(json.dumps({
        "default-runtime": "gpu",
        "runtimes": {"gpu": {"path": "/usr/bin/gpu-container-runtime"}}}))
    _, findings = doctor.run()
    assert only(findings, "engines")[0]["what"] == "configured: docker runtime gpu (default)"
    doctor.docker.write_text("{")
    _, findings = doctor.run()
    assert only(findings, "engines")[0]["status"] == "warn"
    assert only(findings, "engines")[0]["what"].startswith(f"{doctor.docker}: ")


def test_dev_char_links_warn_under_systemd_and_get_created(
        doctor_for: Callable[..., Doctor]) -> None:
    """With the systemd cgroup driver, missing /dev/char links warn; --create-dev-char-links
    makes them (pointing at the right nodes) and the warning goes."""
    doctor = doctor_for("t4")
    doctor.containerd.write_text(CONTAINERD_OURS.format(runc="true", ours="true"))
    _, findings = doctor.run()
    (finding,) = only(findings, "dev-char")
    assert finding["status"] == "warn"
    assert finding["fix"] == "gpu-ctk doctor --create-dev-char-links"
    _, findings = doctor.run("--create-dev-char-links")
    assert only(findings, "dev-char")[0]["status"] == "ok"
    link = doctor.host.dev_dir / "char" / "195:0"
    assert os.readlink(link) == "../nvidia0"
    assert os.path.samefile(link, doctor.host.dev_dir / "nvidia0")


@pytest.mark.parametrize(("mounts", "layout"), [
    (["30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw"], "v2"),
    (["31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw",
      "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu"], "v1"),
    (["32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu",
      "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw"], "hybrid"),
    (["57 56 0:29 / /tmp/x/sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu"], "none"),
])
def test_cgroup_layout_from_mountinfo(mounts: list[str], layout: str) -> None:
    """Only mounts under /sys/fs/cgroup count: v2, v1, both (hybrid) or none."""
    assert host_facts.cgroup_layout("\n".join(mounts)) == layout


@pytest.mark.parametrize(("data", "layout", "systemd", "driver"), [
    ({"exec-opts": ["native.cgroupdriver=systemd"]}, "v1", False, "systemd"),
    ({"exec-opts": ["native.cgroupdriver = cgroupfs"]}, "v2", True, "cgroupfs"),
    ({}, "v2", True, "systemd"),
    ({}, "v2", False, "cgroupfs"),
    ({}, "hybrid", True, "cgroupfs"),
])
def test_docker_cgroup_driver(data: dict[str, Any], layout: str, systemd: bool,
                              driver: str) -> None:
    """exec-opts wins; otherwise Docker's default: systemd only on v2 under systemd."""
    assert host_facts.docker_cgroup_driver(data, layout, systemd) == driver


def test_a_crashing_check_becomes_a_failure() -> None:
    """A check that raises is reported as that check's failure; the others still run."""
    def broken(host: host_facts.Host) -> list[checks.Finding]:
        raise RuntimeError("boom")

    def fine(host: host_facts.Host) -> list[checks.Finding]:
        return [checks.Finding("fine", checks.OK, "fine")]

    found = checks.run_checks(host_facts.Host(), (("broken", broken), ("fine", fine)))
    assert [(f.check, f.status, f.what) for f in found] == [
        ("broken", "fail", "RuntimeError: boom"), ("fine", "ok", "fine")]


def spec_mode_config(doctor: Doctor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     spec: str) -> None:
    """The simulated host's configuration with ``mode: spec`` and the ``spec:`` lines given."""
    path = tmp_path / "spec-mode.yaml"
    path.write_text(doctor.host.config_path.read_text() + f"\nmode: spec\nspec:\n{spec}")
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(path))


def test_spec_mode_checks_the_spec_hook_and_a_static_ldconfig(
        doctor_for: Callable[..., Doctor], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    doctor = doctor_for("t4")
    spec_mode_config(doctor, tmp_path, monkeypatch, "  hook_path: /bin/true\n"
                                                     "  ldconfig: /sbin/ldconfig\n")
    _, findings = doctor.run()
    assert only(findings, "hook") == [{
        "check": "hook", "status": "ok", "why": "", "fix": "",
        "what": "spec mode: spec hook /bin/true is executable, ldconfig /sbin/ldconfig is "
                "static"}]


def test_spec_mode_with_a_missing_spec_hook_fails(
        doctor_for: Callable[..., Doctor], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    doctor = doctor_for("t4")
    spec_mode_config(doctor, tmp_path, monkeypatch, f"  hook_path: {tmp_path}/absent\n")
    status, findings = doctor.run()
    assert status != 0
    hook = only(findings, "hook")[0]
    assert (hook["status"], hook["what"]) == (
        "fail", f"spec hook {tmp_path}/absent is missing or not executable")


def test_spec_mode_with_a_dynamic_ldconfig_fails(
        doctor_for: Callable[..., Doctor], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    doctor = doctor_for("t4")
    spec_mode_config(doctor, tmp_path, monkeypatch, "  hook_path: /bin/true\n"
                                                     "  ldconfig: /bin/ls\n")
    status, findings = doctor.run()
    hook = only(findings, "hook")[0]
    assert status != 0 and hook["status"] == "fail"
    assert hook["what"].startswith("spec.ldconfig /bin/ls: a dynamic executable")
