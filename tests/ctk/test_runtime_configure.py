"""Engine edits of ``gpu-ctk runtime configure|unconfigure`` (ctk.configure): pure text in,
text out, for docker, containerd (v2, v3; in place and drop-in), CRI-O and podman."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Optional

import pytest
import tomlkit

from ctk.configure import Engine, Settings, Texts, check_name, containerd, crio, docker, podman
from ctk.configure.changes import Change, diff, plan_configure, plan_unconfigure
from gpu_core.errors import ShimError

SHIM = "/usr/bin/gpu-container-runtime"
HOOK = "/usr/libexec/gpu-container-shim/nvidia-container-runtime-hook"
DAEMON = "/etc/docker/daemon.json"
CONTAINERD = "/etc/containerd/config.toml"
DROP_IN = "/etc/containerd/conf.d/99-gpu.toml"
CRI2 = "io.containerd.grpc.v1.cri"
CRI3 = "io.containerd.cri.v1.runtime"


def settings(engine: str, config: str, **changes: Any) -> Settings:
    return Settings(engine=engine, config=config, runtime_path=SHIM, hook_path=HOOK, **changes)


def toml(text: Optional[str]) -> dict[str, Any]:
    assert text is not None
    loaded: dict[str, Any] = tomlkit.parse(text).unwrap()
    return loaded


def after(engine: Engine, texts: Texts, chosen: Settings) -> Texts:
    return {c.path: c.after for c in plan_configure(engine, texts, chosen)}


def undo(engine: Engine, texts: Texts, backups: Texts, chosen: Settings) -> Texts:
    return {c.path: c.after for c in plan_unconfigure(engine, texts, backups, chosen)}


# -- docker ----------------------------------------------------------------------------------

DOCKER = settings("docker", DAEMON)


@pytest.mark.parametrize(("before", "expected"), [
    (None, {"runtimes": {"gpu": {"path": SHIM}}}),
    ("", {"runtimes": {"gpu": {"path": SHIM}}}),
    ('{"log-level": "warn", "data-root": "/srv/docker"}',
     {"log-level": "warn", "data-root": "/srv/docker", "runtimes": {"gpu": {"path": SHIM}}}),
    ('{"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}',
     {"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}, "gpu": {"path": SHIM}}}),
    ('{"runtimes": {"gpu": {"path": "/old", "runtimeArgs": ["--debug"]}}}',
     {"runtimes": {"gpu": {"path": SHIM, "runtimeArgs": ["--debug"]}}}),
])
def test_docker_adds_the_runtime_and_keeps_every_other_key(
        before: Optional[str], expected: dict[str, Any]) -> None:
    """runtimes.gpu.path names the shim; every other key, and the entry's other keys, stay."""
    written = docker.configure({DAEMON: before}, DOCKER)[DAEMON]
    assert written is not None and json.loads(written) == expected


def test_docker_set_as_default_sets_default_runtime() -> None:
    """--set-as-default writes default-runtime = the runtime's name."""
    chosen = dataclasses.replace(DOCKER, set_as_default=True, name="nv2")
    written = docker.configure({DAEMON: '{"default-runtime": "runc"}'}, chosen)[DAEMON]
    assert json.loads(written or "") == {"default-runtime": "nv2",
                                         "runtimes": {"nv2": {"path": SHIM}}}


@pytest.mark.parametrize(("before", "indent"), [
    ('{\n\t"debug": true\n}\n', '\n\t"debug"'),
    ('{\n  "debug": true\n}\n', '\n  "debug"'),
    ('{"debug": true}', '\n    "debug"'),
])
def test_docker_keeps_the_files_indentation(before: str, indent: str) -> None:
    """The rewritten file indents as the admin's did (tab, 2 spaces), 4 spaces by default."""
    written = docker.configure({DAEMON: before}, DOCKER)[DAEMON] or ""
    assert indent in written and written.endswith("}\n")


