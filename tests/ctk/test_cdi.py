"""``gpu-ctk cdi generate``: names, nodes and mounts of the spec, CDI's rules, output handling."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
import yaml

from ctk import cdi
from ctk.main import main
from gpu_core.errors import ShimError
from gpu_core.testing import fake_inventory, gpu_uuid, mig_uuid
from libnvc_bindings import DeviceNode as NvcNode
from libnvc_bindings import DriverInfo

if TYPE_CHECKING:
    from simulator.testing import SimHost

SimHostFactory = Callable[..., "SimHost"]

# The CDI spec's JSON schema, written here from the specification (cncf-tags/container-device-
# interface, schema/schema.json and defs.json at v0.8.0): the fields an 0.5.0-0.8.0 reader accepts.
_STRINGS = {"type": "array", "items": {"type": "string"}}
_EDITS = {
    "type": "object",
    "properties": {
        "env": _STRINGS,
        "deviceNodes": {"type": "array", "items": {
            "type": "object",
            "properties": {
                "path": {"type": "string"}, "hostPath": {"type": "string"},
                "type": {"type": "string"}, "permissions": {"type": "string"},
                "major": {"type": "integer"}, "minor": {"type": "integer"},
                "uid": {"type": "integer", "minimum": 0, "maximum": 4294967295},
                "gid": {"type": "integer", "minimum": 0, "maximum": 4294967295},
            },
            "required": ["path"]}},
        "mounts": {"type": "array", "items": {
            "type": "object",
            "properties": {"hostPath": {"type": "string"}, "containerPath": {"type": "string"},
                           "options": _STRINGS, "type": {"type": "string"}},
            "required": ["hostPath", "containerPath"]}},
        "hooks": {"type": "array", "items": {
            "type": "object",
            "properties": {"hookName": {"type": "string"}, "path": {"type": "string"},
                           "args": _STRINGS, "env": _STRINGS,
                           "timeout": {"type": "integer", "minimum": 0}},
            "required": ["hookName", "path"]}},
    },
}
CDI_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "cdiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "devices": {"type": "array", "items": {
            "type": "object",
            "properties": {"name": {"type": "string"},
                           "annotations": {"type": "object"},
                           "containerEdits": _EDITS},
            "required": ["name", "containerEdits"],
            "additionalProperties": False}},
        "containerEdits": _EDITS,
    },
    "required": ["cdiVersion", "kind", "devices"],
    "additionalProperties": False,
}
KIND_PART = re.compile(r"[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?")
DEVICE_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?")
SEMVER = re.compile(r"0\.[5-8]\.0")


def cdi_problems(spec: Any) -> list[str]:
    """Schema violations plus the CDI rules a schema cannot say (kind, names, versions)."""
    import jsonschema

    problems = [f"{list(e.absolute_path)}: {e.message}"
                for e in jsonschema.Draft7Validator(CDI_SCHEMA).iter_errors(spec)]
    if problems:
        return problems
    vendor, _, device_class = spec["kind"].partition("/")
    if not (KIND_PART.fullmatch(vendor) and KIND_PART.fullmatch(device_class)):
        problems.append(f"kind {spec['kind']!r}")
    if not SEMVER.fullmatch(spec["cdiVersion"]):
        problems.append(f"cdiVersion {spec['cdiVersion']!r}")
    names = [device["name"] for device in spec["devices"]]
    problems += [f"name {n!r}" for n in names if not DEVICE_NAME.fullmatch(n)]
    if len(set(names)) != len(names):
        problems.append("duplicate device names")
    edits = [spec.get("containerEdits", {})] + [d["containerEdits"] for d in spec["devices"]]
    for edit in edits:
        for node in edit.get("deviceNodes", []):
            if not node["path"].startswith("/dev/") or node.get("type", "c") != "c":
                problems.append(f"node {node}")
        for mount in edit.get("mounts", []):
            if not (mount["hostPath"].startswith("/") and mount["containerPath"].startswith("/")):
                problems.append(f"mount {mount}")
    return problems


def generate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["cdi", "generate", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def host_of(sim_host_factory: SimHostFactory,
            monkeypatch: pytest.MonkeyPatch) -> Callable[[str], SimHost]:
    def build(topology: str) -> SimHost:
        host = sim_host_factory(topology)
        monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(host.config_path))
        return host
    return build


@pytest.mark.parametrize("topology", ["t4", "dgx-a100-mig"])
def test_generated_spec_is_valid_cdi(host_of: Callable[[str], SimHost], topology: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The JSON output of each simulated host passes the CDI schema and its naming rules."""
    host_of(topology)
    status, out, _ = generate(capsys, "--format", "json")
    assert status == 0
    assert cdi_problems(json.loads(out)) == []


