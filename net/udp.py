"""UDP (RFC 768): header codec, the bind table, and datagram sockets as objects.

Socket calls made by the socket layer raise OSError with the errno Linux would give; packets
from the wire never raise: they are delivered or dropped with a reason.
"""
from __future__ import annotations

import errno
import struct
from collections import deque
from typing import Callable, Final, TYPE_CHECKING

from . import icmp
from .checksum import add16, pseudo_sum, sum16
from .ipv4 import IPPROTO_UDP, LIMITED_BROADCAST, Ipv4Header, aton, ntoa

if TYPE_CHECKING:
    from .stack import Stack

_UDP: Final = struct.Struct("!HHHH")
UDP_HLEN: Final = 8
MAX_PAYLOAD: Final = 65535 - 20 - UDP_HLEN
EPHEMERAL: Final = (32768, 60999)           # Linux's ip_local_port_range

Address = tuple[str, int]


def checksum(src: int, dst: int, segment: bytes | memoryview) -> int:
    """UDP checksum over the pseudo-header and the segment (its checksum field zeroed);
    a computed 0 is sent as 0xffff, since 0 means "none"."""
    s = add16(pseudo_sum(src, dst, IPPROTO_UDP, len(segment)), sum16(segment))
    return (~s & 0xFFFF) or 0xFFFF


def build(src: int, dst: int, sport: int, dport: int, payload: bytes | memoryview) -> bytes:
    ulen = UDP_HLEN + len(payload)
    s = add16(add16(pseudo_sum(src, dst, IPPROTO_UDP, ulen), sum16(_UDP.pack(sport, dport, ulen, 0))),
              sum16(payload))
    return _UDP.pack(sport, dport, ulen, (~s & 0xFFFF) or 0xFFFF) + payload


def parse(src: int, dst: int, buf: memoryview, csum_ok: bool) -> tuple[int, int, memoryview] | str:
    """(sport, dport, payload) or a drop reason; `csum_ok` when the device verified it."""
    if len(buf) < UDP_HLEN:
        return "udp_truncated"
    sport, dport, ulen, csum = _UDP.unpack_from(buf)
    if ulen < UDP_HLEN or ulen > len(buf):
        return "udp_bad_length"
    seg = buf[:ulen]
    if csum and not csum_ok and add16(pseudo_sum(src, dst, IPPROTO_UDP, ulen), sum16(seg)) != 0xFFFF:
        return "udp_bad_checksum"
    return sport, dport, seg[UDP_HLEN:]


class UdpSocket:
    """One datagram endpoint. Readiness changes call `on_event(sock)` if set."""

    def __init__(self, layer: UdpLayer, *, rcvbuf: int = 212992) -> None:
        self._layer = layer
        self.local: tuple[int, int] | None = None      # (addr, port), addr 0 = any
        self.remote: tuple[int, int] | None = None
        self.rcvbuf = rcvbuf
        self.broadcast = False                          # SO_BROADCAST
        self.error = 0                                  # pending SO_ERROR
        self.closed = False
        self.on_event: Callable[[UdpSocket], None] | None = None
        # ICMP errors about an unconnected socket's datagrams (Linux drops them unless
        # IP_RECVERR): a relay that carries several peers' datagrams takes them here.
        self.on_icmp: Callable[[icmp.Quote, int, int], None] | None = None
        self._rx: deque[tuple[bytes, tuple[int, int]]] = deque()
        self._rx_bytes = 0

    # -- the socket calls
    def bind(self, addr: str | int, port: int) -> None:
        if self.local is not None:
            raise OSError(errno.EINVAL, "already bound")
        self._layer.bind(self, aton(addr), port)

    def connect(self, addr: str | int, port: int) -> None:
        dst = aton(addr)
        if not 0 < port < 65536:
            raise OSError(errno.EINVAL, "bad port")
        src = self._layer.stack.source_address(dst)
        if src is None:
            raise OSError(errno.ENETUNREACH, "network is unreachable")
        if self.local is None:
            self._layer.bind(self, 0, 0)
        self.remote = (dst, port)

    def sendto(self, data: bytes | memoryview, addr: Address | None, now: float) -> int:
        if self.closed:
            raise OSError(errno.EBADF, "closed")
        if addr is None:
            if self.remote is None:
                raise OSError(errno.EDESTADDRREQ, "destination address required")
            dst, dport = self.remote
        else:
            dst, dport = aton(addr[0]), addr[1]
            if not 0 < dport < 65536:
                raise OSError(errno.EINVAL, "bad port")
        if len(data) > MAX_PAYLOAD:
            raise OSError(errno.EMSGSIZE, "message too long")
        stack = self._layer.stack
        if stack.is_broadcast(dst) and not self.broadcast:
            raise OSError(errno.EACCES, "broadcast needs SO_BROADCAST")
        if self.local is None:
            self._layer.bind(self, 0, 0)
        assert self.local is not None
        src = self.local[0] or stack.source_address(dst)
        if src is None and dst == LIMITED_BROADCAST and not stack.addr:
            src = 0             # an unconfigured interface broadcasts from 0.0.0.0 (DHCP, RFC 2131 4.1)
        if src is None:
            raise OSError(errno.ENETUNREACH, "network is unreachable")
        seg = build(src, dst, self.local[1], dport, data)
        why = stack.ip_output(IPPROTO_UDP, src, dst, seg, now, df=False)
        if why == "no_route":
            raise OSError(errno.ENETUNREACH, "network is unreachable")
        return len(data)

    def send(self, data: bytes | memoryview, now: float) -> int:
        return self.sendto(data, None, now)

    def recvfrom(self) -> tuple[bytes, Address] | None:
        """The next datagram and its sender, or None if none is queued (EAGAIN)."""
        if not self._rx:
            return None
        data, (addr, port) = self._rx.popleft()
        self._rx_bytes -= len(data)
        return data, (ntoa(addr), port)

    def take_error(self) -> int:
        e, self.error = self.error, 0
        return e

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._layer.unbind(self)
            self._rx.clear()

    @property
    def readable(self) -> bool:
        return bool(self._rx) or bool(self.error)

    @property
    def sockname(self) -> Address | None:
        return None if self.local is None else (ntoa(self.local[0]), self.local[1])

    # -- from the layer
    def _deliver(self, data: bytes, src: tuple[int, int]) -> bool:
        if self._rx_bytes + len(data) > self.rcvbuf:
            return False
        self._rx.append((data, src))
        self._rx_bytes += len(data)
        if self.on_event:
            self.on_event(self)
        return True

    def _set_error(self, err: int) -> None:
        self.error = err
        if self.on_event:
            self.on_event(self)


