"""Spec mode's driver-mounts modifier: the driver's files as read-only bind mounts at
libnvidia-container's container paths, and the createContainer entry of the spec hook."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import oci_schema
import pytest

from gpu_core import config as config_mod
from gpu_core.errors import ShimError
from gpu_core.inventory import Inventory
from gpu_core.request import DeviceRequest
from gpu_core.testing import fake_inventory
from runtime_shim import cdi_injection
from runtime_shim.cdi_injection import Injection
from runtime_shim.context import Context
from runtime_shim.modifiers import driver_mounts

VERSION = "535.104.05"
HOST = fake_inventory(4, {1: ("1g.10gb",)}, driver_version=VERSION)
CAPS = frozenset({"compute", "utility"})
LIB = "/usr/lib/x86_64-linux-gnu"


@pytest.fixture
def driver_root(tmp_path: Path) -> Path:
    """A host driver tree: 64- and 32-bit libcuda and libnvidia-ml, nvidia-smi, a video library,
    firmware, the persistenced socket and the proc entries of GPUs 0 and 1."""
    root = tmp_path / "driver"
    for path in (f"{LIB}/libcuda.so.{VERSION}", f"{LIB}/libnvidia-ml.so.{VERSION}",
                 f"{LIB}/libnvcuvid.so.{VERSION}", f"/usr/lib/i386-linux-gnu/libcuda.so.{VERSION}",
                 "/usr/bin/nvidia-smi", f"/lib/firmware/nvidia/{VERSION}/gsp_ga10x.bin",
                 "/var/run/nvidia-persistenced/socket",
                 "/proc/driver/nvidia/version"):
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_bytes(b"")
    for bus in ("0000:07:00.0", "0000:0f:00.0"):
        (root / "proc/driver/nvidia/gpus" / bus).mkdir(parents=True)
    return root


def bundle(tmp_path: Path, debian: bool = True) -> Path:
    where = tmp_path / "bundle"
    (where / "rootfs/etc").mkdir(parents=True, exist_ok=True)
    if debian:
        (where / "rootfs/etc/debian_version").write_text("12\n")
    return where


def spec() -> dict[str, Any]:
    return {"ociVersion": "1.2.1", "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "env": ["PATH=/bin"]},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "hooks": {"prestart": [{"path": "/usr/bin/other"}]}}


def context(driver_root: Path, where: Path, devices: tuple[str, ...] = ("0",),
            caps: frozenset[str] = CAPS, mode: str = "spec", host: Inventory = HOST,
            injected: Optional[Injection] = None, require: tuple[str, ...] = (),
            mig_config: tuple[str, ...] = (), mig_monitor: tuple[str, ...] = ()) -> Context:
    config = config_mod.parse(f"mode: {mode}\nhost: {{driver_root: {driver_root}}}\n"
                              "spec: {hook_path: /opt/bin/gpu-container-spec-hook}", "t.yaml")
    request = DeviceRequest(devices=devices, capabilities=caps, requirements=require,
                            privileged=bool(mig_config or mig_monitor), mig_config=mig_config,
                            mig_monitor=mig_monitor)
    return Context(config=config, request=request, bundle=str(where), discover=lambda: host,
                   injected=injected)


def hook_of(result: dict[str, Any]) -> dict[str, Any]:
    [entry] = result["hooks"]["createContainer"]
    return entry


def added(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["destination"], m["source"]) for m in result["mounts"][1:]]


def test_the_selected_files_become_read_only_bind_mounts(tmp_path: Path,
                                                         driver_root: Path) -> None:
    result, _ = driver_mounts.apply(spec(), context(driver_root, bundle(tmp_path)))
    d = str(driver_root)
    assert added(result) == [
        ("/usr/bin/nvidia-smi", f"{d}/usr/bin/nvidia-smi"),
        (f"{LIB}/libnvidia-ml.so.{VERSION}", f"{d}{LIB}/libnvidia-ml.so.{VERSION}"),
        (f"{LIB}/libcuda.so.{VERSION}", f"{d}{LIB}/libcuda.so.{VERSION}"),
        (f"/lib/firmware/nvidia/{VERSION}/gsp_ga10x.bin",
         f"{d}/lib/firmware/nvidia/{VERSION}/gsp_ga10x.bin"),
        ("/var/run/nvidia-persistenced/socket", f"{d}/var/run/nvidia-persistenced/socket")]
    assert all(m["type"] == "bind" and m["options"] == ["ro", "nosuid", "nodev", "bind"]
               for m in result["mounts"][1:])


def test_the_hook_entry_carries_the_contracts_argv(tmp_path: Path, driver_root: Path) -> None:
    result, _ = driver_mounts.apply(spec(), context(driver_root, bundle(tmp_path)))
    assert hook_of(result) == {
        "path": "/opt/bin/gpu-container-spec-hook",
        "args": ["gpu-container-spec-hook", "--folder", LIB,
                 "--link", f"libcuda.so.1::{LIB}/libcuda.so", "--driver-version", VERSION,
                 "--proc-driver", f"{driver_root}/proc/driver/nvidia", "--gpu", "0000:07:00.0",
                 "--ldconfig", "/sbin/ldconfig", "--timeout", "9"],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", cdi_injection.SPEC_MARK],
        "timeout": 10}
    assert result["hooks"]["prestart"] == [{"path": "/usr/bin/other"}]


def test_an_image_without_debian_version_gets_lib64_and_lib32(tmp_path: Path,
                                                              driver_root: Path) -> None:
    ctx = context(driver_root, bundle(tmp_path, debian=False), caps=CAPS | {"compat32"})
    result, _ = driver_mounts.apply(spec(), ctx)
    libs = [dest for dest, _ in added(result) if "libcuda" in dest]
    assert libs == [f"/usr/lib64/libcuda.so.{VERSION}", f"/usr/lib32/libcuda.so.{VERSION}"]
    args = hook_of(result)["args"]
    assert args[1:5] == ["--folder", "/usr/lib64", "--folder", "/usr/lib32"]
    assert "libcuda.so.1::/usr/lib32/libcuda.so" in args


def test_an_etc_link_out_of_the_rootfs_is_resolved_inside_it(tmp_path: Path,
                                                            driver_root: Path) -> None:
    """The host's /etc has debian_version; the image's /etc -> / finds none inside."""
    where = bundle(tmp_path, debian=False)
    os.rmdir(where / "rootfs/etc")
    os.symlink("/etc", where / "rootfs/etc")
    assert os.path.exists("/etc/debian_version")
    result, _ = driver_mounts.apply(spec(), context(driver_root, where))
    assert hook_of(result)["args"][1:3] == ["--folder", "/usr/lib64"]


def test_capabilities_choose_the_files(tmp_path: Path, driver_root: Path) -> None:
    result, _ = driver_mounts.apply(spec(), context(driver_root, bundle(tmp_path),
                                                    caps=frozenset({"utility"})))
    assert [dest.rsplit("/", 1)[1] for dest, _ in added(result)] == [
        "nvidia-smi", f"libnvidia-ml.so.{VERSION}", "gsp_ga10x.bin", "socket"]
    assert "--link" not in hook_of(result)["args"]


def test_a_mig_device_names_its_parents_proc_entry(tmp_path: Path, driver_root: Path) -> None:
    ctx = context(driver_root, bundle(tmp_path), devices=("1:0",))
    args = hook_of(driver_mounts.apply(spec(), ctx)[0])["args"]
    assert args[args.index("--gpu"):args.index("--gpu") + 2] == ["--gpu", "0000:0f:00.0"]


def proc_files_of(args: list[str]) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == "--proc-file"]


def test_a_mig_device_gets_its_gi_and_ci_access_files(tmp_path: Path, driver_root: Path) -> None:
    """GPU 1 (minor 1), GPU instance 1, compute instance 0: the files whose minors are the
    nvidia-caps nodes the devices modifier declares; after the --gpu entries."""
    ctx = context(driver_root, bundle(tmp_path), devices=("1:0",))
    args = hook_of(driver_mounts.apply(spec(), ctx)[0])["args"]
    assert proc_files_of(args) == ["capabilities/gpu1/mig/gi1/access",
                                   "capabilities/gpu1/mig/gi1/ci0/access"]
    assert args.index("--gpu") < args.index("--proc-file") < args.index("--ldconfig")


def test_each_selected_mig_device_brings_its_own_files(tmp_path: Path, driver_root: Path) -> None:
    host = fake_inventory(4, {1: ("1g.10gb", "1g.10gb", "2g.20gb")}, driver_version=VERSION)
    ctx = context(driver_root, bundle(tmp_path), devices=("1:2", "1:0"), host=host)
    assert proc_files_of(hook_of(driver_mounts.apply(spec(), ctx)[0])["args"]) == [
        "capabilities/gpu1/mig/gi3/access", "capabilities/gpu1/mig/gi3/ci0/access",
        "capabilities/gpu1/mig/gi1/access", "capabilities/gpu1/mig/gi1/ci0/access"]


def test_a_whole_gpu_gets_no_capability_files(tmp_path: Path, driver_root: Path) -> None:
    args = hook_of(driver_mounts.apply(spec(), context(driver_root, bundle(tmp_path),
                                                       devices=("0", "1")))[0])["args"]
    assert "--proc-file" not in args


@pytest.mark.parametrize(("which", "files"), [
    ({"mig_config": ("all",)}, ["capabilities/mig/config"]),
    ({"mig_monitor": ("all",)}, ["capabilities/mig/monitor"]),
    ({"mig_config": ("all",), "mig_monitor": ("all",)},
     ["capabilities/mig/config", "capabilities/mig/monitor"]),
])
def test_the_global_mig_capabilities_asked_for_bring_their_files(
        tmp_path: Path, driver_root: Path, which: dict[str, tuple[str, ...]],
        files: list[str]) -> None:
    host = HOST._replace(mig_global_caps={"config": 1, "monitor": 2})
    ctx = context(driver_root, bundle(tmp_path), devices=("0",), host=host, **which)
    assert proc_files_of(hook_of(driver_mounts.apply(spec(), ctx)[0])["args"]) == files


def test_without_a_host_proc_driver_no_capability_file_is_passed(tmp_path: Path,
                                                                  driver_root: Path) -> None:
    shutil.rmtree(driver_root / "proc")
    args = hook_of(driver_mounts.apply(spec(), context(driver_root, bundle(tmp_path),
                                                       devices=("1:0",)))[0])["args"]
    assert "--proc-driver" not in args and "--proc-file" not in args


def test_the_note_counts_the_capability_files(tmp_path: Path, driver_root: Path) -> None:
    _, notes = driver_mounts.apply(spec(), context(driver_root, bundle(tmp_path),
                                                   devices=("1:0",)))
    assert notes[1].endswith("/proc/driver/nvidia for GPU 1 with 2 MIG capability files")


def test_a_gpu_without_a_proc_entry_gets_no_gpu_argument(tmp_path: Path,
                                                         driver_root: Path) -> None:
    args = hook_of(driver_mounts.apply(spec(), context(driver_root, bundle(tmp_path),
                                                       devices=("2",)))[0])["args"]
    assert "--gpu" not in args


def test_hook_mode_adds_nothing(tmp_path: Path, driver_root: Path) -> None:
    original = spec()
    assert driver_mounts.apply(original, context(driver_root, bundle(tmp_path),
                                                 mode="hook")) == (original, [])


def test_a_cdi_injected_container_gets_nothing(tmp_path: Path, driver_root: Path) -> None:
    original = spec()
    injected = Injection(gpu_minors=(0,), evidence=("/dev/nvidia0 (195:0)",))
    result, notes = driver_mounts.apply(original, context(driver_root, bundle(tmp_path),
                                                          injected=injected))
    assert result is original and notes == [
        "driver-mounts: none: the engine injected the driver from a CDI spec"]


def test_a_second_pass_gives_the_same_spec(tmp_path: Path, driver_root: Path) -> None:
    ctx = context(driver_root, bundle(tmp_path))
    once, _ = driver_mounts.apply(spec(), ctx)
    twice, notes = driver_mounts.apply(copy.deepcopy(once), ctx)
    assert twice == once and notes == []


def test_a_stale_spec_hook_entry_is_replaced(tmp_path: Path, driver_root: Path) -> None:
    stale = {**spec(), "hooks": {"createContainer": [
        {"path": "/old/gpu-container-spec-hook", "args": ["gpu-container-spec-hook"]}],
        "createRuntime": [{"path": "/opt/bin/gpu-container-spec-hook"}]}}
    result, _ = driver_mounts.apply(stale, context(driver_root, bundle(tmp_path)))
    assert result["hooks"]["createRuntime"] == []
    assert hook_of(result)["path"] == "/opt/bin/gpu-container-spec-hook"


def test_the_input_is_not_mutated(tmp_path: Path, driver_root: Path) -> None:
    original = spec()
    before = copy.deepcopy(original)
    driver_mounts.apply(original, context(driver_root, bundle(tmp_path)))
    assert original == before


def test_an_unsatisfied_requirement_fails_the_create(tmp_path: Path, driver_root: Path) -> None:
    ctx = context(driver_root, bundle(tmp_path), require=("cuda>=99",))
    with pytest.raises(ShimError, match=r"unsatisfied condition: cuda>=99"):
        driver_mounts.apply(spec(), ctx)


@pytest.mark.parametrize("field, value", [("mounts", {}), ("hooks", []),
                                          ("hooks", {"createContainer": {}})])
def test_a_malformed_field_is_a_one_line_error(tmp_path: Path, driver_root: Path, field: str,
                                               value: Any) -> None:
    with pytest.raises(ShimError, match=r"config\.json"):
        driver_mounts.apply({**spec(), field: value}, context(driver_root, bundle(tmp_path)))


def test_the_result_is_a_valid_oci_config(tmp_path: Path, driver_root: Path) -> None:
    result, _ = driver_mounts.apply(spec(), context(driver_root, bundle(tmp_path)))
    errors = list(oci_schema.config_validator().iter_errors(result))
    assert errors == []


CHOOSERS = [
    {"annotations": {"gpu-container-shim/mode": "hook", "mode": "hook"}},
    {"process": {"args": ["sh"], "cwd": "/",
                 "env": ["GPU_CONTAINER_SHIM_MODE=hook", "MODE=hook", "mode=hook",
                         "GPU_CONTAINER_SHIM_CONFIG=/nonexistent.yaml"]}},
]


@pytest.mark.parametrize("chooser", CHOOSERS)
@pytest.mark.parametrize("mode", ["hook", "spec"])
def test_only_the_configuration_chooses_the_mode(tmp_path: Path, driver_root: Path,
                                                 chooser: dict[str, Any], mode: str) -> None:
    """Annotations and env of the container naming a mode change nothing: the whole pipeline
    gives the spec-hook entry exactly when the configuration says spec."""
    from runtime_shim import pipeline

    ctx = context(driver_root, bundle(tmp_path), mode=mode)
    result = pipeline.run({**spec(), **chooser}, ctx).spec
    stages = result.get("hooks", {})
    assert ("createContainer" in stages) == (mode == "spec")
    assert any(e.get("path", "").endswith("gpu-container-hook")
               for e in stages.get("prestart", [])) == (mode == "hook")
