"""The libnvidia-container sequence: options, the mount plan, the call order and the retrier."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Optional

import pytest

from gpu_core.config import defaults
from gpu_core.errors import ShimError
from gpu_core.inventory import Inventory
from gpu_core.request import DeviceRequest, parse_request
from gpu_core.retry import RetryPolicy
from gpu_core.selection import Selection, select
from gpu_core.testing import fake_inventory
from hook import mounts
from libnvc_bindings import DeviceInfo, DeviceNode, Gpu, MigDevice, NvcError


def nvc_view(inventory: Inventory) -> DeviceInfo:
    """The library's view of the same host (no C handles: the fake session needs none)."""
    gpus = []
    for gpu in inventory.gpus:
        migs = tuple(MigDevice(uuid=m.uuid, parent_uuid=gpu.uuid, gi=m.gi_id, ci=m.ci_id,
                               gi_caps_path="", ci_caps_path="") for m in gpu.mig_devices)
        gpus.append(Gpu(model=gpu.name, uuid=gpu.uuid, busid=gpu.bus_id, arch=gpu.cc,
                        brand=gpu.brand, node=DeviceNode(f"/dev/nvidia{gpu.minor}", 195,
                                                         gpu.minor),
                        mig_capable=gpu.mig_mode, mig_devices=migs))
    return DeviceInfo(gpus=tuple(gpus))


def request_for(env: Sequence[str], privileged: bool = False) -> DeviceRequest:
    caps = {"bounding": ["CAP_SYS_ADMIN"]} if privileged else {}
    spec = {"process": {"env": list(env), "capabilities": caps}}
    request = parse_request(spec, defaults())
    assert request is not None
    return request


def planned(env: Sequence[str], inventory: Inventory, privileged: bool = False
            ) -> tuple[mounts.Plan, Selection]:
    request = request_for(env, privileged)
    selection = select(request, inventory)
    return mounts.plan(request, selection, nvc_view(inventory)), selection


MIG_HOST = fake_inventory(gpus=2, mig={1: ["3g.40gb", "1g.10gb"]})


@pytest.mark.parametrize(("capabilities", "expected"), [
    (frozenset({"utility", "compute"}), ("supervised", "no-cgroups", "compute", "utility")),
    (frozenset({"compute", "compat32", "display", "graphics", "ngx", "utility", "video"}),
     ("supervised", "no-cgroups", "compute", "compat32", "display", "graphics", "ngx",
      "utility", "video")),
    (frozenset(), ("supervised", "no-cgroups")),
])
def test_container_options_follow_capabilities(capabilities: frozenset[str],
                                               expected: tuple[str, ...]) -> None:
    """Always supervised and no-cgroups; one option per requested capability in fixed order."""
    assert mounts.container_options(capabilities, (1, 16, 2)) == expected


@pytest.mark.parametrize(("version", "compat"), [
    ((1, 0, 7), False), ((1, 16, 2), False), ((1, 17, 6), False),
    ((1, 17, 7), True), ((1, 17, 8), True), ((1, 18, 0), True), ((2, 0, 0), True),
])
def test_forward_compat_through_ldconfig_from_1_17_7(version: tuple[int, int, int],
                                                     compat: bool) -> None:
    """cuda-compat-mode=ldconfig is passed, last, to the releases that know it (>= 1.17.7);
    older ones, which reject the option, get the options they always got."""
    options = mounts.container_options(frozenset({"compute", "utility"}), version)
    assert options[:4] == ("supervised", "no-cgroups", "compute", "utility")
    assert options[4:] == (("cuda-compat-mode=ldconfig",) if compat else ())


