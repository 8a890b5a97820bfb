"""TCP: handshakes and option negotiation, bulk transfer through loss/reordering/duplication,
close sequences (simultaneous ones included), RSTs and RFC 5961, timers (RTO, delayed ACK,
persist, keepalive, TIME-WAIT), Nagle, out-of-order delivery with SACK, sequence wrap."""
from __future__ import annotations

import errno
import random

import pytest

from net import icmp
from net.tcp import State
from net.tcp_segment import ACK, FIN, PSH, RST, SYN, syn_options
from net.tcp_timing import RtoEstimator, seq_diff, seq_le, seq_lt
from net.testbed import Network, RawPeer
from net.stack import Stack
from net.virtio import features as F

PLAIN = F.VIRTIO_F_VERSION_1 | F.VIRTIO_NET_F_MAC


def connect(net: Network, port: int = 80):
    lst = net.b.stack.tcp_socket()
    lst.bind("0.0.0.0", port)
    lst.listen()
    c = net.a.stack.tcp_socket()
    c.connect("10.0.0.2", port, net.now)
    assert net.run(lambda: c.state == State.ESTABLISHED and bool(lst.accept_queue), timeout=30)
    return c, lst.accept(), lst


def exchange(net: Network, a, b, da: bytes, db: bytes, timeout: float = 600.0, chunk: int = 65536):
    """Write da on a and db on b as fast as the buffers take it; read everything."""
    st = {"a": 0, "b": 0}
    ra, rb = bytearray(), bytearray()

    def pump() -> bool:
        if st["a"] < len(da):
            st["a"] += a.send(da[st["a"]:st["a"] + chunk], net.now)
        if st["b"] < len(db):
            st["b"] += b.send(db[st["b"]:st["b"] + chunk], net.now)
        while x := b.recv(1 << 20, net.now):
            rb.extend(x)
        while x := a.recv(1 << 20, net.now):
            ra.extend(x)
        return len(ra) == len(db) and len(rb) == len(da)

    assert net.run(pump, timeout=timeout), (len(ra), len(rb))
    return bytes(ra), bytes(rb)


# ---------------------------------------------------------------- handshake and options

def test_handshake_negotiates_options():
    net = Network()
    c, s, _ = connect(net)
    for sock in (c, s):
        i = sock.info()
        assert (i["mss"], i["snd_wscale"], i["rcv_wscale"], i["ts"], i["sack"]) == (1460, 3, 3, True, True)
    assert c.sockname[0] == "10.0.0.1" and c.peername == ("10.0.0.2", 80)
    assert s.peername == c.sockname


def test_options_off_on_one_side_are_off_on_both():
    net = Network()
    net.b.stack.tcp.configure(window_scaling=False, timestamps=False, sack=False)
    c, s, _ = connect(net)
    for sock in (c, s):
        i = sock.info()
        assert (i["snd_wscale"], i["rcv_wscale"], i["ts"], i["sack"]) == (0, 0, False, False)
    ra, rb = exchange(net, c, s, b"x" * 300000, b"y" * 5000)
    assert rb == b"x" * 300000 and ra == b"y" * 5000


def raw_world(options: bytes | None = None, **cfg):
    """A stack listening on port 80, and a raw peer that completed a handshake from 1234."""
    s = Stack("02:00:00:00:00:01", seed=4, arp_timeout=1e9)   # long tests: keep the peer
    s.set_address("10.0.0.1", 24, 0.0)
    if cfg:
        s.tcp.configure(**cfg)
    peer = RawPeer(s)
    peer.introduce(0.0)
    lst = s.tcp_socket()
    lst.bind("0.0.0.0", 80)
    lst.listen(8)
    opts = syn_options(1460, None, False, None) if options is None else options
    peer.send(peer.tcp(1234, 80, 1000, 0, SYN, options=opts), 0.0)
    (synack,) = peer.take()
    assert synack.tcp.flags == SYN | ACK and synack.tcp.ack == 1001
    iss = synack.tcp.seq
    peer.send(peer.tcp(1234, 80, 1001, iss + 1, ACK), 0.001)
    conn = lst.accept()
    assert conn.state == State.ESTABLISHED
    return s, peer, conn, lst, iss + 1, synack


