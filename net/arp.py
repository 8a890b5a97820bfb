"""ARP for IPv4 over Ethernet (RFC 826): packet codec and a cache with timeouts and
pending-resolution queues. Pure: the caller passes the clock and sends what it is told to."""
from __future__ import annotations

import struct
from collections import deque
from typing import Final, Generic, NamedTuple, TypeVar

ARP_REQUEST: Final = 1
ARP_REPLY: Final = 2
ARP_LEN: Final = 28
_ARP: Final = struct.Struct("!HHBBH6sI6sI")
_HTYPE_ETHER: Final = 1
_PTYPE_IPV4: Final = 0x0800

T = TypeVar("T")


class ArpPacket(NamedTuple):
    op: int
    sha: bytes
    spa: int
    tha: bytes
    tpa: int


def parse(buf: bytes | memoryview) -> ArpPacket | str:
    """The packet, or the reason to drop it."""
    if len(buf) < ARP_LEN:
        return "arp_truncated"
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(buf)
    if htype != _HTYPE_ETHER or ptype != _PTYPE_IPV4 or hlen != 6 or plen != 4:
        return "arp_unsupported"
    if op not in (ARP_REQUEST, ARP_REPLY):
        return "arp_bad_op"
    return ArpPacket(op, sha, spa, tha, tpa)


def build(op: int, sha: bytes, spa: int, tha: bytes, tpa: int) -> bytes:
    return _ARP.pack(_HTYPE_ETHER, _PTYPE_IPV4, 6, 4, op, sha, spa, tha, tpa)


class _Pending(Generic[T]):
    __slots__ = ("queue", "bytes", "next_try", "tries")

    def __init__(self, next_try: float) -> None:
        self.queue: deque[tuple[T, int]] = deque()
        self.bytes = 0
        self.next_try, self.tries = next_try, 1


class ArpCache(Generic[T]):
    """IPv4 -> MAC with expiry, plus per-address queues of packets awaiting resolution.

    Queued items are opaque to the cache (the stack queues packets it will frame later); each
    address's queue is bounded in bytes, as Linux's unres_qlen_bytes.
    """

    def __init__(self, *, timeout: float = 60.0, retry_interval: float = 1.0, max_tries: int = 3,
                 queue_limit: int = 212992, max_entries: int = 1024, max_pending: int = 256) -> None:
        self.timeout, self.retry_interval, self.max_tries = timeout, retry_interval, max_tries
        self.queue_limit, self.max_entries, self.max_pending = queue_limit, max_entries, max_pending
        self.entries: dict[int, tuple[bytes, float]] = {}
        self.pending: dict[int, _Pending[T]] = {}

    def lookup(self, ip: int, now: float) -> bytes | None:
        e = self.entries.get(ip)
        if e is None:
            return None
        if e[1] <= now:
            del self.entries[ip]
            return None
        return e[0]

    def learn(self, ip: int, mac: bytes, now: float, *, create: bool) -> list[T]:
        """RFC 826 merge: refresh a known (or awaited) address; add it only if `create`.
        Returns the packets that were waiting for it."""
        waiting = self.pending.pop(ip, None)
        if create or waiting is not None or ip in self.entries:
            if ip not in self.entries and len(self.entries) >= self.max_entries:
                del self.entries[next(iter(self.entries))]       # oldest insertion
            self.entries[ip] = (mac, now + self.timeout)
        return [item for item, _ in waiting.queue] if waiting is not None else []

    def enqueue(self, ip: int, item: T, now: float, size: int = 1) -> tuple[bool, list[T]]:
        """Park `item` (`size` bytes) until `ip` resolves: (send a request now?, items dropped
        to make room, oldest first)."""
        p = self.pending.get(ip)
        dropped: list[T] = []
        fresh = p is None
        if p is None:
            if len(self.pending) >= self.max_pending:
                return False, [item]
            p = self.pending[ip] = _Pending(now + self.retry_interval)
        while p.queue and p.bytes + size > self.queue_limit:
            old, old_size = p.queue.popleft()
            p.bytes -= old_size
            dropped.append(old)
        if size > self.queue_limit:
            dropped.append(item)
        else:
            p.queue.append((item, size))
            p.bytes += size
        return fresh, dropped

    def poll(self, now: float) -> tuple[list[int], list[tuple[int, list[T]]]]:
        """(addresses to ask again, (address, abandoned packets) that never resolved)."""
        retry: list[int] = []
        failed: list[tuple[int, list[T]]] = []
        for ip, p in list(self.pending.items()):
            if p.next_try > now:
                continue
            if p.tries >= self.max_tries:
                del self.pending[ip]
                failed.append((ip, [item for item, _ in p.queue]))
            else:
                p.tries += 1
                p.next_try = now + self.retry_interval
                retry.append(ip)
        return retry, failed

    def next_deadline(self) -> float | None:
        return min((p.next_try for p in self.pending.values()), default=None)
