"""CDI device names in a request, resolved through CDI specs on disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_core.cdi_names import device_token, mount_name, parse_name, resolve
from gpu_core.config import parse
from gpu_core.errors import ShimError
from gpu_core.request import parse_request

SPEC_YAML = """cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: '0'
  containerEdits: {deviceNodes: [{path: /dev/nvidia0}]}
- name: 'GPU-1469badd-a902-4781-a29b-eafe2957f330'
  containerEdits: {deviceNodes: [{path: /dev/nvidia0}]}
- name: '1:0'
  containerEdits: {deviceNodes: [{path: /dev/nvidia1}]}
- name: all
  containerEdits: {deviceNodes: [{path: /dev/nvidia0}, {path: /dev/nvidia1}]}
containerEdits: {}
"""


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "cdi"
    directory.mkdir()
    (directory / "nvidia.yaml").write_text(SPEC_YAML)
    return directory


@pytest.mark.parametrize(("name", "token"), [
    ("nvidia.com/gpu=0", "0"), ("nvidia.com/gpu=all", "all"), ("nvidia.com/gpu=1:0", "1:0"),
    ("nvidia.com/gpu=GPU-1469badd-a902-4781-a29b-eafe2957f330",
     "GPU-1469badd-a902-4781-a29b-eafe2957f330"),
])
def test_names_a_spec_defines_resolve_to_tokens(spec_dir: Path, name: str, token: str) -> None:
    assert resolve([name], [str(spec_dir)]) == [(name, token)]


def test_unknown_name_is_unresolvable(spec_dir: Path) -> None:
    with pytest.raises(ShimError, match=r"unresolvable CDI device nvidia.com/gpu=7: no CDI spec"):
        resolve(["nvidia.com/gpu=7"], [str(spec_dir)])


def test_missing_directories_resolve_nothing(tmp_path: Path) -> None:
    with pytest.raises(ShimError, match="unresolvable CDI device"):
        resolve(["nvidia.com/gpu=0"], [str(tmp_path / "absent")])


def test_a_non_gpu_class_is_refused(spec_dir: Path) -> None:
    with pytest.raises(ShimError, match="is not a GPU"):
        resolve(["nvidia.com/imex-channel=0"], [str(spec_dir)])


@pytest.mark.parametrize("name", ["nvidia.com/gpu=", "=0", "nvidia.com=0", "a/b/c=0",
                                  "nvidia.com/gpu=0\n"])
def test_malformed_names_are_refused(name: str) -> None:
    with pytest.raises(ShimError, match="invalid CDI device name"):
        parse_name(name)


def test_later_directory_wins_and_bad_specs_are_skipped(tmp_path: Path) -> None:
    """A spec that does not parse is skipped; a later directory's spec is used."""
    first, second = tmp_path / "etc", tmp_path / "run"
    first.mkdir()
    second.mkdir()
    (first / "broken.yaml").write_text("kind: [unclosed\n")
    (second / "gpu.json").write_text(json.dumps(
        {"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": [{"name": "gpu3"}]}))
    assert resolve(["nvidia.com/gpu=gpu3"], [str(first), str(second)]) == [
        ("nvidia.com/gpu=gpu3", "3")]


@pytest.mark.parametrize(("device", "token"), [
    ("all", "all"), ("2", "2"), ("gpu2", "2"), ("mig1:0", "1:0"), ("MIG-abc", "MIG-abc"),
    ("gpu-name", None), ("mig-1g.10gb", None),
])
def test_device_token(device: str, token: str) -> None:
    assert device_token(device) == token


@pytest.mark.parametrize(("mount", "name"), [
    ("cdi/nvidia.com/gpu/0", "nvidia.com/gpu=0"), ("cdi/nvidia.com/gpu=all", "nvidia.com/gpu=all"),
    ("cdi/nvidia.com/gpu", None),
])
def test_mount_name(mount: str, name: str) -> None:
    assert mount_name(mount) == name


def test_request_resolves_cdi_names_from_configured_dirs(spec_dir: Path) -> None:
    """NVIDIA_VISIBLE_DEVICES=nvidia.com/gpu=1:0,0 selects the devices the names stand for."""
    config = parse(f"requests: {{cdi_spec_dirs: [{spec_dir}]}}", "test")
    spec = {"process": {"env": ["NVIDIA_VISIBLE_DEVICES=nvidia.com/gpu=1:0,0"]}}
    request = parse_request(spec, config)
    assert request is not None and request.devices == ("1:0", "0")
    assert request.cdi == (("nvidia.com/gpu=1:0", "1:0"),)


def test_cdi_mount_request_resolves(spec_dir: Path) -> None:
    config = parse(f"requests: {{cdi_spec_dirs: [{spec_dir}]}}", "test")
    spec = {"mounts": [{"source": "/dev/null",
                        "destination": "/var/run/nvidia-container-devices/cdi/nvidia.com/gpu/all"}]}
    request = parse_request(spec, config)
    assert request is not None and request.wants_all and request.source == "mounts"


def test_requests_without_cdi_names_load_neither_module_nor_yaml() -> None:
    """The hot path: a plain request imports no CDI code and no YAML."""
    code = ("import sys; from gpu_core.config import defaults; "
            "from gpu_core.request import parse_request; "
            "r = parse_request({'process': {'env': ['NVIDIA_VISIBLE_DEVICES=0']}},"
            " defaults()); print('gpu_core.cdi_names' in sys.modules, 'yaml' in "
            "sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_special_word_leaves_cdi_names_unread(tmp_path: Path) -> None:
    """all,<undefined CDI name> is all: the name beside a special word is not looked up."""
    config = parse(f"requests: {{cdi_spec_dirs: [{tmp_path}]}}", "test")
    spec = {"process": {"env": ["NVIDIA_VISIBLE_DEVICES=all,nvidia.com/gpu=9"]}}
    request = parse_request(spec, config)
    assert request is not None and request.wants_all and request.cdi == ()