def test_syn_ack_carries_only_offered_options():
    *_, synack = raw_world(syn_options(1200, 5, True, (77, 0)))
    seg = synack.tcp
    assert (seg.mss, seg.wscale, seg.sack_ok, seg.tsecr) == (1460, 3, True, 77)
    *_, synack = raw_world(b"")
    seg = synack.tcp
    assert (seg.mss, seg.wscale, seg.sack_ok, seg.tsval) == (1460, None, False, None)
    assert synack.tcp.wnd == 65535                              # never scaled in a SYN


def test_retransmitted_syn_gets_the_syn_ack_again():
    s = Stack("02:00:00:00:00:01", seed=4)
    s.set_address("10.0.0.1", 24, 0.0)
    peer = RawPeer(s)
    peer.introduce(0.0)
    lst = s.tcp_socket()
    lst.bind("0.0.0.0", 80)
    lst.listen()
    peer.send(peer.tcp(1234, 80, 1000, 0, SYN), 0.0)
    peer.send(peer.tcp(1234, 80, 1000, 0, SYN), 1.0)
    a, b = peer.take()
    assert a.tcp.flags == b.tcp.flags == SYN | ACK and a.tcp.seq == b.tcp.seq and b.tcp.ack == 1001
    assert len(lst.syn_children) == 1


def test_default_mss_536_without_option():
    s, peer, conn, *_ = raw_world(b"")
    assert conn.mss == 536
    conn.send(b"z" * 2000, 0.01)
    segs = [d.tcp for d in peer.take()]
    assert [len(t.payload) for t in segs] == [536, 536, 536]   # Nagle holds the small tail...
    peer.send(peer.tcp(1234, 80, 1001, segs[-1].seq + 536, ACK), 0.02)
    assert [len(d.tcp.payload) for d in peer.take()] == [392]  # ...until the data is acked


def test_active_syn_options_layout():
    s = Stack("02:00:00:00:00:01", seed=1)
    s.set_address("10.0.0.1", 24, 0.0)
    peer = RawPeer(s)
    peer.introduce(0.0)
    c = s.tcp_socket()
    c.connect("10.0.0.99", 443, 0.0)
    (syn,) = peer.take()
    raw = bytes(syn.payload[20:40])
    # MSS, SACK-permitted + timestamps, NOP + window scale: Linux's layout
    assert raw[:4] == b"\x02\x04\x05\xb4" and raw[4:6] == b"\x04\x02" and raw[6:8] == b"\x08\x0a"
    assert raw[16:20] == b"\x01\x03\x03\x03"
    assert syn.ip.frag & 0x4000                                  # DF


# ---------------------------------------------------------------- data transfer

def test_lossless_transfer_both_ways():
    net = Network(seed=2)
    c, s, _ = connect(net)
    rnd = random.Random(2)
    da, db = rnd.randbytes(400000), rnd.randbytes(300000)
    ra, rb = exchange(net, c, s, da, db)
    assert ra == db and rb == da
    assert net.a.stack.counters.events["tcp_retransmits"] == 0


@pytest.mark.parametrize("seed,wanted,segment", [(1, None, True), (2, None, True), (3, PLAIN, True),
                                                 (4, None, False)])
def test_one_mib_each_way_through_loss_reordering_duplication(seed, wanted, segment):
    kw = {"wanted_a": wanted, "wanted_b": wanted} if wanted else {}
    net = Network(seed=seed, loss=0.05, duplicate=0.02, reorder=0.05, segment=segment, **kw)
    c, s, _ = connect(net)
    rnd = random.Random(seed)
    da, db = rnd.randbytes(1 << 20), rnd.randbytes(1 << 20)
    ra, rb = exchange(net, c, s, da, db)
    assert ra == db and rb == da
    link = net.link.stats
    assert link["lost"] > (50 if segment else 10) and link["reordered"] > (50 if segment else 10)
    ev = net.a.stack.counters.events
    assert ev["tcp_retransmits"] > 0 and ev["tcp_ooo_segments"] > 0
    # everything closes cleanly afterwards, through the same impaired link
    c.close(net.now)
    assert net.run(lambda: s.readable, timeout=60)
    assert s.recv(10, net.now) == b""
    s.close(net.now)
    assert net.run(lambda: s.state == State.CLOSED and c.state == State.TIME_WAIT, timeout=120)


