"""Adversarial images through shim, hook and simulated libnvidia-container with real runc.

Each case shapes an image (an overlay over busybox with traps planted) so that a hook or library
following its symlinks, trusting its environment or its annotations would write on the host or
run its code there. Every case must end in a clear outcome — the container starts, or the start
fails with one line naming the problem — and leave nothing changed outside the rootfs: the
canary tree the symlinks point at, the real host paths they name (/etc, /usr/lib, /run, /dev …),
host mounts, and the traps' marker. Every case runs again with the shim in spec mode.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest
from hostguard import Canary, Traps, one_line_with
from spec_mode import SPEC_HOOK

if TYPE_CHECKING:
    from conftest import Sandbox

pytestmark = pytest.mark.e2e

Shape = Callable[[Path, Canary, Traps], None]
"""Changes an image (its overlay rootfs) given the host canary and traps it may aim at."""

LDCONFIG_FAILED = "gpu-container-hook: ldcache error: process /sbin/ldconfig failed"
UNKNOWN_DEVICE = "gpu-container-runtime: request: unknown device"
LIBCUDA = "libcuda.so.535.104.05"
"""The file the library mounts (ldconfig adds the libcuda.so.1 link next to it)."""
DEEP = "../" * 24
"""Enough ``..`` to climb from anywhere in a rootfs to the host's / if a resolver let it."""


def link(rootfs: Path, relative: str, target: str) -> None:
    """Make ``relative`` in the image a symlink to ``target``, replacing what was there."""
    path = rootfs / relative
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def links(*pairs: tuple[str, str], canary_relative: bool = False,
          dotdot: bool = False, debian: bool = False) -> Shape:
    """A shape making each (path, target) a symlink; targets name canary paths (absolute, or
    as a ``../`` chain with ``dotdot``) unless they start with ``/`` (a real host path)."""
    def shape(rootfs: Path, canary: Canary, traps: Traps) -> None:
        if debian:
            (rootfs / "etc" / "debian_version").write_text("12.0\n")
        for relative, target in pairs:
            if not target.startswith("/"):
                target = canary.path(target)
                if dotdot:
                    target = DEEP + target.lstrip("/")
            link(rootfs, relative, target)
    return shape


def nothing(rootfs: Path, canary: Canary, traps: Traps) -> None:
    """The image as it is (cases that attack through env or annotations)."""


def smuggled_hooks(traps: Traps) -> dict[str, str]:
    """Hook entries running the trap script, in every annotation shape some tool has read."""
    entry = {"path": str(traps.script), "args": [str(traps.script)]}
    return {"oci.runtime.hooks.prestart": json.dumps([entry]),
            "io.containers.hooks": json.dumps({"prestart": [entry]}),
            "org.opencontainers.runtime.hooks": json.dumps({"hooks": {"prestart": [entry]}}),
            "nvidia.com/hook": str(traps.script),
            "gpu-container-shim.hook.path": str(traps.script)}


@dataclass(frozen=True)
class ImageCase:
    """One adversarial image and the outcome it must have."""

    id: str
    shape: Shape = nothing
    env: tuple[str, ...] = ("NVIDIA_VISIBLE_DEVICES=0",)
    env_from_traps: Callable[[Traps], tuple[str, ...]] = lambda traps: ()
    annotations: Callable[[Traps], Mapping[str, str]] = lambda traps: {}
    topology: str = "dgx-a100"
    error: str = ""
    """Empty: the container must start. Otherwise the start must fail with exactly one stderr
    line holding this text."""
    lands: str = ""
    """Where a started container's driver file must be in its writable layer: where the image's
    links lead when resolved inside the rootfs (``{canary}``: the canary's host path)."""


