"""Fixtures every test area may use: the simulated GPU host; and the session's clean-up of what
the shims it starts leave on the host."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import pytest
from hypothesis import settings

if TYPE_CHECKING:
    from simulator.testing import SimHost

# CI (CI=true) replays the same examples on every run, so a red CI always reproduces; a developer's
# run explores new ones each time (and keeps failures in .hypothesis/ to replay).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

SimHostFactory = Callable[..., "SimHost"]
"""``factory(topology, faults=(), nvc_version=None) -> SimHost`` (see ``sim_host_factory``)."""


@pytest.fixture(scope="session")
def sim_host_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's compile cache: each topology/nvc version compiles once per session."""
    return tmp_path_factory.mktemp("sim-cache")


@pytest.fixture(scope="session")
def sim_host_factory(tmp_path_factory: pytest.TempPathFactory,
                     sim_host_cache: Path) -> SimHostFactory:
    """Build a simulated host in a new directory on every call, with exactly ``faults``
    active. Libraries come from the session's compile cache, so only the first host of each
    topology/nvc version compiles (about 2 s); later ones cost tens of milliseconds."""
    from simulator.testing import build_host

    root = tmp_path_factory.mktemp("sim-hosts")
    built = [0]

    def factory(topology: str, faults: Sequence[str] = (),
                nvc_version: Optional[str] = None) -> SimHost:
        built[0] += 1
        return build_host(topology, root / f"host{built[0]}", faults, nvc_version,
                          cache_dir=sim_host_cache)

    return factory


@pytest.fixture(scope="session", autouse=True)
def config_cache_left_clean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every shim the tests run (in-process and as a command) caches its validated config under
    /run/gpu-container-shim/config-cache, keyed by the config's path: one entry per temporary
    config. The session removes the entries it made, so the host's cache does not grow."""
    from session_cleanup import remove_session_cache_entries

    from gpu_core import config as config_mod

    cache_dir = Path(config_mod.CACHE_DIR)
    try:
        before = set(os.listdir(cache_dir))
    except OSError:
        before = set()
    yield
    remove_session_cache_entries(cache_dir, before, [tmp_path_factory.getbasetemp()])
