"""Real calls into the simulated libnvidia-container, one release from each ABI generation."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from gpu_core.retry import RetryPolicy, run_with_retry
from libnvc_bindings import Library, NvcError, Session, declarations, load
from simulator.testing import SimHost, build_host

# One release per generation: 1.0 | 1.1-1.4 | 1.5-1.14 | 1.15+.
VERSIONS = ("1.0.7", "1.2.1", "1.14.6", "1.17.8")
TOPOLOGY = "dgx-a100-mig"
CONTAINER_OPTIONS = ["standalone", "no-cgroups", "compute", "utility"]

# What each release must hide: newer functions it does not export.
MIG = {"nvc_mig_device_access_caps_mount", "nvc_mig_config_global_caps_mount",
       "nvc_mig_monitor_global_caps_mount", "nvc_device_mig_caps_mount"}
NVCAPS = {"nvc_nvcaps_style", "nvc_nvcaps_device_from_proc_path"}
IMEX = {"nvc_imex_channel_mount"}
HIDDEN = {"1.0.7": MIG | NVCAPS | IMEX, "1.2.1": NVCAPS | IMEX, "1.14.6": IMEX, "1.17.8": set()}


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], SimHost]:
    """Simulated hosts, built once per release on first use."""
    root = tmp_path_factory.mktemp("nvc-hosts")
    built: dict[str, SimHost] = {}

    def host(version: str) -> SimHost:
        if version not in built:
            built[version] = build_host(TOPOLOGY, root / version, nvc_version=version)
        return built[version]

    return host


@pytest.fixture(params=VERSIONS)
def host(request: pytest.FixtureRequest, hosts: Callable[[str], SimHost]) -> Iterator[SimHost]:
    """The host of one release, with no faults before or after the test."""
    sim = hosts(request.param)
    sim.set_faults()
    yield sim
    sim.set_faults()


@pytest.fixture
def library(host: SimHost) -> Library:
    return load(str(host.nvc_library), names=())


@pytest.fixture
def session(library: Library, host: SimHost) -> Iterator[Session]:
    with Session(library, root=str(host.driver_dir)) as opened:
        yield opened


def _version(host: SimHost) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in host.dir.name.split("."))
    return (major, minor, patch)


def _count_calls(monkeypatch: pytest.MonkeyPatch, library: Library, name: str) -> list[Any]:
    """Wrap C function ``name`` so each call is recorded; returns the record."""
    calls: list[Any] = []
    original = library.fn(name)

    def wrapper(*args: Any) -> Any:
        calls.append(args)
        return original(*args)

    monkeypatch.setitem(library._functions, name, wrapper)  # the library's own lookup table
    return calls


class TestLoad:
    def test_version_is_read_and_picks_the_generation(self, library: Library,
                                                      host: SimHost) -> None:
        """The loader reports the release and binds that generation's declarations."""
        version = _version(host)
        assert library.version == version
        assert library.version_string == host.dir.name
        assert library.ffi is declarations.ffi_for(version)
        assert library.path == str(host.nvc_library)

    def test_newer_functions_are_hidden(self, library: Library, host: SimHost) -> None:
        """Exactly the functions the release lacks are hidden; the rest are offered."""
        every = {name for name, _ in declarations.FUNCTIONS}
        assert set(library.available) == every - HIDDEN[host.dir.name]

    def test_configured_path_wins_over_the_usual_names(self, host: SimHost) -> None:
        """With a configured path the library there is used without trying the others."""
        library = load(str(host.nvc_library))
        assert library.path == str(host.nvc_library)


