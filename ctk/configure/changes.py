"""From an engine's texts before and after to changes: what to write, remove, back up, show.

Unconfigure is an inverse edit, so it keeps whatever the admin changed meanwhile; when its
result means exactly what the backup (the file before our first change) meant, the backup's own
bytes come back, so an untouched file is restored byte for byte.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Optional

from ctk.configure import Engine, Settings, Texts


@dataclass(frozen=True)
class Change:
    """One file's content before and after (None: absent)."""

    path: str
    before: Optional[str]
    after: Optional[str]
    back_up: bool = False
    """Whether the admin's file is copied aside before it changes."""

    @property
    def changed(self) -> bool:
        return self.before != self.after

    @property
    def verb(self) -> str:
        if not self.changed:
            return "unchanged"
        if self.after is None:
            return "removed"
        return "created" if self.before is None else "updated"


def plan_configure(engine: Engine, texts: Texts, settings: Settings) -> list[Change]:
    return _changes(engine, texts, engine.configure(texts, settings), settings)


def plan_unconfigure(engine: Engine, texts: Texts, backups: Texts,
                     settings: Settings) -> list[Change]:
    after = engine.unconfigure(texts, backups, settings)
    for path in engine.backed_up(settings):
        backup, new = backups.get(path), after.get(path)
        if backup is not None and new is not None and new != backup \
                and engine.same(path, new, backup):
            after[path] = backup
    return _changes(engine, texts, after, settings)


def _changes(engine: Engine, before: Texts, after: Texts, settings: Settings) -> list[Change]:
    backed = set(engine.backed_up(settings))
    return [Change(path, before.get(path), after.get(path, before.get(path)),
                   back_up=path in backed and before.get(path) is not None)
            for path in engine.paths(settings)]


def diff(change: Change) -> str:
    """A unified diff of the change (empty when nothing changes)."""
    if not change.changed:
        return ""
    before = (change.before or "").splitlines(keepends=True)
    after = (change.after or "").splitlines(keepends=True)
    name = change.path.lstrip("/")
    lines = difflib.unified_diff(
        before, after, fromfile="/dev/null" if change.before is None else "a/" + name,
        tofile="/dev/null" if change.after is None else "b/" + name)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)
