"""The simulated libnvidia-container called for real (cffi, ABI mode) on a simulated host:
context and init with its faults, container configuration, driver and device information."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from simulator import header, nvc_build
from simulator.testing import SimHost, build_host

VERSIONS = ("1.0.7", "1.3.3", "1.14.6", "1.16.2", "1.17.8")
DEFAULT_MESSAGE = "cuda error: unknown error"


class Nvc:
    """One build of the library, loaded with declarations written from the released layouts."""

    def __init__(self, host: SimHost, version: str) -> None:
        self.host = host
        self.version = nvc_build.parse_version(version)
        self.ffi, self.lib = nvc_build.open_library(host.nvc_library, version)

    def text(self, pointer: Any) -> Optional[str]:
        if pointer == self.ffi.NULL:
            return None
        value = self.ffi.string(pointer)
        assert isinstance(value, bytes)
        return value.decode()

    def strings(self, array: Any, count: int) -> list[str]:
        return [text for text in (self.text(array[i]) for i in range(count)) if text is not None]

    def error(self, ctx: Any) -> Optional[str]:
        return self.text(self.lib.nvc_error(ctx))

    def context(self) -> Any:
        return self.ffi.gc(self.lib.nvc_context_new(), self.lib.nvc_context_free)

    def config(self) -> Any:
        return self.ffi.gc(self.lib.nvc_config_new(), self.lib.nvc_config_free)

    def initialized(self) -> Any:
        ctx = self.context()
        assert self.lib.nvc_init(ctx, self.config(), b"") == 0, self.error(ctx)
        return ctx

    def container(self, ctx: Any, rootfs: Path, opts: bytes, pid: Optional[int] = None) -> Any:
        # The config borrows the rootfs string (as the real one does): keep it alive.
        path = self.ffi.new("char[]", str(rootfs).encode())
        cfg = self.ffi.gc(self.lib.nvc_container_config_new(pid or os.getpid(), path),
                          self.lib.nvc_container_config_free)
        cnt = self.lib.nvc_container_new(ctx, cfg, opts)
        del path
        return cnt if cnt == self.ffi.NULL else self.ffi.gc(cnt, self.lib.nvc_container_free)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], SimHost]:
    """The MIG topology built once per library version (compiles are cached)."""
    built: dict[str, SimHost] = {}

    def get(version: str) -> SimHost:
        if version not in built:
            into = tmp_path_factory.mktemp(f"host-{version}")
            built[version] = build_host("dgx-a100-mig", into, nvc_version=version)
        return built[version]

    return get


@pytest.fixture(params=VERSIONS)
def nvc(request: pytest.FixtureRequest, hosts: Callable[[str], SimHost]) -> Iterator[Nvc]:
    """The library of each version; faults are cleared after each test."""
    host = hosts(request.param)
    yield Nvc(host, request.param)
    host.set_faults()


@pytest.fixture
def newest(hosts: Callable[[str], SimHost]) -> Iterator[Nvc]:
    host = hosts(nvc_build.DEFAULT_VERSION)
    yield Nvc(host, nvc_build.DEFAULT_VERSION)
    host.set_faults()


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A Debian-looking image directory (the library picks multiarch library paths)."""
    (tmp_path / "rootfs" / "etc").mkdir(parents=True)
    (tmp_path / "rootfs" / "etc" / "debian_version").write_text("12.0\n", encoding="utf-8")
    return tmp_path / "rootfs"


