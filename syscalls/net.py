"""Socket syscalls: the control path of guest sockets.

Guest AF_INET/AF_INET6/AF_UNIX sockets are host sockets in the sandbox's own network
namespace (loopback only; see net/socklayer.py), so data, readiness and options run natively.
What names a peer is trapped: bind, connect and addressed sendto are checked against the
sandbox's capabilities and then carried out here, on the guest's socket, with the address as
it was checked (never re-read from guest memory). listen is checked and runs natively, but on
a port forwarded in with ``-p``: there the guest's listener is replaced by the host's listening
socket (linuxabi/forward.py), whose connections the guest then accepts natively; a guest's
connect to such a port is redirected to it, and getsockname/getpeername name those host sockets
as the guest's own port.

With an uplink (``--net tap:NAME``, net/uplink.py) an AF_INET stream connect to an address
outside 127/8 is carried out by linuxabi's stack: the guest's socket waits on the hold port
(net/holdport.py) meanwhile, so a blocking connect parks on it and a non-blocking one polls it,
natively. A listen on 0.0.0.0 also listens on the stack. A UDP socket that connects or sendto's
an outside address is bound to lo, where its native datagrams reach a relay to the stack
(net/udp_relay.py). getpeername and getsockname report the outside addresses of the outbound
sockets involved (getpeername is trapped for this, and continues at once while there is no
uplink). An inbound connection comes from a socket bound to the remote's own address, so accept
and getpeername name it natively; getsockname names its 127.0.0.x end as the interface's
address.
"""
from __future__ import annotations

import fcntl
import os
import select
import socket
import struct
from typing import TYPE_CHECKING

from linuxabi.abi import errno as E
from linuxabi.abi import flags as F

from net.sockaddr import family_of, parse_inet

from . import net_uplink as uplink
from . import unix_names
from .base import CONTINUE, Park, ReplaceFd, Result
from .fsutil import err, s32
from .sockutil import (POLLOUT, GuestSocket, connect_nonblocking, connect_parked, libc, libc_call, pack_as,
                       read_sockaddr, send_now, sockopt, v4, write_sockaddr)

if TYPE_CHECKING:
    from net.socklayer import GuestNet, Published
    from net.uplink_proc import UplinkProcess

    from .base import Task

Args = tuple[int, int, int, int, int, int]
_SOCK_FLAGS = F.SOCK_NONBLOCK | F.SOCK_CLOEXEC
_SOCK_MAX = 11  # SOCK_PACKET + 1: types at or above are EINVAL
_AF_MAX = 46
_INET = (F.AF_INET, F.AF_INET6)
_RAW_TYPES = (F.SOCK_RAW, 10)  # SOCK_PACKET
_MAX_DATAGRAM = 65535
_SEND_CHUNK = 1 << 20
# Reserved abstract AF_UNIX names: none yet, but the translator's own would live here.
_RESERVED_ABSTRACT = b"\0linuxabi-"

def _authorize(task: "Task", op: str, proto: str, raw: bytes, family: int) -> None:
    a = parse_inet(raw, family)
    task.kernel.authorize_net(op, proto, a.ip, a.port)


def _uplink(task: "Task") -> "UplinkProcess | None":
    net = task.kernel.net_if_any
    return None if net is None else net.uplink


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
    if domain in _INET and base in _RAW_TYPES and not (
            domain == F.AF_INET and base == F.SOCK_RAW and s32(a[2]) == F.IPPROTO_ICMP):
        raise err(E.EPERM)  # raw ICMP (ping) is the kernel's own, in the sandbox's namespace
    return CONTINUE  # made in the sandbox's own network namespace; names are checked later


def sys_bind(task: "Task", a: Args) -> Result:
    raw = read_sockaddr(task, a[1], a[2])
    g = GuestSocket(task, a[0])
    try:
        if g.family == F.AF_UNIX:
            return _unix_name_call(task, g, raw, "bind")
        if g.family in _INET:
            _authorize(task, "bind", g.proto, raw, g.family)
            if g.type == F.SOCK_STREAM and _published_listening(task, raw, g.family) is not None:
                raise err(E.EADDRINUSE)  # its listener is the host's socket now, not in the sandbox
            up = _uplink(task)
            if up is not None and g.family == F.AF_INET:
                return uplink.bind_uplink(g, raw, up)
        libc_call(libc.bind, g.fd, raw, len(raw))
        return 0
    finally:
        g.close()