CASES = (
    # --- symlinks at the driver library and binary directories -----------------------------
    ImageCase("libdir-absolute", links(("usr/lib64", "usr/lib64")),
              lands="{canary}/usr/lib64/" + LIBCUDA),
    ImageCase("libdir-dotdot-chain", links(("usr/lib64", "usr/lib64"), dotdot=True),
              lands="{canary}/usr/lib64/" + LIBCUDA),
    ImageCase("multiarch-libdir-absolute",
              links(("usr/lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"), debian=True),
              lands="{canary}/usr/lib/x86_64-linux-gnu/" + LIBCUDA),
    ImageCase("libdir-to-real-host-libdir",
              links(("usr/lib64", DEEP + "usr/lib/x86_64-linux-gnu")),
              lands="usr/lib/x86_64-linux-gnu/" + LIBCUDA),
    ImageCase("library-file-dangling-into-host",
              links(("usr/lib64/" + LIBCUDA, "new-dir/" + LIBCUDA)),
              error="gpu-container-hook: mount error: file creation failed: /usr/lib64/"
                    + LIBCUDA + ": No such file or directory"),
    ImageCase("bindir-absolute", links(("usr/bin", "usr/bin")),
              lands="{canary}/usr/bin/nvidia-smi"),
    ImageCase("binary-to-proc-self-exe", links(("usr/bin/nvidia-smi", "/proc/self/exe")),
              error="gpu-container-hook: mount error: file creation failed: /usr/bin/nvidia-smi:"),
    ImageCase("usr-to-host-root-chain", links(("usr", DEEP.rstrip("/"))),
              lands="lib64/" + LIBCUDA),
    ImageCase("libdir-symlink-loop", links(("usr/lib64", "/usr/lib64")),
              error="gpu-container-hook: mount error: file creation failed: /usr/lib64/"),
    # --- the ld cache: /etc, ld.so.cache, ld.so.conf(.d) ------------------------------------
    ImageCase("etc-absolute", links(("etc", "etc")), error=LDCONFIG_FAILED),
    ImageCase("ld-so-cache-absolute", links(("etc/ld.so.cache", "etc/ld.so.cache")),
              lands="etc/ld.so.cache"),
    ImageCase("ld-so-cache-dotdot-chain", links(("etc/ld.so.cache", "etc/ld.so.cache"),
                                                dotdot=True), lands="etc/ld.so.cache"),
    ImageCase("ld-so-cache-to-real-host-file", links(("etc/ld.so.cache", "/etc/ld.so.cache")),
              lands="etc/ld.so.cache"),
    ImageCase("ld-so-cache-through-proc-root",
              links(("etc/ld.so.cache", "/proc/1/root/etc/ld.so.cache")),
              lands="etc/ld.so.cache"),
    ImageCase("etc-through-proc-root", links(("etc", "/proc/1/root/etc")),
              error=LDCONFIG_FAILED),
    ImageCase("ld-so-conf-d-absolute", links(("etc/ld.so.conf.d", "etc/ld.so.conf.d"),
                                             ("etc/ld.so.conf", "etc/ld.so.conf")),
              lands="etc/ld.so.cache"),
    # --- /dev, /proc, /run, /var/run, /tmp, firmware, compat, MIG caps ----------------------
    ImageCase("dev-absolute", links(("dev", "dev")),
              error="gpu-container-runtime: rootfs: /dev in the image is a symlink to "),
    ImageCase("proc-absolute", links(("proc", "proc")),
              error='error mounting \\"proc\\" to rootfs at \\"/proc\\": filesystem'),
    ImageCase("run-absolute", links(("run", "run"), ("var/run", "/run")),
              lands="{canary}/run/nvidia-persistenced/socket"),
    ImageCase("var-run-absolute", links(("var/run", "run")),
              lands="{canary}/run/nvidia-persistenced/socket"),
    ImageCase("var-run-dotdot-chain", links(("var/run", "run"), dotdot=True),
              lands="{canary}/run/nvidia-persistenced/socket"),
    ImageCase("tmp-absolute", links(("tmp", "tmp")),  # the canary lives under /tmp: a loop
              error="gpu-container-hook: mount error: file creation failed: /tmp/nvidia-mps:"),
    ImageCase("firmware-absolute", links(("lib/firmware", "lib/firmware")),
              lands="{canary}/lib/firmware/nvidia/535.104.05/gsp_ga10x.bin"),
    ImageCase("compat-dir-absolute", links(("usr/local/cuda/compat", "usr/local/cuda/compat"))),
    ImageCase("mig-caps-paths-absolute",
              links(("dev/nvidia-caps", "dev"), ("proc/driver/nvidia", "proc/driver/nvidia")),
              env=("NVIDIA_VISIBLE_DEVICES=0:1",), topology="dgx-a100-mig"),
    # --- the container's environment aimed at the root hook ---------------------------------
    ImageCase("ld-preload",
              env_from_traps=lambda t: (f"LD_PRELOAD={t.shared_object}:/lib/evil.so",)),
    ImageCase("ld-library-path", env_from_traps=lambda t: (f"LD_LIBRARY_PATH={t.library_dir}",)),
    ImageCase("ld-audit", env_from_traps=lambda t: (f"LD_AUDIT={t.shared_object}",)),
    ImageCase("pythonpath", env_from_traps=lambda t: (f"PYTHONPATH={t.python_dir}:/pytrap",)),
    ImageCase("pythonstartup", env_from_traps=lambda t: (f"PYTHONSTARTUP={t.startup}",
                                                         "PYTHONINSPECT=1")),
    ImageCase("pythonhome", env_from_traps=lambda t: (f"PYTHONHOME={t.python_home}",)),
    ImageCase("shim-config-in-image-env",
              env_from_traps=lambda t: (f"GPU_CONTAINER_SHIM_CONFIG={t.config}",)),
    ImageCase("env-value-with-newlines", env=("NVIDIA_VISIBLE_DEVICES=0", "NOTE=a\nb\n\nc")),
    ImageCase("env-value-with-nul", env=("NVIDIA_VISIBLE_DEVICES=0", "NOTE=a\x00b"),
              error="environment variable value can't contain null"),
    ImageCase("env-value-100k-chars", env=("NVIDIA_VISIBLE_DEVICES=0", "NOTE=" + "x" * 100_000)),
    ImageCase("visible-devices-device-path", env=("NVIDIA_VISIBLE_DEVICES=/dev/nvidia0",),
              error=f"{UNKNOWN_DEVICE} /dev/nvidia0; expected an index"),
    ImageCase("visible-devices-dotdot-path",
              env=("NVIDIA_VISIBLE_DEVICES=0,../../../../etc/shadow",),
              error=f"{UNKNOWN_DEVICE} ../../../../etc/shadow; expected an index"),
    ImageCase("visible-devices-100k-token", env=("NVIDIA_VISIBLE_DEVICES=" + "7" * 100_000,),
              error="gpu-container-runtime: request: NVIDIA_VISIBLE_DEVICES: item longer than "
                    "256 characters: 7777"),
    ImageCase("visible-devices-5000-tokens", env=("NVIDIA_VISIBLE_DEVICES=" + "0," * 5000,),
              error="gpu-container-runtime: request: NVIDIA_VISIBLE_DEVICES: more than 1024 "
                    "items"),
    ImageCase("visible-devices-newline-and-nul",
              env=("NVIDIA_VISIBLE_DEVICES=0\n1,2\x003",),
              error=f"{UNKNOWN_DEVICE} 0\\n1; expected an index"),
    ImageCase("capabilities-path-like",
              env=("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_DRIVER_CAPABILITIES=../../compute"),
              error="gpu-container-runtime: request: NVIDIA_DRIVER_CAPABILITIES: unsupported "
                    "capability ../../compute "),
    # --- annotations: they may only name things, never define them --------------------------
    ImageCase("hooks-smuggled-in-annotations", annotations=smuggled_hooks),
    ImageCase("policy-defined-in-annotation",
              annotations=lambda t: {"ai.scheduling.policy":
                                     '{"oom_score_adj": -1000, "cgroup_parent": "/"}'},
              error="gpu-container-runtime: policy: unknown policy '{\"oom_score_adj\": -1000,"),
)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_adversarial_image_starts_safely_or_fails_in_one_line(
        sandbox: Sandbox, case: ImageCase) -> None:
    """The case's image either starts or fails with its one error line, and nothing outside
    the rootfs changed: canary tree, real host paths, host mounts, trap marker."""
    bundle = sandbox.bundle(env=case.env + case.env_from_traps(sandbox.traps),
                            annotations=case.annotations(sandbox.traps))
    case.shape(bundle.path / "rootfs", sandbox.canary, sandbox.traps)
    started = sandbox.start(bundle, topology=case.topology)
    assert started.outside == []
    if case.error:
        assert started.returncode != 0
        one_line_with(started.stderr, case.error)
    else:
        assert started.returncode == 0, started.stderr
    if case.lands:
        where = case.lands.format(canary=str(sandbox.canary.root).lstrip("/"))
        landed = bundle.path / "upper" / where
        assert landed.exists() and not landed.is_symlink(), f"nothing at {where} in the rootfs"


