"""CRI-O: a drop-in (``crio.conf.d/99-<name>.conf``) naming our shim as an OCI runtime handler.

CRI-O merges drop-ins key by key, so the file needs only our table (and ``default_runtime``
when asked). The file is ours: no backup; unconfigure takes our keys out and removes the file
once nothing else is left in it (an admin's additions stay).
"""

from __future__ import annotations

from typing import Any, Optional

import tomlkit
from tomlkit.toml_document import TOMLDocument

from ctk.configure import MARKER, Engine, Settings, Texts, toml_text
from gpu_core.errors import ShimError

DEFAULT_DIR = "/etc/crio/crio.conf.d"


def default_config(name: str) -> str:
    return f"{DEFAULT_DIR}/99-{name}.conf"


def paths(settings: Settings) -> tuple[str, ...]:
    return (settings.config,)


def configure(texts: Texts, settings: Settings) -> Texts:
    path = settings.config
    text = texts.get(path)
    document = parse(text, path)
    edited = parse(text, path)
    if text is None:
        edited.add(tomlkit.comment(f"Written by {MARKER}: the {settings.name!r} runtime of "
                                   f"gpu-container-shim."))
    runtime = _table(edited, ("crio", "runtime"), path)
    if settings.set_as_default:
        runtime["default_runtime"] = settings.name
    entry = _table(runtime, ("runtimes", settings.name), path)
    entry["runtime_path"] = settings.runtime_path
    entry["runtime_type"] = "oci"
    same_meaning = text is not None and edited.unwrap() == document.unwrap()
    return {path: text if same_meaning else tomlkit.dumps(edited)}


def unconfigure(texts: Texts, backups: Texts, settings: Settings) -> Texts:
    path = settings.config
    text = texts.get(path)
    if text is None:
        return {path: None}
    document = parse(text, path)
    top = document.get("crio")
    runtime = top.get("runtime") if isinstance(top, dict) else None
    if isinstance(runtime, dict):
        runtimes = runtime.get("runtimes")
        if isinstance(runtimes, dict) and settings.name in runtimes:
            del runtimes[settings.name]
            if not runtimes:
                del runtime["runtimes"]
        if runtime.get("default_runtime") == settings.name:
            del runtime["default_runtime"]
        if not runtime:
            del document["crio"]["runtime"]
        if not document["crio"]:
            del document["crio"]
    if not document.unwrap():
        return {path: None}
    return {path: tomlkit.dumps(document)}


def same(path: str, a: str, b: str) -> bool:
    return toml_text.same(path, a, b, "crio")


def parse(text: Optional[str], path: str) -> TOMLDocument:
    return toml_text.parse(text, path, "crio")


def _table(container: Any, keys: tuple[str, ...], path: str) -> Any:
    for key in keys:
        found = container.get(key)
        if found is None:
            found = tomlkit.table()
            container.add(key, found)
        elif not isinstance(found, dict):
            raise ShimError("crio", f"{path}: {key} must be a table")
        container = found
    return container


ENGINE = Engine(paths=paths, backed_up=lambda settings: (), configure=configure,
                unconfigure=unconfigure, same=same, default_config=default_config,
                hint="restart CRI-O to apply (systemctl restart crio)")
