"""``gpu-container-spec-hook``: the createContainer hook of spec mode (README §The spec hook).

Reads the OCI state on stdin, finds the rootfs through the bundle's config.json (gpu_core.bundle,
runc's reading), enters the container's mount namespace when called from another stage, then in
order: /proc/driver/nvidia (``--proc-driver``), the link names (``--link``), CUDA forward
compatibility (``--driver-version``) and the ld cache (the host's ``--ldconfig``), all inside
``--timeout``. Exit 0, or 1 with one line ``gpu-container-spec-hook: <what is wrong>``.

It runs on every spec-mode start, so it imports only the standard library's light modules and
gpu_core's bundle reader: no NVML, YAML, jsonschema or cffi.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, Optional

from gpu_core.errors import ShimError, one_line

if TYPE_CHECKING:
    from spec_hook.links import Link

PROG = "gpu-container-spec-hook"
STATE_LIMIT = 1 << 20
MAX_PID = 4194304
MAX_TIMEOUT = 3600.0


class ArgvError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ArgvError(message)


class _Formatter(argparse.HelpFormatter):
    """A fixed width: the default asks shutil for the terminal's, and importing shutil costs
    the hook more than the rest of argparse on every start (argparse formats at add_argument)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: Optional[int] = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or 100)


def _timeout(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_TIMEOUT:
        raise ValueError(text)
    return value


_timeout.__name__ = "timeout"  # argparse names the converter in its message


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, allow_abbrev=False, formatter_class=_Formatter,
                description="Spec mode's createContainer hook: /proc/driver/nvidia, .so link "
                            "names, CUDA forward compatibility and the ld cache of a container. "
                            "Reads the OCI state on stdin.")
    p.add_argument("--folder", action="append", default=[], metavar="DIR",
                   help="container directory of driver libraries for ldconfig (repeatable)")
    p.add_argument("--link", action="append", default=[], metavar="TARGET::LINK",
                   help="create the symlink LINK -> TARGET in the container (repeatable)")
    p.add_argument("--driver-version", metavar="VERSION",
                   help="host driver version; enables CUDA forward compatibility")
    p.add_argument("--cuda-compat-dir", metavar="DIR", default=None,
                   help="container directory of the CUDA compat libraries "
                        "(default /usr/local/cuda/compat)")
    p.add_argument("--proc-driver", metavar="HOSTDIR",
                   help="host /proc/driver/nvidia to seed the container's from")
    p.add_argument("--gpu", action="append", default=[], metavar="BUSID",
                   help="PCI bus id whose gpus/ entry the container gets (repeatable)")
    p.add_argument("--ldconfig", metavar="HOSTPATH", default="/sbin/ldconfig",
                   help="the host's static ldconfig (default /sbin/ldconfig)")
    p.add_argument("--timeout", type=_timeout, default=10.0, metavar="SECONDS",
                   help="deadline for all the work (default 10)")
    return p


class Options(NamedTuple):
    folders: list[str]
    links: list[Link]
    driver_version: Optional[str]
    compat_dir: str
    proc_driver: Optional[str]
    gpus: list[str]
    ldconfig: str
    timeout: float


def _container_path(option: str, value: str) -> str:
    if not value.startswith("/") or "\x00" in value or len(value) > 4096:
        raise ArgvError(f"{option} {value!r}: expected an absolute path")
    return value


def parse_argv(argv: Sequence[str]) -> Options:
    """Parse and check argv; raise ArgvError naming the bad option."""
    from spec_hook import cuda_compat, links, proc_driver

    ns = parser().parse_args(list(argv))
    try:
        parsed_links = [links.parse_link(text) for text in ns.link]
        if ns.driver_version is not None:
            cuda_compat.driver_major(ns.driver_version)
        for busid in ns.gpu:
            proc_driver.busid_forms(busid)
    except ValueError as exc:
        raise ArgvError(str(exc)) from None
    if ns.gpu and ns.proc_driver is None:
        raise ArgvError("--gpu needs --proc-driver")
    return Options(
        folders=[_container_path("--folder", f) for f in ns.folder], links=parsed_links,
        driver_version=ns.driver_version,
        compat_dir=_container_path("--cuda-compat-dir",
                                   ns.cuda_compat_dir or cuda_compat.DEFAULT_DIR),
        proc_driver=None if ns.proc_driver is None else
        _container_path("--proc-driver", ns.proc_driver),
        gpus=list(ns.gpu), ldconfig=ns.ldconfig, timeout=ns.timeout)


