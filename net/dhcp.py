"""A sans-IO DHCP client (RFC 2131 4.4): INIT -> SELECTING -> REQUESTING -> BOUND, then
RENEWING at T1 (REQUEST unicast to the server) and REBINDING at T2 (broadcast), back to INIT
when the lease expires or a server NAKs.

It is fed received datagrams (`input`) and a clock (`poll`); what it wants sent comes out of
`take_output()` as `Send(data, dst)` (dst: the server, or 255.255.255.255; always to port 67
from port 68), and what happened to the lease comes out of `take_events()`. Retransmission
follows 4.1: 4 s doubling to 64 s, each randomised by +-1 s from a seeded generator, so a
test with a fixed seed sees fixed times.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from enum import Enum

from . import dhcp_msg as M
from .ipv4 import LIMITED_BROADCAST, ntoa

DEFAULT_PARAMS = bytes((M.OPT_SUBNET_MASK, M.OPT_ROUTER, M.OPT_DNS, M.OPT_LEASE_TIME,
                        M.OPT_T1, M.OPT_T2))


class State(Enum):
    INIT = "INIT"
    SELECTING = "SELECTING"
    REQUESTING = "REQUESTING"
    BOUND = "BOUND"
    RENEWING = "RENEWING"
    REBINDING = "REBINDING"
    STOPPED = "STOPPED"


@dataclass(frozen=True)
class Lease:
    address: int
    netmask: int
    routers: tuple[int, ...]
    dns: tuple[int, ...]
    server: int
    lease_time: float               # seconds; math.inf for an infinite lease
    t1: float
    t2: float
    start: float                    # when the REQUEST that got it was sent (RFC 2131 4.4.1)

    @property
    def prefix_len(self) -> int:
        return bin(self.netmask).count("1")

    @property
    def renew_at(self) -> float:
        return self.start + self.t1

    @property
    def rebind_at(self) -> float:
        return self.start + self.t2

    @property
    def expires(self) -> float:
        return self.start + self.lease_time

    def describe(self) -> str:
        gw = ",".join(ntoa(r) for r in self.routers) or "-"
        return (f"{ntoa(self.address)}/{self.prefix_len} gw {gw} server {ntoa(self.server)} "
                f"lease {self.lease_time:g}s")


@dataclass(frozen=True)
class Send:
    data: bytes
    dst: int                        # the server's address, or LIMITED_BROADCAST


@dataclass(frozen=True)
class LeaseAcquired:
    lease: Lease


@dataclass(frozen=True)
class LeaseRenewed:
    lease: Lease
    previous: Lease


@dataclass(frozen=True)
class LeaseLost:
    lease: Lease
    reason: str                     # "expired", "nak", "released", "declined"


Event = LeaseAcquired | LeaseRenewed | LeaseLost


class DhcpClient:
    def __init__(self, mac: bytes, *, seed: int | random.Random = 0, client_id: bytes | None = None,
                 hostname: str | None = None, params: bytes = DEFAULT_PARAMS,
                 backoff_base: float = 4.0, backoff_max: float = 64.0, jitter: float = 1.0,
                 request_tries: int = 4, min_retry: float = 60.0, restart_delay: float = 1.0,
                 default_lease: float = 3600.0) -> None:
        self.mac = bytes(mac)
        self.rng = seed if isinstance(seed, random.Random) else random.Random(seed)
        # RFC 2132 9.14: type 1 (Ethernet) + MAC is what most clients send
        self.client_id = client_id if client_id is not None else b"\x01" + self.mac
        self.hostname, self.params = hostname, params
        self.backoff_base, self.backoff_max, self.jitter = backoff_base, backoff_max, jitter
        self.request_tries, self.min_retry = request_tries, min_retry
        self.restart_delay, self.default_lease = restart_delay, default_lease
        self.state = State.STOPPED
        self.lease: Lease | None = None
        self.stats: Counter[str] = Counter()
        self._xid = 0
        self._tries = 0                         # transmissions in this state
        self._began = 0.0                       # start of this exchange (the secs field)
        self._sent_at = 0.0                     # last REQUEST sent (a lease starts there)
        self._offer: M.Message | None = None
        self._timer: float | None = None        # next retransmission / state deadline
        self._out: list[Send] = []
        self._events: list[Event] = []

    # -- the sans-IO surface
    def start(self, now: float) -> None:
        """Begin acquiring a lease (or start over)."""
        self._to_init(now, delay=0.0)

    def stop(self) -> None:
        self.state, self._timer = State.STOPPED, None

    def release(self, now: float) -> None:
        """Give the lease back (DHCPRELEASE, unicast) and stop."""
        if self.lease is not None and self.state in (State.BOUND, State.RENEWING, State.REBINDING):
            lease = self.lease
            self._xid = self.rng.getrandbits(32)
            m = self._message(M.RELEASE, ciaddr=lease.address, broadcast=False)
            m.options[M.OPT_SERVER_ID] = M.u32(lease.server)
            self._emit(m, lease.server)
            self.lease = None
            self._events.append(LeaseLost(lease, "released"))
        self.stop()

    def decline(self, now: float) -> None:
        """The offered address is in use (RFC 2131 3.1 step 5): tell the server, start over."""
        if self.lease is None:
            return
        lease = self.lease
        self._xid = self.rng.getrandbits(32)
        m = self._message(M.DECLINE, broadcast=False)
        m.options[M.OPT_REQUESTED_IP] = M.u32(lease.address)
        m.options[M.OPT_SERVER_ID] = M.u32(lease.server)
        self._emit(m, LIMITED_BROADCAST)
        self.lease = None
        self._events.append(LeaseLost(lease, "declined"))
        self._to_init(now, delay=10.0)          # RFC 2131 3.1: wait at least 10 s

    def input(self, data: bytes | memoryview, now: float) -> None:
        m = M.parse(data)
        if isinstance(m, str):
            self.stats[m] += 1
            return
        why = self._check(m)
        if why is not None:
            self.stats[why] += 1
            return
        t = m.msg_type
        st = self.state
        if st == State.SELECTING and t == M.OFFER:
            self._on_offer(m, now)
        elif st in (State.REQUESTING, State.RENEWING, State.REBINDING) and t == M.ACK:
            self._on_ack(m, now)
        elif st in (State.REQUESTING, State.RENEWING, State.REBINDING) and t == M.NAK:
            self._on_nak(m, now)
        else:
            self.stats["dhcp_unexpected"] += 1

    def poll(self, now: float) -> None:
        if self._timer is None or now < self._timer:
            return
        st = self.state
        if st == State.INIT:
            self._discover(now)
        elif st == State.SELECTING:
            self._send_discover(now)
        elif st == State.REQUESTING:
            if self._tries >= self.request_tries:
                self.stats["dhcp_request_timeouts"] += 1
                self._to_init(now, delay=0.0)
                self.poll(now)
            else:
                self._send_request(now)
        elif st in (State.BOUND, State.RENEWING, State.REBINDING):
            self._lease_timer(now)

    def next_deadline(self) -> float | None:
        return self._timer

    def take_output(self) -> list[Send]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[Event]:
        ev, self._events = self._events, []
        return ev

    # -- receive
    def _check(self, m: M.Message) -> str | None:
        if m.op != M.BOOTREPLY:
            return "dhcp_not_reply"
        if m.chaddr != self.mac:
            return "dhcp_not_our_mac"
        if m.xid != self._xid or self.state in (State.INIT, State.BOUND, State.STOPPED):
            return "dhcp_wrong_xid"
        cid = m.options.get(M.OPT_CLIENT_ID)
        if cid is not None and cid != self.client_id:
            return "dhcp_not_our_client_id"    # RFC 6842: servers echo it back
        if m.msg_type is None:
            return "dhcp_no_type"
        return None

    def _on_offer(self, m: M.Message, now: float) -> None:
        if not m.yiaddr or m.server_id is None:
            self.stats["dhcp_bad_offer"] += 1
            return
        self.stats["dhcp_offers"] += 1
        self._offer = m                          # the first acceptable offer wins (RFC allows it)
        self.state, self._tries = State.REQUESTING, 0
        self._send_request(now)

    def _on_ack(self, m: M.Message, now: float) -> None:
        if self.state == State.REQUESTING:
            assert self._offer is not None
            if m.server_id is not None and m.server_id != self._offer.server_id:
                self.stats["dhcp_ack_other_server"] += 1
                return
        if not m.yiaddr:
            self.stats["dhcp_bad_ack"] += 1
            return
        lease = self._lease_from(m)
        self.stats["dhcp_acks"] += 1
        prev = self.lease
        self.lease = lease
        renewing = self.state in (State.RENEWING, State.REBINDING) and prev is not None
        self.state, self._tries, self._offer = State.BOUND, 0, None
        self._timer = lease.renew_at
        if renewing:
            assert prev is not None
            self._events.append(LeaseRenewed(lease, prev))
        else:
            self._events.append(LeaseAcquired(lease))

    def _on_nak(self, m: M.Message, now: float) -> None:
        if self.state == State.REQUESTING:
            assert self._offer is not None
            if m.server_id is not None and m.server_id != self._offer.server_id:
                self.stats["dhcp_nak_other_server"] += 1
                return
        self.stats["dhcp_naks"] += 1
        if self.lease is not None:
            self._events.append(LeaseLost(self.lease, "nak"))
            self.lease = None
        self._to_init(now, delay=self.restart_delay)

    def _lease_from(self, m: M.Message) -> Lease:
        raw = m.u32(M.OPT_LEASE_TIME)
        lt = math.inf if raw == M.INFINITE else float(raw if raw is not None else self.default_lease)
        t1, t2 = m.u32(M.OPT_T1), m.u32(M.OPT_T2)
        t1f = 0.5 * lt if t1 is None or t1 == M.INFINITE else float(t1)
        t2f = 0.875 * lt if t2 is None or t2 == M.INFINITE else float(t2)
        if not t1f <= t2f <= lt:                       # inconsistent timers: use the defaults
            t1f, t2f = 0.5 * lt, 0.875 * lt
        mask = m.addr(M.OPT_SUBNET_MASK)
        if not mask or (~mask & 0xFFFFFFFF) & ((~mask & 0xFFFFFFFF) + 1):
            mask = _classful_mask(m.yiaddr)              # absent or not contiguous
        server = m.server_id or (self._offer.server_id if self._offer else None) \
            or (self.lease.server if self.lease else 0)
        return Lease(m.yiaddr, mask, m.addrs(M.OPT_ROUTER), m.addrs(M.OPT_DNS), server or 0,
                     lt, t1f, t2f, self._sent_at)

    # -- state changes and transmissions
    def _to_init(self, now: float, delay: float) -> None:
        self.state, self._offer, self._tries = State.INIT, None, 0
        self._timer = now + delay

    def _discover(self, now: float) -> None:
        self.state, self._tries = State.SELECTING, 0
        self._xid = self.rng.getrandbits(32)
        self._began = now
        self._send_discover(now)

    def _send_discover(self, now: float) -> None:
        m = self._message(M.DISCOVER, secs=now - self._began)
        m.options[M.OPT_PARAM_REQUEST] = self.params
        self._emit(m, LIMITED_BROADCAST)
        self.stats["dhcp_discovers"] += 1
        self._retransmit_after(now)

    def _send_request(self, now: float) -> None:
        """REQUESTING: broadcast, naming the chosen server and address (4.3.2)."""
        assert self._offer is not None
        m = self._message(M.REQUEST, secs=now - self._began)
        m.options[M.OPT_REQUESTED_IP] = M.u32(self._offer.yiaddr)
        m.options[M.OPT_SERVER_ID] = M.u32(self._offer.server_id or 0)
        m.options[M.OPT_PARAM_REQUEST] = self.params
        if self._tries == 0:
            self._sent_at = now
        self._emit(m, LIMITED_BROADCAST)
        self.stats["dhcp_requests"] += 1
        self._retransmit_after(now)

    def _send_extend(self, now: float) -> None:
        """RENEWING (unicast) or REBINDING (broadcast): ciaddr set, no server id (4.3.2)."""
        assert self.lease is not None
        m = self._message(M.REQUEST, ciaddr=self.lease.address, broadcast=False,
                          secs=now - self._began)
        m.options[M.OPT_PARAM_REQUEST] = self.params
        self._sent_at = now
        dst = self.lease.server if self.state == State.RENEWING and self.lease.server else LIMITED_BROADCAST
        self._emit(m, dst)
        self.stats["dhcp_renewals" if dst != LIMITED_BROADCAST else "dhcp_rebinds"] += 1
        # 4.4.5: wait half the time left until T2 (renewing) or expiry (rebinding), >= min_retry
        end = self.lease.rebind_at if self.state == State.RENEWING else self.lease.expires
        self._timer = min(end, now + max((end - now) / 2, self.min_retry))

    def _lease_timer(self, now: float) -> None:
        lease = self.lease
        assert lease is not None
        if now >= lease.expires:
            self.stats["dhcp_expired"] += 1
            self._events.append(LeaseLost(lease, "expired"))
            self.lease = None
            self._to_init(now, delay=0.0)
            self._discover(now)
            return
        if now >= lease.rebind_at and self.state != State.REBINDING:
            self.state = State.REBINDING
            self._xid = self.rng.getrandbits(32)
            self._began = now
        elif self.state == State.BOUND:
            self.state = State.RENEWING
            self._xid = self.rng.getrandbits(32)
            self._began = now
        self._send_extend(now)

    def _retransmit_after(self, now: float) -> None:
        delay = min(self.backoff_base * 2 ** min(self._tries, 16), self.backoff_max)
        self._tries += 1
        self._timer = now + max(0.5, delay + self.rng.uniform(-self.jitter, self.jitter))

    def _message(self, kind: int, *, ciaddr: int = 0, broadcast: bool = True,
                 secs: float = 0.0) -> M.Message:
        # Until it has an address the stack can only take broadcasts, so ask for them (4.1).
        m = M.Message(M.BOOTREQUEST, self._xid, self.mac, secs=min(int(secs), 0xFFFF),
                      flags=M.FLAG_BROADCAST if broadcast else 0, ciaddr=ciaddr)
        m.options[M.OPT_MSG_TYPE] = bytes((kind,))
        m.options[M.OPT_CLIENT_ID] = self.client_id
        if kind in (M.DISCOVER, M.REQUEST):
            m.options[M.OPT_MAX_SIZE] = (1500 - 28).to_bytes(2, "big")
            if self.hostname:
                m.options[M.OPT_HOSTNAME] = self.hostname.encode()
        return m

    def _emit(self, m: M.Message, dst: int) -> None:
        self._out.append(Send(M.build(m), dst))


def _classful_mask(a: int) -> int:
    if a >> 31 == 0:
        return 0xFF000000
    if a >> 30 == 0b10:
        return 0xFFFF0000
    return 0xFFFFFF00
