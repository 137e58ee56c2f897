"""A real runc container whose prestart hook drives the simulated libnvidia-container the way the
project's hook does: init, container, driver and device information, driver and device mounts,
ld cache. Inside, the container sees libcuda.so.1, its GPU node and an ld.so.cache naming it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator import nvc_build
from simulator.testing import SimHost, build_host

pytestmark = pytest.mark.e2e

HOOK = r'''
import json, sys
from pathlib import Path
from simulator import nvc_build

library, version = sys.argv[1], sys.argv[2]
state = json.load(sys.stdin)
bundle = Path(state["bundle"])
root = json.loads((bundle / "config.json").read_text())["root"]["path"]
rootfs = (bundle / root).resolve()
ffi, lib = nvc_build.open_library(Path(library), version)


def check(ok):
    if not ok:
        sys.exit("nvc: " + ffi.string(lib.nvc_error(ctx)).decode())


ctx = lib.nvc_context_new()
check(lib.nvc_init(ctx, ffi.NULL, b"") == 0)
path = ffi.new("char[]", str(rootfs).encode())
cfg = lib.nvc_container_config_new(state["pid"], path)
cnt = lib.nvc_container_new(ctx, cfg, b"standalone no-cgroups utility compute")
check(cnt != ffi.NULL)
driver = lib.nvc_driver_info_new(ctx, b"")
devices = lib.nvc_device_info_new(ctx, b"")
check(driver != ffi.NULL and devices != ffi.NULL)
check(lib.nvc_driver_mount(ctx, cnt, driver) == 0)
check(lib.nvc_device_mount(ctx, cnt, ffi.addressof(devices.gpus[0])) == 0)
check(lib.nvc_ldcache_update(ctx, cnt) == 0)
lib.nvc_device_info_free(devices)
lib.nvc_driver_info_free(driver)
lib.nvc_container_free(cnt)
lib.nvc_container_config_free(cfg)
lib.nvc_shutdown(ctx)
lib.nvc_context_free(ctx)
'''

SCRIPT = ("ls /usr/lib/x86_64-linux-gnu/libcuda.so.1 /dev/nvidia0 /dev/nvidiactl"
          " && grep -c libcuda.so.1 /etc/ld.so.cache && nvidia-smi -L")


@pytest.fixture(scope="module", params=["1.0.7", nvc_build.DEFAULT_VERSION])
def host(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SimHost:
    """The T4 host with the oldest and the newest library."""
    return build_host("t4", tmp_path_factory.mktemp("e2e-host"), nvc_version=request.param)


@pytest.fixture
def bundle(tmp_path: Path, host: SimHost) -> Iterator[Path]:
    """A runc bundle: busybox image under an overlay rootfs, the hook as prestart."""
    image, upper, work = tmp_path / "image", tmp_path / "upper", tmp_path / "work"
    bundle = tmp_path / "bundle"
    for directory in (image / "bin", image / "etc", upper, work, bundle / "rootfs"):
        directory.mkdir(parents=True)
    busybox = shutil.which("busybox")
    assert busybox is not None
    shutil.copy(busybox, image / "bin" / "busybox")
    for applet in ("sh", "ls", "grep", "cat", "dirname", "echo"):
        (image / "bin" / applet).symlink_to("busybox")
    (image / "etc" / "debian_version").write_text("12.0\n", encoding="utf-8")
    (tmp_path / "hook.py").write_text(HOOK, encoding="utf-8")

    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/sh", "-c", SCRIPT]
    config["process"]["env"] = ["PATH=/usr/bin:/bin"]
    config["hooks"] = {"prestart": [{
        "path": sys.executable,
        "args": [sys.executable, "-I", str(tmp_path / "hook.py"), str(host.nvc_library),
                 _version(host)],
        "env": ["PATH=/usr/bin:/bin"],
        "timeout": 60,
    }]}
    (bundle / "config.json").write_text(json.dumps(config), encoding="utf-8")
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={image},upperdir={upper},workdir={work}",
                    str(bundle / "rootfs")], check=True)
    try:
        yield bundle
    finally:
        subprocess.run(["umount", str(bundle / "rootfs")], check=True)


def _version(host: SimHost) -> str:
    """The library version the host was built with (as nvc_version() reports it)."""
    ffi, lib = nvc_build.open_library(host.nvc_library, "1.0.7")
    text = ffi.string(lib.nvc_version().string)
    assert isinstance(text, bytes)
    return text.decode()


def run_container(bundle: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    state = tmp_path / "runc-state"
    name = f"nvc-e2e-{tmp_path.name}"[-60:]
    try:
        return subprocess.run(["runc", "--root", str(state), "run", "--bundle", str(bundle),
                               name], capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run(["runc", "--root", str(state), "delete", "--force", name],
                       capture_output=True)


def test_runc_container_sees_the_driver(bundle: Path, host: SimHost, tmp_path: Path) -> None:
    """The prestart hook's mounts and ld cache are what the container process sees."""
    image = tmp_path / "image"
    before = sorted(str(path) for path in image.rglob("*"))
    result = run_container(bundle, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "/usr/lib/x86_64-linux-gnu/libcuda.so.1" in lines
    assert "/dev/nvidia0" in lines and "/dev/nvidiactl" in lines
    assert [int(line) for line in lines if line.isdigit()] >= [1]
    assert host.topology["gpus"][0]["uuid"] in result.stdout
    assert sorted(str(path) for path in image.rglob("*")) == before


def test_init_failure_fails_the_container(bundle: Path, host: SimHost, tmp_path: Path) -> None:
    """With nvc-init-permanent the hook fails with the library's message and runc gives up."""
    host.set_faults("nvc-init-permanent=driver rpc error: timed out")
    try:
        result = run_container(bundle, tmp_path)
    finally:
        host.set_faults()
    assert result.returncode != 0
    assert "nvc: driver rpc error: timed out" in result.stderr
