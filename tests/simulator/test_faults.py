"""Fault specs, their files in DIR/faults, and the C side that reads and counts them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from simulator import faults
from simulator.compile import CSRC, find_compiler
from simulator.errors import SimulatorError

GOOD = [
    ("nvml-not-ready=3", ("nvml-not-ready", "3")),
    ("nvml-unknown-error=2", ("nvml-unknown-error", "2")),
    ("nvc-init-transient=2", ("nvc-init-transient", "2")),
    ("nvc-init-transient=2:driver rpc error: timed out",
     ("nvc-init-transient", "2:driver rpc error: timed out")),
    ("nvc-init-permanent=cuda error: no cuda-capable device is detected",
     ("nvc-init-permanent", "cuda error: no cuda-capable device is detected")),
    ("gpu-lost=1", ("gpu-lost", "1")),
    ("gpu-lost=1,3", ("gpu-lost", "1,3")),
    ("nvc-mount-delay=250", ("nvc-mount-delay", "250")),
]

BAD = [
    ("nvml-not-ready", "unknown fault"),
    ("gpu-melted=1", "unknown fault"),
    ("nvml-not-ready=soon", "expected nvml-not-ready=N"),
    ("nvml-unknown-error=x", "expected nvml-unknown-error=N"),
    ("nvc-init-transient=x:boom", "expected nvc-init-transient=N[:MESSAGE]"),
    ("nvc-init-permanent=", "expected nvc-init-permanent=MESSAGE"),
    ("gpu-lost=8", "no GPU 8 (the topology has 8)"),
    ("nvc-mount-delay=-5", "expected nvc-mount-delay=MS"),
]


@pytest.mark.parametrize(("spec", "parsed"), GOOD)
def test_parse_good(spec: str, parsed: tuple[str, str]) -> None:
    """A valid spec parses to its name and the value written to its file."""
    assert faults.parse(spec, gpu_count=8) == parsed


@pytest.mark.parametrize(("spec", "message"), BAD)
def test_parse_bad(spec: str, message: str) -> None:
    """A bad spec is a one-line simulate error naming the spec."""
    with pytest.raises(SimulatorError) as caught:
        faults.parse(spec, gpu_count=8)
    assert caught.value.stage == "simulate"
    assert caught.value.cause.startswith(f"fault {spec!r}: ")
    assert message in caught.value.cause


def test_unknown_fault_lists_every_fault_with_its_whole_syntax() -> None:
    """The list of known faults is complete and not cut at a colon inside a syntax."""
    with pytest.raises(SimulatorError) as caught:
        faults.parse("gpu-melted=1", gpu_count=8)
    assert caught.value.cause.endswith(
        "unknown fault (expected nvml-not-ready=N, nvml-unknown-error=N, "
        "nvc-init-transient=N[:MESSAGE], "
        "nvc-init-permanent=MESSAGE, gpu-lost=INDEX[,INDEX...], nvc-mount-delay=MS)")


def test_bad_value_names_the_syntax_and_its_meaning() -> None:
    """A value of the wrong shape shows the whole expected form and what the fault does."""
    with pytest.raises(SimulatorError) as caught:
        faults.parse("nvc-init-transient=x:boom", gpu_count=8)
    assert caught.value.cause == ("fault 'nvc-init-transient=x:boom': expected "
                                  "nvc-init-transient=N[:MESSAGE]: the first N nvc_init calls "
                                  "fail")


def test_later_spec_of_a_fault_wins() -> None:
    """Repeating a fault keeps the last value."""
    assert faults.parse_all(["gpu-lost=1", "gpu-lost=2"], 8) == [("gpu-lost", "2")]


def test_apply_replaces_faults_and_counters(tmp_path: Path) -> None:
    """apply leaves exactly the given faults, with no counters."""
    (tmp_path / "faults").mkdir()
    (tmp_path / "faults/gpu-lost").write_text("1\n")
    (tmp_path / "faults/nvml-not-ready.count").write_text("2\n")
    faults.apply(tmp_path, [("nvml-not-ready", "4")])
    assert sorted(p.name for p in (tmp_path / "faults").iterdir()) == ["nvml-not-ready"]
    assert faults.active(tmp_path) == {"nvml-not-ready": "4"}


PROBE = r"""
#define SIM_DIR "%s"
#include "sim_faults.h"
int main(int argc, char **argv)
{
    char value[64] = "";
    int got = sim_fault_get(argv[1], value, sizeof value);
    printf("%%d %%s %%d\n", got, value, argc > 2 ? sim_fault_fire(argv[1]) : -1);
    return 0;
}
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A C program using sim_faults.h on a fault directory: (program, DIR)."""
    root = tmp_path_factory.mktemp("probe")
    (root / "faults").mkdir()
    (root / "probe.c").write_text(PROBE % root)
    subprocess.run([find_compiler(), f"-I{CSRC}", "-Wall", "-Werror", "-o", str(root / "probe"),
                    str(root / "probe.c")], check=True)
    return root / "probe", root


def run_probe(program: Path, *args: str) -> str:
    return subprocess.run([str(program), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_c_reads_a_fault_value(probe: tuple[Path, Path]) -> None:
    """sim_fault_get returns 1 and the value without its newline."""
    program, root = probe
    faults.apply(root, [("nvc-init-permanent", "cuda error: x")])
    assert run_probe(program, "nvc-init-permanent") == "1 cuda error: x -1"


def test_c_absent_fault(probe: tuple[Path, Path]) -> None:
    """An absent fault reads as 0 and never fires."""
    program, root = probe
    faults.apply(root, [])
    assert run_probe(program, "gpu-lost", "fire") == "0  0"


def test_c_counted_fault_fires_n_times_across_processes(probe: tuple[Path, Path]) -> None:
    """nvc-init-transient=2:m fires in the first two processes only, counting every use."""
    program, root = probe
    faults.apply(root, [("nvc-init-transient", "2:m")])
    fired = [run_probe(program, "nvc-init-transient", "fire").split()[-1] for _ in range(4)]
    assert fired == ["1", "1", "0", "0"]
    assert (root / "faults/nvc-init-transient.count").read_text() == "4\n"
