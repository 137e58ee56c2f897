"""``gpu-container-hook``: stages, the fast path, one-line errors, the log, the CLI fallback."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import yaml
from nvml_probe import COUNT_INITS
from pytest_subprocess import FakeProcess

from hook import main as hook_main

Hook = Callable[..., "tuple[int, str]"]


def state(bundle: Path, pid: Optional[int] = None, container_id: str = "ctr-1") -> bytes:
    return json.dumps({"ociVersion": "1.2.1", "id": container_id, "status": "creating",
                       "pid": pid or os.getpid(), "bundle": str(bundle)}).encode()


def make_bundle(root: Path, env: tuple[str, ...] = ()) -> Path:
    """A bundle whose config.json asks for ``env`` (rootfs need not exist before mounting)."""
    bundle = root / "bundle"
    bundle.mkdir(exist_ok=True)
    (bundle / "rootfs").mkdir(exist_ok=True)
    spec = {"ociVersion": "1.2.1", "root": {"path": "rootfs"},
            "process": {"args": ["/bin/true"], "cwd": "/", "env": ["PATH=/bin", *env]}}
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


@pytest.fixture(autouse=True)
def no_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs must never load libnvidia-container: the container pid they pass is the
    test runner's own, so a library that loaded (one loaded earlier in this process answers to
    its soname) would mount into the runner's mount namespace. The e2e tests mount for real."""
    import libnvc_bindings

    def refuse(configured: str = "", names: object = ()) -> None:
        raise libnvc_bindings.NvcLoadError([libnvc_bindings.LoadAttempt(
            configured or "libnvidia-container.so.1", "not loaded by unit tests")])

    monkeypatch.setattr(libnvc_bindings, "load", refuse)


@pytest.fixture(autouse=True)
def any_pid_is_a_container(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's own pid stands in for the container's here; hook.container_pid, which
    refuses it, is tested in tests/hook/test_container_pid.py and tests/badinput."""
    monkeypatch.setattr("hook.container_pid.check_container_pid", lambda pid, proc="/proc": None)


@pytest.fixture(autouse=True)
def rootfs_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """No runtime mounted these rootfs: pin the directory the path names. The identity checks
    are tested in tests/hook/test_rootfs_identity.py and tests/adversarial."""
    from hook.rootfs_identity import Pinned

    def pin(rootfs: str, pid: int, proc: str = "/proc") -> Pinned:
        return Pinned(rootfs, os.open(rootfs, os.O_PATH | os.O_CLOEXEC))

    monkeypatch.setattr("hook.rootfs_identity.pin", pin)


@pytest.fixture(autouse=True)
def work_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The library work runs in this process, so the fakes it calls are the test's; the forked,
    bounded child is tested in tests/hook/test_bounded_child.py and tests/faults."""
    from hook.bounded_child import Channel

    class Inline(Channel):
        def __init__(self, log: Callable[[str], None]) -> None:
            super().__init__(-1)
            self.logged = log

        def send(self, kind: str, value: Any) -> None:
            if kind == "log":
                self.logged(str(value))

    def run_bounded(work: Callable[[Channel], Any], timeout: float, *,
                    log: Callable[[str], None], what: str,
                    clock: Callable[[], float] = time.monotonic) -> tuple[dict[str, str], int]:
        return dict(work(Inline(log))), 0

    monkeypatch.setattr("hook.bounded_child.run_bounded", run_bounded)


@pytest.fixture
def run_hook(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Hook:
    """Run ``main(args)`` in-process with ``data`` on stdin; return (exit code, stderr)."""
    # The GPU path empties the process environment before loading the library; let it empty
    # a copy, not the test runner's.
    monkeypatch.setattr(os, "environ", dict(os.environ))

    def run(args: list[str], data: bytes = b"") -> tuple[int, str]:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        code = hook_main.main(args)
        return code, capsys.readouterr().err
    return run


@pytest.fixture(scope="module")
def sim_host(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from simulator.testing import build_host

    return build_host("dgx-a100", tmp_path_factory.mktemp("sim") / "host")


@pytest.fixture
def use_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sim_host: Any
               ) -> Callable[..., Path]:
    """Point the hook at the simulated host's config with ``overrides`` merged in; returns
    the log file the hook writes."""
    def use(**overrides: Any) -> Path:
        document = yaml.safe_load(sim_host.config_path.read_text())
        document["libnvidia_container"]["library"] = str(tmp_path / "absent.so")
        log = tmp_path / "hook.log"
        document["log"] = {"file": str(log)}
        for section, values in overrides.items():
            document.setdefault(section, {}).update(values)
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(document))
        monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(path))
        return log
    return use