@pytest.mark.parametrize("seed", [1, 7, 8])   # each failed before one of the two fixes
def test_heavy_loss_both_ways_still_completes(seed):
    """20% loss each way: both sides time out and go back; neither may stall (pure ACKs carry
    snd_max) nor inflate SRTT from ACKs echoing pre-timeout timestamps."""
    net = Network(seed=seed, loss=0.2, duplicate=0.05, reorder=0.3, reorder_delay=0.01)
    lst = net.b.stack.tcp_socket()
    lst.bind("0.0.0.0", 80)
    lst.listen()
    c = net.a.stack.tcp_socket()
    c.connect("10.0.0.2", 80, net.now)
    assert net.run(lambda: c.state == State.ESTABLISHED and bool(lst.accept_queue), timeout=300)
    s = lst.accept()
    rnd = random.Random(seed)
    da, db = rnd.randbytes(300000), rnd.randbytes(300000)
    ra, rb = exchange(net, c, s, da, db, timeout=3000)
    assert ra == db and rb == da
    assert c.rto.srtt < 1 and s.rto.srtt < 1


def test_pure_acks_carry_snd_max_after_a_timeout():
    s, peer, conn, lst, snd_nxt, _ = raw_world()
    conn.send(b"x" * 4000, 1.0)
    assert len(peer.take()) == 2                              # (Nagle holds the tail)
    s.poll(1.0 + conn.rto.rto)                                # RTO: back to snd_una
    (again,) = peer.take()
    assert again.tcp.seq == snd_nxt and conn.snd_nxt == snd_nxt + 1460
    peer.send(peer.tcp(1234, 80, 1001, snd_nxt, ACK | PSH, data=b"hi"), 2.0)
    peer.send(peer.tcp(1234, 80, 1003, snd_nxt, ACK | PSH, data=b"ho"), 2.0)
    (ack,) = peer.take()
    assert ack.tcp.seq == conn.snd_max == snd_nxt + 2920 and ack.tcp.ack == 1005


def test_deterministic_given_a_seed():
    runs = []
    for _ in range(2):
        net = Network(seed=11, loss=0.05, duplicate=0.02, reorder=0.05)
        c, s, _ = connect(net)
        exchange(net, c, s, bytes(200000), bytes(100000))
        runs.append((net.steps, net.now, dict(net.link.stats), c.info()))
    assert runs[0] == runs[1]


def test_tso_cuts_stack_work():
    net = Network(seed=3)
    c, s, _ = connect(net)
    exchange(net, c, s, bytes(1 << 20), b"")
    out = net.a.stack.counters.events["tcp_segments_out"]
    assert out < (1 << 20) // 1448 // 4             # super-segments, cut by the device/link
    assert net.link.stats["sent"] > (1 << 20) // 1448


def test_sequence_numbers_wrap():
    net = Network(seed=8, loss=0.02, reorder=0.02)
    for host in (net.a, net.b):
        host.stack.tcp.configure(fixed_isn=0xFFFFFFFF - 100000)
    c, s, _ = connect(net)
    da = random.Random(1).randbytes(600000)
    ra, rb = exchange(net, c, s, da, da[::-1])
    assert rb == da and ra == da[::-1]
    assert seq_lt(0xFFFFFF00, c.snd_una) and c.snd_una < 0x80000000     # it did wrap


def test_sequence_arithmetic():
    assert seq_lt(0xFFFFFFF0, 5) and not seq_lt(5, 0xFFFFFFF0)
    assert seq_le(7, 7) and seq_diff(3, 0xFFFFFFFE) == 5 and seq_diff(0xFFFFFFFE, 3) == -5


# ---------------------------------------------------------------- closing

