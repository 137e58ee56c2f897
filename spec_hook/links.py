"""The ``.so`` link names a bind mount cannot make: ``--link TARGET::LINK`` creates the symlink
LINK -> TARGET in the container, its parent resolved inside the rootfs (spec_hook.rootfs). TARGET
is only text stored in the link; nothing here follows it. An entry already at LINK (the image's
own file, link or directory) is left alone, as libnvidia-container leaves it."""

import os
from typing import NamedTuple

from spec_hook import rootfs

SEPARATOR = "::"


class Link(NamedTuple):
    target: str
    link: str


def parse_link(text: str) -> Link:
    """``TARGET::LINK`` -> Link; raise ValueError naming what is wrong."""
    target, separator, link = text.partition(SEPARATOR)
    if not separator:
        raise ValueError(f"{text!r}: expected TARGET::LINK")
    if not target or "\x00" in target:
        raise ValueError(f"{text!r}: empty TARGET or a NUL byte in it")
    if "\x00" in link:
        raise ValueError(f"{text!r}: a NUL byte in LINK")
    rootfs.split_parent(link)  # LINK must be absolute and name an entry
    return Link(target, link)


def create(root: int, link: Link) -> bool:
    """Make ``link`` in the root; True when created, False when an entry was already there."""
    parent, name = rootfs.split_parent(link.link)
    directory = rootfs.makedirs_in_root(root, parent)
    try:
        os.symlink(link.target, name, dir_fd=directory)
    except FileExistsError:
        return False
    finally:
        os.close(directory)
    return True
