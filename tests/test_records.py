"""The records of the start paths as a test (README §Layout): in the packages a create or a hook
start imports from (gpu_core, runtime_shim, spec_hook), a record is a ``typing.NamedTuple``
(or a plain class), never a dataclass, and a NamedTuple's annotations are real types, not text.

Why, in numbers a fresh process pays: importing dataclasses pulls in inspect and ast and each
dataclass is generated with ``exec``; NamedTuple turns every text annotation (all of them under
``from __future__ import annotations``) into a compiled ForwardRef, and a process's first
``compile()`` builds the ast types, milliseconds on its own. Read from the source with ast.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gpu_core", "runtime_shim", "spec_hook")


def modules() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def named(path: Path) -> str:
    return str(path.relative_to(ROOT))


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def namedtuples(tree: ast.Module) -> list[ast.ClassDef]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
            and any((isinstance(base, ast.Name) and base.id == "NamedTuple") or
                    (isinstance(base, ast.Attribute) and base.attr == "NamedTuple")
                    for base in node.bases)]


def has_future_annotations(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.ImportFrom) and node.module == "__future__" and
               any(alias.name == "annotations" for alias in node.names) for node in tree.body)


@pytest.mark.parametrize("path", list(modules()), ids=named)
def test_no_module_imports_dataclasses(path: Path) -> None:
    imports = [node for node in ast.walk(parsed(path))
               if (isinstance(node, ast.Import)
                   and any(alias.name == "dataclasses" for alias in node.names))
               or (isinstance(node, ast.ImportFrom) and node.module == "dataclasses")]
    assert imports == []


@pytest.mark.parametrize("path", list(modules()), ids=named)
def test_a_module_with_namedtuples_has_no_postponed_annotations(path: Path) -> None:
    tree = parsed(path)
    if namedtuples(tree):
        assert not has_future_annotations(tree)


@pytest.mark.parametrize("path", list(modules()), ids=named)
def test_no_namedtuple_field_is_annotated_with_text(path: Path) -> None:
    """A whole annotation in quotes is what NamedTuple compiles; a quoted argument inside one
    (``list["Link"]``, a TYPE_CHECKING name) it leaves alone."""
    quoted = [f"{cls.name}.{ast.unparse(item.target)}" for cls in namedtuples(parsed(path))
              for item in cls.body if isinstance(item, ast.AnnAssign)
              and isinstance(item.annotation, ast.Constant)]
    assert quoted == []
