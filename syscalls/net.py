"""Socket syscalls: the control path of guest sockets.

Guest AF_INET/AF_INET6/AF_UNIX sockets are host sockets in the sandbox's own network
namespace (loopback only; see net/socklayer.py), so data, readiness and options run natively.
What names a peer is trapped: bind, connect and addressed sendto are checked against the
sandbox's capabilities and then carried out here, on the guest's socket, with the address as
it was checked (never re-read from guest memory). listen is checked and runs natively; accept
and getsockname are served here only on ports forwarded in with ``-p``.

With an uplink (``--net tap:NAME``, net/uplink.py) an AF_INET stream connect to an address
outside 127/8 is carried out by linuxabi's stack: the guest's socket waits on the hold port
(net/holdport.py) meanwhile, so a blocking connect parks on it and a non-blocking one polls it,
natively. A listen on 0.0.0.0 also listens on the stack. accept, getpeername and getsockname
report the outside addresses of the sockets involved (getpeername is trapped for this, and
continues at once while there is no uplink).
"""
from __future__ import annotations

import ctypes
import os
import select
import socket
import struct
from typing import TYPE_CHECKING

from linuxabi.abi import errno as E
from linuxabi.abi import flags as F

from net.sockaddr import family_of, pack_inet, parse_inet

from . import unix_names
from .base import CONTINUE, InstallFd, Park, Result
from .fsutil import err, s32

if TYPE_CHECKING:
    from net.uplink import Uplink

    from .base import Task

Args = tuple[int, int, int, int, int, int]
_SOCKADDR_MAX = 128  # sizeof(struct sockaddr_storage)
_SOCK_FLAGS = F.SOCK_NONBLOCK | F.SOCK_CLOEXEC
_SOCK_MAX = 11  # SOCK_PACKET + 1: types at or above are EINVAL
_AF_MAX = 46
_INET = (F.AF_INET, F.AF_INET6)
_RAW_TYPES = (F.SOCK_RAW, 10)  # SOCK_PACKET
_POLLOUT = select.POLLOUT
_MAX_DATAGRAM = 65535
_SEND_CHUNK = 1 << 20
# Reserved abstract AF_UNIX names: none yet, but the translator's own would live here.
_RESERVED_ABSTRACT = b"\0linuxabi-"

_libc = ctypes.CDLL(None, use_errno=True)


def _call(fn, *args) -> int:  # noqa: ANN001 - a libc function; raises OSError like os.*
    r = fn(*args)
    if r < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return r


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


class _GuestSocket:
    """The guest's socket behind a guest fd, as a host fd of ours with its family and type."""

    def __init__(self, task: "Task", fd: int) -> None:
        self.fd = task.host_fd(s32(fd))
        try:
            self.family = _sockopt(self.fd, F.SO_DOMAIN)
            self.type = _sockopt(self.fd, F.SO_TYPE)
        except OSError as e:
            os.close(self.fd)
            raise err(E.ENOTSOCK if e.errno == E.ENOTSOCK else e.errno or E.EBADF) from None

    @property
    def proto(self) -> str:
        return "tcp" if self.type == F.SOCK_STREAM else "udp"

    def object(self) -> socket.socket:
        """A socket object on a dup of our fd (closing it leaves ours open)."""
        return socket.socket(fileno=os.dup(self.fd))

    def close(self) -> None:
        os.close(self.fd)


def _sockopt(fd: int, name: int) -> int:
    val = ctypes.c_int(0)
    size = ctypes.c_uint32(4)
    _call(_libc.getsockopt, fd, F.SOL_SOCKET, name, ctypes.byref(val), ctypes.byref(size))
    return val.value


def _authorize(task: "Task", op: str, proto: str, raw: bytes, family: int) -> None:
    a = parse_inet(raw, family)
    task.kernel.authorize_net(op, proto, a.ip, a.port)


def _uplink(task: "Task") -> "Uplink | None":
    net = task.kernel.net_if_any
    return None if net is None else net.uplink


def _v4(addr: tuple) -> tuple[str, int]:  # noqa: ANN001 - a socket module address
    """An (ip, port) as an IPv4 one (a v4-mapped IPv6 address unmapped)."""
    ip = addr[0]
    return (ip[7:] if ip.startswith("::ffff:") else ip, addr[1])


