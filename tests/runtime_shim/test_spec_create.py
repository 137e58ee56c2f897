"""Spec mode's create (runtime_shim/spec_create.py, through runtime_shim/main.py): one NVML
session, discovery under bounded retry, the readiness wait, and a lean import set."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
import yaml
from nvml_probe import COUNT_INITS

from gpu_core import config as config_mod
from gpu_core.errors import ShimError
from gpu_core.inventory import Inventory
from gpu_core.nvml_query import NvmlFailure
from gpu_core.testing import fake_inventory
from runtime_shim import spec_create

if TYPE_CHECKING:
    from simulator.testing import SimHost

HOST = fake_inventory(2)


class FakeSession(spec_create.Session):
    """Holds nothing: NVML is not loaded in unit tests."""

    def __init__(self) -> None:
        super().__init__("")
        self.holds = 0

    def hold(self) -> None:
        self.holds += 1


def flaky(errors: list[Exception]) -> Callable[[], Inventory]:
    def discover() -> Inventory:
        if errors:
            raise errors.pop(0)
        return HOST
    return discover


def config(text: str = "") -> config_mod.Config:
    return config_mod.parse("retry: {attempts: 3, initial_backoff: 0.01, max_backoff: 0.01}\n"
                            + text, "t.yaml")


def unknown() -> NvmlFailure:
    return NvmlFailure("nvml: Unknown Error (nvmlDeviceGetCount_v2)", 999)


def test_a_transient_nvml_failure_is_retried() -> None:
    lines: list[str] = []
    session = FakeSession()
    discover = spec_create.retried(config(), flaky([unknown(), unknown()]), session,
                                   lines.append, sleep=lambda _: None)
    assert discover() is HOST
    assert session.holds == 3
    assert len(lines) == 2 and lines[0].startswith("discovery: attempt 1/3 failed: ")


def test_retries_end_at_the_attempt_cap_in_one_line() -> None:
    discover = spec_create.retried(config(), flaky([unknown()] * 5), FakeSession(),
                                   lambda _: None, sleep=lambda _: None)
    with pytest.raises(ShimError) as info:
        discover()
    assert info.value.stage == "discovery"
    assert info.value.cause.startswith("3 attempts over ")
    assert info.value.cause.endswith("(attempt cap): nvml: Unknown Error (nvmlDeviceGetCount_v2)")


def test_a_permanent_failure_is_reported_as_it_is() -> None:
    lost = NvmlFailure("nvml: GPU is lost (nvmlDeviceGetUUID gpu 1)", 15)
    discover = spec_create.retried(config(), flaky([lost, unknown()]), FakeSession(),
                                   lambda _: None, sleep=lambda _: None)
    with pytest.raises(ShimError) as info:
        discover()
    assert info.value is lost


def test_a_failure_that_is_no_nvml_error_is_not_retried() -> None:
    other = ShimError("discovery", "nvml: cannot load /x.so: no such file")
    errors: list[Exception] = [other]
    discover = spec_create.retried(config(), flaky(errors), FakeSession(), lambda _: None,
                                   sleep=lambda _: None)
    with pytest.raises(ShimError) as info:
        discover()
    assert info.value is other


def test_an_unexpected_exception_is_not_dressed_as_a_discovery_error() -> None:
    bug = KeyError("minor")
    discover = spec_create.retried(config(), flaky([bug]), FakeSession(), lambda _: None,
                                   sleep=lambda _: None)
    with pytest.raises(KeyError):
        discover()


@pytest.mark.parametrize("code, transient", [(9, True), (10, True), (999, True), (15, False),
                                             (6, False), (3, False)])
def test_nvml_codes_are_classified_as_the_hooks_table(code: int, transient: bool) -> None:
    assert spec_create.is_transient(NvmlFailure("x", code)) is transient


# -- on the simulated host, through the shim's create --

PROBE = """
import json, sys
""" + COUNT_INITS + """
from runtime_shim import lowlevel, main
def report(self, args):
    heavy = ("yaml", "jsonschema", "pynvml", "cffi", "libnvc_bindings", "ctypes.util")
    print(json.dumps([len(first_inits),
                      sorted(m for m in sys.modules if m.split(".")[0] in heavy or m in heavy)]))
    sys.exit(0)
