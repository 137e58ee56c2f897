"""MIG leases, the pure part: the resolver, the staleness rule and the record format."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import pytest

from gpu_core.errors import ShimError
from gpu_core.selection import ProfileRequest, parse_profile
from gpu_core.testing import fake_inventory, gpu_uuid, mig_uuid
from leases.allocation import (
    FORMAT,
    Holder,
    Lease,
    LeasedDevice,
    LeaseFormatError,
    check_container_id,
    describe_profiles,
    held_by,
    resolve,
    stale_reason,
)

# GPU 0: seven 1g.10gb; GPU 1: two 3g.40gb; GPU 2: 1g.10gb + 3g.40gb; GPU 3: whole.
HOST = fake_inventory(4, {0: ("1g.10gb",) * 7, 1: ("3g.40gb",) * 2, 2: ("1g.10gb", "3g.40gb")})


def want(*tokens: str) -> list[ProfileRequest]:
    parsed = [parse_profile(t) for t in tokens]
    assert all(p is not None for p in parsed)
    return [p for p in parsed if p is not None]


def mig(gpu: int, slot: int) -> str:
    """UUID of the fake host's MIG device in ``slot`` of ``gpu`` (GI ids count from 1)."""
    return mig_uuid(gpu, slot + 1, 0)


def held(*pairs: tuple[str, str]) -> dict[str, str]:
    return {uuid.lower(): holder for uuid, holder in pairs}


def migs(*slots: tuple[int, int]) -> list[Any]:
    by_uuid = {m.uuid: m for g in HOST.gpus for m in g.mig_devices}
    return [by_uuid[mig(g, s)] for g, s in slots]


