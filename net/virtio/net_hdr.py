"""struct virtio_net_hdr as laid out once VIRTIO_F_VERSION_1 is negotiated (virtio 1.1, 5.1.6):
12 bytes, little-endian, num_buffers always present."""
from __future__ import annotations

import struct
from typing import Final, NamedTuple

VIRTIO_NET_HDR_F_NEEDS_CSUM: Final = 1
VIRTIO_NET_HDR_F_DATA_VALID: Final = 2
VIRTIO_NET_HDR_F_RSC_INFO: Final = 4

VIRTIO_NET_HDR_GSO_NONE: Final = 0
VIRTIO_NET_HDR_GSO_TCPV4: Final = 1
VIRTIO_NET_HDR_GSO_UDP: Final = 3
VIRTIO_NET_HDR_GSO_TCPV6: Final = 4
VIRTIO_NET_HDR_GSO_ECN: Final = 0x80

_HDR: Final = struct.Struct("<BBHHHHH")
HDR_LEN: Final = _HDR.size          # 12


class VirtioNetHdr(NamedTuple):
    flags: int = 0
    gso_type: int = VIRTIO_NET_HDR_GSO_NONE
    hdr_len: int = 0         # bytes of headers to copy into every GSO segment
    gso_size: int = 0        # payload bytes per GSO segment
    csum_start: int = 0      # checksum the bytes from here to the end of the frame...
    csum_offset: int = 0     # ...and store it at csum_start + csum_offset
    num_buffers: int = 1     # rx with MRG_RXBUF: buffers this packet spans

    def pack(self) -> bytes:
        return _HDR.pack(*self)

    def pack_with(self, num_buffers: int) -> bytes:
        """``self._replace(num_buffers=n).pack()``, without building the copy."""
        return _HDR.pack(self[0], self[1], self[2], self[3], self[4], self[5], num_buffers)

    def pack_into(self, buf: bytearray | memoryview, offset: int = 0) -> None:
        _HDR.pack_into(buf, offset, *self)

    @classmethod
    def unpack(cls, buf: bytes | memoryview, offset: int = 0) -> VirtioNetHdr:
        return _new(cls, _HDR.unpack_from(buf, offset))

    @classmethod
    def unpack_with(cls, buf: bytes | memoryview, num_buffers: int, offset: int = 0) -> VirtioNetHdr:
        """``unpack(buf, offset)._replace(num_buffers=n)`` in one step."""
        f = _HDR.unpack_from(buf, offset)
        return _new(cls, (f[0], f[1], f[2], f[3], f[4], f[5], num_buffers))

    @property
    def needs_csum(self) -> bool:
        return bool(self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)

    @property
    def data_valid(self) -> bool:
        return bool(self.flags & VIRTIO_NET_HDR_F_DATA_VALID)

    @property
    def gso(self) -> int:
        """The GSO type without the ECN bit."""
        return self.gso_type & ~VIRTIO_NET_HDR_GSO_ECN


_new = tuple.__new__        # what NamedTuple._make does, without its length check and call layers
PLAIN: Final = VirtioNetHdr()
_TCP4_CSUM: Final = VirtioNetHdr(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start=34, csum_offset=16)


def tcp4_partial(gso_size: int, hdr_len: int) -> VirtioNetHdr:
    """The header of a TCP/IPv4 frame (Ethernet, a 20-byte IP header) whose checksum the
    device completes and which, with ``gso_size``, it cuts into segments of that payload
    (``hdr_len``: the headers each one repeats). (A NamedTuple's keyword constructor is
    interpreted code; this is called for every segment sent.)"""
    if not gso_size:
        return _TCP4_CSUM
    return _new(VirtioNetHdr, (VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, hdr_len, gso_size, 34, 16, 1))
