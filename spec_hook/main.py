"""``gpu-container-spec-hook``: the createContainer hook of spec mode (README §The spec hook).

Reads the OCI state on stdin, finds the rootfs through the bundle's config.json (gpu_core.bundle,
runc's reading), enters the container's mount namespace when called from another stage, then in
order: /proc/driver/nvidia (``--proc-driver``, ``--gpu``, ``--proc-file``), the link names
(``--link``), CUDA forward compatibility (``--driver-version``) and the ld cache (the host's
``--ldconfig``), all inside ``--timeout``. Exit 0, or 1 with one line
``gpu-container-spec-hook: <what is wrong>``.

It runs on every spec-mode start, so it imports only the standard library's light modules and
gpu_core's bundle reader: no NVML, YAML, jsonschema or cffi.
"""

import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

from gpu_core.errors import ShimError, one_line
from spec_hook.argv import ArgvError, HelpRequested

if TYPE_CHECKING:
    from types import FrameType

    from spec_hook.links import Link

PROG = "gpu-container-spec-hook"
STATE_LIMIT = 1 << 20
MAX_PID = 4194304


class Options(NamedTuple):
    folders: list[str]
    # Not a quoted annotation: NamedTuple compiles one (a process's first compile() costs
    # milliseconds, building the ast types); a quoted argument inside is left as it is.
    links: list["Link"]
    driver_version: Optional[str]
    compat_dir: str
    proc_driver: Optional[str]
    gpus: list[str]
    ldconfig: str
    timeout: float
    proc_files: tuple[str, ...] = ()


def _container_path(option: str, value: str) -> str:
    if not value.startswith("/") or "\x00" in value or len(value) > 4096:
        raise ArgvError(f"{option} {value!r}: expected an absolute path")
    return value


def parse_argv(argv: Sequence[str]) -> Options:
    """Parse and check argv; raise ArgvError naming the bad option."""
    from spec_hook import argv as argv_mod
    from spec_hook import cuda_compat, links, proc_driver, proc_files

    repeated, single = argv_mod.split(argv)
    folders, link_texts, gpus, cap_files = (repeated[name] for name in argv_mod.REPEATED)
    driver_version = single.get("--driver-version")
    proc_driver_dir = single.get("--proc-driver")
    timeout = argv_mod.timeout(single["--timeout"]) if "--timeout" in single else 10.0
    try:
        parsed_links = [links.parse_link(text) for text in link_texts]
        if driver_version is not None:
            cuda_compat.driver_major(driver_version)
        for busid in gpus:
            proc_driver.busid_forms(busid)
        for rel in cap_files:
            proc_files.check(rel)
    except ValueError as exc:
        raise ArgvError(str(exc)) from None
    if gpus and proc_driver_dir is None:
        raise ArgvError("--gpu needs --proc-driver")
    if cap_files and proc_driver_dir is None:
        raise ArgvError("--proc-file needs --proc-driver")
    return Options(
        folders=[_container_path("--folder", f) for f in folders], links=parsed_links,
        driver_version=driver_version,
        compat_dir=_container_path("--cuda-compat-dir",
                                   single.get("--cuda-compat-dir") or cuda_compat.DEFAULT_DIR),
        proc_driver=None if proc_driver_dir is None else
        _container_path("--proc-driver", proc_driver_dir),
        gpus=gpus, ldconfig=single.get("--ldconfig", "/sbin/ldconfig"), timeout=timeout,
        proc_files=tuple(cap_files))


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


def _on_alarm(signum: int, frame: "Optional[FrameType]") -> None:
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
        proc_driver.read_host(options.proc_driver, options.gpus, options.proc_files)
    mount_ns.enter_for(pid)
    try:
        root = rootfs.open_root(rootfs_path)
    except OSError as exc:
        raise ShimError("rootfs", f"{rootfs_path}: {exc.strerror}") from None
    if host is not None:
        proc_driver.install(root, host)
    if options.links or run_ldconfig:
        root = mount_ns.writable_root(rootfs_path, root)
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
    except HelpRequested:
        from spec_hook.argv import USAGE

        sys.stdout.write(USAGE)
        return 0
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
