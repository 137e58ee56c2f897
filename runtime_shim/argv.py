"""Pure parsing of runc's command line: which command, which bundle, which container — exactly
as runc 1.1 reads it, or nothing when runc would refuse the argv.

runc parses with urfave/cli v1 over Go's ``flag`` package, and those rules are the contract:

- a flag is ``-name`` or ``--name`` (``-b``, ``--b``, ``-bundle``, ``--bundle`` alike); a value
  flag takes ``=value`` or, without ``=``, the next word whatever it is (``--root --x`` sets the
  root to ``--x``); a boolean flag never takes the next word but accepts ``=true``/``=false``
  (Go's ParseBool spellings); the last of a repeated flag wins; an unknown flag, ``---x`` or
  ``--=x`` is an error and runc runs nothing;
- global flags stop at the first word that is not a flag (the command) or after ``--``;
- a command's arguments are first reordered, and runc builds differ here: upstream runc 1.1
  vendors urfave/cli 1.22.1 (every word starting with ``-`` moves to the front, with the word
  after one without ``=`` unless it starts with ``-``, even after a boolean, where Go's parser
  then stops: ``create --no-pivot id --bundle /b`` leaves the bundle unset and three arguments),
  distributions build it with 1.22.9 (only known flags move, with the next word unless that is
  a known flag; ``--`` moves ahead of the words left behind). Where the two readings differ the
  shim refuses the argv itself (``ambiguous``), so it never prepares one bundle while runc runs
  another; engines never write such an argv;
- one flag under both its names (``-b x --bundle y``) is an error;
- ``create``, ``run`` and ``delete`` need exactly one argument left, the container id;
  ``-h``/``--help`` (and ``-v``/``--version`` globally) show text and run nothing.

Only ``create`` and ``run`` are rewritten and only ``delete`` releases leases, so where runc
would run nothing the invocation names no command and the shim passes the argv through.
"""

import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Optional

VALUE, BOOL, INT = "value", "bool", "int"

GLOBAL_FLAGS: Mapping[str, str] = {
    "debug": BOOL, "log": VALUE, "log-format": VALUE, "root": VALUE, "criu": VALUE,
    "systemd-cgroup": BOOL, "rootless": VALUE, "help": BOOL, "h": BOOL, "version": BOOL,
    "v": BOOL,
}
"""runc 1.1's global flags (main.go), with urfave's help and version flags."""

COMMAND_FLAGS: Mapping[str, Mapping[str, str]] = {
    "create": {"bundle": VALUE, "b": VALUE, "console-socket": VALUE, "pid-file": VALUE,
               "no-pivot": BOOL, "no-new-keyring": BOOL, "preserve-fds": INT,
               "help": BOOL, "h": BOOL},
    "run": {"bundle": VALUE, "b": VALUE, "console-socket": VALUE, "detach": BOOL, "d": BOOL,
            "keep": BOOL, "pid-file": VALUE, "no-subreaper": BOOL, "no-pivot": BOOL,
            "no-new-keyring": BOOL, "preserve-fds": INT, "help": BOOL, "h": BOOL},
    "delete": {"force": BOOL, "f": BOOL, "help": BOOL, "h": BOOL},
}
"""The flags of the commands whose bundle or id the shim reads (create.go, run.go, delete.go)."""

ALIASES = (("bundle", "b"), ("detach", "d"), ("force", "f"), ("help", "h"))
"""One urfave flag with two names: given under both, runc refuses the argv."""

REWRITTEN_COMMANDS = frozenset({"create", "run"})
ID_COMMANDS = frozenset(COMMAND_FLAGS)
"""Commands whose container id the shim reads: ``delete`` releases the container's MIG leases."""

GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
# Matched through re's cache, compiled on first use: only --preserve-fds is an int flag.
GO_INT = r"[+-]?(0[xX][0-9a-fA-F_]+|0[oO]?[0-7_]*|0[bB][01_]+|[1-9][0-9_]*)"


class Refused(ValueError):
    """runc would refuse this argv and run nothing."""


class Invocation(NamedTuple):
    """What one runtime call asks for; ``args`` is the untouched argv to hand to runc.
    ``command`` is None when runc would run no command (no word, bad flags, help)."""

    args: tuple[str, ...]
    command: Optional[str] = None
    bundle: Optional[str] = None
    container_id: Optional[str] = None
    log_path: Optional[str] = None
    log_format: str = "text"
    systemd_cgroup: bool = False
    root: Optional[str] = None
    """The global ``--root`` (the runtime's state directory), when given."""
    about: str = ""
    """``help`` or ``version`` when the global flags ask runc for its help or version text (help
    wins, as urfave/cli checks it first), else ``""``."""
    ambiguous: bool = False
    """runc builds read this argv differently (urfave/cli 1.22.1 and 1.22.9 reorder a command's
    words differently): the shim refuses it rather than prepare one bundle while runc runs
    another."""

    @property
    def rewrites(self) -> bool:
        """True for the commands whose config.json goes through the pipeline."""
        return self.command in REWRITTEN_COMMANDS and not self.ambiguous


