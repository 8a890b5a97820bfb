"""IPv4: header validation, building, routing, fragmentation and hardened reassembly."""
from __future__ import annotations

import random
import struct

import pytest

from net import icmp, ipv4
from net.checksum import checksum
from net.ipv4 import IP_MF, Ipv4Header, Reassembler, aton, build_header, fragment, ntoa, parse
from net.route import RoutingTable
from net.stack import Stack
from net.testbed import RawPeer


def hdr_bytes(**kw) -> bytearray:
    f = dict(vihl=0x45, tos=0, total=28, ident=1, frag=0, ttl=64, proto=17, csum=0,
             src=aton("10.0.0.9"), dst=aton("10.0.0.1"))
    f.update(kw)
    b = bytearray(struct.pack("!BBHHHBBHII", *f.values()))
    if "csum" not in kw:
        b[10:12] = checksum(b[:(f["vihl"] & 15) * 4] if (f["vihl"] & 15) * 4 <= 20 else b).to_bytes(2, "big")
    return b


def test_build_header_checksum_and_fields():
    h = build_header(aton("1.2.3.4"), aton("5.6.7.8"), 6, 100, 0xBEEF, ttl=17, tos=0x10)
    assert len(h) == 20 and checksum(h[:10] + b"\0\0" + h[10 + 2:]) == int.from_bytes(h[10:12], "big")
    r = parse(memoryview(h + b"x" * 100))
    assert r[0] == Ipv4Header(20, 0x10, 120, 0xBEEF, ipv4.IP_DF, 17, 6, aton("1.2.3.4"), aton("5.6.7.8"))


@pytest.mark.parametrize("mutate,reason", [
    (lambda b: b[:19], "ip_truncated"),
    (lambda b: b"\x65" + b[1:], "ip_bad_version"),
    (lambda b: b"\x44" + b[1:], "ip_bad_ihl"),
    (lambda b: b"\x4f" + b[1:], "ip_truncated"),
    (lambda b: b[:2] + (19).to_bytes(2, "big") + b[4:], "ip_bad_length"),
    (lambda b: b[:2] + (29).to_bytes(2, "big") + b[4:], "ip_bad_length"),
    (lambda b: b[:10] + b"\x12\x34" + b[12:], "ip_bad_checksum"),
])
def test_parse_rejects(mutate, reason):
    good = bytes(hdr_bytes()) + b"\0" * 8
    assert not isinstance(parse(memoryview(good)), str)
    bad = mutate(good)
    if reason in ("ip_bad_length",):
        b = bytearray(bad)
        b[10:12] = b"\0\0"
        b[10:12] = checksum(b[:20]).to_bytes(2, "big")
        bad = bytes(b)
    assert parse(memoryview(bad)) == reason


def test_padding_is_trimmed():
    h, payload = parse(memoryview(bytes(hdr_bytes()) + b"12345678" + b"\0" * 18))
    assert bytes(payload) == b"12345678"


def test_addresses():
    assert aton("10.1.2.3") == 0x0A010203 and ntoa(0x0A010203) == "10.1.2.3"
    assert ipv4.is_multicast(aton("224.0.0.1")) and ipv4.is_loopback(aton("127.9.9.9"))


def test_routing_longest_prefix_and_metric():
    rt = RoutingTable()
    rt.add(aton("10.0.0.0"), 8, aton("10.0.0.254"))
    rt.add(aton("10.1.0.0"), 16)
    rt.add(aton("10.1.2.0"), 24, aton("10.1.0.1"), metric=5)
    rt.add(aton("10.1.2.0"), 24, aton("10.1.0.2"), metric=1)
    rt.set_default(aton("192.168.0.1"))
    assert rt.lookup(aton("10.1.2.3")).gateway == aton("10.1.0.2")
    assert rt.lookup(aton("10.1.9.9")).gateway == 0
    assert rt.lookup(aton("10.7.7.7")).gateway == aton("10.0.0.254")
    assert rt.lookup(aton("8.8.8.8")).gateway == aton("192.168.0.1")
    rt.remove(aton("0.0.0.0"), 0)
    assert rt.lookup(aton("8.8.8.8")) is None
    with pytest.raises(ValueError):
        rt.add(0, 33)


def test_off_link_goes_to_gateway_and_no_route_errors():
    s = Stack("02:00:00:00:00:01")
    s.set_address("10.0.0.1", 24, 0.0)
    s.take_output()
    u = s.udp_socket()
    with pytest.raises(OSError):
        u.sendto(b"x", ("8.8.8.8", 53), 0.0)             # no default route: ENETUNREACH
    s.set_gateway("10.0.0.254")
    u.sendto(b"x", ("8.8.8.8", 53), 0.0)
    (d,) = RawPeer(s).take()
    assert d.arp.tpa == aton("10.0.0.254")                # we resolve the gateway, not 8.8.8.8


def frags_of(payload: bytes, mtu: int = 576, ident: int = 7):
    out = []
    for pkt in fragment(aton("10.0.0.9"), aton("10.0.0.1"), 17, payload, ident, mtu):
        r = parse(memoryview(pkt))
        assert not isinstance(r, str)
        out.append(r)
    return out


