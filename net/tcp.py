"""TCP (RFC 9293): the connection state machine, one TcpSocket per endpoint (tcp_layer.py
demultiplexes segments to them and fires their timers).

Per connection: sequence arithmetic mod 2**32, MSS / window scale / timestamps / SACK
negotiated in the SYNs, RFC 6298 retransmission timer (Karn's rule, or timestamp RTT
samples), NewReno fast recovery (SACK-paced when negotiated), in-order delivery through an
out-of-order queue, receiver and sender silly-window avoidance, Nagle, delayed ACKs, zero
window probes, keepalive, TIME-WAIT, and RFC 5961's defences (exact-sequence RST, challenge
ACKs for in-window RSTs and SYNs, ACK range check). Everything is driven by segments and
`now`; timers are deadlines that `TcpLayer.poll` fires.
"""
from __future__ import annotations

import errno
from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, Final, TYPE_CHECKING

from .counters import Counters
from .ipv4 import IPPROTO_TCP, Ipv4Header, aton, ntoa
from .tcp_cc import NewReno
from .tcp_segment import (ACK, FIN, PSH, RST, SYN, TS_OPT_LEN, Segment, build, data_options,
                          syn_options)
from .tcp_timing import M32, RtoEstimator, seq_diff, seq_le, seq_lt
from .virtio.net_hdr import PLAIN, tcp4_partial

if TYPE_CHECKING:
    from .tcp_layer import TcpLayer


class State(IntEnum):
    CLOSED = 0
    LISTEN = 1
    SYN_SENT = 2
    SYN_RECEIVED = 3
    ESTABLISHED = 4
    FIN_WAIT_1 = 5
    FIN_WAIT_2 = 6
    CLOSE_WAIT = 7
    CLOSING = 8
    LAST_ACK = 9
    TIME_WAIT = 10


_SENDING: Final = frozenset({State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK})
_RECEIVING: Final = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})
_CONNECTED: Final = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})
_TCP_HDR: Final = 20
_MAX_TSO: Final = 65535 - 20 - 60
_PAWS_WINDOW: Final = 1                  # ticks of slack for reordering, as Linux's TCP_PAWS_WINDOW


@dataclass(frozen=True)
class TcpConfig:
    rcvbuf: int = 262144
    sndbuf: int = 262144
    msl: float = 30.0                 # TIME-WAIT lasts 2*MSL (Linux: 60 s in all)
    delack: float = 0.04              # Linux's minimum delayed-ACK timeout
    initial_rto: float = 1.0
    min_rto: float = 0.2
    max_rto: float = 120.0
    syn_retries: int = 6
    synack_retries: int = 5
    retries: int = 15
    fin_timeout: float = 60.0         # an orphaned FIN-WAIT-2 gives up after this
    keepalive_idle: float = 7200.0
    keepalive_interval: float = 75.0
    keepalive_count: int = 9
    window_scaling: bool = True
    timestamps: bool = True
    sack: bool = True
    challenge_ack_limit: int = 1000   # per second, stack-wide (RFC 5961 7)
    max_ooo_blocks: int = 64
    # Connections in TIME-WAIT at once, stack-wide (Linux's tcp_max_tw_buckets, 131072 on a
    # 24 GB host, for ~200-byte entries; each of ours is a whole TcpSocket, ~4.6 KB: a server
    # closing 1.5k connections a second would otherwise hold ~400 MB). Past it a connection
    # closes without TIME-WAIT, as Linux's does when its table is full.
    max_time_wait: int = 16384
    # Every connection's initial sequence number, in place of RFC 6528's hash (None): tests
    # that need sequence numbers about to wrap.
    fixed_isn: int | None = None


def _earlier(a: float | None, b: float | None) -> float | None:
    """The earlier of two deadlines (None: none)."""
    return a if b is None or (a is not None and a <= b) else b


