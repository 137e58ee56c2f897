"""``gpu-ctk plan``: the shim's edits and diff, the hook's mounts, and that nothing is touched."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

from ctk import plan as plan_mod
from ctk.main import main
from gpu_core import numa
from leases import host as lease_host
from leases import lock as lease_lock
from leases import write as lease_write
from leases.allocation import Holder, Lease, LeasedDevice
from runtime_shim import cpuset

if TYPE_CHECKING:
    from simulator.testing import SimHost

SimHostFactory = Callable[..., "SimHost"]

DEAD_PID = 2 ** 30
"""Above any pid_max: a holder that certainly does not run."""


def write_bundle(directory: Path, env: list[str], annotations: dict[str, str] | None = None,
                 debian: bool = True) -> Path:
    """A bundle with a busybox-like rootfs and the given process env; returns its directory."""
    (directory / "rootfs" / "etc").mkdir(parents=True)
    if debian:
        (directory / "rootfs" / "etc" / "debian_version").write_text("12.0\n")
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/",
                    "env": ["PATH=/bin", *env], "capabilities": {"bounding": ["CAP_KILL"]}},
        "root": {"path": "rootfs"},
        "linux": {"resources": {"memory": {"limit": 1 << 30}},
                  "namespaces": [{"type": "mount"}]},
    }
    if annotations:
        spec["annotations"] = annotations
    (directory / "config.json").write_text(json.dumps(spec, separators=(",", ":")))
    return directory


@pytest.fixture
def use_host(monkeypatch: pytest.MonkeyPatch) -> Callable[[SimHost], SimHost]:
    """Point the configuration at a simulated host."""
    def use(host: SimHost) -> SimHost:
        monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(host.config_path))
        return host
    return use


@pytest.fixture
def mig_host(sim_host_factory: SimHostFactory,
             use_host: Callable[[SimHost], SimHost]) -> SimHost:
    return use_host(sim_host_factory("dgx-a100-mig"))


@pytest.fixture
def t4_host(sim_host_factory: SimHostFactory, use_host: Callable[[SimHost], SimHost]) -> SimHost:
    return use_host(sim_host_factory("t4"))


def mig_uuids(host: SimHost, profile: str) -> list[str]:
    return [d["uuid"] for gpu in host.topology["gpus"] for d in gpu["mig"]["devices"]
            if d["profile"] == profile]


def run_plan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["plan", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_mig_profile_plan_touches_nothing(mig_host: SimHost, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A MIG profile request shows the device a start would lease, yet the bundle stays
    byte-identical and the lease store stays empty."""
    bundle = write_bundle(tmp_path / "ctr", ["NVIDIA_VISIBLE_DEVICES=mig-1g.10gb"])
    before = (bundle / "config.json").read_bytes()
    listing = sorted(os.listdir(bundle))
    status, out, _ = run_plan(capsys, str(bundle))
    assert status == 0
    first = mig_uuids(mig_host, "1g.10gb")[0]
    assert f"mig-lease: would lease mig-1g.10gb -> {first}" in out
    assert f'+      "NVIDIA_VISIBLE_DEVICES={first}"' in out
    assert (bundle / "config.json").read_bytes() == before
    assert sorted(os.listdir(bundle)) == listing
    assert os.listdir(mig_host.dir / "run" / "leases") == []


