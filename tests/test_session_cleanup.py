"""tests/support/session_cleanup.py: a session removes exactly the cache entries it made."""

from __future__ import annotations

import json
from pathlib import Path

from session_cleanup import remove_session_cache_entries


def entry(cache: Path, name: str, source: str) -> None:
    (cache / name).write_text(json.dumps({"format": 2, "source": source, "text": "", "raw": {}}))


def test_session_entries_for_temporary_and_vanished_configs_are_removed(tmp_path: Path) -> None:
    """New entries of configs under the session's roots or gone are removed; the host's own
    entries, and those that existed before, stay."""
    cache, session = tmp_path / "cache", tmp_path / "session"
    cache.mkdir()
    session.mkdir()
    (session / "c.yaml").write_text("")
    host = tmp_path / "etc.yaml"
    host.write_text("")
    entry(cache, "old.json", str(session / "old.yaml"))
    before = {"old.json"}
    entry(cache, "tmp.json", str(session / "c.yaml"))
    entry(cache, "gone.json", str(tmp_path / "vanished.yaml"))
    entry(cache, "host.json", str(host))
    (cache / "junk.json").write_text("{")
    removed = remove_session_cache_entries(cache, before, [session])
    assert removed == ["gone.json", "tmp.json"]
    assert sorted(p.name for p in cache.iterdir()) == ["host.json", "junk.json", "old.json"]
