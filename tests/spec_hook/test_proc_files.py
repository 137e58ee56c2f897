"""MIG capability files bound read-only into our /proc/driver/nvidia tmpfs (``--proc-file``):
the relative path checked, the host file found without following a symlink and opened before
the hook may change mount namespace, each bind made in a private mount namespace of a forked
child (the mounts die with it)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from private_mounts import in_child, private_namespace

from gpu_core.errors import ShimError
from spec_hook import proc_driver, proc_files, rootfs

BUS = "0000:07:00.0"
GI = "capabilities/gpu0/mig/gi1/access"
CI = "capabilities/gpu0/mig/gi1/ci0/access"
CONFIG = "capabilities/mig/config"


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    """A host /proc/driver/nvidia with one MIG device's capability files and the globals."""
    host = tmp_path / "host-proc-driver-nvidia"
    (host / "gpus" / BUS).mkdir(parents=True)
    (host / "params").write_text("ModifyDeviceFiles: 1\n")
    (host / "version").write_text("NVRM version: 535.104.05\n")
    for rel, minor in ((GI, 21), (CI, 22), (CONFIG, 1), ("capabilities/mig/monitor", 2),
                       ("capabilities/gpu0/mig/gi2/access", 30)):
        (host / rel).parent.mkdir(parents=True, exist_ok=True)
        (host / rel).write_text(f"DeviceFileMinor: {minor}\nDeviceFileMode: 292\n")
    return host


@pytest.mark.parametrize("rel", [GI, CI, CONFIG, "capabilities/fabric-imex-mgmt"])
def test_a_path_under_capabilities_is_accepted(rel: str) -> None:
    assert proc_files.check(rel) == rel


@pytest.mark.parametrize("rel", [
    "params", "gpus/0000:07:00.0/information", "/capabilities/mig/config", "capabilities",
    "capabilities/", "capabilities/../params", "capabilities/mig/../../params",
    "capabilities//mig/config", "capabilities/./mig/config", "capabilities/mig/config/",
    "capabilities/mig/con\x00fig", "capabilities/mig/config\n", "capabilitiesX/mig/config",
    "capabilities/" + "a" * 300, "capabilities" + "/a" * 10, "./capabilities/mig/config", ""])
def test_a_path_outside_capabilities_or_not_plain_is_refused(rel: str) -> None:
    with pytest.raises(ValueError, match=r"--proc-file .*: expected a path under capabilities/"):
        proc_files.check(rel)


def test_a_missing_host_file_is_an_error_naming_its_host_path(host_dir: Path) -> None:
    with pytest.raises(ShimError, match=f"proc driver: {host_dir}/capabilities/gpu0/mig/gi9/"
                                        "access: No such file or directory"):
        proc_driver.read_host(str(host_dir), [], ["capabilities/gpu0/mig/gi9/access"])


def test_a_host_directory_symlink_is_not_followed(host_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "mig" / "gi1"
    elsewhere.mkdir(parents=True)
    (elsewhere / "access").write_text("secret\n")
    (host_dir / "capabilities" / "gpu1").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ShimError, match="capabilities/gpu1/mig/gi1/access: Not a directory"):
        proc_driver.read_host(str(host_dir), [], ["capabilities/gpu1/mig/gi1/access"])


def test_a_host_file_symlink_or_directory_is_refused(host_dir: Path) -> None:
    (host_dir / "capabilities" / "mig" / "link").symlink_to(host_dir / "params")
    for rel in ("capabilities/mig/link", "capabilities/gpu0/mig/gi1"):
        with pytest.raises(ShimError, match=f"{rel}: not a regular file"):
            proc_driver.read_host(str(host_dir), [], [rel])


def install_in(image: Path, host: proc_driver.HostProcDriver) -> None:
    root = rootfs.open_root(str(image))
    try:
        proc_driver.install(root, host)
    finally:
        os.close(root)


