"""Recognising a config.json the engine already injected NVIDIA devices into from a CDI spec."""

from __future__ import annotations

from typing import Any, Optional

import pytest

from runtime_shim.cdi_injection import SPEC_MARK, Injection, detect


def gpu_node(minor: int, path: Optional[str] = None, major: Any = 195,
             kind: str = "c") -> dict[str, Any]:
    return {"path": path or f"/dev/nvidia{minor}", "type": kind, "major": major,
            "minor": minor, "fileMode": 0o666, "uid": 0, "gid": 0}


def cdi_spec(devices: list[Any], annotations: Optional[dict[str, Any]] = None,
             mounts: Optional[list[Any]] = None, hooks: Optional[dict[str, Any]] = None
             ) -> dict[str, Any]:
    """A config.json shaped like podman's after injecting ``nvidia.com/gpu=…``."""
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2-dev", "process": {"args": ["sh"], "env": ["PATH=/bin"]},
        "root": {"path": "rootfs"}, "mounts": mounts or [],
        "linux": {"devices": devices, "resources": {"devices": [{"allow": False,
                                                                 "access": "rwm"}]}}}
    if annotations is not None:
        spec["annotations"] = annotations
    if hooks is not None:
        spec["hooks"] = hooks
    return spec


CTL = {"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255}
UVM = {"path": "/dev/nvidia-uvm", "type": "c", "major": 510, "minor": 0}


def test_gpu_nodes_give_their_minors_in_spec_order() -> None:
    found = detect(cdi_spec([CTL, UVM, gpu_node(3), gpu_node(1)]))
    assert found is not None and found.gpu_minors == (3, 1) and found.gpus_present


def test_minor_number_not_the_name_identifies_the_gpu() -> None:
    """A node named /dev/nvidia0 that is 195:2 is GPU minor 2 to the kernel."""
    found = detect(cdi_spec([{**gpu_node(2), "path": "/dev/nvidia0"}]))
    assert found is not None and found.gpu_minors == (2,)


def test_a_gpu_node_declared_twice_counts_once() -> None:
    found = detect(cdi_spec([gpu_node(0), gpu_node(0)]))
    assert found is not None and found.gpu_minors == (0,)


def test_control_node_alone_is_an_injection_without_gpus() -> None:
    found = detect(cdi_spec([CTL]))
    assert found is not None and found.gpu_minors == () and not found.gpus_present
    assert found.evidence == ("/dev/nvidiactl (195:255)",)


@pytest.mark.parametrize(("description", "entry"), [
    ("another major", gpu_node(0, major=10)),
    ("a block device", gpu_node(0, kind="b")),
    ("major as a string", gpu_node(0, major="195")),
    ("minor as a boolean", {**gpu_node(0), "minor": True}),
    ("a negative minor", {**gpu_node(0), "minor": -1}),
    ("not an NVIDIA path", gpu_node(0, path="/dev/fuse")),
    ("not an object", "/dev/nvidia0"),
])
def test_entries_that_are_not_nvidia_nodes_are_no_evidence(description: str,
                                                           entry: Any) -> None:
    assert detect(cdi_spec([entry])) is None


def test_cdi_annotation_is_evidence_but_grants_no_gpu() -> None:
    found = detect(cdi_spec([], annotations={"cdi.k8s.io/nvidia.com_gpu": "nvidia.com/gpu=0"}))
    assert found == Injection(gpu_minors=(), evidence=("annotation cdi.k8s.io/nvidia.com_gpu",))
    assert not found.gpus_present


def test_other_annotations_are_no_evidence() -> None:
    assert detect(cdi_spec([], annotations={"CDI.K8S.IO/x": "y", "io.podman.cdi": "z"})) is None


@pytest.mark.parametrize("target", ["/usr/lib/x86_64-linux-gnu/libcuda.so.1",
                                    "/usr/lib64/libnvidia-ml.so.570.86.15"])
def test_driver_library_mount_is_evidence_without_gpus(target: str) -> None:
    found = detect(cdi_spec([], mounts=[{"destination": target, "source": target,
                                         "type": "bind", "options": ["ro", "bind"]}]))
    assert found is not None and found.evidence == (f"mount {target}",)
    assert not found.gpus_present


def test_other_mounts_are_no_evidence() -> None:
    assert detect(cdi_spec([], mounts=[{"destination": "/usr/lib/libcudart.so.12"},
                                       {"destination": "/proc"}, "junk"])) is None


def test_plain_container_is_no_injection() -> None:
    assert detect(cdi_spec([])) is None


@pytest.mark.parametrize("spec", [None, [], "x", {"linux": []}, {"linux": {"devices": {}}},
                                  {"annotations": [], "mounts": {}}])
def test_malformed_fields_are_no_evidence(spec: Any) -> None:
    assert detect(spec) is None


def test_our_own_hook_marks_the_shims_earlier_edit_not_an_injection() -> None:
    """A retried create of a bundle the shim already edited: its nodes are ours."""
    hooks = {"prestart": [{"path": "/usr/bin/gpu-container-hook", "args": ["x", "prestart"]}]}
    assert detect(cdi_spec([gpu_node(0)], hooks=hooks)) is None


def test_our_hook_at_a_configured_path_is_recognised() -> None:
    hooks = {"createRuntime": [{"path": "/opt/gch/hook"}]}
    assert detect(cdi_spec([gpu_node(0)], hooks=hooks), ("/opt/gch/hook",)) is None


def test_nvidia_cdi_hooks_do_not_hide_an_injection() -> None:
    hooks = {"createContainer": [{"path": "/usr/bin/nvidia-cdi-hook",
                                  "args": ["nvidia-cdi-hook", "update-ldcache"]}]}
    found = detect(cdi_spec([gpu_node(0)], hooks=hooks))
    assert found is not None and found.gpu_minors == (0,)


def test_describe_names_gpu_nodes_else_the_first_evidence() -> None:
    assert Injection((0, 2), ("a",)).describe() == "/dev/nvidia0, /dev/nvidia2"
    assert Injection((), ("annotation cdi.k8s.io/x", "b")).describe() == \
        "annotation cdi.k8s.io/x"


SPEC_HOOK = {"path": "/usr/bin/gpu-container-spec-hook",
             "args": ["gpu-container-spec-hook", "--folder", "/usr/lib/x86_64-linux-gnu"],
             "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", SPEC_MARK], "timeout": 10}
