"""The DHCP client: message codec, the RFC 2131 state machine on a scripted server and a
fixed clock (lost OFFER, NAK, renewal, rebinding, expiry), and a stack configured by DHCP
over a simulated link."""
from __future__ import annotations

import math

from hypothesis import given, settings, strategies as st

from net import dhcp_msg as M
from net.dhcp import DhcpClient, LeaseAcquired, LeaseLost, LeaseRenewed, Send, State
from net.ipv4 import LIMITED_BROADCAST, aton
from net.testbed import Network

MAC = bytes.fromhex("020000000001")
SERVER = aton("10.0.0.1")
OFFERED = aton("10.0.0.50")
ROUTER = aton("10.0.0.254")


def reply(req: bytes | Send, kind: int, *, yiaddr: int = OFFERED, server: int | None = SERVER,
          lease: int | None = 100, xid: int | None = None, extra: dict[int, bytes] | None = None) -> bytes:
    """What a server answers to the client's message `req`."""
    data = req.data if isinstance(req, Send) else req
    m = M.parse(data)
    assert isinstance(m, M.Message)
    opts = {M.OPT_MSG_TYPE: bytes((kind,))}
    if server is not None:
        opts[M.OPT_SERVER_ID] = M.u32(server)
    if kind != M.NAK:
        opts[M.OPT_SUBNET_MASK] = M.u32(0xFFFFFF00)
        opts[M.OPT_ROUTER] = M.u32(ROUTER)
        opts[M.OPT_DNS] = M.u32(aton("10.0.0.53")) + M.u32(aton("10.0.0.54"))
        if lease is not None:
            opts[M.OPT_LEASE_TIME] = M.u32(lease)
    opts.update(extra or {})
    return M.build(M.Message(M.BOOTREPLY, m.xid if xid is None else xid, m.chaddr,
                             yiaddr=0 if kind == M.NAK else yiaddr, options=opts))


def sent(c: DhcpClient) -> list[tuple[M.Message, int]]:
    out = []
    for s in c.take_output():
        m = M.parse(s.data)
        assert isinstance(m, M.Message) and m.op == M.BOOTREQUEST and m.chaddr == MAC
        out.append((m, s.dst))
    return out


def client(**kw: object) -> DhcpClient:
    return DhcpClient(MAC, seed=1, **kw)  # type: ignore[arg-type]


def bound(now: float = 0.0, **kw: object) -> tuple[DhcpClient, M.Message]:
    c = client(**kw)
    c.start(now)
    c.poll(now)
    ((disc, _),) = sent(c)
    c.input(reply(M.build(disc), M.OFFER), now + 0.1)
    ((req, _),) = sent(c)
    c.input(reply(M.build(req), M.ACK), now + 0.2)
    assert c.state == State.BOUND
    c.take_events()
    return c, req


# -- codec

def test_codec_roundtrip_and_overload():
    m = M.Message(M.BOOTREQUEST, 0x12345678, MAC, secs=3, flags=M.FLAG_BROADCAST, ciaddr=1,
                  options={M.OPT_MSG_TYPE: b"\x01", M.OPT_HOSTNAME: b"x" * 300})
    data = M.build(m)
    assert len(data) >= 300 and data[236:240] == M.MAGIC
    back = M.parse(data)
    assert back == m                       # the 300-byte hostname was split and joined again
    # option overload: the server id lives in the `file` field
    raw = bytearray(M.build(M.Message(M.BOOTREPLY, 1, MAC, options={M.OPT_MSG_TYPE: b"\x02",
                                                                     M.OPT_OVERLOAD: b"\x01"})))
    raw[108:114] = bytes((M.OPT_SERVER_ID, 4)) + M.u32(SERVER)
    raw[114] = M.OPT_END
    got = M.parse(bytes(raw))
    assert isinstance(got, M.Message) and got.server_id == SERVER
    assert M.parse(data[:200]) == "dhcp_truncated"
    assert M.parse(data[:236] + b"\0\0\0\0" + data[240:]) == "dhcp_no_magic"
    assert M.parse(data[:240] + bytes((M.OPT_HOSTNAME, 200, 1, 2))) == "dhcp_bad_option"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 5))
