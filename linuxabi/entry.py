"""The ``linuxabi`` command's first step: a ``run`` goes to the warm server that
``LINUXABI_SERVER`` names (see linuxabi/server.py), anything else to the full CLI.

This module is the client's whole cost, so it imports only what the interpreter has already
loaded or builds in C (_socket, _signal, resource): ``socket`` and ``signal`` alone would add
~10 ms for their enums. When the server cannot be reached the run goes the cold way, unchanged.
"""
from __future__ import annotations

import os
import sys

SERVER_ENV = "LINUXABI_SERVER"
# The request: a 4-byte length, then length-prefixed fields (see pack_fields); with it, as
# SCM_RIGHTS, the caller's fds 0-2 that are open and its working directory (O_PATH).
# The reply: READY once the translator has taken the request on (before that, a server that
# goes away leaves nothing run, and the client runs cold), then one byte, the exit status.
READY = b"R"
NO_STATUS = 256  # what the client reads when the translator ended without sending a status
FORWARDED = (2, 15, 1, 3, 10, 12, 28, 18)  # INT TERM HUP QUIT USR1 USR2 WINCH CONT: the supervisor's list
ENDING = (2, 15, 1, 3, 10, 12)  # those whose default action ends a process


def pack_fields(fields: list[bytes]) -> bytes:
    return b"".join(len(f).to_bytes(4, "little") + f for f in fields)


def unpack_fields(data: bytes) -> list[bytes]:
    fields, at = [], 0
    while at < len(data):
        n = int.from_bytes(data[at:at + 4], "little")
        fields.append(data[at + 4:at + 4 + n])
        at += 4 + n
    return fields


def request_fields(argv: list[str], open_std: list[int]) -> list[bytes]:
    """What the translator needs of this process to act as it would: argv, environment,
    umask, resource limits, CPU affinity (`taskset`) and nice value, and which of fds 0-2
    are open (a bitmask)."""
    import resource

    mask = current_umask()
    limits = b";".join(b"%d,%d,%d" % (r, *resource.getrlimit(r)) for r in rlimit_kinds())
    env = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in os.environ.items()]
    cpus = b",".join(b"%d" % c for c in sorted(os.sched_getaffinity(0)))
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    fields = [b"%d" % len(argv), *(os.fsencode(a) for a in argv), b"%d" % len(env), *env,
              b"%d" % mask, limits, cpus, b"%d" % nice, b"%d" % sum(1 << fd for fd in open_std)]
    return fields


def rlimit_kinds() -> list[int]:
    """Every resource limit this system's Python knows (what a process passes on to a child)."""
    import resource

    return sorted({getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_")})


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def run_on_server(path: str, argv: list[str]) -> int | None:
    """The guest's exit status, or None when no server took the run (run it cold)."""
    import _signal
    import _socket

    open_std = [fd for fd in (0, 1, 2) if _is_open(fd)]  # before our own fds can take a free one
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    # From now on our signals go to the translator (it reads them once its guest may run);
    # one that would end us, before the server took the run on, ends us as it would have.
    forwarded: list[int] = []
    ready: list[bool] = []

    def forward(signo: int, _frame: object) -> None:
        if not ready and signo in ENDING:
            raise _Interrupted(signo)
        forwarded.append(signo)
        try:
            conn.send(bytes([signo]))
        except OSError:
            pass

    old = {signo: _signal.signal(signo, forward) for signo in FORWARDED}
    body = pack_fields(request_fields(argv, open_std))
    cwd = os.open(".", os.O_PATH | os.O_CLOEXEC)
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (*open_std, cwd))
    try:
        conn.sendmsg([len(body).to_bytes(4, "little"), body], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        reply = conn.recv(1)
    except OSError:
        reply = b""
    except _Interrupted as e:  # (a translator that took the run sees us go, and ends it)
        conn.close()
        _end_by(e.signo)
    finally:
        os.close(cwd)
    if reply != READY:  # not a server of ours, or it went away before it took the run on
        conn.close()
        for signo, handler in old.items():
            _signal.signal(signo, handler)
        return None
    ready.append(True)
    status = _wait_status(conn)
    if status == NO_STATUS and forwarded:  # ended by the signal we passed on: end the same way
        _end_by(forwarded[-1])
    return status


class _Interrupted(Exception):
    def __init__(self, signo: int) -> None:
        super().__init__(signo)
        self.signo = signo


def _end_by(signo: int) -> None:
    import _signal

    for s in FORWARDED:
        _signal.signal(s, _signal.SIG_DFL)
    os.kill(os.getpid(), signo)
    os._exit(128 + signo)  # (if it was held: the status a shell would show)


def _wait_status(conn) -> int:  # noqa: ANN001 - a _socket.socket
    """The status byte, as soon as it comes (the translator's own exit is not waited for)."""
    try:
        reply = conn.recv(1)
    except OSError:
        reply = b""
    return reply[0] if reply else NO_STATUS


def entry() -> None:
    """The console script."""
    path = os.environ.get(SERVER_ENV)
    if path and sys.argv[1:2] == ["run"]:
        status = run_on_server(path, sys.argv[1:])
        if status is not None:
            if status == NO_STATUS:
                sys.stderr.write("linuxabi: the warm server's translator ended without an exit status\n")
                status = 70
            os._exit(status)
    from .cli import entry as cli_entry

    cli_entry()
