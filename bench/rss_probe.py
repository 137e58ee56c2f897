"""Run a command as a child and record its peak resident set: ``rss_probe.py OUTDIR CMD...``.

Put in front of the hook in the hook entry, it lets the benchmark read the hook's own
high-water mark (wait4's ru_maxrss covers the child and every image it execs), which the
runtime that starts the hook never reports. stdin, stdout and stderr pass through; the exit
status is the child's. Runs as ``python -I -S``: standard library only.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    out_dir, command = argv[0], argv[1:]
    pid = os.posix_spawn(command[0], command, os.environ)
    _, status, usage = os.wait4(pid, 0)
    path = os.path.join(out_dir, f"{pid}.rss")
    with open(path, "w", encoding="ascii") as stream:
        stream.write(f"{usage.ru_maxrss * 1024}\n")
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code  # killed by signal -code, as a shell reports it


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
