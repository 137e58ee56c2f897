"""gpu-ctk's dispatcher: the subcommand table, lazy imports and one-line usage errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ctk import main as ctk_main


def test_every_subcommand_module_has_the_interface() -> None:
    """Each table row names a module exposing add_arguments and run."""
    import importlib

    for module, _ in ctk_main.SUBCOMMANDS.values():
        loaded = importlib.import_module(module)
        assert callable(loaded.add_arguments) and callable(loaded.run)


def test_help_imports_no_subcommand() -> None:
    """Top-level help lists the subcommands without importing their modules."""
    script = ("import sys; from ctk import main\n"
              "try:\n    main.main(['--help'])\nexcept SystemExit:\n    pass\n"
              "print(sorted(m for m in sys.modules if m.startswith(('ctk.', 'simulator'))))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    assert "simulate" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "['ctk.main']"


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["simulate", "--bogus"]])
def test_usage_error_is_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A usage error is one `gpu-ctk: usage: ...` line and exit status 2."""
    with pytest.raises(SystemExit) as caught:
        ctk_main.main(argv)
    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert err.startswith("gpu-ctk: usage: ") and err.count("\n") == 1


def test_version_prints_ours(capsys: pytest.CaptureFixture[str]) -> None:
    """gpu-ctk --version is not a usage error: one line, exit 0."""
    from gpu_core.about import VERSION

    with pytest.raises(SystemExit) as info:
        ctk_main.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"gpu-ctk version {VERSION}\n"


CLOSED_READER = ["--help", "leases --help", "cdi --help", "doctor --help", "simulate --help",
                 "--version", "doctor", "leases list"]


@pytest.mark.parametrize("args", CLOSED_READER)
def test_closed_output_is_a_quiet_exit(args: str) -> None:
    """`gpu-ctk ... | head -1`: the reader closes the pipe early; no traceback, no message."""
    script = ("import sys\nfrom ctk.main import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    reader = subprocess.Popen([sys.executable, "-c", script, *args.split()],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.close()  # closed before the first write: every write meets EPIPE
    err = reader.stderr.read()
    status = reader.wait()
    assert (status, err) == (0, b"")
