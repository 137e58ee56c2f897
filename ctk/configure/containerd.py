"""containerd: a CRI runtime ``<name>`` of type ``io.containerd.runc.v2`` whose
``options.BinaryName`` is our shim, for config versions 2 (containerd 1.x, plugin
``io.containerd.grpc.v1.cri``) and 3 (containerd 2.x, ``io.containerd.cri.v1.runtime``), the
version read from the file.

The entry starts as a copy of runc's (so ``SystemdCgroup``, roots and annotations carry over).
Where it goes, and why:
- version 3: a drop-in, ``conf.d/99-<name>.toml`` beside the main file, plus that path in the
  main file's ``imports``: containerd 2.x merges imported plugin tables key by key.
- version 2: the main file, in place, by default: containerd 1.x replaces a plugin's whole table
  with an imported one (containerd issue 5837), so a drop-in must carry a copy of the entire CRI
  table — ``--drop-in`` does that, and the copy then shadows later edits of the main file.
- whenever a runtimes table is written and lacks ``runc``, runc is written too: containerd
  drops its built-in runc once the file names any runtime, and runc is the usual default.

tomlkit keeps the main file's comments, order and indentation; what we add follows the file's
style (indented headers as ``containerd config default`` writes them, or flat).
"""

from __future__ import annotations

import copy
import fnmatch
import os
from collections.abc import Sequence
from typing import Any, Optional

import tomlkit
from tomlkit.container import Container
from tomlkit.items import AoT, Item, Table
from tomlkit.toml_document import TOMLDocument

from ctk.configure import MARKER, Engine, Settings, Texts, toml_text
from gpu_core.errors import ShimError

DEFAULT_CONFIG = "/etc/containerd/config.toml"
RUNC_TYPE = "io.containerd.runc.v2"
CRI_PLUGIN = {2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime"}
"""Config version -> the plugin whose ``containerd`` table holds the runtimes."""
STEP = 2
"""Indentation per nesting level in files that indent their headers."""


def drop_in_path(settings: Settings) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(settings.config)), "conf.d",
                        f"99-{settings.name}.toml")


def paths(settings: Settings) -> tuple[str, ...]:
    return (settings.config, drop_in_path(settings))


def backed_up(settings: Settings) -> tuple[str, ...]:
    return (settings.config,)


def configure(texts: Texts, settings: Settings) -> Texts:
    main_path, drop_path = paths(settings)
    main_text, drop_text = texts.get(main_path), texts.get(drop_path)
    document = parse(main_text, main_path)
    version = config_version(document, main_path)
    edited = parse(main_text, main_path)
    if main_text is None:
        edited.add("version", version)
    if settings.drop_in if settings.drop_in is not None else version >= 3:
        dropped = new_drop_in(document, version, settings, main_path)
        add_import(edited, drop_path, main_path)
        drop_text = drop_text if drop_text == dropped else dropped
    else:
        add_runtime(edited, version, settings)
    return {main_path: _render(edited, main_text, document), drop_path: drop_text}


def unconfigure(texts: Texts, backups: Texts, settings: Settings) -> Texts:
    main_path, drop_path = paths(settings)
    main_text = texts.get(main_path)
    if main_text is None:
        return {main_path: None, drop_path: None}
    document = parse(main_text, main_path)
    original = parse(backups.get(main_path), main_path + " backup")
    version = config_version(document, main_path)
    edited = parse(main_text, main_path)
    remove_runtime(edited, original, version, settings.name)
    imports = edited.get("imports")
    was_imported = drop_path in (original.get("imports") or [])
    if isinstance(imports, list) and drop_path in imports and not was_imported:
        remaining = [item for item in imports if item != drop_path]
        if remaining or "imports" in original:
            edited["imports"] = remaining
        else:
            del edited["imports"]
    drop_text = texts.get(drop_path)
    ours = drop_text is None or MARKER in drop_text.split("\n", 1)[0]
    return {main_path: _render(edited, main_text, document),
            drop_path: None if ours else drop_text}


def same(path: str, a: str, b: str) -> bool:
    return toml_text.same(path, a, b, "containerd")


