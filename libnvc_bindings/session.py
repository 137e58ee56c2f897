"""One libnvidia-container context, as the hook drives it: init, queries, mounts, shutdown.

Every call site follows the same two lines: call the C function, pass its result through
``Library.check`` with the function's name as the stage. Every pointer the library hands out
is owned at once with ``ffi.gc(ptr, nvc_*_free)``, and every C string we hand it is kept alive
by the Python object that owns the struct pointing at it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from libnvc_bindings import views
from libnvc_bindings.errors import NvcError
from libnvc_bindings.library import Library


class Container:
    """A container as the library sees it (``nvc_container``); mounts take one."""

    def __init__(self, pid: int, rootfs: str, options: tuple[str, ...], ptr: Any,
                 config: Any, keep: list[Any]) -> None:
        self.pid = pid
        self.rootfs = rootfs
        self.options = options
        self.ptr = ptr
        # nvc_container_config points at our strings; both must outlive the container.
        self._config = config
        self._keep = keep


def _join(options: Sequence[str]) -> bytes:
    """The library's option syntax: names separated by single spaces."""
    return " ".join(option for option in options if option).encode()


class Session:
    """A context plus its ``nvc_config``; ``init`` before anything else, ``close`` (or the
    ``with`` block) shuts the library's helper process down."""

    def __init__(self, library: Library, *, root: str = "/", ldcache: str = "",
                 ldconfig: str = "@/sbin/ldconfig", uid: Optional[int] = None,
                 gid: Optional[int] = None) -> None:
        self.library = library
        self.ldconfig = ldconfig
        self.initialized = False
        self._ffi = library.ffi
        self._ctx: Any = None
        self._keep: list[Any] = []
        ctx = library.fn("nvc_context_new")()
        self._ctx = self._own(library.check(ctx, "nvc_context_new"), "nvc_context_free")
        # nvc_config_new(), never ffi.new(): from 1.15 the library reads fields it initialises.
        cfg = self._fn("nvc_config_new")()
        self._cfg = self._own(self._check(cfg, "nvc_config_new"), "nvc_config_free")
        self._cfg.root = self._string(root)
        if ldcache:
            self._cfg.ldcache = self._string(ldcache)
        if uid is not None:
            self._cfg.uid = uid
        if gid is not None:
            self._cfg.gid = gid

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the one error path and ownership -------------------------------------------------

    def _fn(self, name: str) -> Any:
        if self._ctx is None:
            raise NvcError(name, "session is closed")
        return self.library.fn(name)

    def _check(self, result: Any, stage: str) -> Any:
        return self.library.check(result, stage, self._ctx)

    def _own(self, ptr: Any, free: str) -> Any:
        return self._ffi.gc(ptr, self.library.fn(free))

    def _string(self, value: str, keep: Optional[list[Any]] = None) -> Any:
        cdata = self._ffi.new("char[]", value.encode())
        (self._keep if keep is None else keep).append(cdata)
        return cdata

    # -- lifecycle --------------------------------------------------------------------------

    def init(self, load_kmods: bool = False) -> None:
        """``nvc_init``; safe to call again after a failure (the retry policy does)."""
        rc = self._fn("nvc_init")(self._ctx, self._cfg, _join(["load-kmods"] if load_kmods else []))
        self._check(rc, "nvc_init")
        self.initialized = True

    def shutdown(self) -> None:
        """``nvc_shutdown`` when initialised; a second call does nothing."""
        if not self.initialized:
            return
        self.initialized = False
        rc = self._fn("nvc_shutdown")(self._ctx)
        self._check(rc, "nvc_shutdown")

    def close(self) -> None:
        """Shut down, then free the context and config now rather than at collection."""
        if self._ctx is None:
            return
        try:
            self.shutdown()
        finally:
            self._ffi.release(self._cfg)
            self._ffi.release(self._ctx)
            self._ctx = None

    # -- queries ------------------------------------------------------------------------------

    def container(self, pid: int, rootfs: str, options: Sequence[str]) -> Container:
        """``nvc_container_new`` for the process ``pid`` whose root is ``rootfs``; options such
        as ``standalone``, ``no-cgroups``, ``compute``, ``utility``."""
        keep: list[Any] = []
        rootfs_c = self._string(rootfs, keep)
        ccfg = self._fn("nvc_container_config_new")(pid, rootfs_c)
        ccfg = self._own(self._check(ccfg, "nvc_container_config_new"),
                         "nvc_container_config_free")
        if self.ldconfig:
            ccfg.ldconfig = self._string(self.ldconfig, keep)
        ptr = self._fn("nvc_container_new")(self._ctx, ccfg, _join(options))
        ptr = self._own(self._check(ptr, "nvc_container_new"), "nvc_container_free")
        return Container(pid, rootfs, tuple(options), ptr, ccfg, keep)

    def driver_info(self, options: Sequence[str] = ()) -> views.DriverInfo:
        """``nvc_driver_info_new``: the host driver's files and control devices."""
        ptr = self._fn("nvc_driver_info_new")(self._ctx, _join(options))
        info = self._own(self._check(ptr, "nvc_driver_info_new"), "nvc_driver_info_free")
        return views.driver_info(self._ffi, info)

    def device_info(self, options: Sequence[str] = ()) -> views.DeviceInfo:
        """``nvc_device_info_new``: every GPU and (from 1.1) its MIG devices."""
        ptr = self._fn("nvc_device_info_new")(self._ctx, _join(options))
        info = self._own(self._check(ptr, "nvc_device_info_new"), "nvc_device_info_free")
        return views.device_info(self._ffi, info)

    # -- mounts -------------------------------------------------------------------------------

    def driver_mount(self, container: Container, info: views.DriverInfo) -> None:
        """``nvc_driver_mount``: driver files, IPC sockets and control devices."""
        rc = self._fn("nvc_driver_mount")(self._ctx, container.ptr, _ptr(info.handle, "driver"))
        self._check(rc, "nvc_driver_mount")

    def device_mount(self, container: Container, gpu: views.Gpu) -> None:
        """``nvc_device_mount``: one GPU's device node."""
        rc = self._fn("nvc_device_mount")(self._ctx, container.ptr, _ptr(gpu.handle, gpu.uuid))
        self._check(rc, "nvc_device_mount")

    def device_mig_caps_mount(self, container: Container, gpu: views.Gpu) -> None:
        """``nvc_device_mig_caps_mount`` (1.1+): a MIG-enabled GPU's capability files."""
        fn = self._fn("nvc_device_mig_caps_mount")
        rc = fn(self._ctx, container.ptr, _ptr(gpu.handle, gpu.uuid))
        self._check(rc, "nvc_device_mig_caps_mount")

    def mig_device_access_caps_mount(self, container: Container, mig: views.MigDevice) -> None:
        """``nvc_mig_device_access_caps_mount`` (1.1+): access to one MIG device."""
        fn = self._fn("nvc_mig_device_access_caps_mount")
        rc = fn(self._ctx, container.ptr, _ptr(mig.handle, mig.uuid))
        self._check(rc, "nvc_mig_device_access_caps_mount")

    def mig_config_global_caps_mount(self, container: Container) -> None:
        """``nvc_mig_config_global_caps_mount`` (1.1+): NVIDIA_MIG_CONFIG_DEVICES=all."""
        rc = self._fn("nvc_mig_config_global_caps_mount")(self._ctx, container.ptr)
        self._check(rc, "nvc_mig_config_global_caps_mount")

    def mig_monitor_global_caps_mount(self, container: Container) -> None:
        """``nvc_mig_monitor_global_caps_mount`` (1.1+): NVIDIA_MIG_MONITOR_DEVICES=all."""
        rc = self._fn("nvc_mig_monitor_global_caps_mount")(self._ctx, container.ptr)
        self._check(rc, "nvc_mig_monitor_global_caps_mount")

    def ldcache_update(self, container: Container) -> None:
        """``nvc_ldcache_update``: run the host's ldconfig over the container's libraries."""
        rc = self._fn("nvc_ldcache_update")(self._ctx, container.ptr)
        self._check(rc, "nvc_ldcache_update")


def _ptr(handle: Optional[views.Handle], what: str) -> Any:
    if handle is None:
        raise ValueError(f"mount: {what} has no C handle (it did not come from this session)")
    return handle.ptr
