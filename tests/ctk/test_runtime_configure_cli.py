"""``gpu-ctk runtime configure|unconfigure`` on real files: idempotence, exact restore, dry
run, backups and one-line errors, for every engine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ctk import main as ctk_main

SHIM = "/usr/bin/gpu-container-runtime"
HOOK = "/usr/libexec/gpu-container-shim/nvidia-container-runtime-hook"

ADMIN_FILES = {
    "docker": ("daemon.json", '{\n  "log-driver": "journald",\n  "mirrors": ["a", "b"]\n}\n'),
    "containerd-v2": ("config.toml", 'version = 2\n# ours\n[plugins."io.containerd.grpc.v1.cri"]'
                      '\n  sandbox_image = "p:1"  # pinned\n'),
    "containerd-v3": ("config.toml", "version = 3\nroot = '/var/lib/containerd'\n"),
    "crio": ("99-gpu.conf", None),
    "podman": ("oci-gpu-container-hook.json", None),
}


def cli(*args: str) -> int:
    return ctk_main.main(["runtime", *args])


def engine_args(case: str, config: Path) -> list[str]:
    engine = case.split("-")[0]
    extra = ["--hook-path", HOOK] if engine == "podman" else ["--runtime-path", SHIM]
    return ["--runtime", engine, "--config", str(config), *extra]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def admin_file(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    name, text = ADMIN_FILES[request.param]
    path = tmp_path / "etc" / name
    path.parent.mkdir()
    if text is not None:
        path.write_text(text)
    return path


@pytest.mark.parametrize("admin_file", sorted(ADMIN_FILES), indirect=True)
def test_configure_twice_changes_nothing_and_unconfigure_restores(
        admin_file: Path, request: pytest.FixtureRequest,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The second configure reports every file unchanged and leaves all bytes (backup
    included) alone; unconfigure brings back exactly the files there were before."""
    case = request.node.callspec.params["admin_file"]
    top = admin_file.parent
    before = snapshot(top)
    args = engine_args(case, admin_file)
    default = [] if case == "podman" else ["--set-as-default"]
    assert cli("configure", *args, *default) == 0
    configured = snapshot(top)
    assert configured != before
    capsys.readouterr()
    assert cli("configure", *args, *default) == 0
    out = capsys.readouterr().out
    assert snapshot(top) == configured
    assert out.splitlines() and all(line.startswith("unchanged ") for line in out.splitlines())
    assert cli("unconfigure", *args[:4]) == 0
    assert snapshot(top) == before


@pytest.mark.parametrize("admin_file", ["docker"], indirect=True)
def test_first_change_keeps_a_backup_of_the_admins_file(admin_file: Path) -> None:
    """configure copies the admin's bytes to PATH.gpu-ctk.bak once; a later configure that
    changes the file again keeps that first backup."""
    original = admin_file.read_bytes()
    args = engine_args("docker", admin_file)
    assert cli("configure", *args) == 0
    backup = Path(str(admin_file) + ".gpu-ctk.bak")
    assert backup.read_bytes() == original
    assert cli("configure", *args, "--set-as-default") == 0
    assert backup.read_bytes() == original and b'"default-runtime"' in admin_file.read_bytes()