class UdpLayer:
    """The bind table and the UDP input/error paths of one stack."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._binds: dict[tuple[int, int], UdpSocket] = {}
        self._next = EPHEMERAL[0] + stack.rng.randrange(EPHEMERAL[1] - EPHEMERAL[0] + 1)

    def socket(self) -> UdpSocket:
        return UdpSocket(self)

    def bind(self, sock: UdpSocket, addr: int, port: int) -> None:
        if addr and not self.stack.is_local(addr) and not self.stack.is_broadcast(addr):
            raise OSError(errno.EADDRNOTAVAIL, "cannot assign requested address")
        if port == 0:
            port = self._ephemeral(addr)
        elif not 0 < port < 65536:
            raise OSError(errno.EINVAL, "bad port")
        elif self._in_use(addr, port):
            raise OSError(errno.EADDRINUSE, "address already in use")
        sock.local = (addr, port)
        self._binds[(addr, port)] = sock

    def _in_use(self, addr: int, port: int) -> bool:
        if addr == 0:
            return any(p == port for _, p in self._binds)
        return (addr, port) in self._binds or (0, port) in self._binds

    def _ephemeral(self, addr: int) -> int:
        lo, hi = EPHEMERAL
        span = hi - lo + 1
        for _ in range(span):
            port = self._next
            self._next = lo + (self._next - lo + 1) % span
            if not self._in_use(addr, port):
                return port
        raise OSError(errno.EAGAIN, "no ephemeral ports left")

    def unbind(self, sock: UdpSocket) -> None:
        if sock.local is not None and self._binds.get(sock.local) is sock:
            del self._binds[sock.local]

    def _lookup(self, dst: int, dport: int) -> UdpSocket | None:
        s = self._binds.get((dst, dport))
        return s if s is not None else self._binds.get((0, dport))

    def input(self, h: Ipv4Header, payload: memoryview, csum_ok: bool, now: float,
              datagram: memoryview, unicast: bool) -> str | None:
        r = parse(h.src, h.dst, payload, csum_ok)
        if isinstance(r, str):
            return r
        sport, dport, data = r
        sock = self._lookup(h.dst, dport)
        if sock is not None and sock.remote is not None and sock.remote != (h.src, sport):
            sock = None                         # connected elsewhere: not for it
        if sock is None:
            if unicast:                         # RFC 1122 3.2.2.1, never for broadcasts
                self.stack.send_icmp_error(icmp.DEST_UNREACH, icmp.PORT_UNREACH, h, datagram, now)
            return "udp_no_socket"
        if not sock._deliver(bytes(data), (h.src, sport)):
            return "udp_rcvbuf_full"
        self.stack.counters.events["udp_delivered"] += 1
        return None

    def error(self, q: icmp.Quote, type_: int, code: int) -> None:
        """An ICMP error about a datagram we sent: Linux reports it on connected sockets only."""
        sock = self._lookup(q.src, q.sport)
        if sock is not None and sock.remote is None and sock.on_icmp is not None:
            sock.on_icmp(q, type_, code)
            return
        if sock is None or sock.remote != (q.dst, q.dport):
            return
        if type_ == icmp.DEST_UNREACH:
            err = {icmp.PORT_UNREACH: errno.ECONNREFUSED, icmp.PROTO_UNREACH: errno.ENOPROTOOPT,
                   icmp.NET_UNREACH: errno.ENETUNREACH,
                   icmp.FRAG_NEEDED: errno.EMSGSIZE}.get(code, errno.EHOSTUNREACH)
        else:
            err = errno.EHOSTUNREACH
        sock._set_error(err)
