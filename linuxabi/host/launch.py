"""Start the guest's first process in fresh namespaces, under the filter and the tracer.

The child is created with a raw clone(2) so that it is pid 1 of a new pid namespace and owns
new user, mount, net, ipc and uts namespaces. Its host root becomes an empty tmpfs that only
the translator writes (it stages the ELF interpreters the kernel loads by path, see interp.py):
every guest path syscall is trapped, so anything that slipped past the filter finds nothing. It sets no_new_privs, installs the filter
(with a notification listener the supervisor takes with pidfd_getfd) and then calls execve
on the guest path — which traps like every later exec and is carried out from the VFS.
"""
from __future__ import annotations

import fcntl
import os
import signal
import struct
from dataclasses import dataclass

from linuxabi.abi import flags as F
from linuxabi.abi import x86_64
from vfs.scratch import make_private_dir, tmp_dir

from . import ptrace
from .filter import build_filter
from .libc import address_of, raw_syscall

NR = x86_64.NR
_NS_FLAGS = (
    F.CLONE_NEWUSER | F.CLONE_NEWPID | F.CLONE_NEWNS | F.CLONE_NEWNET | F.CLONE_NEWIPC | F.CLONE_NEWUTS
)
_FILTER_FLAGS = F.SECCOMP_FILTER_FLAG_NEW_LISTENER | F.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
_FORWARDED_DEFAULTS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM,
                       signal.SIGHUP, signal.SIGCHLD, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


@dataclass
class Launched:
    host_pid: int
    pidfd: int
    listener_fd: int
    status_fd: int  # readable: EOF once the first exec succeeded, or 4 bytes of errno if it failed
    pty_master: int = -1  # with tty=True: the master of the guest's terminal (its stdio)
    pts_dir: str = ""  # with tty=True: the sandbox's own devpts instance, as the host reaches it

PTS_DIR = "pts"  # where the child mounts its private devpts instance, in its host root