def go_flags(tokens: Sequence[str], table: Mapping[str, str]) -> tuple[dict[str, str], int]:
    """Go's FlagSet.Parse over ``tokens``: the flags set (last one wins; booleans as "true" or
    "false") and the index of the first argument left; raise Refused where Go errors."""
    values: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if len(token) < 2 or token[0] != "-":
            break
        i += 1
        if token == "--":
            break
        name = token[2:] if token[1] == "-" else token[1:]
        if not name or name[0] in "-=":
            raise Refused(f"bad flag syntax: {token}")
        name, equals, value = name.partition("=")
        kind = table.get(name)
        if kind is None:
            raise Refused(f"flag provided but not defined: -{name}")
        if kind == BOOL:
            if not equals:
                value = "true"
            elif value in GO_TRUE or value in GO_FALSE:
                value = "true" if value in GO_TRUE else "false"
            else:
                raise Refused(f"invalid boolean value {value!r} for -{name}")
        elif not equals:
            if i >= len(tokens):
                raise Refused(f"flag needs an argument: -{name}")
            value = tokens[i]
            i += 1
        if kind == INT and not re.fullmatch(GO_INT, value):
            raise Refused(f"invalid value {value!r} for -{name}")
        values[name] = value
    return values, i


def reorder_v1_22_1(tokens: Sequence[str], table: Mapping[str, str]) -> list[str]:
    """urfave/cli 1.22.1 (vendored by upstream runc 1.1): words starting with ``-`` first, each
    with the word after one without ``=`` unless that starts with ``-``; ``--`` and all after
    it stay behind."""
    flags: list[str] = []
    rest: list[str] = []
    wants_value = False
    for i, token in enumerate(tokens):
        if token == "--":
            rest.extend(tokens[i:])
            break
        if wants_value and not token.startswith("-"):
            wants_value = False
            flags.append(token)
            continue
        wants_value = False
        if token != "-" and token.startswith("-"):
            flags.append(token)
            wants_value = "=" not in token
        else:
            rest.append(token)
    return flags + rest


def is_command_flag(token: str, table: Mapping[str, str]) -> bool:
    """urfave/cli 1.22.9 argIsFlag: ``-name``/``--name`` (``=value`` allowed) of a known flag."""
    if token in ("-", "--") or not token.startswith("-"):
        return False
    if token.startswith("--"):
        token = token.replace("-", "", 2)
    if token.startswith("-"):
        token = token.replace("-", "", 1)
    return token.split("=")[0] in table


def reorder_v1_22_9(tokens: Sequence[str], table: Mapping[str, str]) -> list[str]:
    """urfave/cli 1.22.9 (Debian's runc 1.1 builds with it): known flags first, each with the
    next word unless that is a known flag (``--`` included); at ``--``, it and every word left
    behind so far go after the flags, then the words after it."""
    flags: list[str] = []
    rest: list[str] = []
    wants_value = False
    for i, token in enumerate(tokens):
        if wants_value and not is_command_flag(token, table):
            wants_value = False
            flags.append(token)
        elif token == "--":
            rest = ["--", *rest, *tokens[i + 1:]]
            break
        elif is_command_flag(token, table):
            flags.append(token)
            wants_value = "=" not in token
        else:
            rest.append(token)
    return flags + rest


Operands = Optional[tuple[Optional[str], str]]
"""(bundle, id) of a command runc runs; None where it refuses the argv."""


def command_operands(command: str, words: Sequence[str], ordered: Sequence[str]) -> Operands:
    """Go's parse of a command's reordered words: its bundle and id, or None (refused)."""
    table = COMMAND_FLAGS[command]
    try:
        flags, left = go_flags(ordered, table)
    except Refused:
        return None
    operands = ordered[left:]
    if len(operands) != 1 or flags.get("help") == "true" or flags.get("h") == "true":
        return None  # runc: "requires exactly 1 argument(s)", or only the help text
    if any(long in flags and short in flags for long, short in ALIASES):
        return None  # urfave: "Cannot use two forms of the same flag"
    bundle = flags.get("bundle", flags.get("b")) if command != "delete" else None
    return bundle, operands[0]


def parse(args: Sequence[str]) -> Invocation:
    """Parse runc's argv (without argv[0]); never raises: where runc would refuse the argv,
    the invocation names no command and runc itself reports the usage error; where runc builds
    differ (``ambiguous``), the shim refuses it itself."""
    tokens = tuple(args)
    try:
        globals_, at = go_flags(tokens, GLOBAL_FLAGS)
    except Refused:
        return Invocation(args=tokens)
    base = Invocation(
        args=tokens, log_path=globals_.get("log") or None,
        log_format=globals_.get("log-format", "text") or "text",
        systemd_cgroup=globals_.get("systemd-cgroup") == "true",
        root=globals_.get("root") or None,
        about=("help" if "true" in (globals_.get("help"), globals_.get("h")) else
               "version" if "true" in (globals_.get("version"), globals_.get("v")) else ""),
    )
    if at >= len(tokens) or base.about:
        return base
    command = tokens[at]
    if command not in COMMAND_FLAGS:
        return base._replace(command=command)
    words = tokens[at + 1:]
    table = COMMAND_FLAGS[command]
    read = {command_operands(command, words, reorder(words, table))
            for reorder in (reorder_v1_22_1, reorder_v1_22_9)}
    if len(read) != 1:
        return base._replace(command=command, ambiguous=True)
    (operands,) = read
    if operands is None:
        return base
    bundle, container_id = operands
    return base._replace(command=command, bundle=bundle, container_id=container_id)
