"""Device requests as /dev/null mounts under /var/run/nvidia-container-devices."""

from __future__ import annotations

from typing import Any

from gpu_core.request_mounts import device_list_mounts, mount_tokens


def spec(*destinations: str, source: str = "/dev/null") -> dict[str, Any]:
    return {"mounts": [{"source": source, "destination": d} for d in destinations]}


ROOT = "/var/run/nvidia-container-devices"


def test_every_request_kind_is_listed_once_in_order() -> None:
    mounted = device_list_mounts(spec(f"{ROOT}/1", f"{ROOT}/imex/2", f"{ROOT}//1",
                                      f"{ROOT}/cdi/nvidia.com/gpu/0", "/elsewhere/3"))
    assert mounted == ["1", "imex/2", "cdi/nvidia.com/gpu/0"]


def test_only_dev_null_sources_count() -> None:
    assert device_list_mounts(spec(f"{ROOT}/1", source="/tmp/null")) == []


def test_tokens_spell_cdi_mounts_as_names_and_skip_imex() -> None:
    assert mount_tokens(["1", "imex/2", "cdi/nvidia.com/gpu/0", "cdi/nvidia.com/gpu=all"]) == [
        "1", "nvidia.com/gpu=0", "nvidia.com/gpu=all"]


def test_a_cdi_mount_without_a_device_is_skipped() -> None:
    """The toolkit skips (and logs) a cdi/ mount that spells no CDI name."""
    assert mount_tokens(["cdi/nvidia.com", "1"]) == ["1"]
