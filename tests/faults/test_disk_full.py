"""A full disk while the shim rewrites config.json: the bundle lives on a tiny tmpfs the test
mounts (and always unmounts); the rewrite fails in one line and the original stays, with no
temp file left behind."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from containers import Bundle

if TYPE_CHECKING:
    from conftest import Bench

pytestmark = pytest.mark.e2e


@contextlib.contextmanager
def tiny_tmpfs(where: Path, options: str) -> Iterator[Path]:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path) -> None:
    """Use up the filesystem's blocks, then its inodes."""
    with contextlib.suppress(OSError), open(directory / "filler", "wb") as stream:
        while True:
            stream.write(b"\0" * 4096)
            stream.flush()
    for i in range(100_000):
        try:
            (directory / f"inode-{i}").touch()
        except OSError:
            break


@pytest.mark.parametrize("options", ["size=64k", "size=1m,nr_inodes=8"],
                         ids=["no-space", "no-inodes"])
def test_full_disk_during_the_rewrite_keeps_the_original(bench: Bench, options: str) -> None:
    """ENOSPC (out of blocks, or of inodes for the temp file): non-zero exit, one line naming
    the file and the cause, config.json byte-identical, no temp file, runtime not reached."""
    source = bench.bundle()  # its rootfs is an overlay elsewhere: only config.json is on tmpfs
    with tiny_tmpfs(bench.tmp / "small", options) as small:
        bundle = Bundle(small / "bundle")
        bundle.path.mkdir()
        original = json.dumps(source.spec(), indent=2).encode()
        bundle.config_path.write_bytes(original)
        fill(small)
        result = bench.shim("create", bundle, bench.config(bench.host()))
        assert result.returncode == 1
        assert result.stderr == (f"gpu-container-runtime: config.json: writing "
                                 f"{bundle.config_path}: No space left on device\n")
        assert bundle.config_path.read_bytes() == original
        assert sorted(p.name for p in bundle.path.iterdir()) == ["config.json"]
    assert not bench.stub_marker.exists()