def test_garbage_never_raises(data, steps):
    c = client()
    c.start(0.0)
    c.poll(0.0)
    (disc, _), = sent(c)
    c.input(data, 0.1)
    c.input(M.build(disc)[:240] + data, 0.1)       # a valid header, random options
    for i in range(steps):
        c.poll(10.0 * i)
    assert c.state in (State.SELECTING, State.REQUESTING)


# -- the state machine

def test_discover_offer_request_ack():
    c = client(hostname="guest")
    c.start(0.0)
    c.poll(0.0)
    ((disc, dst),) = sent(c)
    assert dst == LIMITED_BROADCAST and disc.msg_type == M.DISCOVER
    assert disc.flags & M.FLAG_BROADCAST and disc.ciaddr == 0
    assert disc.options[M.OPT_CLIENT_ID] == b"\x01" + MAC
    assert set(disc.options[M.OPT_PARAM_REQUEST]) >= {M.OPT_SUBNET_MASK, M.OPT_ROUTER, M.OPT_DNS}
    assert disc.options[M.OPT_HOSTNAME] == b"guest"
    c.input(reply(M.build(disc), M.OFFER), 0.5)
    ((req, dst),) = sent(c)
    assert c.state == State.REQUESTING and dst == LIMITED_BROADCAST
    assert req.msg_type == M.REQUEST and req.xid == disc.xid and req.ciaddr == 0
    assert req.addr(M.OPT_REQUESTED_IP) == OFFERED and req.server_id == SERVER
    c.input(reply(M.build(req), M.ACK), 0.7)
    (ev,) = c.take_events()
    assert isinstance(ev, LeaseAcquired) and c.state == State.BOUND
    lease = ev.lease
    assert (lease.address, lease.prefix_len, lease.routers, lease.server) == (OFFERED, 24, (ROUTER,), SERVER)
    assert lease.dns == (aton("10.0.0.53"), aton("10.0.0.54"))
    # the lease runs from when the REQUEST went out; T1/T2 default to 50% / 87.5%
    assert (lease.start, lease.renew_at, lease.rebind_at, lease.expires) == (0.5, 50.5, 88.0, 100.5)
    assert c.next_deadline() == 50.5
    assert c.stats["dhcp_acks"] == 1


def test_lost_offer_is_retransmitted_with_backoff():
    c = client()
    c.start(0.0)
    c.poll(0.0)
    ((d1, _),) = sent(c)
    t1 = c.next_deadline()
    assert t1 is not None and 3.0 <= t1 <= 5.0          # 4 s +- 1 (RFC 2131 4.1)
    c.poll(t1 - 0.01)
    assert sent(c) == []
    c.poll(t1)
    ((d2, _),) = sent(c)
    t2 = c.next_deadline()
    assert t2 is not None and 7.0 <= t2 - t1 <= 9.0     # then 8 s +- 1
    assert d2.xid == d1.xid and d2.secs == int(t1)
    # a late OFFER for another transaction is ignored; the right one is taken
    c.input(reply(M.build(d2), M.OFFER, xid=d2.xid ^ 1), t1 + 1)
    assert c.state == State.SELECTING and c.stats["dhcp_wrong_xid"] == 1
    c.input(reply(M.build(d2), M.OFFER), t1 + 1)
    ((req, _),) = sent(c)
    c.input(reply(M.build(req), M.ACK), t1 + 1.1)
    assert c.state == State.BOUND and c.stats["dhcp_discovers"] == 2
    # the backoff is capped at 64 s
    c2 = client()
    c2.start(0.0)
    now = 0.0
    for _ in range(9):
        c2.poll(now)
        sent(c2)
        nxt = c2.next_deadline()
        assert nxt is not None
        gap, now = nxt - now, nxt
    assert 63.0 <= gap <= 65.0


