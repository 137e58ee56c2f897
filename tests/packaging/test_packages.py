"""The two packages packaging/build makes: metadata, contents, file lists that match, maintainer
scripts that reconfigure nothing, and the .rpm installed into a scratch root (rpm --root,
dependencies not resolved) with its scriptlets run."""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import pytest
import tomllib
import yaml
from containers import build_busybox_image

from gpu_core import config as config_mod

REPO = Path(__file__).resolve().parents[2]
LIB = "/usr/lib/gpu-container-shim"
COMPAT = "/usr/libexec/gpu-container-shim/nvidia-container-runtime-hook"
CONFIG = "/etc/gpu-container-shim/config.yaml"
COMMANDS = ("/usr/bin/gpu-container-runtime", "/usr/bin/gpu-container-hook", "/usr/bin/gpu-ctk",
            COMPAT)
PRIVATE_DIRS = (LIB, "/usr/libexec/gpu-container-shim", "/etc/gpu-container-shim",
                "/usr/share/gpu-container-shim", "/usr/share/doc/gpu-container-shim")


def run(*args: str, stdin: bytes = b"") -> bytes:
    done = subprocess.run(list(args), input=stdin, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def project_version() -> str:
    version: str = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    return version


@dataclass(frozen=True)
class Listing:
    """A package's paths: regular files (with modes), directories and symlinks."""

    files: dict[str, int]
    dirs: frozenset[str]
    links: frozenset[str]


def archive_listing(archive: tarfile.TarFile) -> Listing:
    files, dirs, links = {}, set(), set()
    for member in archive.getmembers():
        path = "/" + member.name.lstrip("./").rstrip("/")
        if member.isdir():
            dirs.add(path)
        elif member.issym():
            links.add(path)
        else:
            files[path] = member.mode & 0o7777
    dirs.discard("/")
    return Listing(files, frozenset(dirs), frozenset(links))


def deb_archive(deb: Path) -> tarfile.TarFile:
    return tarfile.open(fileobj=io.BytesIO(run("dpkg-deb", "--fsys-tarfile", str(deb))))


def rpm_archive(rpm: Path) -> tarfile.TarFile:
    return tarfile.open(fileobj=io.BytesIO(run("rpm2archive", "-", stdin=rpm.read_bytes())),
                        mode="r:gz")


def member(archive: tarfile.TarFile, path: str) -> bytes:
    stream = archive.extractfile("." + path)
    assert stream is not None
    return stream.read()


def rpm_owned(rpm: Path) -> Listing:
    """What the rpm header says it owns (rpm -qpl with modes)."""
    text = run("rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\n]", str(rpm)).decode()
    files, dirs, links = {}, set(), set()
    for line in text.splitlines():
        perms, path = line.split(" ", 1)
        if perms.startswith("d"):
            dirs.add(path)
        elif perms.startswith("l"):
            links.add(path)
        else:
            files[path] = 0
    return Listing(files, frozenset(dirs), frozenset(links))


@pytest.fixture(scope="module")
def deb(packages: dict[str, Path]) -> Path:
    return packages["deb"]


@pytest.fixture(scope="module")
def rpm(packages: dict[str, Path]) -> Path:
    return packages["rpm"]


@pytest.fixture(scope="module")
def deb_listing(deb: Path) -> Listing:
    with deb_archive(deb) as archive:
        return archive_listing(archive)


class TestBuild:
    def test_packages_are_named_after_the_pyproject_version(self, packages: dict[str, Path]
                                                            ) -> None:
        """packaging/build writes gpu-container-shim_<v>_amd64.deb and -<v>-1.x86_64.rpm."""
        version = project_version()
        assert sorted(p.name for p in packages.values()) == [
            f"gpu-container-shim-{version}-1.x86_64.rpm",
            f"gpu-container-shim_{version}_amd64.deb"]

    def test_the_same_tree_builds_identical_packages(self, make_packages: ModuleType,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        """File times come from SOURCE_DATE_EPOCH (default: the last commit's), so two builds
        of one tree are byte for byte the same."""
        monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
        first = make_packages.build(tmp_path / "a", ("deb", "rpm"))
        second = make_packages.build(tmp_path / "b", ("deb", "rpm"))
        assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


class TestDebMetadata:
    @pytest.mark.parametrize(("field", "expected"), [
        ("Package", "gpu-container-shim"),
        ("Architecture", "amd64"),
        ("Section", "admin"),
        ("Depends", "python3 (>= 3.9), python3-yaml (>= 5.4), python3-jsonschema (>= 4.0), "
                    "python3-cffi (>= 1.15), python3-tomlkit (>= 0.11)"),
        ("Recommends", "runc | crun"),
        ("Suggests", "gcc, libc6-dev"),
    ])
    def test_control_field(self, deb: Path, field: str, expected: str) -> None:
        """dpkg-deb -I shows the field as packaging/nfpm.yaml describes it."""
        assert run("dpkg-deb", "-f", str(deb), field).decode().strip() == expected

    def test_version_is_the_pyproject_version(self, deb: Path) -> None:
        """The one version, from pyproject.toml."""
        assert run("dpkg-deb", "-f", str(deb), "Version").decode().strip() == project_version()

    def test_the_configuration_is_the_only_conffile(self, deb: Path) -> None:
        """dpkg keeps an admin's /etc/gpu-container-shim/config.yaml across upgrades."""
        with tarfile.open(fileobj=io.BytesIO(run("dpkg-deb", "--ctrl-tarfile", str(deb)))) as c:
            assert member(c, "/conffiles").decode().split() == [CONFIG]


class TestRpmMetadata:
    def test_header_names_version_release_arch_and_license(self, rpm: Path) -> None:
        """rpm -qpi shows the pyproject version, release 1, x86_64 and Apache-2.0."""
        info = run("rpm", "-qpi", str(rpm)).decode()
        fields = dict(re.findall(r"^(\w[\w ]*?)\s*: (.*)$", info, re.MULTILINE))
        assert (fields["Name"], fields["Version"], fields["Release"], fields["Architecture"],
                fields["License"]) == ("gpu-container-shim", project_version(), "1", "x86_64",
                                       "Apache-2.0")

    def test_requires_python_abi_and_the_distribution_modules(self, rpm: Path) -> None:
        """The launchers' fixed site-packages path needs that exact python(abi)."""
        requires = run("rpm", "-qp", "--requires", str(rpm)).decode().splitlines()
        assert [r for r in requires if not r.startswith("rpmlib(")] == [
            "python3 >= 3.9", "python(abi) = 3.12", "python3-pyyaml >= 5.4",
            "python3-jsonschema >= 4.0", "python3-cffi >= 1.15", "python3-tomlkit >= 0.11"]

    def test_weak_dependencies(self, rpm: Path) -> None:
        """A low-level runtime is recommended; the simulator's compiler suggested."""
        assert run("rpm", "-qp", "--recommends", str(rpm)).decode().split("\n")[0] == \
            "(runc or crun)"
        assert run("rpm", "-qp", "--suggests", str(rpm)).decode().split() == \
            ["gcc", "glibc-devel"]

    def test_the_configuration_is_noreplace(self, rpm: Path) -> None:
        """%config(noreplace): an upgrade never overwrites the admin's file."""
        flags = run("rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]",
                    str(rpm)).decode()
        marked = {line.split(" ")[0]: line.split(" ")[1] for line in flags.splitlines()
                  if line.split(" ")[1]}
        assert marked == {CONFIG: "cn"}


class TestContents:
    def test_the_rpm_file_list_matches_the_debs(self, rpm: Path, deb_listing: Listing) -> None:
        """Same files with the same modes; the rpm owns our directories and no shared one the
        .deb lacks."""
        owned = rpm_owned(rpm)
        with rpm_archive(rpm) as archive:
            rpm_listing = archive_listing(archive)
        assert rpm_listing.files == deb_listing.files
        assert set(owned.files) == set(deb_listing.files)
        assert owned.links == deb_listing.links == frozenset()
        assert owned.dirs <= deb_listing.dirs
        assert set(PRIVATE_DIRS) <= owned.dirs
        private = {d for d in deb_listing.dirs if d.startswith(PRIVATE_DIRS)}
        assert private <= owned.dirs

    def test_every_project_module_is_shipped(self, deb_listing: Listing,
                                             make_packages: ModuleType) -> None:
        """Each file setuptools would install lands in the private directory, and nothing else
        (no bundled pynvml.py: NVML is read through gpu_core.nvml_lib); no bytecode (the
        postinst compiles it)."""
        project = make_packages.parse_project((REPO / "pyproject.toml").read_text())
        expected = {f"{LIB}/{rel}" for rel in make_packages.module_files(REPO, project)}
        shipped = {p for p in deb_listing.files if p.startswith(LIB + "/")}
        assert shipped == expected
        assert not [p for p in deb_listing.files if "__pycache__" in p or p.endswith(".pyc")]

    def test_commands_are_executable(self, deb_listing: Listing) -> None:
        """The three commands and the compatibility hook are mode 0755."""
        assert {c: deb_listing.files.get(c) for c in COMMANDS} == {c: 0o755 for c in COMMANDS}

    @pytest.mark.parametrize(("packager", "site"), [
        ("deb", '"/usr/lib/python3/dist-packages"'),
        ("rpm", '"/usr/lib64/python3.12/site-packages", "/usr/lib/python3.12/site-packages"'),
    ])
    @pytest.mark.parametrize("command", ["/usr/bin/gpu-container-hook", "/usr/bin/gpu-ctk",
                                         "/usr/bin/gpu-container-spec-hook", COMPAT])
    def test_python_launchers_are_isolated_with_a_fixed_path(
            self, packages: dict[str, Path], packager: str, site: str, command: str) -> None:
        """python3 -IS from the #! line; sys.path starts with the private directory, then the
        distribution's modules."""
        opener = deb_archive if packager == "deb" else rpm_archive
        with opener(packages[packager]) as archive:
            text = member(archive, command).decode()
        assert text.startswith("#!/usr/bin/python3 -IS\n")
        assert f'sys.path[:0] = ["{LIB}", {site}]' in text

    def test_runtime_launcher_is_the_shell_fast_path(self, deb: Path) -> None:
        """gpu-container-runtime is runtime_shim/launcher.sh rendered for /usr/bin/python3."""
        with deb_archive(deb) as archive:
            text = member(archive, "/usr/bin/gpu-container-runtime").decode()
        assert text.startswith("#!/bin/sh\n")
        assert re.search(r"^PYTHON=/usr/bin/python3$", text, re.MULTILINE)
        assert f'"{LIB}"' in text and "/usr/lib/python3/dist-packages" in text

    def test_man_pages_are_gzipped_troff(self, deb: Path) -> None:
        """One man page per command, gzipped, each a .TH page of that name."""
        with deb_archive(deb) as archive:
            for name in ("gpu-container-runtime", "gpu-container-hook", "gpu-ctk"):
                page = gzip.decompress(member(archive, f"/usr/share/man/man1/{name}.1.gz"))
                assert page.decode().startswith(f".TH {name.upper()} 1 ")

    def test_podman_hooks_file_runs_our_compatibility_hook(self, deb: Path) -> None:
        """The shipped hooks.d file (inactive until copied or `gpu-ctk runtime configure
        --runtime podman`) runs the libexec hook, which is ours even where NVIDIA's holds
        /usr/bin/nvidia-container-runtime-hook."""
        with deb_archive(deb) as archive:
            document = json.loads(member(
                archive, "/usr/share/gpu-container-shim/hooks.d/oci-gpu-container-hook.json"))
        assert document["hook"]["path"] == COMPAT
        assert document["hook"]["args"] == ["nvidia-container-runtime-hook", "prestart"]
        assert document["stages"] == ["prestart"]

    @pytest.mark.parametrize("name", ["docker-daemon.json", "containerd-config.toml",
                                      "crio-gpu-container-shim.conf", "podman-containers.conf"])
    def test_engine_example_names_the_shim(self, deb: Path, name: str) -> None:
        """Each example parses and points the engine's runtime "gpu" at the shim."""
        with deb_archive(deb) as archive:
            text = member(archive, f"/usr/share/gpu-container-shim/examples/{name}").decode()
        document = json.loads(text) if name.endswith(".json") else tomllib.loads(text)
        found = {
            "docker-daemon.json": lambda d: d["runtimes"]["gpu"]["path"],
            "containerd-config.toml": lambda d: d["plugins"]["io.containerd.grpc.v1.cri"][
                "containerd"]["runtimes"]["gpu"]["options"]["BinaryName"],
            "crio-gpu-container-shim.conf": lambda d: d["crio"]["runtime"]["runtimes"]["gpu"][
                "runtime_path"],
            "podman-containers.conf": lambda d: d["engine"]["runtimes"]["gpu"][0],
        }[name](document)
        assert found == "/usr/bin/gpu-container-runtime"


def deb_scripts(deb: Path) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(run("dpkg-deb", "--ctrl-tarfile", str(deb)))) as c:
        return {name: member(c, f"/{name}").decode() for name in ("postinst", "prerm", "postrm")}


class TestMaintainerScripts:
    def test_no_script_touches_an_engine(self, deb: Path, rpm: Path) -> None:
        """Neither package's scripts restart or reconfigure a container engine."""
        texts = [*deb_scripts(deb).values(), run("rpm", "-qp", "--scripts", str(rpm)).decode()]
        for text in texts:
            code = "\n".join(line for line in text.splitlines()
                             if not line.lstrip().startswith("#"))
            assert not re.search(r"systemctl|service |restart|reload|containerd|docker|crio|"
                                 r"podman|daemon\.json", code), code

    def test_deb_scripts_are_valid_sh(self, deb: Path, tmp_path: Path) -> None:
        """dash accepts each maintainer script (sh -n)."""
        for name, text in deb_scripts(deb).items():
            (tmp_path / name).write_text(text)
            run("sh", "-n", str(tmp_path / name))

    def test_rpm_has_post_posttrans_and_preun(self, rpm: Path) -> None:
        """Alternatives in %post, bytecode in %posttrans, both undone in %preun."""
        text = run("rpm", "-qp", "--scripts", str(rpm)).decode()
        assert re.findall(r"^(\w+) scriptlet", text, re.MULTILINE) == \
            ["postinstall", "preuninstall", "posttrans"]


LINK = "/usr/bin/nvidia-container-runtime-hook"
INSTALL = (f"update-alternatives --install {LINK} nvidia-container-runtime-hook {COMPAT} 10")


def post_install_scripts(deb: Path, rpm: Path) -> dict[str, tuple[str, str]]:
    """name -> (text, argument) of the script that offers the compatibility name."""
    text = run("rpm", "-qp", "--qf", "%{POSTIN}", str(rpm)).decode()
    return {"deb postinst": (deb_scripts(deb)["postinst"], "configure"), "rpm %post": (text, "1")}


class TestCompatibilityName:
    @pytest.mark.parametrize("script", ["deb postinst", "rpm %post"])
    @pytest.mark.parametrize(("state", "offered"), [
        ("absent", True),
        ("NVIDIA's file", False),
        ("our alternatives link", True),
        ("another symlink", False),
    ])
    def test_offered_only_where_nvidias_is_absent(self, scratch_root: ScratchRoot, deb: Path,
                                                  rpm: Path, script: str, state: str,
                                                  offered: bool) -> None:
        """The post-install script registers the alternative for a free name or our own
        link, and never replaces another program's file or link."""
        root = scratch_root.path
        (root / LIB.lstrip("/")).mkdir(parents=True)
        link = root / LINK.lstrip("/")
        if state == "NVIDIA's file":
            link.write_text("#!/bin/sh\n")
        elif state == "our alternatives link":
            link.symlink_to("/etc/alternatives/nvidia-container-runtime-hook")
        elif state == "another symlink":
            link.symlink_to("/opt/nvidia/bin/nvidia-container-runtime-hook")
        text, argument = post_install_scripts(deb, rpm)[script]
        (root / "post").write_text(text)
        done = subprocess.run(["chroot", str(root), "/bin/sh", "/post", argument],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert (INSTALL in scratch_root.calls()) == offered


class TestShippedConfig:
    def test_it_behaves_as_an_empty_file(self) -> None:
        """Every setting is commented out: the defaults apply, and later defaults too."""
        text = (REPO / "packaging" / "config.yaml").read_text()
        assert config_mod.parse(text, "config.yaml") == config_mod.parse("", "config.yaml")

    def test_its_commented_settings_are_the_defaults(self) -> None:
        """Uncommenting every setting gives exactly gpu_core.config.DEFAULTS."""
        text = (REPO / "packaging" / "config.yaml").read_text()
        settings = "\n".join(line[1:] if re.match(r"#(?!$| \S)", line) else line
                             for line in text.splitlines())
        uncommented = config_mod.parse(settings, "uncommented").document
        assert json.dumps(dict(uncommented), sort_keys=True) \
            == json.dumps(config_mod.DEFAULTS, sort_keys=True)


class TestDependencyMapping:
    DEPENDS: ClassVar[dict[str, list[str]]] = {"deb": ["python3-yaml (>= 5.4)", "python3-cffi"],
               "rpm": ["python3-pyyaml >= 5.4", "python3-cffi"]}

    @pytest.mark.parametrize(("dependency", "problems"), [
        ("pyyaml>=5.4", []),
        ("PyYAML >= 5.4", []),
        ("cffi", []),
        ("pyyaml>=6.0", ["pyyaml: deb depends lack 'python3-yaml (>= 6.0)'",
                         "pyyaml: rpm depends lack 'python3-pyyaml >= 6.0'"]),
        ("jsonschema>=4.0", ["jsonschema: deb depends lack 'python3-jsonschema (>= 4.0)'",
                             "jsonschema: rpm depends lack 'python3-jsonschema >= 4.0'"]),
        ("requests", ["requests: neither bundled nor mapped to a distribution package"]),
    ])
    def test_problems(self, make_packages: ModuleType, dependency: str,
                      problems: list[str]) -> None:
        """A pyproject dependency must be bundled or required at its minimum version."""
        assert make_packages.dependency_problems([dependency], self.DEPENDS) == problems

    def test_the_real_description_covers_pyproject(self, make_packages: ModuleType) -> None:
        """packaging/nfpm.yaml requires every runtime dependency of pyproject.toml."""
        project = make_packages.parse_project((REPO / "pyproject.toml").read_text())
        description = make_packages.render((REPO / "packaging" / "nfpm.yaml").read_text(),
                                           {"VERSION": "1", "RPM_PYTHON": "3.12"})
        assert yaml.safe_load(description)["version"] == "1"
        assert make_packages.dependency_problems(
            project.dependencies, make_packages.nfpm_depends(description)) == []


@dataclass
class ScratchRoot:
    """A busybox root with rpm's database, where update-alternatives and python3 only log."""

    path: Path

    def rpm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["rpm", "--root", str(self.path), "--dbpath", "/var/lib/rpm",
                               *args], capture_output=True, text=True, check=False)

    def calls(self) -> list[str]:
        log = self.path / "var" / "log" / "calls"
        return log.read_text().splitlines() if log.exists() else []


LOGGER = "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> /var/log/calls\n"


@pytest.fixture
def scratch_root(tmp_path: Path) -> Iterator[ScratchRoot]:
    root = build_busybox_image(tmp_path / "root")
    for tool in ("usr/sbin/update-alternatives", "usr/bin/python3"):
        (root / tool).parent.mkdir(parents=True, exist_ok=True)
        (root / tool).write_text(LOGGER)
        (root / tool).chmod(0o755)
    (root / "var" / "log").mkdir(parents=True)
    scratch = ScratchRoot(root)
    assert scratch.rpm("--initdb").returncode == 0
    yield scratch


def install_rpm(scratch: ScratchRoot, rpm: Path) -> None:
    done = scratch.rpm("-i", "--nodeps", str(rpm))
    assert done.returncode == 0, done.stderr


class TestRpmScratchRoot:
    def test_install_puts_every_file_in_place(self, scratch_root: ScratchRoot, rpm: Path) -> None:
        """rpm -i --nodeps: rpm -V finds every file as the header describes it."""
        install_rpm(scratch_root, rpm)
        verify = scratch_root.rpm("-V", "--nodeps", "gpu-container-shim")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        for path in rpm_owned(rpm).files:
            assert (scratch_root.path / path.lstrip("/")).is_file(), path

    def test_scriptlets_offer_the_hook_name_and_compile(self, scratch_root: ScratchRoot,
                                                        rpm: Path) -> None:
        """%post registers the compatibility name; %posttrans byte-compiles the modules."""
        install_rpm(scratch_root, rpm)
        assert scratch_root.calls() == [
            f"update-alternatives --install /usr/bin/nvidia-container-runtime-hook "
            f"nvidia-container-runtime-hook {COMPAT} 10",
            f"python3 -I -m compileall -q {LIB}"]

    def test_nvidias_own_hook_is_left_alone(self, scratch_root: ScratchRoot, rpm: Path) -> None:
        """Where /usr/bin/nvidia-container-runtime-hook is a file, no alternative is made."""
        theirs = scratch_root.path / "usr" / "bin" / "nvidia-container-runtime-hook"
        theirs.write_text("#!/bin/sh\n# NVIDIA's\n")
        install_rpm(scratch_root, rpm)
        assert not [c for c in scratch_root.calls() if c.startswith("update-alternatives")]
        assert theirs.read_text() == "#!/bin/sh\n# NVIDIA's\n"

    def test_erase_removes_every_file_and_the_alternative(self, scratch_root: ScratchRoot,
                                                          rpm: Path) -> None:
        """rpm -e: %preun gives the name back, and nothing the package owned is left."""
        install_rpm(scratch_root, rpm)
        (scratch_root.path / LIB.lstrip("/") / "hook" / "__pycache__").mkdir()
        (scratch_root.path / LIB.lstrip("/") / "hook" / "__pycache__" / "x.pyc").write_bytes(b"")
        done = scratch_root.rpm("-e", "--nodeps", "gpu-container-shim")
        assert done.returncode == 0, done.stderr
        assert scratch_root.calls()[-1] == \
            f"update-alternatives --remove nvidia-container-runtime-hook {COMPAT}"
        owned = rpm_owned(rpm)
        left = [p for p in [*owned.files, *owned.dirs]
                if (scratch_root.path / p.lstrip("/")).exists()]
        assert left == []

