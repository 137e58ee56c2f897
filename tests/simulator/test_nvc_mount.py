"""Mounts and the ld cache of the simulated libnvidia-container, in a container made here: a
process in its own mount namespace over an overlay rootfs (image = lowerdir, like the engines'
rootfs), so the library works the way it does under runc and the image stays checkable."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

from simulator import nvc_build
from simulator.testing import SimHost, build_host

CONTAINER_OPTS = b"standalone no-cgroups utility compute"
LIBS = "usr/lib/x86_64-linux-gnu"


@dataclass
class Container:
    """A sleeping process in a private mount namespace whose rootfs is an overlay."""

    image: Path
    upper: Path
    rootfs: Path
    process: Optional[subprocess.Popen[bytes]] = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def inside(self, path: str) -> Path:
        """A path of the container's rootfs as its mount namespace sees it."""
        return Path(f"/proc/{self.pid}/root") / str(self.rootfs).lstrip("/") / path.lstrip("/")

    def mounts(self) -> list[str]:
        """Mount points (and options) of the container's namespace under its rootfs."""
        lines = Path(f"/proc/{self.pid}/mountinfo").read_text(encoding="utf-8").splitlines()
        return [f"{line.split()[4]} {line.split()[5]}" for line in lines
                if line.split()[4].startswith(str(self.rootfs) + "/")]


