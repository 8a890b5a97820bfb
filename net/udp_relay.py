"""Guest UDP to the outside, through the uplink's stack (``--net tap``, net/uplink.py).

The guest's datagrams leave its socket natively, as every other send does: the translator gives
a socket that names an outside address (an addressed sendto, a connect; both trapped and
authorized first) SO_BINDTODEVICE=lo. Linux then routes any destination out of lo (an on-link
route, marked local because lo is a loopback device), and delivers it in the sandbox's own
namespace to whatever socket is bound to that destination. That is a relay of this module: an
IP_TRANSPARENT socket bound to the remote's own (ip, port), which the namespace does not have
(the translator holds CAP_NET_ADMIN there). The relay passes each datagram to a stack UdpSocket
kept per guest socket (its native local address), which sends it from the sandbox's interface
address; the stack socket's replies go back through the relay bound to their source, so the
guest's native recvfrom/recvmsg see the real remote as the sender, and a connected guest socket
(natively connected to the remote, through lo) accepts them.

All of it runs on the uplink loop's thread, which lives in the sandbox's network namespace.
Relays and flows expire when idle (datagrams carry no close).
"""
from __future__ import annotations

import errno
import selectors
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from .icmp_relay import error_packet, udp_quote
from .ipv4 import ntoa

if TYPE_CHECKING:
    from .icmp import Quote
    from .stack import Stack
    from .udp import UdpSocket

Addr = tuple[str, int]
IP_TRANSPARENT = 19
IDLE = 600.0               # seconds without a datagram before a relay or a flow goes
_MAX = 4096                # relays, and flows: the oldest idle go first beyond these
_BATCH = 64                # datagrams per readiness callback (the loop has other work)


class Loop(Protocol):
    def watch(self, fd: int, events: int, callback: Callable[[], None]) -> None: ...
    def unwatch(self, fd: int) -> None: ...
    def soon(self, callback: Callable[[], None]) -> None: ...
    def now(self) -> float: ...


@dataclass
class _Flow:
    sock: "UdpSocket"       # the stack's end, for one guest socket
    guest: Addr             # the guest socket's native local address (where replies go)
    used: float


@dataclass
class _Relay:
    sock: socket.socket     # bound (transparently) to the remote's address, in the sandbox
    remote: Addr
    used: float