def test_nak_restarts_discovery():
    c = client(restart_delay=2.0)
    c.start(0.0)
    c.poll(0.0)
    ((disc, _),) = sent(c)
    c.input(reply(M.build(disc), M.OFFER), 0.1)
    ((req, _),) = sent(c)
    c.input(reply(M.build(req), M.NAK, server=aton("10.9.9.9")), 0.2)   # another server's NAK
    assert c.state == State.REQUESTING and c.stats["dhcp_nak_other_server"] == 1
    c.input(reply(M.build(req), M.NAK), 0.2)
    assert c.state == State.INIT and c.take_events() == [] and c.next_deadline() == 2.2
    c.poll(2.2)
    ((disc2, _),) = sent(c)
    assert c.state == State.SELECTING and disc2.msg_type == M.DISCOVER and disc2.xid != disc.xid


def test_unanswered_request_falls_back_to_discover():
    c = client(request_tries=2)
    c.start(0.0)
    c.poll(0.0)
    ((disc, _),) = sent(c)
    c.input(reply(M.build(disc), M.OFFER), 0.1)
    sent(c)
    for _ in range(2):
        t = c.next_deadline()
        assert t is not None
        c.poll(t)
        ((m, _),) = sent(c)
    assert m.msg_type == M.DISCOVER and c.state == State.SELECTING
    assert c.stats["dhcp_request_timeouts"] == 1 and c.stats["dhcp_requests"] == 2


def test_renewal_is_unicast_and_extends_the_lease():
    c, _ = bound()
    assert c.next_deadline() == 50.1
    c.poll(50.1)
    ((ren, dst),) = sent(c)
    assert c.state == State.RENEWING and dst == SERVER
    assert ren.msg_type == M.REQUEST and ren.ciaddr == OFFERED and not ren.flags & M.FLAG_BROADCAST
    assert M.OPT_SERVER_ID not in ren.options and M.OPT_REQUESTED_IP not in ren.options
    c.input(reply(M.build(ren), M.ACK, lease=200), 50.2)
    (ev,) = c.take_events()
    assert isinstance(ev, LeaseRenewed) and ev.previous.lease_time == 100 and ev.lease.lease_time == 200
    assert c.state == State.BOUND and c.next_deadline() == 50.1 + 100


def test_rebinding_then_expiry():
    c, _ = bound(min_retry=10.0)
    lease = c.lease
    assert lease is not None
    c.poll(lease.renew_at)
    ((ren, dst),) = sent(c)
    assert dst == SERVER
    times, dsts = [], []
    while c.lease is not None:
        t = c.next_deadline()
        assert t is not None
        c.poll(t)
        for m, d in sent(c):
            times.append(t)
            dsts.append((c.state, d, m.msg_type, m.ciaddr))
    # renewing retransmits unicast until T2, rebinding broadcasts until expiry
    assert (State.RENEWING, SERVER, M.REQUEST, OFFERED) in dsts
    rebinds = [x for x in dsts if x[0] == State.REBINDING]
    assert rebinds and all(d == LIMITED_BROADCAST and ci == OFFERED for _, d, _, ci in rebinds)
    assert math.isclose(min(t for t, x in zip(times, dsts) if x[0] == State.REBINDING), lease.rebind_at)
    # ...then the lease is gone and discovery starts over at once
    assert dsts[-1] == (State.SELECTING, LIMITED_BROADCAST, M.DISCOVER, 0)
    assert times[-1] == lease.expires
    (ev,) = c.take_events()
    assert isinstance(ev, LeaseLost) and ev.reason == "expired" and c.lease is None


def test_nak_while_renewing_loses_the_lease():
    c, _ = bound()
    c.poll(50.1)
    ((ren, _),) = sent(c)
    c.input(reply(M.build(ren), M.NAK), 50.2)
    (ev,) = c.take_events()
    assert isinstance(ev, LeaseLost) and ev.reason == "nak" and c.state == State.INIT


