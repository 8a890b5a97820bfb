"""TCP segment codec (RFC 9293 3.1) with the options this stack speaks: MSS, window scale
and timestamps (RFC 7323), SACK-permitted and SACK blocks (RFC 2018)."""
from __future__ import annotations

import struct
from typing import Final

from .checksum import add16, pseudo_sum, sum16
from .ipv4 import IPPROTO_TCP

FIN: Final = 1
SYN: Final = 2
RST: Final = 4
PSH: Final = 8
ACK: Final = 16
URG: Final = 32
ECE: Final = 64
CWR: Final = 128
SEQ_MASK: Final = 0xFFFFFFFF

OPT_EOL: Final = 0
OPT_NOP: Final = 1
OPT_MSS: Final = 2
OPT_WSCALE: Final = 3
OPT_SACK_OK: Final = 4
OPT_SACK: Final = 5
OPT_TS: Final = 8
TS_OPT_LEN: Final = 12                       # NOP NOP TS: what every segment carries with timestamps

_TCP: Final = struct.Struct("!HHIIBBHHH")
_MSS: Final = struct.Struct("!BBH")
_TS: Final = struct.Struct("!BBBBII")
_U32: Final = struct.Struct("!I")


class Segment:
    """A parsed segment; option fields are None/empty when absent."""
    __slots__ = ("sport", "dport", "seq", "ack", "flags", "wnd", "payload", "mss", "wscale",
                 "sack_ok", "sack", "tsval", "tsecr")

    def __init__(self, sport: int, dport: int, seq: int, ack: int, flags: int, wnd: int,
                 payload: memoryview) -> None:
        self.sport, self.dport, self.seq, self.ack = sport, dport, seq, ack
        self.flags, self.wnd, self.payload = flags, wnd, payload
        self.mss: int | None = None
        self.wscale: int | None = None
        self.sack_ok = False
        self.sack: list[tuple[int, int]] = []
        self.tsval: int | None = None
        self.tsecr = 0

    @property
    def seg_len(self) -> int:
        """Sequence space the segment occupies (SYN and FIN count one each)."""
        return len(self.payload) + (self.flags & SYN and 1) + (self.flags & FIN and 1)

    def __repr__(self) -> str:
        names = "".join(n for b, n in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "."))
                        if self.flags & b)
        return f"<{names} seq={self.seq} ack={self.ack} wnd={self.wnd} len={len(self.payload)}>"


def parse(src: int, dst: int, buf: memoryview, csum_ok: bool) -> Segment | str:
    n = len(buf)
    if n < 20:
        return "tcp_truncated"
    sport, dport, seq, ack, off, flags, wnd, _csum, _urp = _TCP.unpack_from(buf)
    hlen = (off >> 4) * 4
    if hlen < 20 or hlen > n:
        return "tcp_bad_offset"
    if not csum_ok and add16(pseudo_sum(src, dst, IPPROTO_TCP, n), sum16(buf)) != 0xFFFF:
        return "tcp_bad_checksum"
    if sport == 0 or dport == 0:
        return "tcp_bad_port"
    seg = Segment(sport, dport, seq, ack, flags, wnd, buf[hlen:])
    if hlen > 20 and not _parse_options(seg, buf[20:hlen]):
        return "tcp_bad_options"
    return seg


def _parse_options(seg: Segment, opts: memoryview) -> bool:
    i, n = 0, len(opts)
    while i < n:
        kind = opts[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            return False
        ln = opts[i + 1]
        if ln < 2 or i + ln > n:
            return False
        if kind == OPT_MSS and ln == 4:
            seg.mss = opts[i + 2] << 8 | opts[i + 3]
        elif kind == OPT_WSCALE and ln == 3:
            seg.wscale = min(opts[i + 2], 14)            # RFC 7323 2.3: clamp to 14
        elif kind == OPT_SACK_OK and ln == 2:
            seg.sack_ok = True
        elif kind == OPT_TS and ln == 10:
            seg.tsval = _U32.unpack_from(opts, i + 2)[0]
            seg.tsecr = _U32.unpack_from(opts, i + 6)[0]
        elif kind == OPT_SACK and ln >= 10 and (ln - 2) % 8 == 0:
            seg.sack = [struct.unpack_from("!II", opts, j) for j in range(i + 2, i + ln, 8)]
        i += ln
    return True


def syn_options(mss: int, wscale: int | None, sack_ok: bool, ts: tuple[int, int] | None) -> bytes:
    """Options for a SYN or SYN-ACK, in Linux's order and padding."""
    out = _MSS.pack(OPT_MSS, 4, mss)
    if ts is not None:
        out += (bytes((OPT_SACK_OK, 2)) if sack_ok else b"\x01\x01") + struct.pack("!BBII", OPT_TS, 10, *ts)
    elif sack_ok:
        out += bytes((OPT_NOP, OPT_NOP, OPT_SACK_OK, 2))
    if wscale is not None:
        out += bytes((OPT_NOP, OPT_WSCALE, 3, wscale))
    return out


def data_options(ts: tuple[int, int] | None, sack: list[tuple[int, int]]) -> bytes:
    out = _TS.pack(OPT_NOP, OPT_NOP, OPT_TS, 10, *ts) if ts is not None else b""
    if sack:
        out += bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(sack)))
        out += b"".join([struct.pack("!II", l, r) for l, r in sack])
    return out


def build(src: int, dst: int, sport: int, dport: int, seq: int, ack: int, flags: int, wnd: int,
          options: bytes, payload: bytes | bytearray | memoryview, *, partial: bool = False) -> bytes:
    """A segment with its checksum, or (partial) with the pseudo-header sum the device
    completes (VIRTIO_NET_HDR_F_NEEDS_CSUM)."""
    hlen = 20 + len(options)
    head = _TCP.pack(sport, dport, seq, ack, (hlen // 4) << 4, flags, wnd, 0, 0) + options
    ps = pseudo_sum(src, dst, IPPROTO_TCP, hlen + len(payload))
    if partial:
        c = ps
    else:
        c = ~add16(add16(ps, sum16(head)), sum16(payload)) & 0xFFFF
    return head[:16] + c.to_bytes(2, "big") + head[18:] + payload
