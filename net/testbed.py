"""Deterministic wiring for tests and experiments: a Host is a Stack on a virtio-net driver
and device sharing one memory region; a Network is two hosts on an impaired PairLink, run
on a simulated clock that jumps straight to the next timer or delivery."""
from __future__ import annotations

from typing import Callable

from . import arp, icmp, ipv4, tcp_segment, udp
from .ethernet import header, parse_mac
from .nic import Nic
from .stack import Stack
from .virtio.backends import PairLink
from .virtio.device import DEFAULT_FEATURES, Backend
from .virtio.driver import WANTED
from .virtio.net_hdr import VirtioNetHdr


class Host(Nic):
    """A Nic with a static address, as most tests want."""

    def __init__(self, backend: Backend, mac: str, addr: str | None, *, prefix: int = 24,
                 gateway: str | None = None, seed: int = 0, wanted: int = WANTED,
                 device_features: int = DEFAULT_FEATURES, mtu: int = 1500, now: float = 0.0,
                 block_size: int = 2048, blocks: int = 512) -> None:
        super().__init__(backend, mac, seed=seed, wanted=wanted, device_features=device_features,
                         mtu=mtu, block_size=block_size, blocks=blocks, name=addr or mac)
        if addr:
            self.stack.set_address(addr, prefix, now)
        if gateway:
            self.stack.set_gateway(gateway)


class Network:
    """Hosts a (10.0.0.1) and b (10.0.0.2) on one link (an address of None leaves it unset)."""

    def __init__(self, *, seed: int = 0, loss: float = 0.0, duplicate: float = 0.0,
                 reorder: float = 0.0, delay: float = 0.0005, reorder_delay: float = 0.002,
                 segment: bool = True, wanted_a: int = WANTED, wanted_b: int = WANTED,
                 mtu: int = 1500, addr_a: str | None = "10.0.0.1", addr_b: str | None = "10.0.0.2") -> None:
        self.now = 0.0
        self.link = PairLink(lambda: self.now, seed=seed, loss=loss, duplicate=duplicate,
                             reorder=reorder, delay=delay, reorder_delay=reorder_delay, segment=segment)
        self.a = Host(self.link.a, "02:00:00:00:00:0a", addr_a, seed=2 * seed + 1,
                      wanted=wanted_a, mtu=mtu)
        self.b = Host(self.link.b, "02:00:00:00:00:0b", addr_b, seed=2 * seed + 2,
                      wanted=wanted_b, mtu=mtu)
        self.steps = 0

    def run(self, until: Callable[[], bool] | None = None, *, timeout: float = 60.0) -> bool:
        """Run until `until()` holds (True), or the simulated `timeout` passes (False);
        without `until`, run for exactly `timeout` simulated seconds."""
        end = self.now + timeout
        stalled = 0
        while True:
            if until is not None and until():
                return True
            moved = self.a.step(self.now)
            moved = self.b.step(self.now) or moved
            self.steps += 1
            if moved:
                continue
            if until is not None and until():         # a timer may have done it
                return True
            times = [t for t in (self.a.next_deadline(), self.b.next_deadline(), self.link.next_event())
                     if t is not None]
            t = min(times) if times else None
            if t is None or t > end:
                self.now = end
                if until is not None:
                    return until()
                return True
            stalled = stalled + 1 if t <= self.now else 0
            if stalled > 100:
                raise RuntimeError(f"simulation stalled at t={self.now}")
            self.now = max(t, self.now)


class Decoded:
    """One frame a stack sent, taken apart for assertions."""
    __slots__ = ("frame", "hdr", "dst_mac", "ethertype", "arp", "ip", "payload", "tcp", "udp", "icmp")

    def __init__(self, hdr: VirtioNetHdr, frame: bytes) -> None:
        self.frame, self.hdr = frame, hdr
        self.dst_mac, self.ethertype = frame[:6], frame[12] << 8 | frame[13]
        self.arp = self.ip = self.payload = self.tcp = self.udp = self.icmp = None
        body = memoryview(frame)[14:]
        if self.ethertype == 0x0806:
            self.arp = arp.parse(body)
        elif self.ethertype == 0x0800:
            r = ipv4.parse(body)
            if isinstance(r, str):
                raise AssertionError(f"stack sent a bad IPv4 packet: {r}")
            self.ip, self.payload = r
            csum_ok = bool(hdr.flags)            # partial checksums are the device's job
            if self.ip.proto == 6:
                self.tcp = tcp_segment.parse(self.ip.src, self.ip.dst, self.payload, csum_ok)
            elif self.ip.proto == 17 and not self.ip.is_fragment:
                self.udp = udp.parse(self.ip.src, self.ip.dst, self.payload, csum_ok)
            elif self.ip.proto == 1:
                self.icmp = icmp.parse(self.payload)


class RawPeer:
    """A scripted neighbour on the same link as `stack`: it crafts frames for the stack and
    decodes what the stack sends, so tests can drive protocol corners segment by segment."""

    def __init__(self, stack: Stack, mac: str = "02:00:00:00:00:99", addr: str = "10.0.0.99") -> None:
        self.stack, self.mac, self.addr = stack, parse_mac(mac), ipv4.aton(addr)
        self.ident = 1

    def eth(self, ethertype: int, payload: bytes, dst: bytes | None = None) -> bytes:
        return header(dst or self.stack.mac, self.mac, ethertype) + payload

    def ip(self, proto: int, payload: bytes, *, src: int | None = None, dst: int | None = None,
           ttl: int = 64, frag: int = 0, ident: int | None = None) -> bytes:
        if ident is None:
            self.ident += 1
            ident = self.ident
        pkt = ipv4.build_header(self.addr if src is None else src,
                                self.stack.addr if dst is None else dst,
                                proto, len(payload), ident, ttl=ttl, frag=frag) + payload
        return self.eth(0x0800, pkt)

    def udp(self, sport: int, dport: int, data: bytes, **kw: int) -> bytes:
        seg = udp.build(kw.get("src", self.addr), kw.get("dst", self.stack.addr), sport, dport, data)
        return self.ip(17, seg, **kw)

    def tcp(self, sport: int, dport: int, seq: int, ack: int, flags: int, *, wnd: int = 65535,
            data: bytes = b"", options: bytes = b"") -> bytes:
        seg = tcp_segment.build(self.addr, self.stack.addr, sport, dport, seq, ack, flags, wnd, options, data)
        return self.ip(6, seg)

    def arp(self, op: int, tpa: int, *, spa: int | None = None, tha: bytes = b"\0" * 6,
            dst: bytes | None = None) -> bytes:
        return self.eth(0x0806, arp.build(op, self.mac, self.addr if spa is None else spa, tha, tpa),
                        dst or b"\xff" * 6)

    def introduce(self, now: float) -> None:
        """Make the stack learn our MAC (an ARP request for its address), discard its reply."""
        self.send(self.arp(1, self.stack.addr), now)
        self.take()

    def send(self, frame: bytes, now: float) -> None:
        self.stack.input(frame, now)

    def take(self) -> list[Decoded]:
        return [Decoded(h, f) for h, f in self.stack.take_output()]
