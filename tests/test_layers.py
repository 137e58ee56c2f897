"""The layers of the product as a test (README §Layout): every import in every module of our
packages, function-level and TYPE_CHECKING ones included, read from the source with ast, and no
arrow that the layering forbids.

    libnvc_bindings   imports nothing of ours
    gpu_core          the shared domain: nothing of the shim, the hook, gpu-ctk, leases or the
                      simulator
    leases            gpu_core only (not the shim, the hook or gpu-ctk)
    hook              not the shim (nor gpu-ctk, nor the simulator)
    runtime_shim      not the hook, not gpu-ctk, not the simulator
    simulator         a tool beside the product: nothing imports it but gpu-ctk
    ctk               nothing imports it but itself
    spec_hook         gpu_core only (the lean hook of spec mode)
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("gpu_core", "leases", "hook", "runtime_shim", "libnvc_bindings", "simulator", "ctk",
        "spec_hook")

FORBIDDEN: dict[str, frozenset[str]] = {
    "libnvc_bindings": frozenset(OURS) - {"libnvc_bindings"},
    "gpu_core": frozenset({"runtime_shim", "hook", "ctk", "leases", "simulator", "spec_hook"}),
    "leases": frozenset({"runtime_shim", "hook", "ctk", "simulator", "spec_hook"}),
    "hook": frozenset({"runtime_shim", "ctk", "simulator", "spec_hook"}),
    "runtime_shim": frozenset({"hook", "ctk", "simulator", "spec_hook"}),
    "simulator": frozenset({"ctk"}),
    "spec_hook": frozenset(OURS) - {"spec_hook", "gpu_core"},
}
"""importer package -> packages it must not import (besides: only ctk imports ctk, only ctk
imports the simulator)."""


def imported_names(source: str, module: str) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every import in ``source``, at any depth, relative ones resolved
    against ``module`` (``pkg.sub.mod``), plus ``importlib.import_module("literal")``."""
    package = module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, node.module] if node.module else base)
            yield node.lineno, name
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr == "import_module" and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            yield node.lineno, node.args[0].value


def arrows(source: str, module: str) -> list[str]:
    """The forbidden arrows in one module's source, as ``module:line -> name``."""
    importer = module.split(".")[0]
    found = []
    for line, name in imported_names(source, module):
        target = name.split(".")[0]
        if target not in OURS or target == importer:
            continue
        bad = target in FORBIDDEN.get(importer, frozenset()) or \
            (target == "ctk" and importer != "ctk") or \
            (target == "simulator" and importer != "ctk")
        if bad:
            found.append(f"{module}:{line} -> {name}")
    return found


def modules() -> Iterator[tuple[str, Path]]:
    for package in OURS:
        for path in sorted((ROOT / package).rglob("*.py")):
            # ``pkg.__init__`` kept whole: relative imports resolve against ``pkg``
            yield ".".join(path.relative_to(ROOT).with_suffix("").parts), path


@pytest.mark.parametrize("package", OURS)
def test_no_module_of_the_package_imports_across_a_forbidden_arrow(package: str) -> None:
    found = [arrow for module, path in modules() if module.split(".")[0] == package
             for arrow in arrows(path.read_text(encoding="utf-8"), module)]
    assert found == []


def test_every_package_has_modules_to_check() -> None:
    assert {module.split(".")[0] for module, _ in modules()} == set(OURS)


def test_a_function_level_import_of_the_shim_in_the_core_is_an_arrow() -> None:
    source = "def f():\n    from runtime_shim import main\n"
    assert arrows(source, "gpu_core.config") == ["gpu_core.config:2 -> runtime_shim"]


def test_a_type_checking_import_of_the_hook_in_the_core_is_an_arrow() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import hook.main\n"
    assert arrows(source, "gpu_core.selection") == ["gpu_core.selection:3 -> hook.main"]


def test_a_relative_import_resolves_to_its_own_package() -> None:
    assert arrows("from . import errors\nfrom .x import y\n", "gpu_core.config") == []


def test_the_bindings_importing_the_core_is_an_arrow() -> None:
    assert arrows("from gpu_core.errors import ShimError\n", "libnvc_bindings.session") == \
        ["libnvc_bindings.session:1 -> gpu_core.errors"]


def test_the_hook_importing_the_shim_is_an_arrow() -> None:
    assert arrows("import runtime_shim.context\n", "hook.main") == \
        ["hook.main:1 -> runtime_shim.context"]


def test_leases_importing_the_hook_is_an_arrow() -> None:
    assert arrows("from hook import lease_hooks\n", "leases.store") == \
        ["leases.store:1 -> hook"]


def test_leases_importing_the_core_is_allowed() -> None:
    assert arrows("from gpu_core import atomic_file\n", "leases.store") == []


def test_the_core_importing_leases_is_an_arrow() -> None:
    assert arrows("from leases import store\n", "gpu_core.config") == \
        ["gpu_core.config:1 -> leases"]


def test_importing_ctk_by_name_from_outside_ctk_is_an_arrow() -> None:
    source = "import importlib\nimportlib.import_module('ctk.plan')\n"
    assert arrows(source, "runtime_shim.main") == ["runtime_shim.main:2 -> ctk.plan"]


def test_ctk_importing_every_layer_is_allowed() -> None:
    source = "import hook.mounts, runtime_shim.pipeline, leases.store, simulator.build\n"
    assert arrows(source, "ctk.plan") == []


def test_the_shim_importing_the_hook_is_an_arrow() -> None:
    assert arrows("from hook import state\n", "runtime_shim.main") == \
        ["runtime_shim.main:1 -> hook"]


def test_the_hook_importing_the_simulator_is_an_arrow() -> None:
    assert arrows("def f():\n    import simulator.build\n", "hook.main") == \
        ["hook.main:2 -> simulator.build"]


def test_the_spec_hook_importing_the_hook_is_an_arrow() -> None:
    assert arrows("from hook import bounded_child\n", "spec_hook.ldconfig") == \
        ["spec_hook.ldconfig:1 -> hook"]


def test_the_spec_hook_importing_the_core_is_allowed() -> None:
    assert arrows("from gpu_core import bundle\n", "spec_hook.main") == []
