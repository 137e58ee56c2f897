"""The shipped, already parsed declarations: current, equal to a fresh parse, and used."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cffi
import pytest

from libnvc_bindings import declarations, parsed
from simulator.testing import build_host

SETS = [("probe", declarations.PROBE_FILES)] + [(g.name, g.files)
                                                for g in declarations.GENERATIONS]
NEWEST = "1.17.8"
"""A simulated release that exports every declared function."""


def fresh(files: tuple[str, ...]) -> cffi.FFI:
    """The declarations parsed now, as the loader did at every start before."""
    ffi = cffi.FFI()
    ffi.cdef(declarations.read_decls(files))
    return ffi


def shipped(files: tuple[str, ...]) -> Any:
    ffi = parsed.load(declarations.read_decls(files))
    assert ffi is not None, "regenerate: python -m libnvc_bindings.parsed"
    return ffi


def layout(ffi: Any, struct: str) -> Any:
    """Size and (name, offset, type, bits) of every field of a complete struct."""
    ctype = ffi.typeof(struct)
    return ffi.sizeof(ctype), [(name, f.offset, f.type.cname, f.bitsize)
                               for name, f in ctype.fields]


@pytest.fixture(scope="module")
def newest_library(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_host("t4", tmp_path_factory.mktemp("parsed"), nvc_version=NEWEST)
               .nvc_library)


@pytest.mark.parametrize(("name", "files"), SETS, ids=[s[0] for s in SETS])
def test_every_declaration_set_is_shipped_parsed(name: str, files: tuple[str, ...]) -> None:
    """The probe and each generation have their module: no cdef at a container start."""
    assert type(declarations._ffi_for_files(files)).__module__ == "_cffi_backend"
    assert shipped(files) is not None


def test_no_stale_modules_are_shipped() -> None:
    """Exactly one module per declaration set lies in the package (the generator prunes)."""
    wanted = {parsed.module_name(declarations.read_decls(files)) + ".py" for _, files in SETS}
    present = {n for n in os.listdir(parsed.HERE) if n.startswith(parsed.PREFIX)}
    assert present == wanted


@pytest.mark.parametrize(("name", "files"), SETS, ids=[s[0] for s in SETS])
def test_shipped_types_equal_a_fresh_parse(name: str, files: tuple[str, ...]) -> None:
    """Same typedefs, structs, sizes and field offsets as parsing the decls/ files now."""
    old, new = fresh(files), shipped(files)
    assert old.list_types() == new.list_types()
    typedefs, structs, _ = old.list_types()
    assert [old.typeof(t).cname for t in typedefs] == [new.typeof(t).cname for t in typedefs]
    for struct in structs:
        if old.typeof(f"struct {struct}").fields is None:
            # opaque (only ever a pointer): ask its size, since cffi aborts on .fields of an
            # opaque struct of an out-of-line FFI
            with pytest.raises(new.error, match="know the size"):
                new.sizeof(f"struct {struct}")
            continue
        assert layout(old, f"struct {struct}") == layout(new, f"struct {struct}"), struct


@pytest.mark.parametrize(("name", "files"), SETS[1:], ids=[s[0] for s in SETS[1:]])
def test_shipped_functions_equal_a_fresh_parse(name: str, files: tuple[str, ...],
                                               newest_library: str) -> None:
    """Every declared function has the same C type as parsing the decls/ files now."""
    old, new = fresh(files), shipped(files)
    old_lib, new_lib = old.dlopen(newest_library), new.dlopen(newest_library)
    assert dir(old_lib) == dir(new_lib)
    for function in dir(old_lib):
        assert (old.typeof(getattr(old_lib, function)).cname
                == new.typeof(getattr(new_lib, function)).cname), function


def test_probe_functions_equal_a_fresh_parse() -> None:
    """The dl* functions the loader calls have the same C types."""
    old, new = fresh(declarations.PROBE_FILES), shipped(declarations.PROBE_FILES)
    old_lib, new_lib = old.dlopen(None), new.dlopen(None)
    for function in ("dlopen", "dlsym", "dladdr", "dlclose", "dlerror"):
        assert old.typeof(getattr(old_lib, function)).cname == new.typeof(
            getattr(new_lib, function)).cname


def test_an_edited_declaration_is_parsed_not_read_stale() -> None:
    """Text no module was generated from finds none: the loader parses it as before."""
    text = declarations.read_decls(declarations.PROBE_FILES) + "\nint added(void);"
    assert parsed.load(text) is None


def test_loading_binds_without_the_cffi_parser(newest_library: str) -> None:
    """Loading a library imports cffi's backend only, never cffi's Python front end."""
    code = ("import sys; import libnvc_bindings as b; b.load(sys.argv[1], names=()); "
            "print(sorted(m for m in sys.modules if 'cffi' in m or 'pycparser' in m))")
    done = subprocess.run([sys.executable, "-c", code, newest_library], capture_output=True,
                          text=True, check=True, timeout=60)
    assert done.stdout.strip() == "['_cffi_backend']"


def test_write_regenerates_and_prunes(tmp_path: Path) -> None:
    """The generator writes one module per set, and removes one no set names any more."""
    (tmp_path / f"{parsed.PREFIX}00000000.py").write_text("ffi = None\n")
    (tmp_path / "keep.py").write_text("")
    text = declarations.read_decls(declarations.PROBE_FILES)
    written = parsed.write([(text, declarations.PROBE_FILES)], str(tmp_path))
    assert written == [parsed.module_name(text) + ".py"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*written, "keep.py"])
    shipped_text = (Path(parsed.HERE) / written[0]).read_text()
    assert (tmp_path / written[0]).read_text() == shipped_text
