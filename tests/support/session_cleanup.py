"""What a test session removes from the host when it ends (tests/conftest.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path


def remove_session_cache_entries(cache_dir: Path, before: set[str], roots: Sequence[Path]
                                 ) -> list[str]:
    """Remove the validated-config cache entries (gpu_core.config) made since ``before`` for a
    configuration under one of ``roots`` (the session's temporary directories) or one that is
    gone; return their names. Entries of the host's own configurations stay."""
    removed = []
    try:
        names = set(os.listdir(cache_dir)) - before
    except OSError:
        return removed
    for name in sorted(names):
        path = cache_dir / name
        try:
            source = json.loads(path.read_text(encoding="utf-8")).get("source", "")
        except (OSError, ValueError, AttributeError):
            continue
        if not isinstance(source, str):
            continue
        inside = any(Path(source).is_relative_to(root) for root in roots)
        if inside or not os.path.exists(source):
            path.unlink(missing_ok=True)
            removed.append(name)
    return removed
