"""Socket syscalls: the control path of guest sockets (net/socklayer.py holds their state).

AF_INET sockets are the translator's (net.socklayer.GuestNet): their data moves natively
through host stand-ins, and these handlers answer what Linux would about addresses, states and
options. AF_UNIX sockets are the guest's own host sockets in its own network namespace; calls
on them that carry no name the translator must check run natively (CONTINUE).
"""
from __future__ import annotations

import os
import socket
import struct
from typing import TYPE_CHECKING

from linuxabi.abi import errno as E
from linuxabi.abi import flags as F

from net.inet_sock import (HOST_OPTIONS, InetSocket, State, fixed_option, ip_str, option_table,
                           pack_sockaddr_in, parse_sockaddr_in)

from .base import CONTINUE, InstallFd, Park, Result
from .fsutil import err, s32

if TYPE_CHECKING:
    from net.socklayer import GuestNet

    from .base import Task

Args = tuple[int, int, int, int, int, int]
_SOCKADDR_MAX = 128  # sizeof(struct sockaddr_storage)
_SOCK_FLAGS = F.SOCK_NONBLOCK | F.SOCK_CLOEXEC
_SOCK_MAX = 11  # SOCK_PACKET + 1: types at or above are EINVAL
_AF_MAX = 46
_BOOL_OPTIONS = frozenset({
    (F.SOL_SOCKET, F.SO_REUSEADDR), (F.SOL_SOCKET, F.SO_REUSEPORT), (F.SOL_SOCKET, F.SO_KEEPALIVE),
    (F.SOL_SOCKET, F.SO_BROADCAST), (F.SOL_SOCKET, F.SO_OOBINLINE), (F.SOL_SOCKET, F.SO_DONTROUTE),
    (F.IPPROTO_TCP, F.TCP_NODELAY), (F.IPPROTO_TCP, F.TCP_CORK), (F.IPPROTO_TCP, F.TCP_QUICKACK),
})
_CONGESTION = (b"cubic", b"reno")


def _net(task: "Task") -> "GuestNet":
    return task.kernel.net


def _inet(task: "Task", fd: int) -> tuple[int, InetSocket | None]:
    """(host fd, the guest AF_INET socket or None); EBADF/ENOTSOCK as Linux. Caller closes."""
    hfd = task.host_fd(s32(fd))
    try:
        sock = _net(task).lookup(hfd)
        if sock is None and not _is_socket(hfd):
            raise err(E.ENOTSOCK)
    except BaseException:
        os.close(hfd)
        raise
    return hfd, sock


def _is_socket(hfd: int) -> bool:
    import stat

    return stat.S_ISSOCK(os.fstat(hfd).st_mode)


def _read_sockaddr(task: "Task", addr: int, length: int) -> bytes:
    length = s32(length)
    if length < 0 or length > _SOCKADDR_MAX:
        raise err(E.EINVAL)
    return task.mem.read(addr, length) if length else b""


def _write_sockaddr(task: "Task", addr: int, len_addr: int, raw: bytes) -> None:
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


def _authorize(task: "Task", op: str, sock: InetSocket, addr: int, port: int) -> None:
    task.kernel.authorize_net(op, sock.proto_name, ip_str(addr), port)


# ---- socket, bind, listen, accept, connect ------------------------------------------------


def sys_socket(task: "Task", a: Args) -> Result:
    domain, type_, proto = s32(a[0]), s32(a[1]), s32(a[2])
    base, flags = type_ & 0xF, type_ & ~0xF
    if flags & ~_SOCK_FLAGS:
        raise err(E.EINVAL)
    if domain < 0 or domain >= _AF_MAX:
        raise err(E.EAFNOSUPPORT)
    if base < 1 or base >= _SOCK_MAX:
        raise err(E.EINVAL)
    if domain == F.AF_UNIX:
        return CONTINUE  # made in the guest's own network namespace: names are checked at bind/connect
    if domain != F.AF_INET:
        raise err(E.EAFNOSUPPORT)  # IPv6, netlink, packet: not in this sandbox (yet)
    if base == F.SOCK_STREAM:
        if proto not in (0, F.IPPROTO_TCP):
            raise err(E.EPROTONOSUPPORT)
    elif base == F.SOCK_DGRAM:
        if proto not in (0, F.IPPROTO_UDP, F.IPPROTO_ICMP):
            raise err(E.EPROTONOSUPPORT)
        raise err(E.EPROTONOSUPPORT if proto != F.IPPROTO_ICMP else E.EACCES)  # UDP: not yet
    elif base == F.SOCK_RAW:
        raise err(E.EPERM)
    else:
        raise err(E.ESOCKTNOSUPPORT)
    fd = _net(task).new_socket(base, bool(flags & F.SOCK_NONBLOCK))
    return InstallFd(fd, bool(flags & F.SOCK_CLOEXEC))