class TcpSocket:
    """One TCP endpoint: listener or connection. Socket calls raise OSError as Linux would;
    segments never raise. `on_event(sock)` is called whenever readiness may have changed."""

    def __init__(self, layer: TcpLayer, cfg: TcpConfig) -> None:
        self.layer, self.cfg = layer, cfg
        self.state = State.CLOSED
        self.local: tuple[int, int] | None = None
        self.remote: tuple[int, int] | None = None
        self.on_event: Callable[[TcpSocket], None] | None = None
        self.error = 0                 # pending SO_ERROR (hard)
        self.soft_error = 0            # last ICMP error, reported if the connection times out
        self.nodelay = False
        self.corked = False            # partial segments wait for uncork() (Linux's TCP_CORK)
        self.keepalive = False
        self.reuseaddr = False
        self.rcvbuf_size, self.sndbuf_size = cfg.rcvbuf, cfg.sndbuf
        self.app_closed = False        # close() called: the TCB lives on alone until CLOSED
        self.shut_rd = False
        self.was_connected = False
        # send side
        self.iss = self.snd_una = self.snd_nxt = self.snd_max = self.snd_base = 0
        self.snd_wnd = self.snd_wl1 = self.snd_wl2 = self.max_snd_wnd = 0
        self.snd_wscale = self.rcv_wscale = 0
        self.sndq = bytearray()        # bytes from snd_base (== snd_una once the SYN is acked)
        self.fin_queued = False
        # receive side
        self.irs = self.rcv_nxt = self.rcv_adv = 0
        self.rcvbuf = bytearray()
        self.fin_received = False
        self._ooo: list[tuple[int, bytearray]] = []     # disjoint blocks above rcv_nxt, sorted
        self._ooo_fin: int | None = None
        self._sack_last: int | None = None
        # negotiated options
        self.mss = 536                 # peer's MSS, clamped to ours
        self.ts_ok = self.sack_ok = False
        self.ts_recent = 0
        self._ts_offset = 0
        self._offer_wscale: int | None = None
        self._last_ack_sent = 0
        # timers and estimators
        self.rto = RtoEstimator(initial=cfg.initial_rto, min_rto=cfg.min_rto, max_rto=cfg.max_rto)
        self.cc = NewReno(536)
        self.retries = 0
        self._rtt_seq: int | None = None
        self._rtx_ts: int | None = None          # TS clock at the last retransmission
        self._rtt_time = 0.0
        self.rto_at: float | None = None
        self.delack_at: float | None = None
        self.persist_at: float | None = None
        self.tw_at: float | None = None
        self.ka_at: float | None = None
        self.fin2_at: float | None = None
        self._persist_backoff = 0
        self._ka_probes = 0
        self.sacked: list[tuple[int, int]] = []         # SACKed blocks above snd_una
        self._rtx_next = 0                              # next hole to retransmit in SACK recovery
        self._ack_now = False
        self._unacked_segs = 0
        # listener
        self.backlog = 0
        self.accept_queue: deque[TcpSocket] = deque()
        self.syn_children: set[TcpSocket] = set()
        self.parent: TcpSocket | None = None

    # ------------------------------------------------------------------ socket calls
    def bind(self, addr: str | int, port: int) -> None:
        if self.local is not None:
            raise OSError(errno.EINVAL, "already bound")
        self.layer.bind(self, aton(addr), port)

    def listen(self, backlog: int = 128) -> None:
        if self.state not in (State.CLOSED, State.LISTEN) or self.was_connected:
            raise OSError(errno.EINVAL, "not a fresh socket")
        if self.local is None:
            self.layer.bind(self, 0, 0)
        self.backlog = max(backlog, 1)
        if self.state == State.CLOSED:
            self.state = State.LISTEN
            self.layer.add_listener(self)

    def accept(self) -> TcpSocket | None:
        if self.state != State.LISTEN:
            raise OSError(errno.EINVAL, "not listening")
        if not self.accept_queue:
            return None
        child = self.accept_queue.popleft()
        child.parent = None
        return child

    def connect(self, addr: str | int, port: int, now: float) -> None:
        """Start an active open; completion (or failure) is reported through on_event."""
        if self.state == State.SYN_SENT:
            raise OSError(errno.EALREADY, "connection in progress")
        if self.state != State.CLOSED or self.was_connected:
            raise OSError(errno.EISCONN, "already connected")
        dst = aton(addr)
        if not 0 < port < 65536:
            raise OSError(errno.EINVAL, "bad port")
        src = self.layer.stack.source_address(dst)
        if src is None:
            raise OSError(errno.ENETUNREACH, "network is unreachable")
        if self.local is None:
            self.layer.bind(self, 0, 0)
        assert self.local is not None
        if self.local[0] == 0:
            self.layer.rebind(self, src)
        assert self.local is not None
        self.remote = (dst, port)
        if self.layer.key(self) in self.layer.conns:
            self.remote = None
            raise OSError(errno.EADDRNOTAVAIL, "4-tuple in use")
        self.was_connected = True
        self.iss = self.layer.isn(self.local, self.remote, now)
        self.snd_una, self.snd_nxt = self.iss, (self.iss + 1) & M32
        self.snd_max = self.snd_base = self.snd_nxt
        self.rcv_wscale = 0
        self._offer_wscale = self._wscale_for(self.rcvbuf_size) if self.cfg.window_scaling else None
        self._ts_offset = self.layer.stack.rng.getrandbits(32)
        self.state = State.SYN_SENT
        self.layer.conns[self.layer.key(self)] = self
        self._send_syn(now)
        self._rearm()
        self.layer.counters.events["tcp_active_opens"] += 1

    def send(self, data: bytes | memoryview, now: float) -> int:
        """Queue up to the free send-buffer space; 0 means it is full (EAGAIN)."""
        if self.error:
            raise OSError(self.take_error(), "connection error")
        if self.fin_queued or self.app_closed:
            raise OSError(errno.EPIPE, "shut down for writing")
        if self.state not in _CONNECTED and self.state not in (State.SYN_SENT, State.SYN_RECEIVED):
            raise OSError(errno.EPIPE if self.was_connected else errno.ENOTCONN, "not connected")
        n = min(len(data), self.sndbuf_size - len(self.sndq))
        if n <= 0:
            return 0
        self.sndq += memoryview(data)[:n]
        if self.state in _SENDING:
            self._output(now)
            self._rearm()
        return n

    def uncork(self, now: float) -> None:
        """Send what the cork held back."""
        if self.corked:
            self.corked = False
            self._output(now)
            self._rearm()

    def recv(self, n: int, now: float) -> bytes | None:
        """Up to n bytes; b"" at end of stream; None when nothing is there yet (EAGAIN)."""
        if self.rcvbuf and not self.shut_rd:
            data = bytes(self.rcvbuf[:n])
            del self.rcvbuf[:n]
            self._maybe_window_update(now)
            return data
        if self.error:
            raise OSError(self.take_error(), "connection error")
        if self.fin_received or self.shut_rd:
            return b""
        if self.state == State.CLOSED:
            if self.was_connected:
                return b""
            raise OSError(errno.ENOTCONN, "not connected")
        if self.state == State.LISTEN:
            raise OSError(errno.ENOTCONN, "listening")
        return None

    def shutdown(self, how: int, now: float) -> None:
        """how: 0 = SHUT_RD, 1 = SHUT_WR, 2 = both."""
        if self.state in (State.CLOSED, State.LISTEN, State.SYN_SENT) and not self.was_connected:
            raise OSError(errno.ENOTCONN, "not connected")
        if how in (0, 2):
            self.shut_rd = True
            self.rcvbuf.clear()
        if how in (1, 2):
            self._close_write(now)
        self._rearm()

    def close(self, now: float) -> None:
        if self.app_closed:
            return
        self.app_closed = True
        st = self.state
        if st == State.LISTEN:
            for child in [*self.accept_queue, *self.syn_children]:
                child.abort(now)
            self.accept_queue.clear()
            self._finish(0)
        elif st == State.CLOSED:
            self.layer.release(self)
        elif st == State.SYN_SENT:
            self._finish(0)
        elif self.rcvbuf or (st in _RECEIVING and self._ooo):
            self.abort(now)             # RFC 2525 2.17: unread data is lost; say so with a RST
        else:
            self._close_write(now)
            if self.state == State.FIN_WAIT_2:
                self.fin2_at = now + self.cfg.fin_timeout
            self._rearm()

    def abort(self, now: float) -> None:
        """Drop the connection at once, telling the peer with a RST (SO_LINGER 0)."""
        if self.state in (State.SYN_RECEIVED, State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT):
            self._send(self.snd_max, RST | ACK, b"", now)
            self.layer.counters.events["tcp_resets_sent"] += 1
        self._finish(0)

    def take_error(self) -> int:
        e, self.error = self.error, 0
        return e

    # readiness, for poll/epoll mirroring
    @property
    def readable(self) -> bool:
        return bool(self.rcvbuf or self.accept_queue or self.fin_received or self.error
                    or (self.state == State.CLOSED and self.was_connected))

    @property
    def writable(self) -> bool:
        return (self.state in _CONNECTED and not self.fin_queued
                and len(self.sndq) < self.sndbuf_size) or bool(self.error)

    @property
    def sockname(self) -> tuple[str, int] | None:
        return None if self.local is None else (ntoa(self.local[0]), self.local[1])

    @property
    def peername(self) -> tuple[str, int] | None:
        return None if self.remote is None else (ntoa(self.remote[0]), self.remote[1])

    def info(self) -> dict[str, object]:
        return {"state": self.state.name, "mss": self.mss, "cwnd": self.cc.cwnd,
                "ssthresh": self.cc.ssthresh, "srtt": self.rto.srtt, "rto": self.rto.rto,
                "snd_wnd": self.snd_wnd, "snd_wscale": self.snd_wscale, "rcv_wscale": self.rcv_wscale,
                "ts": self.ts_ok, "sack": self.sack_ok, "unacked": seq_diff(self.snd_max, self.snd_una),
                "sndq": len(self.sndq), "rcvq": len(self.rcvbuf), "ooo_blocks": len(self._ooo)}

    def __repr__(self) -> str:
        return f"<TcpSocket {self.sockname}->{self.peername} {self.state.name}>"

    # ------------------------------------------------------------------ helpers
    def _notify(self) -> None:
        if self.on_event is not None:
            self.on_event(self)

    @staticmethod
    def _wscale_for(buf: int) -> int:
        s = 0
        while s < 14 and buf >> s > 0xFFFF:
            s += 1
        return s

    def _local_mss(self) -> int:
        return self.layer.stack.mtu - 40

    def _ts_now(self, now: float) -> int:
        return (int(now * 1000) + self._ts_offset) & M32

    @property
    def _fin_seq(self) -> int:
        return (self.snd_base + len(self.sndq)) & M32

    @property
    def _fin_sent(self) -> bool:
        return self.fin_queued and seq_lt(self._fin_seq, self.snd_max)

    def _counters(self) -> Counters:
        return self.layer.counters

    # ------------------------------------------------------------------ output
    def _window_field(self, syn: bool = False) -> int:
        space = max(self.rcvbuf_size - len(self.rcvbuf), 0)
        cur = max(seq_diff(self.rcv_adv, self.rcv_nxt), 0)
        if space < cur:
            space = cur                                       # never shrink the window
        elif space - cur < min(self.rcvbuf_size // 2, self._local_mss()):
            space = cur                                       # receiver SWS avoidance
        if syn:
            wnd = min(space, 0xFFFF)
            self.rcv_adv = (self.rcv_nxt + wnd) & M32
            return wnd
        wnd = min(space >> self.rcv_wscale, 0xFFFF)
        self.rcv_adv = (self.rcv_nxt + (wnd << self.rcv_wscale)) & M32
        return wnd

    def _sack_blocks(self) -> list[tuple[int, int]]:
        if not self.sack_ok or not self._ooo:
            return []
        limit = 3 if self.ts_ok else 4
        blocks = [(s, (s + len(b)) & M32) for s, b in self._ooo]
        first = [b for b in blocks if b[0] == self._sack_last]
        rest = [b for b in reversed(blocks) if b[0] != self._sack_last]
        return (first + rest)[:limit]

    def _send(self, seq: int, flags: int, payload: bytes | bytearray | memoryview, now: float, *,
              options: bytes | None = None, gso_size: int = 0) -> None:
        stack = self.layer.stack
        assert self.local is not None and self.remote is not None
        syn = bool(flags & SYN)
        if options is None:
            options = data_options((self._ts_now(now), self.ts_recent) if self.ts_ok else None,
                                   self._sack_blocks() if flags & ACK else [])
        wnd = self._window_field(syn)
        ack = self.rcv_nxt if flags & ACK else 0
        if flags & ACK:
            self._last_ack_sent = self.rcv_nxt
            self.delack_at = None
            self._ack_now = False
            self._unacked_segs = 0
        src, dst = self.local[0], self.remote[0]
        partial = stack.tx_csum or gso_size > 0
        seg = build(src, dst, self.local[1], self.remote[1], seq, ack, flags, wnd, options, payload,
                    partial=partial)
        vhdr = PLAIN
        if partial:
            vhdr = tcp4_partial(gso_size, 14 + 20 + _TCP_HDR + len(options))
        c = self._counters().events
        c["tcp_segments_out"] += 1
        stack.ip_output(IPPROTO_TCP, src, dst, seg, now, df=True, vhdr=vhdr)

    def _send_ack(self, now: float) -> None:
        # snd_max, not snd_nxt: after a timeout snd_nxt went back to snd_una, and an ACK with
        # a sequence number the peer has already passed would be unacceptable to it (and
        # dropped with its acknowledgment), deadlocking two sides that both time out (BSD).
        self._send(self.snd_max, ACK, b"", now)

    def _send_syn(self, now: float) -> None:
        flags = SYN | (ACK if self.state == State.SYN_RECEIVED else 0)
        passive = self.state == State.SYN_RECEIVED
        ts = (self._ts_now(now), self.ts_recent if passive else 0) \
            if self.cfg.timestamps and (self.ts_ok or not passive) else None
        opts = syn_options(self._local_mss(), self._offer_wscale,
                           self.cfg.sack and (self.sack_ok or not passive), ts)
        self._send(self.iss, flags, b"", now, options=opts)
        if self._rtt_seq is None and self.retries == 0:
            self._rtt_seq, self._rtt_time = (self.iss + 1) & M32, now
        self.rto_at = now + self.rto.rto

    def _max_payload(self) -> int:
        opt = TS_OPT_LEN if self.ts_ok else 0
        if self.sack_ok and self._ooo:
            opt += 4 + 8 * min(len(self._ooo), 3 if self.ts_ok else 4)
        return max(min(self.mss, self._local_mss()) - opt, 1)

    def _pipe(self) -> int:
        """RFC 6675's estimate of bytes in the network: outstanding, less SACKed, less holes
        below the highest SACK not yet retransmitted (deemed lost)."""
        out = seq_diff(self.snd_max, self.snd_una)
        prev = self.snd_una
        for l, r in self.sacked:
            out -= seq_diff(r, l)
            if seq_lt(prev, l):
                start = prev if seq_lt(self._rtx_next, prev) else self._rtx_next
                if seq_lt(start, l):
                    out -= seq_diff(l, start)
            prev = r
        return max(out, 0)

    def _next_hole(self) -> tuple[int, int] | None:
        prev = self.snd_una
        for l, r in self.sacked:
            start = self._rtx_next if seq_lt(prev, self._rtx_next) else prev
            if seq_lt(start, l):
                return start, l
            prev = r
        return None

    def _output(self, now: float, *, force: bool = False) -> None:
        """Send what the windows, Nagle and SWS avoidance allow."""
        if self.state not in _SENDING:
            return
        maxp = self._max_payload()
        recovering = self.cc.in_recovery and self.sack_ok
        if recovering:
            while self.cc.cwnd - self._pipe() >= maxp and (hole := self._next_hole()) is not None:
                n = min(seq_diff(hole[1], hole[0]), maxp)
                self._send_range(hole[0], n, False, now, retransmit=True)
                self._rtx_next = (hole[0] + n) & M32
                self._counters().events["tcp_sack_retransmits"] += 1
        tso = self.layer.stack.tso and not recovering
        while True:
            if self.sacked and seq_lt(self.snd_nxt, self.snd_max):
                for l, r in self.sacked:                    # go-back-N skips SACKed data
                    if seq_le(l, self.snd_nxt) and seq_lt(self.snd_nxt, r):
                        self.snd_nxt = r
            off = seq_diff(self.snd_nxt, self.snd_base)
            avail = len(self.sndq) - off
            wnd_left = seq_diff((self.snd_una + self.snd_wnd) & M32, self.snd_nxt)
            if recovering:
                cw_left = self.cc.cwnd - self._pipe()
            else:
                cw_left = seq_diff((self.snd_una + self.cc.cwnd) & M32, self.snd_nxt)
            fresh = not seq_lt(self.snd_nxt, self.snd_max)
            cap = _MAX_TSO // maxp * maxp if tso and fresh else maxp   # TSO: new data only
            n = min(avail, wnd_left, cw_left, cap)
            if self.sacked and seq_lt(self.snd_nxt, self.snd_max):
                for l, _ in self.sacked:
                    if seq_lt(self.snd_nxt, l):
                        n = min(n, seq_diff(l, self.snd_nxt))
                        break
            fin = self.fin_queued and avail >= 0 and max(n, 0) == avail
            if n <= 0:
                if not (fin and avail == 0):
                    break
                n = 0
            elif n < maxp and n < avail and not force:
                if n < self.max_snd_wnd // 2 or wnd_left <= 0:   # sender SWS avoidance
                    break
            elif n < maxp and not fin and not force and (
                    self.corked or (not self.nodelay and seq_lt(self.snd_una, self.snd_nxt))):
                break                                            # corked, or Nagle: a small segment is out
            if n > maxp:
                if n < avail:
                    n -= n % maxp
                fin = fin and n == avail
            self._send_range(self.snd_nxt, n, fin, now, retransmit=not fresh, gso=maxp if n > maxp else 0)
            self.snd_nxt = (self.snd_nxt + n + fin) & M32
            if seq_lt(self.snd_max, self.snd_nxt):
                self.snd_max = self.snd_nxt
            force = False
            if fin:
                break
        if self._ack_now:
            self._send_ack(now)
        self._arm_persist(now)

    def _send_range(self, seq: int, n: int, fin: bool, now: float, *, retransmit: bool,
                    gso: int = 0) -> None:
        off = seq_diff(seq, self.snd_base)
        payload = self.sndq[off:off + n]
        flags = ACK | (PSH if n and off + n == len(self.sndq) else 0) | (FIN if fin else 0)
        self._send(seq, flags, payload, now, gso_size=gso)
        ev = self._counters().events
        if retransmit:
            ev["tcp_retransmits"] += 1
            self._rtx_ts = self._ts_now(now)
            if self._rtt_seq is not None and seq_lt(seq, self._rtt_seq):
                self._rtt_seq = None                     # Karn: no sample from a retransmission
        elif self._rtt_seq is None and not self.ts_ok:
            self._rtt_seq, self._rtt_time = (seq + n + fin) & M32, now
        if self.rto_at is None:
            self.rto_at = now + self.rto.rto

    def _retransmit_head(self, now: float) -> None:
        """Resend the first unacknowledged segment (fast retransmit, partial ACK)."""
        maxp = self._max_payload()
        off = seq_diff(self.snd_una, self.snd_base)
        if off < 0:
            return
        avail = len(self.sndq) - off
        n = min(avail, maxp)
        if self.sacked:
            n = min(n, seq_diff(self.sacked[0][0], self.snd_una))
        fin = self.fin_queued and n == avail and self._fin_sent
        if n <= 0 and not fin:
            return
        self._send_range(self.snd_una, max(n, 0), fin, now, retransmit=True)
        self._rtx_next = (self.snd_una + max(n, 0)) & M32
        self.rto_at = now + self.rto.rto

    def _arm_persist(self, now: float) -> None:
        """Zero window (or a window too small to use with nothing in flight): probe later."""
        pending = len(self.sndq) - seq_diff(self.snd_nxt, self.snd_base) > 0
        if pending and self.snd_una == self.snd_max and self.state in _SENDING:
            if self.persist_at is None:
                t = min(self.rto.rto * (1 << self._persist_backoff), 60.0)
                self.persist_at = now + max(t, 0.2)
        else:
            self.persist_at = None
            self._persist_backoff = 0

    def _maybe_window_update(self, now: float) -> None:
        """After a read: an ACK that tells the peer its window opened, when that matters now,
        that is when the window it knows is too small for the two segments after which we ACK
        (and say so) anyway. A short connection's read of its request, the SYN's 64 KiB still
        open, so sends no segment of its own (Linux's does not either)."""
        if self.state not in _RECEIVING:
            return
        space = self.rcvbuf_size - len(self.rcvbuf)
        cur = max(seq_diff(self.rcv_adv, self.rcv_nxt), 0)
        mss = self._local_mss()
        if cur < 2 * mss and space - cur >= min(self.rcvbuf_size // 2, 2 * mss):
            self._send_ack(now)
            self._rearm()

    # ------------------------------------------------------------------ input
    def _input(self, seg: Segment, now: float) -> str | None:
        if self.keepalive and self.state in _CONNECTED:
            self._ka_probes = 0
            self.ka_at = now + self.cfg.keepalive_idle
        if self.state == State.SYN_SENT:
            why = self._input_syn_sent(seg, now)
        else:
            why = self._input_synchronized(seg, now)
        if self.state != State.CLOSED:
            self._output(now)
            if self._ack_now:
                self._send_ack(now)
            elif self._unacked_segs and self.delack_at is None:
                self.delack_at = now + self.cfg.delack
        self._rearm()
        return why

    def _negotiate(self, seg: Segment) -> None:
        self.mss = min(seg.mss or 536, self._local_mss())        # RFC 9293 3.7.1 default
        if seg.wscale is not None and self._offer_wscale is not None:
            self.snd_wscale, self.rcv_wscale = seg.wscale, self._offer_wscale
        else:
            self.snd_wscale = self.rcv_wscale = 0
            self._offer_wscale = None
        self.sack_ok = seg.sack_ok and self.cfg.sack
        self.ts_ok = seg.tsval is not None and self.cfg.timestamps
        if self.ts_ok:
            self.ts_recent = seg.tsval or 0

    def _established(self, seg: Segment, now: float) -> None:
        self.state = State.ESTABLISHED
        self.was_connected = True
        self.cc = NewReno(self._max_payload(), sack=self.sack_ok)
        self.snd_wnd = seg.wnd << self.snd_wscale if not seg.flags & SYN else seg.wnd
        self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
        self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
        self.retries = 0
        self.rto_at = None
        if self.keepalive:
            self.ka_at = now + self.cfg.keepalive_idle
        parent = self.parent
        if parent is not None:
            parent.syn_children.discard(self)
            parent.accept_queue.append(self)
            parent._notify()
        self.layer.counters.events["tcp_established"] += 1
        self._notify()

    def _input_syn_sent(self, seg: Segment, now: float) -> str | None:
        f = seg.flags
        if f & ACK and not (seq_lt(self.iss, seg.ack) and seq_le(seg.ack, self.snd_max)):
            if not f & RST:
                self.layer.reset_for(self.local, self.remote, seg, now)
            return "tcp_bad_ack"
        if f & RST:
            if f & ACK:
                self._abort(errno.ECONNREFUSED)
                return None
            return "tcp_rst_without_ack"
        if not f & SYN:
            return "tcp_no_syn"
        self.irs = seg.seq
        self.rcv_nxt = self.rcv_adv = (seg.seq + 1) & M32
        self._negotiate(seg)
        if f & ACK:
            self.snd_una = seg.ack
            if self._rtt_seq is not None and self.retries == 0:
                self.rto.sample(now - self._rtt_time)
            self._rtt_seq = None
            self._established(seg, now)
            self._ack_now = True
        else:                                   # simultaneous open (RFC 9293 figure 7)
            self.state = State.SYN_RECEIVED
            self.snd_wnd, self.snd_wl1 = seg.wnd, seg.seq
            self._send_syn(now)
        return None

    def _acceptable(self, seq: int, slen: int, wnd: int) -> bool:
        """RFC 9293 3.10.7.4's four cases."""
        nxt = self.rcv_nxt
        if slen == 0:
            if wnd == 0:
                return seq == nxt
            return seq_le(nxt, seq) and seq_lt(seq, (nxt + wnd) & M32)
        if wnd == 0:
            return seq == nxt                    # ACK and RST still count (data will be trimmed)
        end = (seq + slen - 1) & M32
        right = (nxt + wnd) & M32
        return (seq_le(nxt, seq) and seq_lt(seq, right)) or (seq_le(nxt, end) and seq_lt(end, right))

    def _input_synchronized(self, seg: Segment, now: float) -> str | None:
        f, seq = seg.flags, seg.seq
        if self.state == State.TIME_WAIT and f & FIN and not f & RST \
                and (seq + len(seg.payload) + 1) & M32 == self.rcv_nxt:
            self._ack_now = True                 # the peer's FIN again: ACK, restart 2*MSL
            self.tw_at = now + 2 * self.cfg.msl
            return None
        if self.state == State.SYN_RECEIVED and f & (SYN | ACK | RST) == SYN and seq == self.irs:
            self._counters().events["tcp_synack_resent"] += 1
            self._send_syn(now)                  # the peer's SYN again: our SYN-ACK was lost
            return None
        if (self.ts_ok and seg.tsval is not None and not f & RST
                and seq_diff(self.ts_recent, seg.tsval) > _PAWS_WINDOW):
            self._ack_now = True                 # RFC 7323 5.3: PAWS
            return "tcp_paws"
        wnd = max(seq_diff(self.rcv_adv, self.rcv_nxt), 0)
        if not self._acceptable(seq, seg.seg_len, wnd):
            if not f & RST:
                self._ack_now = True
            return "tcp_out_of_window"
        if f & RST:
            return self._input_rst(seg, now)
        if f & SYN:                              # RFC 5961 4.2: challenge, whatever the sequence
            self._challenge_ack(now)
            return "tcp_syn_in_window"
        if not f & ACK:
            return "tcp_no_ack"
        if self.state == State.SYN_RECEIVED:
            if not (seq_lt(self.snd_una, seg.ack) and seq_le(seg.ack, self.snd_max)):
                self.layer.reset_for(self.local, self.remote, seg, now)
                return "tcp_bad_ack"
            self._established(seg, now)
            if self.fin_queued:
                self.state = State.FIN_WAIT_1
        if seq_lt(self.snd_max, seg.ack):
            self._ack_now = True                 # RFC 5961 5.2: ACKs data never sent
            return "tcp_ack_unsent"
        if seq_lt(seg.ack, (self.snd_una - self.max_snd_wnd) & M32):
            self._ack_now = True
            return "tcp_ack_too_old"
        if (self.ts_ok and seg.tsval is not None and seq_le(seq, self._last_ack_sent)
                and seq_le(self.ts_recent, seg.tsval)):
            self.ts_recent = seg.tsval           # RFC 7323 4.3 (never backwards)
        self._input_ack(seg, now)
        if self.state in (State.CLOSED, State.TIME_WAIT):
            return None
        if seg.payload:
            if self.state in _RECEIVING:
                self._input_data(seg, now)
            else:
                self._ack_now = True             # data after the peer's FIN: ignore
        if f & FIN:
            self._input_fin(seg, now)
        return None

    def _input_rst(self, seg: Segment, now: float) -> str | None:
        if seg.seq != self.rcv_nxt:
            self._challenge_ack(now)             # RFC 5961 3.2: in window but not exact
            return "tcp_rst_challenged"
        self.layer.counters.events["tcp_resets_received"] += 1
        st = self.state
        if st == State.SYN_RECEIVED and self.parent is not None:
            self._finish(0)                      # passive open: back to the listener's LISTEN
        elif st == State.SYN_RECEIVED:
            self._abort(errno.ECONNREFUSED)
        elif st in (State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT):
            self._abort(errno.ECONNRESET)
        else:
            self._finish(0)
        return None

    def _challenge_ack(self, now: float) -> None:
        if self.layer.challenge_allowed(now):
            self._counters().events["tcp_challenge_acks"] += 1
            self._send_ack(now)

    def _input_ack(self, seg: Segment, now: float) -> None:
        ack = seg.ack
        if self.sack_ok and seg.sack:
            self._update_sack(seg.sack)
        if seq_lt(self.snd_una, ack):
            acked = seq_diff(ack, self.snd_una)
            flight = seq_diff(self.snd_max, self.snd_una)
            if self.ts_ok and seg.tsecr:
                # An ACK a retransmitted duplicate provoked echoes the original's timestamp:
                # such a "sample" spans the whole timeout and would feed the backoff into
                # SRTT. Only echoes of segments sent since the last retransmission count.
                r = (self._ts_now(now) - seg.tsecr) & M32
                if r < 0x80000000 and (self._rtx_ts is None or seq_le(self._rtx_ts, seg.tsecr)):
                    self.rto.sample(r / 1000)
            elif self._rtt_seq is not None and seq_le(self._rtt_seq, ack):
                self.rto.sample(now - self._rtt_time)
                self._rtt_seq = None
            n = min(max(seq_diff(ack, self.snd_base), 0), len(self.sndq))
            if n:
                del self.sndq[:n]
                self.snd_base = (self.snd_base + n) & M32
            self.snd_una = ack
            if seq_lt(self.snd_nxt, ack):
                self.snd_nxt = ack
            if seq_lt(self._rtx_next, ack):
                self._rtx_next = ack
            self.sacked = [(l if seq_lt(ack, l) else ack, r) for l, r in self.sacked if seq_lt(ack, r)]
            self.retries = 0
            self._persist_backoff = 0
            if self.cc.on_ack(acked, ack, flight) and not (self.sack_ok and seq_lt(ack, self._rtx_next)):
                self._retransmit_head(now)           # partial ACK: the next hole starts here
            self.rto_at = None if self.snd_una == self.snd_max else now + self.rto.rto
            if n and self.sndbuf_size - len(self.sndq) > 0:
                self._notify()
        elif (ack == self.snd_una and not seg.payload and not seg.flags & (SYN | FIN)
              and self.snd_una != self.snd_max and seg.wnd << self.snd_wscale == self.snd_wnd):
            flight = seq_diff(self.snd_max, self.snd_una)
            if self.cc.on_dupack(self.snd_una, self.snd_max, flight):
                self._counters().events["tcp_fast_retransmits"] += 1
                self._rtx_next = self.snd_una
                self._retransmit_head(now)
        if seq_lt(self.snd_wl1, seg.seq) or (self.snd_wl1 == seg.seq and seq_le(self.snd_wl2, ack)):
            self.snd_wnd = seg.wnd << self.snd_wscale
            self.snd_wl1, self.snd_wl2 = seg.seq, ack
            if self.snd_wnd > self.max_snd_wnd:
                self.max_snd_wnd = self.snd_wnd
        if self._fin_sent and ack == (self._fin_seq + 1) & M32:
            st = self.state
            if st == State.FIN_WAIT_1:
                self.state = State.FIN_WAIT_2
                if self.app_closed:
                    self.fin2_at = now + self.cfg.fin_timeout
                self._notify()
            elif st == State.CLOSING:
                self._enter_time_wait(now)
            elif st == State.LAST_ACK:
                self._finish(0)

    def _update_sack(self, blocks: list[tuple[int, int]]) -> None:
        una, top = self.snd_una, self.snd_max
        spans = [(seq_diff(l, una), seq_diff(r, una)) for l, r in self.sacked]
        for l, r in blocks:
            if seq_lt(una, r) and seq_le(r, top) and seq_lt(l, r):
                spans.append((max(seq_diff(l, una), 0), seq_diff(r, una)))
        spans.sort()
        merged: list[list[int]] = []
        for l, r in spans:
            if merged and l <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], r)
            else:
                merged.append([l, r])
        self.sacked = [((una + l) & M32, (una + r) & M32) for l, r in merged]

    def _input_data(self, seg: Segment, now: float) -> None:
        seq, data = seg.seq, seg.payload
        d = seq_diff(self.rcv_nxt, seq)
        if d > 0:                                    # starts before rcv_nxt: trim the old part
            if d >= len(data):
                self._ack_now = True
                return
            data, seq = data[d:], self.rcv_nxt
        room = seq_diff(self.rcv_adv, seq)
        if room <= 0:
            self._ack_now = True
            self._counters().events["tcp_beyond_window"] += 1
            return
        if len(data) > room:
            data = data[:room]
        self._counters().events["tcp_bytes_in"] += len(data)
        if seq == self.rcv_nxt:
            self.rcvbuf += data
            self.rcv_nxt = (self.rcv_nxt + len(data)) & M32
            if self._ooo:
                self._drain_ooo()
                self._ack_now = True                 # filled (part of) a hole: ACK at once
            self._unacked_segs += 1
            if self._unacked_segs >= 2:
                self._ack_now = True                 # RFC 5681 4.2: every second segment
            if self.shut_rd:
                self.rcvbuf.clear()
            self._notify()
        else:
            self._ooo_insert(seq, data)
            self._ack_now = True                     # out of order: duplicate ACK (+SACK) now

    def _ooo_insert(self, seq: int, data: memoryview) -> None:
        base = self.rcv_nxt
        ns = seq_diff(seq, base)
        nd = bytearray(data)
        keep: list[tuple[int, bytearray]] = []
        for s, b in self._ooo:
            bs = seq_diff(s, base)
            be = bs + len(b)
            if be < ns or bs > ns + len(nd):
                keep.append((s, b))
                continue
            us, ue = min(bs, ns), max(be, ns + len(nd))
            merged = bytearray(ue - us)
            merged[ns - us:ns - us + len(nd)] = nd
            merged[bs - us:bs - us + len(b)] = b
            ns, nd = us, merged
        if len(keep) >= self.cfg.max_ooo_blocks:
            self._counters().events["tcp_ooo_overflow"] += 1
            return
        start = (base + ns) & M32
        keep.append((start, nd))
        keep.sort(key=lambda x: seq_diff(x[0], base))
        self._ooo = keep
        self._sack_last = start
        self._counters().events["tcp_ooo_segments"] += 1

    def _drain_ooo(self) -> None:
        while self._ooo:
            s, b = self._ooo[0]
            d = seq_diff(self.rcv_nxt, s)
            if d < 0:
                break
            self._ooo.pop(0)
            if d < len(b):
                self.rcvbuf += memoryview(b)[d:]
                self.rcv_nxt = (self.rcv_nxt + len(b) - d) & M32
        if self._ooo_fin is not None and self._ooo_fin == self.rcv_nxt:
            self._ooo_fin = None
            self._fin_in_order(self.layer.stack.now)

    def _input_fin(self, seg: Segment, now: float) -> None:
        fin_seq = (seg.seq + len(seg.payload)) & M32
        d = seq_diff(fin_seq, self.rcv_nxt)
        if d > 0:
            if d < max(seq_diff(self.rcv_adv, self.rcv_nxt), 1):
                self._ooo_fin = fin_seq              # data before it is missing: hold it
            self._ack_now = True
            return
        if d < 0:
            self._ack_now = True                     # a FIN we already took
            return
        self._fin_in_order(now)

    def _fin_in_order(self, now: float) -> None:
        if self.fin_received:
            return
        self.fin_received = True
        self.rcv_nxt = (self.rcv_nxt + 1) & M32
        self._ack_now = True
        st = self.state
        if st in (State.SYN_RECEIVED, State.ESTABLISHED):
            self.state = State.CLOSE_WAIT
        elif st == State.FIN_WAIT_1:
            if self._fin_sent and self.snd_una == self.snd_max:
                self._enter_time_wait(now)
            else:
                self.state = State.CLOSING
        elif st == State.FIN_WAIT_2:
            self._enter_time_wait(now)
        self._notify()

    # ------------------------------------------------------------------ closing
    def _close_write(self, now: float) -> None:
        if self.fin_queued:
            return
        self.fin_queued = True
        if self.state == State.ESTABLISHED:
            self.state = State.FIN_WAIT_1
        elif self.state == State.CLOSE_WAIT:
            self.state = State.LAST_ACK
        self._output(now)

    def reopened_by(self, seg: Segment) -> bool:
        """Whether a SYN ends this TIME-WAIT and opens a new connection on the same ports
        (RFC 6191, as Linux does): it cannot be an old duplicate when its sequence number is
        beyond what this connection received, or its timestamp newer than the last one seen.
        A client that reuses its port soon after the server closed first (ports cycle within
        a minute at a few hundred connections a second) would otherwise get a challenge ACK
        and retry its SYN a second later."""
        if seg.flags & (SYN | ACK | RST) != SYN:
            return False
        ts = self.ts_ok and seg.tsval is not None
        if ts and seq_lt(seg.tsval or 0, self.ts_recent):
            return False                                  # PAWS: an old duplicate
        return seq_lt(self.rcv_nxt, seg.seq) or (ts and seq_lt(self.ts_recent, seg.tsval or 0))

    def _enter_time_wait(self, now: float) -> None:
        layer = self.layer
        if layer.time_wait >= layer.cfg.max_time_wait:
            layer.counters.events["tcp_time_wait_overflow"] += 1
            if self._ack_now:
                self._send_ack(now)                  # the peer's FIN is ACKed all the same
            self.sndq.clear()
            self._finish(0)
            return
        layer.time_wait += 1
        self.state = State.TIME_WAIT
        self.rto_at = self.persist_at = self.ka_at = self.fin2_at = None
        self.tw_at = now + 2 * self.cfg.msl
        self.sndq.clear()
        self._notify()

    def _abort(self, err: int) -> None:
        self._counters().events[f"tcp_abort_{errno.errorcode.get(err, err)}"] += 1
        self.error = err
        self.sndq.clear()
        self._finish(err)

    def _finish(self, err: int) -> None:
        """Into CLOSED: forget the connection (the object stays for the application)."""
        if self.state == State.TIME_WAIT:
            self.layer.time_wait -= 1
        self.state = State.CLOSED
        self.rto_at = self.delack_at = self.persist_at = self.tw_at = self.ka_at = self.fin2_at = None
        self._ooo.clear()
        if self.parent is not None:
            self.parent.syn_children.discard(self)
            if self in self.parent.accept_queue:
                self.parent.accept_queue.remove(self)
            self.parent = None
        self.layer.forget(self)
        self._notify()

    # ------------------------------------------------------------------ timers
    @property
    def deadline(self) -> float | None:
        # (pairwise: no tuple, list or min() call, on every segment's rearm)
        return _earlier(_earlier(_earlier(self.rto_at, self.delack_at), _earlier(self.persist_at, self.tw_at)),
                        _earlier(self.ka_at, self.fin2_at))

    def _rearm(self) -> None:
        self.layer.schedule(self)

    def on_timer(self, now: float) -> None:
        if self.tw_at is not None and self.tw_at <= now:
            self._finish(0)
            return
        if self.fin2_at is not None and self.fin2_at <= now:
            self._finish(0)
            return
        if self.rto_at is not None and self.rto_at <= now:
            self.rto_at = None
            self._on_rto(now)
            if self.state == State.CLOSED:
                return
        if self.persist_at is not None and self.persist_at <= now:
            self.persist_at = None
            self._on_persist(now)
        if self.delack_at is not None and self.delack_at <= now:
            self.delack_at = None
            if self.state != State.CLOSED:
                self._send_ack(now)
        if self.ka_at is not None and self.ka_at <= now:
            self.ka_at = None
            self._on_keepalive(now)
        if self.state != State.CLOSED:
            self._rearm()

    def _on_rto(self, now: float) -> None:
        ev = self._counters().events
        if self.state in (State.SYN_SENT, State.SYN_RECEIVED):
            limit = self.cfg.syn_retries if self.state == State.SYN_SENT else self.cfg.synack_retries
            if self.retries >= limit:
                if self.parent is not None:
                    self._finish(0)
                else:
                    self._abort(self.soft_error or errno.ETIMEDOUT)
                return
            self.retries += 1
            self.rto.backoff()
            self._rtt_seq = None
            ev["tcp_syn_retransmits"] += 1
            self._send_syn(now)
            return
        if self.snd_una == self.snd_max or self.state not in _SENDING:
            return
        if self.retries >= self.cfg.retries:
            self._abort(self.soft_error or errno.ETIMEDOUT)
            return
        ev["tcp_timeouts"] += 1
        self.retries += 1
        self.rto.backoff()
        self.cc.on_timeout(self.snd_max, seq_diff(self.snd_max, self.snd_una))
        self.sacked.clear()                              # RFC 2018 8: the receiver may renege
        self.snd_nxt = self.snd_una
        self._rtx_next = self.snd_una
        self._rtt_seq = None
        self.rto_at = now + self.rto.rto
        self._output(now, force=True)

    def _on_persist(self, now: float) -> None:
        if self.state not in _SENDING:
            return
        self._persist_backoff = min(self._persist_backoff + 1, 10)
        if self.snd_wnd == 0:
            self._counters().events["tcp_window_probes"] += 1
            self._send((self.snd_una - 1) & M32, ACK, b"", now)   # elicits an ACK with the window
        else:
            self._output(now, force=True)
        self._arm_persist(now)

    def _on_keepalive(self, now: float) -> None:
        if not self.keepalive or self.state not in _CONNECTED:
            return
        if self._ka_probes >= self.cfg.keepalive_count:
            self._abort(errno.ETIMEDOUT)
            return
        self._ka_probes += 1
        self._counters().events["tcp_keepalive_probes"] += 1
        self._send((self.snd_una - 1) & M32, ACK, b"", now)
        self.ka_at = now + self.cfg.keepalive_interval

    def set_keepalive(self, on: bool, now: float) -> None:
        self.keepalive = on
        self.ka_at = now + self.cfg.keepalive_idle if on and self.state in _CONNECTED else None
        self._rearm()

    # ------------------------------------------------------------------ passive open
    def _input_listen(self, h: Ipv4Header, seg: Segment, now: float, iss: int | None = None) -> str | None:
        """A segment for this listener; ``iss``: the new connection's initial sequence number
        when the SYN ended a TIME-WAIT (TcpLayer.input), else the RFC 6528 one."""
        f = seg.flags
        if f & RST:
            return "tcp_listen_rst"
        if f & ACK:
            self.layer.reset_for((h.dst, seg.dport), (h.src, seg.sport), seg, now)
            return "tcp_listen_ack"
        if not f & SYN:
            return "tcp_listen_no_syn"
        if len(self.accept_queue) + len(self.syn_children) >= self.backlog:
            self._counters().events["tcp_listen_overflows"] += 1
            return "tcp_listen_overflow"
        child = TcpSocket(self.layer, self.cfg)
        child.parent = self
        child.nodelay, child.keepalive = self.nodelay, self.keepalive
        child.rcvbuf_size, child.sndbuf_size = self.rcvbuf_size, self.sndbuf_size
        child.local, child.remote = (h.dst, seg.dport), (h.src, seg.sport)
        child.state = State.SYN_RECEIVED
        child.irs = seg.seq
        child.rcv_nxt = child.rcv_adv = (seg.seq + 1) & M32
        child._offer_wscale = child._wscale_for(child.rcvbuf_size) if self.cfg.window_scaling else None
        child._negotiate(seg)
        if child.ts_ok:
            child._ts_offset = self.layer.stack.rng.getrandbits(32)
        child.iss = self.layer.isn(child.local, child.remote, now) if iss is None else iss
        child.snd_una = child.iss
        child.snd_nxt = child.snd_max = child.snd_base = (child.iss + 1) & M32
        child.snd_wnd, child.snd_wl1 = seg.wnd, seg.seq
        self.syn_children.add(child)
        self.layer.conns[self.layer.key(child)] = child
        child._send_syn(now)
        child._rearm()
        self._counters().events["tcp_passive_opens"] += 1
        return None
