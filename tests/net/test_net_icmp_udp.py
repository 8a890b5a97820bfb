"""ICMP echo and errors, UDP sockets: binding, delivery, checksums, errors, end to end."""
from __future__ import annotations

import errno

import pytest

from net import icmp, udp
from net.checksum import valid
from net.ipv4 import aton
from net.stack import Stack
from net.testbed import Network, RawPeer


def make():
    s = Stack("02:00:00:00:00:01", seed=3)
    s.set_address("10.0.0.1", 24, 0.0)
    peer = RawPeer(s)
    peer.introduce(0.0)
    return s, peer


def test_echo_reply():
    s, peer = make()
    req = icmp.echo_request(0x1234, 7, b"ping payload" * 10)
    peer.send(peer.ip(1, req), 0.0)
    (d,) = peer.take()
    assert d.ip.src == s.addr and d.ip.dst == peer.addr and d.dst_mac == peer.mac
    assert (d.icmp.type, d.icmp.code, d.icmp.rest) == (icmp.ECHO_REPLY, 0, 0x1234 << 16 | 7)
    assert bytes(d.icmp.body) == b"ping payload" * 10 and valid(d.payload)
    assert s.counters.events["icmp_echo_replied"] == 1


def test_echo_ignored_for_broadcast_and_bad_checksum():
    s, peer = make()
    req = icmp.echo_request(1, 1, b"x")
    peer.send(peer.ip(1, req, dst=aton("10.0.0.255")), 0.0)
    peer.send(peer.ip(1, req[:2] + b"\0\0" + req[4:]), 0.0)
    peer.send(peer.ip(1, b"\x08\0"), 0.0)
    assert peer.take() == []
    assert s.counters.drops == {"icmp_broadcast_echo": 1, "icmp_bad_checksum": 1, "icmp_truncated": 1}


def test_port_unreachable_quotes_datagram():
    s, peer = make()
    peer.send(peer.udp(4444, 9999, b"knock knock"), 0.0)
    (d,) = peer.take()
    assert (d.icmp.type, d.icmp.code) == (icmp.DEST_UNREACH, icmp.PORT_UNREACH)
    q = icmp.parse_quote(d.icmp.body)
    assert (q.src, q.dst, q.proto, q.sport, q.dport) == (peer.addr, s.addr, 17, 4444, 9999)
    assert bytes(d.icmp.body).endswith(b"knock knock")
    # never for a broadcast, never about an ICMP error
    peer.send(peer.udp(4444, 9999, b"x", dst=aton("255.255.255.255")), 0.0)
    peer.send(peer.ip(1, icmp.error(3, 3, bytes(d.payload))), 0.0)
    assert peer.take() == []


def test_icmp_error_rate_limit():
    s, peer = make()
    for _ in range(80):
        peer.send(peer.udp(1, 9, b"x"), 0.0)
    assert len(peer.take()) == 50 and s.counters.events["icmp_rate_limited"] == 30
    for _ in range(10):
        peer.send(peer.udp(1, 9, b"x"), 0.005)           # 1000/s refills five tokens
    assert len(peer.take()) == 5


def test_bind_rules():
    s, _ = make()
    a = s.udp_socket()
    a.bind("0.0.0.0", 53)
    with pytest.raises(OSError) as e:
        s.udp_socket().bind("10.0.0.1", 53)
    assert e.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as e:
        s.udp_socket().bind("10.0.0.2", 54)
    assert e.value.errno == errno.EADDRNOTAVAIL
    b = s.udp_socket()
    b.bind("10.0.0.1", 0)
    assert 32768 <= b.local[1] <= 60999
    a.close()
    s.udp_socket().bind("10.0.0.1", 53)                  # freed on close


def test_delivery_checksum_and_connected_filter():
    s, peer = make()
    u = s.udp_socket()
    u.bind("0.0.0.0", 7000)
    peer.send(peer.udp(1111, 7000, b"one"), 0.0)
    good = peer.udp(1111, 7000, b"two")
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    peer.send(bytes(bad), 0.0)
    nocsum = bytearray(good)
    nocsum[40:42] = b"\0\0"                               # 0 = sender computed no checksum
    peer.send(bytes(nocsum), 0.0)
    assert u.recvfrom() == (b"one", ("10.0.0.99", 1111))
    assert u.recvfrom() == (b"two", ("10.0.0.99", 1111))
    assert u.recvfrom() is None
    assert s.counters.drops["udp_bad_checksum"] == 1
    u.connect("10.0.0.99", 2222)
    peer.send(peer.udp(1111, 7000, b"stranger"), 0.0)
    peer.send(peer.udp(2222, 7000, b"friend"), 0.0)
    assert u.recvfrom() == (b"friend", ("10.0.0.99", 2222)) and u.recvfrom() is None