def _pack_as(family: int, addr: tuple[str, int]) -> bytes:
    """An IPv4 (ip, port) as a socket of ``family`` names it (v4-mapped on a dual-stack one)."""
    ip = addr[0] if family == F.AF_INET or ":" in addr[0] else "::ffff:" + addr[0]
    return pack_inet(family, ip, addr[1])


# ---- socket, bind, listen, connect ------------------------------------------------------------


def sys_socket(task: "Task", a: Args) -> Result:
    domain, type_ = s32(a[0]), s32(a[1])
    base, flags = type_ & 0xF, type_ & ~0xF
    if flags & ~_SOCK_FLAGS:
        raise err(E.EINVAL)
    if domain < 0 or domain >= _AF_MAX:
        raise err(E.EAFNOSUPPORT)
    if base < 1 or base >= _SOCK_MAX:
        raise err(E.EINVAL)
    if domain not in (F.AF_UNIX, *_INET):
        # netlink would configure the sandbox's namespace, packet sockets see raw frames
        raise err(E.EAFNOSUPPORT)
    if domain in _INET and base in _RAW_TYPES:
        raise err(E.EPERM)
    return CONTINUE  # made in the sandbox's own network namespace; names are checked later


def sys_bind(task: "Task", a: Args) -> Result:
    raw = _read_sockaddr(task, a[1], a[2])
    g = _GuestSocket(task, a[0])
    try:
        if g.family == F.AF_UNIX:
            return _unix_name_call(task, g, raw, "bind")
        if g.family in _INET:
            _authorize(task, "bind", g.proto, raw, g.family)
            up = _uplink(task)
            if up is not None and g.family == F.AF_INET:
                return _bind_uplink(g, raw, up)
        _call(_libc.bind, g.fd, raw, len(raw))
        return 0
    finally:
        g.close()


def _bind_uplink(g: _GuestSocket, raw: bytes, up: "Uplink") -> int:
    """The uplink's address is not in the sandbox's namespace: a socket bound to it is bound
    to 0.0.0.0 there (so listeners get the stack's connections) and named as the guest asked."""
    from net.uplink import Names

    a = parse_inet(raw, F.AF_INET)
    iface = up.address
    if iface is None or a.ip != iface:
        _call(_libc.bind, g.fd, raw, len(raw))
        return 0
    anyaddr = pack_inet(F.AF_INET, "0.0.0.0", a.port)
    _call(_libc.bind, g.fd, anyaddr, len(anyaddr))
    with g.object() as s:
        port = s.getsockname()[1]
    up.set_names(os.fstat(g.fd).st_ino, Names((iface, port)))
    return 0


def sys_listen(task: "Task", a: Args) -> Result:
    g = _GuestSocket(task, a[0])
    try:
        if g.family in _INET and g.type == F.SOCK_STREAM:
            with g.object() as s:
                ip, port = s.getsockname()[:2]
            task.kernel.authorize_net("listen", "tcp", ip, port)
            up = _uplink(task)
            if up is not None and ip in ("0.0.0.0", "::"):
                _call(_libc.listen, g.fd, s32(a[1]))  # ours, so that the stack listens only after it
                if port == 0:  # an autobound port: known only now
                    with g.object() as s:
                        port = s.getsockname()[1]
                up.listen(port)
                return 0
        return CONTINUE  # no pointer: the kernel's own listen, on the socket just checked
    finally:
        g.close()


def sys_connect(task: "Task", a: Args) -> Result:
    raw = _read_sockaddr(task, a[1], a[2])
    g = _GuestSocket(task, a[0])
    try:
        if g.family == F.AF_UNIX:
            result = _unix_name_call(task, g, raw, "connect")
            g.close()
            return result
        if g.family in _INET and family_of(raw) != F.AF_UNSPEC:
            _authorize(task, "connect", g.proto, raw, g.family)
            up = _uplink(task)
            if up is not None and g.family == F.AF_INET and g.type == F.SOCK_STREAM:
                dest = parse_inet(raw, F.AF_INET)
                if _outside(dest.ip) and _tcp_state(g.fd) == _TCP_CLOSE:
                    return _connect_uplink(g, (dest.ip, dest.port), up)
    except BaseException:
        g.close()
        raise
    return _connect(g, raw)


