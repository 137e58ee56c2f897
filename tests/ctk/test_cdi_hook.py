"""The spec hook entry of a generated CDI spec: its arguments and where its settings come from."""

from __future__ import annotations

import pytest

from ctk import cdi_hook
from gpu_core.driver_files import FileMount

LIBS = "/usr/lib/x86_64-linux-gnu"
FILES = (
    FileMount("/usr/bin/nvidia-smi", "/usr/bin/nvidia-smi", "bin"),
    FileMount(f"{LIBS}/libcuda.so.535.104.05", f"{LIBS}/libcuda.so.535.104.05", "lib"),
    FileMount(f"{LIBS}/libnvidia-ml.so.535.104.05", f"{LIBS}/libnvidia-ml.so.535.104.05", "lib"),
    FileMount("/usr/lib/i386-linux-gnu/libcuda.so.535.104.05",
              "/usr/lib/i386-linux-gnu/libcuda.so.535.104.05", "lib32"),
    FileMount("/run/nvidia-persistenced/socket", "/run/nvidia-persistenced/socket", "ipc"),
)


def edit(files: tuple[FileMount, ...] = FILES, ldconfig: str = "") -> dict[str, object]:
    return cdi_hook.hook_edit(files, hook_path="/usr/bin/gpu-container-spec-hook",
                              driver_version="535.104.05", proc_driver="/proc/driver/nvidia",
                              ldconfig=ldconfig)


def test_entry_is_a_create_container_hook_with_only_an_explicit_path() -> None:
    """hookName createContainer, argv[0] the hook's name, PATH as the whole environment."""
    hook = edit()
    assert hook["hookName"] == "createContainer"
    assert hook["path"] == "/usr/bin/gpu-container-spec-hook"
    assert hook["env"] == ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]


def test_folders_and_links_come_from_the_mounted_libraries_only() -> None:
    """One --folder per library directory, in mount order (binaries and sockets add none), a
    --link per compatibility link, then the driver version and /proc/driver/nvidia."""
    assert edit()["args"] == [
        "gpu-container-spec-hook",
        "--folder", LIBS, "--folder", "/usr/lib/i386-linux-gnu",
        "--link", f"libcuda.so.1::{LIBS}/libcuda.so",
        "--link", "libcuda.so.1::/usr/lib/i386-linux-gnu/libcuda.so",
        "--driver-version", "535.104.05", "--proc-driver", "/proc/driver/nvidia"]


def test_no_libraries_means_no_folder_and_no_link() -> None:
    """Binaries alone: the hook still gets the driver version and /proc/driver/nvidia."""
    assert edit(FILES[:1])["args"] == ["gpu-container-spec-hook", "--driver-version",
                                       "535.104.05", "--proc-driver", "/proc/driver/nvidia"]


@pytest.mark.parametrize(("ldconfig", "passed"), [
    ("", []), ("/sbin/ldconfig", []),
    ("/usr/sbin/ldconfig.real", ["--ldconfig", "/usr/sbin/ldconfig.real"]),
])
def test_configured_ldconfig_is_passed_only_when_not_the_default(ldconfig: str,
                                                                 passed: list[str]) -> None:
    """spec.ldconfig reaches the hook only where it is not the hook's own default."""
    args = edit(ldconfig=ldconfig)["args"]
    assert isinstance(args, list)
    assert args[args.index("/proc/driver/nvidia") + 1:] == passed
