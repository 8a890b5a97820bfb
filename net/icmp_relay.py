"""ICMP echo from the guests to the outside, through the stack (``--net tap``).

A guest's raw ICMP socket lives in the sandbox's network namespace, where nothing but the
loopback answers. When it sends an echo request to an outside address (the translator traps
that sendto), the request is sent by a stack ping socket with the guest's identifier; each echo
reply the stack receives is written into the sandbox's loopback by a raw socket of ours
(IP_HDRINCL, with the remote as its source), so the guest's own raw socket receives it, IP
header included, as it would on Linux. ICMP errors about guest datagrams relayed by
net/udp_relay.py go the same way (``inject``). Runs on the uplink loop's thread.
"""
from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING, Callable

from .checksum import checksum as internet_checksum

if TYPE_CHECKING:
    from .ping import PingSocket
    from .stack import Stack

ECHO_REPLY, ECHO_REQUEST = 0, 8
_IP_HEADER = struct.Struct("!BBHHHBBH4s4s")


def parse_echo_request(msg: bytes) -> tuple[int, int, bytes] | None:
    """(identifier, sequence, data) of an ICMP echo request, else None."""
    if len(msg) < 8 or msg[0] != ECHO_REQUEST or msg[1] != 0:
        return None
    ident, seq = struct.unpack_from("!HH", msg, 4)
    return ident, seq, msg[8:]


def echo_reply_packet(src: str, dst: str, ident: int, seq: int, data: bytes, ttl: int = 64) -> bytes:
    """An IPv4 packet carrying an ICMP echo reply from ``src`` to ``dst`` (checksums set)."""
    icmp = struct.pack("!BBHHH", ECHO_REPLY, 0, 0, ident, seq) + data
    icmp = icmp[:2] + struct.pack("!H", internet_checksum(icmp)) + icmp[4:]
    header = _IP_HEADER.pack(0x45, 0, 20 + len(icmp), 0, 0x4000, ttl, socket.IPPROTO_ICMP, 0,
                             socket.inet_aton(src), socket.inet_aton(dst))
    header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
    return header + icmp


def error_packet(src: str, dst: str, type_: int, code: int, quoted: bytes, ttl: int = 64) -> bytes:
    """An IPv4 packet carrying an ICMP error from ``src`` to ``dst`` about ``quoted`` (the
    offending datagram's IP header and first 8 bytes), checksums set."""
    icmp = struct.pack("!BBHI", type_, code, 0, 0) + quoted
    icmp = icmp[:2] + struct.pack("!H", internet_checksum(icmp)) + icmp[4:]
    header = _IP_HEADER.pack(0x45, 0, 20 + len(icmp), 0, 0, ttl, socket.IPPROTO_ICMP, 0,
                             socket.inet_aton(src), socket.inet_aton(dst))
    header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
    return header + icmp


def udp_quote(src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """The header part of a UDP datagram from ``src`` to ``dst``, as an ICMP error quotes it."""
    ip = _IP_HEADER.pack(0x45, 0, 28, 0, 0x4000, 64, socket.IPPROTO_UDP, 0,
                         socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    return ip + struct.pack("!HHHH", src[1], dst[1], 8, 0)


class IcmpRelay:
    def __init__(self, stack: "Stack", now: Callable[[], float]) -> None:
        self.stack, self.now = stack, now
        self._pings: dict[int, PingSocket] = {}
        # made on the loop's thread, which lives in the sandbox's namespace
        self._inject = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self._inject.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        self.counters = {"icmp_out": 0, "icmp_in": 0}

    def echo(self, dst: str, msg: bytes) -> bool:
        """Send the guest's echo request ``msg`` to ``dst``; False if it is not one."""
        parsed = parse_echo_request(msg)
        if parsed is None:
            return False
        ident, seq, data = parsed
        sock = self._pings.get(ident)
        if sock is None:
            sock = self._pings[ident] = self.stack.ping_socket(ident)
            sock.on_event = self._deliver
        sock.send(dst, seq, data, self.now())
        self.counters["icmp_out"] += 1
        return True

    def _deliver(self, sock: "PingSocket") -> None:
        while (reply := sock.recv()) is not None:
            src, seq, data = reply
            packet = echo_reply_packet(src, "127.0.0.1", sock.ident, seq, data)
            try:
                self._inject.sendto(packet, ("127.0.0.1", 0))
                self.counters["icmp_in"] += 1
            except OSError:
                pass

    def inject(self, packet: bytes) -> None:
        """Write an IPv4 packet (IP header included) into the sandbox's loopback."""
        try:
            self._inject.sendto(packet, (socket.inet_ntoa(packet[16:20]), 0))
        except OSError:
            pass

    def close(self) -> None:
        for sock in self._pings.values():
            sock.on_event = None
            sock.close()
        self._pings.clear()
        self._inject.close()