_TCP_CLOSE = 7


def _outside(ip: str) -> bool:
    """An address the stack must reach (not the sandbox's own loopback or "this host")."""
    return not (ip.startswith("127.") or ip == "0.0.0.0")


def _tcp_state(fd: int) -> int:
    info = ctypes.create_string_buffer(1)
    size = ctypes.c_uint32(1)
    _call(_libc.getsockopt, fd, socket.IPPROTO_TCP, socket.TCP_INFO, info, ctypes.byref(size))
    return info.raw[0]


def _connect_uplink(g: _GuestSocket, remote: tuple[str, int], up: "Uplink") -> Result:
    """The stack connects to ``remote``; the guest's socket meanwhile connects to the hold port,
    where it stays in SYN_SENT until the stack is established (then the hold port completes
    it) or fails (then it fails the same way). A blocking caller parks until then."""
    if not up.routable(remote[0]):
        g.close()
        return -E.ENETUNREACH
    hold = pack_inet(F.AF_INET, *up.hold_address)
    code = _connect_nonblocking(g.fd, hold)
    with g.object() as s:
        _drop_icmp_errors(s)  # an earlier attempt's, left by the hold port (it sets no IP_RECVERR)
        if code not in (0, E.EINPROGRESS):  # a pending error, as Linux reports it on a new connect
            g.close()
            return -code
        guest = s.getsockname()[:2]  # bound now (by connect if not before): the hold port's key
    try:
        up.connect(guest, remote, os.fstat(g.fd).st_ino)
    except OSError as e:  # no route, no address yet: nothing started, say so now
        _disconnect(g.fd)
        g.close()
        return -(e.errno or E.ENETUNREACH)
    if os.get_blocking(g.fd):
        return Park(g.fd, lambda: _connect_done(g, hold), events=_POLLOUT, cancel=g.close)
    g.close()
    return -E.EINPROGRESS