def trace(net: Network, socks, until, timeout=200.0):
    seen = [tuple(x.state for x in socks)]

    def step():
        cur = tuple(x.state for x in socks)
        if cur != seen[-1]:
            seen.append(cur)
        return until()

    assert net.run(step, timeout=timeout)
    return seen


def test_active_and_passive_close():
    net = Network()
    c, s, _ = connect(net)
    c.send(b"last words", net.now)
    c.close(net.now)
    assert c.state == State.FIN_WAIT_1
    got = bytearray()

    def eof():
        while x := s.recv(100, net.now):
            got.extend(x)
        return s.fin_received and c.state == State.FIN_WAIT_2

    seen = trace(net, (c, s), eof)
    assert got == b"last words" and s.recv(10, net.now) == b""
    assert seen[-1] == (State.FIN_WAIT_2, State.CLOSE_WAIT)
    with pytest.raises(OSError) as e:
        c.send(b"more", net.now)
    assert e.value.errno == errno.EPIPE
    s.send(b"reply after half close", net.now)
    s.close(net.now)
    assert s.state == State.LAST_ACK
    seen = trace(net, (c, s), lambda: s.state == State.CLOSED)
    assert c.state == State.TIME_WAIT
    t_wait = net.now
    assert net.run(lambda: c.state == State.CLOSED, timeout=200)
    assert 59.9 < net.now - t_wait < 60.1                  # 2 * MSL
    assert not net.a.stack.tcp.conns and not net.b.stack.tcp.conns


def test_half_close_keeps_receiving():
    net = Network()
    c, s, _ = connect(net)
    c.shutdown(1, net.now)                                 # SHUT_WR
    assert net.run(lambda: s.fin_received, timeout=5)
    ra, rb = exchange(net, c, s, b"", b"q" * 100000)
    assert ra == b"q" * 100000 and c.state == State.FIN_WAIT_2


def test_simultaneous_open():
    net = Network()
    a, b = net.a.stack.tcp_socket(), net.b.stack.tcp_socket()
    a.bind("0.0.0.0", 5001)
    b.bind("0.0.0.0", 5002)
    a.connect("10.0.0.2", 5002, net.now)
    b.connect("10.0.0.1", 5001, net.now)
    seen = trace(net, (a, b), lambda: a.state == b.state == State.ESTABLISHED, timeout=10)
    assert (State.SYN_RECEIVED, State.SYN_RECEIVED) in seen
    ra, rb = exchange(net, a, b, b"from a" * 1000, b"from b" * 1000)
    assert rb == b"from a" * 1000 and ra == b"from b" * 1000
    assert net.a.stack.counters.events["tcp_passive_opens"] == 0


def test_simultaneous_close():
    net = Network()
    c, s, _ = connect(net)
    c.close(net.now)
    s.close(net.now)
    seen = trace(net, (c, s), lambda: c.state == s.state == State.TIME_WAIT, timeout=10)
    assert (State.FIN_WAIT_1, State.FIN_WAIT_1) in seen
    assert (State.CLOSING, State.CLOSING) in seen
    assert net.run(lambda: c.state == s.state == State.CLOSED, timeout=100)


def test_time_wait_reacks_a_retransmitted_fin():
    s, peer, conn, lst, snd_nxt, _ = raw_world()
    conn.close(1.0)
    (fin,) = peer.take()
    assert fin.tcp.flags & FIN and conn.state == State.FIN_WAIT_1
    peer.send(peer.tcp(1234, 80, 1001, fin.tcp.seq + 1, ACK | FIN), 1.1)
    (ack,) = peer.take()
    assert conn.state == State.TIME_WAIT and ack.tcp.ack == 1002
    peer.send(peer.tcp(1234, 80, 1001, fin.tcp.seq + 1, ACK | FIN), 30.0)     # our ACK was lost
    (again,) = peer.take()
    assert again.tcp.ack == 1002 and again.tcp.flags == ACK
    s.poll(61.0)
    assert conn.state == State.TIME_WAIT                  # 2*MSL restarted at 30 s
    s.poll(90.0)
    assert conn.state == State.CLOSED