def test_the_asked_files_and_only_those_appear_at_their_paths(
        tmp_path: Path, host_dir: Path) -> None:
    image = tmp_path / "rootfs"
    (image / "proc").mkdir(parents=True)

    def body() -> None:
        install_in(image, proc_driver.read_host(str(host_dir), [BUS], [GI, CI, CONFIG]))
        caps = image / "proc" / "driver" / "nvidia" / "capabilities"
        assert sorted(os.listdir(caps)) == ["gpu0", "mig"]
        assert os.listdir(caps / "mig") == ["config"]
        assert os.listdir(caps / "gpu0" / "mig") == ["gi1"]
        assert sorted(os.listdir(caps / "gpu0" / "mig" / "gi1")) == ["access", "ci0"]
        assert (caps / "gpu0" / "mig" / "gi1" / "ci0" / "access").read_text() == \
            "DeviceFileMinor: 22\nDeviceFileMode: 292\n"
        assert (caps / "mig" / "config").read_text().startswith("DeviceFileMinor: 1\n")

    in_child(body)


def test_the_same_file_asked_twice_is_bound_once(tmp_path: Path, host_dir: Path) -> None:
    image = tmp_path / "rootfs"
    (image / "proc").mkdir(parents=True)

    def body() -> None:
        install_in(image, proc_driver.read_host(str(host_dir), [], [GI, GI]))
        top = str(image / "proc" / "driver" / "nvidia" / GI)
        targets = [line.split()[4] for line in
                   Path("/proc/self/mountinfo").read_text().splitlines()]
        assert targets.count(top) == 1

    in_child(body)


def test_each_bound_file_is_read_only_nosuid_nodev_noexec(tmp_path: Path, host_dir: Path) -> None:
    image = tmp_path / "rootfs"
    (image / "proc").mkdir(parents=True)

    def body() -> None:
        install_in(image, proc_driver.read_host(str(host_dir), [], [GI, CONFIG]))
        top = image / "proc" / "driver" / "nvidia"
        for rel in (GI, CONFIG):
            with pytest.raises(OSError) as raised:
                os.open(top / rel, os.O_WRONLY)
            assert raised.value.errno == errno.EROFS
        options = {line.split()[4]: line.split()[5] for line in
                   Path("/proc/self/mountinfo").read_text().splitlines()}
        for rel in (GI, CONFIG):
            assert {"ro", "nosuid", "nodev", "noexec"} <= set(options[str(top / rel)].split(","))

    in_child(body)
    assert (host_dir / GI).read_text().startswith("DeviceFileMinor: 21\n")


def test_files_opened_before_entering_another_mount_namespace_are_still_bound(
        tmp_path: Path, host_dir: Path) -> None:
    """As in a prestart/createRuntime hook: the host files are opened in the runtime's
    namespace, the binds made after moving into the container's."""
    image = tmp_path / "rootfs"
    (image / "proc").mkdir(parents=True)

    def body() -> None:
        host = proc_driver.read_host(str(host_dir), [], [CI])
        private_namespace()
        install_in(image, host)
        assert (image / "proc" / "driver" / "nvidia" / CI).read_text().startswith(
            "DeviceFileMinor: 22\n")

    in_child(body, private=False)


def test_an_image_proc_symlinked_to_etc_binds_under_the_roots_etc(
        tmp_path: Path, host_dir: Path) -> None:
    image = tmp_path / "rootfs"
    (image / "etc").mkdir(parents=True)
    (image / "proc").symlink_to("/etc")

    def body() -> None:
        install_in(image, proc_driver.read_host(str(host_dir), [], [GI]))
        assert (image / "etc" / "driver" / "nvidia" / GI).read_text().startswith(
            "DeviceFileMinor: 21\n")
        assert not os.path.lexists("/etc/driver/nvidia")

    in_child(body)


def test_without_open_tree_the_file_is_bound_from_its_descriptor_in_place(
        tmp_path: Path, host_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel before 5.2 (open_tree is ENOSYS): the O_PATH fd opened on the host is bound
    with mount(2), which serves the createContainer stage (no namespace change)."""
    monkeypatch.setattr(proc_files, "_clone", lambda fd: -1)
    image = tmp_path / "rootfs"
    (image / "proc").mkdir(parents=True)

    def body() -> None:
        host = proc_driver.read_host(str(host_dir), [], [GI])
        assert [(f.rel, f.tree) for f in host.cap_files] == [(GI, False)]
        install_in(image, host)
        top = image / "proc" / "driver" / "nvidia" / GI
        assert top.read_text().startswith("DeviceFileMinor: 21\n")
        with pytest.raises(OSError) as raised:
            os.open(top, os.O_WRONLY)
        assert raised.value.errno == errno.EROFS

    in_child(body)
