"""The MIG-lease modifier: profile tokens become leased MIG UUIDs in config.json and in the
context, explicit MIG devices are leased exclusively, and the pipeline declares what was leased."""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any, Optional

import pytest
from oci_schema import config_errors

from gpu_core import config as config_mod
from gpu_core.errors import ShimError
from gpu_core.request import parse_request
from gpu_core.testing import cap_minor, fake_inventory, gpu_uuid, mig_uuid
from leases import files as lease_files
from leases import lock as lease_lock
from leases import release as lease_release
from leases import write as lease_write
from leases.allocation import Holder, Lease, LeasedDevice
from leases.dry_run import DryRunStore
from runtime_shim import pipeline
from runtime_shim.cdi_injection import Injection
from runtime_shim.context import Context
from runtime_shim.modifiers import mig_lease

HOST = fake_inventory(3, {0: ("1g.10gb",) * 7, 1: ("3g.40gb",) * 2})
DEAD_PID = 2 ** 30
"""Above any pid_max: a process that certainly does not run."""


def mig(slot: int, gpu: int = 0) -> str:
    return mig_uuid(gpu, slot + 1, 0)


def base_spec(env: tuple[str, ...] = (), mounts: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "ociVersion": "1.2.1",
        "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                    "env": ["PATH=/bin", *env]},
        "root": {"path": "rootfs"},
        "mounts": [{"destination": f"/var/run/nvidia-container-devices/{token}",
                    "source": "/dev/null", "options": ["bind"]} for token in mounts],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]},
    }


def context(tmp_path: Path, spec: dict[str, Any], extra: str = "", cid: str = "c1"
            ) -> Context:
    config = config_mod.parse(f"mig: {{lease_dir: {tmp_path / 'leases'}{extra}}}\n", "t.yaml")
    return Context(config=config, request=parse_request(spec, config), container_id=cid,
                   runtime_root=str(tmp_path / "runtime"), bundle="/bundle",
                   discover=lambda: HOST)


def env_value(spec: dict[str, Any]) -> list[str]:
    return [e for e in spec["process"]["env"] if e.startswith("NVIDIA_VISIBLE_DEVICES=")]


def stored(tmp_path: Path) -> dict[str, list[str]]:
    snapshot = lease_files.read_all(str(tmp_path / "leases"))
    return {lease.container_id: [d.uuid for d in lease.devices] for lease in snapshot.leases}


def hold(tmp_path: Path, cid: str, uuids: tuple[str, ...], pid: Optional[int] = None) -> None:
    """Store a lease of ``cid``; its holder runs (this process) unless ``pid`` says otherwise."""
    lease = Lease(holder=Holder(container_id=cid, runtime_root="", bundle="/b",
                                shim_pid=os.getpid() if pid is None else pid),
                  devices=tuple(LeasedDevice(uuid=u, profile="1g.10gb", gpu=gpu_uuid(0),
                                             token="mig-1g.10gb") for u in uuids),
                  created=time.time())
    directory = str(tmp_path / "leases")
    with lease_lock.locked(directory):
        lease_write.write_lease(directory, lease)


