"""Device selection: every token form of README §Device requests over a fake host."""

from __future__ import annotations

import time

import pytest

from gpu_core.errors import ShimError
from gpu_core.request import DeviceRequest
from gpu_core.selection import (
    ProfileRequest,
    assign_profiles,
    describe,
    parse_profile,
    profile_requests,
    select,
)
from gpu_core.testing import fake_inventory, gpu_uuid, mig_uuid

HOST = fake_inventory(8, {0: ("1g.10gb", "1g.10gb", "3g.40gb"), 5: ("7g.80gb",)})
"""A DGX-like host: GPU 0 and 5 in MIG mode, the rest whole."""


def request(*tokens: str) -> DeviceRequest:
    return DeviceRequest(devices=tokens, capabilities=frozenset({"compute", "utility"}))


def picked(*tokens: str) -> tuple[list[int], list[str]]:
    """GPU indices and MIG ``gpu:slot`` names the tokens select, in order."""
    selection = select(request(*tokens), HOST)
    return ([g.index for g in selection.gpus],
            [f"{m.parent_index}:{m.index}" for m in selection.mig_devices])


SELECTS = [
    # (description, tokens, expected GPU indices, expected MIG gpu:slot)
    ("index", ("3",), [3], []),
    ("index with leading zero", ("03",), [3], []),
    ("indices keep request order", ("4", "1", "6"), [4, 1, 6], []),
    ("gpu uuid", (gpu_uuid(2),), [2], []),
    ("gpu uuid upper case", (gpu_uuid(2).upper(),), [2], []),
    ("gpu uuid lower-case prefix", ("gpu-" + gpu_uuid(2)[4:],), [2], []),
    ("bus id NVML long form", ("00000000:4E:00.0",), [3], []),
    ("bus id sysfs form lower case", ("0000:4e:00.0",), [3], []),
    ("bus id short form", ("4e:00.0",), [3], []),
    ("mig uuid", (mig_uuid(0, 2, 0),), [], ["0:1"]),
    ("mig uuid upper case", (mig_uuid(0, 2, 0).upper(),), [], ["0:1"]),
    ("legacy mig uuid", (f"MIG-{gpu_uuid(0)}/3/0",), [], ["0:2"]),
    ("gpu:mig", ("0:2",), [], ["0:2"]),
    ("gpu:mig on second MIG gpu", ("5:0",), [], ["5:0"]),
    ("all is every gpu and every MIG device", ("all",), list(range(8)),
     ["0:0", "0:1", "0:2", "5:0"]),
    ("all mixed with a mig device", ("0:1", "all"), list(range(8)), ["0:1", "0:0", "0:2", "5:0"]),
    ("mig-mode gpu by index is the whole gpu", ("0",), [0], []),
    ("none selects nothing", (), [], []),
    ("lone none token selects nothing", ("none",), [], []),
    ("duplicate index collapses", ("3", "3"), [3], []),
    ("same gpu by three forms collapses", ("3", gpu_uuid(3), "4e:00.0"), [3], []),
    ("duplicate mig by two forms collapses", ("0:1", mig_uuid(0, 2, 0)), [], ["0:1"]),
    ("gpu and a mig device of it both kept", ("0", "0:0"), [0], ["0:0"]),
]


@pytest.mark.parametrize(("description", "tokens", "gpus", "migs"), SELECTS,
                         ids=[c[0] for c in SELECTS])
def test_token_selects(description: str, tokens: tuple[str, ...], gpus: list[int],
                       migs: list[str]) -> None:
    """Each token form resolves to the devices it names, once each, in request order."""
    assert picked(*tokens) == (gpus, migs)


UNKNOWN = [
    ("index past the end", ("9",)),
    ("unknown gpu uuid", ("GPU-00000000-0000-0000-0000-000000000000",)),
    ("unknown mig uuid", ("MIG-00000000-0000-0000-0000-000000000000",)),
    ("unknown bus id", ("0000:99:00.0",)),
    ("gpu:mig on a non-MIG gpu", ("3:0",)),
    ("gpu:mig past the slots", ("0:7",)),
    ("word", ("gpu0",)),
    ("negative index", ("-1",)),
    ("huge index", ("9" * 5000,)),
    ("non-ascii digits", ("\u0663",)),
    ("index with newline", ("3\n",)),
    ("void inside a list", ("0", "void")),
    ("none inside a list", ("0", "none")),
]


@pytest.mark.parametrize(("description", "tokens"), UNKNOWN, ids=[c[0] for c in UNKNOWN])
def test_unknown_token_is_request_error(description: str, tokens: tuple[str, ...]) -> None:
    """A token naming nothing on this host is a one-line `unknown device` request error."""
    with pytest.raises(ShimError) as caught:
        select(request(*tokens), HOST)
    assert caught.value.stage == "request"
    assert caught.value.cause.startswith("unknown device ")
    assert "\n" not in str(caught.value)


def test_unknown_device_error_lists_what_exists() -> None:
    """The error names the token and lists GPU indices as ranges and MIG devices as gpu:slot."""
    with pytest.raises(ShimError) as caught:
        select(request("9"), HOST)
    assert str(caught.value) == ("request: unknown device 9; this host has GPUs 0-7 and MIG "
                                 "devices 0:0,0:1,0:2,5:0")


def test_unknown_device_error_on_host_without_mig_lists_gpus_only() -> None:
    """On a host without MIG devices the error lists only the GPU indices."""
    with pytest.raises(ShimError) as caught:
        select(request("9"), fake_inventory(8))
    assert caught.value.cause == "unknown device 9; this host has GPUs 0-7"


