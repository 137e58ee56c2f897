"""The container's /proc/driver/nvidia: a read-only tmpfs with ModifyDeviceFiles: 0 and the
GPUs' entries bound from the host, made in a private mount namespace of a forked child (the
mounts die with it) and never through an image symlink onto the host."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
from private_mounts import in_child

from gpu_core.errors import ShimError
from spec_hook import proc_driver, rootfs

BUS = "0000:07:00.0"


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    """A host /proc/driver/nvidia as the driver's procfs spells it (4-digit domain)."""
    host = tmp_path / "host-proc-driver-nvidia"
    (host / "gpus" / BUS).mkdir(parents=True)
    (host / "gpus" / BUS / "information").write_text("Model: \t\t Simulated\n")
    (host / "gpus" / "0000:08:00.0").mkdir()
    (host / "params").write_text("EnableMSI: 1\nModifyDeviceFiles: 1\nDeviceFileUID: 0\n")
    (host / "version").write_text("NVRM version: 535.104.05\n")
    (host / "registry").write_text("Binary: \"\"\n")
    return host


def test_busid_forms_cover_both_domain_widths_and_lower_case() -> None:
    assert proc_driver.busid_forms("00000000:3B:00.0") == [
        "00000000:3B:00.0", "0000:3B:00.0", "00000000:3b:00.0", "0000:3b:00.0"]


def test_busid_forms_of_a_four_digit_domain_try_eight_too() -> None:
    assert proc_driver.busid_forms("0000:07:00.0") == ["0000:07:00.0", "00000000:07:00.0"]


@pytest.mark.parametrize("busid", ["../../etc", "0000:07:00.0/..", "07:00.0", "0000:07:00.8",
                                   "000:07:00.0", "0000:07:00.0\n", ""])
def test_a_malformed_busid_is_a_value_error(busid: str) -> None:
    with pytest.raises(ValueError, match="not a PCI bus id"):
        proc_driver.busid_forms(busid)


def test_params_get_modify_device_files_zero() -> None:
    assert proc_driver.disable_modification(b"A: 1\nModifyDeviceFiles: 1\nB: 2\n") == \
        b"A: 1\nModifyDeviceFiles: 0\nB: 2\n"


def test_params_without_the_line_get_it_added() -> None:
    assert proc_driver.disable_modification(b"A: 1") == b"A: 1\nModifyDeviceFiles: 0\n"


def test_missing_params_become_the_line_alone() -> None:
    assert proc_driver.disable_modification(None) == b"ModifyDeviceFiles: 0\n"


def test_read_host_finds_the_gpu_by_nvmls_eight_digit_form(host_dir: Path) -> None:
    host = proc_driver.read_host(str(host_dir), ["00000000:07:00.0"])
    assert host.gpus == [BUS]
    assert host.files["params"] == b"EnableMSI: 1\nModifyDeviceFiles: 0\nDeviceFileUID: 0\n"


def test_read_host_skips_a_gpu_without_an_entry(host_dir: Path) -> None:
    assert proc_driver.read_host(str(host_dir), ["0000:09:00.0"]).gpus == []


def install_in(image: Path, host_dir: Path, busids: list[str]) -> None:
    host = proc_driver.read_host(str(host_dir), busids)
    root = rootfs.open_root(str(image))
    try:
        proc_driver.install(root, host)
    finally:
        os.close(root)


def test_the_tmpfs_holds_the_seed_files_and_only_the_containers_gpu(
        tmp_path: Path, host_dir: Path) -> None:
    image = tmp_path / "rootfs"
    (image / "proc").mkdir(parents=True)

    def body() -> None:
        install_in(image, host_dir, ["00000000:07:00.0"])
        top = image / "proc" / "driver" / "nvidia"
        assert sorted(os.listdir(top)) == ["gpus", "params", "registry", "version"]
        assert os.listdir(top / "gpus") == [BUS]
        assert (top / "params").read_text().splitlines()[1] == "ModifyDeviceFiles: 0"
        assert (top / "gpus" / BUS / "information").read_text() == "Model: \t\t Simulated\n"

    in_child(body)
    assert os.listdir(image / "proc" / "driver" / "nvidia") == []  # gone with the namespace


def test_the_tmpfs_and_the_gpu_binds_are_read_only(tmp_path: Path, host_dir: Path) -> None:
    image = tmp_path / "rootfs"
    (image / "proc").mkdir(parents=True)

    def body() -> None:
        install_in(image, host_dir, [BUS])
        top = image / "proc" / "driver" / "nvidia"
        for target in (top / "params", top / "gpus" / BUS / "information", top / "new"):
            with pytest.raises(OSError) as raised:
                os.open(target, os.O_WRONLY | os.O_CREAT)
            assert raised.value.errno == errno.EROFS
        options = {line.split()[4]: line.split()[5] for line in
                   Path("/proc/self/mountinfo").read_text().splitlines()}
        for mount in (str(top), str(top / "gpus" / BUS)):
            assert {"ro", "nosuid", "nodev", "noexec"} <= set(options[mount].split(","))

    in_child(body)
    assert (host_dir / "params").read_text().splitlines()[1] == "ModifyDeviceFiles: 1"


def test_a_procfs_without_the_driver_is_covered_at_proc_driver(
        tmp_path: Path, host_dir: Path) -> None:
    """The container's /proc is a real procfs (as runc mounts it) and has no nvidia/."""
    image = tmp_path / "rootfs"
    (image / "proc").mkdir(parents=True)

    def body() -> None:
        subprocess.run(["mount", "-t", "proc", "proc", str(image / "proc")], check=True)
        assert not (image / "proc" / "driver" / "nvidia").exists()
        install_in(image, host_dir, [BUS])
        assert os.listdir(image / "proc" / "driver") == ["nvidia"]
        assert (image / "proc" / "driver" / "nvidia" / "version").read_text() == \
            "NVRM version: 535.104.05\n"

    in_child(body)


def test_an_image_proc_symlinked_to_a_host_directory_mounts_nothing_on_the_host(
        tmp_path: Path, host_dir: Path) -> None:
    image = tmp_path / "rootfs"
    image.mkdir()
    outside = tmp_path / "outside"
    (outside / "driver" / "nvidia").mkdir(parents=True)
    (image / "proc").symlink_to(outside)

    def body() -> None:
        with pytest.raises(ShimError, match="proc driver: /proc/driver/nvidia: File exists"):
            install_in(image, host_dir, [BUS])  # the root lacks the link's target: refused
        assert os.listdir(outside / "driver" / "nvidia") == []

    in_child(body)
    assert os.listdir(outside / "driver" / "nvidia") == []


def test_an_image_proc_symlinked_to_etc_mounts_under_the_roots_etc(
        tmp_path: Path, host_dir: Path) -> None:
    image = tmp_path / "rootfs"
    (image / "etc").mkdir(parents=True)
    (image / "proc").symlink_to("/etc")

    def body() -> None:
        install_in(image, host_dir, [BUS])
        assert (image / "etc" / "driver" / "nvidia" / "params").exists()
        assert not os.path.lexists("/etc/driver/nvidia/params")

    in_child(body)