def test_docker_configure_twice_gives_the_same_text() -> None:
    """A configured file comes back as the very same text."""
    once = after(docker.ENGINE, {DAEMON: '{"debug": true}'}, DOCKER)
    assert after(docker.ENGINE, once, DOCKER) == once


def test_docker_unconfigure_restores_the_admins_runtime_and_default() -> None:
    """An admin's own gpu runtime and previous default come back from the backup; a key added
    since configure stays."""
    original = '{"default-runtime": "runc", "runtimes": {"gpu": {"path": "/opt/old"}}}'
    chosen = dataclasses.replace(DOCKER, set_as_default=True)
    configured = docker.configure({DAEMON: original}, chosen)[DAEMON] or ""
    edited = json.loads(configured)
    edited["debug"] = True
    restored = docker.unconfigure({DAEMON: json.dumps(edited)}, {DAEMON: original}, chosen)
    assert json.loads(restored[DAEMON] or "") == {
        "default-runtime": "runc", "runtimes": {"gpu": {"path": "/opt/old"}}, "debug": True}


def test_docker_unconfigure_without_a_backup_removes_only_ours() -> None:
    """No backup: our runtime and our default go, an empty runtimes object with them."""
    text = json.dumps({"debug": True, "default-runtime": "gpu",
                       "runtimes": {"gpu": {"path": SHIM}}})
    assert json.loads(docker.unconfigure({DAEMON: text}, {}, DOCKER)[DAEMON] or "") == {
        "debug": True}


@pytest.mark.parametrize(("text", "message"), [
    ('{"debug": true, "debug": false}', "duplicate key 'debug'"),
    ('{"debug": tru}', "invalid JSON: Expecting value: line 1 column 11"),
    ("[1, 2]", "must hold a JSON object, not list"),
    ('{"runtimes": []}', "runtimes must be an object, not list"),
])
def test_docker_refuses_a_file_it_cannot_edit_faithfully(text: str, message: str) -> None:
    """Duplicate keys, bad JSON and wrong types: an error naming the file and the problem."""
    with pytest.raises(ShimError) as caught:
        docker.configure({DAEMON: text}, DOCKER)
    assert str(caught.value) == f"docker: {DAEMON}: {message}"


# -- containerd ------------------------------------------------------------------------------

V2_INDENTED = """\
# site config
version = 2
root = "/var/lib/containerd"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.example/pause:3.9"  # pinned
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"
          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            SystemdCgroup = true

  [plugins."io.containerd.internal.v1.opt"]
    path = "/opt/containerd"
"""

V2_FLAT = """\
version = 2
# hand written
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
SystemdCgroup = true
BinaryName = "/usr/local/sbin/runc"
"""

V3 = """\
version = 3
root = '/var/lib/containerd'

[plugins]
  [plugins.'io.containerd.cri.v1.runtime']
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes]
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
          runtime_type = 'io.containerd.runc.v2'
          [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
            SystemdCgroup = true
"""

CONTAINERD_INPUTS = {"v2-indented": V2_INDENTED, "v2-flat": V2_FLAT, "v2-bare": "version = 2\n",
                     "new-file": None, "v3": V3}
CTD = settings("containerd", CONTAINERD)


def runtimes_of(document: dict[str, Any], plugin: str = CRI2) -> dict[str, Any]:
    found: dict[str, Any] = document["plugins"][plugin]["containerd"]["runtimes"]
    return found


def test_containerd_v2_in_place_only_adds_lines() -> None:
    """Version 2 in place: every line of the admin's file (comments, indentation) is still
    there in order; our runtime's headers are indented like runc's."""
    written = containerd.configure({CONTAINERD: V2_INDENTED, DROP_IN: None}, CTD)[CONTAINERD]
    lines = (written or "").splitlines()
    position = 0
    for line in V2_INDENTED.splitlines():
        position = lines.index(line, position) + 1
    assert '        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.gpu]' in lines