def test_unknown_device_error_counts_further_unknown_tokens() -> None:
    """Several unknown tokens: the first is named, the rest counted."""
    with pytest.raises(ShimError) as caught:
        select(request("x", "0", "y", "z"), fake_inventory(2))
    assert caught.value.cause == "unknown device x (and 2 more unknown); this host has GPUs 0-1"


def test_unknown_device_error_is_bounded() -> None:
    """A huge token and a host with many MIG devices still give a short line."""
    host = fake_inventory(8, {i: ("1g.10gb",) * 7 for i in range(8)})
    with pytest.raises(ShimError) as caught:
        select(request("q" * 100_000), host)
    message = str(caught.value)
    assert len(message) < 400
    assert message.endswith("(+40 more)")


def test_describe_host_without_gpus() -> None:
    """A host with no GPUs says so."""
    assert describe(fake_inventory(0)) == "this host has no GPUs"


def test_describe_compresses_gaps_in_indices() -> None:
    """Indices with a gap show as separate ranges."""
    host = fake_inventory(6)
    host = host._replace(gpus=tuple(g for g in host.gpus if g.index != 4))
    assert describe(host) == "this host has GPUs 0-3,5"


def test_huge_token_count_is_fast() -> None:
    """A hundred thousand tokens resolve in well under a second and collapse to the set."""
    tokens = tuple(str(i % 8) for i in range(100_000))
    start = time.monotonic()
    gpus, _ = picked(*tokens)
    assert time.monotonic() - start < 1.0
    assert gpus == list(range(8))


def test_mig_device_selects_its_parent_for_checks() -> None:
    """A MIG device puts its parent GPU in parents and in checked_gpus."""
    selection = select(request("3", "0:1", "0:2", "5:0"), HOST)
    assert [g.index for g in selection.parents] == [0, 5]
    assert [g.index for g in selection.checked_gpus] == [3, 0, 5]


def test_checked_gpus_do_not_repeat_a_selected_parent() -> None:
    """A parent also selected whole appears once in checked_gpus."""
    selection = select(request("0", "0:1"), HOST)
    assert [g.index for g in selection.checked_gpus] == [0]


PROFILES = [
    ("any gpu", "mig-1g.10gb", ProfileRequest("mig-1g.10gb", "1g.10gb", None)),
    ("pinned gpu", "0.mig-3g.40gb", ProfileRequest("0.mig-3g.40gb", "3g.40gb", 0)),
    ("upper case", "MIG-1G.10GB", ProfileRequest("MIG-1G.10GB", "1g.10gb", None)),
    ("media extension", "mig-1g.10gb+me", ProfileRequest("mig-1g.10gb+me", "1g.10gb+me", None)),
    ("mig uuid is not a profile", mig_uuid(0, 1, 0), None),
    ("gpu:mig is not a profile", "0:1", None),
]


@pytest.mark.parametrize(("description", "token", "expected"), PROFILES,
                         ids=[c[0] for c in PROFILES])
def test_parse_profile(description: str, token: str, expected: ProfileRequest) -> None:
    """Profile tokens parse to profile and optional GPU; other tokens are not profiles."""
    assert parse_profile(token) == expected


@pytest.mark.parametrize("token", ["mig-1g.10gb", "2.mig-7g.80gb"])
def test_profile_token_needs_lease_allocator(token: str) -> None:
    """Selection refuses a profile token left unassigned, saying the lease step must run."""
    with pytest.raises(ShimError) as caught:
        select(request("1", token), HOST)
    assert caught.value.stage == "request"
    assert "MIG lease allocator" in caught.value.cause


def test_profile_requests_keep_repeats_in_order() -> None:
    """Two identical profile tokens are two requests, in request order."""
    found = profile_requests(request("mig-1g.10gb", "3", "0.mig-3g.40gb", "mig-1g.10gb"))
    assert [(p.profile, p.gpu) for p in found] == [("1g.10gb", None), ("3g.40gb", 0),
                                                    ("1g.10gb", None)]


def test_assign_profiles_rewrites_profile_tokens_in_place() -> None:
    """Leased UUIDs replace profile tokens positionally; selection then resolves them."""
    leased = assign_profiles(request("mig-1g.10gb", "3", "mig-1g.10gb"),
                             [mig_uuid(0, 1, 0), mig_uuid(0, 2, 0)])
    assert leased.devices == (mig_uuid(0, 1, 0), "3", mig_uuid(0, 2, 0))
    assert select(leased, HOST).mig_devices == HOST.gpus[0].mig_devices[:2]


def test_assign_profiles_needs_one_uuid_per_token() -> None:
    """A UUID count that does not match the profile tokens is a programming error."""
    with pytest.raises(ValueError, match="2 MIG profile tokens, 1 UUIDs"):
        assign_profiles(request("mig-1g.10gb", "mig-1g.10gb"), [mig_uuid(0, 1, 0)])


@pytest.mark.parametrize(("field", "variable"), [("mig_config", "NVIDIA_MIG_CONFIG_DEVICES"),
                                                 ("mig_monitor", "NVIDIA_MIG_MONITOR_DEVICES")])
def test_global_mig_caps_beside_specific_mig_devices_are_refused(field: str,
                                                                 variable: str) -> None:
    """MIG config/monitor `all` with a specific MIG device selected fails as the CLI does."""
    asked = request("0:1")._replace(**{field: ("all",)})
    with pytest.raises(ShimError) as info:
        select(asked, HOST)
    what = "mig-config" if field == "mig_config" else "mig-monitor"
    assert info.value.cause == (f"{variable}=all: cannot enable {what} with specific MIG "
                                "devices selected")


@pytest.mark.parametrize("tokens", [("all",), ("0", "3")])
def test_global_mig_caps_with_all_or_whole_gpus_are_accepted(tokens: tuple[str, ...]) -> None:
    asked = request(*tokens)._replace(mig_config=("all",))
    assert select(asked, HOST).gpus
