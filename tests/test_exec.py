"""Exec resolved in the VFS: static ELF, #! scripts, the errors Linux gives, argv/envp, cloexec."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from oracle import run_native, run_translated

SETUP = r"""
printf 'garbage\n' > /tmp/garbage; chmod +x /tmp/garbage
printf '#!/bin/sh\necho script "$0" "$@"\n' > /tmp/s.sh; chmod +x /tmp/s.sh
printf '#!/bin/echo with-arg\n' > /tmp/e.sh; chmod +x /tmp/e.sh
printf '#!/nonexistent/interp\n' > /tmp/noint.sh; chmod +x /tmp/noint.sh
printf '#!/bin/sh\necho no exec bit\n' > /tmp/nox.sh; chmod 644 /tmp/nox.sh
mkdir /tmp/dir
"""
CHECKS = r"""
/tmp/s.sh one 'two words'; echo "rc=$?"
/tmp/e.sh x y; echo "rc=$?"
cd /tmp && ./s.sh rel; echo "rc=$?"; cd /
/tmp/garbage 2>&1; echo "rc=$?"
/tmp/noint.sh 2>&1; echo "rc=$?"
/tmp/nox.sh 2>&1; echo "rc=$?"
/tmp/dir 2>&1; echo "rc=$?"
/tmp/missing 2>&1; echo "rc=$?"
env -i A=1 B=2 /usr/bin/env; echo "rc=$?"
exec 7</etc/passwd; ls /proc/self/fd/7 >/dev/null 2>&1 && echo fd7-inherited
sh -c 'echo $0 $1 $2' zero one two
"""


def test_exec_matches_native(image_copy: Path, tmp_path: Path) -> None:
    native = tmp_path / "native"
    shutil.copytree(image_copy, native, symlinks=True)
    script = SETUP + CHECKS
    t = run_translated(["sh", "-c", script], image_copy)
    n = run_native(["sh", "-c", script], native)
    assert t.stdout.decode() == n.stdout.decode(), t.stderr
    out = t.stdout.decode()
    assert "script /tmp/s.sh one two words" in out
    assert "with-arg /tmp/e.sh x y" in out
    assert "A=1\nB=2\n" in out


def test_close_on_exec_is_honoured(image_copy: Path, tmp_path: Path) -> None:
    """open(O_CLOEXEC) is answered with an fd injected close-on-exec; the kernel's exec closes it."""
    src = tmp_path / "cloexec.c"
    src.write_text(r"""
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(void) {
    int a = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
    int b = open("/etc/group", O_RDONLY);
    printf("fds %d %d flags %d %d\n", a, b, fcntl(a, F_GETFD), fcntl(b, F_GETFD));
    fflush(stdout);
    execl("/bin/sh", "sh", "-c",
          "for f in 3 4; do if (: <&$f) 2>/dev/null; then echo open $f; else echo closed $f; fi; done",
          (char *)0);
    return 99;
}
""")
    subprocess.run(["gcc", "-O1", "-static", "-o", str(image_copy / "cloexec"), str(src)], check=True)
    r = run_translated(["/cloexec"], image_copy)
    assert r.stdout.decode().splitlines() == ["fds 3 4 flags 1 0", "closed 3", "open 4"], r.stderr


def test_an_interpreter_is_staged_again_in_a_root_that_looks_like_a_finished_one(tmp_path: Path) -> None:
    """Sandbox roots are tmpfs mounts: a new one can have a finished one's device number (and
    the root inode number is always the same), so "staged there before" must be checked."""
    from linuxabi.host.interp import stage_into

    root = tmp_path / "root"
    root.mkdir()
    src = tmp_path / "ld.so"
    src.write_bytes(b"\x7fELF" + bytes(100))
    fd = os.open(src, os.O_RDONLY)
    try:
        stage_into(str(root).encode(), b"/lib64/ld-linux-x86-64.so.2", fd)
        staged = root / "lib64" / "ld-linux-x86-64.so.2"
        assert staged.read_bytes() == src.read_bytes()
        shutil.rmtree(root / "lib64")  # the same root identity, now without the file
        stage_into(str(root).encode(), b"/lib64/ld-linux-x86-64.so.2", fd)
        assert staged.read_bytes() == src.read_bytes()
    finally:
        os.close(fd)
