"""ICMP for IPv4 (RFC 792, RFC 1122 3.2.2, RFC 1812 4.3.2): codec, echo reply, error messages
quoting the offending datagram, and the quote's parsing for delivery to the right socket."""
from __future__ import annotations

import struct
from typing import NamedTuple

from .checksum import checksum, valid

ECHO_REPLY, DEST_UNREACH, ECHO_REQUEST, TIME_EXCEEDED, PARAM_PROBLEM = 0, 3, 8, 11, 12
NET_UNREACH, HOST_UNREACH, PROTO_UNREACH, PORT_UNREACH, FRAG_NEEDED = 0, 1, 2, 3, 4
TTL_EXCEEDED, REASSEMBLY_EXCEEDED = 0, 1
ERROR_TYPES = frozenset({DEST_UNREACH, TIME_EXCEEDED, PARAM_PROBLEM, 4, 5})

_HDR = struct.Struct("!BBHI")           # type, code, checksum, rest of header
_QUOTE_MAX = 576 - 20 - 8               # RFC 1812: the error datagram stays within 576 bytes


class IcmpMessage(NamedTuple):
    type: int
    code: int
    rest: int                 # the 4 type-specific bytes (echo id/seq, next-hop MTU...)
    body: memoryview


def parse(buf: memoryview) -> IcmpMessage | str:
    if len(buf) < 8:
        return "icmp_truncated"
    if not valid(buf):
        return "icmp_bad_checksum"
    t, c, _, rest = _HDR.unpack_from(buf)
    return IcmpMessage(t, c, rest, buf[8:])


def build(type_: int, code: int, rest: int, body: bytes | memoryview) -> bytes:
    head = _HDR.pack(type_, code, 0, rest)
    c = checksum(head + body)
    return _HDR.pack(type_, code, c, rest) + body


def echo_request(ident: int, seq: int, data: bytes) -> bytes:
    return build(ECHO_REQUEST, 0, (ident & 0xFFFF) << 16 | (seq & 0xFFFF), data)


def echo_reply(req: IcmpMessage) -> bytes:
    return build(ECHO_REPLY, 0, req.rest, req.body)


def error(type_: int, code: int, datagram: bytes | memoryview, rest: int = 0) -> bytes:
    """An ICMP error quoting as much of the offending datagram as fits 576 bytes."""
    return build(type_, code, rest, datagram[:_QUOTE_MAX])


class Quote(NamedTuple):
    """The offending datagram an ICMP error quotes, as far as sockets need it."""
    src: int
    dst: int
    proto: int
    sport: int
    dport: int
    l4: memoryview            # the quoted transport header bytes (8 at least)


def parse_quote(body: memoryview) -> Quote | str:
    if len(body) < 28 or body[0] >> 4 != 4:
        return "icmp_bad_quote"
    hlen = (body[0] & 0xF) * 4
    if hlen < 20 or len(body) < hlen + 8:
        return "icmp_bad_quote"
    proto = body[9]
    src, dst = struct.unpack_from("!II", body, 12)
    sport, dport = struct.unpack_from("!HH", body, hlen)
    return Quote(src, dst, proto, sport, dport, body[hlen:])
