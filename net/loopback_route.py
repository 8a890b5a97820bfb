"""Replies from the sandbox's loopback to outside addresses stay in the sandbox.

An inbound connection reaches the guest's listener from a doorbell bound (IP_TRANSPARENT) to
the outside peer's own address (net/uplink.py), so the guest's native accept4 and getpeername
name the real peer and nothing has to be translated per connection. The guest's side of it
then sends from 127.0.0.x to that outside address, for which the sandbox's namespace has no
route: a policy rule gives whatever leaves from 127.0.0.0/8 a table whose one route is
``local default dev lo`` (what ``ip rule add from 127.0.0.0/8 lookup T`` and ``ip route add
local default dev lo table T`` do), so it comes back in and reaches the doorbell. Only sockets
bound to a loopback address are concerned (a guest's connect to the outside is the translator's
either way); the namespace has no other interface, so nothing leaves it.

Two rtnetlink requests, made by a thread inside the namespace with CAP_NET_ADMIN there (the
translator owns the sandbox's user namespace).
"""
from __future__ import annotations

import errno
import socket
import struct
from typing import Final

TABLE: Final = 100           # the sandbox's namespace is ours: no other table uses it
PRIORITY: Final = 100        # before the main table's rule (32766)

_RTM_NEWROUTE, _RTM_NEWRULE = 24, 32
_NLMSG_ERROR = 2
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_EXCL, _NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
_RTPROT_STATIC, _RT_SCOPE_HOST, _RTN_LOCAL, _FR_ACT_TO_TBL = 4, 254, 2, 1
_RTA_OIF, _RTA_TABLE = 4, 15
_FRA_SRC, _FRA_PRIORITY, _FRA_TABLE = 2, 6, 15


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + bytes(-size % 4)


def _request(sock: socket.socket, kind: int, body: bytes, seq: int) -> None:
    """Send one request and wait for its acknowledgement; EEXIST is success (set up already)."""
    flags = _NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_EXCL
    sock.send(struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body)
    while True:
        reply = sock.recv(65536)
        off = 0
        while off + 16 <= len(reply):
            size, rtype, _, rseq, _ = struct.unpack_from("=IHHII", reply, off)
            if rtype == _NLMSG_ERROR and rseq == seq:
                (code,) = struct.unpack_from("=i", reply, off + 16)
                if code not in (0, -errno.EEXIST):
                    raise OSError(-code, f"rtnetlink: {errno.errorcode.get(-code, -code)}")
                return
            off += max(size, 16) + (-size % 4)


def install() -> None:
    """Add the rule and the route in the calling thread's network namespace."""
    lo = socket.if_nametoindex("lo")
    route = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, _RTPROT_STATIC, _RT_SCOPE_HOST,
                        _RTN_LOCAL, 0)
    route += _attr(_RTA_TABLE, struct.pack("=I", TABLE)) + _attr(_RTA_OIF, struct.pack("=I", lo))
    rule = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 8, 0, 0, 0, 0, _FR_ACT_TO_TBL, 0)
    rule += (_attr(_FRA_SRC, socket.inet_aton("127.0.0.0")) + _attr(_FRA_TABLE, struct.pack("=I", TABLE))
             + _attr(_FRA_PRIORITY, struct.pack("=I", PRIORITY)))
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        _request(sock, _RTM_NEWROUTE, route, 1)
        _request(sock, _RTM_NEWRULE, rule, 2)
