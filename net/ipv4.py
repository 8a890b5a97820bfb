"""IPv4 (RFC 791): header validation and building, fragmentation, and reassembly with limits.

Addresses are ints internally (fast to hash, compare and mask); `aton`/`ntoa` convert.
"""
from __future__ import annotations

import bisect
import socket
import struct
from typing import Final, NamedTuple

from .checksum import valid

IPPROTO_ICMP: Final = 1
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IP_RF: Final = 0x8000
IP_DF: Final = 0x4000
IP_MF: Final = 0x2000
IP_OFFMASK: Final = 0x1FFF
MAX_DATAGRAM: Final = 65535
LIMITED_BROADCAST: Final = 0xFFFFFFFF

_HDR: Final = struct.Struct("!BBHHHBBHII")


def aton(a: str | int) -> int:
    return a if isinstance(a, int) else int.from_bytes(socket.inet_aton(a), "big")


def ntoa(a: int) -> str:
    return socket.inet_ntoa(a.to_bytes(4, "big"))


def is_multicast(a: int) -> bool:
    return a >> 28 == 0xE


def is_loopback(a: int) -> bool:
    return a >> 24 == 127


def prefix_mask(prefix_len: int) -> int:
    return (0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF


class Ipv4Header(NamedTuple):
    hlen: int            # header length in bytes (options included)
    tos: int
    total_len: int
    ident: int
    frag: int            # flags and fragment offset, as on the wire
    ttl: int
    proto: int
    src: int
    dst: int

    @property
    def offset(self) -> int:
        return (self.frag & IP_OFFMASK) * 8

    @property
    def more_fragments(self) -> bool:
        return bool(self.frag & IP_MF)

    @property
    def is_fragment(self) -> bool:
        return bool(self.frag & (IP_MF | IP_OFFMASK))


_new = tuple.__new__


def parse(buf: memoryview) -> tuple[Ipv4Header, memoryview] | str:
    """Validate a received datagram: (header, payload trimmed to total length) or a drop reason."""
    n = len(buf)
    if n < 20:
        return "ip_truncated"
    if buf[0] >> 4 != 4:
        return "ip_bad_version"
    hlen = (buf[0] & 0xF) * 4
    if hlen < 20:
        return "ip_bad_ihl"
    if n < hlen:
        return "ip_truncated"
    _, tos, total, ident, frag, ttl, proto, _csum, src, dst = _HDR.unpack_from(buf)
    if total < hlen or total > n:
        return "ip_bad_length"
    if not valid(buf[:hlen]):
        return "ip_bad_checksum"
    # (tuple.__new__: the NamedTuple's own constructor is interpreted code, ~0.5 us a packet)
    return _new(Ipv4Header, (hlen, tos, total, ident, frag, ttl, proto, src, dst)), buf[hlen:total]


def build_header(src: int, dst: int, proto: int, payload_len: int, ident: int, *, ttl: int = 64,
                 tos: int = 0, frag: int = IP_DF) -> bytes:
    """A 20-byte header; the checksum is summed from the fields, not from packed bytes."""
    total = 20 + payload_len
    s = ((0x4500 | tos) + total + ident + frag + (ttl << 8 | proto)
         + (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return _HDR.pack(0x45, tos, total, ident, frag, ttl, proto, ~s & 0xFFFF, src, dst)


def fragment(src: int, dst: int, proto: int, payload: bytes | memoryview, ident: int, mtu: int,
             *, ttl: int = 64, tos: int = 0) -> list[bytes]:
    """Split a datagram whose payload does not fit `mtu` into fragments (payloads of 8*k)."""
    step = (mtu - 20) & ~7
    out = []
    view = memoryview(payload)
    for off in range(0, len(view), step):
        chunk = view[off:off + step]
        mf = IP_MF if off + step < len(view) else 0
        out.append(build_header(src, dst, proto, len(chunk), ident, ttl=ttl, tos=tos,
                                frag=mf | (off >> 3)) + chunk)
    return out


class _Datagram:
    __slots__ = ("frags", "received", "total", "expires", "first")

    def __init__(self, expires: float) -> None:
        self.frags: list[tuple[int, int, bytes]] = []    # (start, end, data) sorted by start
        self.received = 0
        self.total = -1                                  # known once the last fragment arrives
        self.expires = expires
        self.first: tuple[Ipv4Header, bytes] | None = None   # for ICMP time exceeded


class Reassembler:
    """RFC 791 reassembly, hardened: bounded fragments per datagram, datagrams in progress and
    bytes held; a timeout; overlapping fragments discard the whole datagram (as RFC 5722 asks
    for IPv6 and Linux does for IPv4), exact duplicates are just dropped."""

    def __init__(self, *, timeout: float = 30.0, max_fragments: int = 64, max_datagrams: int = 64,
                 max_bytes: int = 4 << 20) -> None:
        self.timeout, self.max_fragments = timeout, max_fragments
        self.max_datagrams, self.max_bytes = max_datagrams, max_bytes
        self._q: dict[tuple[int, int, int, int], _Datagram] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._q)

    def add(self, h: Ipv4Header, payload: memoryview, now: float
            ) -> tuple[tuple[Ipv4Header, bytes] | None, str | None]:
        """Feed one fragment: ((header, whole payload), None) when complete, (None, None) while
        incomplete, (None, reason) when this fragment (or its datagram) is dropped."""
        start, end, last = h.offset, h.offset + len(payload), not h.more_fragments
        if not payload:
            return None, "frag_empty"
        if end > MAX_DATAGRAM - h.hlen:
            return None, "frag_too_big"
        if not last and len(payload) % 8:
            return None, "frag_bad_length"
        key = (h.src, h.dst, h.proto, h.ident)
        d = self._q.get(key)
        if d is None:
            while self._q and (len(self._q) >= self.max_datagrams
                               or self._bytes + len(payload) > self.max_bytes):
                self._discard(next(iter(self._q)))           # evict the oldest
            d = self._q[key] = _Datagram(now + self.timeout)
        if last:
            if (d.total >= 0 and d.total != end) or (d.frags and d.frags[-1][1] > end):
                self._discard(key)
                return None, "frag_overlap"
            d.total = end
        elif d.total >= 0 and end > d.total:
            self._discard(key)
            return None, "frag_overlap"
        frags = d.frags
        i = bisect.bisect_left(frags, (start, end))
        if i < len(frags) and frags[i][0] == start and frags[i][1] == end:
            return None, "frag_duplicate"
        if (i > 0 and frags[i - 1][1] > start) or (i < len(frags) and frags[i][0] < end):
            self._discard(key)
            return None, "frag_overlap"
        if len(frags) >= self.max_fragments:
            self._discard(key)
            return None, "frag_too_many"
        frags.insert(i, (start, end, bytes(payload)))
        d.received += end - start
        self._bytes += end - start
        if start == 0:
            d.first = (h, bytes(payload[:8]))
        if d.total < 0 or d.received != d.total:
            return None, None
        del self._q[key]
        self._bytes -= d.received
        first_h = d.first[0] if d.first else h
        data = b"".join([f[2] for f in frags])
        return (first_h._replace(frag=0, total_len=first_h.hlen + len(data)), data), None

    def _discard(self, key: tuple[int, int, int, int]) -> None:
        d = self._q.pop(key)
        self._bytes -= d.received

    def expire(self, now: float) -> list[tuple[Ipv4Header, bytes]]:
        """Drop timed-out datagrams; returns (header, first 8 bytes) of those whose first
        fragment arrived, for ICMP "fragment reassembly time exceeded" (RFC 792)."""
        out = []
        for key, d in list(self._q.items()):
            if d.expires <= now:
                self._discard(key)
                if d.first is not None:
                    out.append(d.first)
        return out

    def next_deadline(self) -> float | None:
        return min((d.expires for d in self._q.values()), default=None)
