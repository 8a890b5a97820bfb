"""Ethernet filtering and ARP: replies, gratuitous ARP, RFC 826 merge rules, resolution
queues with retries and give-up, cache expiry."""
from __future__ import annotations

import errno

from net import arp
from net.arp import ARP_REPLY, ARP_REQUEST, ArpCache
from net.ipv4 import aton
from net.stack import Stack
from net.testbed import RawPeer

MAC = "02:00:00:00:00:01"


def make(now: float = 0.0) -> Stack:
    s = Stack(MAC, seed=1)
    s.set_address("10.0.0.1", 24, now)
    s.take_output()
    return s


def test_gratuitous_arp_on_address_assignment():
    s = Stack(MAC)
    s.set_address("192.168.7.3", 24, 0.0)
    (hdr, frame), = s.take_output()
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == s.mac and frame[12:14] == b"\x08\x06"
    p = arp.parse(memoryview(frame)[14:])
    assert p.op == ARP_REQUEST and p.spa == p.tpa == aton("192.168.7.3") and p.tha == b"\0" * 6
    assert p.sha == s.mac


def test_request_for_us_gets_reply_and_creates_entry():
    s = make()
    peer = RawPeer(s)
    peer.send(peer.arp(ARP_REQUEST, s.addr), 0.0)
    (d,) = peer.take()
    assert d.dst_mac == peer.mac and d.arp.op == ARP_REPLY
    assert (d.arp.sha, d.arp.spa, d.arp.tha, d.arp.tpa) == (s.mac, s.addr, peer.mac, peer.addr)
    assert s.arp.lookup(peer.addr, 1.0) == peer.mac
    assert s.counters.rx_accepted == 1


def test_merge_rules():
    s = make()
    peer = RawPeer(s)
    # a request for someone else: answered by nobody, and no entry created (RFC 826)
    peer.send(peer.arp(ARP_REQUEST, aton("10.0.0.50")), 0.0)
    assert peer.take() == [] and s.arp.lookup(peer.addr, 0.0) is None
    # once known, any ARP from it refreshes the entry (a new MAC included)
    peer.send(peer.arp(ARP_REQUEST, s.addr), 0.0)
    peer.take()
    moved = RawPeer(s, mac="02:00:00:00:00:77", addr="10.0.0.99")
    moved.send(moved.arp(ARP_REQUEST, aton("10.0.0.50")), 1.0)
    assert s.arp.lookup(peer.addr, 1.0) == moved.mac


def test_ethernet_filter_and_bogus_senders():
    s = make()
    peer = RawPeer(s)
    other = peer.arp(ARP_REQUEST, s.addr, dst=bytes.fromhex("020000000042"))
    peer.send(other, 0.0)
    bad_src = bytearray(peer.arp(ARP_REQUEST, s.addr))
    bad_src[6] |= 1                                       # multicast source MAC
    peer.send(bytes(bad_src), 0.0)
    peer.send(b"\x01" * 10, 0.0)
    peer.send(peer.eth(0x86DD, b"\0" * 40), 0.0)
    peer.send(peer.eth(0x1234, b"\0" * 40), 0.0)
    peer.send(peer.arp(ARP_REQUEST, s.addr, spa=0xFFFFFFFF), 0.0)
    peer.send(peer.eth(0x0806, arp.build(ARP_REQUEST, peer.mac, peer.addr, b"\0" * 6, s.addr)[:20]), 0.0)
    assert dict(s.counters.drops) == {"eth_not_for_us": 1, "eth_bad_source": 1, "eth_truncated": 1,
                                      "eth_ipv6": 1, "eth_unknown_type": 1, "arp_bogus_sender": 1,
                                      "arp_truncated": 1}
    assert s.counters.rx_packets == s.counters.rx_accepted + s.counters.total_drops
    assert peer.take() == []


def test_address_conflict_is_detected():
    s = make()
    thief = RawPeer(s, mac="02:00:00:00:00:66", addr="10.0.0.1")
    thief.send(thief.arp(ARP_REQUEST, aton("10.0.0.1")), 0.0)
    assert s.counters.events["arp_address_conflict"] == 1