def test_fragment_layout():
    frags = frags_of(bytes(2000), mtu=576)
    assert [len(p) for _, p in frags] == [552, 552, 552, 344]
    assert [h.offset for h, _ in frags] == [0, 552, 1104, 1656]
    assert [h.more_fragments for h, _ in frags] == [True, True, True, False]
    assert all(h.total_len <= 576 for h, _ in frags)


@pytest.mark.parametrize("seed", range(5))
def test_reassembly_any_order(seed):
    data = random.Random(seed).randbytes(5000)
    frags = frags_of(data)
    random.Random(seed).shuffle(frags)
    r = Reassembler()
    results = [r.add(h, p, 0.0) for h, p in frags]
    assert all(x == (None, None) for x in results[:-1])
    (h, got), why = results[-1]
    assert why is None and got == data and h.frag == 0 and h.total_len == 20 + len(data)
    assert len(r) == 0


def test_reassembly_duplicate_overlap_and_limits():
    data = bytes(range(256)) * 8
    frags = frags_of(data)
    r = Reassembler()
    assert r.add(*frags[0], 0.0) == (None, None)
    assert r.add(*frags[0], 0.0) == (None, "frag_duplicate")    # exact duplicate: just dropped
    h, p = frags[1]
    assert r.add(h._replace(frag=h.frag - 1), p, 0.0) == (None, "frag_overlap")   # 8 bytes back
    assert len(r) == 0                                           # the whole datagram went
    # a different last fragment end than before: inconsistent, dropped
    r = Reassembler()
    last_h, last_p = frags[-1]
    r.add(last_h, last_p, 0.0)
    assert r.add(last_h._replace(frag=last_h.frag + 1), last_p, 0.0) == (None, "frag_overlap")
    # non-final fragments must be multiples of 8; size limit 65535
    h0, p0 = frags[0]
    assert r.add(h0, p0[:13], 0.0) == (None, "frag_bad_length")
    assert r.add(h0._replace(frag=IP_MF | 8189), p0[:16], 0.0) == (None, "frag_too_big")
    assert r.add(h0, p0[:0], 0.0) == (None, "frag_empty")
    # per-datagram fragment cap
    r = Reassembler(max_fragments=3)
    small = frags_of(bytes(100), mtu=28)
    for h, p in small[:3]:
        r.add(h, p, 0.0)
    assert r.add(*small[3], 0.0) == (None, "frag_too_many") and len(r) == 0
    # concurrent datagram cap evicts the oldest
    r = Reassembler(max_datagrams=2)
    for ident in (1, 2, 3):
        r.add(*frags_of(data, ident=ident)[0], 0.0)
    assert len(r) == 2


def test_reassembly_timeout_sends_time_exceeded():
    s = Stack("02:00:00:00:00:01")
    s.set_address("10.0.0.1", 24, 0.0)
    peer = RawPeer(s, addr="10.0.0.9")
    peer.introduce(0.0)
    frags = fragment(peer.addr, s.addr, 17, bytes(3000), 55, 1500)
    peer.send(peer.eth(0x0800, frags[0]), 0.0)
    peer.send(peer.eth(0x0800, frags[-1]), 0.0)
    assert s.next_deadline() == 30.0
    s.poll(30.0)
    (d,) = peer.take()
    assert (d.icmp.type, d.icmp.code) == (icmp.TIME_EXCEEDED, icmp.REASSEMBLY_EXCEEDED)
    q = icmp.parse_quote(d.icmp.body)
    assert (q.src, q.dst, q.proto) == (peer.addr, s.addr, 17)
    assert s.counters.events["frag_timeouts"] == 1


def test_stack_ip_drops():
    s = Stack("02:00:00:00:00:01")
    s.set_address("10.0.0.1", 24, 0.0)
    peer = RawPeer(s)
    peer.introduce(0.0)
    peer.send(peer.udp(1, 2, b"x", dst=aton("10.0.0.5")), 0.0)        # forwarding is off
    peer.send(peer.udp(1, 2, b"x", src=aton("224.0.0.5")), 0.0)       # martian source
    peer.send(peer.udp(1, 2, b"x", src=aton("127.0.0.1")), 0.0)
    peer.send(peer.ip(99, b"hello"), 0.0)                              # unknown protocol
    peer.send(peer.udp(1, 2, b"x", ttl=0), 0.0)                        # TTL 0 to us: fine
    drops = s.counters.drops
    assert drops["ip_not_for_us"] == 1 and drops["ip_martian_source"] == 2
    assert drops["ip_unknown_protocol"] == 1 and drops["udp_no_socket"] == 1
    out = peer.take()
    assert [(d.icmp.type, d.icmp.code) for d in out] == [(3, 2), (3, 3)]


def test_loopback_delivery():
    s = Stack("02:00:00:00:00:01")
    s.set_address("10.0.0.1", 24, 0.0)
    s.take_output()
    a, b = s.udp_socket(), s.udp_socket()
    a.bind("127.0.0.1", 5000)
    b.sendto(b"to lo", ("127.0.0.1", 5000), 0.0)
    c = s.udp_socket()
    c.bind("10.0.0.1", 5001)
    b.sendto(b"to me", ("10.0.0.1", 5001), 0.0)
    assert s.next_deadline() == 0.0 and s.take_output() == []
    s.poll(0.0)
    assert a.recvfrom()[0] == b"to lo" and c.recvfrom()[0] == b"to me"