def test_infinite_lease_and_explicit_timers():
    c = client()
    c.start(0.0)
    c.poll(0.0)
    ((disc, _),) = sent(c)
    c.input(reply(M.build(disc), M.OFFER), 0.0)
    ((req, _),) = sent(c)
    c.input(reply(M.build(req), M.ACK, lease=M.INFINITE), 0.0)
    assert c.lease is not None and c.lease.expires == math.inf and c.next_deadline() == math.inf
    c2, _ = bound()
    c2.poll(50.1)
    ((ren, _),) = sent(c2)
    c2.input(reply(M.build(ren), M.ACK, lease=1000, extra={M.OPT_T1: M.u32(100), M.OPT_T2: M.u32(300)}), 51)
    assert c2.lease is not None and (c2.lease.t1, c2.lease.t2) == (100.0, 300.0)


def test_release_and_decline():
    c, _ = bound()
    c.release(10.0)
    ((rel, dst),) = sent(c)
    assert rel.msg_type == M.RELEASE and dst == SERVER and rel.ciaddr == OFFERED
    (ev,) = c.take_events()
    assert isinstance(ev, LeaseLost) and ev.reason == "released" and c.state == State.STOPPED
    c2, _ = bound()
    c2.decline(5.0)
    ((dec, dst),) = sent(c2)
    assert dec.msg_type == M.DECLINE and dec.addr(M.OPT_REQUESTED_IP) == OFFERED
    assert c2.state == State.INIT and c2.next_deadline() == 15.0


# -- a stack configured by DHCP

class ScriptedServer:
    """A DHCP server on a stack's UDP socket: offers 10.0.0.50/24, gateway 10.0.0.2."""

    def __init__(self, net: Network, *, drop_first_offer: bool = False, lease: int = 60) -> None:
        self.stack, self.net = net.b.stack, net
        self.sock = self.stack.udp_socket()
        self.sock.broadcast = True
        self.sock.bind("0.0.0.0", 67)
        self.sock.on_event = self._on
        self.drop_first_offer, self.lease = drop_first_offer, lease
        self.seen: list[int] = []

    def _on(self, sock) -> None:
        while (got := sock.recvfrom()) is not None:
            data, _ = got
            m = M.parse(data)
            assert isinstance(m, M.Message)
            self.seen.append(m.msg_type or 0)
            kind = {M.DISCOVER: M.OFFER, M.REQUEST: M.ACK}.get(m.msg_type or 0)
            if kind is None:
                continue
            if kind == M.OFFER and self.drop_first_offer:
                self.drop_first_offer = False
                continue
            out = reply(data, kind, server=self.stack.addr, lease=self.lease,
                        extra={M.OPT_ROUTER: M.u32(self.stack.addr)})
            dst = m.ciaddr if m.ciaddr else LIMITED_BROADCAST
            sock.sendto(out, (str(_ntoa(dst)), 68), self.net.now)


def _ntoa(a: int) -> str:
    from net.ipv4 import ntoa
    return ntoa(a)


def test_stack_gets_its_address_by_dhcp_over_a_link():
    net = Network(addr_a=None, seed=4)
    srv = ScriptedServer(net, drop_first_offer=True, lease=60)
    a = net.a.stack
    agent = a.start_dhcp(net.now)
    assert a.addr == 0
    assert net.run(lambda: a.addr != 0, timeout=30)
    assert srv.seen == [M.DISCOVER, M.DISCOVER, M.REQUEST]     # the first OFFER was lost
    assert (a.addr, a.prefix_len, a.dns) == (OFFERED, 24, [aton("10.0.0.53"), aton("10.0.0.54")])
    route = a.routes.lookup(aton("192.0.2.1"))
    assert route is not None and route.gateway == aton("10.0.0.2")
    p = a.ping_socket()
    p.send("10.0.0.2", 1, b"hi", net.now)
    assert net.run(lambda: p.recv() is not None, timeout=2)
    # renewal is a unicast REQUEST from the leased address, answered unicast
    assert net.run(lambda: a.counters.events["dhcp_lease_renewed"] == 1, timeout=60)
    assert srv.seen[-1] == M.REQUEST and agent.state == State.BOUND and a.addr == OFFERED
    # with the server gone the lease runs out and the address goes with it
    srv.sock.close()
    assert net.run(lambda: a.addr == 0, timeout=120)
    assert a.counters.events["dhcp_lease_lost_expired"] == 1 and a.routes.lookup(aton("192.0.2.1")) is None
    assert agent.state == State.SELECTING
