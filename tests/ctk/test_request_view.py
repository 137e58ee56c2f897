"""The parsed request as gpu-ctk plan shows it: summary line and JSON with sources."""

from __future__ import annotations

from ctk.request_view import summary, to_json
from gpu_core.request import DeviceRequest
from gpu_core.selection import select
from gpu_core.testing import fake_inventory

HOST = fake_inventory(2, {1: ("3g.40gb", "3g.40gb")})


def legacy() -> DeviceRequest:
    return DeviceRequest(devices=("all",), capabilities=frozenset({"compute", "video"}),
                         requirements=("brand=tesla", "cuda>=9.0"), source="legacy",
                         origin=("CUDA_VERSION",), capabilities_source="legacy",
                         requirement_sources=("NVIDIA_REQUIRE_BRAND", "legacy:CUDA_VERSION"))


def test_not_a_gpu_container() -> None:
    assert to_json(None) == {"gpu_container": False, "summary": summary(None)}


def test_legacy_request_names_each_source() -> None:
    """Every part says where it came from: the legacy rule, the variable."""
    document = to_json(legacy(), lambda: select(legacy(), HOST))
    assert (document["devices"], document["devices_source"]) == (["all"], "legacy:CUDA_VERSION")
    assert document["capabilities"] == ["compute", "video"]
    assert document["capabilities_source"] == "legacy:CUDA_VERSION"
    assert document["requirements"] == ["brand=tesla", "cuda>=9.0"]
    assert document["requirement_sources"] == ["env:NVIDIA_REQUIRE_BRAND", "legacy:CUDA_VERSION"]
    assert [g["index"] for g in document["gpus"]] == [0, 1]
    assert [(m["gpu"], m["index"]) for m in document["mig_devices"]] == [(1, 0), (1, 1)]
    assert (document["mig_config"], document["mig_config_source"]) == ([], None)
    assert (document["imex_channels"], document["imex_channels_source"]) == ([], None)


def test_cdi_names_are_the_source_of_the_devices_they_name() -> None:
    request = DeviceRequest(devices=("1", "0"), capabilities=frozenset({"utility"}),
                            origin=("NVIDIA_VISIBLE_DEVICES",), cdi=(("nvidia.com/gpu=1", "1"),))
    document = to_json(request, lambda: select(request, HOST))
    assert [(g["index"], g["source"]) for g in document["gpus"]] == [
        (1, "cdi:nvidia.com/gpu=1"), (0, "env:NVIDIA_VISIBLE_DEVICES")]


def test_selection_failure_is_reported_not_raised() -> None:
    request = DeviceRequest(devices=("9",), capabilities=frozenset({"utility"}))
    document = to_json(request, lambda: select(request, HOST))
    assert document["selection_error"].startswith("request: unknown device 9")
    assert document["gpus"] == []


def test_summary_mentions_requirements_and_imex() -> None:
    request = DeviceRequest(devices=("0",), capabilities=frozenset({"utility"}),
                            requirements=("cuda>=12",), origin=("NVIDIA_VISIBLE_DEVICES",),
                            imex_channels=("3",), imex_source="env")
    assert summary(request) == ("devices 0 (from env:NVIDIA_VISIBLE_DEVICES), capabilities "
                                "utility (from default), requirements cuda>=12, IMEX channels 3")