def sys_bind(task: "Task", a: Args) -> Result:
    raw = _read_sockaddr(task, a[1], a[2])
    hfd, sock = _inet(task, a[0])
    try:
        if sock is None:
            return _unix_name_call(hfd, raw, "bind")
        addr, port = parse_sockaddr_in(raw, allow_unspec=True)
        if sock.local is not None:
            raise err(E.EINVAL)
        _authorize(task, "bind", sock, addr, port)
        _net(task).bind(sock, addr, port)
        return 0
    finally:
        os.close(hfd)


def sys_listen(task: "Task", a: Args) -> Result:
    hfd, sock = _inet(task, a[0])
    try:
        if sock is None:
            return CONTINUE
        if sock.type != F.SOCK_STREAM:
            raise err(E.EOPNOTSUPP)
        local = sock.local
        _net(task).listen(sock, hfd, s32(a[1]))
        if local is None and sock.local is not None:
            local = sock.local
        if local is not None:
            _authorize(task, "listen", sock, *local)
        return 0
    finally:
        os.close(hfd)


def sys_accept(task: "Task", a: Args) -> Result:
    return _accept(task, a[0], a[1], a[2], 0)


def sys_accept4(task: "Task", a: Args) -> Result:
    return _accept(task, a[0], a[1], a[2], s32(a[3]))


def _accept(task: "Task", fd: int, addr: int, len_addr: int, flags: int) -> Result:
    if flags & ~_SOCK_FLAGS:
        raise err(E.EINVAL)
    hfd, sock = _inet(task, fd)
    if sock is None:
        os.close(hfd)
        return CONTINUE
    if sock.state != State.LISTEN:
        os.close(hfd)
        raise err(E.EINVAL)
    if addr:  # Linux consumes the connection and then fails; failing first loses nothing
        try:
            (have,) = struct.unpack("=i", task.mem.read(len_addr, 4))
        except OSError:
            os.close(hfd)
            raise
        if have < 0:
            os.close(hfd)
            raise err(E.EINVAL)
    return _accept_now(task, sock, hfd, addr, len_addr, flags)


def _accept_now(task: "Task", sock: InetSocket, hfd: int, addr: int, len_addr: int, flags: int) -> Result:
    net = _net(task)
    try:
        conn_fd, peer = net.accept(sock, hfd, bool(flags & F.SOCK_NONBLOCK))
    except OSError as e:
        if e.errno == E.EAGAIN and os.get_blocking(hfd):
            return Park(hfd, lambda: _accept_now(task, sock, hfd, addr, len_addr, flags))
        os.close(hfd)
        raise
    os.close(hfd)
    try:
        _write_sockaddr(task, addr, len_addr, pack_sockaddr_in(*peer))
    except OSError:
        os.close(conn_fd)
        raise
    return InstallFd(conn_fd, bool(flags & F.SOCK_CLOEXEC))


def sys_connect(task: "Task", a: Args) -> Result:
    raw = _read_sockaddr(task, a[1], a[2])
    hfd, sock = _inet(task, a[0])
    try:
        if sock is None:
            return _unix_name_call(hfd, raw, "connect")
        if len(raw) < 2:
            raise err(E.EINVAL)
        if struct.unpack_from("=H", raw)[0] == F.AF_UNSPEC:
            return 0  # "disconnect": nothing to undo for a socket that never connected
        if sock.state != State.CLOSED:
            raise err(E.EISCONN)
        addr, port = parse_sockaddr_in(raw)
        _authorize(task, "connect", sock, addr, port)
        _net(task).connect(sock, hfd, addr, port)
        return 0
    finally:
        os.close(hfd)


def _unix_name_call(hfd: int, raw: bytes, op: str) -> Result:
    """bind/connect on a guest AF_UNIX socket: abstract names (its own network namespace's)
    and autobind run here on the host socket; names in the filesystem are not served yet."""
    if len(raw) < 2:
        raise err(E.EINVAL)
    (family,) = struct.unpack_from("=H", raw)
    with socket.socket(fileno=os.dup(hfd)) as s:
        if s.family != socket.AF_UNIX:
            raise err(E.EOPNOTSUPP)
        if family != F.AF_UNIX:
            raise err(E.EINVAL if op == "bind" else E.EAFNOSUPPORT)
        name = raw[2:]
        if op == "bind" and not name:
            s.bind(b"")  # autobind: an abstract name of the kernel's choosing
            return 0
        if not name or name[0] != 0:
            raise err(E.EACCES)  # filesystem names need the VFS's socket nodes
        if op == "bind":
            s.bind(name)
            return 0
        blocking = os.get_blocking(hfd)
        if blocking:
            os.set_blocking(hfd, False)
        try:
            code = s.connect_ex(name)
        finally:
            if blocking:
                os.set_blocking(hfd, True)
        if code in (E.EINPROGRESS, E.EAGAIN) and blocking:
            code = E.EAGAIN
        if code:
            raise err(code)
        return 0