class TestContext:
    def test_version_is_the_compiled_release(self, nvc: Nvc) -> None:
        """nvc_version() returns major, minor, patch and the version string."""
        version = nvc.lib.nvc_version()
        assert (version.major, version.minor, version.patch) == nvc.version
        assert nvc.text(version.string) == ".".join(map(str, nvc.version))

    def test_config_new_defaults_uid_and_gid_to_minus_one(self, nvc: Nvc) -> None:
        """A new config leaves root/ldcache NULL and uid/gid at (uid_t)-1."""
        cfg = nvc.config()
        assert (cfg.root, cfg.ldcache) == (nvc.ffi.NULL, nvc.ffi.NULL)
        assert (cfg.uid, cfg.gid) == (2**32 - 1, 2**32 - 1)

    def test_init_succeeds_and_leaves_no_error(self, nvc: Nvc) -> None:
        """A clean host initializes; nvc_error() has nothing to say."""
        ctx = nvc.context()
        assert nvc.lib.nvc_init(ctx, nvc.config(), b"load-kmods") == 0
        assert nvc.error(ctx) is None
        assert nvc.lib.nvc_shutdown(ctx) == 0

    def test_init_rejects_an_unknown_option(self, nvc: Nvc) -> None:
        """An option the library does not know fails like the real one."""
        ctx = nvc.context()
        assert nvc.lib.nvc_init(ctx, nvc.config(), b"load-kmods bogus") == -1
        assert nvc.error(ctx) == "invalid option: bogus"

    def test_calls_before_init_say_context_uninitialized(self, nvc: Nvc) -> None:
        """Every call but init needs an initialized context."""
        ctx = nvc.context()
        assert nvc.lib.nvc_driver_info_new(ctx, b"") == nvc.ffi.NULL
        assert nvc.error(ctx) == "context uninitialized"

    def test_error_of_a_null_context_is_null(self, nvc: Nvc) -> None:
        """nvc_error(NULL) is NULL, not a crash."""
        assert nvc.lib.nvc_error(nvc.ffi.NULL) == nvc.ffi.NULL

    def test_transient_fault_fails_the_first_inits(self, nvc: Nvc) -> None:
        """nvc-init-transient=2: two failures with the default message, then success."""
        nvc.host.set_faults("nvc-init-transient=2")
        ctx = nvc.context()
        outcomes = [(nvc.lib.nvc_init(ctx, nvc.config(), b""), nvc.error(ctx)) for _ in range(2)]
        assert outcomes == [(-1, DEFAULT_MESSAGE), (-1, DEFAULT_MESSAGE)]
        assert nvc.lib.nvc_init(ctx, nvc.config(), b"") == 0
        assert nvc.host.fault_uses("nvc-init-transient") == 3

    def test_transient_fault_carries_its_message(self, nvc: Nvc) -> None:
        """nvc-init-transient=1:MESSAGE fails once with MESSAGE."""
        nvc.host.set_faults("nvc-init-transient=1:driver rpc error: timed out")
        ctx = nvc.context()
        assert nvc.lib.nvc_init(ctx, nvc.config(), b"") == -1
        assert nvc.error(ctx) == "driver rpc error: timed out"

    def test_permanent_fault_fails_every_init(self, nvc: Nvc) -> None:
        """nvc-init-permanent=MESSAGE fails each time with MESSAGE."""
        nvc.host.set_faults("nvc-init-permanent=driver error: failed to process request")
        ctx = nvc.context()
        for _ in range(3):
            assert nvc.lib.nvc_init(ctx, nvc.config(), b"") == -1
            assert nvc.error(ctx) == "driver error: failed to process request"

    def test_faults_are_shared_across_processes(self, newest: Nvc) -> None:
        """A transient fault consumed here is consumed for other processes too."""
        newest.host.set_faults("nvc-init-transient=1")
        ctx = newest.context()
        assert newest.lib.nvc_init(ctx, newest.config(), b"") == -1
        other = newest.context()
        assert newest.lib.nvc_init(other, newest.config(), b"") == 0


