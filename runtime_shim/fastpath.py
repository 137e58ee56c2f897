"""The entry the shell launcher (launcher.sh) reads to exec the low-level runtime without Python.

Engines call the runtime for every container operation; only create and run need Python. For
the rest the launcher needs the ``runtimes`` list of the configuration in force, and it must be
the list Python would use. So an entry binds exact configuration bytes to the runtimes parsed
from them: the bytes are kept in an immutable, content-named copy that the launcher compares
with the live file (``cmp``), and the runtimes come from the validated-config cache,
never from a second read that could have changed in between. A default configuration that does
not exist is recorded as ``absent``; the launcher checks that again on every call.

Two slots, ``default`` and ``named`` (``GPU_CONTAINER_SHIM_CONFIG`` set), because the launcher
cannot hash a path without starting a process. Failing to write is harmless: the launcher then
starts Python, which is always right.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping, Sequence
from typing import Optional

from gpu_core import config as config_mod
from gpu_core import logfile, private_dirs

STATE_DIR = "/run/gpu-container-shim/fastpath"
MAGIC = "gpu-container-shim fastpath 3"
ABSENT = "absent"


CREATE_TRIGGERS = (
    "nvidia_visible_devices",    # the env request (gpu_core.request)
    "nvidia-container-devices",  # the volume-mount request
    "cuda_version",              # a legacy CUDA image without a request means `all`
    "ai.scheduling.policy",      # the policy annotation (runtime_shim.policy_choice)
    "ai_scheduling_policy",      # the policy env var
    "oomscoreadj",               # an explicit value, which the oom modifier may clamp
    "nvidia",                    # /dev/nvidia* nodes or libnvidia-ml mounts of a CDI injection
    "libcuda",                   # a libcuda mount of a CDI injection (runtime_shim.cdi_injection)
    "cdi.k8s.io",                # the annotations engines write for injected CDI devices
    "\\u",                       # a JSON escape could spell any of the above
    "\u017f",                    # Go folds the long s (U+017F) to s, so it can spell "s"
    "\u212a",                    # and the Kelvin sign to k
)
"""Lowercase substrings of config.json that may make a modifier act on a container. The launcher
execs runc for a create/run whose config.json contains none of them (compared byte-wise without
regard to ASCII case; Go's JSON decoder also folds the two non-ASCII letters listed), so every
modifier must stay a no-op for such a spec; tests/runtime_shim/test_launcher_create.py checks
that against the pipeline."""


def create_fast(config: config_mod.Config) -> bool:
    """Whether this configuration leaves a spec without CREATE_TRIGGERS untouched: a cgroup
    parent applies to every container, and ``requests.swarm_resource`` names request variables
    of the operator's choosing, which no fixed trigger can cover."""
    return not config.cgroup.parent and not config.requests.swarm_resource.strip()


def entry_text(path: str, how: str, lease_dir: str, runtimes: Sequence[str],
               fast_create: bool = False, log_file: str = "") -> Optional[str]:
    """The entry's lines; None when a value cannot be one line (the launcher reads lines).

    ``lease_dir`` is there because ``delete`` of a container holding MIG leases is not a
    pass-through (runtime_shim.main.delete_releasing): the launcher checks for the lease file.
    ``fast_create`` lets the launcher hand untouched creates to runc (CREATE_TRIGGERS), writing
    their line to ``log_file`` itself.
    """
    values = (path, how, lease_dir, log_file, *runtimes)
    if any("\n" in value or "\r" in value for value in values) or "end" in runtimes:
        return None
    return "\n".join([MAGIC, path, how, "lease-dir " + lease_dir,
                      "create-fast " + ("yes" if fast_create else "no"), "log " + log_file,
                      *runtimes, "end"]) + "\n"


def log_file(config: config_mod.Config) -> str:
    return config.log.file


def slot_name(environ: Mapping[str, str]) -> str:
    return "named" if environ.get(config_mod.ENV_VAR, "") else "default"


def copy_name(digest: str) -> str:
    return "copy-" + digest


def replace_file(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically (gpu_core.atomic_file)."""
    from gpu_core import atomic_file

    atomic_file.write(path, data, mode)


def read_bytes(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError:
        return None


def lease_dir(config: config_mod.Config) -> str:
    return config.mig.lease_dir  # as main.delete_releasing reads it


def wanted(config: config_mod.Config, environ: Mapping[str, str],
           cache_dir: str) -> Optional[tuple[str, Optional[bytes]]]:
    """The entry text for the configuration in force and the bytes its copy must hold."""
    path, named = config_mod.config_path(environ)
    if config.source == "<defaults>":
        if named or os.path.lexists(path):
            return None
        text = entry_text(path, ABSENT, lease_dir(config), config.runtimes,
                          create_fast(config), log_file(config))
        return (text, None) if text is not None else None
    data = read_bytes(path)
    if data is None:
        return None
    digest = config_mod.content_key(data)
    validated = config_mod.cached(path, data, cache_dir)
    if validated is None:
        return None
    text = entry_text(path, "copy " + copy_name(digest), lease_dir(validated),
                      validated.runtimes, create_fast(validated), log_file(validated))
    return (text, data) if text is not None else None


def sealed(path: str) -> bool:
    """Whether ``path`` is a real directory with the sticky bit (see ``seal``)."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and bool(info.st_mode & stat.S_ISVTX)


def seal(path: str) -> None:
    """Set the sticky bit on the directory ``path`` (never through a link).

    On a directory nobody else can write it changes nothing; should the directory later become
    writable by others, it still stops them from renaming or removing what root put there. And
    it is what the launcher checks without starting a process: any numeric chmod (``chmod 777``,
    os.chmod) clears it, so a directory whose mode was set again since Python checked it goes to
    Python (or, for the parent, to a ``find -perm`` check) before it is trusted again."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if not mode & stat.S_ISVTX:
            os.fchmod(fd, mode | stat.S_ISVTX)
    finally:
        os.close(fd)


def ensure_private_dir(state_dir: str, log_path: str = "") -> bool:
    """Make the state directory ours (0700, gpu_core.private_dirs): one someone else made or left
    writable is moved aside (noted in ``log_path``) and made again. Then it is sealed, and so is
    its parent when that is ours and nobody else can write it (``seal``). False when that cannot
    be done; the launcher then keeps starting Python."""
    try:
        moved = private_dirs.ensure(state_dir, 0o700, own_root=private_dirs.OWN_ROOT)
        seal(state_dir)
        parent = os.path.dirname(os.path.abspath(state_dir))
        info = os.lstat(parent)
        if parent != "/" and info.st_uid == os.geteuid() and not info.st_mode & 0o022:
            seal(parent)
    except OSError:
        return False
    if moved:
        logfile.note_untrusted(log_path, moved)
    return True


def referenced_copies(state_dir: str) -> set[str]:
    names: set[str] = set()
    for slot in ("default", "named"):
        data = read_bytes(os.path.join(state_dir, slot)) or b""
        lines = data.decode("utf-8", "replace").split("\n")
        if len(lines) > 2 and lines[2].startswith("copy "):
            names.add(lines[2][len("copy "):])
    return names


def remember(config: config_mod.Config, environ: Optional[Mapping[str, str]] = None,
             state_dir: Optional[str] = None, cache_dir: str = config_mod.CACHE_DIR) -> bool:
    """Make the launcher's entry for the configuration in force current; True if written.

    Cheap when it already is (two small reads): this runs on every call that reaches Python.
    ``STATE_DIR`` is read at call time: a launcher installed with another state directory sets
    it before calling main (launcher.entry_code), never through the environment.
    """
    env = os.environ if environ is None else environ
    state_dir = STATE_DIR if state_dir is None else state_dir
    want = wanted(config, env, cache_dir)
    if want is None:
        return False
    text, data = want
    entry = os.path.join(state_dir, slot_name(env))
    current = read_bytes(entry)
    copy = os.path.join(state_dir, text.split("\n")[2][len("copy "):]) if data else ""
    if current == text.encode("utf-8", "surrogateescape") and (not copy or os.path.exists(copy)) \
            and private_dirs.trusted(state_dir) and sealed(state_dir):
        return False
    try:
        if not ensure_private_dir(state_dir, log_file(config)):
            return False
        if data is not None and read_bytes(copy) != data:
            replace_file(copy, data)
        replace_file(entry, text.encode("utf-8", "surrogateescape"))
        keep = referenced_copies(state_dir)
        for name in os.listdir(state_dir):
            if name.startswith("copy-") and "." not in name and name not in keep:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(state_dir, name))
    except OSError:
        return False
    return True