# ---- names -----------------------------------------------------------------------------------


def sys_getsockname(task: "Task", a: Args) -> Result:
    hfd, sock = _inet(task, a[0])
    try:
        if sock is not None:
            raw = sock.sockname()
        else:
            with socket.socket(fileno=os.dup(hfd)) as s:
                if s.family != socket.AF_INET:
                    return CONTINUE
                local = _net(task).host_name(s.getsockname())
            if local is None:
                return CONTINUE
            raw = pack_sockaddr_in(*local)
    finally:
        os.close(hfd)
    _write_sockaddr(task, a[1], a[2], raw)
    return 0


def sys_getpeername(task: "Task", a: Args) -> Result:
    hfd, sock = _inet(task, a[0])
    os.close(hfd)
    if sock is None:
        return CONTINUE
    _write_sockaddr(task, a[1], a[2], sock.peername())
    return 0


# ---- options ---------------------------------------------------------------------------------


def sys_setsockopt(task: "Task", a: Args) -> Result:
    hfd, sock = _inet(task, a[0])
    os.close(hfd)
    level, name, optlen = s32(a[1]), s32(a[2]), s32(a[4])
    key = (level, name)
    if sock is None or sock.host_tcp or key in HOST_OPTIONS:
        return CONTINUE
    if fixed_option(sock, level, name) is not None:
        raise err(E.ENOPROTOOPT)
    table = option_table(sock)
    if key not in table:
        if level == F.SOL_SOCKET:
            return CONTINUE  # generic socket options: the host object's own
        raise err(E.ENOPROTOOPT)
    default, minimum = table[key]
    if optlen < minimum:
        raise err(E.EINVAL)
    value = task.mem.read(a[3], min(optlen, len(default)))
    if key == (F.IPPROTO_TCP, F.TCP_CONGESTION):
        algo = value.split(b"\0", 1)[0]
        if algo not in _CONGESTION:
            raise err(E.ENOENT)
        value = algo.ljust(16, b"\0")
    elif len(default) == 4:
        (v,) = struct.unpack("=i", value.ljust(4, b"\0")[:4]) if len(value) >= 4 else (value[0],)
        if key in _BOOL_OPTIONS:
            v = int(v != 0)
        elif key == (F.IPPROTO_IP, F.IP_TTL):
            if v == -1:
                v = 64
            elif not 1 <= v <= 255:
                raise err(E.EINVAL)
        value = struct.pack("=i", v)
    sock.options[key] = value
    return 0


def sys_getsockopt(task: "Task", a: Args) -> Result:
    hfd, sock = _inet(task, a[0])
    os.close(hfd)
    level, name = s32(a[1]), s32(a[2])
    key = (level, name)
    if sock is None or sock.host_tcp or key in HOST_OPTIONS:
        return CONTINUE
    fixed = fixed_option(sock, level, name)
    table = option_table(sock)
    if fixed is not None:
        value = struct.pack("=i", fixed)
    elif key in table:
        value = sock.options.get(key, table[key][0])
    elif level == F.SOL_SOCKET:
        return CONTINUE
    else:
        raise err(E.ENOPROTOOPT)
    (have,) = struct.unpack("=i", task.mem.read(a[4], 4))
    if have < 0:
        raise err(E.EINVAL)
    n = min(have, len(value))
    task.mem.write(a[3], value[:n])
    task.mem.write(a[4], struct.pack("=i", n))
    return 0


# ---- sendto with an address (without one it runs natively) --------------------------------

_SEND_CHUNK = 1 << 20


def sys_sendto(task: "Task", a: Args) -> Result:
    hfd, sock = _inet(task, a[0])
    try:
        flags = s32(a[3])
        if sock is None:
            raise err(E.EACCES)  # addressed datagrams on AF_UNIX: filesystem names not served yet
        if sock.state != State.ESTABLISHED:
            raise err(E.EPIPE if sock.state == State.CLOSED else E.ENOTCONN)
        # A connected TCP socket ignores the address: send the data as send() would.
        data = task.mem.read(a[1], min(a[2], _SEND_CHUNK)) if a[2] else b""
    except BaseException:
        os.close(hfd)
        raise
    return _send_now(hfd, data, flags)


def _send_now(hfd: int, data: bytes, flags: int) -> Result:
    """Send on the guest's behalf; a blocking socket without room waits (parked) for it."""
    try:
        with socket.socket(fileno=os.dup(hfd)) as s:
            n = s.send(data, flags | F.MSG_DONTWAIT | F.MSG_NOSIGNAL)
    except BlockingIOError:
        if flags & F.MSG_DONTWAIT or not os.get_blocking(hfd):
            os.close(hfd)
            raise err(E.EAGAIN) from None
        return Park(hfd, lambda: _send_now(hfd, data, flags), events=4)  # POLLOUT
    except BaseException:
        os.close(hfd)
        raise
    os.close(hfd)
    return n

