"""The TCP demultiplexer: connection and listener tables, port binding, ISNs, RSTs for
segments nobody owns, ICMP errors, and the connections' timers."""
from __future__ import annotations

import errno
import hashlib
import struct
from dataclasses import replace
from typing import TYPE_CHECKING

from . import icmp
from .ipv4 import IPPROTO_TCP, Ipv4Header
from .tcp import State, TcpConfig, TcpSocket
from .tcp_segment import ACK, RST, Segment, build, parse
from .tcp_timing import M32, seq_le, seq_lt
from .timer_heap import TimerHeap
from .virtio.net_hdr import VirtioNetHdr

if TYPE_CHECKING:
    from .stack import Stack


class TcpLayer:
    """Connection and listener tables, port binding, RSTs for strays, and the connections'
    timers (net/timer_heap.py)."""

    def __init__(self, stack: Stack, cfg: TcpConfig | None = None) -> None:
        self.stack = stack
        self.cfg = cfg or TcpConfig()
        self.counters = stack.counters
        self.conns: dict[tuple[int, int, int, int], TcpSocket] = {}
        self.listeners: dict[tuple[int, int], TcpSocket] = {}
        self.ports: dict[int, set[TcpSocket]] = {}
        self.time_wait = 0                                # connections in TIME-WAIT (cfg.max_time_wait)
        self.timers = TimerHeap()
        self._secret = stack.rng.getrandbits(128).to_bytes(16, "big")
        lo, hi = 32768, 60999
        self._eph = (lo, hi, lo + stack.rng.randrange(hi - lo + 1))
        self._challenge_window, self._challenge_count = -1, 0

    def configure(self, **changes: object) -> None:
        self.cfg = replace(self.cfg, **changes)  # type: ignore[arg-type]

    def socket(self) -> TcpSocket:
        return TcpSocket(self, self.cfg)

    @staticmethod
    def key(s: TcpSocket) -> tuple[int, int, int, int]:
        assert s.local is not None and s.remote is not None
        return (s.local[0], s.local[1], s.remote[0], s.remote[1])

    def isn(self, local: tuple[int, int], remote: tuple[int, int], now: float) -> int:
        """RFC 6528: a keyed hash of the 4-tuple plus a 4-microsecond clock."""
        if self.cfg.fixed_isn is not None:
            return self.cfg.fixed_isn & M32
        h = hashlib.blake2b(struct.pack("!IHIH", local[0], local[1], remote[0], remote[1]),
                            key=self._secret, digest_size=4).digest()
        return (int.from_bytes(h, "big") + int(now * 250_000)) & M32

    # -- ports
    def bind(self, sock: TcpSocket, addr: int, port: int) -> None:
        stack = self.stack
        if addr and not stack.is_local(addr):
            raise OSError(errno.EADDRNOTAVAIL, "cannot assign requested address")
        if port == 0:
            port = self._ephemeral(addr)
        elif not 0 < port < 65536:
            raise OSError(errno.EINVAL, "bad port")
        elif self._conflict(sock, addr, port):
            raise OSError(errno.EADDRINUSE, "address already in use")
        sock.local = (addr, port)
        self.ports.setdefault(port, set()).add(sock)

    def rebind(self, sock: TcpSocket, addr: int) -> None:
        """Fix the wildcard address of a bound socket at connect time."""
        assert sock.local is not None
        sock.local = (addr, sock.local[1])

    def _conflict(self, sock: TcpSocket, addr: int, port: int) -> bool:
        for other in self.ports.get(port, ()):
            if other is sock or other.local is None:
                continue
            if other.local[0] and addr and other.local[0] != addr:
                continue
            if sock.reuseaddr and other.reuseaddr and other.state != State.LISTEN:
                continue
            if sock.reuseaddr and other.state == State.TIME_WAIT:
                continue
            return True
        return False

    def _ephemeral(self, addr: int) -> int:
        lo, hi, nxt = self._eph
        span = hi - lo + 1
        for _ in range(span):
            port = nxt
            nxt = lo + (nxt - lo + 1) % span
            if not self.ports.get(port):
                self._eph = (lo, hi, nxt)
                return port
        raise OSError(errno.EADDRNOTAVAIL, "no ephemeral ports left")

    def add_listener(self, sock: TcpSocket) -> None:
        assert sock.local is not None
        self.listeners[sock.local] = sock

    def release(self, sock: TcpSocket) -> None:
        """The application is done with it and the TCB is gone: free the port."""
        if sock.local is not None:
            holders = self.ports.get(sock.local[1])
            if holders is not None:
                holders.discard(sock)
                if not holders:
                    del self.ports[sock.local[1]]

    def forget(self, sock: TcpSocket) -> None:
        if sock.local is not None and sock.remote is not None:
            if self.conns.get(self.key(sock)) is sock:
                del self.conns[self.key(sock)]
        if sock.local is not None and self.listeners.get(sock.local) is sock:
            del self.listeners[sock.local]
        self.timers.forget(sock)
        if sock.app_closed:
            self.release(sock)

    # -- timers
    def schedule(self, sock: TcpSocket) -> None:
        """Have ``sock.on_timer`` run at its deadline (or earlier: see net/timer_heap.py)."""
        self.timers.set(sock, None if sock.state == State.CLOSED else sock.deadline)

    def poll(self, now: float) -> None:
        self.timers.poll(now)

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def challenge_allowed(self, now: float) -> bool:
        sec = int(now)
        if sec != self._challenge_window:
            self._challenge_window, self._challenge_count = sec, 0
        self._challenge_count += 1
        return self._challenge_count <= self.cfg.challenge_ack_limit

    # -- input
    def input(self, h: Ipv4Header, payload: memoryview, csum_ok: bool, now: float,
              vhdr: VirtioNetHdr) -> str | None:
        seg = parse(h.src, h.dst, payload, csum_ok)
        if isinstance(seg, str):
            return seg
        self.counters.events["tcp_segments_in"] += 1
        sock = self.conns.get((h.dst, seg.dport, h.src, seg.sport))
        iss = None
        if sock is not None:
            if not (sock.state == State.TIME_WAIT and sock.reopened_by(seg)):
                return sock._input(seg, now)
            self.counters.events["tcp_time_wait_reopened"] += 1
            iss = (sock.snd_max + 65537) & M32            # past all the old one sent, as Linux's
            sock._finish(0)                               # the SYN goes to the listener
        lst = self.listeners.get((h.dst, seg.dport)) or self.listeners.get((0, seg.dport))
        if lst is not None:
            return lst._input_listen(h, seg, now, iss)
        self.reset_for((h.dst, seg.dport), (h.src, seg.sport), seg, now)
        return "tcp_no_socket"

    def reset_for(self, local: tuple[int, int] | None, remote: tuple[int, int] | None,
                  seg: Segment, now: float) -> None:
        """RFC 9293 3.10.7.1: answer a segment nobody wants with a RST (never a RST to a RST)."""
        if seg.flags & RST or local is None or remote is None:
            return
        if seg.flags & ACK:
            seq, ack, flags = seg.ack, 0, RST
        else:
            seq, ack, flags = 0, (seg.seq + seg.seg_len) & M32, RST | ACK
        pkt = build(local[0], remote[0], local[1], remote[1], seq, ack, flags, 0, b"", b"")
        self.counters.events["tcp_resets_sent"] += 1
        self.stack.ip_output(IPPROTO_TCP, local[0], remote[0], pkt, now, df=True)

    def error(self, q: icmp.Quote, type_: int, code: int) -> None:
        """ICMP about a segment we sent (RFC 5927: only if its sequence is in flight)."""
        sock = self.conns.get((q.src, q.sport, q.dst, q.dport))
        if sock is None or len(q.l4) < 8:
            return
        seq = struct.unpack_from("!I", q.l4, 4)[0]
        if not (seq_le(sock.snd_una, seq) and seq_lt(seq, sock.snd_max)):
            self.counters.events["tcp_icmp_out_of_window"] += 1
            return
        if type_ == icmp.DEST_UNREACH:
            if code == icmp.FRAG_NEEDED:
                return                                    # path MTU discovery: not yet
            err = {icmp.PORT_UNREACH: errno.ECONNREFUSED, icmp.PROTO_UNREACH: errno.ENOPROTOOPT,
                   icmp.NET_UNREACH: errno.ENETUNREACH}.get(code, errno.EHOSTUNREACH)
        else:
            err = errno.EHOSTUNREACH
        if sock.state == State.SYN_SENT:
            sock._abort(err)                              # as Linux: a connect fails at once
        else:
            sock.soft_error = err
