"""The checks of ``gpu-ctk doctor``: each a small function of the host's facts
(``ctk.host_facts.Host``) returning findings (status, what is wrong, why it matters, the command
that fixes it); ``CHECKS`` is the table, in report order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ctk.host_facts import (
    RUNTIME_NAME,
    Host,
    Node,
    cgroup_layout,
    containerd_ours,
    containerd_runtimes,
    docker_cgroup_driver,
    docker_runtimes,
    node_driver,
    read_text,
    runtime_options,
)
from gpu_core.errors import ShimError, one_line

if TYPE_CHECKING:
    from leases.allocation import Lease

OK, WARN, FAIL = "ok", "warn", "fail"
CONFIGURE_FIX = "gpu-ctk runtime configure --runtime {engine}"
"""How to point an engine at our runtime (``gpu-ctk runtime configure``)."""
DEV_CHAR_FIX = "gpu-ctk doctor --create-dev-char-links"

NVML_GPU_IS_LOST = 15
NVML_ADVICE: dict[int, tuple[str, str]] = {
    9: ("the NVIDIA kernel module is not loaded", "modprobe nvidia"),
    12: ("libnvidia-ml.so.1 is not installed or not found",
         "install the NVIDIA driver's user-space libraries, or set nvml.library in the "
         "configuration"),
    18: ("the driver's libraries and the loaded kernel module differ in version (the driver "
         "was upgraded without a reboot)", "reboot, or unload and reload the nvidia modules"),
}
"""NVML init error code -> (meaning, fix)."""


@dataclass(frozen=True)
class Finding:
    """One line of the report: ``status`` is ok, warn or fail; ``why`` and ``fix`` are '' for
    ok findings."""

    check: str
    status: str
    what: str
    why: str = ""
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status, "what": self.what, "why": self.why,
                "fix": self.fix}


def gpus(count: int) -> str:
    return f"{count} GPU" + ("" if count == 1 else "s")


# --- the checks ----------------------------------------------------------------------------------

def check_config(host: Host) -> list[Finding]:
    config, error = host.config_and_error
    if error is not None:
        return [Finding("config", FAIL, one_line(f"configuration {error.cause}"),
                        "every shim and hook call fails closed on an invalid configuration: no "
                        "GPU container starts", "correct each problem listed, then run gpu-ctk "
                        "doctor again")]
    source = config.source
    what = "no configuration file: documented defaults apply" if source == "<defaults>" \
        else f"configuration {source} is valid"
    return [Finding("config", OK, what)]


def check_hook(host: Host) -> list[Finding]:
    if host.config.mode == "spec":
        return check_spec_hook(host)
    path = host.config.hook.path
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return [Finding("hook", OK, f"hook {path} is executable")]
    return [Finding("hook", FAIL, f"hook {path} is missing or not executable",
                    "the shim injects it into every GPU container, and runc then fails the start "
                    "with 'error running hook'",
                    "install gpu-container-shim (it ships /usr/bin/gpu-container-hook), or set "
                    f"hook.path in {host.config.source}")]


def check_spec_hook(host: Host) -> list[Finding]:
    """Spec mode (README §Spec mode): the spec hook the shim registers, and the host ldconfig it
    runs, which must be a static executable."""
    from spec_hook.ldconfig import open_host

    spec = host.config.spec
    path = spec.hook_path
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return [Finding("hook", FAIL, f"spec hook {path} is missing or not executable",
                        "in spec mode the shim registers it in every GPU container, and the "
                        "runtime then fails the start with 'error running hook'",
                        "install gpu-container-shim (it ships /usr/bin/gpu-container-spec-hook), "
                        f"or set spec.hook_path in {host.config.source}")]
    try:
        os.close(open_host(spec.ldconfig))
    except ShimError as error:
        return [Finding("hook", FAIL, one_line(f"spec.ldconfig {error.cause}"),
                        "the spec hook refuses it, so every spec-mode GPU start fails",
                        "point spec.ldconfig at the host's static ldconfig (/sbin/ldconfig, "
                        "or /sbin/ldconfig.real where /sbin/ldconfig is a wrapper script)")]
    return [Finding("hook", OK, f"spec mode: spec hook {path} is executable, "
                                f"ldconfig {spec.ldconfig} is static")]


def check_runtime(host: Host) -> list[Finding]:
    from runtime_shim import lowlevel

    try:
        found = lowlevel.find(host.config.runtimes)
    except ShimError as error:
        return [Finding("runtime", FAIL, error.cause,
                        "the shim hands every call to it; without one no container starts",
                        "apt-get install runc (or set runtimes in the configuration)")]
    return [Finding("runtime", OK, f"low-level runtime {found.path}")]


def check_driver(host: Host) -> list[Finding]:
    module = os.path.join(host.config.host.sysfs_root, "module", "nvidia")
    if not os.path.isdir(module):
        return [Finding("driver", FAIL, f"NVIDIA kernel module not loaded ({module} missing)",
                        "without it there are no GPUs to give to containers",
                        "modprobe nvidia (install the NVIDIA driver first if that fails)")]
    version = (read_text(os.path.join(module, "version")) or "").strip()
    shown = f" ({version})" if version else ""
    return [Finding("driver", OK, f"NVIDIA kernel module loaded{shown}")]


def check_nvml(host: Host) -> list[Finding]:
    report = host.nvml
    if report.error:
        meaning, fix = NVML_ADVICE.get(report.code, ("", "check dmesg and run nvidia-smi"))
        what = f"NVML does not answer: {report.error}" + (f" ({meaning})" if meaning else "")
        return [Finding("nvml", FAIL, what, "discovery, readiness and requirements all ask "
                        "NVML: every GPU container start fails", fix)]
    return [Finding("nvml", OK, f"NVML answers: {gpus(len(report.gpus))}, driver "
                                f"{report.driver}, CUDA {report.cuda}")]


def check_gpus(host: Host) -> list[Finding]:
    report = host.nvml
    if report.error:
        return []
    findings = []
    for gpu in report.gpus:
        if not gpu.error:
            continue
        if gpu.code == NVML_GPU_IS_LOST:
            findings.append(Finding(
                "gpus", FAIL, f"GPU {gpu.index}: {gpu.error}",
                f"GPU {gpu.index} fell off the bus or hung (see Xid 79/48 in dmesg): containers "
                f"asking for it, or for all GPUs, fail to start",
                f"nvidia-smi -r -i {gpu.index} (resets it once nothing uses it), else reboot; "
                "dmesg | grep -i xid shows why"))
        else:
            findings.append(Finding(
                "gpus", FAIL, f"GPU {gpu.index}: NVML says {gpu.error}",
                "containers asking for it, or for all GPUs, fail to start",
                f"nvidia-smi -q -i {gpu.index} and dmesg show more; a reset (nvidia-smi -r -i "
                f"{gpu.index}) or reboot clears most states"))
    return findings or [Finding("gpus", OK, f"all {gpus(len(report.gpus))} answer NVML")]


def check_persistence(host: Host) -> list[Finding]:
    report = host.nvml
    if report.error:
        return []
    off = [gpu.index for gpu in report.gpus if gpu.persistence is False]
    if not off:
        return [Finding("persistence", OK, "persistence mode on for every GPU that answers")]
    return [Finding("persistence", WARN,
                    f"persistence mode off on GPU {', '.join(str(i) for i in off)}",
                    "the driver then tears a GPU down when its last client exits and sets it up "
                    "again on the next open: each container start waits seconds per GPU",
                    "systemctl enable --now nvidia-persistenced (or nvidia-smi -pm 1)")]


def check_libnvc(host: Host) -> list[Finding]:
    loaded, error, seen = host.libnvc
    cli = host.config.libnvidia_container.cli
    if not loaded:
        if cli:
            return [Finding("libnvidia-container", WARN, error,
                            f"the hook falls back to {cli}, which retries less precisely",
                            "install libnvidia-container1 (or set libnvidia_container.library)")]
        return [Finding("libnvidia-container", FAIL, error,
                        "the hook mounts the driver through it: every GPU container start fails",
                        "install libnvidia-container1 1.x (or set libnvidia_container.library)")]
    if error:
        return [Finding("libnvidia-container", FAIL, f"{loaded}: {error}",
                        "the hook's first call fails the same way (retried, then the start "
                        "fails)", "check dmesg and nvidia-smi; a driver RPC error usually needs "
                        "the driver reloaded or the node rebooted")]
    expected = len(host.nvml.gpus)
    if not host.nvml.error and seen != expected:
        return [Finding("libnvidia-container", WARN, f"{loaded} sees {gpus(seen)}, NVML "
                                                     f"{expected}",
                        "a GPU NVML lists but the library lacks fails the hook's mount",
                        "check that both come from the same driver (nvml.library, "
                        "host.driver_root)")]
    return [Finding("libnvidia-container", OK, f"{loaded}: ABI supported, initialises, sees "
                                               f"{gpus(seen)}")]


def check_nodes(host: Host) -> list[Finding]:
    dev_root = host.config.host.dev_root
    majors, nodes = host.majors, {node.name: node for node in host.nodes}
    findings = []
    wanted = [("nvidiactl", "nvidia-modprobe -c 0")]
    wanted += [(f"nvidia{gpu.minor}", f"nvidia-modprobe -c {gpu.minor}")
               for gpu in host.nvml.gpus if gpu.minor is not None]
    if "nvidia-uvm" in majors or not majors:
        wanted.append(("nvidia-uvm", "nvidia-modprobe -u -c 0"))
    else:
        findings.append(Finding("nodes", FAIL, "the nvidia-uvm module is not loaded (no "
                                "nvidia-uvm in /proc/devices)", "CUDA needs /dev/nvidia-uvm: "
                                "compute containers start but find no device", "modprobe "
                                "nvidia-uvm"))
    for name, fix in wanted:
        if name not in nodes:
            findings.append(Finding("nodes", FAIL, f"{os.path.join(dev_root, name)} is missing",
                                    "the shim refuses GPUs whose node is missing, and CUDA "
                                    "needs the control nodes", fix))
    for node in nodes.values():
        driver = node_driver(node.name)
        major = majors.get(driver)
        if major is not None and node.major != major:
            path = os.path.join(dev_root, node.name)
            findings.append(Finding(
                "nodes", FAIL, f"{path} is {node.major}:{node.minor} but {driver} has major "
                               f"{major} now", "a node left from before the module was reloaded "
                               "points at nothing (or at another driver): opening it fails",
                f"rm {path}; nvidia-modprobe creates it again with the right numbers"))
    if findings:
        return findings
    shown = ", ".join(f"{d} {majors[d]}" for d in ("nvidia-frontend", "nvidia-uvm",
                                                    "nvidia-caps") if d in majors)
    return [Finding("nodes", OK, f"{len(nodes)} NVIDIA device nodes in {dev_root}; majors match "
                                 f"/proc/devices ({shown or 'not listed'})")]


def check_cgroup(host: Host) -> list[Finding]:
    layout = cgroup_layout(host.mountinfo)
    text = {"v2": "cgroup v2 (unified): device access is an eBPF program the runtime builds from "
                  "config.json",
            "v1": "cgroup v1: device access through the devices controller",
            "hybrid": "cgroup v1 with a v2 mount (hybrid): devices controller on v1; crun "
                      "refuses this layout, runc works",
            "none": "no cgroup mounts under /sys/fs/cgroup"}[layout]
    status = WARN if layout == "none" else OK
    return [Finding("cgroup", status, text,
                    "runtimes need a cgroup hierarchy to start containers" if status == WARN
                    else "", "mount cgroup2 on /sys/fs/cgroup" if status == WARN else "")]


def engine_cgroup_drivers(host: Host) -> list[tuple[str, str]]:
    """(what, driver) for each configured engine/runtime: Docker's native.cgroupdriver and
    containerd's SystemdCgroup of each runtime of ours."""
    drivers = []
    layout = cgroup_layout(host.mountinfo)
    if host.docker.exists and not host.docker.error:
        drivers.append(("docker", docker_cgroup_driver(host.docker.data, layout,
                                                       host.systemd_init)))
    if host.containerd.exists and not host.containerd.error:
        _, runtimes = containerd_runtimes(host.containerd.data)
        for name, table in runtimes.items():
            if containerd_ours(table):
                systemd = runtime_options(table).get("SystemdCgroup") is True
                drivers.append((f"containerd runtime {name}", "systemd" if systemd
                                else "cgroupfs"))
    return drivers


