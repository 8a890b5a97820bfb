"""Robustness: random and mutated frames never raise, and every frame ends up either
accepted or dropped with a counted reason (rx_packets == rx_accepted + total_drops). The
virtio device likewise survives a scribbled ring by asking for a reset."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings, strategies as st

from net import arp, icmp, ipv4
from net.stack import Stack
from net.tcp import State
from net.tcp_segment import ACK, FIN, PSH, RST, SYN, syn_options
from net.testbed import RawPeer
from net.virtio import features as F
from net.virtio.backends import PairLink
from net.virtio.device import VirtioNetDevice
from net.virtio.driver import VirtioNetDriver
from net.virtio.net_hdr import VirtioNetHdr

SETTINGS = settings(max_examples=int(os.environ.get("NET_FUZZ_EXAMPLES", "600")), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def world():
    """A stack with a UDP socket, a listener and one established connection to a raw peer."""
    s = Stack("02:00:00:00:00:01", seed=9)
    s.set_address("10.0.0.1", 24, 0.0)
    peer = RawPeer(s)
    peer.introduce(0.0)
    u = s.udp_socket()
    u.bind("0.0.0.0", 7)
    lst = s.tcp_socket()
    lst.bind("0.0.0.0", 80)
    lst.listen(4)
    peer.send(peer.tcp(1234, 80, 1000, 0, SYN, options=syn_options(1460, 7, True, (5, 0))), 0.0)
    (synack,) = peer.take()
    iss = synack.tcp.seq
    peer.send(peer.tcp(1234, 80, 1001, iss + 1, ACK), 0.0)
    conn = lst.accept()
    assert conn is not None and conn.state == State.ESTABLISHED
    return s, peer, conn, iss


def corpus(peer: RawPeer, s: Stack, iss: int) -> list[bytes]:
    udp_pkt = peer.udp(5, 7, b"hello")
    frags = ipv4.fragment(peer.addr, s.addr, 17, bytes(3000), 99, 1500)
    return [
        peer.arp(arp.ARP_REQUEST, s.addr),
        peer.arp(arp.ARP_REPLY, s.addr, tha=s.mac, dst=s.mac),
        peer.ip(1, icmp.echo_request(1, 2, b"abcdefgh")),
        udp_pkt,
        peer.udp(5, 9, b"closed"),
        peer.tcp(4321, 80, 77, 0, SYN, options=syn_options(1460, 7, True, (9, 0))),
        peer.tcp(1234, 80, 1001, iss + 1, ACK | PSH, data=b"payload bytes"),
        peer.tcp(1234, 80, 1001, iss + 1, ACK | FIN),
        peer.tcp(1234, 80, 1001, iss + 1, RST),
        peer.eth(0x0800, frags[0]),
        peer.eth(0x0800, frags[-1]),
        peer.ip(1, icmp.error(3, 3, udp_pkt[14:])),
    ]


def check(s: Stack) -> None:
    c = s.counters
    assert c.rx_packets == c.rx_accepted + c.total_drops


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_addressed_to_us(data):
    s, peer, _, _ = world()
    before = s.counters.total_drops
    s.input(s.mac + peer.mac + data, 1.0)
    s.input(data, 1.0)
    s.poll(100.0)
    check(s)
    assert s.counters.total_drops >= before + 1          # random garbage is (almost) never valid


@SETTINGS
@given(st.integers(0, 11), st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=6),
       st.one_of(st.none(), st.integers(0, 2000)), st.binary(max_size=40))
def test_mutated_valid_frames(which, flips, cut, tail):
    s, peer, conn, iss = world()
    frame = bytearray(corpus(peer, s, iss)[which])
    for pos, val in flips:
        if 6 <= pos < len(frame):              # keep the destination MAC (else trivially dropped)
            frame[pos] = val
    if cut is not None:
        frame = frame[:max(cut, 6)]
    frame += tail
    s.input(bytes(frame), 1.0)
    s.poll(1.5)
    s.poll(500.0)
    s.take_output()
    check(s)


@SETTINGS
@given(st.lists(st.tuples(st.integers(-70000, 70000), st.integers(-70000, 70000),
                          st.integers(0, 255), st.integers(0, 65535), st.binary(max_size=64)),
                min_size=1, max_size=8))
def test_tcp_segments_in_any_order_never_raise(segs):
    s, peer, conn, iss = world()
    t = 1.0
    for dseq, dack, flags, wnd, data in segs:
        peer.send(peer.tcp(1234, 80, (1001 + dseq) & 0xFFFFFFFF, (iss + 1 + dack) & 0xFFFFFFFF,
                           flags, wnd=wnd, data=data), t)
        t += 0.01
        try:
            conn.recv(1 << 16, t)
        except OSError:
            pass                               # a reset is reported to the application
    s.poll(t + 1000)
    s.take_output()
    check(s)
    assert conn.state in State


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["desc", "avail"]), st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)),
                                                  min_size=1, max_size=40))
def test_scribbled_ring_never_raises(part, writes):
    clock = [0.0]
    link = PairLink(lambda: clock[0], delay=0.0)
    mem = memoryview(bytearray(VirtioNetDriver.memory_size(16, rx_blocks=16, tx_blocks=16)))
    dev = VirtioNetDevice(mem, link.a, mac=b"\2\0\0\0\0\1")
    drv = VirtioNetDriver(dev, mem, queue_size=16, rx_blocks=16, tx_blocks=16)
    for i in range(4):
        drv.transmit(VirtioNetHdr(), bytes([i]) * 60)
    lay = drv.tx.layout
    base, size = (lay.desc, 16 * 16) if part == "desc" else (lay.avail, 6 + 2 * 16)
    for off, val in writes:
        mem[base + off % size] = val
    link.b.send_frame(VirtioNetHdr(), b"\0" * 60)
    dev.poll()
    dev.poll()
    assert dev.get_status() & F.DEVICE_NEEDS_RESET or dev.stats["ring_errors"] == 0