def test_time_wait_is_bounded_and_past_the_bound_a_connection_closes_with_its_ack():
    net = Network()
    net.a.stack.tcp.configure(max_time_wait=2)
    lst = net.b.stack.tcp_socket()
    lst.bind("0.0.0.0", 80)
    lst.listen()

    def closed_actively():
        c = net.a.stack.tcp_socket()
        c.connect("10.0.0.2", 80, net.now)
        assert net.run(lambda: c.state == State.ESTABLISHED and bool(lst.accept_queue), timeout=30)
        s = lst.accept()
        c.send(b"request", net.now)
        c.close(net.now)                                     # a closes first: a waits
        assert net.run(lambda: s.fin_received, timeout=5)
        assert s.recv(100, net.now) == b"request"
        s.close(net.now)
        assert net.run(lambda: s.state == State.CLOSED, timeout=5)  # b's FIN was ACKed
        return c

    first, second, third = closed_actively(), closed_actively(), closed_actively()
    assert (first.state, second.state, third.state) == (State.TIME_WAIT, State.TIME_WAIT, State.CLOSED)
    layer = net.a.stack.tcp
    assert layer.time_wait == 2 and net.a.stack.counters.events["tcp_time_wait_overflow"] == 1
    assert len(layer.conns) == 2 and net.b.stack.counters.events["tcp_retransmits"] == 0
    assert net.run(lambda: first.state == second.state == State.CLOSED, timeout=100)  # 2*MSL
    assert layer.time_wait == 0
    assert closed_actively().state == State.TIME_WAIT and layer.time_wait == 1


def test_a_newer_syn_ends_time_wait_and_opens_a_connection_past_the_old_one():
    s, peer, conn, lst, snd_nxt, _ = raw_world()
    conn.send(b"x" * 100, 0.5)
    (data,) = peer.take()
    conn.close(1.0)
    (fin,) = peer.take()
    peer.send(peer.tcp(1234, 80, 1001, fin.tcp.seq + 1, ACK | FIN), 1.1)
    peer.take()
    assert conn.state == State.TIME_WAIT and s.tcp.time_wait == 1
    peer.send(peer.tcp(1234, 80, 900, 0, SYN, options=syn_options(1460, None, False, None)), 2.0)
    (old,) = peer.take()                                  # an old duplicate: TIME-WAIT holds
    assert old.tcp.flags == ACK and conn.state == State.TIME_WAIT
    peer.send(peer.tcp(1234, 80, 5000, 0, SYN, options=syn_options(1460, None, False, None)), 2.5)
    (synack,) = peer.take()
    assert synack.tcp.flags == SYN | ACK and synack.tcp.ack == 5001
    assert synack.tcp.seq == (fin.tcp.seq + 1 + 65537) & 0xFFFFFFFF  # past all the old one sent
    assert conn.state == State.CLOSED and s.tcp.time_wait == 0
    assert s.counters.events["tcp_time_wait_reopened"] == 1
    peer.send(peer.tcp(1234, 80, 5001, synack.tcp.seq + 1, ACK, data=b"again"), 2.6)
    new = lst.accept()
    assert new is not None and new is not conn and new.recv(100, 2.7) == b"again"
    conn.close(2.8)
    assert conn not in s.tcp.timers                       # its stale heap entry names no one


def test_orphaned_fin_wait_2_times_out():
    s, peer, conn, *_ = raw_world()
    conn.close(1.0)
    (fin,) = peer.take()
    peer.send(peer.tcp(1234, 80, 1001, fin.tcp.seq + 1, ACK), 1.1)
    assert conn.state == State.FIN_WAIT_2
    s.poll(60.0)
    assert conn.state == State.FIN_WAIT_2
    s.poll(61.2)
    assert conn.state == State.CLOSED


# ---------------------------------------------------------------- resets

def test_connect_to_closed_port_is_refused():
    net = Network()
    c = net.a.stack.tcp_socket()
    c.connect("10.0.0.2", 9, net.now)
    assert net.run(lambda: c.state == State.CLOSED, timeout=5)
    assert c.error == errno.ECONNREFUSED and c.readable
    with pytest.raises(ConnectionRefusedError):
        c.recv(1, net.now)