class UdpRelay:
    def __init__(self, loop: Loop, stack: "Stack", inject: Callable[[bytes], None] | None = None) -> None:
        self.loop, self.stack = loop, stack
        self.inject = inject  # writes an IPv4 packet into the sandbox's loopback (ICMP errors)
        self._relays: dict[Addr, _Relay] = {}
        self._flows: dict[Addr, _Flow] = {}
        self.counters = {"udp_out": 0, "udp_in": 0, "udp_dropped": 0, "udp_errors": 0}

    # ---- what the translator asks for (on the loop's thread, through Uplink.call) -------------
    def relay(self, remote: Addr) -> None:
        """Make sure datagrams to `remote` from the sandbox reach the stack."""
        self._relay(remote)

    def flow(self, guest: Addr) -> int:
        """The stack's port for the guest socket at `guest` (created now if new)."""
        sock = self._flow(guest).sock
        assert sock.local is not None
        return sock.local[1]

    def remotes(self) -> list[Addr]:
        return [r.remote for r in self._relays.values()]

    def drop_relays(self, keep: Callable[[Addr], bool]) -> list[Addr]:
        """Close the relays of remotes ``keep`` refuses (a revoked capability); their remotes."""
        gone = [r for r in self._relays.values() if not keep(r.remote)]
        for r in gone:
            self._drop_relay(r)
        return [r.remote for r in gone]

    def close(self) -> None:
        for r in list(self._relays.values()):
            self._drop_relay(r)
        for f in list(self._flows.values()):
            f.sock.on_event = None
            f.sock.close()
        self._flows.clear()

    # ---- relays ------------------------------------------------------------------------------
    def _relay(self, remote: Addr) -> _Relay:
        r = self._relays.get(remote)
        now = self.loop.now()
        if r is not None:
            r.used = now
            return r
        self._expire(self._relays, now, self._drop_relay)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)  # bind and send from an address not ours
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(remote)
        except OSError:
            s.close()
            raise
        r = self._relays[remote] = _Relay(s, remote, now)
        self.loop.watch(s.fileno(), selectors.EVENT_READ, lambda: self._outbound(r))
        return r

    def _drop_relay(self, r: _Relay) -> None:
        if self._relays.get(r.remote) is r:
            del self._relays[r.remote]
        self.loop.unwatch(r.sock.fileno())
        r.sock.close()

    def _outbound(self, r: _Relay) -> None:
        """Datagrams the guests sent to r.remote: out through each one's stack socket."""
        now = self.loop.now()
        for _ in range(_BATCH):
            try:
                data, src = r.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:                       # an ICMP error queued on the relay: not for it
                continue
            r.used = now
            try:
                self._flow(src[:2]).sock.sendto(data, r.remote, now)
                self.counters["udp_out"] += 1
            except OSError:                       # no route since, no port left: lost, as UDP may
                self.counters["udp_dropped"] += 1
        self.loop.soon(lambda: self._outbound(r))  # more may be queued: after the others' turn

    # ---- flows -------------------------------------------------------------------------------
    def _flow(self, guest: Addr) -> _Flow:
        f = self._flows.get(guest)
        now = self.loop.now()
        if f is not None:
            f.used = now
            return f
        self._expire(self._flows, now, self._drop_flow)
        sock = self.stack.udp_socket()
        try:
            sock.bind(0, guest[1])                # the guest's own port, so getsockname tells the truth
        except OSError:
            sock.bind(0, 0)
        f = self._flows[guest] = _Flow(sock, guest, now)
        sock.on_event = lambda _s: self.loop.soon(lambda: self._inbound(f))
        sock.on_icmp = lambda q, type_, code: self._error(f, q, type_, code)
        return f

    def _error(self, f: _Flow, q: "Quote", type_: int, code: int) -> None:
        """An ICMP error about a datagram this flow sent (a closed port, say): the same error
        about the guest's own datagram, into the loopback it came through, where the guest's
        kernel socket takes it as Linux would (ECONNREFUSED on a connected socket)."""
        if self.inject is None:
            return
        remote = (ntoa(q.dst), q.dport)
        self.inject(error_packet(remote[0], f.guest[0], type_, code, udp_quote(f.guest, remote)))
        self.counters["udp_errors"] += 1

    def _drop_flow(self, f: _Flow) -> None:
        if self._flows.get(f.guest) is f:
            del self._flows[f.guest]
        f.sock.on_event = None
        f.sock.close()

    def _inbound(self, f: _Flow) -> None:
        """Replies to a guest socket: from the relay bound to their source."""
        f.sock.take_error()                       # unconnected stack socket: never set; harmless
        now = self.loop.now()
        while (got := f.sock.recvfrom()) is not None:
            data, src = got
            f.used = now
            try:
                self._relay(src).sock.sendto(data, f.guest)
                self.counters["udp_in"] += 1
            except OSError as e:                  # the guest's buffer is full, its socket gone
                if e.errno not in (errno.EAGAIN, errno.ECONNREFUSED, errno.EADDRINUSE):
                    raise
                self.counters["udp_dropped"] += 1

    @staticmethod
    def _expire(table: dict, now: float, drop: Callable) -> None:  # type: ignore[type-arg]
        """Idle entries go; past _MAX the least recently used go too."""
        stale = [v for v in table.values() if now - v.used > IDLE]
        if len(table) - len(stale) >= _MAX:
            stale += sorted((v for v in table.values() if now - v.used <= IDLE), key=lambda v: v.used)[:len(table) // 8]
        for v in stale:
            drop(v)