def check_cgroup_driver(host: Host) -> list[Finding]:
    findings = []
    if host.containerd.exists and not host.containerd.error:
        default, runtimes = containerd_runtimes(host.containerd.data)
        base = runtime_options(runtimes.get(default, {})).get("SystemdCgroup") is True
        for name, table in runtimes.items():
            mine = runtime_options(table).get("SystemdCgroup") is True
            if containerd_ours(table) and mine != base:
                findings.append(Finding(
                    "cgroup-driver", FAIL,
                    f"containerd runtime {name} has SystemdCgroup = {str(mine).lower()}, the "
                    f"default runtime {default} {str(base).lower()}",
                    "the kubelet's cgroupDriver matches one of them: pods of the other runtime "
                    "class fail ('expected cgroupsPath to be of format slice:prefix:name') or "
                    "escape the pod's cgroup",
                    f"set SystemdCgroup = {str(base).lower()} in [...runtimes.{name}.options] of "
                    f"{host.containerd.path}, then systemctl restart containerd"))
    drivers = engine_cgroup_drivers(host)
    if cgroup_layout(host.mountinfo) == "v2" and host.systemd_init:
        for what, driver in drivers:
            if driver == "cgroupfs":
                findings.append(Finding(
                    "cgroup-driver", WARN, f"{what} uses the cgroupfs driver on cgroup v2 under "
                    "systemd", "two managers of one hierarchy: systemd may move or remove what "
                    "the runtime set up", "docker: \"exec-opts\": [\"native.cgroupdriver="
                    "systemd\"] in daemon.json; containerd: SystemdCgroup = true"))
    if findings:
        return findings
    shown = ", ".join(f"{what}: {driver}" for what, driver in drivers) or \
        "no engine configured for our runtime"
    return [Finding("cgroup-driver", OK, f"cgroup drivers consistent ({shown})")]