def test_mig_profile_plan_skips_devices_live_containers_hold(
        mig_host: SimHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A device a live container holds is not offered; a dead holder's lease would be
    reclaimed, and the plan says so without reclaiming it."""
    held, free = mig_uuids(mig_host, "1g.10gb")[:2]
    lease_dir = str(mig_host.dir / "run" / "leases")
    gpu = mig_host.topology["gpus"][0]["uuid"]
    for cid, pid, uuid in (("alive", os.getpid(), held), ("gone", DEAD_PID, "MIG-none")):
        lease = Lease(holder=Holder(container_id=cid, runtime_root="", bundle="/b",
                                    shim_pid=pid, shim_start=lease_host.process_start(pid)),
                      devices=(LeasedDevice(uuid=uuid, profile="1g.10gb", gpu=gpu,
                                            token="mig-1g.10gb"),),
                      created=time.time())
        with lease_lock.locked(lease_dir):
            lease_write.write_lease(lease_dir, lease)
    bundle = write_bundle(tmp_path / "ctr", ["NVIDIA_VISIBLE_DEVICES=mig-1g.10gb"])
    status, out, _ = run_plan(capsys, str(bundle))
    assert status == 0
    assert f"would lease mig-1g.10gb -> {free}" in out
    assert "would reclaim the stale lease of gone" in out
    assert sorted(os.listdir(lease_dir)) == [".lock", "alive.json", "gone.json"]


def test_policy_annotation_shows_policy_and_each_edit(
        t4_host: SimHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The policy named by the annotation is reported with everything it asks, and each edit it
    made appears both as a note and in the diff."""
    bundle = write_bundle(tmp_path / "ctr", ["NVIDIA_VISIBLE_DEVICES=0"],
                          {"ai.scheduling.policy": "guaranteed"})
    status, out, _ = run_plan(capsys, str(bundle))
    assert status == 0
    assert ("policy: guaranteed (from annotation): oom_score_adj -800, swap off, numa "
            "placement, blkio weight 800") in out
    assert "policy: linux.resources.memory.swap 1073741824" in out
    assert '+        "swap": 1073741824' in out
    assert "numa: policy guaranteed: GPU 0 on node 0" in out
    # node 0 is CPUs 0-7 on the t4 host; placement keeps to what this machine can give
    available = cpuset.read_available(None, systemd=False).cpus
    fitted = set(range(8)) if available is None else set(range(8)) & available
    if fitted:
        assert f'+        "cpus": "{numa.format_ids(fitted)}",' in out
    else:
        assert "placement skipped" in out and '"cpus"' not in out
    assert "oom: " in out and '"oomScoreAdj"' in out


def test_hook_part_lists_device_nodes_and_driver_files(
        t4_host: SimHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """For GPU 0 with the default capabilities: its node, the control nodes, the utility and
    compute files at the multiarch paths, no graphics library, and the ldcache run."""
    bundle = write_bundle(tmp_path / "ctr", ["NVIDIA_VISIBLE_DEVICES=0"])
    status, out, _ = run_plan(capsys, str(bundle))
    uuid = t4_host.topology["gpus"][0]["uuid"]
    lib = f"{t4_host.driver_dir}/usr/lib/x86_64-linux-gnu"
    assert status == 0
    assert f"device GPU 0 ({uuid}): /dev/nvidia0 (195:0)" in out
    assert "node   /dev/nvidiactl (195:255)" in out
    assert "node   /dev/nvidia-uvm (510:0)" in out
    assert "/dev/nvidia-modeset" not in out.split("gpu-container-hook prestart would")[1]
    assert (f"lib    {lib}/libcuda.so.535.104.05 -> "
            "/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05") in out
    assert f"bin    {t4_host.driver_dir}/usr/bin/nvidia-smi -> /usr/bin/nvidia-smi" in out
    assert "libGLX_nvidia" not in out
    assert "link   /usr/lib/x86_64-linux-gnu/libcuda.so -> libcuda.so.1" in out
    assert "ldcache: host /sbin/ldconfig over /usr/lib/x86_64-linux-gnu" in out


def test_non_debian_image_gets_lib64_paths(t4_host: SimHost, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Without /etc/debian_version in the image, libraries land in /usr/lib64."""
    bundle = write_bundle(tmp_path / "ctr", ["NVIDIA_VISIBLE_DEVICES=0"], debian=False)
    _, out, _ = run_plan(capsys, str(bundle))
    assert "-> /usr/lib64/libcuda.so.535.104.05" in out


def test_non_gpu_container_is_left_alone(t4_host: SimHost, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """No request: no edits, no diff, no hook."""
    bundle = write_bundle(tmp_path / "ctr", [])
    status, out, _ = run_plan(capsys, str(bundle))
    assert status == 0
    assert "request: none: not a GPU container" in out
    assert "would leave config.json as it is" in out
    assert "---" not in out
    assert "gpu-container-hook: not injected" in out


def test_unknown_device_is_the_shims_refusal(t4_host: SimHost, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A device the host lacks: exit 1 with the shim's own error in one line."""
    bundle = write_bundle(tmp_path / "ctr", ["NVIDIA_VISIBLE_DEVICES=9"])
    status, out, err = run_plan(capsys, str(bundle))
    assert status == 1
    assert out == ""
    assert err == ("gpu-ctk: plan: the shim would refuse this container: request: unknown "
                   "device 9; this host has GPUs 0\n")


def test_unmet_requirement_is_the_hooks_failure(t4_host: SimHost, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A CUDA requirement the driver cannot meet: the plan is printed, the hook's failure is
    marked, and the exit status is 1."""
    bundle = write_bundle(tmp_path / "ctr", ["NVIDIA_VISIBLE_DEVICES=0",
                                             "NVIDIA_REQUIRE_CUDA=cuda>=13.0"])
    status, out, err = run_plan(capsys, str(bundle))
    assert status == 1
    assert "  FAIL: gpu-container-hook: requirements: " in out
    assert err.startswith("gpu-ctk: plan: the hook would fail this start: requirements: ")


def test_json_names_modifiers_diff_and_outcome(t4_host: SimHost, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """--json: one object whose edits name each modifier that changed something."""
    bundle = write_bundle(tmp_path / "ctr", ["NVIDIA_VISIBLE_DEVICES=0"])
    status, out, _ = run_plan(capsys, str(bundle), "--json", "--id", "abc")
    document = json.loads(out)
    assert status == 0
    assert document["container_id"] == "abc"
    assert [e["modifier"] for e in document["edits"]] == ["devices", "hook", "oom"]
    assert document["changed"] is True and document["diff"].startswith("--- config.json")
    assert document["outcome"] == "start"
    assert {"host": f"{t4_host.driver_dir}/usr/bin/nvidia-smi", "container": "/usr/bin/nvidia-smi",
            "kind": "bin"} in document["hook"]["files"]


def test_mig_profile_plan_shows_the_shims_own_rewrite(
        mig_host: SimHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The plan runs the shim's own mig-lease modifier against a dry-run store: its diff holds
    what a start writes (the leased UUID and the annotations that record the request), its
    planned request names the device, and the lease store stays empty."""
    from runtime_shim.modifiers import mig_lease

    bundle = write_bundle(tmp_path / "ctr", ["NVIDIA_VISIBLE_DEVICES=mig-1g.10gb"])
    status, out, _ = run_plan(capsys, str(bundle), "--json")
    assert status == 0
    document = json.loads(out)
    first = mig_uuids(mig_host, "1g.10gb")[0]
    assert f'+    "{mig_lease.REQUESTED}": "mig-1g.10gb",' in document["diff"]
    assert f'+    "{mig_lease.LEASED}": "{first}"' in document["diff"]
    assert document["request"]["devices"] == [first]
    assert os.listdir(mig_host.dir / "run" / "leases") == []


def test_spec_diff_is_empty_for_equal_specs() -> None:
    """Equal specs give no diff; a change gives a unified diff of the pretty JSON."""
    assert plan_mod.spec_diff({"a": 1}, {"a": 1}) == ""
    assert plan_mod.spec_diff({"a": 1}, {"a": 2}).splitlines()[2:] == ["@@ -1,3 +1,3 @@", " {",
                                                                      '-  "a": 1', '+  "a": 2',
                                                                      " }"]


@pytest.mark.e2e
def test_plan_lists_what_the_hook_then_mounts(t4_host: SimHost, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Run the planned bundle for real (shim, runc, hook): the driver files and nodes inside the
    container are exactly the ones the plan listed, in the directories it named."""
    import subprocess

    from containers import Bundle, Runtime, build_busybox_image

    image = build_busybox_image(tmp_path / "image")
    bundle = tmp_path / "ctr"
    bundle.mkdir()
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    upper, work, rootfs = bundle / "upper", bundle / "work", bundle / "rootfs"
    for directory in (upper, work, rootfs):
        directory.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={image},upperdir={upper},workdir={work}", str(rootfs)], check=True)
    try:
        spec = json.loads((bundle / "config.json").read_text())
        spec["root"] = {"path": str(rootfs), "readonly": False}
        spec["process"].update(terminal=False, env=[*spec["process"]["env"],
                                                    "NVIDIA_VISIBLE_DEVICES=0"],
                               args=["/bin/sh", "-c", "ls /usr/bin; echo --; ls /usr/lib64; "
                                                      "echo --; ls /dev"])
        (bundle / "config.json").write_text(json.dumps(spec))
        status = main(["plan", "--json", str(bundle)])
        planned = json.loads(capsys.readouterr().out)["hook"]
        assert status == 0
        runtime = Runtime(root=tmp_path / "state", config=t4_host.config_path)
        runtime.root.mkdir()
        result = runtime.run(Bundle(bundle))
        runtime.cleanup()
    finally:
        subprocess.run(["umount", "-l", str(rootfs)], check=False)
    assert result.returncode == 0, result.stderr
    bins, libs, dev = (set(part.split()) for part in result.stdout.split("--\n"))
    files = [f["container"] for f in planned["files"]]
    assert files and all(f.startswith(("/usr/bin/", "/usr/lib64/")) for f in files)
    assert {name for name in bins if name.startswith("nvidia-")} == {
        os.path.basename(f) for f in files if f.startswith("/usr/bin/")}
    assert {name for name in libs if name.endswith(".so.535.104.05")} == {
        os.path.basename(f) for f in files if f.startswith("/usr/lib64/")}
    assert {os.path.basename(link["path"]) for link in planned["links"]} <= libs
    nodes = {line.split()[0].removeprefix("/dev/") for line in planned["nodes"]}
    assert {name for name in dev if name.startswith("nvidia")} == nodes | {"nvidia0"}


@pytest.mark.parametrize(("fault", "status", "line"), [
    ("nvc-init-transient=1", 0, "  note: nvc_init failed with a transient error the hook retries "
                                "(cuda error: unknown error); driver files not listed"),
    ("nvc-init-permanent=driver rpc error: failed to process request", 1,
     "  FAIL: gpu-container-hook: initialization: driver rpc error: failed to process request"),
])
def test_library_init_failures(sim_host_factory: SimHostFactory,
                               use_host: Callable[[SimHost], SimHost], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str], fault: str, status: int,
                               line: str) -> None:
    """A transient nvc_init error is noted (the hook would retry it); a permanent one is the
    hook's failure."""
    use_host(sim_host_factory("t4", (fault,)))
    bundle = write_bundle(tmp_path / "ctr", ["NVIDIA_VISIBLE_DEVICES=0"])
    code, out, _ = run_plan(capsys, str(bundle))
    assert code == status
    assert line in out.splitlines()


def test_json_request_of_a_legacy_image_on_a_mig_host(mig_host: SimHost, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A legacy CUDA image: all GPUs and every MIG device, every capability, cuda>=major.minor,
    each with its source."""
    bundle = write_bundle(tmp_path / "ctr", ["CUDA_VERSION=11.0.3"])
    status, out, _ = run_plan(capsys, str(bundle), "--json")
    request = json.loads(out)["request"]
    assert status == 0
    assert (request["devices"], request["devices_source"]) == (["all"], "legacy:CUDA_VERSION")
    assert len(request["gpus"]) == len(mig_host.topology["gpus"])
    assert sorted(m["uuid"] for m in request["mig_devices"]) == sorted(
        d["uuid"] for gpu in mig_host.topology["gpus"] for d in gpu["mig"].get("devices", []))
    assert request["capabilities_source"] == "legacy:CUDA_VERSION"
    assert len(request["capabilities"]) == 7
    assert request["requirements"] == ["cuda>=11.0"]
    assert request["requirement_sources"] == ["legacy:CUDA_VERSION"]


def test_legacy_image_newer_than_the_driver_fails(t4_host: SimHost, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """CUDA_VERSION above the driver's CUDA: the hook would fail in one line naming it."""
    bundle = write_bundle(tmp_path / "ctr", ["CUDA_VERSION=99.1.0"])
    status, _, err = run_plan(capsys, str(bundle))
    assert status == 1
    assert err == ("gpu-ctk: plan: the hook would fail this start: requirements: unsatisfied "
                   "condition: cuda>=99.1\n")


def write_injected_bundle(directory: Path, env: list[str]) -> Path:
    """A bundle as podman writes it after injecting ``nvidia.com/gpu=0`` from a CDI spec."""
    write_bundle(directory, env)
    spec = json.loads((directory / "config.json").read_text())
    spec["linux"]["devices"] = [
        {"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0, "fileMode": 438},
        {"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255, "fileMode": 438}]
    spec["hooks"] = {"createContainer": [{"path": "/usr/bin/nvidia-cdi-hook",
                                          "args": ["nvidia-cdi-hook", "update-ldcache"]}]}
    (directory / "config.json").write_text(json.dumps(spec))
    return directory


@pytest.mark.parametrize("env", [["NVIDIA_VISIBLE_DEVICES=void"], [],
                                 ["NVIDIA_VISIBLE_DEVICES=all"]])
def test_cdi_injected_container_shows_it_is_not_widened(
        t4_host: SimHost, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        env: list[str]) -> None:
    """Whatever NVIDIA_VISIBLE_DEVICES says: no device added, no hook, the decision shown."""
    bundle = write_injected_bundle(tmp_path / "ctr", env)
    before = (bundle / "config.json").read_text()
    status, out, _ = run_plan(capsys, str(bundle))
    assert status == 0
    assert "devices: CDI-injected by the engine (GPU 0: /dev/nvidia0): not widened" in out
    assert "not a GPU container" not in out
    assert "gpu-container-hook: not injected (the engine injected the driver from a CDI spec)" \
        in out
    added = [line for line in out.splitlines() if line.startswith("+") and "+++" not in line]
    assert not [line for line in added if "/dev/nvidia" in line or "container-hook" in line]
    assert (bundle / "config.json").read_text() == before


def test_cdi_injected_container_still_gets_its_policy(
        t4_host: SimHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = write_injected_bundle(tmp_path / "ctr", ["NVIDIA_VISIBLE_DEVICES=void"])
    spec = json.loads((bundle / "config.json").read_text())
    spec["annotations"] = {"ai.scheduling.policy": "guaranteed"}
    (bundle / "config.json").write_text(json.dumps(spec))
    status, out, _ = run_plan(capsys, "--json", str(bundle))
    plan = json.loads(out)
    assert status == 0
    assert plan["cdi_injected"] == \
        "devices: CDI-injected by the engine (GPU 0: /dev/nvidia0): not widened"
    assert [e["modifier"] for e in plan["edits"]][:3] == ["devices", "hook", "policy"]
    assert '"swap": 1073741824' in plan["diff"] and "gpu-container-hook" not in plan["diff"]
    assert plan["hook"]["injected"] is False


@pytest.fixture
def spec_mode_host(sim_host_factory: SimHostFactory, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> SimHost:
    """The t4 host under ``mode: spec``."""
    import yaml

    host = sim_host_factory("t4")
    document = yaml.safe_load(host.config_path.read_text())
    document.update({"mode": "spec", "spec": {"hook_path": "/opt/bin/gpu-container-spec-hook"}})
    config = tmp_path / "spec-mode.yaml"
    config.write_text(yaml.safe_dump(document))
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(config))
    return host


def test_spec_mode_plan_lists_the_mounts_and_the_spec_hook(
        spec_mode_host: SimHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = write_bundle(tmp_path / "ctr", ["NVIDIA_VISIBLE_DEVICES=0"])
    status, out, _ = run_plan(capsys, str(bundle))
    lib = "/usr/lib/x86_64-linux-gnu"
    assert status == 0
    assert "gpu-container-runtime (spec mode) would declare:" in out
    assert "  readiness: the create waits up to 30.0s for GPU 0 to answer NVML" in out
    assert (f"  mount  {spec_mode_host.driver_dir}{lib}/libcuda.so.535.104.05 -> "
            f"{lib}/libcuda.so.535.104.05 (ro,nosuid,nodev,bind)") in out
    assert (f"  hook   createContainer /opt/bin/gpu-container-spec-hook --folder {lib} --link "
            f"libcuda.so.1::{lib}/libcuda.so --driver-version 535.104.05") in out
    assert "gpu-container-hook: not injected (spec mode: the shim declares the driver" in out
    assert '"createContainer"' in out  # the diff shows the entry the shim writes


def test_spec_mode_plan_in_json(spec_mode_host: SimHost, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    bundle = write_bundle(tmp_path / "ctr", ["NVIDIA_VISIBLE_DEVICES=0"], debian=False)
    status, out, _ = run_plan(capsys, str(bundle), "--json")
    document = json.loads(out)
    declared = document["spec_mode"]
    assert status == 0 and document["mode"] == "spec" and document["outcome"] == "start"
    assert [e["modifier"] for e in document["edits"]] == ["devices", "driver-mounts", "oom"]
    assert {"destination": "/usr/lib64/libcuda.so.535.104.05", "type": "bind",
            "source": f"{spec_mode_host.driver_dir}/usr/lib64/libcuda.so.535.104.05".replace(
                "/usr/lib64/", "/usr/lib/x86_64-linux-gnu/"),
            "options": ["ro", "nosuid", "nodev", "bind"]} in declared["mounts"]
    assert declared["hook"]["stage"] == "createContainer"
    assert declared["hook"]["path"] == "/opt/bin/gpu-container-spec-hook"
    assert declared["hook"]["args"][:3] == ["gpu-container-spec-hook", "--folder", "/usr/lib64"]
    assert document["hook"]["injected"] is False


def test_spec_mode_plan_of_a_non_gpu_container_declares_nothing(
        spec_mode_host: SimHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = write_bundle(tmp_path / "ctr", [])
    status, out, _ = run_plan(capsys, str(bundle), "--json")
    assert status == 0 and json.loads(out)["spec_mode"] is None


def test_hook_mode_plan_has_no_spec_mode_part(t4_host: SimHost, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bundle = write_bundle(tmp_path / "ctr", ["NVIDIA_VISIBLE_DEVICES=0"])
    _, out, _ = run_plan(capsys, str(bundle), "--json")
    document = json.loads(out)
    assert document["mode"] == "hook" and document["spec_mode"] is None


def test_spec_mode_plan_of_a_mig_device_names_its_capability_files(
        sim_host_factory: SimHostFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """dgx-a100-mig, NVIDIA_VISIBLE_DEVICES=1:1: the hook entry binds GPU 1's second instance's
    GI and CI access files, the ones whose minors are the nvidia-cap nodes declared."""
    import yaml

    host = sim_host_factory("dgx-a100-mig")
    document = yaml.safe_load(host.config_path.read_text())
    document.update({"mode": "spec", "spec": {"hook_path": "/opt/bin/gpu-container-spec-hook"}})
    config = tmp_path / "spec-mode.yaml"
    config.write_text(yaml.safe_dump(document))
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(config))
    mig = host.topology["gpus"][1]["mig"]["devices"][1]
    bundle = write_bundle(tmp_path / "ctr", ["NVIDIA_VISIBLE_DEVICES=1:1"])
    status, out, _ = run_plan(capsys, str(bundle), "--json")
    plan = json.loads(out)
    args = plan["spec_mode"]["hook"]["args"]
    assert status == 0
    base = f"capabilities/gpu{host.topology['gpus'][1]['minor']}/mig/gi{mig['gi']}"
    assert [args[i + 1] for i, arg in enumerate(args) if arg == "--proc-file"] == [
        f"{base}/access", f"{base}/ci{mig['ci']}/access"]
    assert f'"minor": {mig["ci_cap_minor"]}' in plan["diff"]
