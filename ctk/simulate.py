"""``gpu-ctk simulate``: build a simulated GPU host in a directory, or change its faults."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable

from gpu_core.errors import ShimError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topology", metavar="NAME|FILE",
                        help="built-in topology (t4, dgx-a100, dgx-a100-mig) or a YAML file; "
                             "without it, only the faults of the host in --into change")
    parser.add_argument("--into", metavar="DIR", required=True, type=Path,
                        help="directory to build in (created; an existing one must hold a "
                             "simulated host)")
    parser.add_argument("--fault", metavar="SPEC", action="append", default=[],
                        help="nvml-not-ready=N, nvml-unknown-error=N, "
                             "nvc-init-transient=N[:MESSAGE], "
                             "nvc-init-permanent=MESSAGE, gpu-lost=INDEX, nvc-mount-delay=MS "
                             "(repeatable; replaces the faults set before)")
    parser.add_argument("--nvc-version", metavar="X.Y.Z",
                        help="libnvidia-container version to simulate (default: the newest)")
    parser.add_argument("--cache-dir", metavar="DIR", type=Path,
                        help="compiled-library cache (default: $GPU_CTK_SIM_CACHE or "
                             "~/.cache/gpu-container-shim/simulator)")


def run(args: argparse.Namespace) -> int:
    return reported(_run, args)


def reported(work: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``work(args)``; the simulator raises its own error, which gpu-ctk reports as any other
    (one line, exit 1). ``simulate`` and ``simulate run`` both go through here."""
    from simulator.errors import SimulatorError

    try:
        return work(args)
    except SimulatorError as error:
        raise ShimError(error.stage, error.cause) from None


def _run(args: argparse.Namespace) -> int:
    from simulator import build

    into: Path = args.into
    if args.topology is None:
        if not (into / build.MARKER).is_file():
            raise ShimError("simulate", f"{into} holds no simulated host: --topology is needed "
                                        f"to build one")
        topology = build.set_faults(into, args.fault)
    else:
        topology = build.build(args.topology, into, args.fault, args.nvc_version,
                               cache_dir=args.cache_dir)
    sim_dir = os.path.abspath(into)
    migs = sum(len(gpu["mig"]["devices"]) for gpu in topology["gpus"])
    active = ", ".join(args.fault) or "none"
    print(f"simulated host {topology['name']}: {len(topology['gpus'])} GPUs, {migs} MIG "
          f"devices, faults: {active}")
    print(f"export GPU_CONTAINER_SHIM_CONFIG={sim_dir}/config.yaml")
    return 0
