"""Which container ids can name a lease file: runc's id alphabet (``^[\\w+-\\.]+$``), bounded so
``<id>.json`` is a file name. Its own module because the hook's start path checks it and must not
import the lease machinery to do so."""

from __future__ import annotations

ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+.-")
MAX_LENGTH = 200


def is_lease_name(container_id: str) -> bool:
    """True when ``container_id`` can safely name ``<lease_dir>/<id>.json``."""
    return (0 < len(container_id) <= MAX_LENGTH and container_id not in (".", "..")
            and ALPHABET.issuperset(container_id))
