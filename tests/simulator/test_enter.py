"""``gpu-ctk simulate run``: commands inside a simulated host see it at the real paths, and the
real host does not change. Needs root (a private mount namespace)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulator.testing import SimHost

CTK = [sys.executable, "-m", "ctk.main"]
REPO = Path(__file__).resolve().parents[2]


def inside(host: SimHost, script: str, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items()
                   if key != "GPU_CONTAINER_SHIM_CONFIG"}
    environment.update(env or {})
    return subprocess.run([*CTK, "simulate", "run", "--host", str(host.dir), "--",
                           "sh", "-c", script], capture_output=True, text=True, cwd=REPO,
                          env=environment, timeout=120, check=False)


def mount_table() -> str:
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        return "".join(sorted(line.split(" ", 4)[4] for line in table))


def test_nvidia_smi_at_its_real_path_lists_the_topology(sim_host_factory: Any) -> None:
    host = sim_host_factory("dgx-a100")
    result = inside(host, "command -v nvidia-smi; nvidia-smi -L")
    lines = result.stdout.splitlines()
    assert (lines[0], len(lines) - 1) == ("/usr/bin/nvidia-smi", len(host.topology["gpus"])), \
        result.stderr


def test_device_nodes_appear_under_dev_with_the_real_ones(sim_host_factory: Any) -> None:
    host = sim_host_factory("dgx-a100-mig")
    result = inside(host, "stat -c '%n %t:%T' /dev/nvidia2 /dev/nvidiactl /dev/null "
                          "/dev/nvidia-caps/nvidia-cap1")
    assert result.stdout.split("\n")[:4] == ["/dev/nvidia2 c3:2", "/dev/nvidiactl c3:ff",
                                             "/dev/null 1:3", "/dev/nvidia-caps/nvidia-cap1 1fd:1"
                                             ], result.stderr


def test_mig_minors_at_the_fixed_proc_path(sim_host_factory: Any) -> None:
    host = sim_host_factory("dgx-a100-mig")
    result = inside(host, "cat /proc/driver/nvidia-caps/mig-minors")
    assert result.stdout == (host.dir / "proc/driver/nvidia-caps/mig-minors").read_text(), \
        result.stderr


def test_the_view_shows_the_driver_proc_files_but_not_its_params(sim_host_factory: Any) -> None:
    host = sim_host_factory("dgx-a100-mig")
    assert (host.dir / "proc/driver/nvidia/params").is_file()
    result = inside(host, "ls /proc/driver/nvidia; cat /proc/driver/nvidia/version")
    listed = result.stdout.split("\n")
    assert "params" not in listed and "version" in listed and "gpus" in listed, result.stderr
    assert (host.dir / "proc/driver/nvidia/version").read_text() in result.stdout


def test_proc_devices_lists_the_real_and_the_simulated_majors(sim_host_factory: Any) -> None:
    host = sim_host_factory("t4")
    result = inside(host, "cat /proc/devices")
    assert ("195 nvidia-frontend" in result.stdout, " mem" in result.stdout) == (True, True)


def test_gpu_pci_function_appears_in_sysfs(sim_host_factory: Any) -> None:
    host = sim_host_factory("dgx-a100")
    bus = host.topology["gpus"][1]["bus_id"][4:].lower()
    result = inside(host, f"cat /sys/bus/pci/devices/{bus}/vendor /sys/module/nvidia/version")
    assert result.stdout.split() == ["0x10de", host.topology["driver_version"]], result.stderr


def test_nvml_loads_by_soname_from_the_ld_cache(sim_host_factory: Any) -> None:
    """dlopen("libnvidia-ml.so.1") with no path finds the simulated NVML."""
    host = sim_host_factory("dgx-a100")
    code = ("import ctypes; lib = ctypes.CDLL('libnvidia-ml.so.1'); n = ctypes.c_uint(); "
            "lib.nvmlInit_v2(); lib.nvmlDeviceGetCount_v2(ctypes.byref(n)); print(n.value)")
    result = inside(host, f'{sys.executable} -c "{code}"')
    assert result.stdout.strip() == str(len(host.topology["gpus"])), result.stderr


def test_our_own_commands_need_no_config_file(sim_host_factory: Any) -> None:
    """gpu-ctk cdi with no GPU_CONTAINER_SHIM_CONFIG: the defaults (/dev, /, /sys) are the
    simulated host."""
    host = sim_host_factory("dgx-a100")
    result = inside(host, f"{sys.executable} -m ctk.main cdi generate --format json")
    assert host.topology["gpus"][5]["uuid"] in result.stdout, result.stderr


def test_real_host_is_unchanged(sim_host_factory: Any) -> None:
    host = sim_host_factory("dgx-a100-mig")
    cache = hashlib.sha256(Path("/etc/ld.so.cache").read_bytes()).hexdigest()
    before = (mount_table(), sorted(os.listdir("/dev")), os.listdir("/proc/driver"))
    result = inside(host, "touch /usr/lib/x86_64-linux-gnu/scratch-file && ls /dev/nvidia0")
    after = (mount_table(), sorted(os.listdir("/dev")), os.listdir("/proc/driver"))
    assert result.returncode == 0, result.stderr
    assert (after, os.path.exists("/usr/lib/x86_64-linux-gnu/scratch-file")) == (before, False)
    assert hashlib.sha256(Path("/etc/ld.so.cache").read_bytes()).hexdigest() == cache


def test_exit_status_of_the_command_is_returned(sim_host_factory: Any) -> None:
    host = sim_host_factory("t4")
    assert inside(host, "exit 7").returncode == 7


def test_directory_without_a_host_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run([*CTK, "simulate", "run", "--host", str(tmp_path), "--", "true"],
                            capture_output=True, text=True, cwd=REPO, check=False)
    assert (result.returncode, len(result.stderr.splitlines())) == (1, 1)
    assert "holds no simulated host" in result.stderr


@pytest.mark.parametrize(("words", "expected"), [
    (["--", "nvidia-smi", "-L"], ["nvidia-smi", "-L"]),
    (["env"], ["env"]),
])
def test_command_words_after_the_separator(words: list[str], expected: list[str]) -> None:
    from ctk.simulate_run import command_of

    assert command_of(words) == expected


def test_no_command_runs_the_users_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    from ctk.simulate_run import command_of

    monkeypatch.setenv("SHELL", "/bin/bash")
    assert command_of(["--"]) == ["/bin/bash"]
