"""SIGKILL of the shim at each step of a create (test-only fault points, honoured only with a
simulated host's configuration): config.json is always whole — the engine's bytes or the
complete rewrite — the runtime was never reached, and a retried create gives exactly what an
uninterrupted one gives."""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING

import pytest
from oci_schema import config_errors

if TYPE_CHECKING:
    from conftest import Bench

pytestmark = pytest.mark.e2e

# (fault point, topology, device request, whether config.json is rewritten when it fires)
POINTS = (
    ("shim-after-load", "dgx-a100", "0", False),
    ("shim-before-write", "dgx-a100", "0", False),
    ("shim-before-rename", "dgx-a100", "0", False),
    ("shim-after-write", "dgx-a100", "0", True),
    ("mig-lease-before-commit", "dgx-a100-mig", "mig-1g.10gb", False),
    ("mig-lease-after-commit", "dgx-a100-mig", "mig-1g.10gb", False),
)


@pytest.mark.parametrize(("point", "topology", "devices", "rewritten"), POINTS,
                         ids=[p[0] for p in POINTS])
def test_sigkill_at_each_step_leaves_config_json_whole(
        bench: Bench, point: str, topology: str, devices: str, rewritten: bool) -> None:
    """Killed at ``point``: exit by SIGKILL, config.json byte-identical to the engine's (or the
    complete rewrite, after the rename), at most one complete temp file left beside it, the
    runtime not reached; the engine's retry then gives the uninterrupted result."""
    config = bench.config(bench.host(topology))
    env = (f"NVIDIA_VISIBLE_DEVICES={devices}",)
    reference = bench.bundle(env)
    assert bench.shim("create", reference, config, "reference").returncode == 97
    rewritten_reference = reference.config_path.read_bytes()
    bench.stub_marker.unlink()
    # The same configuration file for a fresh host: the victim's MIG leases start from an empty
    # store as the reference's did, and config.json (which names the file) can match.
    config.write_text(bench.config(bench.host(topology)).read_text())

    victim = bench.bundle(env)
    original = victim.config_path.read_bytes()
    expected = rewritten_reference.replace(str(reference.path).encode(),  # its root.path
                                           str(victim.path).encode())
    killed = bench.shim("create", victim, config, "victim",
                        GPU_CONTAINER_SHIM_FAULT=f"{point}:abort")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not bench.stub_marker.exists()
    assert victim.config_path.read_bytes() == (expected if rewritten else original)
    leftovers = [p for p in victim.path.iterdir() if p.name.startswith(".config.json.")]
    if point == "shim-before-rename":
        assert [p.read_bytes() for p in leftovers] == [expected]  # complete, never used
    else:
        assert leftovers == []

    retried = bench.shim("create", victim, config, "victim")
    assert retried.returncode == 97, retried.stderr
    assert victim.config_path.read_bytes() == expected
    assert config_errors(json.loads(expected)) == []