class TestStages:
    @pytest.mark.parametrize(("args", "message"), [
        ([], "expected one argument, the hook stage (prestart, createRuntime, poststart, "
             "poststop); got 0"),
        (["prestart", "extra"], "expected one argument, the hook stage (prestart, "
                                "createRuntime, poststart, poststop); got 2"),
        (["prestop"], "unknown stage 'prestop'; expected prestart, createRuntime, poststart, "
                      "poststop"),
    ])
    def test_bad_arguments_are_a_one_line_usage_error(self, run_hook: Hook, args: list[str],
                                                      message: str) -> None:
        """Anything but one known stage exits 2 with one usage line."""
        assert run_hook(args) == (2, f"gpu-container-hook: usage error: {message}\n")

    @pytest.mark.parametrize("stage", ["poststart", "poststop"])
    def test_post_stages_are_no_ops(self, run_hook: Hook, tmp_path: Path, stage: str) -> None:
        """poststart and poststop read the state and succeed silently."""
        assert run_hook([stage], state(tmp_path)) == (0, "")


class TestFastPath:
    def test_non_gpu_container_exits_zero_without_heavy_imports(self, tmp_path: Path) -> None:
        """A container without a GPU request exits 0, writes no log, and never imports
        jsonschema, pynvml or cffi (the shim validated and cached the config before runc
        started the hook, as the first load here does)."""
        bundle = make_bundle(tmp_path)
        config = tmp_path / "config.yaml"
        config.write_text(f"log: {{file: {tmp_path / 'hook.log'}}}\n")
        env = {"PATH": "/usr/bin:/bin", "GPU_CONTAINER_SHIM_CONFIG": str(config)}
        subprocess.run([sys.executable, "-I", "-c", "from gpu_core import config; config.load()"],
                       check=True, env=env)
        probe = ("import sys; from hook.main import main; code = main(['prestart']); "
                 "print(code, sorted(m for m in ('jsonschema', 'pynvml', 'cffi') "
                 "if m in sys.modules))")
        done = subprocess.run([sys.executable, "-I", "-c", probe], input=state(bundle),
                              capture_output=True, check=False, env=env)
        assert (done.stdout.decode(), done.stderr.decode()) == ("0 []\n", "")
        assert not (tmp_path / "hook.log").exists()

    def test_entry_point_runs_isolated(self, tmp_path: Path) -> None:
        """``python -I -m hook prestart`` works for a non-GPU container."""
        done = subprocess.run([sys.executable, "-I", "-m", "hook", "prestart"],
                              input=state(make_bundle(tmp_path)), capture_output=True,
                              check=False, env={"PATH": "/usr/bin:/bin"})
        assert (done.returncode, done.stderr) == (0, b"")


