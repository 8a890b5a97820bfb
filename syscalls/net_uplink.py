"""Guest sockets carried by the uplink (``--net tap``, net/uplink.py): binds to the sandbox's
interface address, outbound connects through linuxabi's stack (the guest's socket waits on the
hold port meanwhile, net/holdport.py), UDP to the outside (net/udp_relay.py), and the outside
names of the sockets involved."""
from __future__ import annotations

import ctypes
import os
import socket
import struct
from typing import TYPE_CHECKING

from linuxabi.abi import errno as E
from linuxabi.abi import flags as F

from net.sockaddr import pack_inet, parse_inet

from .base import Park, Result
from .sockutil import POLLOUT, GuestSocket, connect_done, connect_nonblocking, libc, libc_call, sockopt, v4

if TYPE_CHECKING:
    from net.uplink_proc import UplinkProcess

TCP_CLOSE = 7
_IP_RECVERR = 11


def bind_uplink(g: GuestSocket, raw: bytes, up: "UplinkProcess") -> int:
    """The uplink's address is not in the sandbox's namespace: a socket bound to it is bound
    to 0.0.0.0 there (so listeners get the stack's connections) and named as the guest asked."""
    from net.uplink import Names

    a = parse_inet(raw, F.AF_INET)
    iface = up.address
    if iface is None or a.ip != iface:
        libc_call(libc.bind, g.fd, raw, len(raw))
        return 0
    anyaddr = pack_inet(F.AF_INET, "0.0.0.0", a.port)
    libc_call(libc.bind, g.fd, anyaddr, len(anyaddr))
    with g.object() as s:
        port = s.getsockname()[1]
    up.set_names(os.fstat(g.fd).st_ino, Names((iface, port)))
    return 0


def outside(ip: str) -> bool:
    """An address the stack must reach (not the sandbox's own loopback or "this host")."""
    return not (ip.startswith("127.") or ip == "0.0.0.0")


def tcp_state(fd: int) -> int:
    info = ctypes.create_string_buffer(1)
    size = ctypes.c_uint32(1)
    libc_call(libc.getsockopt, fd, socket.IPPROTO_TCP, socket.TCP_INFO, info, ctypes.byref(size))
    return info.raw[0]


def connect_uplink(g: GuestSocket, remote: tuple[str, int], up: "UplinkProcess") -> Result:
    """The stack connects to ``remote``; the guest's socket meanwhile connects to the hold port,
    where it stays in SYN_SENT until the stack is established (then the hold port completes
    it) or fails (then it fails the same way). A blocking caller parks until then."""
    if not up.routable(remote[0]):
        g.close()
        return -E.ENETUNREACH
    hold = pack_inet(F.AF_INET, *up.hold_address)
    code = connect_nonblocking(g.fd, hold)
    with g.object() as s:
        _drop_icmp_errors(s)  # an earlier attempt's, left by the hold port (it sets no IP_RECVERR)
        if code not in (0, E.EINPROGRESS):  # a pending error, as Linux reports it on a new connect
            g.close()
            return -code
        guest = s.getsockname()[:2]  # bound now (by connect if not before): the hold port's key
    try:
        up.connect(guest, remote, os.fstat(g.fd).st_ino)
    except OSError as e:  # no route, no address yet: nothing started, say so now
        disconnect(g.fd)
        g.close()
        return -(e.errno or E.ENETUNREACH)
    if os.get_blocking(g.fd):
        return Park(g.fd, lambda: connect_done(g, hold), events=POLLOUT, cancel=g.close)
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


def _sockopt_ip(s: socket.socket, name: int) -> int:
    try:
        return s.getsockopt(socket.IPPROTO_IP, name)
    except OSError:
        return 0


def disconnect(fd: int) -> None:
    """Back to unconnected (connect to AF_UNSPEC), without the error that leaves pending."""
    unspec = struct.pack("=H", F.AF_UNSPEC) + bytes(14)
    libc.connect(fd, unspec, len(unspec))
    sockopt(fd, F.SO_ERROR)


def uplink_local(up: "UplinkProcess", g: GuestSocket, s: socket.socket) -> "tuple[str, int] | None":
    """How the uplink names the local end of a guest socket it carries, else None: an outbound
    socket by its names (known by its inode; if connected, still to the loopback peer the uplink
    gave it); an inbound connection (its 127.0.0.x end's peer is outside: a doorbell bound to
    the remote's address, net/uplink.py) as the interface's address and the port."""
    names = up.names_of(os.fstat(g.fd).st_ino)
    try:
        native = v4(s.getpeername())
    except OSError:
        native = None  # unconnected, still connecting (or failed)
    if names is None:
        if native is None or not outside(native[0]) or s.type != socket.SOCK_STREAM:
            return None
        ip, port = v4(s.getsockname())
        iface = up.address
        return (iface, port) if iface is not None and ip.startswith("127.") else None
    if names.native_peer is not None and native is not None and native != names.native_peer:
        return None
    return names.local


# ---- UDP to the outside (net/udp_relay.py) ------------------------------------------------------

_IPPROTO_UDP = 17


def udp_outbound(g: GuestSocket, ip: str, up: "UplinkProcess | None") -> bool:
    """A guest UDP socket naming an outside address (ICMP ping sockets are datagram sockets too,
    but not UDP: they stay as they were)."""
    return (up is not None and g.family == F.AF_INET and g.type == F.SOCK_DGRAM and outside(ip)
            and sockopt(g.fd, F.SO_PROTOCOL) == _IPPROTO_UDP)


def udp_prepare(g: GuestSocket, remote: tuple[str, int], up: "UplinkProcess") -> int:
    """Make the guest socket's native datagrams to `remote` reach the stack: a relay bound to
    `remote` in the sandbox, and the socket bound to lo, where Linux then routes any address
    (see net/udp_relay.py). 0 or an errno (ENETUNREACH: the stack has no route)."""
    if not up.routable(remote[0]):
        return E.ENETUNREACH
    try:
        up.udp_relay(remote)
    except OSError as e:          # the remote's address and port taken in the sandbox itself
        return e.errno or E.ENETUNREACH
    lo = b"lo\0"
    libc_call(libc.setsockopt, g.fd, F.SOL_SOCKET, F.SO_BINDTODEVICE, lo, len(lo))
    return 0


def udp_connected(g: GuestSocket, remote: tuple[str, int], up: "UplinkProcess") -> None:
    """After the guest's native connect to `remote`: its names as the outside sees them (the
    stack's port, the sandbox's address; natively it is 0.0.0.0 on lo)."""
    from net.uplink import Names

    with g.object() as s:
        guest = v4(s.getsockname())
    port = up.udp_flow(guest)
    iface = up.address or "0.0.0.0"
    up.set_names(os.fstat(g.fd).st_ino, Names((iface, port), remote, remote))
