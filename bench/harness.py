"""``bench/run``: measure the shim against runc side by side and print a markdown table.

Each row runs A and B alternately in every round (A first in even rounds, B first in odd ones),
after one untimed warm-up of each, and reports the medians and the median and range of the
per-round ratios A/B. Needs root (runc). ``--quick`` runs fewer rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import stats
from cases import CASES, MEMORY, MIB, Case, MemoryCase
from workspace import REPO, Workspace, one_line

PEER_KEYS = ("peer-gpu-spec", "peer-gpu", "peer-all-spec", "peer-all", "peer-mig-spec",
             "peer-mig", "peer-wrapper-spec", "peer-wrapper", "peer-run", "peer-state",
             "peer-floor-spec", "peer-floor")
HEADER = ("case", "A", "B", "A median ms", "B median ms", "A/B median", "A/B min-max",
          "rounds", "target", "met")


def log(message: str) -> None:
    sys.stderr.write(f"bench: {message}\n")
    sys.stderr.flush()


def measure_pair(ws: Workspace, case: Case, rounds: int) -> stats.Summary:
    pair = case.prepare(ws)
    try:
        pair.a()
        pair.b()
        a: list[float] = []
        b: list[float] = []
        for i in range(rounds):
            if i % 2 == 0:
                a.append(pair.a())
                b.append(pair.b())
            else:
                b.append(pair.b())
                a.append(pair.a())
        return stats.summarise(stats.Paired(a, b))
    finally:
        pair.close()


def pair_row(case: Case, summary: stats.Summary) -> list[str]:
    if case.target is None:
        target, met = "-", "-"
    else:
        target = f"≤ {case.target:g}"
        met = "yes" if summary.ratio_median <= case.target else "**no**"
    return [case.title, case.a_label, case.b_label, stats.ms(summary.a_median),
            stats.ms(summary.b_median), f"{summary.ratio_median:.2f}",
            f"{summary.ratio_min:.2f}-{summary.ratio_max:.2f}", str(summary.rounds), target,
            met]


def memory_row(case: MemoryCase, peak: int, runs: int) -> list[str]:
    return [case.title, f"{peak / MIB:.1f} MiB", "", "", "", "", "", str(runs),
            f"≤ {case.limit // MIB} MiB", "yes" if peak <= case.limit else "**no**"]


def failed_row(title: str, error: str) -> list[str]:
    return [title, f"failed: {one_line(error, 160)}", "", "", "", "", "", "", "", "**no**"]


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as stream:
        for line in stream:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    runc = subprocess.run(["runc", "--version"], capture_output=True, text=True,
                          check=False).stdout.splitlines()
    return (f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"{runc[0] if runc else 'runc ?'}, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}")


def measure_rows(ws: Workspace, cases: Sequence[Case], args: argparse.Namespace,
                 rows: list[list[str]], raw: dict[str, object]) -> int:
    """Measure ``cases`` into ``rows`` and ``raw``; return how many failed."""
    failures = 0
    for case in cases:
        if args.only and case.key not in args.only:
            continue
        rounds = args.rounds or (case.quick_rounds if args.quick else case.rounds)
        log(f"{case.key}: {case.title} ({rounds} rounds)")
        try:
            summary = measure_pair(ws, case, rounds)
        except Exception as exc:  # a failed row is reported, the others go on
            failures += 1
            log(f"{case.key} failed: {type(exc).__name__}: {exc}")
            rows.append(failed_row(case.title, f"{type(exc).__name__}: {exc}"))
            continue
        raw[case.key] = summary.__dict__
        rows.append(pair_row(case, summary))
    return failures


def measure_peer(ws: Workspace, args: argparse.Namespace, rows: list[list[str]],
                 raw: dict[str, object]) -> int:
    """The peer rows, measured in a child process inside the simulated host's view (a private
    mount namespace, as ``gpu-ctk simulate run`` makes), so that both tools see the same host
    at the real paths; the rows come back through a pipe."""
    import peer

    ws.sim_config(peer.TOPOLOGY)  # builds the host before the child enters it
    host_dir = ws.root / "sim" / peer.TOPOLOGY
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: enter, measure, report, exit without unwinding the parent's work
        os.close(read)
        import ctypes
        import signal

        # PR_SET_PDEATHSIG (1): a parent killed mid-run takes the child with it.
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
        result: dict[str, object] = {"rows": [], "raw": {}, "failures": 1}
        try:
            from simulator import enter

            enter.enter(host_dir)
            child_rows: list[list[str]] = []
            child_raw: dict[str, object] = {}
            failures = measure_rows(ws, peer.cases(args.peer.resolve()), args, child_rows,
                                    child_raw)
            result = {"rows": child_rows, "raw": child_raw, "failures": failures}
        except Exception as exc:  # reported as one failed row
            result["rows"] = [failed_row("vs NCT", f"{type(exc).__name__}: {exc}")]
        with os.fdopen(write, "w", encoding="utf-8") as out:
            out.write(json.dumps(result))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, encoding="utf-8") as incoming:
        text = incoming.read()
    os.waitpid(pid, 0)
    reported: dict[str, Any] = json.loads(text) if text else {
        "rows": [failed_row("vs NCT", "no result")], "raw": {}, "failures": 1}
    rows.extend(reported["rows"])
    raw.update(reported["raw"])
    return int(reported["failures"])


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    keys = [c.key for c in CASES] + [m.key for m in MEMORY] + list(PEER_KEYS)
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a rough table)")
    parser.add_argument("--rounds", type=int, help="rounds for every timed row")
    parser.add_argument("--only", nargs="+", choices=keys, metavar="CASE",
                        help=f"rows to run: {', '.join(keys)}")
    parser.add_argument("--json", type=Path, help="also write the raw summaries here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--peer", type=Path, metavar="PATH",
                        help="also compare with this nvidia-container-runtime (NVIDIA Container "
                             "Toolkit, jit-cdi mode; its nvidia-cdi-hook next to it)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        log("needs root: it starts containers with runc")
        return 2
    work = Path(tempfile.mkdtemp(prefix="gpu-shim-bench."))
    ws = Workspace(work)
    rows: list[list[str]] = []
    raw: dict[str, object] = {"machine": machine()}
    failures = 0
    started = time.monotonic()
    try:
        log(f"work directory {work}")
        ws.setup()
        failures += measure_rows(ws, CASES, args, rows, raw)
        for memory in MEMORY:
            if args.only and memory.key not in args.only:
                continue
            runs = 2 if args.quick else memory.runs
            log(f"{memory.key}: {memory.title} ({runs} runs)")
            try:
                peak = max(memory.measure(ws) for _ in range(runs))
            except Exception as exc:  # as above
                failures += 1
                log(f"{memory.key} failed: {type(exc).__name__}: {exc}")
                rows.append(failed_row(memory.title, f"{type(exc).__name__}: {exc}"))
                continue
            raw[memory.key] = peak
            rows.append(memory_row(memory, peak, runs))
        if args.peer is not None:
            failures += measure_peer(ws, args, rows, raw)
    finally:
        ws.cleanup()
        if not args.keep:
            subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)
    print(f"Machine: {raw['machine']}\n")
    print(stats.markdown_table(HEADER, rows))
    log(f"done in {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
