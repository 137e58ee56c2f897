"""The readiness wait: the pure polling loop, the budget split, and the NVML probe."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from gpu_core import readiness
from gpu_core.readiness import Answer, NotReadyError, fit_timeout, wait_ready

NOT_FOUND = Answer(False, "nvmlDeviceGetHandleByUUID: Not Found (NVML error 6)")


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


class ScriptedProbe:
    """Answers from a script per UUID (the last entry repeats); records what it was asked."""

    def __init__(self, script: Mapping[str, Sequence[Answer]]) -> None:
        self.script = {uuid: list(answers) for uuid, answers in script.items()}
        self.asked: list[tuple[str, ...]] = []

    def __call__(self, uuids: Sequence[str]) -> Mapping[str, Answer]:
        self.asked.append(tuple(uuids))
        answers = {}
        for uuid in uuids:
            queue = self.script.get(uuid)
            if queue:
                answers[uuid] = queue.pop(0) if len(queue) > 1 else queue[0]
        return answers


def wait(devices: Mapping[str, str], probe: ScriptedProbe, timeout: float = 1.0,
         interval: float = 0.25) -> tuple[readiness.Outcome, FakeClock]:
    clock = FakeClock()
    outcome = wait_ready(devices, probe, timeout, interval, clock=clock, sleep=clock.sleep)
    return outcome, clock


class TestWaitReady:
    def test_ready_devices_pass_after_one_poll_without_sleeping(self) -> None:
        """Devices ready at the first poll cost one probe call and no sleep."""
        probe = ScriptedProbe({"GPU-a": [readiness.READY], "GPU-b": [readiness.READY]})
        outcome, clock = wait({"GPU-a": "GPU 0", "GPU-b": "GPU 1"}, probe)
        assert (outcome.polls, outcome.waited_for, clock.sleeps) == (1, (), [])

    def test_device_becoming_ready_is_waited_for(self) -> None:
        """A device not found for three polls is ready at the fourth, after three intervals."""
        probe = ScriptedProbe({"GPU-a": [NOT_FOUND] * 3 + [readiness.READY]})
        outcome, clock = wait({"GPU-a": "GPU 0"}, probe)
        assert (outcome.polls, outcome.waited_for) == (4, ("GPU 0",))
        assert clock.sleeps == [0.25, 0.25, 0.25]
        assert outcome.elapsed == pytest.approx(0.75)

    def test_ready_devices_are_not_asked_again(self) -> None:
        """Only devices still pending go to the next poll."""
        probe = ScriptedProbe({"GPU-a": [readiness.READY],
                               "GPU-b": [NOT_FOUND, readiness.READY]})
        wait({"GPU-a": "GPU 0", "GPU-b": "GPU 1"}, probe)
        assert probe.asked == [("GPU-a", "GPU-b"), ("GPU-b",)]

    def test_never_ready_device_fails_naming_it_and_nvml_last_answer(self) -> None:
        """At the deadline the error names the device and what NVML said last."""
        lost = Answer(False, "nvmlDeviceGetMemoryInfo: GPU is lost (NVML error 15)")
        probe = ScriptedProbe({"GPU-a": [readiness.READY], "GPU-b": [NOT_FOUND, lost]})
        with pytest.raises(NotReadyError) as caught:
            wait({"GPU-a": "GPU 0 (GPU-a)", "GPU-b": "GPU 1 (GPU-b)"}, probe)
        assert str(caught.value) == (
            "readiness: 1 device not ready after 1.0s (5 polls): GPU 1 (GPU-b): "
            "nvmlDeviceGetMemoryInfo: GPU is lost (NVML error 15)")
        assert caught.value.last == {"GPU 1 (GPU-b)": lost.detail}

    def test_last_poll_happens_at_the_deadline(self) -> None:
        """Sleeps never overshoot: 0.3s steps into a 1.0s deadline end with a 0.1s sleep."""
        probe = ScriptedProbe({"GPU-a": [NOT_FOUND]})
        clock = FakeClock()
        with pytest.raises(NotReadyError) as caught:
            wait_ready({"GPU-a": "GPU 0"}, probe, 1.0, 0.3, clock=clock, sleep=clock.sleep)
        assert clock.sleeps == [0.3, 0.3, 0.3, 0.1]
        assert caught.value.polls == 5

    def test_zero_timeout_polls_once(self) -> None:
        """With no time to wait the first poll decides."""
        probe = ScriptedProbe({"GPU-a": [NOT_FOUND]})
        with pytest.raises(NotReadyError) as caught:
            wait({"GPU-a": "GPU 0"}, probe, timeout=0.0)
        assert caught.value.polls == 1

    def test_no_devices_means_no_probe(self) -> None:
        """A request without devices (``none``) never asks NVML."""
        probe = ScriptedProbe({})
        outcome, _ = wait({}, probe)
        assert (outcome.polls, probe.asked) == (0, [])

    def test_missing_answer_counts_as_not_ready(self) -> None:
        """A UUID the probe did not answer is pending, and the error says so."""
        with pytest.raises(NotReadyError, match="GPU 0: no answer from the probe"):
            wait({"GPU-a": "GPU 0"}, ScriptedProbe({}), timeout=0.0)

    def test_error_names_a_bounded_number_of_devices(self) -> None:
        """Beyond SHOWN devices the error only counts the rest."""
        devices = {f"GPU-{i}": f"GPU {i}" for i in range(readiness.SHOWN + 3)}
        probe = ScriptedProbe({uuid: [NOT_FOUND] for uuid in devices})
        with pytest.raises(NotReadyError) as caught:
            wait(devices, probe, timeout=0.0)
        message = str(caught.value)
        assert message.startswith(f"readiness: {readiness.SHOWN + 3} devices not ready")
        assert message.endswith("; and 3 more") and "\n" not in message


@pytest.mark.parametrize(("configured", "remaining", "expected"), [
    (30.0, 30.0, 23.0),  # the defaults: 2s margin, 5s left for the mounts
    (10.0, 30.0, 10.0),  # the configured wait fits as it is
    (30.0, 12.0, 5.0),  # a short budget: mounts still get their reserve
    (30.0, 6.0, 2.0),  # a tiny budget: the wait gets at most half of what is usable
    (30.0, 1.0, 0.0),  # less than the margin: a single poll
])
def test_fit_timeout_leaves_room_for_the_mounts(configured: float, remaining: float,
                                                expected: float) -> None:
    """The wait's share of the budget keeps a margin and a reserve for the library calls."""
    assert fit_timeout(configured, remaining, margin=2.0, reserve=5.0) == pytest.approx(expected)


