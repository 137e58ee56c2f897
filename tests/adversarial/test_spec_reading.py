"""config.json and argv read exactly as runc reads them, through shim, hook and simulated
libnvidia-container with real runc.

runc decodes config.json with Go's encoding/json (keys folded without regard to case, a repeated
object merged into the earlier one) and parses argv with Go's flag rules. Each case spells its
config.json or argv so that a reader with other rules would check or prepare one thing while
runc acts on another: a decoy rootfs on the host, capabilities that look privileged, an
``oomScoreAdj`` the clamp does not see, a bundle flag runc reads differently. The start must
then either work on what runc uses or fail in one line, and nothing outside the rootfs changes.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import pytest
from containers import SHIM, Bundle
from hostguard import host_snapshot, one_line_with

if TYPE_CHECKING:
    from conftest import Sandbox

pytestmark = pytest.mark.e2e

FIRMWARE = "lib/firmware/nvidia/535.104.05/gsp_ga10x.bin"
"""A file the hook mounts into every GPU container's rootfs (it lands in the overlay's upper)."""
UNPRIVILEGED_MIG = ("gpu-container-runtime: request: cannot set NVIDIA_MIG_CONFIG_DEVICES in an "
                    "unprivileged container")


class Pairs(list):  # type: ignore[type-arg]  # (key, value) pairs of one JSON object
    """A JSON object that may repeat a key, written in order."""


def dumps(value: Any) -> str:
    """JSON text; a ``Pairs`` becomes an object with its keys as given, repeats included."""
    if isinstance(value, (Pairs, dict)):
        items = value if isinstance(value, Pairs) else list(value.items())
        return "{" + ",".join(f"{json.dumps(k)}:{dumps(v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value)


def rewrite(bundle: Bundle, shape: Callable[[dict[str, Any]], Pairs]) -> bytes:
    """Replace the bundle's config.json by ``shape`` of its spec; returns the bytes written."""
    data = dumps(shape(bundle.spec())).encode()
    bundle.config_path.write_bytes(data)
    return data


def top(spec: dict[str, Any], *extra: tuple[str, Any], drop: Sequence[str] = ()) -> Pairs:
    """The spec's members without ``drop``, then ``extra`` members in order."""
    return Pairs([*((k, v) for k, v in spec.items() if k not in drop), *extra])


# --- root: the hook must work in the rootfs runc uses, never in a decoy ---------------------
RootShape = Callable[[dict[str, Any], str], Pairs]
"""Spells config.json so runc's root is the real rootfs and a naive reading finds ``decoy``."""

ROOT_SHAPES: dict[str, RootShape] = {
    "decoy-root-then-Root": lambda s, decoy: top(
        s, ("root", {"path": decoy}), ("Root", s["root"]), drop=["root"]),
    "decoy-root-then-rOoT": lambda s, decoy: top(
        s, ("root", {"path": decoy, "readonly": False}), ("rOoT", {"path": s["root"]["path"]}),
        drop=["root"]),
    "path-then-PATH-in-one-root": lambda s, decoy: top(
        s, ("root", Pairs([("path", decoy), ("PATH", s["root"]["path"])])), drop=["root"]),
    "root-then-Root-naming-only-readonly": lambda s, decoy: top(
        s, ("Root", {"path": s["root"]["path"]}), ("ROOT", {"readonly": False}),
        ("root", Pairs([("Readonly", False)])), drop=["root"]),
    "escaped-root-key-after-decoy": lambda s, decoy: top(
        s, ("root", {"path": decoy}), ("r\u006fot", {"path": s["root"]["path"]}),
        drop=["root"]),
    "null-path-keeps-the-earlier": lambda s, decoy: top(
        s, ("root", Pairs([("path", s["root"]["path"]), ("path", None)])), drop=["root"]),
}