class TestRewrite:
    def test_profile_token_becomes_the_leased_uuid(self, tmp_path: Path) -> None:
        """`mig-1g.10gb` is leased, written into the env and recorded under the container id."""
        spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=mig-1g.10gb",))
        ctx = context(tmp_path, spec)
        new, notes = mig_lease.apply(spec, ctx)
        assert env_value(new) == [f"NVIDIA_VISIBLE_DEVICES={mig(0)}"]
        assert stored(tmp_path) == {"c1": [mig(0)]}
        assert notes[0] == f"mig-lease: mig-1g.10gb -> {mig(0)} (1g.10gb on {gpu_uuid(0)})"

    def test_context_request_names_the_leased_devices(self, tmp_path: Path) -> None:
        """Later modifiers see the concrete devices: ctx.request is replaced."""
        spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=2, 1.mig-3g.40gb,mig-1g.10gb",))
        ctx = context(tmp_path, spec)
        new, _ = mig_lease.apply(spec, ctx)
        assert ctx.request is not None
        assert ctx.request.devices == ("2", mig(0, gpu=1), mig(0))
        assert env_value(new) == [f"NVIDIA_VISIBLE_DEVICES=2,{mig(0, gpu=1)},{mig(0)}"]

    def test_taken_lease_is_recorded_in_the_context(self, tmp_path: Path) -> None:
        """The shim learns that a lease was taken from ``ctx.lease``, the lease stored."""
        spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=mig-1g.10gb",))
        ctx = context(tmp_path, spec)
        mig_lease.apply(spec, ctx)
        assert ctx.lease is not None
        assert ctx.lease == lease_files.read_lease(str(tmp_path / "leases" / "c1.json"))

    def test_dry_run_store_rewrites_alike_and_takes_nothing(self, tmp_path: Path) -> None:
        """With the context's store a dry run (gpu-ctk plan), config.json is rewritten as a
        start would rewrite it, the notes say what would happen, and no file is written."""
        spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=mig-1g.10gb",))
        real, _ = mig_lease.apply(copy.deepcopy(spec), context(tmp_path / "real", spec))
        ctx = context(tmp_path, spec)
        ctx.leases = DryRunStore(str(tmp_path / "leases"))
        new, notes = mig_lease.apply(spec, ctx)
        assert new == real
        assert ctx.lease is not None and [d.uuid for d in ctx.lease.devices] == [mig(0)]
        assert notes[0] == f"mig-lease: would lease mig-1g.10gb -> {mig(0)} (1g.10gb on " \
            f"{gpu_uuid(0)})"
        assert notes[-1].startswith("mig-lease: dry run: no lease taken")
        assert not (tmp_path / "leases").exists()

    def test_repeated_token_leases_several(self, tmp_path: Path) -> None:
        """A token given twice leases two different instances."""
        spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=1.mig-3g.40gb,1.mig-3g.40gb",))
        new, _ = mig_lease.apply(spec, context(tmp_path, spec))
        assert env_value(new) == [f"NVIDIA_VISIBLE_DEVICES={mig(0, 1)},{mig(1, 1)}"]

    def test_mount_list_requests_are_rewritten_where_they_came_from(self, tmp_path: Path
                                                                    ) -> None:
        """A device-list mount `mig-1g.10gb` becomes a mount named by the leased UUID."""
        spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=mig-3g.40gb",), mounts=("mig-1g.10gb",))
        new, _ = mig_lease.apply(spec, context(tmp_path, spec))
        assert [m["destination"] for m in new["mounts"]] == [
            f"/var/run/nvidia-container-devices/{mig(0)}"]
        assert env_value(new) == ["NVIDIA_VISIBLE_DEVICES=mig-3g.40gb"]  # not the request
        assert stored(tmp_path) == {"c1": [mig(0)]}

    def test_poststop_hook_releases_later(self, tmp_path: Path) -> None:
        """A poststop entry of our hook is added once, with an explicit env."""
        spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=mig-1g.10gb",))
        new, _ = mig_lease.apply(spec, context(tmp_path, spec))
        (entry,) = new["hooks"]["poststop"]
        assert entry["args"][-1] == "poststop"
        assert entry["env"][0].startswith("PATH=")

    def test_output_is_a_valid_oci_config(self, tmp_path: Path) -> None:
        """The rewritten spec validates against the OCI runtime-spec schema."""
        spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=mig-1g.10gb",), mounts=("mig-1g.10gb",))
        new, _ = mig_lease.apply(spec, context(tmp_path, spec))
        assert config_errors(new) == []

    def test_input_spec_is_not_mutated(self, tmp_path: Path) -> None:
        """The modifier copies what it changes."""
        spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=mig-1g.10gb",), mounts=("mig-1g.10gb",))
        before = copy.deepcopy(spec)
        mig_lease.apply(spec, context(tmp_path, spec))
        assert spec == before

    def test_applying_twice_equals_once(self, tmp_path: Path) -> None:
        """A second run finds concrete UUIDs, keeps the same lease and changes nothing."""
        spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=mig-1g.10gb,mig-1g.10gb",))
        ctx = context(tmp_path, spec)
        once, _ = mig_lease.apply(spec, ctx)
        twice, _ = mig_lease.apply(once, ctx)
        assert twice is once
        assert stored(tmp_path) == {"c1": [mig(0), mig(1)]}