def sys_listen(task: "Task", a: Args) -> Result:
    g = GuestSocket(task, a[0])
    try:
        if g.family in _INET and g.type == F.SOCK_STREAM:
            with g.object() as s:
                ip, port = s.getsockname()[:2]
            task.kernel.authorize_net("listen", "tcp", ip, port)
            net = task.kernel.net_if_any
            fwd = net.published.get(port) if net is not None else None
            if fwd is not None and _reaches(ip, "127.0.0.1"):
                return _listen_published(task, g, a[0], s32(a[1]), fwd, (ip, port))
            up = _uplink(task)
            if up is not None and ip in ("0.0.0.0", "::"):
                libc_call(libc.listen, g.fd, s32(a[1]))  # ours, so that the stack listens only after it
                if port == 0:  # an autobound port: known only now
                    with g.object() as s:
                        port = s.getsockname()[1]
                up.listen(port)
                return 0
        return CONTINUE  # no pointer: the kernel's own listen, on the socket just checked
    finally:
        g.close()


def sys_connect(task: "Task", a: Args) -> Result:
    raw = read_sockaddr(task, a[1], a[2])
    g = GuestSocket(task, a[0])
    try:
        if g.family == F.AF_UNIX:
            result = _unix_name_call(task, g, raw, "connect")
            g.close()
            return result
        net = task.kernel.net_if_any
        if net is not None and net.published and g.family in _INET:
            with g.object() as s:
                if net.is_host_socket(s):  # never a way out of the sandbox's namespace
                    raise err(E.EPERM if family_of(raw) == F.AF_UNSPEC else E.EISCONN)
        if g.family in _INET and family_of(raw) != F.AF_UNSPEC:
            _authorize(task, "connect", g.proto, raw, g.family)
            if g.type == F.SOCK_STREAM and (fwd := _published_listening(task, raw, g.family)) is not None:
                return _connect_published(task, g, a[0], fwd)
            up = _uplink(task)
            if up is not None and g.family == F.AF_INET and g.type == F.SOCK_STREAM:
                dest = parse_inet(raw, F.AF_INET)
                if uplink.outside(dest.ip) and uplink.tcp_state(g.fd) == uplink.TCP_CLOSE:
                    return uplink.connect_uplink(g, (dest.ip, dest.port), up)
            elif up is not None and g.family == F.AF_INET:
                return _connect_udp(g, raw, up)
        elif up is not None and g.family == F.AF_INET:
            up.drop_names(os.fstat(g.fd).st_ino)  # AF_UNSPEC: disconnected, its outside names go
    except BaseException:
        g.close()
        raise
    return connect_parked(g, raw)


# ---- ports published with -p: their listener is the host's socket ----------------------------

