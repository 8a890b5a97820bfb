"""What a device (or the link behind it) does for offloads its peer did not negotiate:
finish a partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM) and cut a TCPv4 GSO super-frame into
MSS-sized frames. Malformed offload requests give None (the frame is dropped and counted)."""
from __future__ import annotations

import struct
from typing import Final

from ..checksum import add16, checksum, pseudo_sum, sum16
from .net_hdr import (PLAIN, VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM,
                      VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4, VirtioNetHdr)

_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")
_ETH_HLEN: Final = 14
_TCP_FIN: Final = 0x01
_TCP_PSH: Final = 0x08
_TCP_CWR: Final = 0x80


def complete_checksum(hdr: VirtioNetHdr, frame: bytes) -> bytes | None:
    """The frame with the partial checksum at csum_start/csum_offset filled in."""
    start, off = hdr.csum_start, hdr.csum_offset
    if start + off + 2 > len(frame):
        return None
    buf = bytearray(frame)
    # the field holds the pseudo-header sum: summing it with the data gives the full sum
    c = checksum(memoryview(buf)[start:]) or 0xFFFF    # 0 means "no checksum" to UDP
    _U16.pack_into(buf, start + off, c)
    return bytes(buf)


def segment_tcp4(hdr: VirtioNetHdr, frame: bytes) -> list[bytes] | None:
    """Cut an Ethernet/IPv4/TCP super-frame into frames of at most gso_size payload bytes,
    with the headers fixed up as hardware TSO does (ids, lengths, seqs, flags, checksums)."""
    mss = hdr.gso_size
    if mss == 0 or len(frame) < _ETH_HLEN + 40 or frame[_ETH_HLEN] >> 4 != 4:
        return None
    ihl = (frame[_ETH_HLEN] & 0xF) * 4
    tcp = _ETH_HLEN + ihl
    if ihl < 20 or len(frame) < tcp + 20:
        return None
    hlen = tcp + (frame[tcp + 12] >> 4) * 4
    if hlen < tcp + 20 or hlen > len(frame):
        return None
    src, dst = _U32.unpack_from(frame, _ETH_HLEN + 12)[0], _U32.unpack_from(frame, _ETH_HLEN + 16)[0]
    ident = _U16.unpack_from(frame, _ETH_HLEN + 4)[0]
    seq = _U32.unpack_from(frame, tcp + 4)[0]
    flags = frame[tcp + 13]
    payload = memoryview(frame)[hlen:]
    template = bytearray(frame[:hlen])
    template[_ETH_HLEN + 10:_ETH_HLEN + 12] = b"\0\0"
    out = []
    n = (len(payload) + mss - 1) // mss or 1
    for i in range(n):
        chunk = payload[i * mss:(i + 1) * mss]
        h = bytearray(template)
        _U16.pack_into(h, _ETH_HLEN + 2, ihl + (hlen - tcp) + len(chunk))
        _U16.pack_into(h, _ETH_HLEN + 4, (ident + i) & 0xFFFF)
        _U16.pack_into(h, _ETH_HLEN + 10, checksum(memoryview(h)[_ETH_HLEN:tcp]))
        _U32.pack_into(h, tcp + 4, (seq + i * mss) & 0xFFFFFFFF)
        f = flags
        if i + 1 < n:
            f &= ~(_TCP_FIN | _TCP_PSH)
        if i:
            f &= ~_TCP_CWR
        h[tcp + 13] = f
        h[tcp + 16:tcp + 18] = b"\0\0"
        tcp_len = hlen - tcp + len(chunk)
        s = add16(add16(pseudo_sum(src, dst, 6, tcp_len), sum16(memoryview(h)[tcp:])), sum16(chunk))
        _U16.pack_into(h, tcp + 16, ~s & 0xFFFF)
        out.append(bytes(h) + chunk)
    return out


def finish_for_peer(hdr: VirtioNetHdr, frame: bytes, *, csum_ok: bool, tso4_ok: bool
                    ) -> list[tuple[VirtioNetHdr, bytes]] | None:
    """Turn a frame as sent into what a driver that negotiated only the given offloads may
    receive: GSO cut unless it takes TSO4, partial checksums completed unless it takes them.
    Without GUEST_CSUM the flags must be zero (virtio 1.1, 5.1.6.4.1)."""
    if hdr.gso_type != VIRTIO_NET_HDR_GSO_NONE:
        if hdr.gso == VIRTIO_NET_HDR_GSO_TCPV4 and tso4_ok and csum_ok:
            return [(hdr, frame)]
        if hdr.gso != VIRTIO_NET_HDR_GSO_TCPV4:
            return None
        segs = segment_tcp4(hdr, frame)
        if segs is None:
            return None
        verified = VirtioNetHdr(flags=VIRTIO_NET_HDR_F_DATA_VALID if csum_ok else 0)
        return [(verified, s) for s in segs]
    if hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
        if csum_ok:
            return [(hdr, frame)]
        done = complete_checksum(hdr, frame)
        return None if done is None else [(PLAIN, done)]
    return [(PLAIN, frame)]