def read_state(stream: Any) -> tuple[str, Optional[int]]:
    """(bundle, pid) from the OCI state JSON; bounded, checked, pid None or 0 when absent."""
    data = stream.read(STATE_LIMIT + 1)
    if len(data) > STATE_LIMIT:
        raise ShimError("state", f"input larger than {STATE_LIMIT} bytes")
    from gpu_core import strict_json

    try:
        document = strict_json.loads(data)
    except strict_json.StrictJsonError as exc:
        raise ShimError("state", str(exc)) from None
    if type(document) is not dict:
        raise ShimError("state", "expected a JSON object")
    bundle, pid = document.get("bundle"), document.get("pid")
    if type(bundle) is not str or not bundle.startswith("/") or "\x00" in bundle:
        raise ShimError("state", "bundle: expected an absolute path")
    if pid is not None and (type(pid) is not int or not 0 <= pid <= MAX_PID):
        raise ShimError("state", f"pid: expected an integer 0..{MAX_PID}")
    return bundle, pid


def _compat(root: int, options: Options) -> list[str]:
    """``[compat dir]`` when the image's CUDA compat libcuda is newer than the driver."""
    from spec_hook import cuda_compat, rootfs

    if options.driver_version is None:
        return []
    try:
        fd = rootfs.open_in_root(root, options.compat_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return []  # no compat directory in the image: nothing to prefer
    with os.scandir(fd) as entries:
        listing = [(entry.name, entry.is_file(follow_symlinks=False)) for entry in entries]
    os.close(fd)
    chosen = cuda_compat.choose(options.compat_dir, listing, options.driver_version)
    return [chosen] if chosen else []


def _on_alarm(signum: int, frame: Optional[FrameType]) -> None:
    raise ShimError("timeout", "the hook did not finish within its --timeout")


def work(options: Options, state: Any) -> None:
    """Everything after argv: see the module's text."""
    from gpu_core import bundle as bundle_reader
    from spec_hook import ldconfig, links, mount_ns, proc_driver, rootfs

    deadline = time.monotonic() + options.timeout
    bundle, pid = read_state(state)
    rootfs_path = bundle_reader.rootfs_path(bundle_reader.read_spec(bundle), bundle)
    run_ldconfig = bool(options.folders) or options.driver_version is not None
    exe = ldconfig.open_host(options.ldconfig) if run_ldconfig else -1
    host = None if options.proc_driver is None else \
        proc_driver.read_host(options.proc_driver, options.gpus)
    mount_ns.enter_for(pid)
    try:
        root = rootfs.open_root(rootfs_path)
    except OSError as exc:
        raise ShimError("rootfs", f"{rootfs_path}: {exc.strerror}") from None
    if host is not None:
        proc_driver.install(root, host)
    for link in options.links:
        try:
            links.create(root, link)
        except OSError as exc:
            raise ShimError("link", one_line(f"{link.link}: {exc.strerror}")) from None
    if run_ldconfig:
        directories = [*_compat(root, options), *options.folders]
        ldconfig.run(exe, root, directories, deadline)


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        options = parse_argv(sys.argv[1:] if argv is None else argv)
        signal.signal(signal.SIGALRM, _on_alarm)
        # a backstop for the few blocking calls outside ldconfig's own deadline
        signal.setitimer(signal.ITIMER_REAL, options.timeout + 0.5)
        work(options, sys.stdin.buffer)
    except ArgvError as exc:
        print(f"{PROG}: {one_line(str(exc), 500)}", file=sys.stderr)
        return 1
    except ShimError as exc:
        print(f"{PROG}: {one_line(str(exc), 1000)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug or an unforeseen input: still one line, never a traceback
        print(f"{PROG}: {one_line(f'{type(exc).__name__}: {exc}', 1000)}", file=sys.stderr)
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
