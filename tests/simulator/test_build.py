"""The built host directory: device nodes, driver tree, sys/proc, config.yaml, rebuilds, and
the errors a build can end in."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gpu_core import config as config_mod
from simulator import build
from simulator.errors import SimulatorError
from simulator.testing import build_host

LIBS = "usr/lib/x86_64-linux-gnu"


def soname(path: Path) -> str:
    """DT_SONAME of a shared object, as readelf shows it."""
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True,
                         check=True).stdout
    line = next(line for line in out.splitlines() if "(SONAME)" in line)
    return line.split("[", 1)[1].rstrip("]")


class TestDeviceNodes:
    @pytest.mark.parametrize(("node", "major", "minor", "mode"), [
        ("nvidiactl", 195, 255, 0o666),
        ("nvidia-modeset", 195, 254, 0o666),
        ("nvidia-uvm", 510, 0, 0o666),
        ("nvidia-uvm-tools", 510, 1, 0o666),
        ("nvidia0", 195, 0, 0o666),
        ("nvidia7", 195, 7, 0o666),
        ("nvidia-caps/nvidia-cap1", 509, 1, 0o400),
        ("nvidia-caps/nvidia-cap2", 509, 2, 0o444),
        ("nvidia-caps/nvidia-cap66", 509, 66, 0o444),  # GPU 0, GI 7 access
        ("nvidia-caps/nvidia-cap148", 509, 148, 0o444),  # GPU 1, GI 1, CI 0 access
    ])
    def test_character_device(self, sim_host_factory: Any, node: str, major: int, minor: int,
                              mode: int) -> None:
        """Each node is a character device with NVIDIA's numbers and a real host's mode."""
        info = os.lstat(sim_host_factory("dgx-a100-mig").dev_dir / node)
        assert (stat.S_ISCHR(info.st_mode), os.major(info.st_rdev), os.minor(info.st_rdev),
                stat.S_IMODE(info.st_mode)) == (True, major, minor, mode)

    def test_no_caps_for_mig_devices_without_mig(self, sim_host_factory: Any) -> None:
        """Without MIG devices only the global config and monitor capabilities exist."""
        caps = sim_host_factory("dgx-a100").dev_dir / "nvidia-caps"
        assert sorted(path.name for path in caps.iterdir()) == ["nvidia-cap1", "nvidia-cap2"]

    def test_mknod_without_root_says_so(self, tmp_path: Path, sim_host_cache: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
        """Without CAP_MKNOD the build stops with an error saying root is needed."""
        def refuse(*_: Any) -> None:
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(os, "mknod", refuse)
        with pytest.raises(SimulatorError, match=r"needs root \(CAP_MKNOD\)"):
            build_host("t4", tmp_path / "sim", cache_dir=sim_host_cache)


    def test_non_root_is_refused_before_dir_changes(self, tmp_path: Path, sim_host_cache: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        """A non-root build stops saying root is needed, without creating DIR."""
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        with pytest.raises(SimulatorError, match=r"needs root \(CAP_MKNOD\)"):
            build_host("t4", tmp_path / "sim", cache_dir=sim_host_cache)
        assert not (tmp_path / "sim").exists()


class TestDriverTree:
    @pytest.mark.parametrize(("link", "target", "name"), [
        ("libcuda.so.1", "libcuda.so.535.104.05", "libcuda.so.1"),
        ("libnvidia-ml.so.1", "libnvidia-ml.so.535.104.05", "libnvidia-ml.so.1"),
        ("libnvidia-nvvm.so.4", "libnvidia-nvvm.so.535.104.05", "libnvidia-nvvm.so.4"),
        ("libcuda.so", "libcuda.so.1", "libcuda.so.1"),
    ])
    def test_soname_links(self, sim_host_factory: Any, link: str, target: str,
                          name: str) -> None:
        """SONAME links point at the versioned file, whose DT_SONAME is the link's name."""
        libs = sim_host_factory("t4").driver_dir / LIBS
        assert os.readlink(libs / link) == target
        assert soname(libs / link) == name

    def test_graphics_internals_carry_the_full_version(self, sim_host_factory: Any) -> None:
        """libnvidia-glcore's SONAME is its versioned name, with no link."""
        libs = sim_host_factory("t4").driver_dir / LIBS
        assert soname(libs / "libnvidia-glcore.so.535.104.05") == "libnvidia-glcore.so.535.104.05"

    def test_binaries_are_executable(self, sim_host_factory: Any) -> None:
        """The driver's utility and compute binaries exist and are executable."""
        bins = sim_host_factory("t4").driver_dir / "usr/bin"
        assert all(os.access(bins / name, os.X_OK) for name in
                   ("nvidia-smi", "nvidia-debugdump", "nvidia-persistenced",
                    "nvidia-cuda-mps-control", "nvidia-cuda-mps-server"))

    def test_mig_capability_files(self, sim_host_factory: Any) -> None:
        """Each MIG instance's access capability names its nvidia-caps minor (kernel format)."""
        caps = sim_host_factory("dgx-a100-mig").driver_dir / "proc/driver/nvidia/capabilities"
        assert (caps / "gpu1/mig/gi2/ci0/access").read_text() == \
            "DeviceFileMinor: 157\nDeviceFileMode: 292\n"
        assert (caps / "mig/config").read_text() == "DeviceFileMinor: 1\nDeviceFileMode: 256\n"


    @pytest.mark.parametrize("tree", ["dev", "sys"])
    def test_driver_root_holds_the_hosts_kernel_trees(self, sim_host_factory: Any,
                                                      tree: str) -> None:
        """One root for driver files and /dev (NVIDIA Container Toolkit's root): DIR/driver/dev
        is DIR/dev."""
        host = sim_host_factory("dgx-a100")
        assert (host.driver_dir / tree).resolve() == (host.dir / tree).resolve()

    def test_driver_tree_nvml_is_dir_lib_nvml(self, sim_host_factory: Any) -> None:
        host = sim_host_factory("dgx-a100")
        version = host.topology["driver_version"]
        versioned = host.driver_dir / f"usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{version}"
        assert versioned.read_bytes() == host.nvml_library.read_bytes()