def snapshot(top: Path) -> dict[str, tuple[int, str]]:
    """Every entry below top with its mode and content (or link target)."""
    entries = {}
    for path in sorted(top.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            body = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            body = path.read_bytes().hex()
        else:
            body = ""
        entries[str(path.relative_to(top))] = (info.st_mode, body)
    return entries


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> SimHost:
    return build_host("dgx-a100-mig", tmp_path_factory.mktemp("mount-host"))


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A small Debian-looking image: busybox, /etc/debian_version, /etc/ld.so.conf."""
    root = tmp_path / "image"
    for directory in ("bin", "etc", "usr/lib", "sbin", "dev", "proc"):
        (root / directory).mkdir(parents=True)
    (root / "etc" / "debian_version").write_text("12.0\n", encoding="utf-8")
    (root / "etc" / "ld.so.conf").write_text("", encoding="utf-8")
    return root


@pytest.fixture
def container(image: Path, tmp_path: Path) -> Iterator[Container]:
    """The image under an overlay, with a process in its own mount namespace holding it."""
    upper, work, rootfs = tmp_path / "upper", tmp_path / "work", tmp_path / "rootfs"
    for directory in (upper, work, rootfs):
        directory.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={image},upperdir={upper},workdir={work}", str(rootfs)], check=True)
    box = Container(image=image, upper=upper, rootfs=rootfs)
    try:
        box.process = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                        "sleep", "120"])
        mine = os.readlink("/proc/self/ns/mnt")
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{box.pid}/ns/mnt") == mine:
            assert time.monotonic() < deadline, "unshare did not make a mount namespace"
            time.sleep(0.01)
        yield box
    finally:
        if box.process is not None:
            box.process.kill()
            box.process.wait()
        subprocess.run(["umount", str(rootfs)], check=True)


class Library:
    """One build of the library, with the calls the hook makes, failing loudly."""

    def __init__(self, host: SimHost, library: Path, version: str) -> None:
        self.host = host
        self.ffi, self.lib = nvc_build.open_library(library, version)
        self.ctx = self.ffi.gc(self.lib.nvc_context_new(), self.lib.nvc_context_free)
        assert self.lib.nvc_init(self.ctx, self.ffi.NULL, b"") == 0, self.error()
        self.driver = self.ffi.gc(self.lib.nvc_driver_info_new(self.ctx, b""),
                                  self.lib.nvc_driver_info_free)
        self.devices = self.ffi.gc(self.lib.nvc_device_info_new(self.ctx, b""),
                                   self.lib.nvc_device_info_free)
        self.keep: list[Any] = []

    def error(self) -> str:
        message = self.ffi.string(self.lib.nvc_error(self.ctx))
        assert isinstance(message, bytes)
        return message.decode()

    def container(self, box: Container, opts: bytes = CONTAINER_OPTS,
                  ldconfig: Optional[str] = None, pid: Optional[int] = None) -> Any:
        rootfs = self.ffi.new("char[]", str(box.rootfs).encode())
        cfg = self.ffi.gc(self.lib.nvc_container_config_new(pid or box.pid, rootfs),
                          self.lib.nvc_container_config_free)
        self.keep += [rootfs, cfg]
        if ldconfig is not None:
            path = self.ffi.new("char[]", ldconfig.encode())
            cfg.ldconfig = path
            self.keep.append(path)
        cnt = self.lib.nvc_container_new(self.ctx, cfg, opts)
        assert cnt != self.ffi.NULL, self.error()
        return self.ffi.gc(cnt, self.lib.nvc_container_free)

    def check(self, rc: int) -> None:
        assert rc == 0, self.error()


@pytest.fixture
def library(host: SimHost) -> Iterator[Library]:
    yield Library(host, host.nvc_library, nvc_build.DEFAULT_VERSION)
    host.set_faults()


def char_device(path: Path) -> tuple[int, int]:
    info = path.stat()
    assert stat.S_ISCHR(info.st_mode), path
    return os.major(info.st_rdev), os.minor(info.st_rdev)


class TestDriverMount:
    def test_libraries_and_binaries_are_bound_read_only(self, library: Library,
                                                        container: Container) -> None:
        """libcuda and nvidia-smi appear at their usual paths, read-only, with libcuda.so."""
        library.check(library.lib.nvc_driver_mount(library.ctx, library.container(container),
                                                   library.driver))
        version = library.host.topology["driver_version"]
        lib = container.inside(f"{LIBS}/libcuda.so.{version}")
        assert lib.read_bytes() == (library.host.driver_dir / LIBS /
                                    f"libcuda.so.{version}").read_bytes()
        assert os.readlink(container.inside(f"{LIBS}/libcuda.so")) == "libcuda.so.1"
        assert container.inside("usr/bin/nvidia-smi").is_file()
        assert f"{container.rootfs}/{LIBS}/libcuda.so.{version} ro," in \
            " ".join(container.mounts()) + " "
        with pytest.raises(OSError):
            lib.open("ab").close()

    def test_capabilities_select_the_files(self, library: Library,
                                           container: Container) -> None:
        """utility alone brings NVML and nvidia-smi but no libcuda and no UVM device."""
        cnt = library.container(container, b"standalone no-cgroups utility")
        library.check(library.lib.nvc_driver_mount(library.ctx, cnt, library.driver))
        version = library.host.topology["driver_version"]
        assert container.inside(f"{LIBS}/libnvidia-ml.so.{version}").is_file()
        assert not container.inside(f"{LIBS}/libcuda.so.{version}").exists()
        assert container.inside("usr/bin/nvidia-smi").is_file()
        assert container.inside("dev/nvidiactl").exists()
        assert not container.inside("dev/nvidia-uvm").exists()

    def test_control_devices_are_bound(self, library: Library, container: Container) -> None:
        """nvidiactl and the UVM nodes for compute; no modeset without display."""
        library.check(library.lib.nvc_driver_mount(library.ctx, library.container(container),
                                                   library.driver))
        assert char_device(container.inside("dev/nvidiactl")) == (195, 255)
        assert char_device(container.inside("dev/nvidia-uvm")) == (510, 0)
        assert char_device(container.inside("dev/nvidia-uvm-tools")) == (510, 1)
        assert not container.inside("dev/nvidia-modeset").exists()

    def test_no_devbind_binds_no_device(self, library: Library, container: Container) -> None:
        """no-devbind leaves /dev alone."""
        cnt = library.container(container, CONTAINER_OPTS + b" no-devbind")
        library.check(library.lib.nvc_driver_mount(library.ctx, cnt, library.driver))
        assert not container.inside("dev/nvidiactl").exists()

    def test_a_second_mount_succeeds(self, library: Library, container: Container) -> None:
        """A retried driver mount (the hook retries) does not fail on what the first made."""
        cnt = library.container(container)
        library.check(library.lib.nvc_driver_mount(library.ctx, cnt, library.driver))
        library.check(library.lib.nvc_driver_mount(library.ctx, cnt, library.driver))

    def test_mount_delay_fault(self, library: Library, container: Container) -> None:
        """nvc-mount-delay=MS makes the driver mount take at least MS."""
        cnt = library.container(container)
        library.host.set_faults("nvc-mount-delay=300")
        started = time.monotonic()
        library.check(library.lib.nvc_driver_mount(library.ctx, cnt, library.driver))
        assert time.monotonic() - started >= 0.3

    def test_old_release_mounts_too(self, host: SimHost, container: Container,
                                    tmp_path: Path) -> None:
        """The 1.0 ABI (no MIG fields) drives the same mounts."""
        old = build_host("dgx-a100-mig", tmp_path / "old", nvc_version="1.0.7")
        library = Library(old, old.nvc_library, "1.0.7")
        cnt = library.container(container)
        library.check(library.lib.nvc_driver_mount(library.ctx, cnt, library.driver))
        library.check(library.lib.nvc_device_mount(library.ctx, cnt,
                                                   library.ffi.addressof(library.devices.gpus[1])))
        assert char_device(container.inside("dev/nvidia1")) == (195, 1)

    def test_a_container_in_the_callers_namespace_is_refused(self, library: Library,
                                                             container: Container) -> None:
        """Mounting for a process that shares our mount namespace would mount on the host."""
        cnt = library.container(container, pid=os.getpid())
        assert library.lib.nvc_driver_mount(library.ctx, cnt, library.driver) == -1
        assert library.error() == (f"container process {os.getpid()} shares the caller's mount "
                                   f"namespace; refusing to mount into it")


class TestDeviceMount:
    def test_gpu_node_and_procfs_entry(self, library: Library, container: Container) -> None:
        """/dev/nvidiaN of the GPU and its /proc/driver/nvidia/gpus entry."""
        gpu = library.ffi.addressof(library.devices.gpus[0])
        library.check(library.lib.nvc_device_mount(library.ctx, library.container(container),
                                                   gpu))
        assert char_device(container.inside("dev/nvidia0")) == (195, 0)
        assert container.inside("proc/driver/nvidia/gpus/0000:07:00.0/information").is_file()

    def test_mig_access_capabilities(self, library: Library, container: Container) -> None:
        """The GI and CI access files and the nvidia-caps nodes they name."""
        mig = library.host.topology["gpus"][0]["mig"]["devices"][0]
        device = library.ffi.addressof(library.devices.gpus[0].mig_devices.devices[0])
        library.check(library.lib.nvc_mig_device_access_caps_mount(
            library.ctx, library.container(container), device))
        caps = f"proc/driver/nvidia/capabilities/gpu0/mig/gi{mig['gi']}"
        access = container.inside(f"{caps}/access").read_text(encoding="utf-8")
        assert f"DeviceFileMinor: {mig['gi_cap_minor']}" in access
        assert container.inside(f"{caps}/ci{mig['ci']}/access").is_file()
        for minor in (mig["gi_cap_minor"], mig["ci_cap_minor"]):
            assert char_device(container.inside(f"dev/nvidia-caps/nvidia-cap{minor}")) == \
                (509, minor)

    @pytest.mark.parametrize(("call", "name"), [("nvc_mig_config_global_caps_mount", "config"),
                                                ("nvc_mig_monitor_global_caps_mount", "monitor")])
    def test_global_capabilities(self, library: Library, container: Container, call: str,
                                 name: str) -> None:
        """The whole capabilities tree and /dev/nvidia-caps, like the real library."""
        library.check(getattr(library.lib, call)(library.ctx, library.container(container)))
        proc = container.inside(f"proc/driver/nvidia/capabilities/mig/{name}")
        minor = int(proc.read_text(encoding="utf-8").split()[1])
        assert char_device(container.inside(f"dev/nvidia-caps/nvidia-cap{minor}")) == \
            (509, minor)


    def test_imex_channel(self, library: Library, container: Container) -> None:
        """From 1.15, an IMEX channel node of the host is bound at the same path."""
        channels = library.host.dev_dir / "nvidia-caps-imex-channels"
        channels.mkdir(exist_ok=True)
        if not (channels / "channel3").exists():
            os.mknod(channels / "channel3", 0o666 | stat.S_IFCHR, os.makedev(508, 3))
        channel = library.ffi.new("struct nvc_imex_channel *", {"id": 3})
        library.check(library.lib.nvc_imex_channel_mount(library.ctx,
                                                         library.container(container), channel))
        assert char_device(container.inside("dev/nvidia-caps-imex-channels/channel3")) == (508, 3)


class TestLdcache:
    def test_cache_lists_the_mounted_libraries(self, library: Library,
                                               container: Container) -> None:
        """After the host ldconfig ran, ld.so.cache names libcuda.so.1 and the link exists."""
        cnt = library.container(container)
        library.check(library.lib.nvc_driver_mount(library.ctx, cnt, library.driver))
        library.check(library.lib.nvc_ldcache_update(library.ctx, cnt))
        assert b"libcuda.so.1" in container.inside("etc/ld.so.cache").read_bytes()
        assert container.inside(f"{LIBS}/libcuda.so.1").is_symlink()

    @pytest.mark.parametrize("ldconfig", ["@/sbin/ldconfig", "/sbin/ldconfig"])
    def test_ldconfig_of_the_image_is_never_run(self, library: Library, container: Container,
                                                image: Path, ldconfig: str) -> None:
        """A /sbin/ldconfig in the image does not run, with or without the host marker."""
        fake = image / "sbin" / "ldconfig"
        fake.write_text("#!/bin/sh\necho pwned > /pwned\n", encoding="utf-8")
        fake.chmod(0o755)
        cnt = library.container(container, ldconfig=ldconfig)
        library.check(library.lib.nvc_ldcache_update(library.ctx, cnt))
        assert not container.inside("pwned").exists()

    def test_dynamic_ldconfig_is_refused(self, library: Library, container: Container) -> None:
        """An ldconfig that would load the image's ld.so is not executed."""
        cnt = library.container(container, ldconfig="@/bin/true")
        assert library.lib.nvc_ldcache_update(library.ctx, cnt) == -1
        assert library.error() == "ldconfig is not a static executable: /bin/true"

    def test_ldconfig_gets_no_environment_and_no_descriptors(
            self, library: Library, container: Container, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> None:
        """The ldconfig process runs chrooted with an empty environment and only fds 0-2."""
        probe = tmp_path / "probe"
        (tmp_path / "probe.c").write_text(PROBE, encoding="utf-8")
        subprocess.run(["gcc", "-static", "-O2", str(tmp_path / "probe.c"), "-o", str(probe)],
                       check=True, capture_output=True)
        monkeypatch.setenv("LD_PRELOAD", "/tmp/evil.so")
        leaked = os.open("/dev/null", os.O_RDONLY)
        os.set_inheritable(leaked, True)
        try:
            cnt = library.container(container, ldconfig=f"@{probe}")
            library.check(library.lib.nvc_ldcache_update(library.ctx, cnt))
        finally:
            os.close(leaked)
        report = container.inside("probe.txt").read_text(encoding="utf-8").split()
        assert report == ["env=0", "fds=0,1,2", "debian=yes"]


COMPAT = "usr/local/cuda/compat"


def first_libcuda(container: Container) -> str:
    """Where the container's ld cache sends ``libcuda.so.1`` (its first entry for the name:
    the one the dynamic loader takes)."""
    listing = subprocess.run(["/sbin/ldconfig", "-p", "-C",
                              str(container.inside("etc/ld.so.cache"))],
                             capture_output=True, text=True, check=True).stdout
    return next(line.split(" => ")[1] for line in listing.splitlines()
                if line.strip().startswith("libcuda.so.1 "))


def compat_library(library: Library, image: Path, major_offset: int, symlink: bool = False
                   ) -> str:
    """Put a libcuda.so.<driver major + major_offset>.54.15 (the driver's own stand-in, whose
    SONAME is libcuda.so.1) into the image's /usr/local/cuda/compat; its name."""
    version = library.host.topology["driver_version"]
    name = f"libcuda.so.{int(version.split('.')[0]) + major_offset}.54.15"
    compat = image / COMPAT
    compat.mkdir(parents=True)
    source = library.host.driver_dir / LIBS / f"libcuda.so.{version}"
    if symlink:
        (compat / name).symlink_to(source)
    else:
        (compat / name).write_bytes(source.read_bytes())
    return name


class TestCudaCompatLdconfig:
    """``cuda-compat-mode=ldconfig``: the image's newer compat libcuda wins the ld cache."""

    OPTS = CONTAINER_OPTS + b" cuda-compat-mode=ldconfig"

    def update(self, library: Library, container: Container, opts: bytes) -> None:
        cnt = library.container(container, opts)
        library.check(library.lib.nvc_driver_mount(library.ctx, cnt, library.driver))
        library.check(library.lib.nvc_ldcache_update(library.ctx, cnt))

    def test_newer_compat_libcuda_comes_first(self, library: Library, container: Container,
                                              image: Path) -> None:
        """A compat libcuda one major newer than the driver: the cache names it first."""
        compat_library(library, image, 1)
        self.update(library, container, self.OPTS)
        assert first_libcuda(container) == f"/{COMPAT}/libcuda.so.1"

    @pytest.mark.parametrize("offset", [0, -70])
    def test_equal_or_older_compat_libcuda_is_ignored(self, library: Library,
                                                      container: Container, image: Path,
                                                      offset: int) -> None:
        """The driver's own major or an older one: the driver's libcuda stays first."""
        compat_library(library, image, offset)
        self.update(library, container, self.OPTS)
        assert first_libcuda(container) == f"/{LIBS}/libcuda.so.1"

    def test_without_the_option_the_driver_wins(self, library: Library, container: Container,
                                                image: Path) -> None:
        """A newer compat libcuda but no cuda-compat-mode: the cache is as it always was."""
        compat_library(library, image, 1)
        self.update(library, container, CONTAINER_OPTS)
        assert first_libcuda(container) == f"/{LIBS}/libcuda.so.1"

    def test_disabled_overrides_ldconfig(self, library: Library, container: Container,
                                         image: Path) -> None:
        """cuda-compat-mode=disabled beside ldconfig turns it off."""
        compat_library(library, image, 1)
        self.update(library, container, self.OPTS + b" cuda-compat-mode=disabled")
        assert first_libcuda(container) == f"/{LIBS}/libcuda.so.1"

    def test_a_symlinked_compat_library_does_not_count(self, library: Library,
                                                       container: Container,
                                                       image: Path) -> None:
        """Only a regular file qualifies: a newer name that is a link is not looked through."""
        compat_library(library, image, 1, symlink=True)
        self.update(library, container, self.OPTS)
        assert first_libcuda(container) == f"/{LIBS}/libcuda.so.1"

    @pytest.mark.parametrize("name", ["libcuda.so.999", "libcuda.so.999.", "libcuda.so.999x.1",
                                      "libcuda.so.+999.1", "libcuda.so.99999999999999999999999.1",
                                      "libcuda.so.999.1.bak/", "libcudart.so.999.1"])
    def test_names_not_spelled_like_a_newer_libcuda_are_ignored(
            self, library: Library, container: Container, image: Path, name: str) -> None:
        """Only libcuda.so.<digits>.<digit>... counts: no minor, a sign, an overflowing major,
        a directory or another library leave the driver's libcuda first."""
        compat = image / COMPAT
        compat.mkdir(parents=True)
        version = library.host.topology["driver_version"]
        if name.endswith("/"):
            (compat / name).mkdir()
        else:
            (compat / name).write_bytes(
                (library.host.driver_dir / LIBS / f"libcuda.so.{version}").read_bytes())
        self.update(library, container, self.OPTS)
        assert first_libcuda(container) == f"/{LIBS}/libcuda.so.1"

    def test_compat_path_that_is_a_file_is_ignored(self, library: Library,
                                                   container: Container, image: Path) -> None:
        """A regular file where the compat directory should be: the cache is built as usual."""
        (image / COMPAT).parent.mkdir(parents=True)
        (image / COMPAT).write_text("not a directory\n")
        self.update(library, container, self.OPTS)
        assert first_libcuda(container) == f"/{LIBS}/libcuda.so.1"

    @pytest.mark.parametrize("style", ["absolute", "dotdot"])
    def test_compat_directory_linking_out_of_the_rootfs_is_resolved_inside(
            self, library: Library, container: Container, image: Path,
            tmp_path: Path, style: str) -> None:
        """/usr/local/cuda linking to a host directory that holds a newer libcuda (by its
        absolute path, or a ``../`` chain long enough to climb out): resolved inside the rootfs
        it leads nowhere, so the driver's libcuda stays first and the host directory is left
        as it was."""
        outside = tmp_path / "outside"
        version = library.host.topology["driver_version"]
        (outside / "compat").mkdir(parents=True)
        newer = outside / "compat" / f"libcuda.so.{int(version.split('.')[0]) + 1}.54.15"
        newer.write_bytes((library.host.driver_dir / LIBS / f"libcuda.so.{version}").read_bytes())
        (image / "usr" / "local").mkdir(parents=True)
        target = str(outside) if style == "absolute" else "../" * 24 + str(outside).lstrip("/")
        (image / "usr" / "local" / "cuda").symlink_to(target)
        before = snapshot(outside)
        self.update(library, container, self.OPTS)
        assert first_libcuda(container) == f"/{LIBS}/libcuda.so.1"
        assert snapshot(outside) == before


PROBE = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
extern char **environ;
int main(void)
{
    FILE *out = fopen("/probe.txt", "w");
    int n = 0;
    if (out == NULL)
        return 1;
    while (environ[n] != NULL)
        ++n;
    fprintf(out, "env=%d\nfds=", n);
    /* The chroot has no /proc: probe descriptors one by one instead. */
    for (int fd = 0, first = 1; fd < 64; ++fd) {
        if (fd != fileno(out) && fcntl(fd, F_GETFD) >= 0) {
            fprintf(out, first ? "%d" : ",%d", fd);
            first = 0;
        }
    }
    fprintf(out, "\ndebian=%s\n", access("/etc/debian_version", F_OK) == 0 ? "yes" : "no");
    return fclose(out) == 0 ? 0 : 1;
}
"""


def test_mount_calls_leave_no_descriptors(library: Library, container: Container) -> None:
    """Mounting and the ld cache update close everything they open in the caller."""
    cnt = library.container(container)
    before = sorted(os.listdir("/proc/self/fd"))
    library.check(library.lib.nvc_driver_mount(library.ctx, cnt, library.driver))
    library.check(library.lib.nvc_device_mount(library.ctx, cnt,
                                               library.ffi.addressof(library.devices.gpus[0])))
    library.check(library.lib.nvc_mig_config_global_caps_mount(library.ctx, cnt))
    library.check(library.lib.nvc_device_mig_caps_mount(library.ctx, cnt,
                                                        library.ffi.addressof(library.devices.gpus[0])))
    library.check(library.lib.nvc_ldcache_update(library.ctx, cnt))
    assert sorted(os.listdir("/proc/self/fd")) == before


class TestImageSafety:
    def test_the_image_is_never_written(self, library: Library, container: Container,
                                        image: Path) -> None:
        """Everything the library creates lands in the writable layer, nothing in the image."""
        before = snapshot(image)
        cnt = library.container(container)
        library.check(library.lib.nvc_driver_mount(library.ctx, cnt, library.driver))
        gpu = library.devices.gpus[0]
        library.check(library.lib.nvc_device_mount(library.ctx, cnt, library.ffi.addressof(gpu)))
        library.check(library.lib.nvc_mig_device_access_caps_mount(
            library.ctx, cnt, library.ffi.addressof(gpu.mig_devices.devices[0])))
        library.check(library.lib.nvc_ldcache_update(library.ctx, cnt))
        assert snapshot(image) == before
        assert (container.upper / "etc" / "ld.so.cache").is_file()

    def test_symlinked_library_directory_cannot_redirect_mounts(
            self, library: Library, container: Container, image: Path, tmp_path: Path) -> None:
        """An image whose library directory links to a host path gets the files under its root."""
        victim = tmp_path / "victim"
        victim.mkdir()
        (image / "usr" / "lib" / "x86_64-linux-gnu").symlink_to(str(victim))
        cnt = library.container(container)
        library.check(library.lib.nvc_driver_mount(library.ctx, cnt, library.driver))
        library.check(library.lib.nvc_ldcache_update(library.ctx, cnt))
        assert list(victim.iterdir()) == []
        version = library.host.topology["driver_version"]
        assert container.inside(f"{victim}/libcuda.so.{version}").is_file()
        assert not any(line.startswith(str(victim)) for line in
                       Path(f"/proc/{container.pid}/mountinfo").read_text().split())

    def test_symlinked_device_node_cannot_redirect_mounts(
            self, library: Library, container: Container, image: Path, tmp_path: Path) -> None:
        """A /dev/nvidiactl link to a host file fails the mount and leaves the file alone."""
        victim = tmp_path / "victim.txt"
        victim.write_text("host data", encoding="utf-8")
        (image / "dev" / "nvidiactl").symlink_to(str(victim))
        cnt = library.container(container)
        assert library.lib.nvc_driver_mount(library.ctx, cnt, library.driver) == -1
        assert library.error() == "file creation failed: /dev/nvidiactl: No such file or directory"
        assert victim.read_text(encoding="utf-8") == "host data"
        assert str(victim) not in Path(f"/proc/{container.pid}/mountinfo").read_text()

    def test_symlinked_ld_cache_is_replaced_not_followed(
            self, library: Library, container: Container, image: Path, tmp_path: Path) -> None:
        """An /etc/ld.so.cache link to a host file does not make ldconfig write that file."""
        victim = tmp_path / "cache.txt"
        victim.write_text("host data", encoding="utf-8")
        (image / "etc" / "ld.so.cache").symlink_to(str(victim))
        cnt = library.container(container)
        library.check(library.lib.nvc_ldcache_update(library.ctx, cnt))
        assert victim.read_text(encoding="utf-8") == "host data"