# Options a listener passes on to the connections it accepts, carried over to the host listener
# that takes a guest listener's place (and to a host socket that takes a connecting one's).
_CARRIED_OPTIONS = (
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE), (socket.SOL_SOCKET, socket.SO_RCVBUF),
    (socket.SOL_SOCKET, socket.SO_SNDBUF), (socket.SOL_SOCKET, socket.SO_PRIORITY),
    (socket.SOL_SOCKET, socket.SO_RCVLOWAT), (socket.IPPROTO_IP, socket.IP_TOS),
    (socket.IPPROTO_TCP, socket.TCP_NODELAY), (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL), (socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    (socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT), (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    (socket.IPPROTO_TCP, socket.TCP_FASTOPEN),
)
_LINGER = struct.Struct("ii")
_DOUBLED = (socket.SO_RCVBUF, socket.SO_SNDBUF)  # the kernel reports twice what was set


def _reaches(bound_ip: str, dest_ip: str) -> bool:
    """Whether a listener bound to ``bound_ip`` takes connections to loopback ``dest_ip``."""
    bound_ip, dest_ip = bound_ip.removeprefix("::ffff:"), dest_ip.removeprefix("::ffff:")
    if dest_ip in ("0.0.0.0", "::"):  # a connect to "any" reaches the local host
        dest_ip = "127.0.0.1" if dest_ip == "0.0.0.0" else "::1"
    if bound_ip in ("0.0.0.0", "::"):
        return dest_ip.startswith("127.") or (bound_ip == "::" and dest_ip == "::1")
    return bound_ip == dest_ip


def _published_listening(task: "Task", raw: bytes, family: int) -> "Published | None":
    """The published port that ``raw`` (a local address) names, while a guest listens on it."""
    net = task.kernel.net_if_any
    if net is None or not net.published:
        return None
    a = parse_inet(raw, family)
    fwd = net.published.get(a.port)
    if fwd is None or fwd.guest_name is None or not _reaches(fwd.guest_name[0], a.ip):
        return None
    return fwd if fwd.guest_listens() else None


def _carry_options(src: socket.socket, dst: socket.socket) -> None:
    for level, name in _CARRIED_OPTIONS:
        try:
            value = src.getsockopt(level, name)
            if value != dst.getsockopt(level, name):
                dst.setsockopt(level, name, value // 2 if name in _DOUBLED and level == socket.SOL_SOCKET else value)
        except OSError:
            continue  # an option this family or kernel lacks
    linger = src.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER.size)
    if _LINGER.unpack(linger)[0]:
        dst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)


def _listen_published(task: "Task", g: GuestSocket, fd: int, backlog: int, fwd: "Published",
                      name: tuple[str, int]) -> Result:
    """The guest listens on a published port: its socket is replaced by the host's listener,
    with the guest's options, status flags and backlog. (``g`` is the caller's to close.)"""
    with g.object() as guest:
        if task.kernel.net.is_host_socket(guest):
            return CONTINUE  # already the host's listener: a new backlog, natively
        try:
            host = fwd.take(g.family, name)
        except OSError as e:
            raise err(e.errno or E.EADDRINUSE) from None
        try:
            _carry_options(guest, host)
            host.listen(backlog)
            host.setblocking(not fcntl.fcntl(g.fd, fcntl.F_GETFL) & os.O_NONBLOCK)
        except BaseException:
            host.close()
            raise
    return ReplaceFd(host.detach(), s32(fd), task.fd_closes_on_exec(s32(fd)))