@pytest.mark.parametrize(("name", "runc_options"), [
    ("v2-indented", {"SystemdCgroup": True}),
    ("v2-flat", {"SystemdCgroup": True, "BinaryName": "/usr/local/sbin/runc"}),
    ("v2-bare", {}),
    ("new-file", {}),
])
def test_containerd_runtime_copies_runc_with_our_binary(name: str,
                                                        runc_options: dict[str, Any]) -> None:
    """The gpu runtime is runc's entry with runtime_type io.containerd.runc.v2 and
    options.BinaryName = the shim."""
    written = containerd.configure({CONTAINERD: CONTAINERD_INPUTS[name], DROP_IN: None}, CTD)
    gpu = runtimes_of(toml(written[CONTAINERD]))["gpu"]
    assert gpu == {"runtime_type": "io.containerd.runc.v2",
                   "options": {**runc_options, "BinaryName": SHIM}}


@pytest.mark.parametrize(("text", "runc_written"), [
    ("version = 2\n", True),
    ('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n'
     'default_runtime_name = "kata"\n', False),
])
def test_containerd_writes_runc_when_the_file_lacks_it(text: str, runc_written: bool) -> None:
    """containerd drops its built-in runc once a file names a runtime: runc is written too,
    unless the default runtime is another one."""
    written = containerd.configure({CONTAINERD: text, DROP_IN: None}, CTD)[CONTAINERD]
    runtimes = runtimes_of(toml(written))
    assert ("runc" in runtimes) is runc_written
    if runc_written:
        assert runtimes["runc"] == {"runtime_type": "io.containerd.runc.v2"}


def test_containerd_v3_goes_to_a_drop_in_and_an_import() -> None:
    """Version 3: the main file only gains the import; the drop-in (version 3) holds our
    runtime and, with --set-as-default, the default."""
    chosen = dataclasses.replace(CTD, set_as_default=True)
    written = containerd.configure({CONTAINERD: V3, DROP_IN: None}, chosen)
    main = toml(written[CONTAINERD])
    assert main.pop("imports") == [DROP_IN] and main == toml(V3)
    drop_in = toml(written[DROP_IN])
    assert drop_in["version"] == 3
    table = drop_in["plugins"][CRI3]["containerd"]
    assert table == {"default_runtime_name": "gpu", "runtimes": {"gpu": {
        "runtime_type": "io.containerd.runc.v2",
        "options": {"SystemdCgroup": True, "BinaryName": SHIM}}}}


def test_containerd_v2_drop_in_carries_the_whole_cri_table() -> None:
    """Version 2 with --drop-in: containerd 1.x replaces the CRI table by the imported one, so
    the drop-in holds the site's CRI settings, runc and ours."""
    chosen = dataclasses.replace(CTD, drop_in=True)
    written = containerd.configure({CONTAINERD: V2_INDENTED, DROP_IN: None}, chosen)
    cri = toml(written[DROP_IN])["plugins"][CRI2]
    assert cri["sandbox_image"] == "registry.example/pause:3.9"
    assert set(cri["containerd"]["runtimes"]) == {"runc", "gpu"}
    assert toml(written[CONTAINERD])["imports"] == [DROP_IN]


def test_containerd_import_glob_that_covers_the_drop_in_is_enough() -> None:
    """An imports glob matching the drop-in leaves the main file as it is."""
    text = 'version = 3\nimports = ["/etc/containerd/conf.d/*.toml"]\n'
    written = containerd.configure({CONTAINERD: text, DROP_IN: None}, CTD)
    assert written[CONTAINERD] == text and written[DROP_IN] is not None