def parse(text: Optional[str], path: str) -> TOMLDocument:
    return toml_text.parse(text, path, "containerd")


def config_version(document: TOMLDocument, path: str) -> int:
    """2 or 3; a new (empty) file is 2, which containerd 1.x reads and 2.x migrates."""
    version = document.get("version")
    if version is None and not document:
        return 2
    if version is None or version == 1:
        raise ShimError("containerd", f"{path}: config version 1 is not supported; write "
                                      f"'version = 2' with the plugin names of "
                                      f"'containerd config default'")
    if version not in CRI_PLUGIN or isinstance(version, bool):
        raise ShimError("containerd", f"{path}: unknown config version {version!r}")
    return int(version)


def runtime_entry(runtimes: Any, settings: Settings) -> dict[str, Any]:
    """Our runtime: a copy of runc's entry with our binary and the runc v2 shim."""
    source: Any = None
    if isinstance(runtimes, dict):
        source = runtimes.get("runc")
    entry = _plain(source) if isinstance(source, dict) else {}
    entry["runtime_type"] = RUNC_TYPE
    options = entry.get("options")
    entry["options"] = {**(options if isinstance(options, dict) else {}),
                        "BinaryName": settings.runtime_path}
    return entry


def add_runtime(document: TOMLDocument, version: int, settings: Settings,
                source: Optional[TOMLDocument] = None) -> None:
    """Write our runtime into ``document``'s CRI table, copying runc's entry from ``source``
    (the main file, when ``document`` is a drop-in); runc too, when neither names it."""
    keys = ("plugins", CRI_PLUGIN[version], "containerd")
    origin = _find(source if source is not None else document, keys) or {}
    containerd = _table(document, keys)
    runtimes = _table(containerd, ("runtimes",))
    wanted = runtime_entry(origin.get("runtimes"), settings)
    style = _indented(document)
    default = containerd.get("default_runtime_name", origin.get("default_runtime_name", "runc"))
    known = set(runtimes) | set(origin.get("runtimes") or {})
    if "runc" not in known and default == "runc":
        _put(runtimes, "runc", {"runtime_type": RUNC_TYPE}, 4, style)
    if _plain(runtimes.get(settings.name)) != wanted:
        _put(runtimes, settings.name, wanted, 4, style)
    if settings.set_as_default and containerd.get("default_runtime_name") != settings.name:
        containerd["default_runtime_name"] = settings.name


def remove_runtime(document: TOMLDocument, original: TOMLDocument, version: int,
                   name: str) -> None:
    """Undo ``add_runtime``: our entry and default go; what the backup had there comes back."""
    keys = ("plugins", CRI_PLUGIN[version], "containerd")
    containerd = _find(document, keys)
    if containerd is None:
        return
    before = _find(original, keys)
    before_runtimes = _plain(before.get("runtimes")) if before is not None else None
    runtimes = containerd.get("runtimes")
    if isinstance(runtimes, dict) and name in runtimes:
        if isinstance(before_runtimes, dict) and name in before_runtimes:
            _put(runtimes, name, before_runtimes[name], 4, _indented(document))
        else:
            del runtimes[name]
        had_runc = isinstance(before_runtimes, dict) and "runc" in before_runtimes
        if not had_runc and _plain(runtimes.get("runc")) == {"runtime_type": RUNC_TYPE}:
            del runtimes["runc"]  # the runc add_runtime wrote
    if containerd.get("default_runtime_name") == name:
        previous = before.get("default_runtime_name") if before is not None else None
        if previous is not None and previous != name:
            containerd["default_runtime_name"] = previous
        else:
            del containerd["default_runtime_name"]
    _prune(document, original)


def _prune(container: Any, original: Any) -> None:
    """Drop the tables left empty that the original did not have (those ``_table`` made)."""
    for key in list(container.keys()):
        item = container[key]
        if not isinstance(item, dict):
            continue
        before = original.get(key) if isinstance(original, dict) else None
        _prune(item, before)
        if not item and not isinstance(before, dict):
            del container[key]


