"""Enter a simulated host: a private mount namespace where DIR's devices, /proc/driver files,
sysfs entries, driver libraries and binaries appear at their real paths (``gpu-ctk simulate
run``). The plan is ``simulator.host_view``; this module carries it out.

Nothing outside the namespace changes: propagation is made private before the first mount, every
new file is created in a tmpfs that exists only in the namespace, and the writable layers of the
overlays live in that tmpfs too. The workspace tmpfs is mounted on DIR/run/view (created once).
"""

from __future__ import annotations

import ctypes
import os
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, Optional

from simulator import host_view
from simulator.errors import SimulatorError, one_line

CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
WORKSPACE = "run/view"

_libc = ctypes.CDLL(None, use_errno=True)


def _fail(what: str) -> NoReturn:
    error = ctypes.get_errno()
    raise SimulatorError("simulate", one_line(f"{what}: {os.strerror(error)}"))


def _mount(source: Optional[str], target: str, fstype: Optional[str], flags: int,
           data: Optional[str] = None) -> None:
    encoded = [None if value is None else value.encode() for value in (source, target, fstype,
                                                                        data)]
    if _libc.mount(encoded[0], encoded[1], encoded[2], ctypes.c_ulong(flags), encoded[3]) != 0:
        _fail(f"mount {source or fstype} on {target}")


def _bind(source: str, target: str) -> None:
    _mount(source, target, None, MS_BIND | MS_REC)


class View:
    """The namespace's scratch space and the directories already replaced by a tmpfs."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.opened: set[str] = set()
        self.counter = 0

    def scratch(self, kind: str) -> Path:
        self.counter += 1
        path = self.workspace / f"{kind}{self.counter}"
        path.mkdir()
        return path

    def open_dir(self, target: Path) -> None:
        """Replace ``target`` by a tmpfs holding everything it held (symlinks copied, every
        other entry bind-mounted back), so that entries can be added to it."""
        if str(target) in self.opened:
            return
        hold = self.scratch("hold")
        _bind(str(target), str(hold))
        mode = stat.S_IMODE(os.stat(target).st_mode)
        _mount("tmpfs", str(target), "tmpfs", MS_NOSUID, f"mode={mode:o}")
        for entry in os.scandir(hold):
            place = target / entry.name
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), place)
                continue
            _placeholder(place, entry.is_dir(follow_symlinks=False))
            _bind(entry.path, str(place))
        self.opened.add(str(target))

    def graft(self, source: Path, target: Path, omit: frozenset[str] = frozenset(),
              under: str = "") -> None:
        """Lay ``source``'s tree onto ``target``: existing files are bound over, directories
        merged, missing entries added (``target`` opened once for them); ``omit`` names entries
        (relative to the first ``source``; ``under`` is where this call is) left out."""
        for entry in sorted(os.scandir(source), key=lambda item: item.name):
            relative = f"{under}{entry.name}"
            if relative in omit:
                continue
            place = target / entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if os.path.lexists(place) and not place.is_symlink():
                if is_dir and place.is_dir():
                    self.graft(Path(entry.path), place, omit, relative + "/")
                elif not is_dir and not place.is_dir():
                    _bind(entry.path, str(place))
                else:
                    raise SimulatorError("simulate", one_line(
                        f"{entry.path} cannot be shown at {place}: one is a directory, the "
                        f"other is not"))
                continue
            self.open_dir(target)
            if entry.is_symlink():
                if os.path.lexists(place):
                    os.unlink(place)
                os.symlink(os.readlink(entry.path), place)
                continue
            if os.path.lexists(place):
                os.unlink(place)
            _placeholder(place, is_dir)
            if is_dir and any(item.startswith(relative + "/") for item in omit):
                # a directory of our own on the opened tmpfs: its entries go in one by one
                self.opened.add(str(place))
                self.graft(Path(entry.path), place, omit, relative + "/")
                continue
            _bind(entry.path, str(place))

    def overlay(self, item: host_view.Overlay) -> None:
        layers = [layer for layer in item.lowers if os.path.isdir(layer)]
        upper, work = self.scratch("upper"), self.scratch("work")
        options = (f"lowerdir={':'.join([*layers, item.target])},upperdir={upper},"
                   f"workdir={work}")
        _mount("overlay", item.target, "overlay", 0, options)

    def merge(self, item: host_view.Merge) -> None:
        with open(item.target, encoding="utf-8") as real, \
                open(item.extra, encoding="utf-8") as extra:
            text = host_view.merged_devices(real.read(), extra.read())
        shown = self.scratch("merge") / os.path.basename(item.target)
        shown.write_text(text, encoding="utf-8")
        _mount(str(shown), item.target, None, MS_BIND)


def _placeholder(path: Path, is_dir: bool) -> None:
    if is_dir:
        path.mkdir()
    else:
        path.touch()


def enter(sim_dir: Path) -> None:
    """Move this process into a private mount namespace showing the host in ``sim_dir``."""
    plan = host_view.plan(sim_dir)
    workspace = sim_dir / WORKSPACE
    workspace.mkdir(parents=True, exist_ok=True)
    if _libc.unshare(CLONE_NEWNS) != 0:
        _fail("unshare(CLONE_NEWNS) (gpu-ctk simulate run needs root)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", str(workspace), "tmpfs", MS_NOSUID, "mode=700")
    view = View(workspace)
    # A pristine proc and sysfs: the kernel lets a user namespace mount a new proc or sysfs
    # only while one mount of each is fully visible, and the grafts below cover parts of /proc
    # and /sys (containers with a user namespace inside the view need this; see the README).
    for fstype in ("proc", "sysfs"):
        _mount(fstype, str(view.scratch(fstype)), fstype, MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for overlay in plan.overlays:
        view.overlay(overlay)
    for graft in plan.grafts:
        if not os.path.isdir(graft.source):
            continue
        if not os.path.isdir(graft.target):
            raise SimulatorError("simulate", one_line(
                f"{graft.target} is not a directory on this host, so {graft.source} cannot be "
                f"shown there"))
        view.graft(Path(graft.source), Path(graft.target), graft.omit)
    for merge in plan.merges:
        if os.path.isfile(merge.extra):
            view.merge(merge)
    _refresh_ld_cache(view)


def _refresh_ld_cache(view: View) -> None:
    """Index the added libraries in a new ld.so.cache shown at /etc/ld.so.cache (dlopen by
    SONAME and NCT's ld-cache lookups); ldconfig's aux cache goes to the namespace's tmpfs."""
    if os.path.isdir("/var/cache/ldconfig"):
        _mount("tmpfs", "/var/cache/ldconfig", "tmpfs", MS_NOSUID, "mode=700")
    cache = view.scratch("ldcache") / "ld.so.cache"
    done = subprocess.run(["ldconfig", "-X", "-C", str(cache)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0 or not cache.is_file():
        raise SimulatorError("simulate", one_line(f"ldconfig: {done.stderr.strip()}"))
    if not os.path.exists("/etc/ld.so.cache"):
        view.open_dir(Path("/etc"))
        Path("/etc/ld.so.cache").touch()
    _mount(str(cache), "/etc/ld.so.cache", None, MS_BIND)


def run(sim_dir: Path, argv: Sequence[str]) -> NoReturn:
    """Enter the host in ``sim_dir`` and exec ``argv`` there."""
    enter(sim_dir)
    try:
        os.execvp(argv[0], list(argv))
    except OSError as exc:
        raise SimulatorError("simulate", one_line(f"{argv[0]}: {exc.strerror}")) from None