class TestPlan:
    def test_selected_gpus_map_to_the_library_views(self) -> None:
        """GPUs 1 and 0 are mounted in request order, no MIG work."""
        inventory = fake_inventory(gpus=4)
        plan, _ = planned(["NVIDIA_VISIBLE_DEVICES=1,0"], inventory)
        assert [g.uuid for g in plan.gpus] == [inventory.gpus[1].uuid, inventory.gpus[0].uuid]
        assert (plan.migs, plan.mig_config, plan.mig_monitor) == ((), (), ())

    def test_mig_device_brings_its_parent(self) -> None:
        """A MIG device mounts its parent's node and its own access caps."""
        plan, _ = planned(["NVIDIA_VISIBLE_DEVICES=1:1"], MIG_HOST)
        assert [g.uuid for g in plan.gpus] == [MIG_HOST.gpus[1].uuid]
        assert [m.uuid for m in plan.migs] == [MIG_HOST.gpus[1].mig_devices[1].uuid]

    def test_none_mounts_no_device(self) -> None:
        """``none`` plans the driver only."""
        plan, _ = planned(["NVIDIA_VISIBLE_DEVICES=none"], MIG_HOST)
        assert (plan.gpus, plan.migs) == ((), ())

    def test_mig_config_all_uses_global_caps_of_capable_visible_gpus(self) -> None:
        """NVIDIA_MIG_CONFIG_DEVICES=all: the MIG-capable visible GPUs' caps replace
        per-device access caps."""
        plan, _ = planned(["NVIDIA_VISIBLE_DEVICES=all", "NVIDIA_MIG_CONFIG_DEVICES=all"],
                          MIG_HOST, privileged=True)
        assert [g.uuid for g in plan.mig_config] == [MIG_HOST.gpus[1].uuid]
        assert (plan.migs, plan.mig_monitor) == ((), ())

    def test_mig_monitor_all_without_capable_gpu_mounts_nothing_global(self) -> None:
        """NVIDIA_MIG_MONITOR_DEVICES=all over GPUs without MIG plans no global caps."""
        plan, _ = planned(["NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_MIG_MONITOR_DEVICES=all"],
                          MIG_HOST, privileged=True)
        assert (plan.mig_monitor, plan.migs) == ((), ())

    def test_device_the_library_does_not_see_is_a_detection_error(self) -> None:
        """NVML and libnvidia-container disagreeing is an error naming the UUID."""
        inventory = fake_inventory(gpus=2)
        request = request_for(["NVIDIA_VISIBLE_DEVICES=1"])
        selection = select(request, inventory)
        only_first = DeviceInfo(gpus=nvc_view(inventory).gpus[:1])
        with pytest.raises(ShimError) as caught:
            mounts.plan(request, selection, only_first)
        assert str(caught.value) == (f"detection: {inventory.gpus[1].uuid}: NVML sees it but "
                                     "libnvidia-container does not")


class FakeLibrary:
    """The loaded release the fake session stands for."""

    def __init__(self, version: tuple[int, int, int]) -> None:
        self.version = version


class FakeSession:
    """Records the library calls in order; ``fail`` maps a call name to errors to raise."""

    def __init__(self, info: DeviceInfo, fail: Optional[dict[str, list[Exception]]] = None,
                 version: tuple[int, int, int] = (1, 16, 2)) -> None:
        self.library = FakeLibrary(version)
        self.info = info
        self.fail = fail or {}
        self.calls: list[str] = []
        self.closed = False

    def _call(self, name: str, *detail: str) -> None:
        self.calls.append(" ".join((name, *detail)))
        errors = self.fail.get(name)
        if errors:
            raise errors.pop(0)

    def init(self, load_kmods: bool = False) -> None:
        self._call("init", f"load_kmods={load_kmods}")

    def container(self, pid: int, rootfs: str, options: Sequence[str]) -> str:
        self._call("container", str(pid), rootfs, *options)
        return "container"

    def driver_info(self) -> str:
        self._call("driver_info")
        return "driver"

    def device_info(self) -> DeviceInfo:
        self._call("device_info")
        return self.info

    def driver_mount(self, container: str, driver: str) -> None:
        self._call("driver_mount", driver)

    def device_mount(self, container: str, gpu: Gpu) -> None:
        self._call("device_mount", gpu.node.path)

    def mig_device_access_caps_mount(self, container: str, mig: MigDevice) -> None:
        self._call("mig_access", f"gi{mig.gi}")

    def mig_config_global_caps_mount(self, container: str) -> None:
        self._call("mig_config_global")

    def mig_monitor_global_caps_mount(self, container: str) -> None:
        self._call("mig_monitor_global")

    def device_mig_caps_mount(self, container: str, gpu: Gpu) -> None:
        self._call("device_mig_caps", gpu.node.path)

    def ldcache_update(self, container: str) -> None:
        self._call("ldcache")

    def close(self) -> None:
        self.closed = True


