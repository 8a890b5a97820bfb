"""The guest's AF_INET sockets as the translator keeps them: addresses, states, options, ports.

Pure state, no I/O: the socket layer (net/socklayer.py) does the host side. Each guest socket
is a host object the guest holds (an AF_UNIX stream socket standing in for a TCP socket, or a
host TCP connection forwarded in with ``-p``), identified by its host inode; this module says
what Linux would say about it as an AF_INET socket: getsockname/getpeername, getsockopt, and
which binds conflict (SO_REUSEADDR rules).
"""
from __future__ import annotations

import enum
import random
import struct
from collections import deque
from dataclasses import dataclass, field

from linuxabi.abi import errno as E
from linuxabi.abi import flags as F

SOCKADDR_IN = struct.Struct("!HH4s8x")  # family is host-endian: packed separately below
SOCKADDR_IN_LEN = 16
EPHEMERAL = range(32768, 61000)  # net.ipv4.ip_local_port_range's default
ANY = 0
LOOPBACK = 0x7F000001


class NetError(OSError):
    def __init__(self, code: int) -> None:
        super().__init__(code, "")


def is_loopback(addr: int) -> bool:
    return addr >> 24 == 127


def ip_str(addr: int) -> str:
    return ".".join(str((addr >> s) & 0xFF) for s in (24, 16, 8, 0))


def pack_sockaddr_in(addr: int, port: int) -> bytes:
    return struct.pack("=H", F.AF_INET) + struct.pack("!HI", port, addr) + bytes(8)


def parse_sockaddr_in(raw: bytes, *, allow_unspec: bool = False) -> tuple[int, int]:
    """(address, port) of a guest's sockaddr_in; EINVAL when short, EAFNOSUPPORT otherwise."""
    if len(raw) < SOCKADDR_IN_LEN:
        raise NetError(E.EINVAL)
    (family,) = struct.unpack_from("=H", raw)
    port, addr = struct.unpack_from("!HI", raw, 2)
    if family != F.AF_INET and not (allow_unspec and family == F.AF_UNSPEC and addr == ANY):
        raise NetError(E.EAFNOSUPPORT)
    return addr, port


class State(enum.Enum):
    CLOSED = "CLOSE"  # created, maybe bound
    LISTEN = "LISTEN"
    ESTABLISHED = "ESTABLISHED"


@dataclass
class Pending:
    """A connection queued on a listener, in the order the host kernel queued it."""

    peer: tuple[int, int]  # the connecting side's address
    local: tuple[int, int]  # the address it connected to
    replacement: int = -1  # a host fd the guest gets instead of the accepted stand-in (-p)
    keep: list[int] = field(default_factory=list)  # host fds to close once accepted


@dataclass
class InetSocket:
    """One guest AF_INET socket (its host object's inode is the key)."""

    ino: int
    type: int  # SOCK_STREAM or SOCK_DGRAM
    local: tuple[int, int] | None = None  # bound address
    peer: tuple[int, int] | None = None
    state: State = State.CLOSED
    rendezvous: str = ""  # listener: the host path its stand-in listens on
    pending: deque[Pending] = field(default_factory=deque)
    options: dict[tuple[int, int], bytes] = field(default_factory=dict)
    host_tcp: bool = False  # the host object is a real TCP socket: its options are its own

    @property
    def protocol(self) -> int:
        return F.IPPROTO_TCP if self.type == F.SOCK_STREAM else F.IPPROTO_UDP

    @property
    def proto_name(self) -> str:
        return "tcp" if self.type == F.SOCK_STREAM else "udp"

    def reuseaddr(self) -> bool:
        return _int_of(self.options.get((F.SOL_SOCKET, F.SO_REUSEADDR), b"")) != 0

    def sockname(self) -> bytes:
        addr, port = self.local or (ANY, 0)
        return pack_sockaddr_in(addr, port)

    def peername(self) -> bytes:
        if self.peer is None:
            raise NetError(E.ENOTCONN)
        return pack_sockaddr_in(*self.peer)


def _int_of(raw: bytes) -> int:
    return struct.unpack("=i", raw[:4])[0] if len(raw) >= 4 else 0


# ---- socket options -----------------------------------------------------------------------

