"""net/bridge.py between a real loopback TCP connection and a stack connection (two stacks in
process): what one service turn passes on."""
from __future__ import annotations

import errno
import socket
import struct
from typing import Callable

import pytest

from net.bridge import WRITE, Bridge
from net.tcp import State
from net.testbed import Network


class TurnLoop:
    """The bridge's loop, turned by hand: the test decides when `service` runs."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self.watched: dict[int, int] = {}
        self.queued: list[Callable[[], None]] = []
        self.next_turn: list[Callable[[], None]] = []

    def watch(self, fd: int, events: int, callback: Callable[[], None]) -> None:
        self.watched[fd] = events

    def unwatch(self, fd: int) -> None:
        self.watched.pop(fd, None)

    def soon(self, callback: Callable[[], None]) -> None:
        self.queued.append(callback)

    def later(self, callback: Callable[[], None]) -> None:
        self.next_turn.append(callback)

    def turn(self) -> None:
        """What the next loop turn runs of the bridge's: `later`'s callbacks."""
        batch, self.next_turn = self.next_turn, []
        for callback in batch:
            callback()

    def now(self) -> float:
        return self.net.now


def stack_connection(net: Network) -> tuple[object, object]:
    """A connection between the two stacks: (the server's end, the client's end)."""
    lst = net.b.stack.tcp_socket()
    lst.bind("0.0.0.0", 80)
    lst.listen()
    client = net.a.stack.tcp_socket()
    client.connect("10.0.0.2", 80, net.now)
    assert net.run(lambda: bool(lst.accept_queue), timeout=30)
    return lst.accept(), client


def bridged() -> tuple[Network, Bridge, socket.socket, object]:
    """A bridge whose host side is one end of a loopback connection (the other end, the
    "guest", is returned) and whose stack side is the server end of a connection from the
    other stack (its client is returned)."""
    net = Network()
    server, client = stack_connection(net)
    listener = socket.create_server(("127.0.0.1", 0))
    host = socket.create_connection(listener.getsockname())
    guest, _ = listener.accept()
    listener.close()
    bridge = Bridge(TurnLoop(net), host, server)
    return net, bridge, guest, client


def test_a_reply_and_its_end_of_stream_leave_in_the_same_turn() -> None:
    net, bridge, guest, client = bridged()
    try:
        guest.sendall(b"HTTP/1.1 200 OK\r\n\r\nbody")
        guest.close()                                  # a server that replies and closes
        bridge.service()
        tcp = bridge.tcp
        assert bytes(tcp.sndq) == b"HTTP/1.1 200 OK\r\n\r\nbody" and tcp.fin_queued
        got = bytearray()

        def delivered() -> bool:
            while data := client.recv(65536, net.now):   # type: ignore[attr-defined]
                got.extend(data)
            return client.fin_received                     # type: ignore[attr-defined]

        assert net.run(delivered, timeout=5)
        assert got == b"HTTP/1.1 200 OK\r\n\r\nbody"
        client.close(net.now)                              # type: ignore[attr-defined]
        assert net.run(lambda: client.state == State.CLOSED, timeout=5)  # type: ignore[attr-defined]
        assert tcp.state == State.TIME_WAIT                # the server's side waits, as on Linux
    finally:
        bridge.abort()
        guest.close()


def test_a_reply_without_end_of_stream_leaves_the_connection_open() -> None:
    net, bridge, guest, client = bridged()
    try:
        guest.sendall(b"first reply")
        bridge.service()
        tcp = bridge.tcp
        assert bytes(tcp.sndq) == b"first reply" and not tcp.fin_queued and not bridge.up_eof
        guest.sendall(b", second")
        bridge.service()
        assert bytes(tcp.sndq) == b"first reply, second" and not tcp.fin_queued
    finally:
        bridge.abort()
        guest.close()


def in_flight(tcp: object) -> int:
    return (tcp.snd_nxt - tcp.snd_una) & 0xFFFFFFFF          # type: ignore[attr-defined]


def test_a_reply_waits_a_turn_for_its_end_of_stream() -> None:
    """nginx replies, then closes a few µs later: the reply is held until the loop's next turn,
    so its FIN leaves in the same segment (one segment and one client ACK fewer)."""
    net, bridge, guest, client = bridged()
    try:
        loop = bridge.loop
        guest.sendall(b"HTTP/1.1 200 OK\r\n\r\nbody")
        bridge.service()
        tcp = bridge.tcp
        assert tcp.corked and in_flight(tcp) == 0 and len(loop.next_turn) == 1   # type: ignore[attr-defined]
        guest.close()
        bridge.service()                               # the next turn: the end of stream is there
        assert in_flight(tcp) == len(b"HTTP/1.1 200 OK\r\n\r\nbody") + 1  # data and FIN, one segment
        loop.turn()                                    # type: ignore[attr-defined]
        assert net.run(lambda: client.fin_received, timeout=5)   # type: ignore[attr-defined]
        assert client.recv(100, net.now) == b"HTTP/1.1 200 OK\r\n\r\nbody"  # type: ignore[attr-defined]
    finally:
        bridge.abort()
        guest.close()


def test_a_held_reply_leaves_on_the_next_turn_without_end_of_stream_and_later_ones_at_once() -> None:
    net, bridge, guest, client = bridged()
    try:
        guest.sendall(b"keep-alive reply")
        bridge.service()
        tcp = bridge.tcp
        assert in_flight(tcp) == 0
        bridge.loop.turn()                             # type: ignore[attr-defined]
        assert not tcp.corked and in_flight(tcp) == len(b"keep-alive reply") and not tcp.fin_queued
        assert net.run(lambda: client.readable, timeout=5)      # type: ignore[attr-defined]
        assert client.recv(100, net.now) == b"keep-alive reply"  # type: ignore[attr-defined]
        assert net.run(lambda: in_flight(tcp) == 0, timeout=5)  # acknowledged
        guest.sendall(b"second reply")
        bridge.service()                               # not the first: no cork, it leaves now
        assert not tcp.corked and in_flight(tcp) == len(b"second reply")
        assert not bridge.loop.next_turn               # type: ignore[attr-defined]
    finally:
        bridge.abort()
        guest.close()


def test_the_stack_end_of_stream_waits_for_the_host_connect() -> None:
    """A remote that closes before the guest's listener has answered the doorbell: the FIN is
    passed on once the connect completes (a shutdown in SYN-SENT would abandon the connect)."""
    import select

    net = Network()
    server, client = stack_connection(net)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)                                  # one connection fills its accept queue
    filler = socket.create_connection(listener.getsockname())
    host = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    bridge = Bridge(TurnLoop(net), host, server, connecting=True)  # type: ignore[arg-type]
    try:
        assert host.connect_ex(listener.getsockname()) == errno.EINPROGRESS   # its SYN dropped
        client.close(net.now)                                   # type: ignore[attr-defined]
        assert net.run(lambda: server.fin_received, timeout=5)  # type: ignore[attr-defined]
        bridge.service()
        assert bridge.fin_waits and not bridge.down_eof
        assert bridge.loop.watched[host.fileno()] & WRITE       # type: ignore[attr-defined]
        listener.accept()[0].close()                    # room: the SYN's retransmission (1 s) lands
        assert select.select([], [host], [], 5)[1]
        bridge.service()
        assert bridge.down_eof and not bridge.fin_waits
        listener.settimeout(5)
        guest, _ = listener.accept()
        with guest:
            guest.settimeout(5)
            assert guest.recv(100) == b""               # the remote's FIN, passed on
    finally:
        bridge.abort()
        filler.close()
        listener.close()


def test_a_refused_host_connect_resets_the_remote() -> None:
    """The guest's listener went away before the doorbell rang: the remote sees a reset, found
    by the first read (no look at the connect first)."""
    net = Network()
    server, client = stack_connection(net)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()                                      # nothing listens there now
    host = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    assert host.connect_ex(("127.0.0.1", port)) in (errno.EINPROGRESS, errno.ECONNREFUSED)
    bridge = Bridge(TurnLoop(net), host, server, connecting=True)  # type: ignore[arg-type]
    client.send(b"GET / HTTP/1.0\r\n\r\n", net.now)              # type: ignore[attr-defined]
    assert net.run(lambda: server.readable, timeout=5)  # type: ignore[attr-defined]
    bridge.service()
    assert bridge.closed and bridge.error == errno.ECONNREFUSED
    assert net.run(lambda: client.state == State.CLOSED, timeout=5)  # type: ignore[attr-defined]
    with pytest.raises(OSError) as e:
        client.recv(100, net.now)                       # type: ignore[attr-defined]
    assert e.value.errno == errno.ECONNRESET


@pytest.mark.parametrize("native", [True, False], ids=["net._tapio", "socket.recv"])
def test_a_read_of_the_host_side_returns_data_eagain_end_or_errno(monkeypatch: pytest.MonkeyPatch,
                                                                 native: bool) -> None:
    import net.bridge as nb

    if native:
        assert nb._recv_nb is not None, "net._tapio is not built (make setup builds it)"
    else:
        monkeypatch.setattr(nb, "_recv_nb", None)

    def pair() -> tuple[socket.socket, socket.socket]:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            ours = socket.create_connection(listener.getsockname())
            return ours, listener.accept()[0]

    ours, theirs = pair()
    try:
        assert nb._recv(ours, 100) == -errno.EAGAIN
        theirs.sendall(b"reply")
        assert nb._recv(ours, 3) == b"rep" and nb._recv(ours, 100) == b"ly"
        theirs.shutdown(socket.SHUT_WR)
        assert nb._recv(ours, 100) == b""
    finally:
        ours.close()
        theirs.close()
    ours, theirs = pair()
    try:
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        theirs.close()                                  # a reset
        assert nb._recv(ours, 100) == -errno.ECONNRESET
    finally:
        ours.close()
