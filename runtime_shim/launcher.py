"""Install the commands engines run: ``gpu-container-runtime`` and ``gpu-container-hook``.

Both start Python isolated and without ``site`` (``-I -S``): site processing and the ``.pth``
files of a site-packages directory cost about a third of the interpreter's start-up, and ``-I``
keeps the caller's PYTHON* variables out of a root process. The import path is therefore fixed
here, at install time, from the interpreter that runs this.

The runtime is a shell script (launcher.sh) so that pass-through commands never start Python;
the hook always needs Python, so it is a Python script whose ``#!`` line carries ``-IS``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from collections.abc import Sequence
from typing import Optional

from runtime_shim import fastpath

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launcher.sh")
MODULES = {"runtime": "runtime_shim.main", "hook": "hook.main"}


def default_paths() -> list[str]:
    """The directory holding our packages, then this interpreter's site directories."""
    import runtime_shim

    ours = os.path.dirname(os.path.dirname(os.path.abspath(runtime_shim.__file__)))
    sites = [p for p in sys.path
             if os.path.basename(p) in ("site-packages", "dist-packages") and os.path.isdir(p)]
    return [ours, *[p for p in sites if p != ours]]


def entry_code(paths: Sequence[str], module: str, state_dir: str = fastpath.STATE_DIR) -> str:
    """Python source that fixes the import path, then runs ``module``'s ``main``."""
    lines = ["import sys", f"sys.path[:0] = {json.dumps(list(paths))}"]
    if state_dir != fastpath.STATE_DIR:
        lines += ["from runtime_shim import fastpath",
                  f"fastpath.STATE_DIR = {json.dumps(state_dir)}"]
    lines += [f"from {module} import main", "sys.exit(main())"]
    return "\n".join(lines)


def set_line(text: str, name: str, value: str) -> str:
    """Replace the one ``NAME=...`` line of the template."""
    pattern = re.compile(rf"^{name}=.*$", re.MULTILINE)
    if len(pattern.findall(text)) != 1:
        raise ValueError(f"launcher template: expected one {name}= line")
    return pattern.sub(lambda _: f"{name}={shlex.quote(value)}", text)


def render_runtime(python: str, paths: Sequence[str], state_dir: str = fastpath.STATE_DIR,
                   template: str = TEMPLATE) -> str:
    """The shell launcher of the runtime for ``python`` and import ``paths``."""
    with open(template, encoding="utf-8") as stream:
        text = stream.read()
    text = set_line(text, "PYTHON", python)
    text = set_line(text, "PYCODE", entry_code(paths, MODULES["runtime"], state_dir))
    text = set_line(text, "TRIGGERS", "|".join(fastpath.CREATE_TRIGGERS))
    return set_line(text, "STATE", state_dir)


def render_hook(python: str, paths: Sequence[str]) -> str:
    """The hook as a Python script run by ``python -IS`` straight from its ``#!`` line."""
    if any(c.isspace() for c in python) or len(python) > 200:
        raise ValueError(f"hook launcher: {python!r} cannot go on a #! line")
    return (f"#!{python} -IS\n"
            "# gpu-container-hook, written by runtime_shim.launcher: isolated, no site.\n"
            + entry_code(paths, MODULES["hook"]) + "\n")


def install(kind: str, dest: str, python: Optional[str] = None,
            paths: Optional[Sequence[str]] = None,
            state_dir: str = fastpath.STATE_DIR) -> str:
    """Write the ``kind`` (runtime or hook) launcher to ``dest``, mode 0755, atomically."""
    python = python or sys.executable
    paths = default_paths() if paths is None else paths
    if kind == "runtime":
        text = render_runtime(python, paths, state_dir)
    elif kind == "hook":
        text = render_hook(python, paths)
    else:
        raise ValueError(f"unknown launcher kind {kind!r}; expected runtime or hook")
    fastpath.replace_file(dest, text.encode("utf-8"), 0o755)
    return dest


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m runtime_shim.launcher runtime|hook DEST``: install for this interpreter."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in MODULES:
        sys.stderr.write("usage: python -m runtime_shim.launcher runtime|hook DEST\n")
        return 2
    install(args[0], args[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