CONTAINER_OPTIONS: list[tuple[str, bytes, Optional[str]]] = [
    ("1.0.7", b"standalone no-cgroups no-devbind utility compute video graphics display ngx "
              b"compat32", None),
    ("1.17.8", b"supervised no-cgroups utility", None),
    ("1.17.8", b"no-cgroups utility", "invalid mode of operation"),
    ("1.17.8", b"supervised standalone", "invalid mode of operation"),
    ("1.17.8", b"standalone bogus", "invalid option: bogus"),
    ("1.16.2", b"standalone no-cntlibs", None),
    ("1.17.8", b"standalone no-cntlibs", "invalid option: no-cntlibs"),
    ("1.16.2", b"standalone cuda-compat-mode=ldconfig",
     "invalid option: cuda-compat-mode=ldconfig"),
    ("1.17.8", b"standalone cuda-compat-mode=ldconfig", None),
    ("1.17.8", b"standalone cuda-compat-mode=disabled cuda-compat-mode=mount", None),
    ("1.17.8", b"standalone cuda-compat-mode=mount cuda-compat-mode=ldconfig",
     "only one cuda-compat-mode can be specified at a time"),
]


class TestContainer:
    @pytest.mark.parametrize(("version", "opts", "message"), CONTAINER_OPTIONS)
    def test_container_options(self, hosts: Callable[[str], SimHost], rootfs: Path,
                               version: str, opts: bytes, message: Optional[str]) -> None:
        """Exactly one mode, known capability options, version-dependent compat options."""
        nvc = Nvc(hosts(version), version)
        ctx = nvc.initialized()
        cnt = nvc.container(ctx, rootfs, opts)
        assert (nvc.error(ctx) if cnt == nvc.ffi.NULL else None) == message

    def test_relative_rootfs_is_an_invalid_argument(self, newest: Nvc) -> None:
        """The rootfs must be absolute."""
        ctx = newest.initialized()
        assert newest.container(ctx, Path("rootfs"), b"standalone") == newest.ffi.NULL
        assert newest.error(ctx) == "invalid argument"

    def test_vanished_process_is_reported(self, newest: Nvc, rootfs: Path) -> None:
        """A pid without a process fails on /proc/<pid> like the real library."""
        dead = subprocess.Popen(["true"])
        dead.wait()
        ctx = newest.initialized()
        assert newest.container(ctx, rootfs, b"standalone", pid=dead.pid) == newest.ffi.NULL
        assert newest.error(ctx) == f"stat failed: /proc/{dead.pid}: No such file or directory"


    @pytest.mark.parametrize("version", ["1.16.2", "1.17.8"])
    def test_missing_imex_channel_is_reported(self, hosts: Callable[[str], SimHost],
                                              rootfs: Path, version: str) -> None:
        """From 1.15, mounting an IMEX channel the host lacks names the missing node."""
        nvc = Nvc(hosts(version), version)
        ctx = nvc.initialized()
        cnt = nvc.container(ctx, rootfs, b"standalone")
        channel = nvc.ffi.new("struct nvc_imex_channel *", {"id": 7})
        assert nvc.lib.nvc_imex_channel_mount(ctx, cnt, channel) == -1
        assert nvc.error(ctx) == (f"stat failed: {nvc.host.dev_dir}/nvidia-caps-imex-channels/"
                                  f"channel7: No such file or directory")