_INT = 4
# (level, name) -> (default bytes, minimum optlen). Options the stand-in host object cannot
# answer as TCP would (its family, protocol, and TCP's own options) live here.
EMULATED: dict[tuple[int, int], tuple[bytes, int]] = {
    (F.SOL_SOCKET, F.SO_REUSEADDR): (struct.pack("=i", 0), _INT),
    (F.SOL_SOCKET, F.SO_REUSEPORT): (struct.pack("=i", 0), _INT),
    (F.SOL_SOCKET, F.SO_KEEPALIVE): (struct.pack("=i", 0), _INT),
    (F.SOL_SOCKET, F.SO_BROADCAST): (struct.pack("=i", 0), _INT),
    (F.SOL_SOCKET, F.SO_OOBINLINE): (struct.pack("=i", 0), _INT),
    (F.SOL_SOCKET, F.SO_DONTROUTE): (struct.pack("=i", 0), _INT),
    (F.SOL_SOCKET, F.SO_LINGER): (struct.pack("=ii", 0, 0), 8),
    (F.IPPROTO_IP, F.IP_TOS): (struct.pack("=i", 0), 1),
    (F.IPPROTO_IP, F.IP_TTL): (struct.pack("=i", 64), _INT),
    (F.IPPROTO_IP, F.IP_RECVERR): (struct.pack("=i", 0), 1),
    (F.IPPROTO_IP, F.IP_MTU_DISCOVER): (struct.pack("=i", 1), _INT),  # IP_PMTUDISC_WANT
    (F.IPPROTO_IP, F.IP_FREEBIND): (struct.pack("=i", 0), 1),
    (F.IPPROTO_IP, F.IP_BIND_ADDRESS_NO_PORT): (struct.pack("=i", 0), 1),
    (F.IPPROTO_IP, F.IP_PKTINFO): (struct.pack("=i", 0), 1),
}
TCP_ONLY: dict[tuple[int, int], tuple[bytes, int]] = {
    (F.IPPROTO_TCP, F.TCP_NODELAY): (struct.pack("=i", 0), _INT),
    (F.IPPROTO_TCP, F.TCP_CORK): (struct.pack("=i", 0), _INT),
    (F.IPPROTO_TCP, F.TCP_MAXSEG): (struct.pack("=i", 536), _INT),
    (F.IPPROTO_TCP, F.TCP_KEEPIDLE): (struct.pack("=i", 7200), _INT),
    (F.IPPROTO_TCP, F.TCP_KEEPINTVL): (struct.pack("=i", 75), _INT),
    (F.IPPROTO_TCP, F.TCP_KEEPCNT): (struct.pack("=i", 9), _INT),
    (F.IPPROTO_TCP, F.TCP_SYNCNT): (struct.pack("=i", 6), _INT),
    (F.IPPROTO_TCP, F.TCP_LINGER2): (struct.pack("=i", 60), _INT),
    (F.IPPROTO_TCP, F.TCP_DEFER_ACCEPT): (struct.pack("=i", 0), _INT),
    (F.IPPROTO_TCP, F.TCP_WINDOW_CLAMP): (struct.pack("=i", 0), _INT),
    (F.IPPROTO_TCP, F.TCP_QUICKACK): (struct.pack("=i", 1), _INT),
    (F.IPPROTO_TCP, F.TCP_USER_TIMEOUT): (struct.pack("=i", 0), _INT),
    (F.IPPROTO_TCP, F.TCP_FASTOPEN): (struct.pack("=i", 0), _INT),
    (F.IPPROTO_TCP, F.TCP_NOTSENT_LOWAT): (struct.pack("=i", 0), _INT),
    (F.IPPROTO_TCP, F.TCP_CONGESTION): (b"cubic".ljust(16, b"\0"), 1),
}
# Options whose value the host object holds and honours (timeouts, buffer sizes) or knows
# (SO_ERROR, SO_ACCEPTCONN): the call runs on the host object.
HOST_OPTIONS = frozenset({
    (F.SOL_SOCKET, n) for n in (
        F.SO_RCVBUF, F.SO_SNDBUF, F.SO_RCVLOWAT, F.SO_SNDLOWAT, F.SO_RCVTIMEO_OLD,
        F.SO_SNDTIMEO_OLD, F.SO_RCVTIMEO_NEW, F.SO_SNDTIMEO_NEW, F.SO_ERROR, F.SO_ACCEPTCONN,
        F.SO_RCVBUFFORCE, F.SO_SNDBUFFORCE, F.SO_PRIORITY, F.SO_MARK, F.SO_TIMESTAMP_OLD,
        F.SO_TIMESTAMPNS_OLD, F.SO_BUSY_POLL, F.SO_INCOMING_CPU, F.SO_ZEROCOPY)
})