class TestNothingToDo:
    @pytest.mark.parametrize("env", [(), ("NVIDIA_VISIBLE_DEVICES=0,1",),
                                     ("NVIDIA_VISIBLE_DEVICES=all",),
                                     ("NVIDIA_VISIBLE_DEVICES=void",)])
    def test_no_mig_request_is_untouched(self, tmp_path: Path, env: tuple[str, ...]) -> None:
        """Whole-GPU, `all` and non-GPU containers pass unchanged and take no lease."""
        spec = base_spec(env=env)
        ctx = context(tmp_path, spec)
        assert mig_lease.apply(spec, ctx) == (spec, [])
        assert not (tmp_path / "leases").exists()
        assert ctx.lease is None

    def test_explicit_mig_without_exclusive_leases_is_untouched(self, tmp_path: Path) -> None:
        """With `mig.exclusive_explicit: false` an explicit MIG UUID takes no lease."""
        spec = base_spec(env=(f"NVIDIA_VISIBLE_DEVICES={mig(3)}",))
        ctx = context(tmp_path, spec, extra=", exclusive_explicit: false")
        assert mig_lease.apply(spec, ctx) == (spec, [])


class TestExplicit:
    @pytest.mark.parametrize("token", [mig(3), "0:3"])
    def test_explicit_mig_takes_an_exclusive_lease(self, tmp_path: Path, token: str) -> None:
        """`MIG-<uuid>` and `<gpu>:<mig>` are leased; the env keeps the token as given."""
        spec = base_spec(env=(f"NVIDIA_VISIBLE_DEVICES={token}",))
        new, _ = mig_lease.apply(spec, context(tmp_path, spec))
        assert stored(tmp_path) == {"c1": [mig(3)]}
        assert env_value(new) == [f"NVIDIA_VISIBLE_DEVICES={token}"]

    def test_explicit_mig_held_by_a_live_container_is_refused(self, tmp_path: Path) -> None:
        """Another live holder of the device: a one-line error naming it, nothing changed."""
        hold(tmp_path, "other", (mig(3),))
        spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=0:3",))
        with pytest.raises(ShimError, match=rf"^mig: MIG device 0:3 \({mig(3)}\) is held by "
                                            r"container other$"):
            mig_lease.apply(spec, context(tmp_path, spec))