class TestInit:
    def test_init_and_shutdown(self, session: Session) -> None:
        """A clean host initialises and shuts down."""
        session.init(load_kmods=False)
        assert session.initialized
        session.shutdown()
        assert not session.initialized

    def test_transient_fault_is_a_transient_nvc_error(self, session: Session,
                                                      host: SimHost) -> None:
        """nvc-init-transient fails the first calls with cuda's unknown error, then passes."""
        host.set_faults("nvc-init-transient=2")
        for _ in range(2):
            with pytest.raises(NvcError, match=r"^nvc_init: cuda error: unknown error$") as c:
                session.init()
            assert c.value.transient
        session.init()
        assert session.initialized

    def test_permanent_fault_is_a_permanent_nvc_error(self, session: Session,
                                                      host: SimHost) -> None:
        """nvc-init-permanent's message comes back verbatim and is not retryable."""
        host.set_faults("nvc-init-permanent=nvml error: driver/library version mismatch")
        with pytest.raises(NvcError) as caught:
            session.init()
        assert (caught.value.stage, caught.value.message, caught.value.transient) == (
            "nvc_init", "nvml error: driver/library version mismatch", False)

    def test_retry_policy_rides_out_transient_init_failures(self, session: Session,
                                                            host: SimHost) -> None:
        """run_with_retry over Session.init succeeds on the third attempt, logging two."""
        host.set_faults("nvc-init-transient=2:driver rpc error: timed out")
        logs: list[str] = []
        run_with_retry(session.init, RetryPolicy(5, 20.0, 0.2, 4.0),
                       lambda e: isinstance(e, NvcError) and e.transient, logs.append,
                       stage="libnvidia-container", sleep=lambda _: None)
        assert session.initialized
        assert len(logs) == 2
        assert "nvc_init: driver rpc error: timed out" in logs[0]


class TestQueries:
    def test_driver_info_matches_the_topology(self, session: Session, host: SimHost) -> None:
        """Driver and CUDA versions come from the topology; control devices are listed."""
        session.init()
        info = session.driver_info()
        assert (info.nvrm_version, info.cuda_version) == (
            host.topology["driver_version"], host.topology["cuda_version"])
        nodes = {(node.path, node.major, node.minor) for node in info.devices}
        assert ("/dev/nvidiactl", 195, 255) in nodes
        assert any(lib.endswith(f"libcuda.so.{info.nvrm_version}") for lib in info.libs)

    def test_device_info_matches_the_topology(self, session: Session, host: SimHost) -> None:
        """Each GPU's uuid, model, bus id, arch and node are the topology's."""
        session.init()
        gpus = session.device_info().gpus
        expected = [(g["uuid"], g["name"], g["bus_id"], g["compute_capability"],
                     f"/dev/nvidia{g['minor']}", 195, g["minor"]) for g in host.topology["gpus"]]
        assert [(g.uuid, g.model, g.busid, g.arch, g.node.path, g.node.major, g.node.minor)
                for g in gpus] == expected

    def test_mig_devices_match_the_topology(self, session: Session, host: SimHost) -> None:
        """From 1.1 MIG devices carry the topology's uuids and gi/ci ids; 1.0 has none."""
        session.init()
        info = session.device_info()
        expected: list[tuple[str, str, int, int]] = []
        if _version(host) >= (1, 1, 0):
            expected = [(m["uuid"], g["uuid"], m["gi"], m["ci"])
                        for g in host.topology["gpus"] for m in g.get("mig", {}).get("devices", [])]
        assert expected or _version(host) < (1, 1, 0)
        assert [(m.uuid, m.parent_uuid, m.gi, m.ci) for m in info.mig_devices] == expected

    def test_container_is_created(self, session: Session, tmp_path: Path) -> None:
        """A container for a live pid and an absolute rootfs is accepted."""
        session.init()
        container = session.container(os.getpid(), str(tmp_path), CONTAINER_OPTIONS)
        assert (container.pid, container.rootfs, container.options) == (
            os.getpid(), str(tmp_path), tuple(CONTAINER_OPTIONS))

    def test_container_with_an_unknown_option_fails_permanently(self, session: Session,
                                                                tmp_path: Path) -> None:
        """An unknown container option is the library's permanent ``invalid option``."""
        session.init()
        with pytest.raises(NvcError, match=r"^nvc_container_new: invalid option: "
                                           r"no-such-thing$") as caught:
            session.container(os.getpid(), str(tmp_path), ["standalone", "no-such-thing"])
        assert not caught.value.transient

    def test_queries_before_init_fail_with_the_library_message(self, session: Session) -> None:
        """Without nvc_init the library refuses, and the error carries its stage."""
        with pytest.raises(NvcError, match=r"^nvc_driver_info_new: "):
            session.driver_info()


