"""The spec hook's hand-read command line (spec_hook.argv)."""

from __future__ import annotations

import pytest

from spec_hook import argv


def test_repeated_options_keep_every_value_in_order() -> None:
    repeated, _ = argv.split(["--folder", "/a", "--gpu", "0000:07:00.0", "--folder=/b"])
    assert repeated["--folder"] == ["/a", "/b"]
    assert repeated["--gpu"] == ["0000:07:00.0"]


def test_proc_file_repeats_in_either_spelling() -> None:
    repeated, _ = argv.split(["--proc-file", "capabilities/mig/config",
                              "--proc-file=capabilities/mig/monitor"])
    assert repeated["--proc-file"] == ["capabilities/mig/config", "capabilities/mig/monitor"]


def test_the_usage_names_proc_file() -> None:
    assert "[--proc-file REL]..." in argv.USAGE and "  --proc-file REL " in argv.USAGE


def test_a_single_option_keeps_its_last_value() -> None:
    _, single = argv.split(["--ldconfig", "/x", "--ldconfig=/sbin/ldconfig"])
    assert single == {"--ldconfig": "/sbin/ldconfig"}


def test_a_value_may_start_with_dashes() -> None:
    _, single = argv.split(["--driver-version", "--folder"])
    assert single == {"--driver-version": "--folder"}


def test_an_option_without_its_value_is_refused() -> None:
    with pytest.raises(argv.ArgvError, match="argument --link: expected one argument"):
        argv.split(["--link"])


@pytest.mark.parametrize("item", ["--fold", "positional", "-f", "--folder-x=/a"])
def test_an_unknown_item_is_refused_by_name(item: str) -> None:
    with pytest.raises(argv.ArgvError, match=f"unrecognized arguments: {item}"):
        argv.split([item, "/a"])


@pytest.mark.parametrize("item", ["-h", "--help"])
def test_help_is_asked_for(item: str) -> None:
    with pytest.raises(argv.HelpRequested):
        argv.split(["--folder", "/a", item])


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "3601", "ten"])
def test_a_timeout_outside_an_hour_or_not_a_number_is_refused(text: str) -> None:
    with pytest.raises(argv.ArgvError, match=f"invalid timeout value: '{text}'"):
        argv.timeout(text)


def test_a_timeout_within_an_hour_is_seconds() -> None:
    assert argv.timeout("2.5") == 2.5