def _connect_published(task: "Task", g: GuestSocket, fd: int, fwd: "Published") -> Result:
    """A guest connects to its own listener on a published port: the connection is made to the
    host listener that stands in for it, from a host socket that takes the guest's socket's
    place (with its options and status flags). A failure leaves the guest's socket as it was."""
    try:
        flags = fcntl.fcntl(g.fd, fcntl.F_GETFL)
        cloexec = task.fd_closes_on_exec(s32(fd))
        host = socket.socket(g.family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            with g.object() as guest:
                _carry_options(guest, host)
            ip, port = fwd.address
            code = host.connect_ex((f"::ffff:{ip}" if g.family == F.AF_INET6 else ip, port))
        except BaseException:
            host.close()
            raise
    finally:
        g.close()

    def done(code: int) -> Result:
        if code and code != E.EINPROGRESS:
            host.close()
            return -code
        host.setblocking(not flags & os.O_NONBLOCK)
        return ReplaceFd(host.detach(), s32(fd), cloexec, -code)

    if code == E.EINPROGRESS and not flags & os.O_NONBLOCK:  # a blocking caller: its outcome
        if not select.select([], [host], [], 0)[1]:  # (on the loopback usually there already)
            return Park(host.fileno(), lambda: done(sockopt(host.fileno(), F.SO_ERROR)), events=POLLOUT,
                        cancel=host.close)
        code = sockopt(host.fileno(), F.SO_ERROR)
    return done(code)


def _connect_udp(g: GuestSocket, raw: bytes, up: "UplinkProcess") -> Result:
    """A UDP connect (immediate, natively) to an outside address: the socket is set up so its
    native sends reach the stack (net/udp_relay.py), and named as the outside sees it."""
    dest = parse_inet(raw, F.AF_INET)
    remote = (dest.ip, dest.port)
    if not uplink.udp_outbound(g, dest.ip, up):
        return connect_parked(g, raw)
    code = uplink.udp_prepare(g, remote, up) or connect_nonblocking(g.fd, raw)
    if not code:
        uplink.udp_connected(g, remote, up)
    g.close()  # (on an exception sys_connect closes it)
    return -code


def _unix_name_call(task: "Task", g: GuestSocket, raw: bytes, op: str) -> Result:
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
        libc_call(libc.bind, g.fd, raw, len(raw))
        return 0
    return -connect_nonblocking(g.fd, raw)  # a full backlog is EAGAIN, never a wait of ours


# ---- getsockname and getpeername: what -p and the uplink put behind a guest's socket ----------------------------


def sys_getsockname(task: "Task", a: Args) -> Result:
    net = task.kernel.net_if_any
    if net is None or not (net.published or net.uplink is not None):
        return CONTINUE
    g = GuestSocket(task, a[0])
    try:
        with g.object() as s:
            family = s.family
            name = net.host_local_name(s) if g.family in _INET else None
            if name is None and net.uplink is not None and g.family in _INET:
                name = uplink.uplink_local(net.uplink, g, s)
    finally:
        g.close()
    return _name_result(task, a, family, name)


def _name_result(task: "Task", a: Args, family: int, name: tuple[str, int] | None) -> Result:
    """getsockname/getpeername: the name as the guest knows it, or the kernel's (None)."""
    if name is None:
        return CONTINUE
    write_sockaddr(task, a[1], a[2], pack_as(family, name))
    return 0


def sys_getpeername(task: "Task", a: Args) -> Result:
    """Native but for sockets whose peer is outside (through the uplink) or a published port's
    host listener: with neither this continues at once, without even looking at the socket."""
    net = task.kernel.net_if_any
    if net is None:
        return CONTINUE
    if net.published:
        result = _peer_published(task, a, net)
        if result is not CONTINUE:
            return result
    return CONTINUE if net.uplink is None else _peer_uplink(task, a, net.uplink)


def _peer_uplink(task: "Task", a: Args, up: "UplinkProcess") -> Result:
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
                native = v4(s.getpeername())
            except OSError:
                return CONTINUE
            family = s.family
    finally:
        os.close(fd)
    if native != names.native_peer:
        return CONTINUE  # connected elsewhere since
    write_sockaddr(task, a[1], a[2], pack_as(family, names.peer))
    return 0


def _peer_published(task: "Task", a: Args, net: "GuestNet") -> Result:
    """getpeername of a connection redirected to a published port: the guest's own server."""
    try:
        g = GuestSocket(task, a[0])
    except OSError:
        return CONTINUE  # EBADF, ENOTSOCK: as the kernel says them
    try:
        if g.family not in _INET:
            return CONTINUE
        with g.object() as s:
            name = net.host_peer_name(s)
            family = s.family
    finally:
        g.close()
    return _name_result(task, a, family, name)


# ---- sendto with an address (without one it runs natively) --------------------------------


def sys_sendto(task: "Task", a: Args) -> Result:
    flags, length = s32(a[3]), a[2]
    raw = read_sockaddr(task, a[4], a[5])
    g = GuestSocket(task, a[0])
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
    up = _uplink(task)
    if up is not None and g.family == F.AF_INET and len(raw) >= 8:
        dest = parse_inet(raw, F.AF_INET)
        if g.type == F.SOCK_RAW and uplink.outside(dest.ip):  # ping: the stack sends it
            g.close()
            try:
                return len(data) if up.ping(dest.ip, data) else -E.ENETUNREACH
            except OSError as e:
                return -(e.errno or E.ENETUNREACH)
        if uplink.udp_outbound(g, dest.ip, up):  # then sent natively, through lo to the stack
            try:
                code = uplink.udp_prepare(g, (dest.ip, dest.port), up)
            except BaseException:
                g.close()
                raise
            if code:
                g.close()
                return -code
    return send_now(task, g, data, flags, raw)


