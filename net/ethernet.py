"""Ethernet II framing (no FCS: virtio-net frames carry none) and MAC address helpers."""
from __future__ import annotations

import struct
from typing import Final

ETH_HLEN: Final = 14
ETH_P_IP: Final = 0x0800
ETH_P_ARP: Final = 0x0806
ETH_P_8021Q: Final = 0x8100
ETH_P_IPV6: Final = 0x86DD
BROADCAST: Final = b"\xff" * 6
ZERO_MAC: Final = b"\0" * 6

_TYPE: Final = struct.Struct("!H")


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