class FakeNvml:
    """Stands in for gpu_core.nvml_lib.Nvml: an init that fails the first time (the driver is
    still loading), every device then ready."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def init(self, flags: int = 0) -> None:
        from gpu_core.nvml_lib import NvmlError

        self.calls.append("init")
        if len(self.calls) == 1:
            raise NvmlError(9, "Driver Not Loaded", "nvmlInitWithFlags")

    def shutdown(self) -> None:
        self.calls.append("shutdown")

    def handle_by_uuid(self, uuid: str) -> str:
        return uuid

    def memory_info(self, handle: str) -> object:
        return object()


class TestNvmlProbe:
    def test_failed_init_answers_every_device_and_is_retried(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An NVML that cannot initialise yet makes every device not ready with init's
        message, and the next poll initialises again."""
        from gpu_core import nvml_lib

        calls: list[str] = []
        monkeypatch.setattr(nvml_lib, "open_nvml", lambda library: FakeNvml(calls))
        with readiness.NvmlProbe() as probe:
            first = probe(["GPU-a", "GPU-b"])
            second = probe(["GPU-a"])
        assert first == {uuid: Answer(False, "nvmlInitWithFlags: Driver Not Loaded "
                                             "(NVML error 9)") for uuid in ("GPU-a", "GPU-b")}
        assert second == {"GPU-a": readiness.READY}
        assert calls == ["init", "init", "shutdown"]


@pytest.fixture(scope="module")
def sim_host(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A simulated dgx-a100 whose faults each test sets."""
    from simulator.testing import build_host

    return build_host("dgx-a100", tmp_path_factory.mktemp("sim") / "host")


def gpu_uuids(host: Any) -> list[str]:
    return [gpu["uuid"] for gpu in host.topology["gpus"]]


class TestNvmlProbeOnSimulatedHost:
    def test_healthy_gpus_are_ready(self, sim_host: Any) -> None:
        """Every simulated GPU answers by UUID with readable memory info."""
        sim_host.set_faults()
        with readiness.NvmlProbe(str(sim_host.nvml_library)) as probe:
            answers = probe(gpu_uuids(sim_host))
        assert set(answers.values()) == {readiness.READY}

    def test_unknown_uuid_is_not_found(self, sim_host: Any) -> None:
        """A UUID NVML does not know is answered with NOT_FOUND's code."""
        sim_host.set_faults()
        uuid = "GPU-00000000-0000-0000-0000-000000000000"
        with readiness.NvmlProbe(str(sim_host.nvml_library)) as probe:
            answer = probe([uuid])[uuid]
        assert not answer.ready and answer.detail.startswith("nvmlDeviceGetHandleByUUID: ")
        assert answer.detail.endswith("(NVML error 6)")

    def test_lost_gpu_is_not_ready(self, sim_host: Any) -> None:
        """gpu-lost makes that GPU answer GPU_IS_LOST (15) and leaves the others ready."""
        sim_host.set_faults("gpu-lost=1")
        uuids = gpu_uuids(sim_host)[:2]
        with readiness.NvmlProbe(str(sim_host.nvml_library)) as probe:
            answers = probe(uuids)
        assert answers[uuids[0]] == readiness.READY
        assert not answers[uuids[1]].ready
        assert answers[uuids[1]].detail.endswith("(NVML error 15)")

    def test_not_ready_devices_become_ready_through_the_loop(self, sim_host: Any) -> None:
        """nvml-not-ready=3 fails three handle lookups; the real loop then succeeds."""
        sim_host.set_faults("nvml-not-ready=3")
        uuid = gpu_uuids(sim_host)[0]
        clock = FakeClock()
        with readiness.NvmlProbe(str(sim_host.nvml_library)) as probe:
            outcome = wait_ready({uuid: "GPU 0"}, probe, 5.0, 0.1, clock=clock,
                                 sleep=clock.sleep)
        assert (outcome.polls, outcome.waited_for) == (4, ("GPU 0",))
