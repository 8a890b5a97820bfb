"""Ethernet II framing (no FCS: virtio-net frames carry none) and MAC address helpers."""
from __future__ import annotations

import struct

ETH_HLEN = 14
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_IPV6 = 0x86DD
BROADCAST = b"\xff" * 6
ZERO_MAC = b"\0" * 6

_TYPE = struct.Struct("!H")


def parse_mac(text: str) -> bytes:
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"bad MAC address {text!r}")
    return bytes([int(p, 16) for p in parts])


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def is_multicast(mac: bytes | memoryview) -> bool:
    """Group addresses (broadcast included) have the I/G bit set."""
    return bool(mac[0] & 1)


def header(dst: bytes, src: bytes, ethertype: int) -> bytes:
    return dst + src + _TYPE.pack(ethertype)


def ethertype(frame: bytes | memoryview) -> int:
    return frame[12] << 8 | frame[13]