def test_abort_resets_the_peer():
    net = Network()
    c, s, _ = connect(net)
    c.abort(net.now)
    assert c.state == State.CLOSED
    assert net.run(lambda: s.state == State.CLOSED, timeout=5)
    with pytest.raises(ConnectionResetError):
        s.recv(1, net.now)


def test_close_with_unread_data_sends_rst():
    net = Network()
    c, s, _ = connect(net)
    c.send(b"unread", net.now)
    assert net.run(lambda: s.readable, timeout=5)
    s.close(net.now)
    assert s.state == State.CLOSED
    assert net.run(lambda: c.state == State.CLOSED, timeout=5) and c.error == errno.ECONNRESET


def test_rst_exact_sequence_resets():
    s, peer, conn, *_ = raw_world()
    peer.send(peer.tcp(1234, 80, 1001, 0, RST), 1.0)
    assert conn.state == State.CLOSED and conn.error == errno.ECONNRESET


def test_rst_in_window_gets_challenge_ack():
    s, peer, conn, lst, snd_nxt, _ = raw_world()
    peer.send(peer.tcp(1234, 80, 1001 + 500, 0, RST), 1.0)
    (ch,) = peer.take()
    assert conn.state == State.ESTABLISHED
    assert ch.tcp.flags == ACK and ch.tcp.seq == snd_nxt and ch.tcp.ack == 1001
    peer.send(peer.tcp(1234, 80, 1001 + 10_000_000, 0, RST), 1.0)    # out of window: ignored
    assert peer.take() == [] and conn.state == State.ESTABLISHED
    assert s.counters.drops["tcp_out_of_window"] == 1


def test_syn_on_established_gets_challenge_ack():
    s, peer, conn, lst, snd_nxt, _ = raw_world()
    peer.send(peer.tcp(1234, 80, 5555, 0, SYN), 1.0)
    (ch,) = peer.take()
    assert ch.tcp.flags == ACK and ch.tcp.ack == 1001 and conn.state == State.ESTABLISHED
    assert s.counters.events["tcp_challenge_acks"] == 1


def test_challenge_acks_are_rate_limited():
    s, peer, conn, *_ = raw_world()
    for i in range(1100):
        peer.send(peer.tcp(1234, 80, 1001 + 1 + i % 1000, 0, RST), 5.5)
    assert len(peer.take()) == 1000 and conn.state == State.ESTABLISHED


def test_ack_of_unsent_data_is_dropped_with_an_ack():
    s, peer, conn, lst, snd_nxt, _ = raw_world()
    peer.send(peer.tcp(1234, 80, 1001, snd_nxt + 5000, ACK, data=b"bogus"), 1.0)
    (a,) = peer.take()
    assert a.tcp.ack == 1001 and conn.recv(10, 1.0) is None     # the data was not taken


def test_strays_get_rfc9293_resets():
    s, peer, *_ = raw_world()
    peer.send(peer.tcp(4000, 81, 500, 0, SYN, data=b"abc"), 1.0)
    peer.send(peer.tcp(4000, 81, 500, 777, ACK), 1.0)
    peer.send(peer.tcp(4000, 81, 500, 777, RST), 1.0)
    r1, r2 = peer.take()
    assert (r1.tcp.flags, r1.tcp.seq, r1.tcp.ack) == (RST | ACK, 0, 504)   # SYN + 3 bytes
    assert (r2.tcp.flags, r2.tcp.seq) == (RST, 777)
    assert s.counters.drops["tcp_no_socket"] == 3


def test_rst_to_syn_sent_needs_acceptable_ack():
    s = Stack("02:00:00:00:00:01", seed=1)
    s.set_address("10.0.0.1", 24, 0.0)
    peer = RawPeer(s)
    peer.introduce(0.0)
    c = s.tcp_socket()
    c.connect("10.0.0.99", 80, 0.0)
    (syn,) = peer.take()
    peer.send(peer.tcp(80, c.local[1], 0, syn.tcp.seq + 5, RST | ACK), 0.1)   # bad ACK: ignored
    assert c.state == State.SYN_SENT
    peer.send(peer.tcp(80, c.local[1], 0, syn.tcp.seq + 1, RST | ACK), 0.1)
    assert c.state == State.CLOSED and c.error == errno.ECONNREFUSED