class TestInputErrors:
    def test_invalid_state_is_a_state_error(self, run_hook: Hook) -> None:
        """Garbage on stdin fails with one ``state error`` line."""
        code, err = run_hook(["prestart"], b"{not json")
        assert code == 1
        assert err.startswith("gpu-container-hook: state error: invalid JSON: ")
        assert err.count("\n") == 1

    def test_state_failing_the_schema_is_named(self, run_hook: Hook, tmp_path: Path) -> None:
        """A relative bundle path fails schema validation and the error says where."""
        data = json.dumps({"ociVersion": "1", "id": "x", "status": "creating",
                           "bundle": "relative"}).encode()
        code, err = run_hook(["prestart"], data)
        assert code == 1 and err.startswith("gpu-container-hook: state error: bundle: ")

    def test_missing_config_json_is_named(self, run_hook: Hook, tmp_path: Path) -> None:
        """A bundle without config.json fails with its path."""
        code, err = run_hook(["createRuntime"], state(tmp_path))
        assert (code, err) == (1, f"gpu-container-hook: config.json error: "
                                  f"{tmp_path}/config.json: No such file or directory\n")

    def test_ldconfig_from_the_container_is_refused(self, run_hook: Hook, tmp_path: Path,
                                                    use_config: Callable[..., Path]) -> None:
        """An ldconfig path without ``@`` would run the image's binary as root: refused."""
        use_config(libnvidia_container={"ldconfig": "/sbin/ldconfig"})
        bundle = make_bundle(tmp_path, ("NVIDIA_VISIBLE_DEVICES=0",))
        code, err = run_hook(["prestart"], state(bundle))
        assert code == 1 and err.count("\n") == 1
        assert err.startswith("gpu-container-hook: config error: ")
        assert "libnvidia_container.ldconfig: '/sbin/ldconfig' does not match '^@/'" in err


def log_lines(log: Path, event: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if f" event={event} " in line]


class TestGpuPath:
    def test_unsatisfied_requirement_fails_and_is_logged(
            self, run_hook: Hook, tmp_path: Path, use_config: Callable[..., Path]) -> None:
        """NVIDIA_REQUIRE_CUDA=cuda>=99.0 fails on a CUDA 12 host with the condition named,
        on stderr and in the log."""
        log = use_config()
        bundle = make_bundle(tmp_path, ("NVIDIA_VISIBLE_DEVICES=0",
                                        "NVIDIA_REQUIRE_CUDA=cuda>=99.0"))
        code, err = run_hook(["prestart"], state(bundle))
        line = "gpu-container-hook: requirements error: unsatisfied condition: cuda>=99.0"
        assert (code, err) == (1, line + "\n")
        [logged] = log_lines(log, "error")
        assert "level=error cmd=hook stage=prestart id=ctr-1" in logged
        assert f'msg="{line}"' in logged and " elapsed_ms=" in logged

    def test_disabled_requirements_go_on_to_the_library(
            self, run_hook: Hook, tmp_path: Path, use_config: Callable[..., Path]) -> None:
        """NVIDIA_DISABLE_REQUIRE=true skips the check: the run gets as far as loading the
        library (absent here), after a readiness wait that found GPU 0 ready."""
        log = use_config()
        bundle = make_bundle(tmp_path, ("NVIDIA_VISIBLE_DEVICES=0",
                                        "NVIDIA_REQUIRE_CUDA=cuda>=99.0",
                                        "NVIDIA_DISABLE_REQUIRE=true"))
        code, err = run_hook(["prestart"], state(bundle))
        assert code == 1
        assert err == ("gpu-container-hook: load error: no usable libnvidia-container (tried "
                       f"{tmp_path}/absent.so: not loaded by unit tests)\n")
        [ready] = log_lines(log, "readiness")
        assert "outcome=ready devices=1 polls=1 " in ready

    def test_readiness_waits_for_a_device_still_binding(
            self, run_hook: Hook, tmp_path: Path, use_config: Callable[..., Path],
            sim_host: Any) -> None:
        """nvml-not-ready=2: the third poll finds GPU 0 and the log says what was waited for."""
        sim_host.set_faults("nvml-not-ready=2")
        log = use_config(readiness={"timeout": 5, "interval": 0.01})
        bundle = make_bundle(tmp_path, ("NVIDIA_VISIBLE_DEVICES=0",))
        run_hook(["prestart"], state(bundle))
        [ready] = log_lines(log, "readiness")
        uuid = sim_host.topology["gpus"][0]["uuid"]
        assert "outcome=ready devices=1 polls=3 " in ready
        assert f'waited_for="GPU 0 ({uuid})" discovery_ms=' in ready

    def test_readiness_deadline_names_the_device(
            self, run_hook: Hook, tmp_path: Path, use_config: Callable[..., Path],
            sim_host: Any) -> None:
        """A device that never appears fails at the deadline, named with NVML's answer."""
        sim_host.set_faults("nvml-not-ready=100000")
        log = use_config(readiness={"timeout": 0.2, "interval": 0.05})
        bundle = make_bundle(tmp_path, ("NVIDIA_VISIBLE_DEVICES=1",))
        code, err = run_hook(["prestart"], state(bundle))
        sim_host.set_faults()
        uuid = sim_host.topology["gpus"][1]["uuid"]
        assert code == 1
        assert err.startswith("gpu-container-hook: readiness error: 1 device not ready after ")
        assert err.endswith(f"GPU 1 ({uuid}): nvmlDeviceGetHandleByUUID: Not Found "
                            "(NVML error 6)\n")
        [timeout] = log_lines(log, "readiness")
        assert "level=error" in timeout and "outcome=timeout" in timeout
        assert f'pending="GPU 1 ({uuid})"' in timeout and " discovery_ms=" in timeout

    def test_unexpected_exception_is_still_one_line(
            self, run_hook: Hook, tmp_path: Path, use_config: Callable[..., Path],
            monkeypatch: pytest.MonkeyPatch) -> None:
        """A bug below the hook still ends as one ``internal error`` line, logged."""
        log = use_config()

        def broken(config: object) -> None:
            raise RuntimeError("boom\nsecond line")

        monkeypatch.setattr("gpu_core.discovery.discover_from_config", broken)
        bundle = make_bundle(tmp_path, ("NVIDIA_VISIBLE_DEVICES=0",))
        assert run_hook(["prestart"], state(bundle)) == (
            1, "gpu-container-hook: internal error: RuntimeError: boom second line\n")
        assert len(log_lines(log, "error")) == 1