class TestOwnership:
    def test_info_is_freed_once_when_its_views_go(self, monkeypatch: pytest.MonkeyPatch,
                                                  session: Session, library: Library) -> None:
        """nvc_device_info_free runs once, and only after the last view holding it is gone."""
        freed = _count_calls(monkeypatch, library, "nvc_device_info_free")
        session.init()
        gpu = session.device_info().gpus[0]
        gc.collect()
        assert freed == []  # the Gpu view's handle keeps the C struct alive
        del gpu
        gc.collect()
        assert len(freed) == 1

    def test_failed_container_frees_its_config(self, monkeypatch: pytest.MonkeyPatch,
                                               session: Session, library: Library,
                                               tmp_path: Path) -> None:
        """A refused nvc_container_new still frees the container config it was given."""
        freed = _count_calls(monkeypatch, library, "nvc_container_config_free")
        session.init()
        with pytest.raises(NvcError):
            session.container(os.getpid(), str(tmp_path), ["bogus"])
        gc.collect()
        assert len(freed) == 1

    def test_close_frees_context_and_config_now(self, monkeypatch: pytest.MonkeyPatch,
                                                library: Library, host: SimHost) -> None:
        """close() shuts down and frees the context and config at once, each exactly once."""
        ctx_freed = _count_calls(monkeypatch, library, "nvc_context_free")
        cfg_freed = _count_calls(monkeypatch, library, "nvc_config_free")
        shutdowns = _count_calls(monkeypatch, library, "nvc_shutdown")
        session = Session(library, root=str(host.driver_dir))
        session.init()
        session.close()
        session.close()
        assert (len(ctx_freed), len(cfg_freed), len(shutdowns)) == (1, 1, 1)

    def test_calls_after_close_are_refused(self, library: Library, host: SimHost) -> None:
        """A closed session raises instead of touching freed memory."""
        session = Session(library, root=str(host.driver_dir))
        session.close()
        with pytest.raises(NvcError, match=r"^nvc_init: session is closed$"):
            session.init()


def test_hidden_function_is_refused_before_any_call(tmp_path: Path,
                                                    hosts: Callable[[str], SimHost]) -> None:
    """On 1.0 a MIG mount raises a permanent 'not provided' error instead of crashing."""
    host = hosts("1.0.7")
    host.set_faults()
    with Session(load(str(host.nvc_library), names=()), root=str(host.driver_dir)) as session:
        session.init()
        container = session.container(os.getpid(), str(tmp_path), CONTAINER_OPTIONS)
        with pytest.raises(NvcError, match=r"^nvc_mig_config_global_caps_mount: not provided "
                                           r"by libnvidia-container 1\.0\.7$") as caught:
            session.mig_config_global_caps_mount(container)
        assert not caught.value.transient


EXIT_WITH_LIVE_POINTERS = """
import os, sys
from libnvc_bindings import Session, load
library = load(sys.argv[1], names=())
session = Session(library, root=sys.argv[2])
session.init()
kept = [session.container(os.getpid(), sys.argv[3], ["standalone", "no-cgroups"]),
        session.driver_info(), session.device_info()]
if sys.argv[4] == "closed":
    session.close()
"""


@pytest.mark.parametrize("ending", ["closed", "open"])
def test_exit_with_live_pointers_is_clean(host: SimHost, tmp_path: Path, ending: str) -> None:
    """A process that exits holding library pointers (its session closed or not) exits 0: the
    library stays mapped until every nvc_*_free has run."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", EXIT_WITH_LIVE_POINTERS, str(host.nvc_library),
                           str(host.driver_dir), str(tmp_path), ending],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
