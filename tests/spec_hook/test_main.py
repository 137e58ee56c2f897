"""The command: argv and state checked up front with one error line and exit 1; the whole run
on a small rootfs; the compat directory's listing taken inside the rootfs; and an import
budget that keeps NVML, YAML, jsonschema and cffi off the hook's start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from elf_libs import build_shared_library, cache_entries

from spec_hook import main, rootfs

HOOK = str(Path(sys.executable).parent / "gpu-container-spec-hook")
LIB = "/usr/lib/x86_64-linux-gnu"


def run_hook(args: list[str], state: bytes = b"", private: bool = True) -> \
        subprocess.CompletedProcess[str]:
    command = ["unshare", "-m", "--propagation", "private", HOOK, *args] if private \
        else [HOOK, *args]
    return subprocess.run(command, input=state.decode(), capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.fixture(scope="module")
def libcuda(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shared_library(tmp_path_factory.mktemp("libs") / "libcuda.so.535.104.05",
                                "libcuda.so.1")


@pytest.fixture
def bundle(tmp_path: Path, libcuda: Path) -> Path:
    """A bundle whose rootfs has the driver's libcuda where the shim would bind it."""
    path = tmp_path / "bundle"
    for sub in ("rootfs/etc", "rootfs/proc", "rootfs" + LIB):
        (path / sub).mkdir(parents=True)
    shutil.copy2(libcuda, path / ("rootfs" + LIB) / libcuda.name)
    (path / "config.json").write_text(json.dumps({"ociVersion": "1.0.2",
                                                  "root": {"path": "rootfs"}}))
    return path


def state_of(bundle: Path, pid: int = 0) -> bytes:
    return json.dumps({"ociVersion": "1.0.2", "id": "c1", "status": "creating",
                       "bundle": str(bundle), "pid": pid}).encode()


@pytest.mark.parametrize(("args", "message"), [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--link", "no-separator"], "expected TARGET::LINK"),
    (["--link", "t::relative"], "is not an absolute path naming an entry"),
    (["--folder", "usr/lib"], "--folder 'usr/lib': expected an absolute path"),
    (["--cuda-compat-dir", "compat"], "--cuda-compat-dir 'compat': expected an absolute path"),
    (["--driver-version", "latest"], "is not a driver version"),
    (["--proc-driver", "/x", "--gpu", "../../etc"], "is not a PCI bus id"),
    (["--gpu", "0000:07:00.0"], "--gpu needs --proc-driver"),
    (["--proc-file", "capabilities/mig/config"], "--proc-file needs --proc-driver"),
    (["--proc-driver", "/x", "--proc-file", "capabilities/../params"],
     "--proc-file 'capabilities/../params': expected a path under capabilities/"),
    (["--proc-driver", "/x", "--proc-file=params"],
     "--proc-file 'params': expected a path under capabilities/"),
    (["--proc-driver", "/x", "--proc-file", "capabilities/mig//config"],
     "expected a path under capabilities/"),
    (["--proc-driver", "/x", "--proc-file", "capabilities/" + "x" * 300],
     "expected a path under capabilities/"),
    (["--proc-driver", "/x", "--proc-file"], "argument --proc-file: expected one argument"),
    (["--timeout", "0"], "argument --timeout: invalid timeout value: '0'"),
    (["--timeout", "nan"], "argument --timeout: invalid timeout value: 'nan'"),
    (["--fold", "/usr/lib"], "unrecognized arguments: --fold"),
])
def test_a_bad_argv_is_one_line_and_exit_1(args: list[str], message: str) -> None:
    result = run_hook(args, private=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        "gpu-container-spec-hook: ")
    assert message in result.stderr