lowlevel.LowLevelRuntime.exec = report
sys.exit(main.main(["create", "--bundle", sys.argv[1], "spec-c1"]))
"""


LIGHT_PROBE = """
import json, sys
from runtime_shim import lowlevel, main
def report(self, args):
    costly = ("dataclasses", "inspect", "ast", "random", "threading", "copy")
    print(json.dumps(sorted(m for m in costly if m in sys.modules)))
    sys.exit(0)
lowlevel.LowLevelRuntime.exec = report
sys.exit(main.main(["create", "--bundle", sys.argv[1], "spec-c2"]))
"""


@pytest.fixture(scope="module")
def sim_host(sim_host_factory: Callable[..., SimHost]) -> SimHost:
    return sim_host_factory("t4")


@pytest.fixture
def spec_config(sim_host: SimHost, tmp_path: Path) -> Path:
    document = yaml.safe_load(sim_host.config_path.read_text())
    document.update({"mode": "spec", "runtimes": ["/bin/true"],
                     "readiness": {"timeout": 5, "interval": 0.01},
                     "spec": {"hook_path": "/usr/bin/gpu-container-spec-hook"}})
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def gpu_bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    (bundle / "rootfs/etc").mkdir(parents=True)
    (bundle / "rootfs/etc/debian_version").write_text("12\n")
    (bundle / "config.json").write_text(json.dumps({
        "ociVersion": "1.2.1", "root": {"path": "rootfs"},
        "process": {"args": ["sh"], "cwd": "/",
                    "env": ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=0"]}}))
    return bundle


def create(spec_config: Path, bundle: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROBE, str(bundle)], capture_output=True,
                          text=True, env={**os.environ, "GPU_CONTAINER_SHIM_CONFIG":
                                          str(spec_config)})


def test_a_device_ready_late_is_waited_for_with_nvml_set_up_once(
        sim_host: SimHost, spec_config: Path, tmp_path: Path) -> None:
    """The first three lookups by UUID miss: the create polls, then writes the spec; NVML's
    driver state was set up once for discovery and the wait together."""
    sim_host.set_faults("nvml-not-ready=3")
    bundle = gpu_bundle(tmp_path)
    done = create(spec_config, bundle)
    assert done.returncode == 0, done.stderr
    inits, _ = json.loads(done.stdout)
    assert inits == 1
    assert sim_host.fault_uses("nvml-not-ready") >= 3
    spec = json.loads((bundle / "config.json").read_text())
    assert spec["hooks"]["createContainer"][0]["args"][0] == "gpu-container-spec-hook"


def test_the_spec_mode_create_imports_nothing_heavy_and_a_retry_changes_nothing(
        sim_host: SimHost, spec_config: Path, tmp_path: Path) -> None:
    """With the configuration cached, a spec-mode GPU create loads no pynvml, YAML, jsonschema,
    cffi or libnvidia-container binding; a second create of the same bundle (a retried create)
    writes the same config.json."""
    sim_host.set_faults()
    bundle = gpu_bundle(tmp_path)
    first = create(spec_config, bundle)
    assert first.returncode == 0, first.stderr
    written = (bundle / "config.json").read_text()
    second = create(spec_config, bundle)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == [1, []]
    assert json.loads((bundle / "config.json").read_text()) == json.loads(written)


def test_the_spec_mode_create_loads_no_dataclasses_and_no_stdlib_module_it_can_skip(
        sim_host: SimHost, spec_config: Path, tmp_path: Path) -> None:
    """The create's records are NamedTuples and its Context a plain class (README §Layout), so
    neither dataclasses nor inspect and ast load; random waits for a retry, NVML's lock needs no
    threading, and a cached configuration no copy."""
    sim_host.set_faults()
    bundle = gpu_bundle(tmp_path)
    assert create(spec_config, bundle).returncode == 0  # caches the configuration
    done = subprocess.run([sys.executable, "-I", "-S", "-c",
                           f"import sys; sys.path[:0] = {sys.path!r}\n" + LIGHT_PROBE,
                           str(bundle)], capture_output=True, text=True,
                          env={**os.environ, "GPU_CONTAINER_SHIM_CONFIG": str(spec_config)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_a_transient_nvml_error_at_discovery_is_retried_by_the_create(
        sim_host: SimHost, spec_config: Path, tmp_path: Path) -> None:
    """NVML's Unknown Error on the first two device counts: the create retries discovery and
    writes the spec; the retries are in our log."""
    sim_host.set_faults("nvml-unknown-error=2")
    document = yaml.safe_load(spec_config.read_text())
    document["retry"] = {"attempts": 5, "initial_backoff": 0.01, "max_backoff": 0.02}
    spec_config.write_text(yaml.safe_dump(document))
    bundle = gpu_bundle(tmp_path)
    done = create(spec_config, bundle)
    assert done.returncode == 0, done.stderr
    assert sim_host.fault_uses("nvml-unknown-error") == 3
    assert "createContainer" in json.loads((bundle / "config.json").read_text())["hooks"]
    log = Path(document["log"]["file"]).read_text().splitlines()[-1]
    assert log.count("discovery: attempt ") == 2 and "Unknown Error" in log


def test_a_transient_nvml_error_outlasting_the_attempts_fails_in_one_line(
        sim_host: SimHost, spec_config: Path, tmp_path: Path) -> None:
    sim_host.set_faults("nvml-unknown-error=100")
    document = yaml.safe_load(spec_config.read_text())
    document["retry"] = {"attempts": 2, "initial_backoff": 0.01, "max_backoff": 0.01}
    spec_config.write_text(yaml.safe_dump(document))
    bundle = gpu_bundle(tmp_path)
    before = (bundle / "config.json").read_bytes()
    done = create(spec_config, bundle)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert re.fullmatch(r"gpu-container-runtime: discovery: 2 attempts over \d+\.\ds "
                        r"\(attempt cap\): nvml: Unknown Error \(nvmlDeviceGetCount_v2\)\n",
                        done.stderr)
    assert (bundle / "config.json").read_bytes() == before


def test_a_device_never_ready_fails_the_create_in_one_line_leaving_the_spec(
        sim_host: SimHost, spec_config: Path, tmp_path: Path) -> None:
    sim_host.set_faults("nvml-not-ready=100000")
    document = yaml.safe_load(spec_config.read_text())
    document["readiness"] = {"timeout": 0.2, "interval": 0.05}
    spec_config.write_text(yaml.safe_dump(document))
    bundle = gpu_bundle(tmp_path)
    before = (bundle / "config.json").read_bytes()
    done = create(spec_config, bundle)
    gpu = sim_host.topology["gpus"][0]["uuid"]
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("gpu-container-runtime: readiness: 1 device not ready after ")
    assert f"GPU 0 ({gpu}): nvmlDeviceGetHandleByUUID: Not Found (NVML error 6)" in done.stderr
    assert (bundle / "config.json").read_bytes() == before


def test_hook_mode_waits_for_nothing_in_the_shim(sim_host: SimHost, spec_config: Path,
                                                 tmp_path: Path) -> None:
    """The same never-ready device under mode: hook: the shim writes the spec (the hook
    waits later)."""
    sim_host.set_faults("nvml-not-ready=100000")
    document: dict[str, Any] = yaml.safe_load(spec_config.read_text())
    document["mode"] = "hook"
    spec_config.write_text(yaml.safe_dump(document))
    done = create(spec_config, gpu_bundle(tmp_path))
    assert done.returncode == 0, done.stderr


def test_the_written_config_is_a_valid_oci_config(sim_host: SimHost, spec_config: Path,
                                                  tmp_path: Path) -> None:
    import oci_schema

    sim_host.set_faults()
    bundle = gpu_bundle(tmp_path)
    done = create(spec_config, bundle)
    assert done.returncode == 0, done.stderr
    written = json.loads((bundle / "config.json").read_text())
    assert [e.message for e in oci_schema.config_validator().iter_errors(written)] == []
    assert written["mounts"] and written["linux"]["devices"]