@pytest.mark.parametrize("name", ROOT_SHAPES)
def test_hook_and_runc_use_the_same_rootfs_however_root_is_spelled(
        sandbox: Sandbox, name: str) -> None:
    """The container starts, the driver files land in runc's rootfs, and the decoy host
    directory a naive reading would have prepared is untouched."""
    bundle = sandbox.bundle()
    decoy = str(sandbox.canary.root)
    rewrite(bundle, lambda spec: ROOT_SHAPES[name](spec, decoy))
    started = sandbox.start(bundle)
    assert started.outside == []
    assert started.returncode == 0, started.stderr
    assert (bundle.path / "upper" / FIRMWARE).is_file()


def test_root_path_is_cleaned_as_text_like_runc(sandbox: Sandbox) -> None:
    """``link/../rootfs`` is ``<bundle>/rootfs`` for runc, wherever ``link`` points: the hook
    prepares that rootfs, not a directory beside the link's target."""
    bundle = sandbox.bundle()
    (bundle.path / "link").symlink_to(sandbox.canary.root / "etc")
    rewrite(bundle, lambda spec: top(spec, ("root", {"path": "link/../rootfs"}), drop=["root"]))
    started = sandbox.start(bundle)
    assert started.outside == []
    assert started.returncode == 0, started.stderr
    assert (bundle.path / "upper" / FIRMWARE).is_file()


# --- capabilities: privileged only when runc will grant CAP_SYS_ADMIN ----------------------
def caps_shape(kind: str) -> Callable[[dict[str, Any]], Pairs]:
    def shape(spec: dict[str, Any]) -> Pairs:
        process = dict(spec["process"])
        caps = process.pop("capabilities")
        plain = [c for c in caps["bounding"] if c != "CAP_SYS_ADMIN"]
        admin = Pairs([(k, [*v, "CAP_SYS_ADMIN"]) for k, v in caps.items()])
        if kind == "capabilities-then-Capabilities":
            new_process = top(process, ("capabilities", admin),
                              ("Capabilities", {"Bounding": plain}))
        elif kind == "bounding-then-BOUNDING":
            new_process = top(process, ("capabilities", Pairs([*admin, ("BOUNDING", plain)])))
        else:  # process-then-Process: a later process object merged into the first
            new_process = top(process, ("capabilities", admin))
            return top(spec, ("process", new_process),
                       ("Process", {"capabilities": {"bounding": plain}}), drop=["process"])
        return top(spec, ("process", new_process), drop=["process"])
    return shape


@pytest.mark.parametrize("kind", ["capabilities-then-Capabilities", "bounding-then-BOUNDING",
                                  "process-then-Process"])
def test_capabilities_spelled_twice_do_not_make_a_container_privileged(
        sandbox: Sandbox, kind: str) -> None:
    """runc's bounding set lacks CAP_SYS_ADMIN, so the global MIG config capability is
    refused in one line, and config.json is left as it was."""
    bundle = sandbox.bundle(env=("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_MIG_CONFIG_DEVICES=all"))
    written = rewrite(bundle, caps_shape(kind))
    started = sandbox.start(bundle, topology="dgx-a100-mig")
    assert started.outside == []
    assert started.returncode != 0
    one_line_with(started.stderr, UNPRIVILEGED_MIG)
    assert bundle.config_path.read_bytes() == written


# --- oomScoreAdj: clamped under any spelling, so runc can apply it --------------------------
OOM_SHAPES: dict[str, Callable[[dict[str, Any]], Pairs]] = {
    "OOMScoreAdj": lambda s: top(s, ("process", top(s["process"], ("OOMScoreAdj", 5000))),
                                 drop=["process"]),
    "long-s": lambda s: top(s, ("process", top(s["process"], ("oom\u017fcoreAdj", 5000))),
                            drop=["process"]),
    "repeated-last-wins": lambda s: top(
        s, ("process", top(s["process"], ("oomScoreAdj", 0), ("OOMSCOREADJ", 5000))),
        drop=["process"]),
    "in-a-later-Process": lambda s: top(s, ("Process", {"oomscoreadj": 5000})),
}