class TestResolve:
    @pytest.mark.parametrize(("description", "tokens", "taken", "expected"), [
        ("free any-gpu takes the lowest slot", ("mig-1g.10gb",), {}, [mig(0, 0)]),
        ("held instances are skipped", ("mig-1g.10gb",),
         held((mig(0, 0), "a"), (mig(0, 1), "b")), [mig(0, 2)]),
        ("repeat takes distinct instances", ("mig-1g.10gb", "mig-1g.10gb"), {},
         [mig(0, 0), mig(0, 1)]),
        ("any-gpu spills to the next gpu", ("mig-1g.10gb",),
         held(*((mig(0, s), f"c{s}") for s in range(7))), [mig(2, 0)]),
        ("pinned by index", ("1.mig-3g.40gb",), {}, [mig(1, 0)]),
        ("pinned by index skips held", ("1.mig-3g.40gb",), held((mig(1, 0), "a")), [mig(1, 1)]),
        ("pinned by uuid", (f"{gpu_uuid(2)}.mig-3g.40gb",), {}, [mig(2, 1)]),
        ("pinned by upper-case uuid", (f"{gpu_uuid(2).upper()}.MIG-3G.40GB",), {}, [mig(2, 1)]),
        ("pinned served first so any-gpu does not steal its only choice",
         ("mig-3g.40gb", "2.mig-3g.40gb"), held((mig(1, 0), "a")), [mig(1, 1), mig(2, 1)]),
        ("results stay in request order", ("mig-3g.40gb", "mig-1g.10gb"), {},
         [mig(1, 0), mig(0, 0)]),
    ])
    def test_picks(self, description: str, tokens: tuple[str, ...], taken: dict[str, str],
                   expected: list[str]) -> None:
        """Each profile request gets the lowest free matching instance, positionally."""
        resolution = resolve(want(*tokens), [], HOST, taken)
        assert [d.uuid for d in resolution.profiles] == expected
        assert [d.token for d in resolution.profiles] == list(tokens)

    def test_leased_device_names_profile_and_parent(self) -> None:
        """A leased device records its profile and parent GPU for `leases list`."""
        (device,) = resolve(want("1.mig-3g.40gb"), [], HOST, {}).profiles
        assert (device.profile, device.gpu) == ("3g.40gb", gpu_uuid(1))

    def test_nothing_free_names_count_and_holders(self) -> None:
        """No free instance: one line with the profile, how many exist and who holds them."""
        taken = held(*((mig(0, s), f"c{s}") for s in range(7)), (mig(2, 0), "z"))
        with pytest.raises(ShimError) as caught:
            resolve(want("mig-1g.10gb"), [], HOST, taken)
        holders = ", ".join([*(f"c{s} ({mig(0, s)})" for s in range(7)), f"z ({mig(2, 0)})"])
        assert (caught.value.stage, caught.value.cause) == (
            "mig", f"no free MIG instance of profile 1g.10gb: 8 exist, held by {holders}")

    def test_nothing_free_bounds_the_holder_list(self) -> None:
        """Holders beyond the eighth are only counted, keeping the line bounded."""
        many = fake_inventory(2, {0: ("1g.10gb",) * 7, 1: ("1g.10gb",) * 7})
        everything = held(*((m.uuid, f"h{i}") for i, m in
                            enumerate(x for g in many.gpus for x in g.mig_devices)))
        with pytest.raises(ShimError, match=r"14 exist, held by h0 .* h7 \(MIG-[0-9a-f-]+\) "
                                            r"and 6 more$"):
            resolve(want("mig-1g.10gb"), [], many, everything)

    def test_pinned_nothing_free_names_the_gpu(self) -> None:
        """`1.mig-3g.40gb` with both instances held says `on GPU 1` and names the holders."""
        taken = held((mig(1, 0), "first"), (mig(1, 1), "second"))
        with pytest.raises(ShimError, match=(
                rf"^mig: no free MIG instance of profile 3g.40gb on GPU 1: 2 exist, held by "
                rf"first \({mig(1, 0)}\), second \({mig(1, 1)}\)$")):
            resolve(want("1.mig-3g.40gb"), [], HOST, taken)

    def test_asking_for_more_than_exist_counts_this_container(self) -> None:
        """Three 3g.40gb on GPU 1 (which has two): the holder named is this container."""
        with pytest.raises(ShimError, match=r"2 exist, held by this container .*, this "
                                            r"container"):
            resolve(want(*["1.mig-3g.40gb"] * 3), [], HOST, {})

    @pytest.mark.parametrize(("token", "message"), [
        ("mig-2g.20gb", r"no MIG instance of profile 2g.20gb exists; MIG profiles here: "
                        r"1g.10gb x8 \(GPU 0,2\), 3g.40gb x3 \(GPU 1,2\)"),
        ("3.mig-1g.10gb", r"no MIG instance of profile 1g.10gb on GPU 3 exists"),
        ("9.mig-1g.10gb", r"no MIG instance of profile 1g.10gb on GPU 9 exists"),
    ])
    def test_no_such_profile(self, token: str, message: str) -> None:
        """A profile (or pinned GPU) with no instance at all says what the host has."""
        with pytest.raises(ShimError, match=message):
            resolve(want(token), [], HOST, {})

    def test_explicit_devices_are_leased_once_in_order(self) -> None:
        """Explicit MIG devices come first, each once, tagged with their own UUID."""
        resolution = resolve([], migs((1, 1), (0, 3), (1, 1)), HOST, {})
        assert [d.uuid for d in resolution.explicit] == [mig(1, 1), mig(0, 3)]
        assert [d.token for d in resolution.explicit] == [mig(1, 1), mig(0, 3)]

    def test_explicit_device_held_by_another_is_refused(self) -> None:
        """An explicit MIG device another live container holds is an error naming it."""
        with pytest.raises(ShimError, match=rf"MIG device 0:3 \({mig(0, 3)}\) is held by "
                                            r"container other$"):
            resolve([], migs((0, 3)), HOST, held((mig(0, 3), "other")))

    def test_profiles_avoid_explicit_devices_of_the_same_request(self) -> None:
        """`MIG-<slot 0>,mig-1g.10gb` gives the profile a different instance."""
        resolution = resolve(want("mig-1g.10gb"), migs((0, 0)), HOST, {})
        assert [d.uuid for d in resolution.devices] == [mig(0, 0), mig(0, 1)]

    def test_mixed_held_and_free_across_requests(self) -> None:
        """A mixed request takes only free instances and none twice."""
        taken = held((mig(0, 0), "a"), (mig(1, 0), "b"), (mig(0, 2), "c"))
        resolution = resolve(want("mig-1g.10gb", "1.mig-3g.40gb", "0.mig-1g.10gb"), [], HOST,
                             taken)
        assert [d.uuid for d in resolution.profiles] == [mig(0, 3), mig(1, 1), mig(0, 1)]

    def test_describe_profiles_without_mig(self) -> None:
        """A host without MIG devices says so."""
        assert describe_profiles(fake_inventory(2)) == "this host has no MIG devices"


