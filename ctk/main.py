"""``gpu-ctk``: the admin command. Each subcommand is a module named in ``SUBCOMMANDS``; only the
chosen one is imported, so adding a subcommand is one table row plus its module, which exposes
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn, Optional

from gpu_core import about
from gpu_core.errors import ShimError, one_line

PROG = "gpu-ctk"

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("ctk.simulate", "build a simulated GPU host (libraries, devices, driver tree); "
                                 "'simulate run --host DIR -- CMD' runs CMD inside one"),
    "leases": ("ctk.leases", "list or reclaim the node's MIG leases (holder, device, age)"),
    "runtime": ("ctk.runtime", "configure docker, containerd, CRI-O or podman to use the shim"),
    "plan": ("ctk.plan", "show what the shim and the hook would do to a bundle, touching nothing"),
    "doctor": ("ctk.doctor", "check this host's GPU container setup; each problem with its fix"),
    "cdi": ("ctk.cdi", "generate a CDI spec of this host's GPUs and MIG devices"),
    "metrics": ("ctk.metrics", "write Prometheus metrics from the log (node_exporter textfile)"),
    "stats": ("ctk.stats", "recent starts: time per phase, slowest, retries, failures"),
}
"""Subcommand name -> (module, one-line help)."""

NESTED: dict[tuple[str, str], str] = {
    ("simulate", "run"): "ctk.simulate_run",
}
"""(subcommand, verb) -> module of a second-level command with its own arguments; the module
also exposes ``SUMMARY``."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other error of ours."""

    def error(self, message: str) -> NoReturn:
        print(f"{PROG}: usage: {one_line(message)} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def parser_for(chosen: Optional[str]) -> argparse.ArgumentParser:
    """The full parser; only ``chosen``'s module is imported to add its arguments."""
    parser = _Parser(prog=PROG, description="Admin tool of gpu-container-shim.")
    parser.add_argument("--version", action="version", version=about.version_line(PROG))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=_Parser)
    for name, (module, summary) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        if name == chosen:
            importlib.import_module(module).add_arguments(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        status = dispatch(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # a pipe is block-buffered: a closed reader shows here, not later
    except BrokenPipeError:
        return closed_output()
    return status


def dispatch(args: list[str]) -> int:
    if len(args) >= 2 and (args[0], args[1]) in NESTED:
        module = importlib.import_module(NESTED[(args[0], args[1])])
        sub = _Parser(prog=f"{PROG} {args[0]} {args[1]}", description=module.SUMMARY)
        module.add_arguments(sub)
        namespace = sub.parse_args(args[2:])
    else:
        chosen = args[0] if args and args[0] in SUBCOMMANDS else None
        namespace = parser_for(chosen).parse_args(args)
        module = importlib.import_module(SUBCOMMANDS[namespace.command][0])
    try:
        status: int = module.run(namespace)
    except ShimError as error:
        print(f"{PROG}: {one_line(str(error))}", file=sys.stderr)
        return 1
    return status


def closed_output() -> int:
    """The reader of our output went away (``gpu-ctk doctor | head -1``): a quiet exit, as for
    any command in a pipeline. What is still buffered goes to /dev/null, so the interpreter's
    own flush at exit raises nothing either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


if __name__ == "__main__":
    sys.exit(main())
