"""Guest socket addresses (struct sockaddr_in / sockaddr_in6 / sockaddr_un) as bytes."""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from linuxabi.abi import errno as E
from linuxabi.abi import flags as F

SOCKADDR_IN_LEN = 16
SOCKADDR_IN6_LEN = 28


class AddressError(OSError):
    def __init__(self, code: int) -> None:
        super().__init__(code, "")


@dataclass(frozen=True)
class InetAddress:
    family: int  # AF_INET or AF_INET6
    ip: str
    port: int

    @property
    def host_tuple(self) -> tuple[str, int]:
        return (self.ip, self.port)


def family_of(raw: bytes) -> int:
    """The sa_family of a guest address; EINVAL when it is too short to have one."""
    if len(raw) < 2:
        raise AddressError(E.EINVAL)
    return struct.unpack_from("=H", raw)[0]


def parse_inet(raw: bytes, family: int) -> InetAddress:
    """A guest's sockaddr_in/in6 for a socket of ``family``: EINVAL when short, EAFNOSUPPORT
    for another family (AF_UNSPEC with the any address is AF_INET's old alias, as in Linux)."""
    if family == F.AF_INET:
        if len(raw) < SOCKADDR_IN_LEN:
            raise AddressError(E.EINVAL)
        fam = family_of(raw)
        port, addr = struct.unpack_from("!HI", raw, 2)
        if fam != F.AF_INET and not (fam == F.AF_UNSPEC and addr == 0):
            raise AddressError(E.EAFNOSUPPORT)
        return InetAddress(F.AF_INET, socket.inet_ntop(socket.AF_INET, raw[4:8]), port)
    if len(raw) < 24:  # SIN6_LEN_RFC2133: sockaddr_in6 without the scope id
        raise AddressError(E.EINVAL)
    if family_of(raw) != F.AF_INET6:
        raise AddressError(E.EAFNOSUPPORT)
    (port,) = struct.unpack_from("!H", raw, 2)
    return InetAddress(F.AF_INET6, socket.inet_ntop(socket.AF_INET6, raw[8:24]), port)


def pack_inet(family: int, ip: str, port: int) -> bytes:
    # (inet_pton, not the ipaddress module: this is on accept's path, ~40x faster)
    if family == F.AF_INET:
        return struct.pack("=H", F.AF_INET) + struct.pack("!H", port) + socket.inet_pton(socket.AF_INET, ip) + bytes(8)
    return (struct.pack("=H", F.AF_INET6) + struct.pack("!HI", port, 0) + socket.inet_pton(socket.AF_INET6, ip)
            + bytes(4))