@pytest.mark.parametrize("admin_file", ["containerd-v3"], indirect=True)
def test_dry_run_prints_the_diff_and_writes_nothing(
        admin_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run prints a unified diff of every file it would change and touches none."""
    before = snapshot(admin_file.parent)
    assert cli("configure", *engine_args("containerd", admin_file), "--dry-run") == 0
    out = capsys.readouterr().out
    drop_in = admin_file.parent / "conf.d" / "99-gpu.toml"
    assert f"+++ b{admin_file}\n" in out and f"+imports = [\"{drop_in}\"]\n" in out
    assert f"--- /dev/null\n+++ b{drop_in}\n" in out
    assert snapshot(admin_file.parent) == before


@pytest.mark.parametrize("admin_file", ["docker"], indirect=True)
def test_unconfigure_keeps_what_the_admin_changed_since(admin_file: Path) -> None:
    """A file edited after configure is not replaced by the backup: only our keys go, and the
    backup stays for the admin."""
    args = engine_args("docker", admin_file)
    assert cli("configure", *args) == 0
    admin_file.write_text(admin_file.read_text().replace('"journald"', '"local"'))
    assert cli("unconfigure", *args[:4]) == 0
    text = admin_file.read_text()
    assert '"local"' in text and "runtimes" not in text
    assert Path(str(admin_file) + ".gpu-ctk.bak").exists()


@pytest.mark.parametrize("admin_file", ["docker"], indirect=True)
def test_configure_keeps_the_mode(admin_file: Path) -> None:
    os.chmod(admin_file, 0o600)
    assert cli("configure", *engine_args("docker", admin_file)) == 0
    assert b'"runtimes"' in admin_file.read_bytes()
    assert admin_file.stat().st_mode & 0o777 == 0o600


def plant(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


@pytest.mark.parametrize("admin_file", ["docker", "containerd-v2", "crio", "podman"],
                         indirect=True)
@pytest.mark.parametrize("target", ["canary", "dangling"])
def test_symlink_at_the_file_is_never_followed(admin_file: Path, tmp_path: Path, target: str,
                                               request: pytest.FixtureRequest,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A link planted at the engine file (to a file root must not change, or to where root
    must not create one) is refused in one line; the link and its target stay as they were."""
    case = request.node.callspec.params["admin_file"]
    canary = tmp_path / "outside" / "canary"
    canary.parent.mkdir()
    if target == "canary":
        canary.write_text('{"canary": true}\n')
    if admin_file.exists():
        admin_file.unlink()
    plant(admin_file, canary)
    assert cli("configure", *engine_args(case, admin_file)) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "is a symlink" in err[0]
    assert admin_file.is_symlink() and os.readlink(admin_file) == str(canary)
    assert (canary.read_text() == '{"canary": true}\n') if target == "canary" \
        else not canary.exists()
    assert sorted(p.name for p in admin_file.parent.iterdir()) == [admin_file.name]


@pytest.mark.parametrize("admin_file", ["docker", "containerd-v2"], indirect=True)
@pytest.mark.parametrize("target", ["canary", "dangling"])
def test_symlink_at_the_backup_is_never_followed(admin_file: Path, tmp_path: Path, target: str,
                                                 request: pytest.FixtureRequest,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A link planted at PATH.gpu-ctk.bak is neither written through nor read as the admin's
    file: configure and unconfigure refuse in one line and the engine file is untouched."""
    case = request.node.callspec.params["admin_file"]
    canary = tmp_path / "outside" / "canary"
    canary.parent.mkdir()
    if target == "canary":
        canary.write_text("secret\n")
    before = admin_file.read_bytes()
    plant(Path(str(admin_file) + ".gpu-ctk.bak"), canary)
    for action in ("configure", "unconfigure"):
        args = engine_args(case, admin_file)
        assert cli(action, *(args if action == "configure" else args[:4])) == 1
        assert "is a symlink" in capsys.readouterr().err
    assert admin_file.read_bytes() == before
    assert (canary.read_text() == "secret\n") if target == "canary" else not canary.exists()


@pytest.mark.parametrize("admin_file", ["docker"], indirect=True)
def test_symlinks_at_likely_temporary_names_are_not_followed(admin_file: Path,
                                                             tmp_path: Path) -> None:
    """The temporary has a random name made exclusively: links planted at guessable names
    (the old fixed names of other tools) are never written through."""
    canary = tmp_path / "canary"
    canary.write_text("canary\n")
    for name in (".daemon.json.tmp", "daemon.json.tmp", ".daemon.json.gpu-ctk.bak.tmp",
                 "daemon.json~"):
        (admin_file.parent / name).symlink_to(canary)
    assert cli("configure", *engine_args("docker", admin_file)) == 0
    assert canary.read_text() == "canary\n"
    assert b'"runtimes"' in admin_file.read_bytes()


@pytest.mark.parametrize("admin_file", ["docker"], indirect=True)
def test_backup_is_made_exclusively(admin_file: Path) -> None:
    """The backup holds the admin's bytes, is a regular file of one link, and keeps the mode."""
    os.chmod(admin_file, 0o640)
    before = admin_file.read_bytes()
    assert cli("configure", *engine_args("docker", admin_file)) == 0
    backup = Path(str(admin_file) + ".gpu-ctk.bak")
    info = os.lstat(backup)
    assert backup.read_bytes() == before and info.st_nlink == 1
    assert info.st_mode & 0o777 == 0o640
    assert [p.name for p in admin_file.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(("args", "message"), [
    (["--runtime", "docker", "--drop-in"], "runtime: --drop-in and --in-place apply to "
                                           "containerd only"),
    (["--runtime", "docker", "--shim-config", "/x.yaml"], "runtime: --shim-config applies to "
                                                          "podman only"),
    (["--runtime", "docker", "--runtime-path", "bin/shim"], "runtime: --runtime-path "
                                                            "'bin/shim': must be an absolute path"),
    (["--runtime", "crio", "--runtime-name", "a/b"], "runtime: runtime name 'a/b'"),
    (["--runtime", "podman", "--set-as-default"], "runtime: --set-as-default: podman has no "
                                                  "default runtime to set"),
])
def test_bad_options_are_one_line_errors(args: list[str], message: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Options that do not fit the engine fail in one `gpu-ctk: runtime: ...` line."""
    config = tmp_path / "engine.conf"
    assert cli("configure", "--config", str(config), *args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"gpu-ctk: {message}") and err.count("\n") == 1
    assert not config.exists()


def test_invalid_daemon_json_is_left_untouched(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A daemon.json dockerd would refuse is reported in one line and not rewritten."""
    config = tmp_path / "daemon.json"
    config.write_text('{"debug": true,}')
    assert cli("configure", *engine_args("docker", config)) == 1
    assert capsys.readouterr().err.startswith(
        f"gpu-ctk: docker: {config}: invalid JSON: Expecting property name enclosed in double "
        "quotes: line 1 column 16")
    assert config.read_text() == '{"debug": true,}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["daemon.json"]
