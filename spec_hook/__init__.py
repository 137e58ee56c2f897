"""The lean createContainer hook of spec mode: ld cache, ``.so`` link names and
/proc/driver/nvidia inside a rootfs the runtime has already mounted (README §The spec hook)."""
