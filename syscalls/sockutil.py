"""What the socket handlers share: the guest's socket as a host fd of ours, socket addresses in
and out of guest memory, and the calls made on the guest's behalf without ever blocking the
translator (connect, send: parked when the guest would wait)."""
from __future__ import annotations

import ctypes
import fcntl
import os
import select
import socket
import struct
from typing import TYPE_CHECKING

from linuxabi.abi import errno as E
from linuxabi.abi import flags as F

from net.sockaddr import pack_inet

from .base import Park, Result
from .fsutil import err, s32

if TYPE_CHECKING:
    from .base import Task

SOCKADDR_MAX = 128  # sizeof(struct sockaddr_storage)
POLLOUT = select.POLLOUT

libc = ctypes.CDLL(None, use_errno=True)


def libc_call(fn, *args) -> int:  # noqa: ANN001 - a libc function; raises OSError like os.*
    r = fn(*args)
    if r < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return r


def read_sockaddr(task: "Task", addr: int, length: int) -> bytes:
    length = s32(length)
    if length < 0 or length > SOCKADDR_MAX:
        raise err(E.EINVAL)
    return task.mem.read(addr, length) if length else b""


def write_sockaddr(task: "Task", addr: int, len_addr: int, raw: bytes) -> None:
    """Copy a socket address out as Linux does: truncated to the caller's length, which is
    set to the full length."""
    if addr == 0:
        return
    (have,) = struct.unpack("=i", task.mem.read(len_addr, 4))
    if have < 0:
        raise err(E.EINVAL)
    if have:
        task.mem.write(addr, raw[:have])
    task.mem.write(len_addr, struct.pack("=i", len(raw)))


class GuestSocket:
    """The guest's socket behind a guest fd, as a host fd of ours with its family and type."""

    def __init__(self, task: "Task", fd: int) -> None:
        self.fd = task.host_fd(s32(fd))
        try:
            self.family = sockopt(self.fd, F.SO_DOMAIN)
            self.type = sockopt(self.fd, F.SO_TYPE)
        except OSError as e:
            os.close(self.fd)
            raise err(E.ENOTSOCK if e.errno == E.ENOTSOCK else e.errno or E.EBADF) from None

    @property
    def proto(self) -> str:
        # (the only raw sockets a guest may have are ICMP ones: see net.sys_socket)
        return {F.SOCK_STREAM: "tcp", F.SOCK_RAW: "icmp"}.get(self.type, "udp")

    def object(self) -> socket.socket:
        """A socket object on a dup of our fd (closing it leaves ours open)."""
        return socket.socket(fileno=os.dup(self.fd))

    def close(self) -> None:
        os.close(self.fd)


def sockopt(fd: int, name: int) -> int:
    val = ctypes.c_int(0)
    size = ctypes.c_uint32(4)
    libc_call(libc.getsockopt, fd, F.SOL_SOCKET, name, ctypes.byref(val), ctypes.byref(size))
    return val.value


def connect_parked(g: GuestSocket, raw: bytes) -> Result:
    """connect() without ever blocking the translator: a blocking guest's connect that is in
    progress is parked until the socket is writable, then finished as the kernel finishes
    it for a blocking caller."""
    flags = fcntl.fcntl(g.fd, fcntl.F_GETFL)
    code = connect_nonblocking(g.fd, raw, flags)
    # EALREADY: a blocking caller waits for the connect in progress (restarted after a signal)
    if code in (E.EINPROGRESS, E.EALREADY) and not flags & os.O_NONBLOCK:
        if select.select([], [g.fd], [], 0)[1]:  # on the loopback it is usually done already
            return connect_done(g, raw, flags)
        return Park(g.fd, lambda: connect_done(g, raw), events=POLLOUT, cancel=g.close)
    g.close()
    return -code


def connect_done(g: GuestSocket, raw: bytes, flags: int | None = None) -> Result:
    try:
        code = sockopt(g.fd, F.SO_ERROR)
        if not code:  # connect again, as a non-blocking caller would: the socket becomes
            code = connect_nonblocking(g.fd, raw, flags)  # "connected" (a third one is EISCONN)
    finally:
        g.close()
    return -code


def connect_nonblocking(fd: int, raw: bytes, flags: int | None = None) -> int:
    """connect(2) on fd as if it were non-blocking; 0 or the errno. ``flags``: the file's
    status flags, when the caller has them (None: asked here)."""
    if flags is None:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    blocking = not flags & os.O_NONBLOCK
    if blocking:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        r = libc.connect(fd, raw, len(raw))
        return ctypes.get_errno() if r < 0 else 0
    finally:
        if blocking:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags)


def send_now(task: "Task", g: GuestSocket, data: bytes, flags: int, raw: bytes) -> Result:
    """Send on the guest's behalf; a blocking socket without room waits (parked) for it.
    Never with SIGPIPE to us: the guest gets its own, as Linux would send it."""
    r = libc.sendto(g.fd, data, len(data), flags | F.MSG_DONTWAIT | F.MSG_NOSIGNAL, raw, len(raw))
    code = ctypes.get_errno() if r < 0 else 0
    if code == E.EAGAIN and not flags & F.MSG_DONTWAIT and os.get_blocking(g.fd):
        return Park(g.fd, lambda: send_now(task, g, data, flags, raw), events=POLLOUT, cancel=g.close)
    g.close()
    if code == E.EPIPE and not flags & F.MSG_NOSIGNAL:
        raise_signal = getattr(task, "raise_signal", None)
        if raise_signal is not None:
            raise_signal(13)  # SIGPIPE
    return -code if code else r


def v4(addr: tuple) -> tuple[str, int]:  # noqa: ANN001 - a socket module address
    """An (ip, port) as an IPv4 one (a v4-mapped IPv6 address unmapped)."""
    ip = addr[0]
    return (ip[7:] if ip.startswith("::ffff:") else ip, addr[1])


def pack_as(family: int, addr: tuple[str, int]) -> bytes:
    """An IPv4 (ip, port) as a socket of ``family`` names it (v4-mapped on a dual-stack one)."""
    ip = addr[0] if family == F.AF_INET or ":" in addr[0] else "::ffff:" + addr[0]
    return pack_inet(family, ip, addr[1])
