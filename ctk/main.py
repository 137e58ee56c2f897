"""``gpu-ctk``: the admin command. Each subcommand is a module named in ``SUBCOMMANDS``; only the
chosen one is imported, so adding a subcommand is one table row plus its module, which exposes
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn, Optional

from hook.errors import ShimError, one_line

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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=_Parser)
    for name, (module, summary) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        if name == chosen:
            importlib.import_module(module).add_arguments(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
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


if __name__ == "__main__":
    sys.exit(main())