def check_engines(host: Host) -> list[Finding]:
    findings = []
    configured = []
    for engine, file in (("docker", host.docker), ("containerd", host.containerd)):
        if file.error:
            findings.append(Finding("engines", WARN, f"{file.path}: {file.error}",
                                    f"{engine} refuses a configuration it cannot parse",
                                    f"correct {file.path}"))
            continue
        if not file.exists:
            continue
        if engine == "docker":
            names = docker_runtimes(file.data)
            default = str(file.data.get("default-runtime", "runc"))
        else:
            default, runtimes = containerd_runtimes(file.data)
            names = sorted(n for n, t in runtimes.items() if containerd_ours(t))
        configured += [f"{engine} runtime {n}{' (default)' if n == default else ''}"
                       for n in names]
    if not configured:
        engines = [e for e, f in (("docker", host.docker), ("containerd", host.containerd))
                   if f.exists] or ["docker", "containerd"]
        findings.append(Finding("engines", WARN, f"no engine is configured for {RUNTIME_NAME} "
                                f"(read {host.docker.path}, {host.containerd.path})",
                                "containers start without the shim: no GPU, or NVIDIA's own "
                                "runtime instead", ", or ".join(CONFIGURE_FIX.format(engine=e)
                                                              for e in engines)))
    return findings or [Finding("engines", OK, "configured: " + ", ".join(configured))]