LIBCUDA = {"destination": "/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05", "type": "bind",
           "source": "/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05",
           "options": ["ro", "nosuid", "nodev", "bind"]}


def test_the_shims_spec_mode_edit_is_not_an_injection() -> None:
    """A retried create in spec mode: the nodes and driver mounts the shim itself wrote, with
    its spec-hook entry, are the shim's own edit."""
    spec = cdi_spec([gpu_node(0), CTL, UVM], mounts=[LIBCUDA],
                    hooks={"createContainer": [SPEC_HOOK]})
    assert detect(spec) is None


def test_the_spec_hook_of_a_cdi_spec_does_not_hide_an_injection() -> None:
    """The same hook emitted by a CDI spec (no mark: the engine wrote it) is the engine's."""
    from_cdi = {**SPEC_HOOK, "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]}
    found = detect(cdi_spec([gpu_node(0)], mounts=[LIBCUDA],
                            hooks={"createContainer": [from_cdi]}))
    assert found is not None and found.gpu_minors == (0,)


def test_the_mark_on_another_hook_is_no_sign_of_ours() -> None:
    other = {"path": "/usr/bin/other-hook", "env": [SPEC_MARK]}
    found = detect(cdi_spec([gpu_node(0)], hooks={"createContainer": [other]}))
    assert found is not None


def test_a_second_spec_mode_create_gives_the_same_spec(tmp_path: Any) -> None:
    """The whole retried create: the pipeline over its own spec-mode output, as the shim's
    create reads it again (build_context's detection included), changes nothing."""
    import json

    from gpu_core import config as config_mod
    from gpu_core.testing import fake_inventory
    from runtime_shim import main, pipeline

    root = tmp_path / "driver"
    lib = root / "usr/lib/x86_64-linux-gnu"
    lib.mkdir(parents=True)
    (lib / "libcuda.so.535.104.05").write_bytes(b"")
    bundle = tmp_path / "bundle"
    (bundle / "rootfs/etc").mkdir(parents=True)
    config = config_mod.parse(f"mode: spec\nhost: {{driver_root: {root}, dev_root: {tmp_path}}}",
                              "t.yaml")
    spec = {"ociVersion": "1.2.1", "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "env": ["NVIDIA_VISIBLE_DEVICES=0"]}}
    host = fake_inventory(2)

    def create(current: dict[str, Any]) -> dict[str, Any]:
        ctx = main.build_context(current, config, bundle=str(bundle), container_id="c",
                                 systemd_cgroup=False)
        ctx.discover = lambda: host
        return pipeline.run(json.loads(json.dumps(current)), ctx).spec

    once = create(spec)
    assert detect(once) is None and "createContainer" in once["hooks"]
    assert create(once) == once
