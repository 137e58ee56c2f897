"""Releasing a container's lease at the three moments a lease ends: poststop, the shim's
delete, and a failed create."""

from __future__ import annotations

from pathlib import Path

import pytest
from lease_records import Host, make_lease, mig, put

from leases.files import read_all
from leases.interface import After
from leases.release import release


class TestPoststop:
    def test_release_removes_and_returns(self, tmp_path: Path) -> None:
        """poststop removes the container's lease and returns it."""
        put(tmp_path, make_lease("c1", (mig(0),)))
        assert release(str(tmp_path), "c1", "poststop") is not None
        assert read_all(str(tmp_path)).leases == ()

    @pytest.mark.parametrize("after", ["poststop", "delete", "failed-create"])
    def test_release_without_lease_or_store(self, tmp_path: Path, after: After) -> None:
        """Releasing what does not exist is a quiet None, whatever the moment."""
        assert release(str(tmp_path / "none"), "c1", after) is None
        assert release(str(tmp_path), "c1", after) is None

    def test_unreadable_file_naming_only_itself_goes(self, tmp_path: Path) -> None:
        """The container is being destroyed: an unreadable file under its id goes with it."""
        tmp_path.chmod(0o700)
        (tmp_path / "c1.json").write_text("{")
        assert release(str(tmp_path), "c1", "poststop") is None
        assert not (tmp_path / "c1.json").exists()


class TestDelete:
    def test_keeps_a_container_the_runtime_still_knows(self, tmp_path: Path) -> None:
        """After a failed delete the runtime still knows the container: the lease stays."""
        put(tmp_path, make_lease("c1", (mig(0),)))
        assert release(str(tmp_path), "c1", "delete", observer=Host(known=("c1",))) is None
        assert release(str(tmp_path), "c1", "delete", observer=Host()) is not None
        assert not (tmp_path / "c1.json").exists()


class TestFailedCreate:
    def test_only_takes_this_process_lease(self, tmp_path: Path) -> None:
        """A failed create releases the lease it took, never another start's."""
        put(tmp_path, make_lease("c1", (mig(0),), pid=200))
        assert release(str(tmp_path), "c1", "failed-create", pid=100) is None
        assert release(str(tmp_path), "c1", "failed-create", pid=200) is not None

    def test_never_removes_an_unreadable_file(self, tmp_path: Path) -> None:
        """This process never wrote an unreadable file, so a failed create leaves it."""
        tmp_path.chmod(0o700)
        (tmp_path / "c1.json").write_text("{")
        assert release(str(tmp_path), "c1", "failed-create") is None
        assert (tmp_path / "c1.json").exists()