def option_table(sock: InetSocket) -> dict[tuple[int, int], tuple[bytes, int]]:
    return {**EMULATED, **TCP_ONLY} if sock.type == F.SOCK_STREAM else EMULATED


def fixed_option(sock: InetSocket, level: int, name: int) -> int | None:
    """Read-only options whose answer is the socket's identity."""
    if level != F.SOL_SOCKET:
        return None
    return {F.SO_TYPE: sock.type, F.SO_DOMAIN: F.AF_INET, F.SO_PROTOCOL: sock.protocol}.get(name)


# ---- the port table --------------------------------------------------------------------------


@dataclass
class _Binding:
    sock: InetSocket


class PortTable:
    """Who holds which (protocol, port): Linux's bind-conflict rules for one network namespace.

    ``alive(ino)`` tells whether a socket still exists (the guest closes sockets natively, so a
    binding can outlive its socket; stale ones are dropped when they are in the way).
    """

    def __init__(self, seed: int | None = None) -> None:
        self._ports: dict[tuple[int, int], list[InetSocket]] = {}
        self._rng = random.Random(seed)

    def holders(self, sock_type: int, port: int) -> list[InetSocket]:
        return self._ports.get((sock_type, port), [])

    def _conflicts(self, sock: InetSocket, addr: int, port: int, alive) -> bool:  # noqa: ANN001
        live = [s for s in self.holders(sock.type, port) if alive(s.ino)]
        self._ports[(sock.type, port)] = live
        for other in live:
            if other is sock:
                continue
            other_addr = other.local[0] if other.local else ANY
            if other_addr != addr and ANY not in (addr, other_addr):
                continue
            if (sock.type == F.SOCK_STREAM and sock.reuseaddr() and other.reuseaddr()
                    and other.state != State.LISTEN):
                continue
            if sock.type == F.SOCK_DGRAM and sock.reuseaddr() and other.reuseaddr():
                continue
            return True
        return False

    def bind(self, sock: InetSocket, addr: int, port: int, alive) -> tuple[int, int]:  # noqa: ANN001
        """Bind ``sock`` to addr:port (port 0: an ephemeral one); EADDRINUSE on a conflict."""
        if port == 0:
            port = self._ephemeral(sock, addr, alive)
        elif self._conflicts(sock, addr, port, alive):
            raise NetError(E.EADDRINUSE)
        self._ports.setdefault((sock.type, port), []).append(sock)
        sock.local = (addr, port)
        return sock.local

    def _ephemeral(self, sock: InetSocket, addr: int, alive) -> int:  # noqa: ANN001
        start = self._rng.randrange(len(EPHEMERAL))
        for i in range(len(EPHEMERAL)):
            port = EPHEMERAL[(start + i) % len(EPHEMERAL)]
            if not self._conflicts(sock, addr, port, alive):
                return port
        raise NetError(E.EADDRINUSE)

    def listener(self, sock_type: int, addr: int, port: int, alive) -> InetSocket | None:  # noqa: ANN001
        """The listening socket a connection to addr:port reaches: an exact address first."""
        best = None
        for s in self.holders(sock_type, port):
            if s.state != State.LISTEN or not alive(s.ino):
                continue
            bound = s.local[0] if s.local else ANY
            if bound == addr:
                return s
            if bound == ANY:
                best = best or s
        return best

    def receiver(self, addr: int, port: int, alive) -> InetSocket | None:  # noqa: ANN001
        """The UDP socket a datagram to addr:port reaches."""
        best = None
        for s in self.holders(F.SOCK_DGRAM, port):
            if not alive(s.ino):
                continue
            bound = s.local[0] if s.local else ANY
            if bound == addr:
                return s
            if bound == ANY:
                best = best or s
        return best
