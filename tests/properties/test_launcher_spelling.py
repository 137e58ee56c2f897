"""Property: however config.json spells ``root``, ``path`` or a trigger key (any case, the long
s, the Kelvin sign, \\u escapes, repeated keys, extra members, ``..`` in the path), the shell
launcher hands a create to runc itself only where the Python shim would do nothing but exec
runc, and its /dev guard then looked at the rootfs runc uses (runtime_shim/launcher.sh,
runtime_shim/fastpath.py, gpu_core/oci_spec.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gpu_core import config as config_mod
from gpu_core.bundle import parse_spec
from gpu_core.errors import ShimError
from runtime_shim import fastpath, launcher, pipeline, rootfs_guard
from runtime_shim.main import build_context

CONFIG = "runtimes: [runc]\nlog: {file: ''}\n"


@dataclass
class Setup:
    launcher: Path
    bundle: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """A rendered launcher with a fake Python and runc, a current create-fast entry, and a
    bundle whose ``rootfs`` has a real /dev while ``evil``'s /dev is a symlink; ``link``
    points into ``far``, whose ``rootfs`` has a symlinked /dev too (``link/../rootfs`` is
    ``far/rootfs`` for the kernel, ``rootfs`` for runc)."""
    root = tmp_path_factory.mktemp("spelling")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name, word in (("runc", "RUNTIME"), ("python", "PYTHON")):
        (bin_dir / name).write_text(f"#!/bin/sh\necho {word}\n")
        (bin_dir / name).chmod(0o755)
    path = root / "launcher"
    path.write_text(launcher.render_runtime(str(bin_dir / "python"), ["/nowhere"],
                                            str(root / "state")))
    path.chmod(0o755)
    config = root / "config.yaml"
    config.write_text(CONFIG)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "GPU_CONTAINER_SHIM_CONFIG": str(config)}
    loaded = config_mod.load(env, cache_dir=str(root / "cache"))
    assert fastpath.remember(loaded, env, state_dir=str(root / "state"),
                             cache_dir=str(root / "cache"))
    bundle = root / "bundle"
    (bundle / "rootfs" / "dev").mkdir(parents=True)
    (bundle / "evil").mkdir()
    (bundle / "evil" / "dev").symlink_to("/tmp")
    (bundle / "far" / "x").mkdir(parents=True)
    (bundle / "far" / "rootfs").mkdir()
    (bundle / "far" / "rootfs" / "dev").symlink_to("/tmp")
    (bundle / "link").symlink_to(bundle / "far" / "x")
    yield Setup(path, bundle, env)


def key(word: str) -> st.SearchStrategy[str]:
    """JSON text for an object key Go reads as ``word``: cases, \\u escapes of a letter, the
    long s for an s and the Kelvin sign for a k — or a near miss Go does not fold."""
    def spell(draw_cases: list[int], escape: Optional[int], fold: bool) -> str:
        letters = [c.upper() if i in draw_cases else c for i, c in enumerate(word)]
        if fold:
            letters = ["\u017f" if c in "sS" else "\u212a" if c in "kK" else c for c in letters]
        if escape is not None and escape < len(letters):
            letters[escape] = f"\\u{ord(letters[escape]):04x}"
        return '"' + "".join(letters) + '"'
    exact = st.just(json.dumps(word))
    spelled = st.builds(spell, st.lists(st.integers(0, len(word) - 1), max_size=len(word)),
                        st.none() | st.integers(0, len(word)), st.booleans())
    return st.one_of(exact, exact, spelled, st.just(json.dumps(word + "\u00df")))


PATHS = st.sampled_from(['"rootfs"', '"evil"', '"link/../rootfs"', '"rootfs/../evil"',
                         '"./rootfs"', "null", '"ro\\u006ftfs"', '"rootfs/"'])
MEMBER = st.one_of(
    st.tuples(key("path"), PATHS),
    st.tuples(key("readonly"), st.sampled_from(["true", "false", "null"])),
    st.tuples(st.just('"x-vendor"'), st.sampled_from(['{"path":"evil"}', '1'])),
)
ROOT = st.tuples(key("root"), st.lists(MEMBER, min_size=1, max_size=3).map(
    lambda members: "{" + ",".join(f"{k}:{v}" for k, v in members) + "}"))
PLAIN_ROOT = st.just(('"root"', '{"path":"rootfs","readonly":true}'))
EXTRA = st.one_of(
    st.tuples(key("oomScoreAdj"), st.sampled_from(["5000", "0", "-5"])),
    st.tuples(st.just('"env"'), st.sampled_from(['["NVIDIA_VISIBLE_DEVICES=0"]', '["A=1"]'])),
    st.tuples(key("capabilities"), st.just('{"bounding":["CAP_SYS_ADMIN"]}')),
)


def document(roots: list[tuple[str, str]], process_extra: list[tuple[str, str]]) -> str:
    process = ('"terminal":false,"user":{"uid":0,"gid":0},"args":["/bin/true"],'
               '"env":["PATH=/bin"],"cwd":"/"')
    process += "".join(f",{k}:{v}" for k, v in process_extra)
    rest = "".join(f",{k}:{v}" for k, v in roots)
    return ('{"ociVersion":"1.0.2","process":{' + process + '}' + rest +
            ',"hostname":"c","linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}')


def python_only_execs(text: str, bundle: Path) -> bool:
    """True when the Python shim would exec runc without a change or an error of its own (a
    config.json runc refuses, runc refuses on the fast path too)."""
    config = config_mod.parse(CONFIG, "test")
    try:
        spec = parse_spec(text.encode())
    except ShimError:
        return True
    try:
        rootfs_guard.check(spec, str(bundle))
        ctx = build_context(spec, config, bundle=str(bundle), container_id="c1",
                            systemd_cgroup=False)
        return not pipeline.run(spec, ctx).changed
    except ShimError:
        return False


@settings(max_examples=250, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(roots=st.lists(st.one_of(ROOT, PLAIN_ROOT), min_size=1, max_size=3),
       extra=st.lists(EXTRA, max_size=2))
def test_the_launcher_takes_the_fast_path_only_where_python_would_only_exec(
        setup: Setup, roots: list[tuple[str, str]], extra: list[tuple[str, str]]) -> None:
    text = document(roots, extra)
    (setup.bundle / "config.json").write_text(text, encoding="utf-8")
    done = subprocess.run([str(setup.launcher), "create", "--bundle", str(setup.bundle), "c1"],
                          capture_output=True, text=True, env=setup.env, check=True)
    if done.stdout.startswith("RUNTIME"):
        assert python_only_execs(text, setup.bundle), text


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=st.sampled_from(["oomScoreAdj", "capabilities", "process"]).flatmap(key),
       value=st.sampled_from(["5000", '{"oomScoreAdj":5000}', '{"bounding":["CAP_SYS_ADMIN"]}']))
def test_no_spelling_of_a_key_python_acts_on_slips_through(
        setup: Setup, name: str, value: str) -> None:
    """Every spelling Go folds onto ``oomScoreAdj`` (or a repeated ``process`` carrying it)
    under the plain root: where Python would clamp, the launcher hands the create over."""
    text = document([('"root"', '{"path":"rootfs"}'), (name, value)], [(name, value)])
    (setup.bundle / "config.json").write_text(text, encoding="utf-8")
    done = subprocess.run([str(setup.launcher), "create", "--bundle", str(setup.bundle), "c1"],
                          capture_output=True, text=True, env=setup.env, check=True)
    if done.stdout.startswith("RUNTIME"):
        assert python_only_execs(text, setup.bundle), text


def test_the_plain_spelling_takes_the_fast_path(setup: Setup) -> None:
    """The property is not vacuous: the spelling engines write goes straight to runc."""
    (setup.bundle / "config.json").write_text(document([('"root"', '{"path":"rootfs"}')], []))
    done = subprocess.run([str(setup.launcher), "create", "--bundle", str(setup.bundle), "c1"],
                          capture_output=True, text=True, env=setup.env, check=True)
    assert done.stdout == "RUNTIME\n"


@pytest.mark.parametrize("root", [
    '"root":{"path":"evil"}', '"root":{"path":"rootfs"},"Root":{"path":"evil"}',
    '"root":{"path":"rootfs","PATH":"evil"}', '"root":{"path":"link/../rootfs"}',
    '"root":{"path":"rootfs"},"r\\u006fot":{"path":"evil"}',
])
def test_a_symlinked_dev_in_runcs_rootfs_never_takes_the_fast_path(setup: Setup,
                                                                   root: str) -> None:
    """Spellings that give runc ``evil`` (or a path the kernel resolves elsewhere) go to
    Python, which refuses or checks the rootfs runc uses."""
    key_text, value = root.split(":", 1)
    (setup.bundle / "config.json").write_text(document([(key_text, value)], []))
    done = subprocess.run([str(setup.launcher), "create", "--bundle", str(setup.bundle), "c1"],
                          capture_output=True, text=True, env=setup.env, check=True)
    assert done.stdout == "PYTHON\n"


@pytest.fixture(scope="module")
def two_bundles(setup: Setup) -> tuple[Path, Path]:
    """``clean`` (nothing for Python to do) and ``gpu`` (a GPU request), side by side."""
    made = []
    for name, env in (("clean", []), ("gpu", [('"env"', '["NVIDIA_VISIBLE_DEVICES=0"]')])):
        bundle = setup.bundle.parent / name
        (bundle / "rootfs" / "dev").mkdir(parents=True)
        text = document([('"root"', '{"path":"rootfs"}')], [])
        if env:
            text = text.replace('"env":["PATH=/bin"]', '"env":["NVIDIA_VISIBLE_DEVICES=0"]')
        (bundle / "config.json").write_text(text)
        made.append(bundle)
    return made[0], made[1]


UNITS = st.sampled_from([
    ["-b", "CLEAN"], ["--bundle", "GPU"], ["-b=CLEAN"], ["--b", "CLEAN"], ["-bundle=GPU"],
    ["--bundle", "CLEAN"], ["--no-pivot"], ["--no-new-keyring"], ["-d"], ["--detach=false"],
    ["--"], ["--pid-file"], ["--preserve-fds", "3"], ["-"], ["-f"], ["c2"],
])


@settings(max_examples=200, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["create", "run"]), before=st.lists(UNITS, max_size=3),
       after=st.lists(UNITS, max_size=2))
@example(command="create", before=[["--no-pivot"]], after=[["-b", "CLEAN"]])
def test_the_fast_path_reads_the_bundle_runc_uses(setup: Setup, two_bundles: tuple[Path, Path],
                                                  command: str, before: list[list[str]],
                                                  after: list[list[str]]) -> None:
    """Run from inside the GPU bundle: the launcher execs runc itself only when the bundle
    runc will use (argv.py, Go's flag rules, the working directory by default) is the clean
    one."""
    from runtime_shim import argv as argv_mod

    clean, gpu = two_bundles
    words = [w.replace("CLEAN", str(clean)).replace("GPU", str(gpu))
             for unit in [*before, ["c1"], *after] for w in unit]
    argv = [command, *words]
    done = subprocess.run([str(setup.launcher), *argv], capture_output=True, text=True,
                          env=setup.env, check=True, cwd=gpu)
    if done.stdout.startswith("RUNTIME"):
        parsed = argv_mod.parse(argv)
        assert parsed.rewrites and parsed.bundle == str(clean), argv
