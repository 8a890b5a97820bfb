"""stats(): one plain dict of counters, drops by reason and by class, TCP connections and the
DHCP lease; render() turns it into the small table the CLI prints."""
from __future__ import annotations

from net import icmp
from net.stats import classify, render
from net.testbed import Network, RawPeer
from net.stack import Stack


def test_drop_classes() -> None:
    assert classify("udp_bad_checksum") == "checksum"
    assert classify("ip_truncated") == classify("frag_overlap") == "malformed"
    assert classify("tcp_no_socket") == classify("udp_no_socket") == "no_listener"
    assert classify("eth_not_for_us") == "not_for_us"
    assert classify("ip_martian_source") == "policy"
    assert classify("udp_rcvbuf_full") == "resources"
    assert classify("something_new") == "other"


def test_stats_dict_and_table() -> None:
    s = Stack("02:00:00:00:00:01", seed=1, name="eth0")
    s.set_address("10.0.0.1", 24, 0.0)
    s.set_gateway("10.0.0.254")
    peer = RawPeer(s)
    peer.introduce(0.0)
    peer.send(peer.udp(1, 9, b"nobody"), 0.0)              # no listener
    bad = bytearray(peer.ip(1, icmp.echo_request(1, 1, b"x")))
    bad[-1] ^= 1
    peer.send(bytes(bad), 0.0)                              # checksum
    peer.send(b"\0" * 10, 0.0)                              # malformed
    st = s.stats()
    assert st["interface"] == {"name": "eth0", "mac": "02:00:00:00:00:01", "mtu": 1500,
                               "address": "10.0.0.1/24", "gateway": "10.0.0.254", "dns": []}
    assert st["drop_classes"]["no_listener"] == 1 and st["drop_classes"]["checksum"] == 1
    assert st["drop_classes"]["malformed"] == 1
    assert sum(st["drop_classes"].values()) == sum(st["drops"].values()) == s.counters.total_drops
    p = st["packets"]
    assert p["rx_packets"] == p["rx_accepted"] + s.counters.total_drops == 4
    text = render(st)
    for word in ("eth0", "10.0.0.1/24", "udp_no_socket", "icmp_bad_checksum", "eth_truncated", "checksum"):
        assert word in text


def test_connections_and_retransmits_are_listed() -> None:
    net = Network(seed=2, loss=0.05)
    a, b = net.a.stack, net.b.stack
    lst = b.tcp_socket()
    lst.bind("0.0.0.0", 80)
    lst.listen()
    c = a.tcp_socket()
    c.connect("10.0.0.2", 80, net.now)
    data = bytes(200_000)
    sent = [0]

    def pump() -> bool:
        if sent[0] < len(data):
            sent[0] += c.send(data[sent[0]:], net.now)
        srv = lst.accept_queue[0] if lst.accept_queue else None
        return srv is not None and len(srv.rcvbuf) == len(data)
    assert net.run(pump, timeout=60)
    st = a.stats()
    (conn,) = st["tcp"]["connections"]
    assert conn["remote"] == "10.0.0.2:80" and conn["state"] == "ESTABLISHED"
    assert st["tcp"]["retransmits"] > 0 and st["tcp"]["active_opens"] == 1
    assert b.stats()["tcp"]["listeners"] == ["0.0.0.0:80"]
    table = render(st)
    assert "10.0.0.2:80" in table and "ESTABLISHED" in table
