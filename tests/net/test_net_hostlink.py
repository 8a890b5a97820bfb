"""The host link's event loop without a TAP: two HostLinks whose backends are the ends of a
SOCK_SEQPACKET socketpair carrying vnet-header frames exactly as a TAP fd would. Covers
running in threads, stepping from another loop, DHCP timers and the stats table."""
from __future__ import annotations

import hashlib
import os
import selectors
import socket
import time
from typing import Iterator

import pytest

from net import apps
from net.hostlink import HostLink, random_mac
from net.stats import render
from net.tap import TapBackend
from net.virtio.impair import ImpairedBackend


def ba_stats(link: HostLink) -> dict[str, int]:
    return link.stats()["backend"]


def pair() -> tuple[TapBackend, TapBackend]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (a, b):
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    return TapBackend("a", fd=a.detach()), TapBackend("b", fd=b.detach())


@pytest.fixture
def links() -> Iterator[tuple[HostLink, HostLink]]:
    ba, bb = pair()
    a = HostLink(ba, seed=1, name="a")
    b = HostLink(bb, seed=2, name="b")
    a.configure("10.1.0.1", 24)
    b.configure("10.1.0.2", 24)
    yield a, b
    a.close()
    b.close()


def test_threads_ping_and_tcp(links: tuple[HostLink, HostLink]) -> None:
    a, b = links
    assert ba_stats(a)["offload_refused"] == 1             # a socket is not a TAP
    a.start()
    b.start()
    p = b.call(b.stack.ping_socket)
    b.call(lambda: p.send("10.1.0.1", 1, b"hello", b.stack.now))
    assert b.wait_for(lambda: p.recv() == ("10.1.0.1", 1, b"hello"), 5)
    server = a.call(lambda: apps.tcp_sink(a.stack, 9))
    data = os.urandom(1 << 20)
    t0 = time.monotonic()
    client = b.call(lambda: apps.tcp_echo_client(b.stack, "10.1.0.1", 9, data))
    assert a.wait_for(lambda: bool(server.conns) and server.conns[0].rx_bytes == len(data), 20)
    elapsed = time.monotonic() - t0
    assert a.call(lambda: server.conns[0].digest.hexdigest()) == hashlib.sha256(data).hexdigest()
    b.call(lambda: client.sock.close(b.stack.now))
    st = a.call(a.stats)
    assert st["tcp"]["passive_opens"] == 1 and st["packets"]["rx_bytes"] > len(data)
    assert "1 passive" in render(st)
    print(f"\n1 MiB over a socketpair between two links: {len(data) / elapsed / 1e6:.1f} MB/s")


def test_stepped_from_another_loop(links: tuple[HostLink, HostLink]) -> None:
    """No threads: an outer selector watches both links' fds and deadlines and steps them."""
    a, b = links
    echo = apps.UdpEcho(a.stack, 7)
    sock = b.stack.udp_socket()
    sock.sendto(b"x" * 3000, ("10.1.0.1", 7), b.stack.now)       # fragmented both ways
    sel = selectors.DefaultSelector()
    sel.register(a.fileno(), selectors.EVENT_READ, a)
    sel.register(b.fileno(), selectors.EVENT_READ, b)
    end = time.monotonic() + 5
    got = None
    a.step()
    b.step()
    while got is None and time.monotonic() < end:
        ds = [d for d in (a.next_deadline(), b.next_deadline()) if d is not None]
        timeout = max(0.0, min(ds) - time.monotonic()) if ds else 0.5
        for key, _ in sel.select(min(timeout, 0.5)):
            key.data.step()
        a.step()
        b.step()
        got = sock.recvfrom()
    assert got == (b"x" * 3000, ("10.1.0.1", 7)) and echo.echoed == 1
    sel.close()


def test_dhcp_timers_drive_the_loop() -> None:
    """With nobody answering, the client's own deadlines wake the loop for retransmissions."""
    ba, bb = pair()
    a = HostLink(ba, seed=3, mac=random_mac())
    try:
        agent = a.start_dhcp(backoff_base=0.1, backoff_max=0.2, jitter=0.0)
        a.start()
        assert a.wait_for(lambda: agent.client.stats["dhcp_discovers"] >= 4, 5)
        frames = 0
        while True:
            try:
                frames += len(os.read(bb.fd, 65536)) > 0
            except BlockingIOError:
                break
        assert frames >= 4
    finally:
        a.close()
        bb.close()


def test_impaired_backend_loses_and_reorders() -> None:
    ba, bb = pair()
    clock = [0.0]
    imp = ImpairedBackend(ba, lambda: clock[0], seed=1, loss=0.2, delay=0.01, reorder=0.5)
    from net.virtio.net_hdr import VirtioNetHdr
    for i in range(200):
        imp.send_frame(VirtioNetHdr(), bytes([i]) * 60)
    early = []
    while (g := bb.recv_frame()) is not None:
        early.append(g[1][0])
    clock[0] = 0.02
    imp.pump()
    late = []
    while (g := bb.recv_frame()) is not None:
        late.append(g[1][0])
    assert imp.stats["lost"] + len(early) + len(late) == 200
    assert 20 < imp.stats["lost"] < 60 and early and late and imp.next_event() is None
    ba.close()
    bb.close()
