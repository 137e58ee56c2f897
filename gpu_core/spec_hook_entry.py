"""What every entry of the spec hook shares, wherever it is written: its command name and its
whole environment (README §The spec hook). The shim's spec mode (runtime_shim.modifiers.
driver_mounts), its recognition of its own entries (runtime_shim.cdi_injection) and
``gpu-ctk cdi generate`` (ctk.cdi_hook) read them from here."""

NAME = "gpu-container-spec-hook"
STAGE = "createContainer"
ENV = ("PATH=/usr/sbin:/usr/bin:/sbin:/bin",)
"""Explicit, nothing of the engine's or the container's: runc gives a hook entry without
``env`` the container process's environment (LD_PRELOAD included)."""
