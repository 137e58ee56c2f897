"""What the packages ship for metrics: the systemd timer and service (disabled), the example
alert rules (promtool check and unit-tested firing), and the Grafana dashboard (every query
parses with promtool and names metrics gpu-ctk metrics writes; every panel in the README)."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from debian_tools import debian_tool

from ctk.metrics_text import HELP

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
RULES = PACKAGING / "prometheus" / "gpu-container-shim-alerts.yml"
DASHBOARD = PACKAGING / "grafana" / "gpu-container-shim.json"
UNITS = ("gpu-container-shim-metrics.service", "gpu-container-shim-metrics.timer")
OURS = re.compile(r"\bgpu_container_shim_\w+")


def promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([debian_tool("promtool"), *args], capture_output=True, text=True,
                          check=False, cwd=cwd)


def dashboard_queries() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in document["panels"] for target in panel["targets"]]


def known(name: str) -> bool:
    short = name.removeprefix("gpu_container_shim_")
    return any(short in (base, f"{base}_bucket", f"{base}_sum", f"{base}_count")
               for base in HELP)


def test_alert_rules_pass_promtool_check_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 2 rules found" in done.stdout


def series(name: str, per_minute: int, **labels: str) -> dict[str, str]:
    inner = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"gpu_container_shim_{name}{{{inner}}}", "values": f"0+{per_minute}x30"}


def alert(name: str, summary: str, description: str) -> dict[str, object]:
    return {"eval_time": "20m", "alertname": name, "exp_alerts": [
        {"exp_labels": {"severity": "warning", "instance": "n1"},
         "exp_annotations": {"summary": summary, "description": description}}]}


def alert_tests() -> dict[str, object]:
    """n1: readiness p95 near 5 s and 10 retries a minute; n2: fast, one retry a minute."""
    wait = "readiness_wait_seconds_bucket"
    return {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            series(wait, 1, instance="n1", outcome="ready", le="2.5"),
            series(wait, 10, instance="n1", outcome="ready", le="5"),
            series(wait, 10, instance="n1", outcome="ready", le="+Inf"),
            series(wait, 10, instance="n2", outcome="ready", le="0.1"),
            series(wait, 10, instance="n2", outcome="ready", le="+Inf"),
            series("retries_total", 10, instance="n1", stage="initialization",
                   error_class="driver rpc error: timed out"),
            series("retries_total", 1, instance="n2", stage="mount",
                   error_class="device or resource busy")],
        "alert_rule_test": [
            alert("GpuReadinessWaitSlow", "GPU readiness waits are long on n1",
                  "Containers on n1 wait for their GPUs to answer NVML (p95 above 2 s, or "
                  "waits that timed out). See gpu_container_shim_readiness_device_waits_total "
                  "for the devices, and gpu-ctk stats on the node."),
            alert("GpuLibraryRetryStorm", "libnvidia-container retry storm on n1",
                  "50 retries in 5 minutes. gpu_container_shim_retries_total names the stage "
                  "and the error class; retried_starts_total says whether the starts "
                  "recovered.")]}]}


def test_alert_rules_fire_for_slow_readiness_and_retry_storms_only(tmp_path: Path) -> None:
    """promtool's rule unit test: n1 (readiness p95 near 5 s, 10 retries a minute) fires both
    alerts; n2 (fast readiness, one retry a minute) fires neither."""
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(yaml.safe_dump(alert_tests()))
    done = promtool("test", "rules", str(tests))
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_queries_parse_and_name_only_our_metrics(tmp_path: Path) -> None:
    """Each panel query, with Grafana's variables filled in, is valid PromQL to promtool, and
    every metric it names is one gpu-ctk metrics writes."""
    queries = dashboard_queries()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{n}",
         "expr": q.replace("$__rate_interval", "5m").replace("$instance", ".*")}
        for n, q in enumerate(queries)]}]}
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    names = {name for query in queries for name in OURS.findall(query)}
    assert names and [name for name in names if not known(name)] == []


def test_every_panel_is_explained_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    titles = [panel["title"] for panel in json.loads(DASHBOARD.read_text())["panels"]]
    assert [title for title in titles if f"**{title}**" not in section] == []


def test_units_verify_clean_with_systemd_analyze(tmp_path: Path) -> None:
    """systemd-analyze verify in a root holding the units, a gpu-ctk and the system's targets:
    no unknown keys, the command exists, the timer's unit resolves."""
    units = tmp_path / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    for pattern in ("*.target", "*.slice"):
        for source in Path("/lib/systemd/system").glob(pattern):
            if source.is_file():
                shutil.copy(source, units / source.name)
    for name in UNITS:
        shutil.copy(PACKAGING / "systemd" / name, units / name)
    command = tmp_path / "usr/bin/gpu-ctk"
    command.parent.mkdir(parents=True)
    command.write_text("#!/bin/sh\n")
    command.chmod(0o755)
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={tmp_path}",
                           *(str(units / name) for name in UNITS)],
                          capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_service_writes_into_node_exporters_textfile_directory() -> None:
    service = (PACKAGING / "systemd" / UNITS[0]).read_text()
    [start] = [line for line in service.splitlines() if line.startswith("ExecStart=")]
    assert start.startswith("ExecStart=/usr/bin/gpu-ctk metrics --textfile "
                            "/var/lib/prometheus/node-exporter/gpu-container-shim.prom ")
    assert "[Install]" not in service  # only the timer is ever enabled


def test_no_maintainer_script_enables_the_timer() -> None:
    """Shipped disabled: no script enables or starts it (disable on removal is fine)."""
    scripts = [path.read_text() for path in (PACKAGING / "scripts").rglob("*")
               if path.is_file()]
    assert not any(re.search(r"systemctl (enable|start|restart)|deb-systemd-helper", text)
                   for text in scripts)


def test_the_deb_ships_units_dashboard_and_rules(packages: dict[str, Path]) -> None:
    done = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(packages["deb"])],
                          capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        names = {"/" + name.lstrip("./") for name in archive.getnames()}
        links = [m.name for m in archive.getmembers() if m.issym() and "wants" in m.name]
    for name in UNITS:
        assert f"/usr/lib/systemd/system/{name}" in names
    assert "/usr/share/gpu-container-shim/grafana/gpu-container-shim.json" in names
    assert "/usr/share/gpu-container-shim/prometheus/gpu-container-shim-alerts.yml" in names
    assert links == []


@pytest.fixture(scope="module", autouse=True)
def _promtool_installed() -> None:
    debian_tool("promtool")  # fails the module at once, naming the bootstrap step, when absent