class TestHeldAndStale:
    def test_live_holders_are_skipped(self, tmp_path: Path) -> None:
        """Devices of live holders are not given again."""
        hold(tmp_path, "a", (mig(0), mig(1)))
        spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=mig-1g.10gb",))
        new, _ = mig_lease.apply(spec, context(tmp_path, spec))
        assert env_value(new) == [f"NVIDIA_VISIBLE_DEVICES={mig(2)}"]

    def test_stale_holders_are_reclaimed_and_noted(self, tmp_path: Path) -> None:
        """A dead holder's device is given again and the reclaim is noted for the log."""
        hold(tmp_path, "gone", (mig(0),), pid=DEAD_PID)
        spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=mig-1g.10gb",))
        new, notes = mig_lease.apply(spec, context(tmp_path, spec))
        assert env_value(new) == [f"NVIDIA_VISIBLE_DEVICES={mig(0)}"]
        assert stored(tmp_path) == {"c1": [mig(0)]}
        assert any(n.startswith(f"mig-lease: reclaimed stale lease of gone ({mig(0)}): ")
                   for n in notes)

    def test_nothing_free_leaves_spec_and_context(self, tmp_path: Path) -> None:
        """Both 3g.40gb held: the nothing-free error, the request untouched, no lease taken."""
        hold(tmp_path, "x", (mig(0, 1),))
        hold(tmp_path, "y", (mig(1, 1),))
        spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=1.mig-3g.40gb",))
        ctx = context(tmp_path, spec)
        request = ctx.request
        with pytest.raises(ShimError, match=(
                rf"^mig: no free MIG instance of profile 3g.40gb on GPU 1: 2 exist, held by "
                rf"x \({mig(0, 1)}\), y \({mig(1, 1)}\)$")):
            mig_lease.apply(spec, ctx)
        assert ctx.request is request
        assert set(stored(tmp_path)) == {"x", "y"}

    def test_missing_container_id_is_an_error(self, tmp_path: Path) -> None:
        """A lease needs a holder id."""
        spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=mig-1g.10gb",))
        with pytest.raises(ShimError, match="needs the container id"):
            mig_lease.apply(spec, context(tmp_path, spec, cid=""))


class TestPipeline:
    def test_devices_modifier_declares_the_leased_instance(self, tmp_path: Path) -> None:
        """Running the whole pipeline declares the caps nodes of exactly the leased device."""
        spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=1.mig-3g.40gb",))
        hold(tmp_path, "a", (mig(0, 1),))
        result = pipeline.run(spec, context(tmp_path, spec))
        caps = sorted(d["path"] for d in result.spec["linux"]["devices"]
                      if "nvidia-caps" in d["path"])
        assert caps == sorted(f"/dev/nvidia-caps/nvidia-cap{m}"
                              for m in (cap_minor(1, 2), cap_minor(1, 2, 0)))
        assert config_errors(result.spec) == []
        process_and_devices = {"process": result.spec["process"],
                               "devices": result.spec["linux"]["devices"]}
        assert json.dumps(process_and_devices).count(mig(1, 1)) == 1
        assert result.spec["annotations"][mig_lease.LEASED] == mig(1, 1)


class TestRuntimeRoot:
    @pytest.mark.parametrize(("runtime", "flag", "root"), [
        ("/usr/bin/runc", None, "/run/runc"),
        ("/usr/bin/crun", None, "/run/crun"),
        ("/usr/bin/runc", "/run/containerd/runc/k8s.io", "/run/containerd/runc/k8s.io"),
        ("/opt/other", None, ""),
    ])
    def test_state_root(self, runtime: str, flag: Optional[str], root: str) -> None:
        """--root wins; otherwise runc's and crun's defaults; unknown runtimes: unknown."""
        assert mig_lease.runtime_state_root(runtime, flag) == root

    def test_relative_root_is_made_absolute(self) -> None:
        """A relative --root is resolved the way the runtime resolves it (from the cwd)."""
        assert mig_lease.runtime_state_root("runc", "state") == os.path.abspath("state")