class TestNvidiaSmi:
    def smi(self, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(path), *args], capture_output=True, text=True, check=False,
                              env={"PATH": "/usr/bin:/bin"})

    def test_lists_the_simulated_gpus(self, sim_host_factory: Any) -> None:
        """-L on the host lists every GPU and, under MIG GPUs, their MIG devices."""
        host = sim_host_factory("dgx-a100-mig")
        lines = self.smi(host.driver_dir / "usr/bin/nvidia-smi", "-L").stdout.splitlines()
        gpu0 = host.topology["gpus"][0]
        first_mig = gpu0["mig"]["devices"][0]["uuid"]
        assert lines[0] == f"GPU 0: NVIDIA A100-SXM4-80GB (UUID: {gpu0['uuid']})"
        assert lines[1] == f"  MIG 1g.10gb     Device  0: (UUID: {first_mig})"
        assert len(lines) == 8 + 9

    def test_lists_only_visible_gpus_renumbered(self, sim_host_factory: Any,
                                               tmp_path: Path) -> None:
        """With only /dev/nvidia3 present (as in a container) it lists one GPU, as GPU 0."""
        host = sim_host_factory("dgx-a100")
        fake = tmp_path / "host"
        (fake / "driver/usr/bin").mkdir(parents=True)
        (fake / "dev").mkdir()
        (fake / "dev/nvidia3").touch()
        (fake / "topology.json").touch()
        shutil.copy(host.driver_dir / "usr/bin/nvidia-smi", fake / "driver/usr/bin")
        result = self.smi(fake / "driver/usr/bin/nvidia-smi", "-L")
        assert result.stdout == \
            f"GPU 0: NVIDIA A100-SXM4-80GB (UUID: {host.topology['gpus'][3]['uuid']})\n"

    def test_no_devices(self, sim_host_factory: Any, tmp_path: Path) -> None:
        """Without any device node it says so and exits 6, like the real one."""
        host = sim_host_factory("t4")
        fake = tmp_path / "host"
        (fake / "driver/usr/bin").mkdir(parents=True)
        (fake / "dev").mkdir()
        (fake / "topology.json").touch()
        shutil.copy(host.driver_dir / "usr/bin/nvidia-smi", fake / "driver/usr/bin")
        result = self.smi(fake / "driver/usr/bin/nvidia-smi")
        assert (result.returncode, result.stdout) == (6, "No devices were found\n")

    def test_banner_names_driver_and_cuda(self, sim_host_factory: Any) -> None:
        """Without arguments the first line names the driver and CUDA versions."""
        out = self.smi(sim_host_factory("t4").driver_dir / "usr/bin/nvidia-smi").stdout
        assert out.splitlines()[0] == \
            "NVIDIA-SMI 535.104.05   Driver Version: 535.104.05   CUDA Version: 12.2"


class TestHostFiles:
    def test_proc_devices_registers_the_majors(self, sim_host_factory: Any) -> None:
        """DIR/proc/devices lists 195, 509 and 510 in the kernel's format."""
        text = (sim_host_factory("t4").dir / "proc/devices").read_text()
        assert text.startswith("Character devices:\n195 nvidia-frontend\n509 nvidia-caps\n"
                               "510 nvidia-uvm\n")

    @pytest.mark.parametrize(("relative", "content"), [
        ("sys/bus/pci/devices/0000:07:00.0/numa_node", "0\n"),
        ("sys/bus/pci/devices/0000:bd:00.0/numa_node", "1\n"),
        ("sys/devices/system/node/node0/cpulist", "0-63\n"),
        ("sys/devices/system/node/node1/cpulist", "64-127\n"),
        ("sys/devices/system/node/online", "0,1\n"),
    ])
    def test_sysfs(self, sim_host_factory: Any, relative: str, content: str) -> None:
        """The sysfs stand-in gives each GPU's NUMA node and each node's CPUs."""
        assert (sim_host_factory("dgx-a100").dir / relative).read_text() == content

    def test_topology_json_is_the_parsed_topology(self, sim_host_factory: Any) -> None:
        """DIR/topology.json holds what SimHost.topology holds."""
        host = sim_host_factory("dgx-a100-mig")
        assert json.loads((host.dir / "topology.json").read_text()) == host.topology