def check_dev_char(host: Host) -> list[Finding]:
    dev_root = host.config.host.dev_root
    missing = [node for node in host.nodes if not _links_to(dev_root, node)]
    if not missing:
        return [Finding("dev-char", OK, f"/dev/char links present for {len(host.nodes)} NVIDIA "
                                        "nodes")]
    systemd = [what for what, driver in engine_cgroup_drivers(host) if driver == "systemd"]
    what = f"{len(missing)} NVIDIA nodes lack their {dev_root}/char/<major>:<minor> link " \
        f"({', '.join(n.name for n in missing[:4])}{', ...' if len(missing) > 4 else ''})"
    if not systemd:
        return [Finding("dev-char", OK, what + "; needed only with the systemd cgroup driver, "
                                               "which no engine of ours uses")]
    return [Finding("dev-char", WARN, what, f"{', '.join(systemd)} uses the systemd cgroup "
                    "driver: systemd grants DeviceAllow= through /dev/char/<major>:<minor>, and "
                    "without the link it drops the rule (GPUs vanish after daemon-reload)",
                    DEV_CHAR_FIX)]


def _links_to(dev_root: str, node: Node) -> bool:
    link = os.path.join(dev_root, "char", f"{node.major}:{node.minor}")
    try:
        return os.path.samefile(link, os.path.join(dev_root, node.name))
    except OSError:
        return False


