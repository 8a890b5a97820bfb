"""Start the guest's first process in fresh namespaces, under the filter and the tracer.

The child is created with a raw clone(2) so that it is pid 1 of a new pid namespace and owns
new user, mount, net, ipc and uts namespaces. Its host root becomes an empty tmpfs that only
the translator writes (it stages the ELF interpreters the kernel loads by path, see interp.py):
every guest path syscall is trapped, so anything that slipped past the filter finds nothing. It sets no_new_privs, installs the filter
(with a notification listener the supervisor takes with pidfd_getfd) and then calls execve
on the guest path — which traps like every later exec and is carried out from the VFS.

Where it is built (``make setup``), the child becomes linuxabi-launcher (launcher.c) as soon as
its id maps and tracer are there, and does all of that in C: the guest's exec then starts from
a small process rather than a copy of the translator (~0.6 ms less per run). Else the same steps
run here in Python.
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
        _enter_root(go_r, scratch)
        _start(path, argv, env, fd_w, prog, tty, (go_r,))
    except BaseException as e:  # noqa: BLE001 - nothing may escape the child
        _fail(fd_w, e)


def _fail(fd_w: int, e: BaseException) -> None:
    try:
        os.write(fd_w, struct.pack("=i", -(getattr(e, "errno", None) or 1)))
    finally:
        os._exit(126)


def _enter_root(go_r: int, scratch: str) -> None:
    """Once the tracer is attached: make an empty tmpfs our root, and bring up loopback."""
    os.read(go_r, 1)  # wait: maps written, tracer attached
    # A launcher whose parent dies (a warm server's spare that ends while it waits) dies too.
    raw_syscall(NR["prctl"], F.PR_SET_PDEATHSIG, signal.SIGKILL)
    ms_rec_private = F.MS_REC | F.MS_PRIVATE
    _mount(b"", b"/", b"", ms_rec_private)
    _mount(b"linuxabi", scratch.encode(), b"tmpfs", F.MS_NOSUID | F.MS_NODEV, b"size=64m,mode=0755")
    os.chdir(scratch)
    raw_syscall(NR["pivot_root"], *_cstrs(b".", b"."))
    raw_syscall(NR["umount2"], *_cstrs(b"."), F.MNT_DETACH)
    os.chdir("/")
    _loopback_up()


def _start(path: bytes, argv: list[bytes], env: list[bytes], fd_w: int, prog: bytes, tty: bool,
           also_open: tuple[int, ...]) -> None:
    """Install the filter and exec the guest (which traps); never returns."""
    # Its own process group: a guest's kill(0, sig) or kill(-pgrp, sig) must not reach the
    # CLI's. Not its own session unless it gets a terminal (-t): a new session is a new
    # scheduler autogroup, and wake-ups across groups made every trapped call ~2x slower.
    if tty:
        os.setsid()
    else:
        os.setpgid(0, 0)
    master = _setup_tty() if tty else -1
    raw_syscall(NR["prctl"], F.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    for sig in _FORWARDED_DEFAULTS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    env_map = dict(e.split(b"=", 1) for e in env if b"=" in e)
    lo = 3
    for keep in sorted(k for k in (*also_open, fd_w, master) if k >= 3):
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
           tty: bool = False, features: frozenset[str] = frozenset()) -> Launched:
    # Compiled before cloning: after pivot_root the child can load nothing.
    prog = build_filter(trace_denied, features)
    prepared, _prepared[:] = _prepared[:1], []
    if prepared:
        try:
            return prepared[0].start(path, argv, env, prog, tty)
        except OSError:  # it died while it waited: start afresh
            prepared[0].discard()
    if _c_launcher() is not None:
        return prepare().start(path, argv, env, prog, tty)
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
        pidfd = _attach(pid, go_w)
        return _launched(pid, pidfd, fd_r)
    except BaseException:
        _kill(pid)
        raise
    finally:
        try:
            os.rmdir(scratch)
        except OSError:
            pass


def _attach(pid: int, go_w: int) -> int:
    """Map the child's ids, trace it, and let it go on; returns its pidfd."""
    _write_id_maps(pid)
    ptrace.seize(pid)
    pidfd = raw_syscall(NR["pidfd_open"], pid, 0)
    os.write(go_w, b"g")
    os.close(go_w)
    return pidfd


def _launched(pid: int, pidfd: int, fd_r: int) -> Launched:
    """Wait for the child's filter; take its listener (and its pty's master, with -t)."""
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


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


# ---- launchers made ahead (a warm server's spare, linuxabi/server.py) ------------------------

_prepared: list["Prepared"] = []  # the one the next launch() uses, if any