def _setup_tty() -> int:
    """A private devpts instance; the guest's stdio becomes a new pty's slave, and its
    controlling terminal (it leads a new session). Returns the master (close-on-exec)."""
    os.mkdir(PTS_DIR, 0o755)
    _mount(b"devpts", b"/" + PTS_DIR.encode(), b"devpts", F.MS_NOSUID | F.MS_NOEXEC,
           b"newinstance,ptmxmode=0666,mode=0620")
    master = os.open(f"/{PTS_DIR}/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, F.TIOCSPTLCK, struct.pack("=i", 0))
    (num,) = struct.unpack("=I", fcntl.ioctl(master, F.TIOCGPTN, b"\0" * 4))
    slave = os.open(f"/{PTS_DIR}/{num}", os.O_RDWR | os.O_NOCTTY)
    fcntl.ioctl(slave, F.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
    return master


def _child(path: bytes, argv: list[bytes], env: list[bytes], go_r: int, fd_w: int, scratch: str,
           prog: bytes, tty: bool) -> None:
    """Runs in the new namespaces; never returns."""
    try:
        os.read(go_r, 1)  # wait: maps written, tracer attached
        ms_rec_private = F.MS_REC | F.MS_PRIVATE
        _mount(b"", b"/", b"", ms_rec_private)
        _mount(b"linuxabi", scratch.encode(), b"tmpfs", F.MS_NOSUID | F.MS_NODEV, b"size=64m,mode=0755")
        os.chdir(scratch)
        raw_syscall(NR["pivot_root"], *_cstrs(b".", b"."))
        raw_syscall(NR["umount2"], *_cstrs(b"."), F.MNT_DETACH)
        os.chdir("/")
        _loopback_up()
        # Its own process group: a guest's kill(0, sig) or kill(-pgrp, sig) must not reach the
        # CLI's. Not its own session unless it gets a terminal (-t): a new session is a new
        # scheduler autogroup, and wake-ups across groups made every trapped call ~2x slower.
        if tty:
            os.setsid()
        else:
            os.setpgid(0, 0)
        master = _setup_tty() if tty else -1
        raw_syscall(NR["prctl"], F.PR_SET_PDEATHSIG, signal.SIGKILL)
        raw_syscall(NR["prctl"], F.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        for sig in _FORWARDED_DEFAULTS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        env_map = dict(e.split(b"=", 1) for e in env if b"=" in e)
        lo = 3
        for keep in sorted(k for k in (go_r, fd_w, master) if k >= 3):
            os.closerange(lo, keep)
            lo = keep + 1
        os.closerange(lo, 65536)
        fprog = bytearray(struct.pack("=HxxxxxxQ", len(prog) // 8, 0))
        keep_prog, prog_addr = address_of(bytearray(prog))
        struct.pack_into("=Q", fprog, 8, prog_addr)
        keep_fprog, fprog_addr = address_of(fprog)
        listener = raw_syscall(NR["seccomp"], F.SECCOMP_SET_MODE_FILTER, _FILTER_FLAGS, fprog_addr)
        os.write(fd_w, struct.pack("=ii", listener, master))
        try:
            os.execve(path, argv, env_map)  # traps; the supervisor execs from the VFS
        except OSError as e:
            os.write(fd_w, struct.pack("=i", e.errno or 0))
        os._exit(127)
    except BaseException as e:  # noqa: BLE001 - nothing may escape the child
        try:
            os.write(fd_w, struct.pack("=i", -(getattr(e, "errno", None) or 1)))
        finally:
            os._exit(126)


def _loopback_up() -> None:
    """The sandbox's network namespace gets its loopback interface up (and nothing else): the
    guest's sockets talk to each other there."""
    fd = raw_syscall(NR["socket"], F.AF_INET, F.SOCK_DGRAM | F.SOCK_CLOEXEC, 0)
    try:
        req = struct.pack("=16sH22x", b"lo", 0)
        (flags,) = struct.unpack_from("=H", fcntl.ioctl(fd, F.SIOCGIFFLAGS, req), 16)
        fcntl.ioctl(fd, F.SIOCSIFFLAGS, struct.pack("=16sH22x", b"lo", flags | F.IFF_UP))
    finally:
        os.close(fd)


_keep: list[object] = []


def _cstrs(*items: bytes) -> list[int]:
    out = []
    for item in items:
        buf = bytearray(item + b"\0")
        keep, addr = address_of(buf)
        _keep.append(keep)
        _keep.append(buf)
        out.append(addr)
    return out


def _mount(src: bytes, target: bytes, fstype: bytes, mflags: int, data: bytes = b"") -> None:
    s, t, f, d = _cstrs(src, target, fstype, data)
    raw_syscall(NR["mount"], s if src else 0, t, f if fstype else 0, mflags, d if data else 0)


def _write_id_maps(pid: int) -> None:
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        # Root outside: guest ids map 1:1 but all its capabilities are namespace-local.
        maps = ("0 0 65536\n", "0 0 65536\n")
    else:
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
        maps = (f"0 {uid} 1\n", f"0 {gid} 1\n")
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write(maps[0])
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write(maps[1])


def launch(path: bytes, argv: list[bytes], env: list[bytes], *, trace_denied: bool = False,
           tty: bool = False) -> Launched:
    # Compiled before cloning: after pivot_root the child can load nothing.
    prog = build_filter(trace_denied)
    scratch = make_private_dir(tmp_dir(), "linuxabi-root-")
    go_r, go_w = os.pipe()
    fd_r, fd_w = os.pipe()
    pid = raw_syscall(NR["clone"], _NS_FLAGS | signal.SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        os.close(go_w)
        os.close(fd_r)
        _child(path, argv, env, go_r, fd_w, scratch, prog, tty)
    os.close(go_r)
    os.close(fd_w)
    try:
        _write_id_maps(pid)
        ptrace.seize(pid)
        pidfd = raw_syscall(NR["pidfd_open"], pid, 0)
        os.write(go_w, b"g")
        os.close(go_w)
        raw = os.read(fd_r, 8)
        if len(raw) < 4:
            raise RuntimeError("guest launcher died before installing its filter")
        (num,) = struct.unpack_from("=i", raw)
        if num < 0:
            raise OSError(-num, f"guest set-up failed: {os.strerror(-num)}")
        (master_num,) = struct.unpack_from("=i", raw, 4)
        listener = raw_syscall(NR["pidfd_getfd"], pidfd, num, 0)
        os.set_inheritable(listener, False)
        if master_num < 0:
            return Launched(pid, pidfd, listener, fd_r)
        # The child is parked in its trapped execve until we serve it: its master is still open.
        master = raw_syscall(NR["pidfd_getfd"], pidfd, master_num, 0)
        return Launched(pid, pidfd, listener, fd_r, master, f"/proc/{pid}/root/{PTS_DIR}")
    except BaseException:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
        raise
    finally:
        try:
            os.rmdir(scratch)
        except OSError:
            pass