def test_malformed_udp():
    s, peer = make()
    peer.send(peer.ip(17, b"\0\1\0\2"), 0.0)
    seg = bytearray(udp.build(peer.addr, s.addr, 1, 2, b"abcd"))
    seg[4:6] = (100).to_bytes(2, "big")
    peer.send(peer.ip(17, bytes(seg)), 0.0)
    seg[4:6] = (3).to_bytes(2, "big")
    peer.send(peer.ip(17, bytes(seg)), 0.0)
    assert s.counters.drops == {"udp_truncated": 1, "udp_bad_length": 2}


def test_send_errors_and_outgoing_format():
    s, peer = make()
    u = s.udp_socket()
    with pytest.raises(OSError) as e:
        u.send(b"x", 0.0)
    assert e.value.errno == errno.EDESTADDRREQ
    with pytest.raises(OSError) as e:
        u.sendto(b"x" * 70000, ("10.0.0.99", 1), 0.0)
    assert e.value.errno == errno.EMSGSIZE
    with pytest.raises(OSError) as e:
        u.sendto(b"x", ("10.0.0.255", 1), 0.0)
    assert e.value.errno == errno.EACCES
    u.broadcast = True
    u.sendto(b"hi all", ("10.0.0.255", 1), 0.0)
    u.sendto(b"hi", ("10.0.0.99", 1), 0.0)
    bc, uni = peer.take()
    assert bc.dst_mac == b"\xff" * 6 and bytes(bc.udp[2]) == b"hi all"
    assert uni.udp[:2] == (u.local[1], 1) and bytes(uni.udp[2]) == b"hi"
    assert uni.ip.frag & 0x4000 == 0                      # UDP leaves DF clear


def test_icmp_error_reaches_connected_socket_only():
    s, peer = make()
    u = s.udp_socket()
    u.connect("10.0.0.99", 53)
    u.send(b"query", 0.0)
    (d,) = peer.take()
    err = icmp.error(icmp.DEST_UNREACH, icmp.PORT_UNREACH, bytes(d.frame[14:]))
    peer.send(peer.ip(1, err), 0.0)
    assert u.readable and u.take_error() == errno.ECONNREFUSED
    v = s.udp_socket()
    v.sendto(b"q", ("10.0.0.99", 53), 0.0)
    (d,) = peer.take()
    peer.send(peer.ip(1, icmp.error(3, 3, bytes(d.frame[14:]))), 0.0)
    assert v.error == 0


def test_icmp_error_about_an_unconnected_socket_goes_to_its_hook():
    """A relay's socket carries datagrams to many peers: it hears of each error, with the peer."""
    s, peer = make()
    heard = []
    v = s.udp_socket()
    v.on_icmp = lambda q, type_, code: heard.append((q.dst, q.dport, type_, code))
    v.sendto(b"q", ("10.0.0.99", 53), 0.0)
    (d,) = peer.take()
    peer.send(peer.ip(1, icmp.error(icmp.DEST_UNREACH, icmp.PORT_UNREACH, bytes(d.frame[14:]))), 0.0)
    assert heard == [(aton("10.0.0.99"), 53, icmp.DEST_UNREACH, icmp.PORT_UNREACH)]
    assert v.error == 0  # the socket itself keeps Linux's rule


def test_rcvbuf_limit():
    s, peer = make()
    u = s.udp_socket(); u.rcvbuf = 1000
    u.bind("0.0.0.0", 9)
    for _ in range(3):
        peer.send(peer.udp(1, 9, b"x" * 400), 0.0)
    assert s.counters.drops["udp_rcvbuf_full"] == 1


def test_end_to_end_fragmented_datagrams_over_virtio():
    net = Network(seed=5)
    a, b = net.a.stack.udp_socket(), net.b.stack.udp_socket()
    b.bind("0.0.0.0", 4000)
    sizes = [1, 1472, 1473, 9000, 65507]
    for n in sizes:
        a.sendto(bytes([n % 251]) * n, ("10.0.0.2", 4000), net.now)
    got = []

    def done():
        while (r := b.recvfrom()) is not None:
            got.append(r[0])
        return len(got) == len(sizes)

    assert net.run(done, timeout=5)
    assert got == [bytes([n % 251]) * n for n in sizes]
    assert net.b.stack.counters.events["ip_reassembled"] == 3


def test_ping_socket_over_virtio():
    net = Network(seed=6)
    p = net.a.stack.ping_socket(ident=77)
    for i in range(3):
        p.send("10.0.0.2", i, b"data%d" % i, net.now)
    got = []

    def done():
        while (r := p.recv()) is not None:
            got.append(r)
        return len(got) == 3

    assert net.run(done, timeout=5)
    assert got == [("10.0.0.2", i, b"data%d" % i) for i in range(3)]
