"""Docker: ``runtimes.<name>.path`` in daemon.json, and ``default-runtime`` when asked.

Every other key is kept, in order, with the file's own indentation. dockerd re-reads both keys
on SIGHUP. Unconfigure removes our entry and our default, putting back what the backup had under
those keys (an admin's own ``gpu`` runtime, a previous default).
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional, Union

from ctk.configure import Engine, Settings, Texts
from gpu_core import strict_json
from gpu_core.errors import ShimError

DEFAULT_CONFIG = "/etc/docker/daemon.json"


def paths(settings: Settings) -> tuple[str, ...]:
    return (settings.config,)


def configure(texts: Texts, settings: Settings) -> Texts:
    path = settings.config
    text = texts.get(path)
    document = parse(text, path)
    runtimes = _object(document.get("runtimes", {}), path, "runtimes")
    entry = _object(runtimes.get(settings.name, {}), path, f"runtimes.{settings.name}")
    new = dict(document)
    new["runtimes"] = {**runtimes, settings.name: {**entry, "path": settings.runtime_path}}
    if settings.set_as_default:
        new["default-runtime"] = settings.name
    return {path: text if new == document else dump(new, text)}


def unconfigure(texts: Texts, backups: Texts, settings: Settings) -> Texts:
    path = settings.config
    text = texts.get(path)
    if text is None:
        return {path: None}
    document = parse(text, path)
    original = parse(backups.get(path), path + " backup")
    new = dict(document)
    runtimes = document.get("runtimes")
    if isinstance(runtimes, dict) and settings.name in runtimes:
        before = original.get("runtimes")
        kept = {key: value for key, value in runtimes.items() if key != settings.name}
        if isinstance(before, dict) and settings.name in before:
            kept = {key: before[key] if key == settings.name else value
                    for key, value in runtimes.items()}
        if kept or "runtimes" in original:
            new["runtimes"] = kept
        else:
            del new["runtimes"]
    if document.get("default-runtime") == settings.name:
        previous = original.get("default-runtime")
        if previous is not None and previous != settings.name:
            new["default-runtime"] = previous
        else:
            del new["default-runtime"]
    return {path: text if new == document else dump(new, text)}


def same(path: str, a: str, b: str) -> bool:
    return parse(a, path) == parse(b, path)


def parse(text: Optional[str], path: str) -> dict[str, Any]:
    """daemon.json as a dict; an absent or blank file is ``{}`` (dockerd's view too)."""
    if text is None or not text.strip():
        return {}

    try:
        document = strict_json.loads(text)
    except strict_json.StrictJsonError as exc:
        # dockerd refuses such a file too; rewriting it would silently pick one meaning.
        raise ShimError("docker", f"{path}: {exc}") from None
    if not isinstance(document, dict):
        raise ShimError("docker", f"{path}: must hold a JSON object, not "
                                  f"{type(document).__name__}")
    return document


def dump(document: dict[str, Any], like: Optional[str]) -> str:
    return json.dumps(document, indent=indentation(like), ensure_ascii=False) + "\n"


def indentation(text: Optional[str]) -> Union[str, int]:
    """The indentation of the file's first indented key (a tab or N spaces); 4 by default,
    as dockerd's documentation writes daemon.json."""
    match = re.search(r'^([ \t]+)"', text or "", re.MULTILINE)
    if match is None:
        return 4
    unit = match.group(1)
    return "\t" if unit.startswith("\t") else len(unit)


def _object(value: Any, path: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ShimError("docker", f"{path}: {where} must be an object, not "
                                  f"{type(value).__name__}")
    return value


ENGINE = Engine(paths=paths, backed_up=paths, configure=configure, unconfigure=unconfigure,
                same=same, default_config=lambda name: DEFAULT_CONFIG,
                hint="reload dockerd to apply (systemctl reload docker, or SIGHUP)")
