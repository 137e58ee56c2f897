"""Reading the lease store without the lock: tolerant of what a killed writer leaves, never
following a planted link."""

from __future__ import annotations

import json
from pathlib import Path

from lease_records import make_lease, mig, put

from leases import files as lease_files


class TestRead:
    def test_missing_directory_is_an_empty_store(self, tmp_path: Path) -> None:
        """No directory yet: no leases, no problems."""
        assert lease_files.read_all(str(tmp_path / "none")) == lease_files.Snapshot(leases=())

    def test_half_written_temp_and_bad_files_are_reported(self, tmp_path: Path) -> None:
        """Temp files and unreadable lease files are reported, good leases still read."""
        put(tmp_path, make_lease("good", (mig(0),)))
        (tmp_path / ".c2.999999999.tmp").write_text('{"form')
        (tmp_path / "broken.json").write_text("{")
        (tmp_path / "other.json").write_text(json.dumps(make_lease("else").to_json()))
        snapshot = lease_files.read_all(str(tmp_path))
        assert [lease.container_id for lease in snapshot.leases] == ["good"]
        assert snapshot.temps == (".c2.999999999.tmp",)
        assert snapshot.unreadable == ("broken.json", "other.json")
        assert snapshot.problems[0] == ("incomplete write .c2.999999999.tmp (writer pid "
                                        "999999999 gone)")
        assert snapshot.problems[1] == "unreadable lease broken.json: not JSON: " \
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
        assert "holds container else, not other.json" in snapshot.problems[2]

    def test_symlinked_lease_is_not_followed(self, tmp_path: Path) -> None:
        """A lease file that is a symlink is unreadable, never followed."""
        target = tmp_path / "elsewhere"
        target.write_text(json.dumps(make_lease("c1").to_json()))
        (tmp_path / "c1.json").symlink_to(target)
        assert lease_files.read_all(str(tmp_path)).unreadable == ("c1.json",)