class TestConfig:
    def test_config_validates_and_points_into_dir(self, sim_host_factory: Any) -> None:
        """config.yaml passes the project's own config loader and names files in DIR."""
        host = sim_host_factory("t4")
        config = config_mod.parse(host.config_path.read_text(), str(host.config_path))
        d = str(host.dir)
        assert (config.nvml.library, config.libnvidia_container.library,
                config.libnvidia_container.load_kmods, config.host.dev_root,
                config.host.driver_root, config.host.sysfs_root, config.mig.lease_dir,
                config.simulation.dir) == \
            (f"{d}/lib/libnvidia-ml.so.1", f"{d}/lib/libnvidia-container.so.1", False,
             f"{d}/dev", f"{d}/driver", f"{d}/sys", f"{d}/run/leases", d)

    def test_hook_runs_this_python_isolated(self, sim_host_factory: Any) -> None:
        """The hook entry is this interpreter with -I, importing the hook from this tree."""
        host = sim_host_factory("t4")
        hook = config_mod.parse(host.config_path.read_text(), "x").hook
        assert hook.path.startswith("/")
        assert hook.args[:3] == (hook.path, "-I", "-c")
        tree = str(Path(config_mod.__file__).resolve().parent.parent)
        assert f"sys.path.insert(0, {json.dumps(tree)})" in hook.args[3]

    def test_library_paths_exist(self, sim_host_factory: Any) -> None:
        """Both simulated libraries are in DIR/lib."""
        host = sim_host_factory("t4")
        assert host.nvml_library.is_file() and host.nvc_library.is_file()


class TestRebuild:
    def test_rebuild_resets_faults_and_state(self, sim_host_factory: Any) -> None:
        """A new build of the same directory drops old faults, counters, leases and logs."""
        host = sim_host_factory("t4", faults=["gpu-lost=0"])
        (host.dir / "run/leases/x").write_text("lease")
        (host.dir / "faults/gpu-lost.count").write_text("3\n")
        again = sim_host_factory("t4")
        assert (again.faults(), list((again.dir / "run/leases").iterdir())) == ({}, [])

    def test_set_faults_needs_no_compiler(self, sim_host_factory: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
        """Changing faults of a built host only rewrites DIR/faults."""
        host = sim_host_factory("t4")
        monkeypatch.setenv("PATH", "/nonexistent")
        build.set_faults(host.dir, ["nvc-init-transient=2:driver rpc error: timed out"])
        assert host.faults() == {"nvc-init-transient": "2:driver rpc error: timed out"}

    def test_warm_cache_needs_no_compiler(self, sim_host_factory: Any, sim_host_cache: Path,
                                          tmp_path: Path) -> None:
        """A rebuild whose libraries are cached succeeds even when no compiler exists."""
        host = sim_host_factory("t4")
        build_host("t4", host.dir, cache_dir=sim_host_cache, compiler="no-such-cc")
        assert host.nvml_library.is_file()

    def test_refuses_a_foreign_directory(self, tmp_path: Path, sim_host_cache: Path) -> None:
        """A non-empty directory without topology.json is never written into."""
        (tmp_path / "precious").write_text("keep")
        with pytest.raises(SimulatorError, match="is not empty and holds no simulated host"):
            build_host("t4", tmp_path, cache_dir=sim_host_cache)
        assert sorted(path.name for path in tmp_path.iterdir()) == ["precious"]


class TestCompiler:
    def test_missing_compiler_is_named(self, tmp_path: Path) -> None:
        """With a cold cache and no such compiler, the error says gcc is needed."""
        with pytest.raises(SimulatorError) as caught:
            build_host("t4", tmp_path / "sim", cache_dir=tmp_path / "cache",
                       compiler="no-such-cc")
        assert caught.value.stage == "simulate"
        assert caught.value.cause.startswith("C compiler 'no-such-cc' not found")
        assert "needs gcc" in caught.value.cause

    def test_gcc_missing_from_path(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With gcc nowhere on PATH (and no $CC) the error names gcc, and DIR is not touched."""
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
        monkeypatch.delenv("CC", raising=False)
        with pytest.raises(SimulatorError, match="C compiler 'gcc' not found"):
            build_host("t4", tmp_path / "sim", cache_dir=tmp_path / "cache")
        assert not (tmp_path / "sim").exists()

    def test_unsupported_nvc_version(self, tmp_path: Path, sim_host_cache: Path) -> None:
        """An nvc version the simulator lacks is a one-line error listing the supported ones."""
        with pytest.raises(SimulatorError, match=r"--nvc-version 9\.9\.9: not simulated "):
            build_host("t4", tmp_path / "sim", nvc_version="9.9.9", cache_dir=sim_host_cache)
