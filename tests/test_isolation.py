"""A guest sees only its image, its own processes, and gets its declared errno for the rest."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from oracle import REPO, run_native, run_translated


def test_guest_sees_only_its_image(image_copy: Path) -> None:
    (image_copy / "home" / "guest-only").mkdir()
    r = run_translated(["sh", "-c", "ls /home; echo --; ls -a /root; echo --; ls /proc/1/root"], image_copy)
    assert r.returncode == 0, r.stderr
    home, root, proc_root = r.stdout.decode().split("--\n")
    assert home.split() == ["guest-only"]
    assert sorted(root.split()) == sorted([".", ".."] + os.listdir(image_copy / "root"))
    assert sorted(proc_root.split()) == sorted(p for p in os.listdir(image_copy))


def test_guest_pids_are_namespace_pids(image_copy: Path, tmp_path: Path) -> None:
    argv = ["sh", "-c", "echo $$; cat /proc/self/status; echo --; cat /proc/1/cmdline | tr '\\0' ' '; "
            "echo; ls /proc | grep -E '^[0-9]+$' | sort -n | head -1"]
    native = tmp_path / "native"
    shutil.copytree(image_copy, native, symlinks=True)
    n = run_native(argv, native)
    native_name = [ln for ln in n.stdout.decode().splitlines() if ln.startswith("Name:")][0]
    r = run_translated(argv, image_copy)
    assert r.returncode == 0, r.stderr
    first, rest = r.stdout.decode().split("--\n")
    lines = first.splitlines()
    assert lines[0] == "1"  # the guest's init
    status = dict(line.split(":\t", 1) for line in lines[1:] if ":\t" in line)
    assert int(status["Pid"]) > 1 and int(status["PPid"]) == 1  # cat is sh's child
    assert status["TracerPid"].strip() == "0"  # the supervisor is not visible
    assert "Name:\t" + status["Name"] == native_name  # as Linux names it (busybox execs /proc/self/exe)
    cmdline, lowest = rest.splitlines()[:2]
    assert cmdline.startswith("sh -c")
    assert lowest == "1"


def test_denied_and_unknown_syscalls_are_counted_by_trace(image_copy: Path, tmp_path: Path) -> None:
    src = tmp_path / "probe.c"
    src.write_text(r'''
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
    long r = syscall(999);                       /* no such syscall */
    printf("999 %ld %d\n", r, errno);
    r = syscall(SYS_mount, "none", "/mnt", "tmpfs", 0, 0);  /* denied: EPERM */
    printf("mount %ld %d\n", r, errno);
    r = syscall(SYS_io_uring_setup, 1, 0);        /* denied: EPERM */
    printf("io_uring %ld %d\n", r, errno);
    return 0;
}
''')
    subprocess.run(["gcc", "-O1", "-static", "-o", str(image_copy / "probe"), str(src)], check=True)
    r = subprocess.run([sys.executable, "-m", "linuxabi", "trace", "--root", str(image_copy), "--", "/probe"],
                       capture_output=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["999 -1 38", "mount -1 1", "io_uring -1 1"]
    trace = r.stderr.decode()
    assert re.search(r"mount\(.*\) = -1 EPERM", trace)
    # summary rows: calls, errors, denied, name
    counts = {m.group(4): (int(m.group(1)), int(m.group(3))) for m in
              re.finditer(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\S+)$", trace, re.M)}
    assert counts["mount"] == (1, 1) and counts["io_uring_setup"] == (1, 1)
    assert counts["syscall_999"] == (1, 1)


def test_proc_mounts_lists_the_sandbox_mounts(image_copy: Path) -> None:
    r = run_translated(["sh", "-c", "cat /proc/mounts; echo --; cat /proc/self/mounts"], image_copy)
    assert r.returncode == 0, r.stderr
    mounts, self_mounts = r.stdout.decode().split("--\n")
    points = {line.split()[1]: line.split()[2] for line in mounts.splitlines()}
    assert points == {"/": "overlay", "/tmp": "tmpfs", "/dev": "devtmpfs", "/proc": "proc"}
    assert self_mounts == mounts


HOST_FILE_GUEST = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <fcntl.h>
int main(void) {
    /* Its stdout is a host file (the launcher's redirection), not a file of its image: that
     * file's metadata, and its content as a program, are not the guest's. */
    char *argv[] = {"x", 0};
    long a = fchmod(1, 0777); int ea = errno;
    long b = fchown(1, 0, 0); int eb = errno;
    long c = syscall(SYS_execveat, 1, "", argv, environ, AT_EMPTY_PATH); int ec = errno;
    long d = execv("/proc/self/fd/1", argv); int ed = errno;
    dprintf(2, "fchmod %ld %s|fchown %ld %s|fexecve %ld %s|execve %ld %s\n", a, strerror(ea), b,
            strerror(eb), c, strerror(ec), d, strerror(ed));
    return 0;
}
"""


def test_a_host_file_the_guest_was_given_stays_the_hosts(image_copy: Path, tmp_path: Path) -> None:
    """A guest's inherited fds may be host files: fchmod/fchown on them are refused (they run
    natively only on the guest's own memfds, pipes and sockets), and they cannot be exec'd."""
    src = tmp_path / "g.c"
    src.write_text(HOST_FILE_GUEST)
    subprocess.run(["gcc", "-O1", "-static", "-o", str(image_copy / "g"), str(src)], check=True)
    host = tmp_path / "host-program"
    shutil.copy(image_copy / "bin" / "busybox", host)
    os.chmod(host, 0o700)
    before = os.stat(host)
    content = host.read_bytes()
    with open(host, "r+b") as out:
        r = subprocess.run([sys.executable, "-m", "linuxabi", "run", "--root", str(image_copy), "--", "/g"],
                           stdout=out, stderr=subprocess.PIPE, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stderr.decode().strip() == ("fchmod -1 Operation not permitted|fchown -1 Operation not permitted|"
                                         "fexecve -1 Permission denied|execve -1 Permission denied")
    after = os.stat(host)
    assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid, before.st_gid)
    assert host.read_bytes() == content
