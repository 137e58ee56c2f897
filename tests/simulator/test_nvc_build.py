"""Building the simulated libnvidia-container: versions, exported symbols, struct layouts."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from simulator import header, nvc_build, topology
from simulator.errors import SimulatorError

# The released libnvidia-container's layouts: sizes on x86-64 per ABI generation.
GENERATION_SIZES: dict[str, dict[str, int]] = {
    "1.0": {"nvc_version": 24, "nvc_config": 24, "nvc_device_node": 16, "nvc_driver_info": 96,
            "nvc_device": 56, "nvc_container_config": 56},
    "1.1": {"nvc_version": 24, "nvc_config": 24, "nvc_device_node": 16, "nvc_driver_info": 96,
            "nvc_device": 88, "nvc_mig_device": 40, "nvc_container_config": 56},
    "1.5": {"nvc_version": 24, "nvc_config": 24, "nvc_device_node": 16, "nvc_driver_info": 112,
            "nvc_device": 88, "nvc_mig_device": 40, "nvc_container_config": 56},
    "1.15": {"nvc_version": 24, "nvc_config": 40, "nvc_device_node": 16,
             "nvc_driver_info": 112, "nvc_device": 88, "nvc_mig_device": 40,
             "nvc_container_config": 56},
}
GENERATION_OF = {"1.0.7": "1.0", "1.2.1": "1.1", "1.3.3": "1.1", "1.14.6": "1.5",
                 "1.16.2": "1.15", "1.17.8": "1.15"}
# Released layout: mig_capable @56, mig_caps_path @64, mig_devices @72 from 1.1.
DEVICE_MIG_OFFSETS = {"mig_capable": 56, "mig_caps_path": 64, "mig_devices": 72}

BASE_FUNCTIONS = {
    "nvc_version", "nvc_context_new", "nvc_context_free", "nvc_config_new", "nvc_config_free",
    "nvc_init", "nvc_shutdown", "nvc_error", "nvc_container_config_new",
    "nvc_container_config_free", "nvc_container_new", "nvc_container_free",
    "nvc_driver_info_new", "nvc_driver_info_free", "nvc_device_info_new",
    "nvc_device_info_free", "nvc_driver_mount", "nvc_device_mount", "nvc_ldcache_update",
}
MIG_FUNCTIONS = {"nvc_mig_device_access_caps_mount", "nvc_mig_config_global_caps_mount",
                 "nvc_mig_monitor_global_caps_mount", "nvc_device_mig_caps_mount"}
NVCAPS_FUNCTIONS = {"nvc_nvcaps_style", "nvc_nvcaps_device_from_proc_path"}
EXPECTED_FUNCTIONS = {
    "1.0.7": BASE_FUNCTIONS,
    "1.2.1": BASE_FUNCTIONS | MIG_FUNCTIONS,
    "1.3.3": BASE_FUNCTIONS | MIG_FUNCTIONS | NVCAPS_FUNCTIONS,
    "1.14.6": BASE_FUNCTIONS | MIG_FUNCTIONS | NVCAPS_FUNCTIONS,
    "1.16.2": BASE_FUNCTIONS | MIG_FUNCTIONS | NVCAPS_FUNCTIONS | {"nvc_imex_channel_mount"},
    "1.17.8": BASE_FUNCTIONS | MIG_FUNCTIONS | NVCAPS_FUNCTIONS | {"nvc_imex_channel_mount"},
}

PROBE = r"""
#include <stddef.h>
#include <stdio.h>
#include "nvc.h"
#define SIZE(s) printf(#s " %zu\n", sizeof(struct s))
int main(void)
{
    SIZE(nvc_version); SIZE(nvc_config); SIZE(nvc_device_node); SIZE(nvc_driver_info);
    SIZE(nvc_device); SIZE(nvc_container_config);
#if NVC_HAS_MIG
    SIZE(nvc_mig_device);
    printf("off.mig_capable %zu\n", offsetof(struct nvc_device, mig_capable));
    printf("off.mig_caps_path %zu\n", offsetof(struct nvc_device, mig_caps_path));
    printf("off.mig_devices %zu\n", offsetof(struct nvc_device, mig_devices));
#endif
    return 0;
}
"""


@pytest.fixture(scope="module")
def header_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated sim_topology.h (the MIG topology, so every code path is compiled)."""
    directory = tmp_path_factory.mktemp("nvc-header")
    text = header.render(topology.load("dgx-a100-mig"), str(directory / "host"))
    (directory / "sim_topology.h").write_text(text, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def libraries(header_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every supported version, compiled with warnings as errors."""
    out = tmp_path_factory.mktemp("nvc-libs")
    built = {version: out / version / nvc_build.SONAME
             for version in nvc_build.SUPPORTED_VERSIONS}

    def build(version: str) -> None:
        nvc_build.compile_nvc(header_dir, built[version], version, extra_flags=("-Werror",))

    # gcc runs outside the GIL: two at a time keeps this module quick on two cores.
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(build, nvc_build.SUPPORTED_VERSIONS))
    return built


def probe(version: str, tmp_path: Path) -> dict[str, int]:
    major, minor, patch = nvc_build.parse_version(version)
    source = tmp_path / "probe.c"
    source.write_text(PROBE, encoding="utf-8")
    exe = tmp_path / "probe"
    subprocess.run(["gcc", "-std=gnu11", f"-DNVC_MAJOR={major}", f"-DNVC_MINOR={minor}",
                    f"-DNVC_PATCH={patch}", f"-I{nvc_build.CSRC}", str(source), "-o", str(exe)],
                   check=True, capture_output=True)
    output = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {name: int(value) for name, value in (line.split() for line in output.splitlines())}


def exported(path: Path) -> set[str]:
    output = subprocess.run(["nm", "-D", "--defined-only", str(path)], check=True,
                            capture_output=True, text=True).stdout
    return {line.split()[-1].split("@")[0] for line in output.splitlines()
            if line.split()[-1].startswith("nvc_")}


class TestVersions:
    def test_default_is_the_newest(self) -> None:
        """DEFAULT_VERSION is the newest supported release."""
        newest = max(nvc_build.SUPPORTED_VERSIONS, key=nvc_build.parse_version)
        assert newest == nvc_build.DEFAULT_VERSION

    def test_every_generation_has_a_version(self) -> None:
        """At least one supported version falls in each ABI generation (declarations.py)."""
        assert set(GENERATION_OF.values()) == set(GENERATION_SIZES)
        assert set(GENERATION_OF) == set(nvc_build.SUPPORTED_VERSIONS)

    def test_unknown_version_is_a_one_line_error_listing_the_supported(self) -> None:
        """An unsupported version is refused with every supported one named."""
        with pytest.raises(SimulatorError) as caught:
            nvc_build.parse_version("1.4.0")
        message = str(caught.value)
        assert message.startswith("simulate: unsupported libnvidia-container version '1.4.0'")
        assert all(version in message for version in nvc_build.SUPPORTED_VERSIONS)
        assert "\n" not in message

    def test_unknown_version_fails_before_compiling(self, tmp_path: Path) -> None:
        """compile_nvc refuses an unknown version without touching the output path."""
        with pytest.raises(SimulatorError):
            nvc_build.compile_nvc(tmp_path, tmp_path / "out" / "lib.so", "2.0.0")
        assert not (tmp_path / "out").exists()

    @pytest.mark.parametrize("version", sorted(EXPECTED_FUNCTIONS))
    def test_exported_functions_follow_the_release(self, version: str) -> None:
        """MIG functions from 1.1, nvcaps from 1.3, imex from 1.15 (declarations.FUNCTIONS)."""
        assert set(nvc_build.exported_functions(version)) == EXPECTED_FUNCTIONS[version]

    def test_version_script_exports_under_nvc_1_0(self) -> None:
        """The version script exports the release's functions as NVC_1.0, everything else local."""
        script = nvc_build.version_script("1.0.7")
        assert script.startswith("NVC_1.0 {")
        assert "nvc_init;" in script and "nvc_imex_channel_mount" not in script
        assert "local:\n        *;" in script


class TestCompile:
    def test_missing_gcc_is_a_clear_error(self, header_dir: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
        """Without gcc on PATH the build says so."""
        monkeypatch.setattr(shutil, "which", lambda _name: None)
        with pytest.raises(SimulatorError, match="gcc not found"):
            nvc_build.compile_nvc(header_dir, tmp_path / "lib.so", nvc_build.DEFAULT_VERSION)

    def test_missing_topology_header_is_an_error(self, tmp_path: Path) -> None:
        """A header directory without sim_topology.h is refused."""
        with pytest.raises(SimulatorError, match=r"no sim_topology\.h"):
            nvc_build.compile_nvc(tmp_path, tmp_path / "lib.so", nvc_build.DEFAULT_VERSION)

    def test_compiler_errors_are_reported(self, tmp_path: Path) -> None:
        """A header that does not compile gives a one-line 'compiling ... failed' error."""
        (tmp_path / "sim_topology.h").write_text("#error broken topology\n", encoding="utf-8")
        with pytest.raises(SimulatorError, match=r"compiling libnvidia-container 1\.17\.8 failed"):
            nvc_build.compile_nvc(tmp_path, tmp_path / "lib.so", "1.17.8")
        assert not (tmp_path / "lib.so").exists()

    @pytest.mark.parametrize("version", nvc_build.SUPPORTED_VERSIONS)
    def test_exports_exactly_the_release_functions(self, libraries: dict[str, Path],
                                                   version: str) -> None:
        """nm -D lists the release's nvc_* functions and no others."""
        assert exported(libraries[version]) == EXPECTED_FUNCTIONS[version]

    def test_nothing_but_nvc_functions_is_exported(self, libraries: dict[str, Path]) -> None:
        """Internal helpers stay local (the version script hides them)."""
        output = subprocess.run(["nm", "-D", "--defined-only",
                                 str(libraries[nvc_build.DEFAULT_VERSION])],
                                check=True, capture_output=True, text=True).stdout
        names = {line.split()[-1].split("@")[0] for line in output.splitlines()}
        assert names - {"NVC_1.0"} == EXPECTED_FUNCTIONS[nvc_build.DEFAULT_VERSION]

    def test_soname_is_libnvidia_container_so_1(self, libraries: dict[str, Path]) -> None:
        """The library carries the real SONAME."""
        output = subprocess.run(["readelf", "-d", str(libraries["1.0.7"])], check=True,
                                capture_output=True, text=True).stdout
        assert "Library soname: [libnvidia-container.so.1]" in output


class TestLayout:
    @pytest.mark.parametrize("version", nvc_build.SUPPORTED_VERSIONS)
    def test_header_struct_sizes_match_the_design_table(self, version: str,
                                                         tmp_path: Path) -> None:
        """sizeof of every public struct in nvc.h is the released library's (x86-64)."""
        sizes = {name: size for name, size in probe(version, tmp_path).items()
                 if not name.startswith("off.")}
        assert sizes == GENERATION_SIZES[GENERATION_OF[version]]

    @pytest.mark.parametrize("version", ["1.2.1", "1.14.6", "1.17.8"])
    def test_device_mig_fields_sit_where_the_release_has_them(self, version: str,
                                                              tmp_path: Path) -> None:
        """nvc_device's MIG fields are at offsets 56, 64 and 72."""
        offsets = {name[4:]: size for name, size in probe(version, tmp_path).items()
                   if name.startswith("off.")}
        assert offsets == DEVICE_MIG_OFFSETS

    @pytest.mark.parametrize("version", nvc_build.SUPPORTED_VERSIONS)
    def test_abi_cdef_sizes_match_the_design_table(self, version: str) -> None:
        """The cffi declarations tests use have the same sizes as the table."""
        import cffi

        ffi = cffi.FFI()
        ffi.cdef(nvc_build.abi_cdef(version))
        expected = GENERATION_SIZES[GENERATION_OF[version]]
        assert {name: ffi.sizeof(f"struct {name}") for name in expected} == expected
