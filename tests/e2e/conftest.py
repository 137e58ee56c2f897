"""Fixtures for real containers; the helpers themselves live in tests/support/containers.py.
Needs root, runc, crun and busybox-static — the README's test command installs them."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from containers import Bundle, Runtime, build_busybox_image


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minimal busybox-static root filesystem shared by the session's containers."""
    return build_busybox_image(tmp_path_factory.mktemp("image") / "rootfs")


@pytest.fixture
def make_bundle(busybox_image: Path, tmp_path: Path) -> Iterator[Callable[..., Bundle]]:
    """Build a bundle running ``args``. By default the container gets a writable overlay over the
    shared image, as engines give it: the hook mounts into the rootfs, so a bare shared image
    would carry one test's mount targets into the next. ``overlay=False`` runs on the image
    directory itself (read-only)."""
    made: list[Bundle] = []

    def build(args: Sequence[str] = ("/bin/true",), env: Sequence[str] = (),
              annotations: Optional[dict[str, str]] = None, overlay: bool = True,
              name: str = "") -> Bundle:
        path = tmp_path / (name or f"bundle-{len(made)}")
        path.mkdir()
        subprocess.run(["runc", "spec", "--bundle", str(path)], check=True)
        bundle = Bundle(path)
        rootfs = path / "rootfs"
        if overlay:
            upper, work = path / "upper", path / "work"
            for d in (rootfs, upper, work):
                d.mkdir()
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                            f"lowerdir={busybox_image},upperdir={upper},workdir={work}",
                            str(rootfs)], check=True)
            bundle.mounts.append(rootfs)
            root_path = str(rootfs)
        else:
            root_path = str(busybox_image)

        def shape(spec: dict[str, Any]) -> None:
            spec["root"] = {"path": root_path, "readonly": not overlay}
            spec["process"]["terminal"] = False
            spec["process"]["args"] = list(args)
            spec["process"]["env"] = [*spec["process"]["env"], *env]
            if annotations:
                spec["annotations"] = dict(annotations)

        bundle.edit(shape)
        made.append(bundle)
        return bundle

    yield build
    for bundle in made:
        for mount in bundle.mounts:
            subprocess.run(["umount", "-l", str(mount)], check=False)




@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a shim config.yaml; a log file under tmp_path is added unless the text sets one."""
    def write(text: str = "") -> Path:
        path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.yaml"
        if "log:" not in text:
            text += f"\nlog: {{file: {tmp_path / 'shim.log'}}}\n"
        path.write_text(text)
        return path
    return write


@pytest.fixture(params=["runc", "crun"])
def low_level(request: pytest.FixtureRequest) -> str:
    """Each end-to-end test that takes this fixture runs once with runc and once with crun."""
    name: str = request.param
    return name


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    made: list[Runtime] = []

    def build(config: Path, low_level: str = "runc") -> Runtime:
        root = tmp_path / f"state-{low_level}-{len(made)}"
        root.mkdir()
        runtime = Runtime(root=root, config=config, low_level=low_level)
        made.append(runtime)
        return runtime

    yield build
    for runtime in made:
        runtime.cleanup()