@pytest.mark.parametrize("name", OOM_SHAPES)
def test_oom_score_adj_is_clamped_however_it_is_spelled(sandbox: Sandbox, name: str) -> None:
    """5000 would make runc fail writing oom_score_adj; clamped to 1000 the start succeeds,
    and the rewritten config.json holds the field once, in runc's spelling."""
    bundle = sandbox.bundle()
    rewrite(bundle, OOM_SHAPES[name])
    started = sandbox.start(bundle)
    assert started.outside == []
    assert started.returncode == 0, started.stderr
    text = bundle.config_path.read_text()
    assert json.loads(text)["process"]["oomScoreAdj"] == 1000
    assert text.lower().count('"oomscoreadj"') == 1


# --- argv: the bundle and id runc reads ---------------------------------------------------
@dataclass
class Outcome:
    returncode: int
    stderr: str
    outside: list[str]


def start_with(sandbox: Sandbox, words: Callable[[str, str], list[str]],
               bundle: Bundle) -> Outcome:
    """``run`` through the shim with the command's words built from (bundle path, id), then
    the sandbox's checks (the conftest's ``start`` fixes its argv)."""
    root = sandbox.tmp / "runc-state"
    root.mkdir(exist_ok=True)
    cid = f"adv-{uuid.uuid4().hex[:10]}"
    sandbox.started.append((root, cid))
    before = host_snapshot([sandbox.canary.root, sandbox.traps.dir])
    result = subprocess.run([SHIM, "--root", str(root), "run", *words(str(bundle.path), cid)],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                 "GPU_CONTAINER_SHIM_CONFIG": str(sandbox.config())})
    subprocess.run(["runc", "--root", str(root), "delete", "--force", cid],
                   capture_output=True, check=False)
    after = host_snapshot([sandbox.canary.root, sandbox.traps.dir])
    outside = sandbox.canary.changes() + [f"host: {key}" for key in before
                                          if before[key] != after[key]]
    if sandbox.traps.ran():
        outside.append(f"image code ran on the host: {sandbox.traps.ran()!r}")
    return Outcome(result.returncode, result.stderr, outside)


ARGV_SPELLINGS: dict[str, Callable[[str, str], list[str]]] = {
    "--bundle=": lambda b, cid: [f"--bundle={b}", cid],
    "-b=": lambda b, cid: [f"-b={b}", cid],
    "--b": lambda b, cid: ["--b", b, cid],
    "-bundle after the id": lambda b, cid: [cid, "-bundle", b],
    "boolean before -b": lambda b, cid: ["--no-pivot", "-b", b, cid],
    "-d=false": lambda b, cid: ["-d=false", "--bundle", b, cid],
    "id after --": lambda b, cid: ["-b", b, "--", cid],
}


@pytest.mark.parametrize("name", ARGV_SPELLINGS)
def test_every_bundle_spelling_runc_accepts_is_prepared(sandbox: Sandbox, name: str) -> None:
    """The shim finds the bundle runc uses and prepares it: the driver files land."""
    bundle = sandbox.bundle()
    started = start_with(sandbox, ARGV_SPELLINGS[name], bundle)
    assert started.outside == []
    assert started.returncode == 0, started.stderr
    assert (bundle.path / "upper" / FIRMWARE).is_file()


REFUSED_ARGV: dict[str, Callable[[str, str], list[str]]] = {
    "both names of the bundle flag": lambda b, cid: ["-b", "/nonexistent", "--bundle", b, cid],
    "flags after an id that follows a boolean": lambda b, cid: ["--no-pivot", cid, "-b", b],
    "a value flag swallowing -b": lambda b, cid: ["--pid-file", "-b", b, cid],
}


@pytest.mark.parametrize("name", REFUSED_ARGV)
def test_argv_runc_refuses_leaves_the_bundle_untouched(sandbox: Sandbox, name: str) -> None:
    """Where runc refuses the argv, the shim rewrites no config.json either."""
    bundle = sandbox.bundle()
    before = bundle.config_path.read_bytes()
    started = start_with(sandbox, REFUSED_ARGV[name], bundle)
    assert started.outside == []
    assert started.returncode != 0
    assert bundle.config_path.read_bytes() == before