def passthrough(stage: str, fn: Callable[[], Any]) -> Any:
    return fn()


def run_configure(env: Sequence[str], session: FakeSession, inventory: Inventory,
                  privileged: bool = False, retry: Any = passthrough) -> mounts.Plan:
    request = request_for(env, privileged)
    target = mounts.Target(pid=4242, rootfs="/bundle/rootfs", capabilities=request.capabilities)
    return mounts.configure(session, request, select(request, inventory),  # type: ignore[arg-type]  # the fake stands in for Session
                            target, load_kmods=True, retry=retry)


class TestConfigure:
    def test_sequence_matches_the_cli(self) -> None:
        """init, container, info, driver mount, device mounts, MIG access caps, ldcache."""
        session = FakeSession(nvc_view(MIG_HOST))
        run_configure(["NVIDIA_VISIBLE_DEVICES=0,1:1"], session, MIG_HOST)
        assert session.calls == [
            "init load_kmods=True",
            "container 4242 /bundle/rootfs supervised no-cgroups compute utility",
            "driver_info", "device_info", "driver_mount driver",
            "device_mount /dev/nvidia0", "device_mount /dev/nvidia1",
            "mig_access gi2", "ldcache",
        ]
        assert session.closed

    def test_container_gets_forward_compat_from_a_release_that_has_it(self) -> None:
        """With libnvidia-container 1.17.8 the container is made with cuda-compat-mode=ldconfig."""
        session = FakeSession(nvc_view(MIG_HOST), version=(1, 17, 8))
        run_configure(["NVIDIA_VISIBLE_DEVICES=0"], session, MIG_HOST)
        assert session.calls[1] == ("container 4242 /bundle/rootfs supervised no-cgroups compute "
                                    "utility cuda-compat-mode=ldconfig")

    def test_global_mig_caps_for_config_and_monitor(self) -> None:
        """Both MIG variables: each global capability, then the capable GPU's caps."""
        session = FakeSession(nvc_view(MIG_HOST))
        run_configure(["NVIDIA_VISIBLE_DEVICES=1", "NVIDIA_MIG_CONFIG_DEVICES=all",
                       "NVIDIA_MIG_MONITOR_DEVICES=all"], session, MIG_HOST, privileged=True)
        assert session.calls[-6:] == [
            "device_mount /dev/nvidia1", "mig_config_global", "device_mig_caps /dev/nvidia1",
            "mig_monitor_global", "device_mig_caps /dev/nvidia1", "ldcache"]

    def test_session_is_closed_when_a_call_fails(self) -> None:
        """A failed mount still shuts the library down."""
        session = FakeSession(nvc_view(MIG_HOST),
                              {"driver_mount": [NvcError("nvc_driver_mount", "mount failed")]})
        with pytest.raises(NvcError):
            run_configure(["NVIDIA_VISIBLE_DEVICES=0"], session, MIG_HOST)
        assert session.closed and session.calls[-1] == "driver_mount driver"

    def test_every_call_goes_through_the_retry_runner_with_its_stage(self) -> None:
        """The retry runner sees each call with the stage its error line will carry."""
        stages: list[str] = []

        def recording(stage: str, fn: Callable[[], Any]) -> Any:
            stages.append(stage)
            return fn()

        run_configure(["NVIDIA_VISIBLE_DEVICES=0"], FakeSession(nvc_view(MIG_HOST)), MIG_HOST,
                      retry=recording)
        assert stages == ["initialization", "container", "detection", "detection", "mount",
                          "mount", "ldcache"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def ignore(line: str) -> None:
    """A retry log nobody reads."""


POLICY = RetryPolicy(attempts=5, deadline=10.0, initial_backoff=0.2, max_backoff=1.0)


def failing(errors: list[Exception], result: str = "ok") -> Callable[[], str]:
    def call() -> str:
        if errors:
            raise errors.pop(0)
        return result
    return call


class TestRetrier:
    def test_transient_errors_are_retried_and_logged(self) -> None:
        """Two transient nvc_init failures are logged as retries; the third call succeeds."""
        clock = FakeClock()
        lines: list[str] = []
        retrier = mounts.Retrier(POLICY, lines.append, clock=clock, sleep=clock.sleep)
        transient = NvcError("nvc_init", "cuda error: unknown error")
        assert retrier("initialization", failing([transient, transient])) == "ok"
        assert len(lines) == 2
        assert lines[0].startswith("initialization: attempt 1/5 failed: nvc_init: cuda error: "
                                   "unknown error; retrying in ")

    def test_timings_sum_each_stage_retries_included(self) -> None:
        """``timings`` gives each stage's milliseconds, all calls and retries of it together,
        for the hook's ``mounted`` log line."""
        clock = FakeClock()
        retrier = mounts.Retrier(POLICY, ignore, clock=clock, sleep=clock.sleep)

        def slow(seconds: float) -> Callable[[], str]:
            def call() -> str:
                clock.now += seconds
                return "ok"
            return call

        retrier("mount", slow(0.5))
        retrier("mount", slow(0.25))
        retrier("ldcache", slow(0.125))
        assert retrier.timings() == {"mount_ms": "750.0", "ldcache_ms": "125.0"}

    def test_permanent_error_fails_at_once_with_its_message(self) -> None:
        """A permanent error is the hook's cause as the library said it, nothing added."""
        clock = FakeClock()
        retrier = mounts.Retrier(POLICY, ignore, clock=clock, sleep=clock.sleep)
        error = NvcError("nvc_init", "driver/library version mismatch")
        with pytest.raises(ShimError) as caught:
            retrier("initialization", failing([error]))
        assert str(caught.value) == "initialization: driver/library version mismatch"

    def test_attempt_cap_says_how_many_attempts(self) -> None:
        """A transient error outlasting the cap reports attempts, time and the reason."""
        clock = FakeClock()
        retrier = mounts.Retrier(POLICY, ignore, clock=clock, sleep=clock.sleep)
        errors: list[Exception] = [NvcError("nvc_init", "driver rpc error: timed out")] * 9
        with pytest.raises(ShimError) as caught:
            retrier("initialization", failing(list(errors)))
        assert caught.value.cause.startswith("driver rpc error: timed out (5 attempts over ")
        assert caught.value.cause.endswith("s, stopped by attempt cap)")

    def test_deadline_is_shared_by_the_calls_that_follow(self) -> None:
        """Time spent by an earlier call leaves later calls no room to retry."""
        clock = FakeClock()
        retrier = mounts.Retrier(POLICY, ignore, clock=clock, sleep=clock.sleep)
        clock.now += 10.0
        with pytest.raises(ShimError, match=r"\(1 attempt over 0.0s, stopped by deadline\)"):
            retrier("mount", failing([NvcError("nvc_driver_mount", "cuda error: unknown error")]))


def test_stepping_reports_each_stage_before_running_it() -> None:
    """The bounded child learns the step before the call that might overrun it."""
    events: list[str] = []

    def retry(stage: str, fn: Callable[[], Any]) -> Any:
        events.append(f"run {stage}")
        return fn()

    stepping = mounts.Stepping(retry, lambda stage: events.append(f"step {stage}"))
    assert stepping("ldcache", lambda: 7) == 7
    assert events == ["step ldcache", "run ldcache"]
