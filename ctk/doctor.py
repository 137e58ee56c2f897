"""``gpu-ctk doctor``: is this host ready to give containers their GPUs? Each problem comes with
what is wrong, why it matters and the command that fixes it (``ctk.doctor_checks``).

Exit status 0 when healthy (warnings allowed), 1 when any check fails. ``--json`` prints one
list of ``{check, status, what, why, fix}`` objects. Read-only, except
``--create-dev-char-links``, which first adds the ``/dev/char/<major>:<minor>`` links systemd
needs for the NVIDIA nodes (as udev does for other devices).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap

from ctk.doctor_checks import FAIL, WARN, Finding, run_checks
from ctk.host_facts import Host, Paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="a JSON list of findings")
    parser.add_argument("--docker-config", metavar="FILE", default=Paths.docker_config,
                        help=f"Docker's daemon.json (default: {Paths.docker_config})")
    parser.add_argument("--containerd-config", metavar="FILE", default=Paths.containerd_config,
                        help=f"containerd's config.toml (default: {Paths.containerd_config})")
    parser.add_argument("--create-dev-char-links", action="store_true",
                        help="first create the missing /dev/char links of the NVIDIA nodes")


def create_dev_char_links(host: Host) -> list[str]:
    """Add ``<dev_root>/char/<major>:<minor> -> ../<node>`` for each NVIDIA node lacking it;
    an existing entry is left alone. Returns the links made."""
    dev_root = host.config.host.dev_root
    char = os.path.join(dev_root, "char")
    os.makedirs(char, mode=0o755, exist_ok=True)
    made = []
    for node in host.nodes:
        link = os.path.join(char, f"{node.major}:{node.minor}")
        if os.path.lexists(link):
            continue
        os.symlink(os.path.join("..", node.name), link)
        made.append(f"{link} -> ../{node.name}")
    return made


def render(findings: list[Finding]) -> str:
    """A line per finding; warn and fail findings add their why and fix, indented."""
    failed = sum(f.status == FAIL for f in findings)
    warned = sum(f.status == WARN for f in findings)
    verdict = "unhealthy" if failed else "healthy"
    lines = [f"gpu-ctk doctor: {verdict} ({failed} failed, {warned} warnings, "
             f"{len(findings)} findings)"]
    for finding in findings:
        lines.append(f"{finding.status:<5} {finding.check:<20} {finding.what}")
        for label, text in (("why", finding.why), ("fix", finding.fix)):
            if text and finding.status != "ok":
                lines += textwrap.wrap(f"{label}: {text}", width=100, initial_indent=" " * 6,
                                       subsequent_indent=" " * 11)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    host = Host(Paths(docker_config=args.docker_config,
                      containerd_config=args.containerd_config))
    if args.create_dev_char_links:
        for line in create_dev_char_links(host):
            print(f"created {line}", file=sys.stderr)
    findings = run_checks(host)
    if args.json:
        print(json.dumps([f.to_json() for f in findings], indent=1))
    else:
        print(render(findings))
    return 1 if any(f.status == FAIL for f in findings) else 0
