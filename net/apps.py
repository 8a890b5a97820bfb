"""Small services that run on a stack's sockets through their `on_event` callbacks (so they
live wherever the stack's loop runs): TCP and UDP echo, a TCP sink that hashes what it
gets, and a TCP source that sends a fixed pattern. For manual testing and the TAP tests."""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Callable, Generic, TypeVar

from .tcp import State, TcpSocket
from .udp import UdpSocket

if TYPE_CHECKING:
    from .stack import Stack

CHUNK = 65536


def pattern(n: int, offset: int = 0) -> bytes:
    """n bytes of a repeating 251-byte ramp (a prime period, so shifted data shows)."""
    ramp = bytes(range(251))
    start = offset % 251
    reps = (start + n) // 251 + 1
    return (ramp * reps)[start:start + n]


class Conn:
    """One connection; `serve` runs whenever its readiness may have changed."""

    def __init__(self, stack: Stack, sock: TcpSocket) -> None:
        self.stack, self.sock = stack, sock
        self.out = bytearray()
        self.rx_bytes = self.tx_bytes = 0
        self.done = False
        self._busy = False
        sock.on_event = self._event

    def _event(self, _s: TcpSocket) -> None:
        if self._busy or self.done:          # a callback from inside our own call
            return
        self._busy = True
        try:
            self.serve(self.stack.now)
        except OSError:
            self.done = True                 # reset or timed out: nothing left to do
            self.sock.close(self.stack.now)
        finally:
            self._busy = False

    def flush(self, now: float) -> bool:
        """Send what is queued; True when all of it went."""
        while self.out:
            n = self.sock.send(memoryview(self.out), now)
            if n == 0:
                return False
            del self.out[:n]
            self.tx_bytes += n
        return True

    def serve(self, now: float) -> None:
        raise NotImplementedError


class EchoConn(Conn):
    def serve(self, now: float) -> None:
        while self.flush(now):
            data = self.sock.recv(CHUNK, now)
            if data is None:
                return
            if not data:
                self.done = True
                self.sock.close(now)
                return
            self.rx_bytes += len(data)
            self.out += data


class SinkConn(Conn):
    def __init__(self, stack: Stack, sock: TcpSocket) -> None:
        super().__init__(stack, sock)
        self.digest = hashlib.sha256()

    def serve(self, now: float) -> None:
        while (data := self.sock.recv(CHUNK, now)) is not None:
            if not data:
                self.done = True
                self.sock.close(now)
                return
            self.rx_bytes += len(data)
            self.digest.update(data)


class SourceConn(Conn):
    def __init__(self, stack: Stack, sock: TcpSocket, total: int) -> None:
        super().__init__(stack, sock)
        self.left = total

    def serve(self, now: float) -> None:
        while (data := self.sock.recv(CHUNK, now)) is not None and data:
            self.rx_bytes += len(data)       # discard what the peer says
        while self.flush(now) and self.left:
            n = min(self.left, 4 * CHUNK)
            self.out += pattern(n, self.tx_bytes)
            self.left -= n
        if not self.left and not self.out and not self.done:
            self.done = True
            self.sock.close(now)


class EchoClientConn(Conn):
    """Sends `data`, reads back as much, then closes (against an echo server)."""

    def __init__(self, stack: Stack, sock: TcpSocket, data: bytes) -> None:
        super().__init__(stack, sock)
        self.out += data
        self.expected = len(data)
        self.got = bytearray()

    def serve(self, now: float) -> None:
        self.flush(now)
        while (data := self.sock.recv(CHUNK, now)) is not None:
            self.got += data
            if not data or len(self.got) >= self.expected:
                self.done = True
                self.sock.close(now)
                return


def tcp_echo_client(stack: Stack, addr: str, port: int, data: bytes) -> EchoClientConn:
    sock = stack.tcp_socket()
    conn = EchoClientConn(stack, sock, data)
    sock.connect(addr, port, stack.now)
    return conn


C = TypeVar("C", bound=Conn)


class TcpServer(Generic[C]):
    """Listens on `port`; each accepted connection is served by what `factory` makes."""

    def __init__(self, stack: Stack, port: int, factory: Callable[[Stack, TcpSocket], C]) -> None:
        self.stack, self.factory = stack, factory
        self.listener = stack.tcp_socket()
        self.listener.reuseaddr = True
        self.listener.bind(0, port)
        self.listener.listen(16)
        self.listener.on_event = self._accept
        self.conns: list[C] = []

    def _accept(self, lst: TcpSocket) -> None:
        while lst.state == State.LISTEN and (sock := lst.accept()) is not None:
            conn = self.factory(self.stack, sock)
            self.conns.append(conn)
            conn._event(sock)

    def close(self) -> None:
        self.listener.on_event = None
        self.listener.close(self.stack.now)


def tcp_echo(stack: Stack, port: int) -> TcpServer[EchoConn]:
    return TcpServer(stack, port, EchoConn)


def tcp_sink(stack: Stack, port: int) -> TcpServer[SinkConn]:
    return TcpServer(stack, port, SinkConn)


def tcp_source(stack: Stack, port: int, total: int) -> TcpServer[SourceConn]:
    return TcpServer(stack, port, lambda st, s: SourceConn(st, s, total))


class UdpEcho:
    def __init__(self, stack: Stack, port: int) -> None:
        self.stack = stack
        self.sock = stack.udp_socket()
        self.sock.bind(0, port)
        self.sock.on_event = self._event
        self.echoed = 0

    def _event(self, sock: UdpSocket) -> None:
        while (got := sock.recvfrom()) is not None:
            data, addr = got
            try:
                sock.sendto(data, addr, self.stack.now)
                self.echoed += 1
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
