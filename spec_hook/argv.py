"""The spec hook's command line, read without argparse: argparse (with gettext, shutil and its
formatter) was a third of the hook's start time, and this argv is a handful of long options.

Each option takes one value, as ``--name VALUE`` or ``--name=VALUE``; ``--folder``, ``--link``,
``--gpu`` and ``--proc-file`` repeat, the others keep their last value (argparse's rule).
Messages follow argparse's wording so an engineer who knows one knows the other.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_TIMEOUT = 3600.0

REPEATED = ("--folder", "--link", "--gpu", "--proc-file")
SINGLE = ("--driver-version", "--cuda-compat-dir", "--proc-driver", "--ldconfig", "--timeout")

USAGE = """\
usage: gpu-container-spec-hook [--folder DIR]... [--link TARGET::LINK]...
                               [--driver-version VERSION] [--cuda-compat-dir DIR]
                               [--proc-driver HOSTDIR] [--gpu BUSID]... [--proc-file REL]...
                               [--ldconfig HOSTPATH] [--timeout SECONDS]

Spec mode's createContainer hook: /proc/driver/nvidia, .so link names, CUDA forward
compatibility and the ld cache of a container. Reads the OCI state on stdin.

  --folder DIR            container directory of driver libraries for ldconfig (repeatable)
  --link TARGET::LINK     create the symlink LINK -> TARGET in the container (repeatable)
  --driver-version VERSION
                          host driver version; enables CUDA forward compatibility
  --cuda-compat-dir DIR   container directory of the CUDA compat libraries
                          (default /usr/local/cuda/compat)
  --proc-driver HOSTDIR   host /proc/driver/nvidia to seed the container's from
  --gpu BUSID             PCI bus id whose gpus/ entry the container gets (repeatable)
  --proc-file REL         HOSTDIR file under capabilities/ bound read-only at the same
                          path in the container's /proc/driver/nvidia (repeatable)
  --ldconfig HOSTPATH     the host's static ldconfig (default /sbin/ldconfig)
  --timeout SECONDS       deadline for all the work (default 10)
"""


class ArgvError(Exception):
    """A command line the hook refuses; the text names the option."""


class HelpRequested(Exception):
    """``--help`` or ``-h``: print USAGE and exit 0."""


def split(argv: Sequence[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(repeated options -> their values in order, single options -> their last value)."""
    repeated: dict[str, list[str]] = {name: [] for name in REPEATED}
    single: dict[str, str] = {}
    items = list(argv)
    index = 0
    while index < len(items):
        item = items[index]
        index += 1
        if item in ("-h", "--help"):
            raise HelpRequested()
        name, sep, value = item.partition("=")
        if name not in REPEATED and name not in SINGLE:
            raise ArgvError(f"unrecognized arguments: {item}")
        if not sep:
            if index >= len(items):
                raise ArgvError(f"argument {name}: expected one argument")
            value = items[index]
            index += 1
        if name in repeated:
            repeated[name].append(value)
        else:
            single[name] = value
    return repeated, single


def timeout(text: str) -> float:
    """``--timeout``'s value: seconds, more than 0 and at most an hour."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= MAX_TIMEOUT:
        raise ArgvError(f"argument --timeout: invalid timeout value: {text!r}")
    return value