def test_resolution_queue_release_and_order():
    s = make()
    peer = RawPeer(s)
    u = s.udp_socket()
    for i in range(3):
        u.sendto(b"m%d" % i, ("10.0.0.99", 7), 0.0)
    (req,) = peer.take()                                   # one request, the packets wait
    assert req.arp.op == ARP_REQUEST and req.arp.tpa == peer.addr and req.dst_mac == b"\xff" * 6
    peer.send(peer.arp(ARP_REPLY, s.addr, tha=s.mac, dst=s.mac), 0.1)
    out = peer.take()
    assert [bytes(d.udp[2]) for d in out] == [b"m0", b"m1", b"m2"]
    assert all(d.dst_mac == peer.mac for d in out)


def test_resolution_retries_then_gives_up_with_host_unreachable():
    s = make()
    u = s.udp_socket()
    u.connect("10.0.0.77", 9)
    u.send(b"x", 0.0)
    requests = [d for d in RawPeer(s).take() if d.arp]
    t = 0.0
    while (dl := s.next_deadline()) is not None:
        t = dl
        s.poll(t)
        requests += [d for d in RawPeer(s).take() if d.arp]
    assert len(requests) == 3 and t == 3.0                 # at 0, 1, 2; abandoned at 3
    assert s.counters.tx_drops["arp_unresolved"] == 1
    assert u.take_error() == errno.EHOSTUNREACH


def test_queue_limit_drops_oldest():
    s = make()
    s.arp.queue_limit = 16 * 29                          # bytes: sixteen 29-byte datagrams
    u = s.udp_socket()
    for i in range(20):
        u.sendto(bytes([i]), ("10.0.0.99", 7), 0.0)
    assert s.counters.tx_drops["arp_queue_full"] == 4
    peer = RawPeer(s)
    peer.take()
    peer.send(peer.arp(ARP_REPLY, s.addr, tha=s.mac, dst=s.mac), 0.1)
    assert [bytes(d.udp[2])[0] for d in peer.take()] == list(range(4, 20))


def test_cache_expiry_forces_new_request():
    s = make()
    peer = RawPeer(s)
    peer.introduce(0.0)
    u = s.udp_socket()
    u.sendto(b"a", ("10.0.0.99", 7), 59.0)
    assert [d.udp is not None for d in peer.take()] == [True]
    u.sendto(b"b", ("10.0.0.99", 7), 61.0)
    (d,) = peer.take()
    assert d.arp is not None and d.arp.op == ARP_REQUEST


def test_arp_cache_unit():
    c: ArpCache[str] = ArpCache(timeout=10, retry_interval=1, max_tries=2, queue_limit=2, max_entries=2)
    assert ArpCache(queue_limit=2).enqueue(9, "huge", 0.0, size=3) == (True, ["huge"])
    assert c.enqueue(1, "p1", 0.0) == (True, [])   # sizes default to 1: a limit of 2 items
    assert c.enqueue(1, "p2", 0.0) == (False, [])
    assert c.enqueue(1, "p3", 0.0) == (False, ["p1"])
    assert c.next_deadline() == 1.0
    assert c.poll(1.0) == ([1], [])
    assert c.poll(2.0) == ([], [(1, ["p2", "p3"])])
    assert c.learn(5, b"m5", 0.0, create=False) == [] and c.lookup(5, 0.0) is None
    c.learn(5, b"m5", 0.0, create=True)
    c.learn(6, b"m6", 0.0, create=True)
    c.learn(7, b"m7", 0.0, create=True)                   # evicts the oldest
    assert c.lookup(5, 0.0) is None and c.lookup(7, 9.9) == b"m7" and c.lookup(7, 10.0) is None
    assert arp.parse(b"\0" * 27) == "arp_truncated"
    assert arp.parse(arp.build(3, b"a" * 6, 1, b"b" * 6, 2)) == "arp_bad_op"
    assert arp.parse(b"\0\6" + arp.build(1, b"a" * 6, 1, b"b" * 6, 2)[2:]) == "arp_unsupported"
