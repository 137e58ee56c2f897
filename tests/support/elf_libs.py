"""Tiny real ELF shared objects for tests that need ldconfig to index a library by SONAME."""

from __future__ import annotations

import subprocess
from pathlib import Path


def build_shared_library(path: Path, soname: str) -> Path:
    """Compile an empty shared object with ``soname`` at ``path`` (gcc)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    source = path.with_name(path.name + ".c")
    source.write_text("int gpu_container_test_symbol(void) { return 0; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(path),
                    str(source)], check=True)
    source.unlink()
    return path


def cache_entries(cache: Path) -> list[str]:
    """The library paths an ld.so.cache names, in the cache's order (the host's ldconfig -p)."""
    listing = subprocess.run(["/sbin/ldconfig", "-p", "-C", str(cache)], capture_output=True,
                             text=True, check=True).stdout
    return [line.rsplit(" => ", 1)[1] for line in listing.splitlines() if " => " in line]


PROBE_SOURCE = r"""
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    FILE *out = fopen("/probe-report", "w");
    int envc = 0;
    if (out == NULL) return 3;
    for (char **e = environ; *e != NULL; ++e) envc++;
    fprintf(out, "env %d\nsession %d\nfds", envc, getsid(0) == getpid());
    for (int fd = 0; fd < 4096; ++fd)
        if (fcntl(fd, F_GETFD) >= 0 && fileno(out) != fd) fprintf(out, " %d", fd);
    fprintf(out, "\nargv");
    for (int i = 0; i < argc; ++i) fprintf(out, " %s", argv[i]);
    fprintf(out, "\n");
    return fclose(out) == 0 ? 0 : 4;
}
"""


def build_static_probe(path: Path) -> Path:
    """A static executable standing in for ldconfig: writes /probe-report (as its root sees
    it) with its environment size, whether it leads its session, its open fds and argv."""
    source = path.with_name(path.name + ".c")
    source.write_text(PROBE_SOURCE)
    subprocess.run(["gcc", "-static", "-o", str(path), str(source)], check=True)
    source.unlink()
    return path


PRELOAD_SOURCE = r"""
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void) {
    int fd = open(MARKER, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) { (void)write(fd, "loaded\n", 7); close(fd); }
}
"""


def build_preload_marker(directory: Path) -> tuple[Path, Path]:
    """(library, marker): a shared object that appends ``loaded`` to ``marker`` in every
    process that loads it, checked here to work under ``LD_PRELOAD`` (the marker is left
    absent)."""
    marker = directory / "preloaded"
    source = directory / "evil.c"
    source.write_text(PRELOAD_SOURCE)
    library = directory / "evil.so"
    subprocess.run(["gcc", "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(library),
                    str(source)], check=True)
    subprocess.run(["/bin/true"], env={"LD_PRELOAD": str(library)}, check=True)
    assert marker.read_text() == "loaded\n"  # the library works when it is preloaded
    marker.unlink()
    return library, marker