@dataclass
class Prepared:
    """A launcher already in its new namespaces, its root pivoted, traced by us: what to run
    (and the caller's fds 0-2, limits, umask, CPUs and nice value, which it did not inherit
    when it was made) comes later through ``sock``."""
    pid: int
    pidfd: int
    sock: "object"  # a socket.socket, our end
    status_r: int
    in_c: bool  # linuxabi-launcher (its request: fields, as it says), else the Python one (marshal)

    def start(self, path: bytes, argv: list[bytes], env: list[bytes], prog: bytes, tty: bool) -> Launched:
        import marshal
        import resource
        import socket

        from linuxabi.entry import current_umask, pack_fields, rlimit_kinds

        limits = [(r, *resource.getrlimit(r)) for r in rlimit_kinds()]
        std = [fd for fd in (0, 1, 2) if _inherited(fd)]
        cpus = sorted(os.sched_getaffinity(0))
        nice = os.getpriority(os.PRIO_PROCESS, 0)
        if self.in_c:
            spec = pack_fields([path, b"%d" % len(argv), *argv, b"%d" % len(env), *env, prog, b"%d" % tty,
                                b";".join(b"%d,%d,%d" % lim for lim in limits), b"%d" % current_umask(),
                                b",".join(b"%d" % c for c in cpus), b"%d" % nice, b",".join(b"%d" % fd for fd in std)])
        else:
            spec = marshal.dumps((path, argv, env, prog, tty, limits, current_umask(), cpus, nice, std))
        fds = struct.pack(f"={len(std)}i", *std)
        self.sock.sendmsg([struct.pack("=I", len(spec)), spec],  # type: ignore[attr-defined]
                          [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)] if std else [])
        self.sock.close()  # type: ignore[attr-defined]
        try:
            return _launched(self.pid, self.pidfd, self.status_r)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        try:
            self.sock.close()  # type: ignore[attr-defined]
        except OSError:
            pass
        _kill(self.pid)
        for fd in (self.pidfd, self.status_r):
            try:
                os.close(fd)
            except OSError:
                pass


def prepare() -> Prepared:
    """Make a launcher ahead of need; keep it with keep_prepared() for the next launch()."""
    import marshal  # noqa: F401 - loaded now: the launcher can load nothing once in its root
    import resource  # noqa: F401
    import socket

    scratch = make_private_dir(tmp_dir(), "linuxabi-root-")
    in_c = _c_launcher()
    go_r, go_w = os.pipe()
    fd_r, fd_w = os.pipe()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    pid = raw_syscall(NR["clone"], _NS_FLAGS | signal.SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        try:
            os.close(go_w)
            os.close(fd_r)
            ours.close()
            if in_c is not None:
                _exec_c_launcher(in_c, go_r, theirs.fileno(), fd_w, scratch)
            _enter_root(go_r, scratch)
            theirs.sendall(b"r")
            _take_spec(theirs, fd_w, go_r)
        except BaseException as e:  # noqa: BLE001 - nothing may escape the child
            _fail(fd_w, e)
    os.close(go_r)
    os.close(fd_w)
    theirs.close()
    try:
        pidfd = _attach(pid, go_w)
        if ours.recv(1) != b"r":
            raise RuntimeError("guest launcher died before entering its root")
        return Prepared(pid, pidfd, ours, fd_r, in_c is not None)
    except BaseException:
        ours.close()
        os.close(fd_r)
        _kill(pid)
        raise
    finally:
        try:
            os.rmdir(scratch)
        except OSError:
            pass


def _c_launcher() -> str | None:
    """linuxabi-launcher's path, where it is built (linuxabi/host/launcher_build.py)."""
    if not _c_launcher_state:
        from . import launcher_build

        _c_launcher_state.append(str(launcher_build.TARGET) if launcher_build.built() else None)
    return _c_launcher_state[0]


_c_launcher_state: list[str | None] = []  # (looked for once a process)


def _exec_c_launcher(program: str, go_r: int, sock: int, fd_w: int, scratch: str) -> None:
    """In the child: once the tracer and the id maps are there (our exec keeps the namespace's
    capabilities only then), become linuxabi-launcher; never returns."""
    os.read(go_r, 1)
    os.set_inheritable(sock, True)
    os.set_inheritable(fd_w, True)
    os.execv(program, [program, str(sock), str(fd_w), scratch])


def keep_prepared(prepared: Prepared) -> None:
    for old in _prepared:
        old.discard()
    _prepared[:] = [prepared]


def _take_spec(sock, fd_w: int, go_r: int) -> None:  # noqa: ANN001 - a socket.socket
    """In a prepared launcher: wait for what to run, become the caller's, and start it."""
    import marshal
    import resource
    import socket

    head, anc, _flags, _addr = sock.recvmsg(4, socket.CMSG_SPACE(3 * 4))
    if len(head) < 4:
        os._exit(0)  # nobody will come: our maker went away
    fds: list[int] = []
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += struct.unpack(f"={len(data) // 4}i", data[:len(data) - len(data) % 4])
    (size,) = struct.unpack("=I", head)
    spec = b""
    while len(spec) < size:
        chunk = sock.recv(size - len(spec))
        if not chunk:
            os._exit(0)
        spec += chunk
    path, argv, env, prog, tty, limits, umask, cpus, nice, std = marshal.loads(spec)
    for target, fd in zip(std, fds):
        os.dup2(fd, target)
    for target in {0, 1, 2} - set(std):
        try:
            os.close(target)
        except OSError:
            pass
    for which, soft, hard in limits:
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            pass
    os.umask(umask)
    os.sched_setaffinity(0, cpus)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:
        pass
    _start(path, argv, env, fd_w, prog, tty, (go_r,))


def _inherited(fd: int) -> bool:
    """Whether a launcher cloned now would give ``fd`` to the guest: open and not
    close-on-exec (with 0-2 closed, our own fds may take those numbers, close-on-exec)."""
    try:
        return not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    except OSError:
        return False
