"""``gpu-ctk simulate run --host DIR [-- CMD...]``: run a command inside a simulated GPU host.

CMD runs in a private mount namespace where the host built in DIR appears at the real paths
(README, "The simulated GPU host"): nvidia-smi, NVML, NVIDIA's toolkit, our own commands with
no configuration file and a user's CI script run unmodified. Nothing on the real host changes.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from gpu_core.errors import ShimError

SUMMARY = "run a command inside a simulated GPU host (its devices, driver files at real paths)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", metavar="DIR", required=True, type=Path,
                        help="a directory holding a host built by gpu-ctk simulate --into DIR")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ...",
                        help="the command and its arguments (default: $SHELL or /bin/sh)")


def command_of(words: Sequence[str]) -> list[str]:
    """The command to run: the words after an optional leading ``--``, or the user's shell."""
    argv = list(words[1:] if words and words[0] == "--" else words)
    return argv or [os.environ.get("SHELL") or "/bin/sh"]


def run(args: argparse.Namespace) -> int:
    from ctk.simulate import reported

    return reported(_run, args)


def _run(args: argparse.Namespace) -> int:
    from simulator import build, enter

    sim_dir = Path(os.path.abspath(args.host))
    build.read_topology(sim_dir)  # one clear line when DIR holds no simulated host
    if os.geteuid() != 0:
        raise ShimError("simulate", "simulate run needs root (a private mount namespace)")
    enter.run(sim_dir, command_of(args.command))