class TestCliFallback:
    def test_cli_runs_when_the_library_cannot_load(
            self, run_hook: Hook, tmp_path: Path, use_config: Callable[..., Path],
            fp: FakeProcess, sim_host: Any) -> None:
        """No loadable library but a configured CLI: the CLI configures the container with
        the resolved device and the log says so."""
        cli = "/usr/bin/nvidia-container-cli"
        log = use_config(libnvidia_container={"cli": cli})
        bundle = make_bundle(tmp_path, ("NVIDIA_VISIBLE_DEVICES=0",
                                        "NVIDIA_DRIVER_CAPABILITIES=compute,utility"))
        uuid = sim_host.topology["gpus"][0]["uuid"]
        expected = [cli, f"--root={sim_host.driver_dir}", "configure", "--no-cgroups",
                    "--ldconfig=@/sbin/ldconfig", f"--device={uuid}", "--compute",
                    "--utility", f"--pid={os.getpid()}", fp.any(min=1, max=1)]
        recorder = fp.register(expected)
        assert run_hook(["prestart"], state(bundle)) == (0, "")
        assert recorder.call_count() == 1
        assert len(log_lines(log, "fallback")) == 1 and len(log_lines(log, "mounted")) == 1

    def test_transient_cli_failures_are_retried(
            self, run_hook: Hook, tmp_path: Path, use_config: Callable[..., Path],
            fp: FakeProcess) -> None:
        """Two transient CLI failures are retried and logged; the third run succeeds."""
        log = use_config(libnvidia_container={"cli": "/usr/bin/nvidia-container-cli"},
                         retry={"initial_backoff": 0.01, "max_backoff": 0.02})
        bundle = make_bundle(tmp_path, ("NVIDIA_VISIBLE_DEVICES=none",))
        failure = "nvidia-container-cli: initialization error: cuda error: unknown error\n"
        fp.register([fp.any()], stderr=failure, returncode=1, occurrences=2)
        fp.register([fp.any()])
        assert run_hook(["prestart"], state(bundle)) == (0, "")
        retries = log_lines(log, "retry")
        assert len(retries) == 2 and all("cuda error: unknown error" in r for r in retries)


