"""A hook that runs out of time, and each component missing in turn — runc, libnvidia-container,
NVML: every one is a clear one-line error and leaves nothing half-done (config.json whole, no
container left in runc, no mount left in the rootfs)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import pytest
from hostguard import mount_points, one_line_with

if TYPE_CHECKING:
    from conftest import Bench
    from containers import Bundle

pytestmark = pytest.mark.e2e


def mounts_below(bundle: Bundle) -> list[str]:
    """Mounts inside the bundle's rootfs besides the overlay itself, seen from the host."""
    rootfs = str(bundle.path / "rootfs")
    return [p for p in mount_points() if p.startswith(rootfs + "/")]


def test_hook_timeout_fails_the_start_and_leaves_no_container(bench: Bench) -> None:
    """libnvidia-container stalls for 20 s (nvc-mount-delay) under a 2 s hook timeout: the hook
    kills the library's child before runc would kill the hook, the start fails well before the
    stall would end, naming the step and the timeout, and runc keeps no container, no mount in
    the rootfs (the stall comes before the first mount)."""
    host = bench.host(faults=["nvc-mount-delay=20000"])
    config = bench.config(host, ["runc"], hook={"timeout": 2})
    bundle = bench.bundle()
    started = time.monotonic()
    result = bench.shim("run", bundle, config, "stalled")
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert elapsed < 15, elapsed
    one_line_with(result.stderr, "gpu-container-hook: mount error: libnvidia-container did not "
                                 "finish within")
    assert bench.runc_containers() == []
    assert mounts_below(bundle) == []
    assert "prestart" in bundle.spec()["hooks"]  # config.json is the shim's complete rewrite


def test_missing_runc_is_one_line_and_config_json_untouched(bench: Bench) -> None:
    """No low-level runtime: ``runtime: no low-level runtime found`` naming what was tried, and
    config.json byte-identical (the runtime is found before anything is rewritten)."""
    bundle = bench.bundle()
    before = bundle.config_path.read_bytes()
    config = bench.config(bench.host(), ["/nonexistent/runc", "no-such-runtime"])
    result = bench.shim("create", bundle, config)
    assert result.returncode == 1
    assert result.stderr.startswith("gpu-container-runtime: runtime: no low-level runtime found:"
                                    " tried /nonexistent/runc, no-such-runtime (config key "
                                    "runtimes) on PATH="), result.stderr
    assert result.stderr.count("\n") == 1
    assert bundle.config_path.read_bytes() == before


def test_missing_nvml_is_one_line_and_config_json_untouched(bench: Bench) -> None:
    """NVML cannot load: the shim's discovery fails naming the library, before config.json is
    touched."""
    bundle = bench.bundle()
    before = bundle.config_path.read_bytes()
    config = bench.config(bench.host(), nvml={"library": "/nonexistent/libnvidia-ml.so.1"})
    result = bench.shim("create", bundle, config)
    assert result.returncode == 1
    assert result.stderr.startswith("gpu-container-runtime: discovery: nvml: cannot load "
                                    "/nonexistent/libnvidia-ml.so.1"), result.stderr
    assert result.stderr.count("\n") == 1
    assert bundle.config_path.read_bytes() == before
    assert not bench.stub_marker.exists()


def test_missing_libnvidia_container_fails_the_hook_in_one_line(bench: Bench) -> None:
    """libnvidia-container cannot load (and no CLI is configured): the hook fails in one line
    naming the library, runc keeps no container, nothing is mounted in the rootfs, and
    config.json is the shim's complete, valid rewrite."""
    bundle = bench.bundle()
    config = bench.config(bench.host(), ["runc"], libnvidia_container={
        "library": "/nonexistent/libnvidia-container.so.1"})
    result = bench.shim("run", bundle, config, "no-library")
    assert result.returncode != 0
    one_line_with(result.stderr, "gpu-container-hook: load error: no usable libnvidia-container "
                                 "(tried /nonexistent/libnvidia-container.so.1: ")
    assert bench.runc_containers() == []
    assert mounts_below(bundle) == []
    json.loads(bundle.config_path.read_text())
    assert not (bundle.path / "upper" / "usr" / "lib64").exists()