class TestRetry:
    """A retried create of the same bundle resolves the profile again (the first run's
    config.json names a UUID another container may hold by then)."""

    def first_run(self, tmp_path: Path, spec: dict[str, Any]) -> dict[str, Any]:
        new, _ = mig_lease.apply(spec, context(tmp_path, spec))
        lease_release.release(str(tmp_path / "leases"), "c1", "failed-create")  # the start failed
        return new

    def test_rewritten_spec_keeps_the_original_request(self, tmp_path: Path) -> None:
        """The rewrite records what was asked and what it became."""
        spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=2,mig-1g.10gb",))
        new, _ = mig_lease.apply(spec, context(tmp_path, spec))
        assert new["annotations"] == {mig_lease.REQUESTED: "2,mig-1g.10gb",
                                      mig_lease.LEASED: f"2,{mig(0)}"}
        assert config_errors(new) == []

    def test_retry_takes_a_free_instance_when_the_first_is_held(self, tmp_path: Path) -> None:
        """Another container took the first run's instance: the retry leases another one."""
        first = self.first_run(tmp_path, base_spec(env=("NVIDIA_VISIBLE_DEVICES=mig-1g.10gb",)))
        assert env_value(first) == [f"NVIDIA_VISIBLE_DEVICES={mig(0)}"]
        hold(tmp_path, "other", (mig(0),))
        ctx = context(tmp_path, first)
        second, notes = mig_lease.apply(first, ctx)
        assert env_value(second) == [f"NVIDIA_VISIBLE_DEVICES={mig(1)}"]
        assert second["annotations"] == {mig_lease.REQUESTED: "mig-1g.10gb",
                                         mig_lease.LEASED: mig(1)}
        assert stored(tmp_path) == {"other": [mig(0)], "c1": [mig(1)]}
        assert ctx.request is not None and ctx.request.devices == (mig(1),)
        assert notes[0] == f"mig-lease: mig-1g.10gb -> {mig(1)} (1g.10gb on {gpu_uuid(0)})"

    def test_retry_of_a_mount_list_request_rewrites_the_mount(self, tmp_path: Path) -> None:
        """The device-list mount named by the stale UUID is renamed to the new one."""
        first = self.first_run(tmp_path, base_spec(mounts=("mig-1g.10gb",)))
        hold(tmp_path, "other", (mig(0),))
        second, _ = mig_lease.apply(first, context(tmp_path, first))
        assert [m["destination"] for m in second["mounts"]] == [
            f"/var/run/nvidia-container-devices/{mig(1)}"]

    def test_retry_with_the_instance_still_free_changes_nothing(self, tmp_path: Path) -> None:
        """Same free instance: the same spec object comes back (nothing to write)."""
        first = self.first_run(tmp_path, base_spec(env=("NVIDIA_VISIBLE_DEVICES=mig-1g.10gb",)))
        second, _ = mig_lease.apply(first, context(tmp_path, first))
        assert second is first

    def test_record_that_no_longer_matches_the_request_is_ignored(self, tmp_path: Path) -> None:
        """The user edited the request since: the env is the truth; the explicit UUID it names
        is leased as such."""
        spec = base_spec(env=(f"NVIDIA_VISIBLE_DEVICES={mig(2)}",))
        spec["annotations"] = {mig_lease.REQUESTED: "mig-1g.10gb", mig_lease.LEASED: mig(0)}
        new, _ = mig_lease.apply(spec, context(tmp_path, spec))
        assert env_value(new) == [f"NVIDIA_VISIBLE_DEVICES={mig(2)}"]
        assert stored(tmp_path) == {"c1": [mig(2)]}

    @pytest.mark.parametrize("requested", ["all", "0", "1", "GPU-x", "mig-1g.10gb,extra"])
    def test_record_can_only_restore_profile_tokens(self, tmp_path: Path,
                                                    requested: str) -> None:
        """Annotations are untrusted: a record naming anything but a profile token (or a
        different count) is ignored, so it cannot widen the request."""
        spec = base_spec(env=(f"NVIDIA_VISIBLE_DEVICES={mig(2)}",))
        spec["annotations"] = {mig_lease.REQUESTED: requested, mig_lease.LEASED: mig(2)}
        request = parse_request(spec, config_mod.defaults())
        assert request is not None
        assert mig_lease.original_request(spec, request) == request


def test_cdi_injected_spec_takes_no_lease(tmp_path: Path) -> None:
    """The engine chose the devices: a profile token in the env leases nothing."""
    spec = base_spec(env=("NVIDIA_VISIBLE_DEVICES=mig-1g.10gb",))
    ctx = context(tmp_path, spec)
    ctx.injected = Injection((0,), ("/dev/nvidia0 (195:0)",))
    assert mig_lease.apply(spec, ctx) == (spec, [])
    assert ctx.lease is None and stored(tmp_path) == {}
