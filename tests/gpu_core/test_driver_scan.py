"""The host driver's files read without libnvidia-container (gpu_core/driver_scan.py): the same
lists the (simulated) library's ``nvc_driver_info_new`` reports, from plain ``stat``s."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest

from gpu_core import driver_scan

if TYPE_CHECKING:
    from simulator.testing import SimHost

VERSION = "535.104.05"


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_scan_equals_the_libraries_driver_info_on_the_simulated_host(
        sim_host_factory: Callable[..., SimHost], monkeypatch: pytest.MonkeyPatch) -> None:
    """Beside the simulated host's own tree: 32-bit libraries, GSP firmware (and a file that is
    not firmware), the persistenced socket and the MPS directory, which the library reports."""
    from ctk.cdi import driver_info
    from gpu_core import config as config_mod

    host = sim_host_factory("dgx-a100-mig")
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(host.config_path))
    config = config_mod.load()
    root = Path(config.host.driver_root)
    version = _version(root)
    for name in ("libcuda.so", "libnvidia-ml.so"):
        touch(root / f"usr/lib/i386-linux-gnu/{name}.{version}")
    for name in ("gsp_ga10x.bin", "gsp_tu10x.bin", "README"):
        touch(root / f"lib/firmware/nvidia/{version}/{name}")
    (root / "var/run/nvidia-persistenced").mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(root / "var/run/nvidia-persistenced/socket"))
        (root / "tmp/nvidia-mps").mkdir(parents=True)
        expected = driver_info(config)
        found = driver_scan.scan(str(root), expected.nvrm_version)
    assert found == driver_scan.HostDriver(
        nvrm_version=expected.nvrm_version, bins=expected.bins, libs=expected.libs,
        libs32=expected.libs32, ipcs=expected.ipcs, firmwares=expected.firmwares)
    assert len(found.firmwares) == 2 and len(found.ipcs) == 2 and len(found.libs32) == 2


def _version(root: Path) -> str:
    names = os.listdir(root / "usr/lib/x86_64-linux-gnu")
    return next(n[len("libcuda.so."):] for n in names
                if n.startswith("libcuda.so.") and n.count(".") > 3)


def test_a_library_outside_the_multiarch_directory_is_found(tmp_path: Path) -> None:
    lib = touch(tmp_path / f"usr/lib64/libcuda.so.{VERSION}")
    assert driver_scan.scan(str(tmp_path), VERSION).libs == (str(lib),)


def test_the_first_directory_holding_a_library_wins(tmp_path: Path) -> None:
    first = touch(tmp_path / f"usr/lib/x86_64-linux-gnu/libcuda.so.{VERSION}")
    touch(tmp_path / f"lib64/libcuda.so.{VERSION}")
    assert driver_scan.scan(str(tmp_path), VERSION).libs == (str(first),)


def test_libraries_come_in_the_tables_order(tmp_path: Path) -> None:
    cuda = touch(tmp_path / f"usr/lib/x86_64-linux-gnu/libcuda.so.{VERSION}")
    ml = touch(tmp_path / f"usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{VERSION}")
    assert driver_scan.scan(str(tmp_path), VERSION).libs == (str(ml), str(cuda))


def test_a_symlink_or_another_version_is_no_library(tmp_path: Path) -> None:
    lib = tmp_path / "usr/lib/x86_64-linux-gnu"
    touch(lib / "libcuda.so.1.2.3")
    os.symlink("libcuda.so.1.2.3", lib / f"libcuda.so.{VERSION}")
    assert driver_scan.scan(str(tmp_path), VERSION).libs == ()


def test_32_bit_libraries_come_from_the_32_bit_directories(tmp_path: Path) -> None:
    lib32 = touch(tmp_path / f"usr/lib32/libcuda.so.{VERSION}")
    found = driver_scan.scan(str(tmp_path), VERSION)
    assert (found.libs, found.libs32) == ((), (str(lib32),))


def test_binaries_are_found_on_the_standard_path_directories(tmp_path: Path) -> None:
    smi = touch(tmp_path / "usr/local/bin/nvidia-smi")
    mps = touch(tmp_path / "bin/nvidia-cuda-mps-control")
    touch(tmp_path / "opt/bin/nvidia-debugdump")
    assert driver_scan.scan(str(tmp_path), VERSION).bins == (str(smi), str(mps))


def test_only_gsp_bin_files_of_this_version_are_firmware(tmp_path: Path) -> None:
    gsp = touch(tmp_path / f"lib/firmware/nvidia/{VERSION}/gsp_ga10x.bin")
    touch(tmp_path / f"lib/firmware/nvidia/{VERSION}/gsp.txt")
    touch(tmp_path / "lib/firmware/nvidia/1.0/gsp_tu10x.bin")
    assert driver_scan.scan(str(tmp_path), VERSION).firmwares == (str(gsp),)


def test_only_ipc_paths_that_exist_are_listed(tmp_path: Path) -> None:
    fabric = touch(tmp_path / "var/run/nvidia-fabricmanager/socket")
    assert driver_scan.scan(str(tmp_path), VERSION).ipcs == (str(fabric),)


@pytest.mark.parametrize("version", ["", "..", "1/../../etc"])
def test_a_version_that_is_no_file_name_finds_nothing(tmp_path: Path, version: str) -> None:
    touch(tmp_path / "usr/bin/nvidia-smi")
    assert driver_scan.scan(str(tmp_path), version) == \
        driver_scan.HostDriver(version, (), (), (), (), ())


def test_the_root_driver_root_adds_no_prefix() -> None:
    assert driver_scan.proc_driver("/") == "/proc/driver/nvidia"
    assert driver_scan.proc_driver("/sim/driver/") == "/sim/driver/proc/driver/nvidia"


@pytest.mark.parametrize("entry", ["00000000:07:00.0", "0000:07:00.0", "0000:0a:00.0"])
def test_the_proc_entry_of_a_gpu_is_found_in_any_of_its_spellings(tmp_path: Path,
                                                                     entry: str) -> None:
    (tmp_path / "gpus" / entry).mkdir(parents=True)
    bus_id = "00000000:" + entry.upper().split(":", 1)[1]
    assert driver_scan.proc_gpu_name(str(tmp_path), bus_id) == entry


def test_a_gpu_without_a_proc_entry_has_no_name(tmp_path: Path) -> None:
    (tmp_path / "gpus").mkdir()
    assert driver_scan.proc_gpu_name(str(tmp_path), "00000000:07:00.0") == ""