def test_names_cover_indices_uuids_mig_and_all(host_of: Callable[[str], SimHost],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Per GPU its index and UUID, per MIG device <gpu>:<mig> and its UUID, then all."""
    host = host_of("dgx-a100-mig")
    _, out, _ = generate(capsys, "--format", "json")
    names = [d["name"] for d in json.loads(out)["devices"]]
    expected: list[str] = []
    for gpu in host.topology["gpus"]:
        expected += [str(gpu["index"]), gpu["uuid"]]
        for slot, mig in enumerate(gpu["mig"]["devices"]):
            expected += [f"{gpu['index']}:{slot}", mig["uuid"]]
    assert names == [*expected, "all"]


def test_mig_device_brings_parent_and_access_capabilities(
        host_of: Callable[[str], SimHost], capsys: pytest.CaptureFixture[str]) -> None:
    """MIG 0:0 names /dev/nvidia0 and its GPU- and compute-instance capability nodes."""
    host = host_of("dgx-a100-mig")
    _, out, _ = generate(capsys, "--format", "json")
    devices = {d["name"]: d["containerEdits"]["deviceNodes"] for d in json.loads(out)["devices"]}
    mig = host.topology["gpus"][0]["mig"]["devices"][0]
    wanted = [("/dev/nvidia0", 195, 0)] + [
        (f"/dev/nvidia-caps/nvidia-cap{m}", 509, m) for m in (mig["gi_cap_minor"],
                                                              mig["ci_cap_minor"])]
    assert [(n["path"], n["major"], n["minor"]) for n in devices["0:0"]] == wanted
    assert devices[mig["uuid"]] == devices["0:0"]
    assert devices["0:0"][0]["hostPath"] == f"{host.dev_dir}/nvidia0"


def test_all_holds_every_node_once(host_of: Callable[[str], SimHost],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`all` is the union of every other device's nodes, without repeats."""
    host_of("dgx-a100-mig")
    _, out, _ = generate(capsys, "--format", "json")
    devices = json.loads(out)["devices"]
    union = {n["path"] for d in devices[:-1] for n in d["containerEdits"]["deviceNodes"]}
    paths = [n["path"] for n in devices[-1]["containerEdits"]["deviceNodes"]]
    assert sorted(paths) == sorted(union) and len(paths) == len(set(paths))


def test_common_edits_hold_control_nodes_libraries_and_links(
        host_of: Callable[[str], SimHost], capsys: pytest.CaptureFixture[str]) -> None:
    """Shared edits: void env, control nodes for utility+compute, and each library at its
    versioned name, its SONAME and (libcuda) its dev link (still there for engines that
    apply mounts but not hooks)."""
    host = host_of("t4")
    _, out, _ = generate(capsys, "--format", "json")
    edits = json.loads(out)["containerEdits"]
    libdir = "/usr/lib/x86_64-linux-gnu"
    cuda = f"{host.driver_dir}{libdir}/libcuda.so.535.104.05"
    assert edits["env"] == ["NVIDIA_VISIBLE_DEVICES=void"]
    assert [n["path"] for n in edits["deviceNodes"]] == [
        "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
    mounts = {m["containerPath"]: m["hostPath"] for m in edits["mounts"]}
    assert {mounts[f"{libdir}/{n}"] for n in ("libcuda.so.535.104.05", "libcuda.so.1",
                                              "libcuda.so")} == {cuda}
    assert mounts["/usr/bin/nvidia-smi"] == f"{host.driver_dir}/usr/bin/nvidia-smi"
    assert all(m["options"] == ["ro", "nosuid", "nodev", "bind"] for m in edits["mounts"])
    assert not any("GLX" in path for path in mounts)


def test_common_edits_run_the_spec_hook_at_create_container(
        host_of: Callable[[str], SimHost], capsys: pytest.CaptureFixture[str]) -> None:
    """One createContainer hook, gpu-container-spec-hook at its packaged path, with the
    library directory, libcuda's dev link, the driver version and the driver's
    /proc/driver/nvidia under the driver root, and only an explicit PATH."""
    host = host_of("t4")
    _, out, _ = generate(capsys, "--format", "json")
    [hook] = json.loads(out)["containerEdits"]["hooks"]
    libdir = "/usr/lib/x86_64-linux-gnu"
    configured = (yaml.safe_load(host.config_path.read_text()).get("spec") or {}).get(
        "hook_path", "/usr/bin/gpu-container-spec-hook")
    assert hook["hookName"] == "createContainer"
    assert hook["path"] == configured
    assert hook["env"] == ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    assert hook["args"] == [
        "gpu-container-spec-hook", "--folder", libdir,
        "--link", f"libcuda.so.1::{libdir}/libcuda.so",
        "--driver-version", host.topology["driver_version"],
        "--proc-driver", f"{host.driver_dir}/proc/driver/nvidia"]


def test_hook_path_option_names_another_hook(host_of: Callable[[str], SimHost],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """--hook-path PATH is the hook entry's path; its argv[0] stays the hook's name."""
    host_of("t4")
    _, out, _ = generate(capsys, "--format", "json", "--hook-path", "/opt/gpu/spec-hook")
    [hook] = json.loads(out)["containerEdits"]["hooks"]
    assert (hook["path"], hook["args"][0]) == ("/opt/gpu/spec-hook", "gpu-container-spec-hook")


@pytest.mark.parametrize(("capabilities", "folders", "links"), [
    ("utility", ["/usr/lib64"], []),
    ("utility,compute,video", ["/usr/lib64"],
     ["libcuda.so.1::/usr/lib64/libcuda.so",
      "libnvidia-opticalflow.so.1::/usr/lib64/libnvidia-opticalflow.so"]),
    ("all", ["/usr/lib64"],
     ["libcuda.so.1::/usr/lib64/libcuda.so",
      "libnvidia-opticalflow.so.1::/usr/lib64/libnvidia-opticalflow.so",
      "libGLX_nvidia.so.535.104.05::/usr/lib64/libGLX_indirect.so.0"]),
])
def test_hook_links_follow_the_mounted_libraries(
        host_of: Callable[[str], SimHost], capsys: pytest.CaptureFixture[str],
        capabilities: str, folders: list[str], links: list[str]) -> None:
    """The hook's folders are the directories libraries were mounted in (--lib-dir here) and
    its links are those of the libraries the capabilities brought, no more."""
    host_of("t4")
    _, out, _ = generate(capsys, "--format", "json", "--capabilities", capabilities,
                         "--lib-dir", "/usr/lib64")
    [hook] = json.loads(out)["containerEdits"]["hooks"]
    args = hook["args"]
    assert [args[i + 1] for i, arg in enumerate(args) if arg == "--folder"] == folders
    assert sorted(args[i + 1] for i, arg in enumerate(args) if arg == "--link") == sorted(links)


def test_utility_capability_leaves_out_compute_files(
        host_of: Callable[[str], SimHost], capsys: pytest.CaptureFixture[str]) -> None:
    """--capabilities utility: NVML and nvidia-smi, no libcuda, no uvm nodes."""
    host_of("t4")
    _, out, _ = generate(capsys, "--format", "json", "--capabilities", "utility")
    edits = json.loads(out)["containerEdits"]
    paths = [m["containerPath"] for m in edits["mounts"]]
    assert "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1" in paths
    assert not any("libcuda" in p or "mps" in p for p in paths)
    assert [n["path"] for n in edits["deviceNodes"]] == ["/dev/nvidiactl"]


def test_lib_dir_moves_the_libraries(host_of: Callable[[str], SimHost],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """--lib-dir /usr/lib64 puts every library (and its link names) there."""
    host_of("t4")
    _, out, _ = generate(capsys, "--format", "json", "--lib-dir", "/usr/lib64")
    libs = [m["containerPath"] for m in json.loads(out)["containerEdits"]["mounts"]
            if "/lib" in m["containerPath"]]
    assert libs and all(p.startswith("/usr/lib64/") for p in libs)


def test_yaml_quotes_names_and_reads_back_as_the_json(
        host_of: Callable[[str], SimHost], capsys: pytest.CaptureFixture[str]) -> None:
    """YAML output quotes device names (YAML 1.1 reads 1:0 as 60) and holds the same data."""
    host_of("dgx-a100-mig")
    _, as_json, _ = generate(capsys, "--format", "json")
    _, as_yaml, _ = generate(capsys)
    assert "- name: '1:0'" in as_yaml
    assert "&id" not in as_yaml
    assert as_yaml.startswith("# CDI spec of 8 GPUs")
    assert yaml.safe_load(as_yaml) == json.loads(as_json)


def test_output_is_written_atomically_with_its_format(
        host_of: Callable[[str], SimHost], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """--output FILE.json writes JSON (0644), replaces an old file, leaves no temp file."""
    host_of("t4")
    target = tmp_path / "nvidia.json"
    target.write_text("old")
    status, out, err = generate(capsys, "--output", str(target))
    assert status == 0 and out == ""
    assert err == f"wrote {target}: nvidia.com/gpu, 3 device names\n"
    assert json.loads(target.read_text())["kind"] == "nvidia.com/gpu"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["nvidia.json"]


def test_output_directory_is_created_0755(
        host_of: Callable[[str], SimHost], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """--output /etc/cdi/nvidia.yaml where /etc/cdi does not exist (a fresh Debian 12): the
    missing directories are made 0755 whatever the umask, and the spec is written."""
    host_of("t4")
    target = tmp_path / "etc" / "cdi" / "nvidia.yaml"
    old = os.umask(0o077)
    try:
        status, _, _ = generate(capsys, "--output", str(target))
    finally:
        os.umask(old)
    assert status == 0 and yaml.safe_load(target.read_text())["kind"] == "nvidia.com/gpu"
    for directory in (tmp_path / "etc", tmp_path / "etc" / "cdi"):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o755


@pytest.mark.parametrize("target", ["canary", "dangling"])
def test_symlink_at_the_output_is_never_followed(
        host_of: Callable[[str], SimHost], tmp_path: Path, target: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A link planted at --output (to a file root must not change, or to where root must not
    create one) is refused in one line; the link and its target stay as they were, and links at
    guessable temporary names are not written through either."""
    host_of("t4")
    canary = tmp_path / "outside" / "canary"
    canary.parent.mkdir()
    if target == "canary":
        canary.write_text("canary\n")
    out_dir = tmp_path / "cdi"
    out_dir.mkdir()
    output = out_dir / "nvidia.yaml"
    output.symlink_to(canary)
    for name in (".nvidia.yaml.tmp", "nvidia.yaml.tmp"):
        (out_dir / name).symlink_to(canary)
    status, out, err = generate(capsys, "--output", str(output))
    assert status == 1 and out == "" and len(err.splitlines()) == 1 and "symlink" in err
    assert os.readlink(output) == str(canary)
    assert (canary.read_text() == "canary\n") if target == "canary" else not canary.exists()
    output.unlink()
    status, _, _ = generate(capsys, "--output", str(output))
    assert status == 0 and not output.is_symlink()
    assert (canary.read_text() == "canary\n") if target == "canary" else not canary.exists()


def test_vendor_and_class_make_the_kind(host_of: Callable[[str], SimHost],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """--vendor/--class set the kind; a dot in the class needs CDI 0.6.0."""
    host_of("t4")
    _, out, _ = generate(capsys, "--format", "json", "--vendor", "example.com",
                         "--class", "gpu.v2")
    spec = json.loads(out)
    assert (spec["kind"], spec["cdiVersion"]) == ("example.com/gpu.v2", "0.6.0")
    assert cdi_problems(spec) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--vendor=-bad"], "gpu-ctk: cdi: --vendor '-bad': must start with a letter"),
    (["--class", "gpu/x"], "gpu-ctk: cdi: --class 'gpu/x': must start with a letter"),
    (["--capabilities", "compute,warp"], "gpu-ctk: cdi: --capabilities: unknown warp"),
])
def test_bad_arguments_are_one_line_errors(host_of: Callable[[str], SimHost],
                                           capsys: pytest.CaptureFixture[str], args: list[str],
                                           message: str) -> None:
    """Bad kind parts or capabilities: exit 1, one line naming the flag."""
    host_of("t4")
    status, out, err = generate(capsys, *args)
    assert status == 1 and out == ""
    assert err.startswith(message) and err.count("\n") == 1


def test_lost_gpu_fails_generation(host_of: Callable[[str], SimHost],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Discovery failing (GPU 0 lost) is the generator's error: no partial spec is printed."""
    host_of("t4").set_faults("gpu-lost=0")
    status, out, err = generate(capsys)
    assert status == 1 and out == ""
    assert err.startswith("gpu-ctk: discovery: nvml: GPU is lost")


DRIVER = DriverInfo(nvrm_version="535.104.05", cuda_version="12.2",
                    bins=("/usr/bin/nvidia-smi",),
                    libs=("/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05",),
                    libs32=(), ipcs=(), devices=(NvcNode("/dev/nvidiactl", 195, 255),))


def test_gpu_without_node_is_refused() -> None:
    """A GPU whose /dev/nvidiaN is missing cannot be described: a cdi error says how to fix."""
    inventory = fake_inventory(2, missing_gpu_nodes=(1,))
    with pytest.raises(ShimError, match=r"GPU 1 .* has no device node /dev/nvidia1 "
                                        r"\(nvidia-modprobe -c 1 creates it\)"):
        cdi.build_spec(inventory, DRIVER, kind="nvidia.com/gpu",
                       capabilities=frozenset({"compute"}), driver_root="/", links={})


def test_pure_build_from_a_fake_host() -> None:
    """Same names and node numbers from a hand-made inventory; no hostPath when paths agree."""
    spec = cdi.build_spec(fake_inventory(1, {0: ["3g.40gb"]}), DRIVER, kind="nvidia.com/gpu",
                          capabilities=frozenset({"compute", "utility"}), driver_root="/",
                          links={DRIVER.libs[0]: ["libcuda.so.1"]})
    assert [d["name"] for d in spec["devices"]] == ["0", gpu_uuid(0), "0:0", mig_uuid(0, 1, 0),
                                                    "all"]
    assert spec["containerEdits"]["hooks"][0]["args"][-4:] == [
        "--driver-version", "535.104.05", "--proc-driver", "/proc/driver/nvidia"]
    assert spec["devices"][0]["containerEdits"]["deviceNodes"] == [
        {"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0, "permissions": "rw"}]
    assert cdi_problems(spec) == []


GOOD = {"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu",
        "devices": [{"name": "0", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia0"}]}}]}


@pytest.mark.parametrize(("change", "problem"), [
    ({"kind": "nvidia.com"}, "kind"),
    ({"cdiVersion": "1.0"}, "cdiVersion"),
    ({"devices": [{"name": "-0", "containerEdits": {}}]}, "name"),
    ({"devices": [{"name": "0"}]}, "containerEdits"),
    ({"extra": 1}, "extra"),
    ({"containerEdits": {"mounts": [{"hostPath": "lib", "containerPath": "/lib"}]}}, "mount"),
])
def test_checker_rejects_what_cdi_rejects(change: dict[str, Any], problem: str) -> None:
    """The checker used above is not vacuous: each broken rule is reported."""
    assert cdi_problems(GOOD) == []
    assert any(problem in line for line in cdi_problems({**GOOD, **change}))
