"""DHCP messages (RFC 2131 2, RFC 2132 options): the BOOTP header and the option list.

Options are kept raw (code -> bytes, repeated codes concatenated as RFC 3396 says); the
accessors decode the few a client needs. A message from the wire never raises: `parse`
returns a drop reason instead.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

BOOTREQUEST, BOOTREPLY = 1, 2
HTYPE_ETHER = 1
FLAG_BROADCAST = 0x8000
SERVER_PORT, CLIENT_PORT = 67, 68
MAGIC = b"\x63\x82\x53\x63"

# message types (option 53)
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
TYPE_NAMES = {DISCOVER: "DISCOVER", OFFER: "OFFER", REQUEST: "REQUEST", DECLINE: "DECLINE",
              ACK: "ACK", NAK: "NAK", RELEASE: "RELEASE", INFORM: "INFORM"}

# option codes
OPT_PAD, OPT_END = 0, 255
OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_DNS = 6
OPT_HOSTNAME = 12
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_OVERLOAD = 52
OPT_MSG_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAM_REQUEST = 55
OPT_MESSAGE = 56
OPT_MAX_SIZE = 57
OPT_T1 = 58
OPT_T2 = 59
OPT_CLIENT_ID = 61

INFINITE = 0xFFFFFFFF

_FIXED = struct.Struct("!BBBBIHHIIII16s64s128s")      # 236 bytes, then the magic cookie
_MIN_LEN = 300                                          # what BOOTP relays and old servers expect
_U32 = struct.Struct("!I")


@dataclass
class Message:
    op: int
    xid: int
    chaddr: bytes                   # the client's MAC (6 bytes)
    secs: int = 0
    flags: int = 0
    ciaddr: int = 0
    yiaddr: int = 0
    siaddr: int = 0
    giaddr: int = 0
    options: dict[int, bytes] = field(default_factory=dict)

    # -- decoded options
    @property
    def msg_type(self) -> int | None:
        v = self.options.get(OPT_MSG_TYPE)
        return v[0] if v and len(v) == 1 else None

    def addr(self, code: int) -> int | None:
        v = self.options.get(code)
        return _U32.unpack(v)[0] if v is not None and len(v) == 4 else None

    def addrs(self, code: int) -> tuple[int, ...]:
        v = self.options.get(code, b"")
        return tuple(_U32.unpack_from(v, i)[0] for i in range(0, len(v) - len(v) % 4, 4))

    def u32(self, code: int) -> int | None:
        return self.addr(code)

    @property
    def server_id(self) -> int | None:
        return self.addr(OPT_SERVER_ID)


def encode_options(options: dict[int, bytes]) -> bytes:
    """Options in insertion order; values over 255 bytes are split (RFC 3396)."""
    out = bytearray()
    for code, value in options.items():
        if not value:
            out += bytes((code, 0))
        for i in range(0, len(value), 255):
            chunk = value[i:i + 255]
            out += bytes((code, len(chunk))) + chunk
    out.append(OPT_END)
    return bytes(out)


def build(m: Message) -> bytes:
    body = _FIXED.pack(m.op, HTYPE_ETHER, 6, 0, m.xid, m.secs, m.flags, m.ciaddr, m.yiaddr,
                       m.siaddr, m.giaddr, m.chaddr.ljust(16, b"\0"), b"", b"")
    out = body + MAGIC + encode_options(m.options)
    return out.ljust(_MIN_LEN, b"\0")


def _decode_options(buf: bytes | memoryview, into: dict[int, bytes]) -> str | None:
    i, n = 0, len(buf)
    while i < n:
        code = buf[i]
        if code == OPT_END:
            return None
        if code == OPT_PAD:
            i += 1
            continue
        if i + 1 >= n or i + 2 + buf[i + 1] > n:
            return "dhcp_bad_option"
        length = buf[i + 1]
        into[code] = into.get(code, b"") + bytes(buf[i + 2:i + 2 + length])
        i += 2 + length
    return None                     # no END: tolerated, as most clients do


def parse(data: bytes | memoryview) -> Message | str:
    if len(data) < _FIXED.size + 4:
        return "dhcp_truncated"
    (op, htype, hlen, _hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname,
     file) = _FIXED.unpack_from(data)
    if bytes(data[_FIXED.size:_FIXED.size + 4]) != MAGIC:
        return "dhcp_no_magic"
    if op not in (BOOTREQUEST, BOOTREPLY) or htype != HTYPE_ETHER or hlen != 6:
        return "dhcp_bad_header"
    opts: dict[int, bytes] = {}
    why = _decode_options(memoryview(data)[_FIXED.size + 4:], opts)
    if why is None and OPT_OVERLOAD in opts:          # RFC 2132 9.3: file, then sname, hold more
        over = opts[OPT_OVERLOAD][:1]
        if over and over[0] & 1:
            why = _decode_options(file, opts)
        if why is None and over and over[0] & 2:
            why = _decode_options(sname, opts)
    if why is not None:
        return why
    return Message(op, xid, bytes(chaddr[:6]), secs, flags, ciaddr, yiaddr, siaddr, giaddr, opts)


def u32(v: int) -> bytes:
    return _U32.pack(v & 0xFFFFFFFF)