SPEC_MODE = {"mode": "spec", "spec": {"hook_path": SPEC_HOOK}}
"""The sandbox's configuration sections for spec mode (README §Spec mode)."""

OURS_OR_RUNC = ("gpu-container-runtime: ", "gpu-container-spec-hook: ", "runc run failed: ",
                "runc create failed: ")
"""What a failed spec-mode start's one line may come from: the shim, the lean hook, or runc
refusing a mount itself."""


def spec_mode_error(case: ImageCase) -> str:
    """The error a case must fail with in spec mode: the shim's and runc's own checks are the
    same in both modes; the prestart hook's do not exist there (empty: see the test)."""
    return "" if case.error.startswith("gpu-container-hook: ") else case.error


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_adversarial_image_in_spec_mode_starts_safely_or_fails_in_one_line(
        sandbox: Sandbox, case: ImageCase) -> None:
    """The same images with the shim in spec mode (runc mounts the driver files, the lean hook
    makes the links and the ld cache): nothing outside the rootfs changes; a case the shim or
    runc refuses in hook mode fails with the same line; any other either starts, with its
    driver file where the image's links lead inside the rootfs, or fails with one line from
    the shim, the lean hook or runc."""
    bundle = sandbox.bundle(env=case.env + case.env_from_traps(sandbox.traps),
                            annotations=case.annotations(sandbox.traps))
    case.shape(bundle.path / "rootfs", sandbox.canary, sandbox.traps)
    started = sandbox.start(bundle, topology=case.topology, **SPEC_MODE)
    assert started.outside == []
    expected = spec_mode_error(case)
    if expected:
        assert started.returncode != 0
        one_line_with(started.stderr, expected)
    elif started.returncode != 0:
        lines = [line for line in started.stderr.splitlines()
                 if any(source in line for source in OURS_OR_RUNC)]
        assert len(lines) == 1, started.stderr
    elif case.lands:
        where = case.lands.format(canary=str(sandbox.canary.root).lstrip("/"))
        landed = bundle.path / "upper" / where
        assert landed.exists() and not landed.is_symlink(), f"nothing at {where} in the rootfs"