def test_icmp_port_unreachable_fails_connect():
    s = Stack("02:00:00:00:00:01", seed=1)
    s.set_address("10.0.0.1", 24, 0.0)
    peer = RawPeer(s)
    peer.introduce(0.0)
    c = s.tcp_socket()
    c.connect("10.0.0.99", 80, 0.0)
    (syn,) = peer.take()
    peer.send(peer.ip(1, icmp.error(3, 3, syn.frame[14:])), 0.1)
    assert c.state == State.CLOSED and c.error == errno.ECONNREFUSED


def test_listen_backlog_overflow_drops_syns():
    s, peer, conn, lst, *_ = raw_world()
    lst.backlog = 2                                        # one accepted slot is free again
    for port in (2000, 2001, 2002):
        peer.send(peer.tcp(port, 80, 1, 0, SYN), 1.0)
    assert len(peer.take()) == 2 and s.counters.drops["tcp_listen_overflow"] == 1


# ---------------------------------------------------------------- timers

def test_syn_retransmission_backoff_then_timeout():
    s = Stack("02:00:00:00:00:01", seed=1, arp_timeout=1e9)
    s.set_address("10.0.0.1", 24, 0.0)
    peer = RawPeer(s)
    peer.introduce(0.0)
    c = s.tcp_socket()
    c.connect("10.0.0.99", 80, 0.0)
    times = [0.0] if peer.take() else []
    t = 0.0
    while c.state == State.SYN_SENT:
        t = s.next_deadline()
        s.poll(t)
        times += [t for d in peer.take() if d.tcp is not None]
    assert times == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0]   # RFC 6298: 1 s, doubling
    assert t == 127.0 and c.error == errno.ETIMEDOUT


def test_rto_estimator_rfc6298():
    r = RtoEstimator(min_rto=0.2)
    assert r.rto == 1.0
    r.sample(0.1)
    assert (r.srtt, r.rttvar) == (0.1, 0.05) and r.rto == pytest.approx(0.3)
    r.sample(0.3)
    assert r.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.2)
    assert r.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.3)
    assert r.rto == pytest.approx(r.srtt + 4 * r.rttvar)
    r.backoff()
    r.backoff()
    assert r.rto == pytest.approx(4 * (r.srtt + 4 * r.rttvar))
    for _ in range(20):
        r.backoff()
    assert r.rto == 120.0
    r.sample(0.001)
    assert r.rto >= 0.2


def test_karn_no_sample_from_a_retransmission():
    s, peer, conn, *_ = raw_world()                           # no timestamps negotiated
    srtt = conn.rto.srtt
    conn.send(b"x" * 100, 1.0)
    (d,) = peer.take()
    s.poll(1.0 + conn.rto.rto)                                # RTO: retransmitted
    (r,) = peer.take()
    assert r.tcp.seq == d.tcp.seq and s.counters.events["tcp_timeouts"] == 1
    peer.send(peer.tcp(1234, 80, 1001, d.tcp.seq + 100, ACK), 5.0)
    assert conn.rto.srtt == srtt                              # ambiguous: no sample


def test_delayed_ack_and_every_second_segment():
    s, peer, conn, lst, snd_nxt, _ = raw_world()
    peer.send(peer.tcp(1234, 80, 1001, snd_nxt, ACK | PSH, data=b"a" * 100), 1.0)
    assert peer.take() == [] and s.next_deadline() == pytest.approx(1.04)
    s.poll(1.04)
    (a,) = peer.take()
    assert a.tcp.ack == 1101
    peer.send(peer.tcp(1234, 80, 1101, snd_nxt, ACK, data=b"b" * 1460), 2.0)
    assert peer.take() == []
    peer.send(peer.tcp(1234, 80, 2561, snd_nxt, ACK, data=b"c" * 1460), 2.0)
    (a,) = peer.take()
    assert a.tcp.ack == 4021                                   # the second one: ACK at once


