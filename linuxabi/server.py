"""`linuxabi serve`: a warm server that forks a ready translator for each `linuxabi run`.

A cold `linuxabi run` spends most of its ~0.15 s before the guest starts: the interpreter,
~80 ms of imports, building the argument parser and the default policy. The server pays that
once. A spare child, forked ahead, takes each client (linuxabi/entry.py): it takes on the
client's fds 0-2, working directory, environment, umask, resource limits, CPU affinity and nice
value, runs the ordinary CLI with the client's argv, and sends the exit status back; signals
the client receives are passed on. While it waits, the spare has already made the guest's
launcher (its namespaces and root: launch.prepare) and parsed the default policy.

A warm run is exact or it is not warm: a client in other cgroups, or with a limit, CPU set or
nice value the child cannot take on, gets no READY and runs cold. The guest leads a session of
its own (as a cold one without -t does); only the server's user may connect.
"""
from __future__ import annotations

import errno
import gc
import os
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from . import hotpages
from .codewatch import CodeWatch
from .host import placement
from .entry import FORWARDED, READY, SERVER_ENV, unpack_fields

_MAX_REQUEST = 16 << 20


def default_socket_path() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "linuxabi" / "server.sock"


def serve(path: Path, spares: int = 1, keep_roots: "list[str] | tuple[str, ...]" = ()) -> int:
    """Listen at ``path`` until SIGINT or SIGTERM; guests already running finish undisturbed.

    ``spares`` children wait in accept() at any time, already forked and warmed: a client's
    run pays neither the fork of this large process nor the first touches of its pages
    (copy-on-write faults, ~3.5 µs each: a spare copies ahead the pages that the runs before
    it wrote, linuxabi/hotpages.py). Each reports on a pipe when it takes a client, and
    another is forked in its place once that run is over, or RUN_GRACE into it, or at once
    when a client waits (_Pacing says why). ``keep_roots``: image directories read once, as
    the default image is, for the runs given them with --root."""
    _open_std()
    listener = _listen(path)
    _warm(keep_roots)
    gc.freeze()  # the collector of a child never walks (so never copies) what all children share
    stop: list[int] = []

    def on_stop(signo: int, _frame: object) -> None:
        stop.append(signo)

    old = {s: signal.signal(s, on_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    taken_r, taken_w = os.pipe2(os.O_CLOEXEC)
    # The pages each served child wrote (linuxabi/hotpages.py); a report that does not fit is
    # dropped, never waited for.
    hot_r, hot_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    hot: list[hotpages.Run] = []
    idle: set[int] = set()
    busy_cpu = -1  # the CPU the client taken last runs on (placement.claim_home)
    pacing = _Pacing()
    sys.stderr.write(f"linuxabi: serving at {path}; clients run warm with {SERVER_ENV}={path}\n")
    sys.stderr.flush()
    try:
        while not stop:
            owed = len(idle) < spares
            if owed and (pacing.make_now() or _client_waiting(listener)):
                while len(idle) < spares:
                    idle.add(_fork_spare(listener, taken_w, taken_r, old, hot, hot_w, busy_cpu, keep_roots))
                owed = False
            # (With a spare owed: woken by the end of a new run, or by a client that waits.)
            watched = [taken_r, hot_r, *pacing.fds(), *([listener] if owed else [])]
            try:
                readable, _, _ = select.select(watched, [], [], pacing.timeout(1.0) if owed else 1.0)
            except InterruptedError:
                continue
            pacing.ended(readable)
            if hot_r in readable:
                hot = _learn(hot, hot_r)
            if taken_r in readable:
                data = os.read(taken_r, 4096)
                for i in range(0, len(data) - 7, 8):
                    pid = int.from_bytes(data[i:i + 4], sys.byteorder)
                    busy_cpu = int.from_bytes(data[i + 4:i + 8], sys.byteorder, signed=True)
                    if pid == _CODE_CHANGED:
                        sys.stderr.write("linuxabi: linuxabi's code changed since this server started: "
                                         "stopping (clients run cold; start it again)\n")
                        stop.append(0)
                    elif pid in idle:
                        pacing.taken(pid)
                    idle.discard(pid)
            idle -= _reap()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        # Idle spares return from accept() with EINVAL and end; clients already taken run on.
        try:
            listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        listener.close()
        for fd in (taken_r, taken_w, hot_r, hot_w):
            os.close(fd)
        pacing.close()
        # Until they have: our end would kill them (their parent-death signal) before they
        # remove what they built ahead.
        _await_ended(idle, IDLE_END_WAIT)
    return 0


IDLE_END_WAIT = 2.0  # seconds a stopping server waits for its idle spares to end


def _await_ended(pids: set[int], longest: float) -> None:
    deadline = time.monotonic() + longest
    left = set(pids)
    while left and time.monotonic() < deadline:
        for pid in list(left):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    left.discard(pid)
            except ChildProcessError:
                left.discard(pid)
        if left:
            time.sleep(0.005)


RUN_GRACE = 0.5  # seconds a new run has the CPUs to itself (unless a client waits)
BACK_TO_BACK = 0.05  # a client taken this soon after the run before ended: clients come back to back


class _Pacing:
    """When to make the spare that replaces one taken: once the run that took it is over (or
    RUN_GRACE into it), so that it does not take CPU from that run; at once while clients
    come back to back, so that the next one does not wait for it; and at once when a client
    waits. Making a spare is ~13 ms of CPU (fork, the launcher, the sandbox built ahead, the
    pages copied ahead): alongside a short run on two CPUs it made that run 2-4 ms slower
    (warm `seq 20000 | wc -l`, runs 50 ms apart: 14.5-14.7 ms against 12.7-13.0)."""

    def __init__(self) -> None:
        self._until: dict[int, float] = {}  # a new run's pidfd -> when its grace ends
        self._last_end = float("-inf")  # when a new run last ended
        self.back_to_back = False

    def taken(self, pid: int) -> None:
        """Spare ``pid`` took a client."""
        now = time.monotonic()
        self.back_to_back = now - self._last_end < BACK_TO_BACK
        try:
            fd = os.pidfd_open(pid)
        except OSError:  # (already reaped: that run is over)
            self._last_end = now
            return
        self._until[fd] = now + RUN_GRACE

    def make_now(self) -> bool:
        if self.back_to_back:
            return True
        now = time.monotonic()
        for fd in [fd for fd, until in self._until.items() if until <= now]:
            self._drop(fd)
        return not self._until

    def fds(self) -> list[int]:
        return list(self._until)

    def timeout(self, longest: float) -> float:
        now = time.monotonic()
        return max(0.0, min([longest, *(until - now for until in self._until.values())]))

    def ended(self, readable: list) -> None:
        for fd in readable:
            if fd in self._until:
                self._drop(fd)
                self._last_end = time.monotonic()

    def close(self) -> None:
        for fd in list(self._until):
            self._drop(fd)

    def _drop(self, fd: int) -> None:
        del self._until[fd]
        os.close(fd)


def _learn(hot: "list[hotpages.Run]", hot_r: int) -> "list[hotpages.Run]":
    """``hot`` and the pages that the reports waiting on ``hot_r`` name."""
    try:
        data = os.read(hot_r, 1 << 16)
    except BlockingIOError:
        return hot
    return hotpages.merge(hot + hotpages.decode_all(data))


def _fork_spare(listener: socket.socket, taken_w: int, taken_r: int, handlers: dict,
                hot: "list[hotpages.Run]", hot_w: int, busy_cpu: int,
                keep_roots: "list[str] | tuple[str, ...]") -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        os.close(taken_r)
        for s, h in handlers.items():
            signal.signal(s, h)
        os.setsid()  # the server's terminal and process group are not the client's
        _set_parent_death_signal(signal.SIGKILL)  # an idle spare ends with the server
        if os.getppid() == 1:
            os._exit(0)
        shared = hotpages.writable_ranges()  # what we share with the server, as forked
        with placement.away_from(busy_cpu):  # off the CPU of the run that made us needed
            _touch()
            _prepare_launcher()
            if not _client_waiting(listener):  # (~3.5 ms here: no client waits for it)
                _make_sandbox_ahead(keep_roots[0] if keep_roots else None)
            # The pages runs have written, copied now rather than fault by fault while a client
            # waits. After the launcher's fork: until it execs, that fork shares our pages again.
            # A client that came meanwhile (runs back to back: this spare was forked when the
            # run before took the last one) is served first: copying ahead took ~4.5 ms of the
            # ~13 ms a spare needs to be ready, and such a client waited 5-10 ms for it.
            hotpages.populate(hotpages.within(hot, shared), stop=lambda: _client_waiting(listener))
        watch = _ClientWatch()
        conn = _accept(listener)
        _set_parent_death_signal(0)  # a client's translator outlives the server
        stale = _code_changed()  # then the client runs cold (new code), and the server stops
        home = placement.claim_home() if not stale else -1
        try:
            os.write(taken_w, (_CODE_CHANGED if stale else os.getpid()).to_bytes(4, sys.byteorder)
                     + home.to_bytes(4, sys.byteorder, signed=True))
        except OSError:
            pass
        os.close(taken_w)
        listener.close()
        if conn is not None and _same_user(conn) and not stale:
            code = _serve_client(conn, watch)
            _report_pages(hot_w, shared)
    except BaseException as e:  # noqa: BLE001 - a child must end here, never in the server's loop
        _report(e)
        code = 70
    _discard_ahead()
    os._exit(code)


def _report_pages(hot_w: int, shared: list[tuple[int, int]]) -> None:
    """Tell the server which of its pages this run wrote (its client already has the status)."""
    try:
        os.write(hot_w, hotpages.encode(hotpages.owned_runs(shared)))
    except OSError:  # no pagemap here, or the server has gone: the next spares copy less ahead
        pass


def _accept(listener: socket.socket) -> socket.socket | None:
    while True:
        try:
            conn, _ = listener.accept()
        except InterruptedError:
            continue
        except OSError as e:
            if e.errno == errno.EINVAL:  # the server shut the listener: it is stopping
                _discard_ahead()
                os._exit(0)
            return None
        conn.setblocking(True)
        return conn


def _set_parent_death_signal(signo: int) -> None:
    from linuxabi.abi import flags as F
    from linuxabi.abi import x86_64
    from linuxabi.host.libc import raw_syscall

    raw_syscall(x86_64.NR["prctl"], F.PR_SET_PDEATHSIG, signo)


def _report(e: BaseException) -> None:
    try:
        sys.stderr.write(f"linuxabi: {e if isinstance(e, ServerError) else repr(e)}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _open_std() -> None:
    """Fds 0-2 open (on /dev/null if need be), so that the fds a client passes land above them."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _listen(path: Path) -> socket.socket:
    """A listening socket at ``path``; ServerError (one line for the user) when there cannot be
    one. Only a socket no server answers on is replaced: any other file there is left alone."""
    try:
        return _bind(path)
    except ServerError:
        raise
    except OSError as e:
        raise ServerError(f"cannot listen at {path}: {e.strerror or e}") from None


def _bind(path: Path) -> socket.socket:
    import stat

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None:
        if not stat.S_ISSOCK(mode):
            raise ServerError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(os.fspath(path))
        except ConnectionRefusedError:  # a server that ended without removing its socket
            os.unlink(path)
        else:
            raise ServerError(f"a server already listens at {path}")
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old_mask = os.umask(0o177)  # the socket is the user's alone from its first moment
    try:
        listener.bind(os.fspath(path))
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    finally:
        os.umask(old_mask)
    return listener


class ServerError(Exception):
    pass


_CODE_CHANGED = 0  # what a spare writes on the pipe instead of its pid: see _code_changed
_code_watch: "list[CodeWatch]" = []  # the modules _warm loaded (linuxabi/codewatch.py)


def _code_changed() -> bool:
    """Whether a module file this server loaded changed since: its children would run the old code."""
    return _code_watch[0].changed() if _code_watch else False


def _warm(keep_roots: "list[str] | tuple[str, ...]" = ()) -> None:
    """Load what a run loads, so that each child starts where a cold run's guest starts."""
    import syscalls.capguard  # noqa: F401 - what every Sandbox installs (Kernel imports it late)
    import syscalls.dispatch  # noqa: F401 - the handlers and their table
    from caps.policy import default_policy
    from linuxabi import api, control, forward, terminal  # noqa: F401
    from linuxabi.cli import main_parser
    from linuxabi.host import filter as seccomp_filter
    from linuxabi.image import default_image
    from syscalls.exec import elf_verdicts
    from vfs.imagefs import keep_loaded

    main_parser()
    default_policy()
    seccomp_filter.build_filter(trace_denied=True)  # a run's (Sandbox audits refused calls)
    # The ELF verdicts of the files runs exec, read once (a child rereads the file only when
    # another run has added to it), and pyelftools for a miss (its import alone is ~25 ms).
    elf_verdicts().preload()
    import elftools.elf.elffile  # noqa: F401
    try:
        keep_loaded(default_image())  # each child's sandbox starts with its directories read
    except Exception:  # noqa: BLE001 - a run will report it; the server has no guest to fail
        pass
    for root in keep_roots:
        keep_loaded(root)
    _code_watch[:] = [CodeWatch()]


def _client_waiting(listener: socket.socket) -> bool:
    """Whether a client waits to be accepted (a spare then stops what it does ahead)."""
    return bool(select.select([listener], [], [], 0)[0])


def _touch() -> None:
    """What every run does first, done by a spare before its client comes: the pages it
    writes are copied now, not while a client waits."""
    from caps.policy import make_default_policy_ahead
    from linuxabi.cli import main_parser

    main_parser().parse_args(["run", "--", "true"])
    make_default_policy_ahead()  # (the sandbox built ahead takes it, else the run)


def _prepare_launcher() -> None:
    """The guest's first process, made now in its new namespaces (~5 ms of clone, mounts and
    pivot_root), waits for what to run; a launch that cannot use it starts afresh."""
    from linuxabi.host import launch

    try:
        launch.keep_prepared(launch.prepare())
    except Exception:  # noqa: BLE001 - the client's own launch will report what is wrong
        pass


def _make_sandbox_ahead(root: str | None) -> None:
    """The sandbox a run with default options on ``root`` (the first --keep-root, else the
    default image) takes as it is (linuxabi/ahead.py); another run builds its own."""
    from . import ahead

    try:
        ahead.make(root)
    except Exception:  # noqa: BLE001 - the client's own sandbox will report what is wrong
        pass


def _discard_ahead() -> None:
    try:
        from . import ahead

        ahead.discard()
    except Exception:  # noqa: BLE001 - ending anyway: a scratch directory left is swept later
        pass


def _peer(conn: socket.socket) -> tuple[int, int, int]:
    """The client's (pid, uid, gid), as our pid namespace sees it (pid 0: from another one)."""
    import struct

    cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", cred)


def _same_user(conn: socket.socket) -> bool:
    return _peer(conn)[1] == os.getuid()


class _NotWarm(Exception):
    """The client has something a child of ours cannot take on exactly: it runs cold."""


def _reap() -> set[int]:
    ended = set()
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.add(pid)


def _serve_client(conn: socket.socket, watch: "_ClientWatch") -> int:
    """Become the client's translator; return its guest's exit status, sent to the client."""
    try:
        argv = _take_on(conn)
    except _NotWarm:  # no READY: the client runs cold, as if no server listened
        return 0
    if argv is None:  # connected and went away (a probe): nothing to run
        return 0
    conn.send(READY)  # from here on a guest may run: the client no longer falls back to a cold run
    watch.start(conn.fileno())
    from linuxabi import ahead
    from linuxabi.cli import main

    sent: list[int] = []

    def send(code: int) -> None:
        if not sent:
            watch.finish()  # the client ends once it has the status: that is no longer a kill
            _send_status(conn, code)
            sent.append(code)
            # The client's stdio is not ours to hold while we take the sandbox down and end: a
            # caller reading the guest's output through a pipe (`$(linuxabi-run ...)`) would
            # wait for that too (~2 ms).
            _release_stdio()

    ahead.on_exit_code[:] = [send]  # the guest's status, before its sandbox is taken down
    try:
        code = main(argv) & 0xFF
        import atexit

        atexit._run_exitfuncs()
    except SystemExit as e:  # argparse's way to end on a user's mistake (already reported)
        code = e.code if isinstance(e.code, int) else 1
    send(code)
    return sent[0]


def _release_stdio() -> None:
    """Fds 0-2 on /dev/null (what a late message of ours says is lost with them)."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _send_status(conn: socket.socket, code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # AttributeError: None, a closed fd
            pass
    try:
        conn.send(bytes([code & 0xFF]))
    except OSError:
        pass


def _take_on(conn: socket.socket) -> list[str] | None:
    """Read the request; make its fds, directory, environment, umask, limits, CPUs and nice
    value ours (the guest inherits them from us, as it would from a cold `linuxabi run`).
    _NotWarm when one of them cannot be had exactly, or the client is in other cgroups."""
    head, fds = _recv_head(conn)
    if not head:
        return None
    pid, _uid, gid = _peer(conn)
    if gid != os.getegid():  # (the guest's ids are mapped from ours)
        raise _NotWarm
    _same_cgroups(pid)
    size = int.from_bytes(head[:4], "little")
    if size > _MAX_REQUEST:
        raise ServerError("request too large")
    body = bytearray(head[4:])
    while len(body) < size:
        chunk = conn.recv(min(size - len(body), 1 << 20))
        if not chunk:
            raise ServerError("client went away")
        body += chunk
    fields = unpack_fields(bytes(body))
    n_argv = int(fields[0])
    argv = [os.fsdecode(a) for a in fields[1:1 + n_argv]]
    n_env = int(fields[1 + n_argv])
    env = fields[2 + n_argv:2 + n_argv + n_env]
    mask, limits, cpus, nice, open_std = fields[2 + n_argv + n_env:]
    std = [fd for fd in (0, 1, 2) if int(open_std) >> fd & 1]
    if len(fds) != len(std) + 1:
        raise ServerError("request without its fds")
    for target, fd in zip(std, fds):  # (the server keeps 0-2 open: received fds are above)
        os.dup2(fd, target)
    for target in {0, 1, 2} - set(std):
        os.close(target)
    os.fchdir(fds[-1])
    for fd in fds:
        os.close(fd)
    _take_environment(env)
    os.umask(int(mask))
    _set_limits(limits)
    try:
        os.sched_setaffinity(0, [int(c) for c in cpus.split(b",")])
        os.setpriority(os.PRIO_PROCESS, 0, int(nice))  # (lower than ours needs a privilege)
    except OSError:
        raise _NotWarm from None
    return argv


def _take_environment(env: list[bytes]) -> None:
    """The client's environment: what differs from ours changed (a client's is mostly the
    server's: setting all of it was ~0.15 ms of each run)."""
    theirs = dict(item.partition(b"=")[::2] for item in env)
    ours = os.environb
    for k in [k for k in ours if k not in theirs]:
        del ours[k]
    for k, v in theirs.items():
        if ours.get(k) != v:
            ours[k] = v


def _recv_head(conn: socket.socket) -> tuple[bytes, list[int]]:
    msg, anc, _flags, _addr = conn.recvmsg(1 << 16, socket.CMSG_SPACE(4 * 8))
    fds: list[int] = []
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += [int.from_bytes(data[i:i + 4], sys.byteorder) for i in range(0, len(data) - len(data) % 4, 4)]
    if not msg:
        return msg, fds
    while len(msg) < 4:
        more = conn.recv(4 - len(msg))
        if not more:
            raise ServerError("client went away")
        msg += more
    return msg, fds


def _set_limits(text: bytes) -> None:
    """The client's limits, exactly (a hard limit above ours cannot be had: _NotWarm)."""
    import resource

    for item in text.split(b";"):
        which, soft, hard = (int(x) for x in item.split(b","))
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            raise _NotWarm from None


def _same_cgroups(pid: int) -> None:
    """A child of ours stays in our cgroups (moving it is a privilege the client may not have
    and the guest's resource accounting is the client's): warm only for a client in ours."""
    try:
        with open(f"/proc/{pid}/cgroup", "rb") as theirs, open("/proc/self/cgroup", "rb") as ours:
            if pid > 0 and theirs.read() == ours.read():
                return
    except OSError:
        pass
    raise _NotWarm


class _ClientWatch:
    """Signals the client forwards reach the main thread (where the supervisor waits); a client
    that goes away without its status (killed) takes the sandbox with it. The thread is started
    by a spare before its client comes (a thread's start costs a forked child ~1 ms) and waits
    for the connection."""

    def __init__(self) -> None:
        self._main_ident = threading.main_thread().ident
        self._conn_fd = -1
        self._finished = False
        self._given = threading.Lock()
        self._given.acquire()  # released once the connection is there
        # Started with every signal blocked, which it keeps: process signals go to the main thread.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals))
        try:
            threading.Thread(target=self._watch, name="linuxabi-client-watch", daemon=True).start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def start(self, conn_fd: int) -> None:
        self._conn_fd = conn_fd
        self._given.release()

    def finish(self) -> None:
        self._finished = True

    def _watch(self) -> None:
        self._given.acquire()
        while True:
            try:
                data = os.read(self._conn_fd, 64)
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno == errno.EBADF:
                    return
                data = b""
            if not data:
                if self._finished:
                    return
                os.kill(os.getpid(), signal.SIGKILL)  # the guest's init follows (PDEATHSIG)
            for signo in data:
                if signo in FORWARDED:
                    signal.pthread_kill(self._main_ident, signo)