@pytest.mark.parametrize(("data", "expected"), [
    (b'{"bundle": "/b", "id": "x"}', ("/b", "x")),
    (b'{"bundle": "/b"}', ("/b", "")),
    (b'{"bundle": "b", "id": "x"}', None),
    (b'["/b"]', None),
    (b"{", None),
])
def test_peek_bundle_accepts_only_a_plausible_state(data: bytes,
                                                    expected: Optional[tuple[str, str]]) -> None:
    """The fast path's peek takes an absolute bundle; anything else goes to full validation."""
    assert hook_main.peek_bundle(data) == expected


def test_isolate_environment_keeps_only_a_safe_path() -> None:
    """Everything goes; loader-relevant names are reported."""
    env = {"LD_PRELOAD": "/x.so", "PYTHONPATH": "/p", "HOME": "/root", "PATH": "/evil"}
    assert hook_main.isolate_environment(env) == ["LD_PRELOAD", "PYTHONPATH"]
    assert env == {"PATH": hook_main.SAFE_PATH}


@pytest.mark.parametrize(("argv", "first"), [(["--version"], "gpu-container-hook version "),
                                             (["-v"], "gpu-container-hook version "),
                                             (["--help"], "usage: gpu-container-hook STAGE"),
                                             (["-h"], "usage: gpu-container-hook STAGE")])
def test_version_and_help_answer_without_reading_stdin(
        argv: list[str], first: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """--version and --help print and exit 0; stdin (no OCI state here) is never read."""
    monkeypatch.setattr(sys, "stdin", None)
    assert hook_main.main(argv) == 0
    out = capsys.readouterr()
    assert out.out.startswith(first) and out.err == ""


def test_the_oci_state_is_parsed_once_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step that needs the state (the fallback when the peek fails, the library work)
    gets the one parse of stdin."""
    from hook import state as state_mod

    calls: list[bytes] = []
    real = state_mod.parse_state

    def counting(data: bytes) -> Any:
        calls.append(data)
        return real(data)

    monkeypatch.setattr(state_mod, "parse_state", counting)
    data = json.dumps({"ociVersion": "1.0.2", "id": "c1", "status": "creating", "pid": 1,
                       "bundle": "/b"}).encode()
    run = hook_main.Run(time.monotonic())
    assert run.state_of(data) is run.state_of(data)
    assert calls == [data]


NVML_PROBE = """
import json, sys, time
from gpu_core import config
from gpu_core.request import DeviceRequest
from hook import main
""" + COUNT_INITS + """
main.Run.mount = lambda self, *args: None  # the library's mounts are not what is measured
run = main.Run(time.monotonic())
request = DeviceRequest(devices=("0",), capabilities=frozenset({"compute", "utility"}))
run.prepare(config.load(), main.Budget(time.monotonic(), 30.0), request, 0, None, "")
print(json.dumps([run.inventory is not None and len(run.inventory.gpus), len(first_inits),
                  sorted(m for m in ("pynvml", "ctypes.util") if m in sys.modules)]))
"""


def test_gpu_discovery_and_readiness_set_nvml_up_once_without_pynvml(sim_host: Any) -> None:
    """The hook's NVML stages (discovery of 8 GPUs, then the readiness wait) on a simulated host
    go through gpu_core.nvml_lib and set the driver up once: neither pynvml nor ctypes.util
    (about 31 ms) is imported."""
    sim_host.set_faults()
    done = subprocess.run([sys.executable, "-c", NVML_PROBE], capture_output=True, text=True,
                          check=True, env={**os.environ, **sim_host.env()})
    assert json.loads(done.stdout) == [8, 1, []]
