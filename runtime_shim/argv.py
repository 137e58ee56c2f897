"""Pure parsing of runc's command line: which command, which bundle, which container.

Only ``create`` and ``run`` are rewritten, so the parser must find the command exactly as runc
would: global flags that take a value are skipped with their value, and a bundle directory that
is literally named ``create`` is a value, never the command.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

# runc's global flags that take a value (urfave/cli also accepts the --flag=value form).
GLOBAL_VALUE_FLAGS = frozenset({"--root", "--log", "--log-format", "--criu", "--rootless"})

# Options of ``create``/``run`` that take a value; the rest are booleans.
COMMAND_VALUE_FLAGS = frozenset({
    "--bundle", "-b", "--console-socket", "--pid-file", "--preserve-fds",
})

REWRITTEN_COMMANDS = frozenset({"create", "run"})
ID_COMMANDS = REWRITTEN_COMMANDS | {"delete"}
"""Commands whose container id the shim reads: ``delete`` releases the container's MIG leases."""


@dataclass(frozen=True)
class Invocation:
    """What one runtime call asks for; ``args`` is the untouched argv to hand to runc."""

    args: tuple[str, ...]
    command: Optional[str] = None
    bundle: Optional[str] = None
    container_id: Optional[str] = None
    log_path: Optional[str] = None
    log_format: str = "text"
    systemd_cgroup: bool = False
    root: Optional[str] = None
    """The global ``--root`` (the runtime's state directory), when given."""

    @property
    def rewrites(self) -> bool:
        """True for the commands whose config.json goes through the pipeline."""
        return self.command in REWRITTEN_COMMANDS


def split_flag(token: str) -> tuple[str, Optional[str]]:
    """``--log=x`` -> (``--log``, ``x``); ``--log`` -> (``--log``, None)."""
    name, sep, value = token.partition("=")
    return (name, value) if sep else (token, None)


def normalise(name: str) -> str:
    """runc (urfave/cli) accepts a single dash for long flags too: ``-root`` is ``--root``."""
    if name.startswith("-") and not name.startswith("--") and len(name) > 2:
        return "-" + name
    return name


def parse(args: Sequence[str]) -> Invocation:
    """Parse runc's argv (without argv[0]); never raises: runc itself judges bad usage."""
    tokens = tuple(args)
    globals_: dict[str, str] = {}
    systemd = False
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--" or not token.startswith("-") or token == "-":
            break
        name, value = split_flag(token)
        name = normalise(name)
        if name in GLOBAL_VALUE_FLAGS:
            if value is None:
                i += 1
                value = tokens[i] if i < len(tokens) else ""
            globals_[name] = value
        elif name == "--systemd-cgroup":
            systemd = value is None or value.lower() in ("true", "1")
        i += 1
    if i < len(tokens) and tokens[i] == "--":
        i += 1
    command = tokens[i] if i < len(tokens) else None
    base = Invocation(
        args=tokens, command=command, log_path=globals_.get("--log") or None,
        log_format=globals_.get("--log-format", "text") or "text", systemd_cgroup=systemd,
        root=globals_.get("--root") or None,
    )
    if command not in ID_COMMANDS:
        return base
    bundle, container_id = command_operands(tokens[i + 1:])
    return Invocation(
        args=base.args, command=command, bundle=bundle if command != "delete" else None,
        container_id=container_id, log_path=base.log_path, log_format=base.log_format,
        systemd_cgroup=systemd, root=base.root,
    )


def command_operands(tokens: Sequence[str]) -> tuple[Optional[str], Optional[str]]:
    """Find ``--bundle``/``-b`` and the container id among a create/run command's arguments."""
    bundle: Optional[str] = None
    container_id: Optional[str] = None
    i = 0
    only_operands = False
    while i < len(tokens):
        token = tokens[i]
        if not only_operands and token == "--":
            only_operands = True
        elif not only_operands and token.startswith("-") and token != "-":
            name, value = split_flag(token)
            name = normalise(name)
            if name in COMMAND_VALUE_FLAGS:
                if value is None:
                    i += 1
                    value = tokens[i] if i < len(tokens) else None
                if name in ("--bundle", "-b"):
                    bundle = value
        elif container_id is None:
            container_id = token
        i += 1
    return bundle, container_id