class TestDriverInfo:
    def test_driver_versions(self, nvc: Nvc) -> None:
        """The driver and CUDA versions of the topology."""
        info = nvc.lib.nvc_driver_info_new(nvc.initialized(), b"")
        try:
            assert nvc.text(info.nvrm_version) == nvc.host.topology["driver_version"]
            assert nvc.text(info.cuda_version) == "12.2"
        finally:
            nvc.lib.nvc_driver_info_free(info)

    def test_binaries_and_libraries_are_host_paths_of_the_driver_tree(self, nvc: Nvc) -> None:
        """nvidia-smi and the full-version libraries under DIR/driver."""
        info = nvc.lib.nvc_driver_info_new(nvc.initialized(), b"")
        try:
            bins = nvc.strings(info.bins, info.nbins)
            libs = nvc.strings(info.libs, info.nlibs)
        finally:
            nvc.lib.nvc_driver_info_free(info)
        driver = nvc.host.driver_dir
        version = nvc.host.topology["driver_version"]
        assert str(driver / "usr/bin/nvidia-smi") in bins
        assert str(driver / f"usr/lib/x86_64-linux-gnu/libcuda.so.{version}") in libs
        assert str(driver / f"usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{version}") in libs
        assert all(Path(path).is_file() for path in bins + libs)

    def test_configured_driver_root_is_honoured(self, newest: Nvc) -> None:
        """nvc_config.root naming the driver tree gives the same files as the default."""
        def libraries(root: Optional[bytes]) -> list[str]:
            ctx, cfg = newest.context(), newest.config()
            keep = newest.ffi.new("char[]", root) if root is not None else newest.ffi.NULL
            cfg.root = keep
            assert newest.lib.nvc_init(ctx, cfg, b"") == 0, newest.error(ctx)
            info = newest.lib.nvc_driver_info_new(ctx, b"")
            try:
                return newest.strings(info.libs, info.nlibs)
            finally:
                newest.lib.nvc_driver_info_free(info)

        assert libraries(str(newest.host.driver_dir).encode()) == libraries(None) != []

    def test_control_devices(self, nvc: Nvc) -> None:
        """nvidiactl, nvidia-uvm, nvidia-uvm-tools, nvidia-modeset with their numbers."""
        info = nvc.lib.nvc_driver_info_new(nvc.initialized(), b"")
        try:
            devs = [(nvc.text(info.devs[i].path), os.major(info.devs[i].id),
                     os.minor(info.devs[i].id)) for i in range(info.ndevs)]
        finally:
            nvc.lib.nvc_driver_info_free(info)
        assert devs == [("/dev/nvidiactl", 195, 255), ("/dev/nvidia-uvm", 510, 0),
                        ("/dev/nvidia-uvm-tools", 510, 1), ("/dev/nvidia-modeset", 195, 254)]

    def test_driver_options_drop_devices(self, newest: Nvc) -> None:
        """no-uvm and no-modeset leave those devices out."""
        info = newest.lib.nvc_driver_info_new(newest.initialized(), b"no-uvm no-modeset")
        try:
            paths = [newest.text(info.devs[i].path) for i in range(info.ndevs)]
        finally:
            newest.lib.nvc_driver_info_free(info)
        assert paths == ["/dev/nvidiactl"]

    def test_unknown_driver_option(self, newest: Nvc) -> None:
        """An unknown driver option is an error."""
        ctx = newest.initialized()
        assert newest.lib.nvc_driver_info_new(ctx, b"no-such") == newest.ffi.NULL
        assert newest.error(ctx) == "invalid option: no-such"