def new_drop_in(main: TOMLDocument, version: int, settings: Settings, main_path: str) -> str:
    """The drop-in's text, derived from the main file each time, so it is deterministic."""
    document = tomlkit.document()
    document.add(tomlkit.comment(f"Written by {MARKER}: the {settings.name!r} runtime of "
                                 f"gpu-container-shim."))
    if version == 2:
        for line in ("containerd 1.x replaces a plugin's whole table with an imported one, so",
                     f"this file holds a copy of the CRI table of {main_path}:",
                     "after editing that table there, run configure again."):
            document.add(tomlkit.comment(line))
    document.add("version", version)
    if version == 2:
        cri = _find(main, ("plugins", CRI_PLUGIN[2]))
        if cri is not None and _plain(cri):
            plugins = _table(document, ("plugins",))
            _put(plugins, CRI_PLUGIN[2], _plain(cri), 1, indented=True)
    add_runtime(document, version, settings, source=main)
    return tomlkit.dumps(document)


def add_import(document: TOMLDocument, path: str, main_path: str) -> None:
    """``path`` in ``imports`` unless an entry (a glob, as containerd allows) already covers
    it."""
    imports = document.get("imports")
    if imports is None:
        # tomlkit places a new top-level key before the first table, where TOML needs it.
        document.add("imports", [path])
        return
    if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
        raise ShimError("containerd", f"{main_path}: imports must be an array of paths")
    if not any(fnmatch.fnmatchcase(path, pattern) for pattern in imports):
        imports.append(path)


def _render(edited: TOMLDocument, text: Optional[str], original: TOMLDocument) -> Optional[str]:
    """The edited text, or the input itself when nothing changed in meaning."""
    if text is not None and edited.unwrap() == original.unwrap():
        return text
    return tomlkit.dumps(edited)


def _find(container: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        if not isinstance(container, dict) or key not in container:
            return None
        container = container[key]
    return container if isinstance(container, dict) else None


def _table(container: Any, keys: Sequence[str]) -> Any:
    """The table at ``keys`` below ``container``, created (as super tables) where missing."""
    for key in keys:
        found = container.get(key)
        if found is None:
            found = tomlkit.table()
            container.add(key, found)
        elif not isinstance(found, dict):
            raise ShimError("containerd", f"{key} must be a table, not "
                                          f"{type(found).__name__}")
        container = found
    return container


def _put(parent: Any, key: str, values: dict[str, Any], depth: int, indented: bool) -> None:
    """Set ``parent[key]`` to a new table of ``values``, its headers and keys indented as the
    file indents them, ``depth`` being the level of its header (``plugins`` is 0)."""
    table = _build(values)
    if key in parent:
        parent[key] = table
    else:
        parent.add(key, table)
    _indent(parent[key], depth, indented)


def _build(values: dict[str, Any]) -> Table:
    table = tomlkit.table()
    for name, value in values.items():
        if not isinstance(value, dict):
            table.add(name, copy.deepcopy(value))
    for name, value in values.items():
        if isinstance(value, dict):
            table.add(name, _build(value))
    return table


def _indent(table: Table, depth: int, indented: bool) -> None:
    step = STEP if indented else 0
    table.trivia.indent = " " * (depth * step)
    for _, item in table.value.body:
        if isinstance(item, Table):
            _indent(item, depth + 1, indented)
        elif isinstance(item, Item) and not isinstance(item, AoT):
            item.trivia.indent = " " * ((depth + 1) * step)


def _indented(document: Container) -> bool:
    """Whether the file indents nested table headers (``containerd config default`` does)."""
    def walk(container: Any) -> bool:
        for _, item in container.value.body if isinstance(container, Table) else container.body:
            if isinstance(item, Table):
                if item.trivia.indent.strip("\n"):
                    return True
                if walk(item):
                    return True
        return False

    return walk(document)


def _plain(value: Any) -> Any:
    """A tomlkit value as plain Python (dicts, lists, scalars)."""
    return value.unwrap() if hasattr(value, "unwrap") else copy.deepcopy(value)


ENGINE = Engine(paths=paths, backed_up=backed_up, configure=configure,
                unconfigure=unconfigure, same=same, default_config=lambda name: DEFAULT_CONFIG,
                hint="restart containerd to apply (systemctl restart containerd)")