def _drop_icmp_errors(s: socket.socket) -> None:
    if _sockopt_ip(s, _IP_RECVERR):
        return  # the guest reads its error queue itself
    for _ in range(4):
        try:
            s.recvmsg(1, 256, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except OSError:
            return


_IP_RECVERR = 11


def _sockopt_ip(s: socket.socket, name: int) -> int:
    try:
        return s.getsockopt(socket.IPPROTO_IP, name)
    except OSError:
        return 0


def _disconnect(fd: int) -> None:
    """Back to unconnected (connect to AF_UNSPEC), without the error that leaves pending."""
    unspec = struct.pack("=H", F.AF_UNSPEC) + bytes(14)
    _libc.connect(fd, unspec, len(unspec))
    _sockopt(fd, F.SO_ERROR)


def _connect(g: _GuestSocket, raw: bytes) -> Result:
    """connect() without ever blocking the translator: a blocking guest's connect that is in
    progress is parked until the socket is writable, then finished as the kernel finishes
    it for a blocking caller."""
    code = _connect_nonblocking(g.fd, raw)
    # EALREADY: a blocking caller waits for the connect in progress (restarted after a signal)
    if code in (E.EINPROGRESS, E.EALREADY) and os.get_blocking(g.fd):
        if select.select([], [g.fd], [], 0)[1]:  # on the loopback it is usually done already
            return _connect_done(g, raw)
        return Park(g.fd, lambda: _connect_done(g, raw), events=_POLLOUT, cancel=g.close)
    g.close()
    return -code


def _connect_done(g: _GuestSocket, raw: bytes) -> Result:
    try:
        code = _sockopt(g.fd, F.SO_ERROR)
        if not code:  # connect again, as a non-blocking caller would: the socket becomes
            code = _connect_nonblocking(g.fd, raw)  # "connected" (a third one is EISCONN)
    finally:
        g.close()
    return -code


def _connect_nonblocking(fd: int, raw: bytes) -> int:
    """connect(2) on fd as if it were non-blocking; 0 or the errno."""
    blocking = os.get_blocking(fd)
    if blocking:
        os.set_blocking(fd, False)
    try:
        r = _libc.connect(fd, raw, len(raw))
        return ctypes.get_errno() if r < 0 else 0
    finally:
        if blocking:
            os.set_blocking(fd, True)


def _unix_name_call(task: "Task", g: _GuestSocket, raw: bytes, op: str) -> Result:
    """bind/connect on a guest AF_UNIX socket: abstract names (of the sandbox's own network
    namespace) and autobind run here; names in the filesystem go to syscalls.unix_names."""
    if len(raw) < 2:
        raise err(E.EINVAL)
    if family_of(raw) != F.AF_UNIX:
        raise err(E.EINVAL if op == "bind" else E.EAFNOSUPPORT)
    name = raw[2:]
    if name and name[0] != 0:
        return (unix_names.bind_path if op == "bind" else unix_names.connect_path)(task, g, raw)
    if name.startswith(_RESERVED_ABSTRACT):
        raise err(E.EADDRINUSE if op == "bind" else E.ECONNREFUSED)
    if op == "bind":
        _call(_libc.bind, g.fd, raw, len(raw))
        return 0
    return -_connect_nonblocking(g.fd, raw)  # a full backlog is EAGAIN, never a wait of ours


# ---- accept and getsockname: only ports forwarded in with -p need us ----------------------------


def sys_accept(task: "Task", a: Args) -> Result:
    return _accept(task, a[0], a[1], a[2], 0)


def sys_accept4(task: "Task", a: Args) -> Result:
    return _accept(task, a[0], a[1], a[2], s32(a[3]))


def _accept(task: "Task", fd: int, addr: int, len_addr: int, flags: int) -> Result:
    net = task.kernel.net_if_any
    if net is None or not (net.published or net.uplink is not None):
        return CONTINUE
    if flags & ~_SOCK_FLAGS:
        raise err(E.EINVAL)
    g = _GuestSocket(task, fd)
    try:
        with g.object() as s:
            served = net.is_published(s) or _uplinked(net.uplink, s)
        if served and addr:  # fail before taking the connection, which Linux would lose
            (have,) = struct.unpack("=i", task.mem.read(len_addr, 4))
            if have < 0:
                raise err(E.EINVAL)
    except BaseException:
        g.close()
        raise
    if not served:
        g.close()
        return CONTINUE
    return _accept_now(task, g, addr, len_addr, flags)


def _uplinked(up: "Uplink | None", sock: socket.socket) -> bool:
    """A listener the stack also listens for (its connections come in by doorbell)."""
    if up is None or not up.listening_ports or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    return sock.getsockname()[1] in up.listening_ports


def _accept_now(task: "Task", g: _GuestSocket, addr: int, len_addr: int, flags: int) -> Result:
    if not select.select([g.fd], [], [], 0)[0]:
        if os.get_blocking(g.fd):
            return Park(g.fd, lambda: _accept_now(task, g, addr, len_addr, flags), cancel=g.close)
        g.close()
        raise err(E.EAGAIN)
    try:
        with g.object() as s:
            conn_fd, _ = s._accept()  # type: ignore[attr-defined]  # the raw fd
    finally:
        g.close()
    net = task.kernel.net
    conn = net.answer_door(socket.socket(fileno=conn_fd))
    try:
        conn.setblocking(not flags & F.SOCK_NONBLOCK)
        peer = conn.getpeername()
        names = net.uplink.take_bell(_v4(peer)) if net.uplink is not None else None
        if names is not None:  # a connection the stack brought in: its outside addresses
            net.uplink.set_names(os.fstat(conn.fileno()).st_ino, names)  # type: ignore[union-attr]
            raw = _pack_as(conn.family, names.peer)  # type: ignore[arg-type]
        else:
            raw = pack_inet(conn.family, peer[0], peer[1])
        _write_sockaddr(task, addr, len_addr, raw)
    except BaseException:
        conn.close()
        raise
    return InstallFd(conn.detach(), bool(flags & F.SOCK_CLOEXEC))


def sys_getsockname(task: "Task", a: Args) -> Result:
    net = task.kernel.net_if_any
    if net is None or not (net.published or net.uplink is not None):
        return CONTINUE
    g = _GuestSocket(task, a[0])
    try:
        with g.object() as s:
            family = s.family
            name = net.host_local_name(s) if g.family in _INET else None
            if name is None and net.uplink is not None and g.family in _INET:
                name = _uplink_local(net.uplink, g, s)
    finally:
        g.close()
    if name is None:
        return CONTINUE
    _write_sockaddr(task, a[1], a[2], _pack_as(family, name))
    return 0


def sys_getpeername(task: "Task", a: Args) -> Result:
    """Native but for sockets whose peer is outside (through the uplink): with no uplink this
    continues at once, without even looking at the socket."""
    net = task.kernel.net_if_any
    up = net.uplink if net is not None else None
    if up is None:
        return CONTINUE
    try:
        fd = task.host_fd(s32(a[0]))
    except OSError:
        return CONTINUE  # EBADF: as the kernel says it
    try:
        names = up.names_of(os.fstat(fd).st_ino)  # the uplink's sockets are few: most miss here
        if names is None or names.peer is None:
            return CONTINUE
        with socket.socket(fileno=os.dup(fd)) as s:
            try:
                native = _v4(s.getpeername())
            except OSError:
                return CONTINUE
            family = s.family
    finally:
        os.close(fd)
    if native != names.native_peer:
        return CONTINUE  # connected elsewhere since
    _write_sockaddr(task, a[1], a[2], _pack_as(family, names.peer))
    return 0


def _uplink_local(up: "Uplink", g: _GuestSocket, s: socket.socket) -> "tuple[str, int] | None":
    """How the uplink names the local end of a guest socket it carries (known by its inode;
    if connected, still to the loopback peer the uplink gave it), else None."""
    names = up.names_of(os.fstat(g.fd).st_ino)
    if names is None:
        return None
    if names.native_peer is not None:
        try:
            native = _v4(s.getpeername())
        except OSError:
            native = None  # still connecting (or failed): the names are the ones it will have
        if native is not None and native != names.native_peer:
            return None
    return names.local


# ---- sendto with an address (without one it runs natively) --------------------------------


def sys_sendto(task: "Task", a: Args) -> Result:
    flags, length = s32(a[3]), a[2]
    raw = _read_sockaddr(task, a[4], a[5])
    g = _GuestSocket(task, a[0])
    try:
        path_name = g.family == F.AF_UNIX and raw[2:3] not in (b"\0", b"")
        if g.family == F.AF_UNIX and raw[2:].startswith(_RESERVED_ABSTRACT):
            raise err(E.ECONNREFUSED)
        elif g.family in _INET and g.type != F.SOCK_STREAM:  # TCP ignores the address
            _authorize(task, "connect", g.proto, raw, g.family)
        if g.type != F.SOCK_STREAM and length > _MAX_DATAGRAM:
            raise err(E.EMSGSIZE)
        data = task.mem.read(a[1], min(length, _SEND_CHUNK)) if length else b""
    except BaseException:
        g.close()
        raise
    if path_name:
        return unix_names.sendto_path(task, g, raw, data, flags)
    return _send_now(task, g, data, flags, raw)


def _send_now(task: "Task", g: _GuestSocket, data: bytes, flags: int, raw: bytes) -> Result:
    """Send on the guest's behalf; a blocking socket without room waits (parked) for it.
    Never with SIGPIPE to us: the guest gets its own, as Linux would send it."""
    r = _libc.sendto(g.fd, data, len(data), flags | F.MSG_DONTWAIT | F.MSG_NOSIGNAL, raw, len(raw))
    code = ctypes.get_errno() if r < 0 else 0
    if code == E.EAGAIN and not flags & F.MSG_DONTWAIT and os.get_blocking(g.fd):
        return Park(g.fd, lambda: _send_now(task, g, data, flags, raw), events=_POLLOUT, cancel=g.close)
    g.close()
    if code == E.EPIPE and not flags & F.MSG_NOSIGNAL:
        raise_signal = getattr(task, "raise_signal", None)
        if raise_signal is not None:
            raise_signal(13)  # SIGPIPE
    return -code if code else r

