"""The internet checksum (RFC 1071) without a Python loop.

Since 2**16 == 1 (mod 0xffff), the ones'-complement sum of a buffer's 16-bit big-endian words
is congruent to the buffer read as one big-endian integer, modulo 0xffff; int.from_bytes and
one C-level modulo do the whole sum. The only subtlety is telling ones'-complement +0 (all
words zero) from -0 (0xffff), which `sum16` keeps exact.
"""
from __future__ import annotations

from typing import Union

Bytes = Union[bytes, bytearray, memoryview]


def sum16(data: Bytes) -> int:
    """Ones'-complement sum of `data` (odd length padded with a zero byte), in 0..0xffff."""
    v = int.from_bytes(data, "big")
    if len(data) & 1:
        v <<= 8
    if not v:
        return 0
    return v % 0xFFFF or 0xFFFF


def add16(a: int, b: int) -> int:
    """Ones'-complement addition of two 16-bit sums (end-around carry)."""
    t = a + b
    return (t & 0xFFFF) + (t >> 16)


def checksum(data: Bytes, initial: int = 0) -> int:
    """The checksum field value for `data` (with its checksum field zeroed), plus `initial`."""
    return ~add16(sum16(data), initial) & 0xFFFF


def valid(data: Bytes, initial: int = 0) -> bool:
    """True if `data`, checksum field included, sums to -0."""
    return add16(sum16(data), initial) == 0xFFFF


def pseudo_sum(src: int, dst: int, proto: int, length: int) -> int:
    """Ones'-complement sum of the IPv4 pseudo-header (RFC 768 / RFC 9293 3.1)."""
    t = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + length
    t = (t & 0xFFFF) + (t >> 16)
    return (t & 0xFFFF) + (t >> 16)
