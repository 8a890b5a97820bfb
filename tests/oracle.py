"""Runners for a guest command under linuxabi and natively in a chroot of the same image
(Linux is the oracle), and a tree hash that any write to an image changes. (A module of its own:
test directories with their own conftest.py would shadow these if they lived in conftest.)"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUEST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
             "HOSTNAME": "linuxabi"}


def run_translated(argv: list[str], root: Path | None = None, *, input: bytes | None = None,
                   timeout: float = 60, extra: list[str] | None = None,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    cmd = [sys.executable, "-m", "linuxabi", "run"]
    if root is not None:
        cmd += ["--root", str(root)]
    cmd += extra or []
    cmd += ["--", *argv]
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, cwd=REPO, env=full_env)


# The oracle is Linux as a container gives it: a chroot of the image in fresh mount and pid
# namespaces (the command is pid 1, as under linuxabi), with /proc, a tmpfs /tmp and the same
# /dev entries linuxabi's devfs has.
_NATIVE = ('mkdir -p "$0/proc" "$0/tmp" "$0/dev" && mount -t proc proc "$0/proc" && mount -t tmpfs -o mode=1777 tmpfs "$0/tmp" && '
           'mount -t tmpfs -o mode=755 tmpfs "$0/dev" && '
           'for d in null zero full random urandom tty; do touch "$0/dev/$d" && mount --bind "/dev/$d" "$0/dev/$d"; done && '
           'ln -s /proc/self/fd "$0/dev/fd" && ln -s /proc/self/fd/0 "$0/dev/stdin" && '
           'ln -s /proc/self/fd/1 "$0/dev/stdout" && ln -s /proc/self/fd/2 "$0/dev/stderr" && '
           'mkdir "$0/dev/pts" "$0/dev/shm" && exec chroot "$0" "$@"')


def run_native(argv: list[str], root: Path, *, input: bytes | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """The same command run natively in a chroot of a scratch copy of the same image."""
    cmd = ["unshare", "--mount", "--pid", "--fork", "--propagation", "private",
           "/bin/sh", "-c", _NATIVE, str(root), *argv]
    return subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, env=GUEST_ENV)


def tree_hash(root: Path) -> str:
    """Content, modes, times, link targets of every entry: any write to the image changes it."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            s = os.lstat(p)
            h.update(f"{os.path.relpath(p, root)} {s.st_mode} {s.st_size} {s.st_mtime_ns} {s.st_nlink}\n".encode())
            if os.path.islink(p):
                h.update(os.readlink(p).encode())
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def compile_static(src: Path, exe: Path) -> Path:
    """A C test program, built static (gcc comes with `make test`): the guest's image has no
    libc of its own to link against."""
    r = subprocess.run(["gcc", "-static", "-O1", "-o", str(exe), str(src)], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()[-300:]
    return exe
