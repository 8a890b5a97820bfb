"""Robustness on the paths a real link opens: overlapping/duplicated/corrupted IP fragments,
bad checksums, arbitrary vnet headers from the TAP side of the device, and garbage for the
DHCP client's port. Nothing raises; every frame ends accepted or counted as a drop."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings, strategies as st

from net import dhcp_msg, ipv4, udp
from net.ethernet import BROADCAST, ETH_P_IP, header
from net.nic import Nic
from net.stack import Stack
from net.stats import DROP_CLASSES, classify
from net.testbed import RawPeer
from net.virtio.net_hdr import VirtioNetHdr

SETTINGS = settings(max_examples=int(os.environ.get("NET_FUZZ_EXAMPLES", "300")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def accounted(s: Stack) -> None:
    c = s.counters
    assert c.rx_packets == c.rx_accepted + c.total_drops
    assert all(classify(r) in DROP_CLASSES for r in c.drops)


def stack() -> tuple[Stack, RawPeer]:
    s = Stack("02:00:00:00:00:01", seed=5)
    s.set_address("10.0.0.1", 24, 0.0)
    peer = RawPeer(s)
    peer.introduce(0.0)
    sock = s.udp_socket()
    sock.bind("0.0.0.0", 7)
    return s, peer


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 300), st.booleans(), st.booleans(),
                          st.integers(0, 2)),
                min_size=1, max_size=12),
       st.integers(0, 3))
def test_overlapping_and_corrupt_fragments(frags, ident_spread):
    """Fragments at arbitrary 8-byte offsets and lengths (overlapping, duplicated, past the
    end), some with a broken header checksum, some of other datagrams."""
    s, peer = stack()
    now = 0.0
    for off8, length, more, bad_csum, which in frags:
        payload = bytes([off8 & 0xFF]) * length
        ident = 1000 + (which if ident_spread else 0)
        pkt = bytearray(ipv4.build_header(peer.addr, s.addr, 17, len(payload), ident,
                                          frag=(ipv4.IP_MF if more else 0) | off8) + payload)
        if bad_csum:
            pkt[10] ^= 0x5A
        s.input(peer.eth(ETH_P_IP, bytes(pkt)), now)
        now += 0.5
    s.poll(now + 60)                               # reassembly timeouts fire
    s.take_output()
    accounted(s)
    assert len(s.reassembler) == 0


@SETTINGS
@given(st.binary(min_size=0, max_size=64), st.integers(0, 1400), st.integers(0, 7))
def test_bad_checksums_are_dropped_and_counted(noise, cut, which):
    s, peer = stack()
    good = peer.udp(5, 7, b"x" * 40 + noise)
    frame = bytearray(good)
    pos = [14 + 10, 14 + 20 + 6, 14 + 20 + 8, len(frame) - 1][which % 4]   # ip/udp csum, data
    frame[pos] ^= 0xFF
    if which >= 4:
        frame = frame[:max(14, min(cut, len(frame)))]
    before = s.counters.total_drops
    s.input(bytes(frame), 1.0)
    accounted(s)
    assert s.counters.total_drops == before + 1


@SETTINGS
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
       st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=3000), st.booleans())
def test_any_vnet_header_from_the_link(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset,
                                       body, valid_frame):
    """What a TAP hands the device: any header on any frame (or on a valid TCP-ish frame)."""
    clock = [0.0]

    class OneShot:
        def __init__(self) -> None:
            self.q: list[tuple[VirtioNetHdr, bytes]] = []

        def send_frame(self, hdr: VirtioNetHdr, frame: bytes) -> None:
            pass

        def recv_frame(self) -> tuple[VirtioNetHdr, bytes] | None:
            return self.q.pop() if self.q else None

    be = OneShot()
    nic = Nic(be, "02:00:00:00:00:01", blocks=64)
    nic.stack.set_address("10.0.0.1", 24, 0.0)
    frame = body
    if valid_frame:
        seg = udp.build(ipv4.aton("10.0.0.2"), ipv4.aton("10.0.0.1"), 1, 7, body[:1400])
        frame = header(nic.stack.mac, b"\2\0\0\0\0\2", ETH_P_IP) + ipv4.build_header(
            ipv4.aton("10.0.0.2"), ipv4.aton("10.0.0.1"), 17, len(seg), 1) + seg
    be.q.append((VirtioNetHdr(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset), frame))
    for _ in range(3):
        nic.step(clock[0])
    accounted(nic.stack)
    assert nic.device.stats["rx_frames"] + nic.device.stats["rx_bad_offload"] + nic.device.stats["rx_too_big"] >= 1


@SETTINGS
@given(st.binary(max_size=600), st.booleans())
def test_garbage_to_the_dhcp_client(data, with_header):
    s = Stack("02:00:00:00:00:01", seed=5)
    agent = s.start_dhcp(0.0)
    s.take_output()
    if with_header:                      # a plausible BOOTREPLY head with random options
        m = dhcp_msg.Message(dhcp_msg.BOOTREPLY, 0, s.mac)
        data = dhcp_msg.build(m)[:240] + data
    seg = udp.build(ipv4.aton("10.0.0.9"), ipv4.LIMITED_BROADCAST, 67, 68, data)
    pkt = ipv4.build_header(ipv4.aton("10.0.0.9"), ipv4.LIMITED_BROADCAST, 17, len(seg), 1) + seg
    s.input(header(BROADCAST, b"\2\0\0\0\0\2", ETH_P_IP) + pkt, 0.5)
    s.poll(5.0)
    accounted(s)
    assert s.addr == 0 and agent.client.lease is None
