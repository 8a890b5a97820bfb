"""The big-int internet checksum against a word-by-word RFC 1071 reference."""
from __future__ import annotations

import struct

from hypothesis import given, settings, strategies as st

from net.checksum import add16, checksum, pseudo_sum, sum16, valid


def reference(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = 0
    for (w,) in struct.iter_unpack("!H", data):
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_rfc1071_example():
    # RFC 1071 1.2: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2
    assert sum16(bytes.fromhex("0001f203f4f5f6f7")) == 0xDDF2
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_known_ipv4_header():
    hdr = bytes.fromhex("45000073000040004011" "0000" "c0a80001c0a800c7")
    c = checksum(hdr)
    assert c == 0xB861
    assert valid(hdr[:10] + c.to_bytes(2, "big") + hdr[12:])


def test_zero_and_negative_zero():
    assert sum16(b"") == 0 and sum16(b"\0\0\0") == 0
    assert sum16(b"\xff\xff") == 0xFFFF and sum16(b"\xff\xff\xff\xff") == 0xFFFF
    assert add16(0xFFFF, 0xFFFF) == 0xFFFF and add16(0x8000, 0x8000) == 1


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=3000))
def test_matches_reference(data):
    assert sum16(data) == reference(data)
    assert sum16(memoryview(data)) == reference(data)
    c = checksum(data + b"\0\0" if len(data) % 2 == 0 else data)
    if len(data) % 2 == 0:
        assert valid(data + c.to_bytes(2, "big"))


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 255), st.integers(0, 65535))
def test_pseudo_header(src, dst, proto, length):
    assert pseudo_sum(src, dst, proto, length) == reference(struct.pack("!IIBBH", src, dst, 0, proto, length))