class TestDeviceInfo:
    def test_one_device_per_gpu(self, nvc: Nvc) -> None:
        """Model, UUID, bus id, compute capability as arch, node /dev/nvidiaN (195:minor)."""
        info = nvc.lib.nvc_device_info_new(nvc.initialized(), b"")
        try:
            got = [(nvc.text(g.model), nvc.text(g.uuid), nvc.text(g.busid), nvc.text(g.arch),
                    nvc.text(g.brand), nvc.text(g.node.path), g.node.id)
                   for g in info.gpus[0:info.ngpus]]
        finally:
            nvc.lib.nvc_device_info_free(info)
        expected = [(gpu["name"], gpu["uuid"], gpu["bus_id"], gpu["compute_capability"], "Nvidia",
                     f"/dev/nvidia{gpu['minor']}", os.makedev(195, gpu["minor"]))
                    for gpu in nvc.host.topology["gpus"]]
        assert got == expected

    @pytest.mark.parametrize("version", ["1.3.3", "1.17.8"])
    def test_mig_devices(self, hosts: Callable[[str], SimHost], version: str) -> None:
        """From 1.1: MIG devices with parent, UUID, GI/CI and proc capability paths."""
        nvc = Nvc(hosts(version), version)
        info = nvc.lib.nvc_device_info_new(nvc.initialized(), b"")
        try:
            gpu = info.gpus[0]
            caps = nvc.host.driver_dir / "proc/driver/nvidia/capabilities/gpu0/mig"
            assert gpu.mig_capable
            assert nvc.text(gpu.mig_caps_path) == str(caps)
            got = [(m.parent == nvc.ffi.addressof(info.gpus[0]), nvc.text(m.uuid), m.gi, m.ci,
                    nvc.text(m.gi_caps_path), nvc.text(m.ci_caps_path))
                   for m in gpu.mig_devices.devices[0:gpu.mig_devices.ndevices]]
        finally:
            nvc.lib.nvc_device_info_free(info)
        expected = [(True, mig["uuid"], mig["gi"], mig["ci"], f"{caps}/gi{mig['gi']}",
                     f"{caps}/gi{mig['gi']}/ci{mig['ci']}")
                    for mig in nvc.host.topology["gpus"][0]["mig"]["devices"]]
        assert got == expected

    def test_caps_node_from_proc_path(self, newest: Nvc) -> None:
        """nvc_nvcaps_device_from_proc_path reads DeviceFileMinor of the access file."""
        mig = newest.host.topology["gpus"][0]["mig"]["devices"][0]
        path = (newest.host.driver_dir / "proc/driver/nvidia/capabilities/gpu0/mig"
                / f"gi{mig['gi']}/access")
        node: Any = newest.ffi.new("struct nvc_device_node *")
        assert newest.lib.nvc_nvcaps_device_from_proc_path(newest.initialized(),
                                                           str(path).encode(), node) == 0
        try:
            assert newest.text(node.path) == f"/dev/nvidia-caps/nvidia-cap{mig['gi_cap_minor']}"
            assert node.id == os.makedev(509, mig["gi_cap_minor"])
        finally:
            _libc_free(node.path)

    def test_nvcaps_style_is_dev_on_a_mig_host(self, newest: Nvc) -> None:
        """With /dev/nvidia-caps present the style is NVC_NVCAPS_STYLE_DEV (2)."""
        assert newest.lib.nvc_nvcaps_style() == 2


def _libc_free(pointer: Any) -> None:
    """Strings handed to the caller are malloc'd; the caller frees them with libc's free."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef("void free(void *);")
    libc: Any = ffi.dlopen(None)
    libc.free(pointer)


LEAK_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "nvc.h"
int main(int argc, char **argv)
{
    struct nvc_context *ctx = nvc_context_new();
    struct nvc_config *cfg = nvc_config_new();
    struct nvc_device_node node = {0};
    for (int round = 0; round < 3; ++round) {
        if (nvc_init(ctx, cfg, "bogus") == 0) return 2;          /* error path */
        if (nvc_init(ctx, cfg, "load-kmods") != 0) return 3;
        struct nvc_driver_info *drv = nvc_driver_info_new(ctx, NULL);
        struct nvc_device_info *dev = nvc_device_info_new(ctx, NULL);
        if (drv == NULL || dev == NULL || nvc_driver_info_new(ctx, "bogus") != NULL) return 4;
        struct nvc_container_config *ccfg = nvc_container_config_new(getpid(), argv[1]);
        struct nvc_container *cnt = nvc_container_new(ctx, ccfg, "standalone utility compute");
        if (cnt == NULL || nvc_container_new(ctx, ccfg, "bogus") != NULL) return 5;
        if (nvc_container_new(ctx, ccfg, "standalone supervised") != NULL) return 6;
#if NVC_HAS_NVCAPS
        if (nvc_nvcaps_device_from_proc_path(ctx, argv[2], &node) != 0) return 7;
        free(node.path);
        if (nvc_nvcaps_device_from_proc_path(ctx, "/no/such", &node) == 0) return 8;
#endif
        /* Our own pid shares our mount namespace: each mount call builds its plan, refuses,
           and must free everything on the way out. */
        if (nvc_driver_mount(ctx, cnt, drv) == 0 || nvc_ldcache_update(ctx, cnt) == 0 ||
            nvc_device_mount(ctx, cnt, &dev->gpus[0]) == 0) return 10;
#if NVC_HAS_MIG
        if (nvc_mig_config_global_caps_mount(ctx, cnt) == 0 ||
            nvc_mig_device_access_caps_mount(ctx, cnt, dev->gpus[0].mig_devices.devices) == 0)
            return 11;
#endif
        nvc_container_free(cnt);
        nvc_container_config_free(ccfg);
        nvc_device_info_free(dev);
        nvc_driver_info_free(drv);
        if (nvc_shutdown(ctx) != 0) return 9;
    }
    (void)argc;
    nvc_config_free(cfg);
    nvc_context_free(ctx);
    return 0;
}
"""