@pytest.mark.parametrize("name", sorted(CONTAINERD_INPUTS))
@pytest.mark.parametrize("drop_in", [None, True, False])
def test_containerd_configure_twice_changes_nothing_and_unconfigure_restores(
        name: str, drop_in: Optional[bool]) -> None:
    """For every input and placement: a second configure returns the same texts, and
    unconfigure with the backup gives back the original file and no drop-in."""
    chosen = dataclasses.replace(CTD, drop_in=drop_in, set_as_default=True)
    original: Texts = {CONTAINERD: CONTAINERD_INPUTS[name], DROP_IN: None}
    once = after(containerd.ENGINE, original, chosen)
    assert after(containerd.ENGINE, once, chosen) == once
    backups: Texts = {CONTAINERD: CONTAINERD_INPUTS[name]}
    restored = undo(containerd.ENGINE, once, backups, chosen)
    if original[CONTAINERD] is None:
        assert restored[DROP_IN] is None and toml(restored[CONTAINERD]) == {"version": 2}
    else:
        assert restored == original


def test_containerd_unconfigure_without_a_backup_keeps_the_admins_later_edits() -> None:
    """No backup: our runtime, default and import go; a key the admin added since stays."""
    chosen = dataclasses.replace(CTD, set_as_default=True)
    once = after(containerd.ENGINE, {CONTAINERD: V3, DROP_IN: None}, chosen)
    edited = (once[CONTAINERD] or "").replace("root = ", "oom_score = -999\nroot = ")
    restored = undo(containerd.ENGINE, {CONTAINERD: edited, DROP_IN: once[DROP_IN]}, {}, chosen)
    assert restored[DROP_IN] is None
    assert toml(restored[CONTAINERD]) == {**toml(V3), "oom_score": -999}


def test_containerd_unconfigure_leaves_a_drop_in_it_did_not_write() -> None:
    """A conf.d file of the same name without our header is the admin's: it stays."""
    foreign = "# site runtime\nversion = 3\n"
    restored = containerd.unconfigure({CONTAINERD: V3, DROP_IN: foreign}, {}, CTD)
    assert restored == {CONTAINERD: V3, DROP_IN: foreign}


def test_containerd_unconfigure_restores_the_previous_default() -> None:
    """In place with --set-as-default: unconfigure puts default_runtime_name back to runc."""
    chosen = dataclasses.replace(CTD, set_as_default=True)
    once = after(containerd.ENGINE, {CONTAINERD: V2_INDENTED, DROP_IN: None}, chosen)
    table = toml(once[CONTAINERD])["plugins"][CRI2]["containerd"]
    assert table["default_runtime_name"] == "gpu"
    restored = containerd.unconfigure(once, {CONTAINERD: V2_INDENTED}, chosen)
    assert toml(restored[CONTAINERD]) == toml(V2_INDENTED)


@pytest.mark.parametrize(("text", "message"), [
    ("[plugins.cri]\nx = 1\n", "config version 1 is not supported"),
    ("version = 1\n", "config version 1 is not supported"),
    ("version = 4\n", "unknown config version 4"),
    ("version = 2\n[plugins\n", "/etc/containerd/config.toml: "),
    ('version = 3\nimports = "conf.d"\n', "imports must be an array of paths"),
])
def test_containerd_refuses_what_it_cannot_edit(text: str, message: str) -> None:
    """Version 1, unknown versions, bad TOML and a bad imports key: a containerd error."""
    with pytest.raises(ShimError) as caught:
        containerd.configure({CONTAINERD: text, DROP_IN: None}, CTD)
    assert caught.value.stage == "containerd" and message in caught.value.cause


# -- CRI-O and podman ------------------------------------------------------------------------

CRIO = settings("crio", "/etc/crio/crio.conf.d/99-gpu.conf")


def test_crio_drop_in_names_the_shim_as_an_oci_runtime() -> None:
    """The drop-in holds crio.runtime.runtimes.gpu (runtime_path, oci) and the default when
    asked."""
    chosen = dataclasses.replace(CRIO, set_as_default=True)
    written = crio.configure({CRIO.config: None}, chosen)[CRIO.config]
    assert toml(written) == {"crio": {"runtime": {
        "default_runtime": "gpu",
        "runtimes": {"gpu": {"runtime_path": SHIM, "runtime_type": "oci"}}}}}
    assert after(crio.ENGINE, {CRIO.config: written}, chosen) == {CRIO.config: written}


