"""``gpu-ctk metrics`` end to end: real GPU starts through the shim and runc on the simulated
DGX A100 with MIG, a readiness delay and transient ``nvc_init`` failures injected, the file
served by Debian's ``prometheus-node-exporter`` (textfile collector) on a loopback port and
scraped over HTTP; ``promtool check metrics`` on the file; log rotation between collections.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
import yaml
from containers import Bundle, Runtime
from debian_tools import debian_tool

if TYPE_CHECKING:
    from simulator.testing import SimHost

pytestmark = pytest.mark.e2e

MakeBundle = Callable[..., Bundle]
MakeRuntime = Callable[..., Runtime]
WriteConfig = Callable[[str], Path]
SimHostFactory = Callable[..., "SimHost"]

P = "gpu_container_shim_"
SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def node_exporter(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """node_exporter with only the textfile collector, on a free loopback port: (textfile
    directory, metrics URL). Stopped at the end of the test."""
    directory = tmp_path / "textfile"
    directory.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [debian_tool("prometheus-node-exporter"), f"--web.listen-address=127.0.0.1:{port}",
         f"--collector.textfile.directory={directory}", "--collector.disable-defaults",
         "--collector.textfile"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        for _ in range(200):  # until it listens; each try is one short connect
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                time.sleep(0.05)
        yield directory, url
    finally:
        process.terminate()
        process.wait(timeout=10)


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample node_exporter serves: (name, labels) -> value."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = frozenset(LABEL.findall(match["labels"] or ""))
            samples[(match["name"], labels)] = float(match["value"])
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return samples.get((P + name, frozenset(labels.items())), 0.0)


def shim_on(host: SimHost, make_runtime: MakeRuntime, write_config: WriteConfig,
            log: Path, **sections: dict[str, Any]) -> Runtime:
    document = yaml.safe_load(host.config_path.read_text())
    for name, values in sections.items():
        document.setdefault(name, {}).update(values)
    document["runtimes"] = ["runc"]
    document.setdefault("log", {})["file"] = str(log)
    return make_runtime(write_config(yaml.safe_dump(document)), "runc")


def collect(runtime: Runtime, textfile: Path, state: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ctk.main", "metrics", "--textfile", str(textfile),
         "--state", str(state)], capture_output=True, text=True, check=False,
        env={**os.environ, "GPU_CONTAINER_SHIM_CONFIG": str(runtime.config)})
    assert result.returncode == 0, result.stderr


def test_scraped_metrics_match_the_starts_and_survive_rotation(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, node_exporter: tuple[Path, str], tmp_path: Path) -> None:
    """Two GPU starts (the first waits 4 polls for GPU 2 and retries nvc_init twice), one
    request failure, one MIG container created (its hook ran) and holding its lease:
    node_exporter serves exactly those numbers; promtool finds the file clean; after the log is
    rotated with lines not yet collected, the next collection counts each start once."""
    directory, url = node_exporter
    host = sim_host_factory("dgx-a100-mig", faults=["nvml-not-ready=3",
                                                    "nvc-init-transient=2"])
    log = tmp_path / "log" / "gpu-container-shim.log"
    runtime = shim_on(host, make_runtime, write_config, log,
                      readiness={"timeout": 10, "interval": 0.02},
                      retry={"initial_backoff": 0.02, "max_backoff": 0.05})
    textfile, state = directory / "gpu-container-shim.prom", tmp_path / "state.json"
    gpu2 = ["NVIDIA_VISIBLE_DEVICES=2"]
    for _ in range(2):
        assert runtime.run(make_bundle(env=gpu2)).returncode == 0
    failed = runtime.run(make_bundle(env=["NVIDIA_VISIBLE_DEVICES=9"]))
    assert "request: unknown device 9" in failed.stderr
    mig = make_bundle(env=["NVIDIA_VISIBLE_DEVICES=mig-1g.10gb"])
    with open(tmp_path / "holder.out", "wb") as out:  # the container keeps its own copy
        created = subprocess.run(runtime.command(["create", "--bundle", str(mig.path),
                                                  "holder"]), stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=out, env=runtime.env(), check=False)
    runtime.started.append("holder")
    assert created.returncode == 0, (tmp_path / "holder.out").read_text()
    collect(runtime, textfile, state)

    samples = scrape(url)
    assert samples[("node_textfile_scrape_error", frozenset())] == 0
    assert value(samples, "gpu_starts_total", component="hook", outcome="ok",
                 stage="none") == 3  # runc runs the prestart hook at create
    assert value(samples, "gpu_starts_total", component="shim", outcome="error",
                 stage="request") == 1
    assert value(samples, "creates_total", gpu="yes", path="python", outcome="ok",
                 stage="none") == 3
    assert value(samples, "retries_total", stage="initialization",
                 error_class="cuda error: unknown error") == 2
    assert value(samples, "retried_starts_total", error_class="cuda error: unknown error",
                 outcome="recovered") == 1
    assert value(samples, "readiness_polls_count", outcome="ready") == 3
    assert value(samples, "readiness_polls_sum", outcome="ready") == 4 + 1 + 1
    assert value(samples, "readiness_device_waits_total", device="GPU 2", outcome="ready") == 1
    assert value(samples, "phase_duration_seconds_count", component="hook",
                 phase="initialization") == 3
    assert value(samples, "phase_duration_seconds_count", component="shim",
                 phase="discovery") == 3
    assert value(samples, "mig_instances", profile="1g.10gb", state="total") == 7
    assert value(samples, "mig_instances", profile="1g.10gb", state="leased") == 1
    assert value(samples, "mig_instances", profile="3g.40gb", state="total") == 2
    assert value(samples, "config_valid") == 1
    assert os.stat(textfile).st_mode & 0o777 == 0o644
    check = subprocess.run([debian_tool("promtool"), "check", "metrics"],
                           input=textfile.read_text(), capture_output=True, text=True, check=False)
    assert (check.returncode, check.stdout + check.stderr) == (0, "")

    assert runtime.run(make_bundle(env=gpu2)).returncode == 0  # before the rotation
    log.rename(log.with_name(log.name + ".1"))
    assert runtime.run(make_bundle(env=gpu2)).returncode == 0  # into a new log
    collect(runtime, textfile, state)
    collect(runtime, textfile, state)  # nothing new: nothing counted again
    samples = scrape(url)
    assert value(samples, "gpu_starts_total", component="hook", outcome="ok",
                 stage="none") == 5
    assert value(samples, "retries_total", stage="initialization",
                 error_class="cuda error: unknown error") == 2
    assert value(samples, "log_rotations_total", outcome="followed") == 1
    assert value(samples, "readiness_polls_count", outcome="ready") == 5