class Host:
    """Staleness observations from tables: runtime state present, running pids -> start."""

    def __init__(self, known: tuple[tuple[str, str], ...] = (),
                 running: Optional[dict[int, int]] = None) -> None:
        self.known = set(known)
        self.running = running or {}

    def runtime_knows(self, runtime_root: str, container_id: str) -> bool:
        return (runtime_root, container_id) in self.known

    def process_start(self, pid: int) -> Optional[int]:
        return self.running.get(pid)


def lease(cid: str = "c1", root: str = "/run/runc", shim: int = 100,
          shim_start: Optional[int] = 7,
          init: Optional[int] = None, init_start: Optional[int] = None) -> Lease:
    return Lease(holder=Holder(container_id=cid, runtime_root=root, bundle="/b", shim_pid=shim,
                               shim_start=shim_start, init_pid=init, init_start=init_start),
                 devices=(LeasedDevice(uuid=mig(0, 0), profile="1g.10gb", gpu=gpu_uuid(0),
                                       token="mig-1g.10gb"),),
                 created=1000.0)


class TestStaleness:
    @pytest.mark.parametrize(("description", "record", "host", "live"), [
        ("runtime knows the container", lease(), Host(known=(("/run/runc", "c1"),)), True),
        ("start still running (before runc made its state dir)", lease(),
         Host(running={100: 7}), True),
        ("start pid reused by another process", lease(), Host(running={100: 99}), False),
        ("init process recorded and running", lease(init=555, init_start=3),
         Host(running={555: 3}), True),
        ("runtime forgot it and every process is gone", lease(init=555, init_start=3),
         Host(), False),
        ("other runtime root knows the id", lease(), Host(known=(("/other", "c1"),)), False),
        ("no runtime root recorded: processes decide", lease(root=""),
         Host(known=(("", "c1"),)), False),
        ("no start time recorded: any process with the pid counts", lease(shim_start=None),
         Host(running={100: 1}), True),
    ])
    def test_rule(self, description: str, record: Lease, host: Host, live: bool) -> None:
        """A lease lives while the runtime knows its container or one of its processes runs."""
        assert (stale_reason(record, host) is None) is live

    def test_reason_says_what_is_gone(self) -> None:
        """The stale reason names the runtime root and the start pid."""
        assert stale_reason(lease(), Host()) == (
            "container unknown to the runtime under /run/runc, start pid 100 gone")


class TestRecord:
    def test_round_trip(self) -> None:
        """A lease survives to_json/from_json unchanged."""
        record = lease(init=5, init_start=6)
        assert Lease.from_json(record.to_json()) == record

    @pytest.mark.parametrize(("change", "message"), [
        (lambda d: d.update(format=FORMAT + 1), "format"),
        (lambda d: d.update(container_id="../x"), "container_id"),
        (lambda d: d.update(created="yesterday"), "created"),
        (lambda d: d["holder"].update(shim_pid="1"), "holder.shim_pid"),
        (lambda d: d["holder"].update(init_pid=True), "holder.init_pid"),
        (lambda d: d.update(devices={}), "devices"),
        (lambda d: d["devices"][0].pop("uuid"), r"devices\[0\].uuid"),
        (lambda d: d.update(holder=[]), "holder"),
    ])
    def test_bad_records_are_refused(self, change: Any, message: str) -> None:
        """Every malformed field is a LeaseFormatError naming it."""
        data = lease().to_json()
        change(data)
        with pytest.raises(LeaseFormatError, match=message):
            Lease.from_json(data)

    def test_held_by_maps_lower_case_uuids(self) -> None:
        """held_by keys are lower-case UUIDs so comparisons ignore case."""
        upper = dataclasses.replace(lease(), devices=(dataclasses.replace(
            lease().devices[0], uuid=mig(0, 0).upper()),))
        assert held_by([upper]) == {mig(0, 0).lower(): "c1"}

    @pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "x" * 201, "caf\u00e9", "a b"])
    def test_container_ids_that_cannot_name_a_file(self, bad: str) -> None:
        """Ids outside runc's alphabet (or path tricks) cannot hold a lease."""
        with pytest.raises(ShimError, match="cannot hold a MIG lease"):
            check_container_id(bad)

    def test_container_id_of_runc_alphabet(self) -> None:
        """A 64-hex engine id and runc's punctuation are accepted."""
        assert check_container_id("a" * 64) == "a" * 64
        assert check_container_id("k8s_pod+x-1.2") == "k8s_pod+x-1.2"