def test_out_of_order_queue_and_sack_blocks():
    opts = syn_options(1460, 7, True, (100, 0))
    s, peer, conn, lst, snd_nxt, synack = raw_world(opts)
    ts = synack.tcp.tsval

    def seg(seq, data):
        from net.tcp_segment import data_options
        return peer.tcp(1234, 80, seq, snd_nxt, ACK, data=data, options=data_options((200, ts), []))

    peer.send(seg(1001 + 2000, b"C" * 1000), 1.0)
    (d1,) = peer.take()
    assert d1.tcp.ack == 1001 and d1.tcp.sack == [(3001, 4001)]
    peer.send(seg(1001 + 4000, b"E" * 500), 1.0)
    (d2,) = peer.take()
    assert d2.tcp.sack == [(5001, 5501), (3001, 4001)]          # most recent first
    peer.send(seg(1001, b"A" * 2000), 1.0)                      # fills the first hole
    (d3,) = peer.take()
    assert d3.tcp.ack == 4001 and d3.tcp.sack == [(5001, 5501)]
    peer.send(seg(1001 + 3000, b"D" * 1000), 1.0)
    (d4,) = peer.take()
    assert d4.tcp.ack == 5501 and d4.tcp.sack == []
    assert conn.recv(10000, 1.0) == b"A" * 2000 + b"C" * 1000 + b"D" * 1000 + b"E" * 500


def test_zero_window_persist_and_reopen():
    net = Network(seed=5)
    c, s, _ = connect(net)
    s.rcvbuf_size = 20000
    data = bytes(range(256)) * 1000
    sent = 0

    def stuffed():
        nonlocal sent
        sent += c.send(data[sent:sent + 65536], net.now)
        return c.snd_wnd == 0 and c.snd_una == c.snd_max and sent > 40000

    assert net.run(stuffed, timeout=20)
    net.run(timeout=30)                                         # probes, nobody reads
    assert net.a.stack.counters.events["tcp_window_probes"] >= 3
    assert c.state == State.ESTABLISHED
    got = bytearray()

    def drain():
        nonlocal sent
        if sent < len(data):
            sent += c.send(data[sent:sent + 65536], net.now)
        while x := s.recv(4096, net.now):
            got.extend(x)
        return len(got) == len(data)

    assert net.run(drain, timeout=120) and got == data


def test_nagle_coalesces_and_nodelay_does_not():
    for nodelay, expect in ((False, 2), (True, 10)):
        net = Network()
        c, s, _ = connect(net)
        c.nodelay = nodelay
        before = net.a.stack.counters.events["tcp_segments_out"]
        for i in range(10):
            c.send(b"%02d" % i * 5, net.now)
        got = bytearray()

        def done():
            while x := s.recv(1000, net.now):
                got.extend(x)
            return len(got) == 100

        assert net.run(done, timeout=5)
        data_segs = net.a.stack.counters.events["tcp_segments_out"] - before
        assert data_segs == expect, nodelay


def test_keepalive_probes_then_times_out():
    s, peer, conn, *_ = raw_world()
    conn.set_keepalive(True, 1.0)
    s.poll(7201.0)
    (p,) = peer.take()
    assert p.tcp.seq == (conn.snd_una - 1) & 0xFFFFFFFF and not p.tcp.payload
    peer.send(peer.tcp(1234, 80, 1001, conn.snd_una, ACK), 7201.1)     # alive: timer resets
    s.poll(7202.0)
    assert peer.take() == []
    t = 7201.1 + 7200
    for _ in range(9):
        s.poll(t)
        assert len(peer.take()) == 1
        t += 75
    s.poll(t)
    assert conn.state == State.CLOSED and conn.error == errno.ETIMEDOUT


def test_retransmission_gives_up_after_retries():
    s, peer, conn, *_ = raw_world()
    s.tcp.configure(retries=3)
    conn.cfg = s.tcp.cfg
    conn.send(b"hello?", 1.0)
    while conn.state != State.CLOSED:
        s.poll(s.next_deadline())
    assert conn.error == errno.ETIMEDOUT
    assert s.counters.events["tcp_timeouts"] == 3