@pytest.mark.parametrize(("state", "message"), [
    (b"", "state: invalid JSON"),
    (b"[]", "state: expected a JSON object"),
    (b'{"bundle": "relative"}', "state: bundle: expected an absolute path"),
    (b'{"bundle": "/b", "pid": -1}', "state: pid: expected an integer"),
    (b'{"bundle": "/b", "pid": true}', "state: pid: expected an integer"),
    (b'{"bundle": "/b", "bundle": "/c"}', "duplicate key 'bundle'"),
    (b'{"bundle": "/nonexistent-bundle"}', "config.json: /nonexistent-bundle/config.json"),
])
def test_a_bad_state_is_one_line_and_exit_1(state: bytes, message: str) -> None:
    result = run_hook([], state, private=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_a_dynamic_ldconfig_is_refused_with_one_line(bundle: Path) -> None:
    result = run_hook(["--folder", LIB, "--ldconfig", "/bin/ls"], state_of(bundle))
    assert result.returncode == 1
    assert result.stderr == ("gpu-container-spec-hook: ldconfig: /bin/ls: a dynamic executable "
                             "(PT_INTERP); the host ldconfig must be static\n")
    assert not (bundle / "rootfs" / "etc" / "ld.so.cache").exists()


def test_a_run_makes_the_link_and_a_cache_naming_libcuda_so_1(bundle: Path) -> None:
    result = run_hook(["--folder", LIB, "--link", f"libcuda.so.1::{LIB}/libcuda.so",
                       "--driver-version", "535.104.05"], state_of(bundle))
    assert (result.returncode, result.stderr) == (0, "")
    root = bundle / "rootfs"
    assert f"{LIB}/libcuda.so.1" in cache_entries(root / "etc" / "ld.so.cache")
    assert os.readlink(root / LIB.lstrip("/") / "libcuda.so") == "libcuda.so.1"


def test_a_newer_compat_libcuda_goes_first_in_the_cache(bundle: Path, libcuda: Path) -> None:
    compat = bundle / "rootfs" / "usr" / "local" / "cuda" / "compat"
    compat.mkdir(parents=True)
    shutil.copy2(libcuda, compat / "libcuda.so.550.54.15")
    result = run_hook(["--folder", LIB, "--driver-version", "535.104.05"], state_of(bundle))
    assert result.returncode == 0, result.stderr
    named = [entry for entry in cache_entries(bundle / "rootfs" / "etc" / "ld.so.cache")
             if entry.endswith("/libcuda.so.1")]
    assert named == ["/usr/local/cuda/compat/libcuda.so.1", f"{LIB}/libcuda.so.1"]


def options_with_compat(version: str = "535.104.05") -> main.Options:
    return main.parse_argv(["--driver-version", version])


def test_a_compat_libcuda_symlinked_outside_the_root_is_not_chosen(
        bundle: Path, libcuda: Path, tmp_path: Path) -> None:
    compat = bundle / "rootfs" / "usr" / "local" / "cuda" / "compat"
    compat.mkdir(parents=True)
    outside = tmp_path / "libcuda.so.999.1"
    shutil.copy2(libcuda, outside)
    (compat / "libcuda.so.999.1").symlink_to(outside)
    root = rootfs.open_root(str(bundle / "rootfs"))
    try:
        assert main._compat(root, options_with_compat()) == []
    finally:
        os.close(root)


def test_a_compat_dir_symlinked_outside_the_root_is_listed_inside_it(
        bundle: Path, libcuda: Path, tmp_path: Path) -> None:
    outside = tmp_path / "host-compat"
    outside.mkdir()
    shutil.copy2(libcuda, outside / "libcuda.so.999.1")
    (bundle / "rootfs" / "usr" / "local" / "cuda").mkdir(parents=True)
    (bundle / "rootfs" / "usr" / "local" / "cuda" / "compat").symlink_to(outside)
    root = rootfs.open_root(str(bundle / "rootfs"))
    try:
        assert main._compat(root, options_with_compat()) == []
    finally:
        os.close(root)


def test_the_start_imports_no_nvml_yaml_jsonschema_or_cffi(bundle: Path, tmp_path: Path) -> None:
    """The whole run (state, config.json, links, ldconfig, /proc/driver) in a subprocess, then
    the modules it loaded."""
    host = tmp_path / "host-proc"
    (host / "gpus" / "0000:07:00.0").mkdir(parents=True)
    (host / "capabilities" / "mig").mkdir(parents=True)
    (host / "capabilities" / "mig" / "config").write_text("DeviceFileMinor: 1\n")
    argv = ["--folder", LIB, "--link", f"a::{LIB}/b", "--driver-version", "535.1",
            "--proc-driver", str(host), "--gpu", "0000:07:00.0",
            "--proc-file", "capabilities/mig/config"]
    script = ("import sys; from spec_hook import main\n"
              f"code = main.main({argv!r})\n"
              "print(' '.join(sorted(sys.modules))); sys.exit(code)\n")
    result = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                             "-c", script], input=state_of(bundle).decode(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert {"spec_hook.ldconfig", "spec_hook.proc_driver", "spec_hook.proc_files"} <= \
        set(loaded)
    heavy = [name for name in loaded if name.split(".")[0] in
             ("yaml", "jsonschema", "cffi", "_cffi_backend", "pynvml", "hook", "runtime_shim")
             or name.startswith("gpu_core.nvml")]
    assert heavy == []


def test_the_start_loads_no_dataclasses_inspect_or_ast(
        bundle: Path, tmp_path: Path) -> None:
    """Run as the installed hook runs (``-I -S``): its records are NamedTuples with real
    annotations (tests/test_records.py), so neither dataclasses, inspect nor ast is loaded."""
    host = tmp_path / "host-proc"
    (host / "gpus" / "0000:07:00.0").mkdir(parents=True)
    argv = ["--folder", LIB, "--link", f"a::{LIB}/b", "--driver-version", "535.1",
            "--proc-driver", str(host), "--gpu", "0000:07:00.0"]
    script = (f"import sys; sys.path[:0] = {sys.path!r}; from spec_hook import main\n"
              f"code = main.main({argv!r})\n"
              "print(' '.join(sorted(sys.modules))); sys.exit(code)\n")
    result = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                             "-I", "-S", "-c", script], input=state_of(bundle).decode(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert "spec_hook.proc_driver" in loaded
    assert loaded & {"dataclasses", "inspect", "ast"} == set()


def test_a_run_binds_each_proc_file_into_the_containers_proc_driver(
        bundle: Path, tmp_path: Path) -> None:
    """The whole command in a private namespace, then the container's view read back there."""
    host = tmp_path / "host-proc"
    gi = host / "capabilities" / "gpu0" / "mig" / "gi1"
    (gi / "ci0").mkdir(parents=True)
    (gi / "access").write_text("DeviceFileMinor: 21\n")
    (gi / "ci0" / "access").write_text("DeviceFileMinor: 22\n")
    argv = ["--proc-driver", str(host), "--proc-file", "capabilities/gpu0/mig/gi1/access",
            "--proc-file=capabilities/gpu0/mig/gi1/ci0/access"]
    top = bundle / "rootfs" / "proc" / "driver" / "nvidia" / "capabilities" / "gpu0" / "mig"
    script = ("import sys; from spec_hook import main\n"
              f"code = main.main({argv!r})\n"
              f"print(open({str(top / 'gi1' / 'access')!r}).read(), end='')\n"
              f"print(open({str(top / 'gi1' / 'ci0' / 'access')!r}).read(), end='')\n"
              "sys.exit(code)\n")
    result = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                             "-c", script], input=state_of(bundle).decode(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "DeviceFileMinor: 21\nDeviceFileMinor: 22\n"


def test_a_missing_host_proc_file_is_one_line_and_leaves_the_root_alone(
        bundle: Path, tmp_path: Path) -> None:
    host = tmp_path / "host-proc"
    host.mkdir()
    result = run_hook(["--proc-driver", str(host), "--proc-file", "capabilities/mig/monitor"],
                      state_of(bundle))
    assert result.returncode == 1
    assert result.stderr == (f"gpu-container-spec-hook: proc driver: {host}/capabilities/mig/"
                             "monitor: No such file or directory\n")
    assert os.listdir(bundle / "rootfs" / "proc") == []


def test_a_state_that_never_ends_is_cut_at_the_timeout_in_one_line() -> None:
    """stdin left open by the caller: the backstop alarm ends the hook, one line, exit 1."""
    process = subprocess.Popen([HOOK, "--timeout", "0.5"], stdin=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdin is not None and process.stderr is not None
    try:
        stderr = process.stderr.read()  # EOF only when the hook exits; stdin stays open
        process.wait(timeout=60)
    finally:
        process.stdin.close()
    assert process.returncode == 1
    assert stderr == ("gpu-container-spec-hook: timeout: the hook did not finish within its "
                      "--timeout\n")