def test_crio_unconfigure_removes_the_file_or_only_our_keys() -> None:
    """Only ours in it: the file goes; an admin's addition: it stays without our keys."""
    written = crio.configure({CRIO.config: None}, CRIO)[CRIO.config] or ""
    assert crio.unconfigure({CRIO.config: written}, {}, CRIO) == {CRIO.config: None}
    extended = written + '\n[crio.runtime.runtimes.kata]\nruntime_path = "/usr/bin/kata"\n'
    kept = crio.unconfigure({CRIO.config: extended}, {}, CRIO)[CRIO.config]
    assert toml(kept) == {"crio": {"runtime": {"runtimes": {"kata": {
        "runtime_path": "/usr/bin/kata"}}}}}


PODMAN = settings("podman", "/etc/containers/oci/hooks.d/oci-gpu-container-hook.json")


@pytest.mark.parametrize(("shim_config", "env"), [
    (None, ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
    ("/srv/sim/config.yaml", ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                              "GPU_CONTAINER_SHIM_CONFIG=/srv/sim/config.yaml"]),
])
def test_podman_hook_runs_the_standalone_hook_at_prestart(shim_config: Optional[str],
                                                           env: list[str]) -> None:
    """The hooks.d file runs the hook as ``nvidia-container-runtime-hook prestart`` for every
    container with an explicit environment."""
    chosen = dataclasses.replace(PODMAN, shim_config=shim_config)
    written = podman.configure({PODMAN.config: None}, chosen)[PODMAN.config]
    assert json.loads(written or "") == {
        "version": "1.0.0",
        "hook": {"path": HOOK, "args": ["nvidia-container-runtime-hook", "prestart"],
                 "env": env},
        "when": {"always": True}, "stages": ["prestart"]}


def test_packaged_hooks_file_is_what_configure_writes() -> None:
    """packaging/podman's hooks.d file equals configure's output for the packaged hook."""
    packaged = Path(__file__).resolve().parents[2] / "packaging" / "podman" / \
        "oci-gpu-container-hook.json"
    assert packaged.read_text() == podman.render(PODMAN)


def test_podman_unconfigure_removes_the_hooks_file() -> None:
    """The hooks.d file is ours: unconfigure removes it."""
    assert podman.unconfigure({PODMAN.config: "{}"}, {}, PODMAN) == {PODMAN.config: None}


# -- changes and names -----------------------------------------------------------------------

def test_diff_of_a_created_file_is_against_dev_null() -> None:
    """A new file diffs from /dev/null, a removed one to it; no change shows nothing."""
    created = diff(Change("/etc/x.conf", None, "a\n"))
    assert created.startswith("--- /dev/null\n+++ b/etc/x.conf\n") and "+a\n" in created
    assert diff(Change("/etc/x.conf", "a\n", None)).startswith("--- a/etc/x.conf\n+++ /dev/null")
    assert diff(Change("/etc/x.conf", "a\n", "a\n")) == ""


def test_unconfigure_returns_the_backups_own_bytes_when_it_means_the_same() -> None:
    """The admin's formatting (one-line arrays, spacing) comes back byte for byte."""
    original = '{"registry-mirrors": ["https://m.example"],   "debug": true}\n'
    once = after(docker.ENGINE, {DAEMON: original}, DOCKER)
    assert once[DAEMON] != original
    assert undo(docker.ENGINE, once, {DAEMON: original}, DOCKER) == {DAEMON: original}


@pytest.mark.parametrize("name", ["gpu", "nvidia-2", "a.b_c"])
def test_runtime_names_engines_accept_pass(name: str) -> None:
    """Letters, digits, '-', '_' and '.' make a runtime name."""
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", "a/b", "a b", 'a"b', "x" * 64])
def test_runtime_names_that_break_keys_or_file_names_fail(name: str) -> None:
    """A name that is no safe TOML/JSON key and file name part is a runtime error."""
    with pytest.raises(ShimError, match=r"^runtime: runtime name"):
        check_name(name)
