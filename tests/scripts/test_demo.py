"""scripts/demo.py: the reasons it prints, and the cgroups it removes when it is done."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_decisions_are_the_notes_of_the_containers_log_line(demo: ModuleType,
                                                            tmp_path: Path) -> None:
    """Each note of the container's `changes` field, in order; other containers' ignored."""
    log = tmp_path / "shim.log"
    changes = ("hook: prestart python -c import sys; sys.exit(0) prestart; policy: guaranteed "
               "(from annotation): oom_score_adj -800; oom: policy guaranteed "
               "value -800 clamped to 0 (no CAP_SYS_RESOURCE)")
    log.write_text(f"time=t level=info cmd=run id=other bundle=/b changes=none duration_ms=1\n"
                   f"time=t level=info cmd=run id=demo-policy bundle=/b changes="
                   f"{json.dumps(changes)} duration_ms=2.0\n")
    assert demo.decisions(log, "demo-policy") == [
        "hook: prestart python -c import sys; sys.exit(0) prestart",
        "policy: guaranteed (from annotation): oom_score_adj -800",
        "oom: policy guaranteed value -800 clamped to 0 (no CAP_SYS_RESOURCE)"]
    assert demo.decisions(log, "other") == []
    assert demo.decisions(tmp_path / "missing.log", "x") == []


def test_only_the_slices_the_demo_made_are_removed(demo: ModuleType, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices present before the demo stay; new ones go, children first (v1 and v2 layouts)."""
    monkeypatch.setattr(demo, "CGROUP_ROOT", tmp_path)
    (tmp_path / "memory" / demo.SLICE).mkdir(parents=True)
    existing = demo.slices()
    for made in (tmp_path / "cpu" / demo.SLICE / "demo-policy", tmp_path / demo.SLICE):
        made.mkdir(parents=True)
    demo.remove_cgroups(demo.slices() - existing)
    assert demo.slices() == existing == {tmp_path / "memory" / demo.SLICE}
    assert (tmp_path / "cpu").is_dir()
