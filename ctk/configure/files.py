"""The one place ``gpu-ctk runtime`` reads and writes engine files.

Writes are atomic (gpu_core.atomic_file: a temporary in the target's directory, fsync, rename)
and keep the file's mode and owner. Before an admin's file first changes, its bytes are copied to
``PATH.gpu-ctk.bak``; the oldest backup is kept (a later configure never overwrites it) because
unconfigure restores what the admin had before gpu-ctk, not some intermediate state.

gpu-ctk runs as root on paths others may control, so no link is ever followed (README
§Security and fault hardening): a symlink at the file or its backup is refused in one line
before anything changes, reads use O_NOFOLLOW, the temporary is made exclusively under a random
name (O_CREAT|O_EXCL|O_NOFOLLOW), the backup is published with link(2), which never replaces or
follows what is already there, and the rename replaces a link raced in rather than following it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from typing import Optional

from ctk.configure import Texts
from ctk.configure.changes import Change
from gpu_core import atomic_file, private_dirs
from gpu_core.errors import ShimError, one_line

BACKUP_SUFFIX = ".gpu-ctk.bak"
"""Not ``.toml``/``.json``/``.conf``: no engine's drop-in glob picks a backup up."""
LIMIT = 4 << 20
"""Engine configuration files are kilobytes; anything this large is not one."""
NEW_MODE = 0o644


def backup_path(path: str) -> str:
    return path + BACKUP_SUFFIX


def read(path: str) -> Optional[str]:
    """The file's text, or None when it does not exist; never through a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):
            raise ShimError("runtime", one_line(
                f"{path} is a symlink (to {os.readlink(path)}): gpu-ctk writes no file through "
                "a link; name the file itself")) from None
        raise ShimError("runtime", f"{path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as stream:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ShimError("runtime", f"{path}: not a regular file")
        if info.st_size > LIMIT:
            raise ShimError("runtime", f"{path}: larger than {LIMIT} bytes")
        try:
            data = stream.read(LIMIT + 1)
        except OSError as exc:
            raise ShimError("runtime", f"{path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ShimError("runtime", f"{path}: not UTF-8 text (byte {exc.start})") from None


def read_all(paths: Iterable[str]) -> Texts:
    return {path: read(path) for path in paths}


def apply(changes: Iterable[Change], drop_backups: Iterable[str] = ()) -> list[str]:
    """Carry out ``changes``; returns one line per file for the user. ``drop_backups``: files
    whose backup was just restored, so it is removed."""
    dropped = set(drop_backups)
    changes = list(changes)
    for change in changes:  # a link at any file or backup refuses the lot before any write
        if change.changed:
            read(change.path)
            read(backup_path(change.path))
    report = []
    for change in changes:
        if not change.changed:
            report.append(f"unchanged {change.path}")
            continue
        note = ""
        if change.back_up and change.before is not None and change.path not in dropped:
            backup = backup_path(change.path)
            if read(backup) is None:
                write(backup, change.before, like=change.path, exclusive=True)
            note = f" (backup {backup})"
        if change.after is None:
            remove(change.path)
        else:
            write(change.path, change.after, like=change.path)
        if change.path in dropped:
            remove(backup_path(change.path))
            note = " (restored from its backup, which is removed)"
        report.append(f"{change.verb} {change.path}{note}")
    return report


def _model(path: str) -> Optional[os.stat_result]:
    """The mode and owner to keep: those of the regular file at ``path`` (not a link's)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def write(path: str, text: str, like: Optional[str] = None, exclusive: bool = False) -> None:
    """Atomically replace ``path`` with ``text`` (``exclusive``: create it, failing when
    anything is there); mode and owner come from ``like`` when it exists, else 0644 and the
    caller's. A symlink at ``path`` is refused, never followed."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.islink(path):
        raise ShimError("runtime", one_line(
            f"{path} is a symlink (to {os.readlink(path)}): gpu-ctk writes no file through a "
            "link; name the file itself"))
    try:
        private_dirs.make_parents(directory, 0o755)
        model = _model(like or path)
    except OSError as exc:
        raise ShimError("runtime", f"{path}: {exc.strerror or exc}") from None
    owner = (model.st_uid, model.st_gid) if model is not None else None
    try:
        atomic_file.write(path, text.encode("utf-8"),
                          stat.S_IMODE(model.st_mode) if model else NEW_MODE, owner,
                          temp_suffix=".tmp", exclusive=exclusive)
    except atomic_file.DirectorySyncError:
        pass  # written; as before, a directory that cannot be synced is not an error here
    except OSError as exc:
        raise ShimError("runtime", f"{path}: {exc.strerror or exc}") from None


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ShimError("runtime", f"{path}: {exc.strerror or exc}") from None
    _sync_dir(os.path.dirname(os.path.abspath(path)))


def _sync_dir(directory: str) -> None:
    """The rename or unlink survives a crash only once the directory itself is synced."""
    with contextlib.suppress(OSError):
        atomic_file.sync_directory(directory)