def check_leases(host: Host) -> list[Finding]:
    try:
        snapshot, reasons = host.leases
    except ShimError as error:
        return [Finding("leases", WARN, error.cause, "MIG profile requests cannot be served "
                        "while the store is unreadable", "check mig.lease_dir's permissions")]
    stale: list[Lease] = [lease for lease in snapshot.leases if reasons.get(lease.container_id)]
    findings = []
    if stale:
        holders = ", ".join(f"{lease.container_id} ({len(lease.devices)} MIG)"
                            for lease in stale[:5])
        findings.append(Finding("leases", WARN, f"{len(stale)} stale MIG leases: {holders}",
                                "their devices are reclaimed only at the next MIG allocation; "
                                "until then gpu-ctk leases list shows them held",
                                "gpu-ctk leases gc"))
    if snapshot.problems:
        findings.append(Finding("leases", WARN, "; ".join(snapshot.problems[:3]),
                                "a killed writer left these behind", "gpu-ctk leases gc"))
    live = len(snapshot.leases) - len(stale)
    return findings or [Finding("leases", OK, f"{live} live MIG leases, none stale")]


Check = Callable[[Host], "list[Finding]"]
"""One check: the host's facts in, its findings out (at least one when it ran)."""

CHECKS: tuple[tuple[str, Check], ...] = (
    ("config", check_config),
    ("hook", check_hook),
    ("runtime", check_runtime),
    ("driver", check_driver),
    ("nvml", check_nvml),
    ("gpus", check_gpus),
    ("persistence", check_persistence),
    ("libnvidia-container", check_libnvc),
    ("nodes", check_nodes),
    ("cgroup", check_cgroup),
    ("cgroup-driver", check_cgroup_driver),
    ("engines", check_engines),
    ("dev-char", check_dev_char),
    ("leases", check_leases),
)
"""Every check, in report order."""


def run_checks(host: Host, checks: Sequence[tuple[str, Check]] = CHECKS) -> list[Finding]:
    """All findings; a check that raises becomes a failed finding naming it, never a crash."""
    findings: list[Finding] = []
    for name, check in checks:
        try:
            findings += check(host)
        except ShimError as error:
            findings.append(Finding(name, FAIL, f"{error.stage}: {error.cause}",
                                    "the check itself could not complete", ""))
        except Exception as error:  # one broken check must not hide the others' findings
            findings.append(Finding(name, FAIL, one_line(f"{type(error).__name__}: {error}"),
                                    "the check itself could not complete",
                                    "report this as a gpu-ctk bug"))
    return findings