@pytest.mark.parametrize("version", ["1.0.7", "1.17.8"])
def test_free_functions_leave_no_leaks(hosts: Callable[[str], SimHost], rootfs: Path,
                                       tmp_path: Path, version: str) -> None:
    """Under LeakSanitizer, every allocation of init/info/container/error paths is freed."""
    host = hosts(version)
    (tmp_path / "sim_topology.h").write_text(
        header.render(host.topology, str(host.dir)), encoding="utf-8")
    (tmp_path / "driver.c").write_text(LEAK_DRIVER, encoding="utf-8")
    major, minor, patch = nvc_build.parse_version(version)
    exe = tmp_path / "driver"
    sources = sorted(str(path) for path in nvc_build.CSRC.glob("nvc*.c"))
    subprocess.run(["gcc", "-std=gnu11", "-g", "-O0", "-fsanitize=address", f"-DNVC_MAJOR={major}",
                    f"-DNVC_MINOR={minor}", f"-DNVC_PATCH={patch}", f"-I{tmp_path}",
                    f"-I{nvc_build.CSRC}", *sources, str(tmp_path / "driver.c"), "-o", str(exe)],
                   check=True, capture_output=True)
    mig = host.topology["gpus"][0]["mig"]["devices"][0]
    access = host.driver_dir / f"proc/driver/nvidia/capabilities/gpu0/mig/gi{mig['gi']}/access"
    result = subprocess.run([str(exe), str(rootfs), str(access)], capture_output=True, text=True,
                            env={"ASAN_OPTIONS": "detect_leaks=1", "PATH": os.defpath})
    assert (result.returncode, result.stderr) == (0, "")


def test_repeated_calls_leave_no_descriptors(newest: Nvc, rootfs: Path) -> None:
    """Init, information, container and shutdown cycles close every descriptor they open."""
    lib, path = newest.lib, newest.ffi.new("char[]", str(rootfs).encode())

    def cycle() -> None:
        ctx, cfg = lib.nvc_context_new(), lib.nvc_config_new()
        assert lib.nvc_init(ctx, cfg, b"") == 0
        lib.nvc_driver_info_free(lib.nvc_driver_info_new(ctx, b""))
        lib.nvc_device_info_free(lib.nvc_device_info_new(ctx, b""))
        ccfg = lib.nvc_container_config_new(os.getpid(), path)
        lib.nvc_container_free(lib.nvc_container_new(ctx, ccfg, b"standalone utility"))
        lib.nvc_container_config_free(ccfg)
        lib.nvc_shutdown(ctx)
        lib.nvc_config_free(cfg)
        lib.nvc_context_free(ctx)

    cycle()
    before = sorted(os.listdir("/proc/self/fd"))
    for _ in range(5):
        cycle()
    assert sorted(os.listdir("/proc/self/fd")) == before
