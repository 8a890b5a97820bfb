"""A byte bridge between a host stream socket and a stack TcpSocket, run in a link's loop.

The host socket is the translator's end of a loopback connection whose other end is the
guest's own socket (in the sandbox's network namespace); the TcpSocket is the connection the
stack holds with the outside. Bytes move both ways with flow control: the host side is not
read while the stack's send buffer is full, and the stack is not read while bytes taken from
it still wait for the host side to drain (so the stack's receive window closes instead).
End of stream travels as shutdown(SHUT_WR) / FIN both ways; a reset or error on one side is
a reset on the other (SO_LINGER 0 close on the host side, RST on the stack side).

The bridge never blocks and never raises into the loop: `service()` does what can be done now
and tells the loop (`Loop.watch`) which host readiness to wait for; the TcpSocket's on_event
asks the loop to service it again.
"""
from __future__ import annotations

import _socket
import errno
import importlib
import selectors
import socket
import struct
import threading
from typing import Any, Callable, Final, Protocol

from .tcp import TcpSocket

try:  # compiled by `make setup` (net/tapio_build.py): reads that return -EAGAIN, not raise it
    _tapio: Any = importlib.import_module("net._tapio")
    _recv_nb: Any = _tapio.lib.bridge_recv
    _unpack: Any = _tapio.ffi.unpack
except (ImportError, AttributeError):
    _tapio = _recv_nb = _unpack = None
_buffers = threading.local()   # one read buffer per loop thread (each uplink's loop has its own)

# At most this much per read: Python allocates the whole size for each recv and then shrinks
# it, and above glibc's mmap threshold (128 KiB) that is an mmap and munmap per call: with
# 256 KiB each read of a 1 KiB reply cost 18 µs, against 1.4 µs at 64 KiB.
CHUNK: Final = 64 * 1024
_LINGER_0: Final = struct.pack("ii", 1, 0)
READ: Final = selectors.EVENT_READ
WRITE: Final = selectors.EVENT_WRITE
_SEND_FLAGS: Final = int(socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)   # (an IntFlag's | costs µs per send)


class Loop(Protocol):
    def watch(self, fd: int, events: int, callback: Callable[[], None]) -> None: ...
    def unwatch(self, fd: int) -> None: ...
    def soon(self, callback: Callable[[], None]) -> None: ...
    def later(self, callback: Callable[[], None]) -> None: ...
    def now(self) -> float: ...


class Bridge:
    """One connection's two directions. `connecting`: the host socket's non-blocking
    connect may still be in progress; bytes wait for it in the kernel (EAGAIN), a failed one
    resets the stack side, and the stack's FIN waits for it (`_connected`)."""

    def __init__(self, loop: Loop, host: _socket.socket, tcp: TcpSocket, *, connecting: bool = False,
                 on_done: Callable[["Bridge"], None] | None = None) -> None:
        self.loop, self.host, self.tcp = loop, host, tcp
        self.fd = host.fileno()
        self.on_done = on_done
        self.connecting = connecting
        self.fin_waits = False       # the stack's FIN waits for the host socket's connect
        self.up_eof = False          # the host side sent FIN: passed on to the stack
        self.down_eof = False        # the stack side sent FIN: passed on to the host
        self.pending = bytearray()   # taken from the stack, not yet accepted by the host socket
        self.closed = False
        self.error = 0               # the errno that ended it, if one did
        self.up_bytes = self.down_bytes = 0
        self._interest = -1
        if host.gettimeout() != 0.0:             # (a doorbell is made non-blocking: no ioctl)
            host.setblocking(False)
        tcp.on_event = lambda _s: loop.soon(self.service)
        loop.soon(self.service)

    # ---- the work ------------------------------------------------------------------------
    def service(self) -> None:
        if self.closed:
            return
        if not self._down() or not self._up():
            return
        if self.up_eof and self.down_eof and not self.pending:
            self._finish()
            return
        room = self.tcp.sndbuf_size - len(self.tcp.sndq)
        self._set_interest((READ if not self.up_eof and room > 0 else 0)
                           | (WRITE if self.pending or self.fin_waits else 0))

    def _connected(self) -> bool:
        """Whether the host socket's connect is done. Reads and writes need not ask (they
        return EAGAIN until it is, and its error if it fails); only a shutdown must wait for
        it: in SYN-SENT Linux's shutdown(SHUT_WR) closes the socket."""
        if self.connecting:
            try:
                self.host.getpeername()
            except OSError:
                return False
            self.connecting = False
        return True

    def _down(self) -> bool:
        """Stack -> host. False when the bridge ended."""
        now = self.loop.now()
        while True:
            if self.pending:
                try:
                    n = self.host.send(self.pending, _SEND_FLAGS)
                except BlockingIOError:
                    return True
                except OSError as e:  # the guest closed or reset its socket
                    self._reset_stack(e.errno or errno.EPIPE)
                    return False
                del self.pending[:n]
                self.down_bytes += n
                self.connecting = False           # (a send succeeds only once connected)
                if self.pending:
                    return True
            if self.down_eof:
                return True
            try:
                data = self.tcp.recv(CHUNK, now)
            except OSError as e:
                self._reset_host(e.errno or errno.ECONNRESET)
                return False
            if data is None:
                return True
            if not data:
                if self.up_eof:                   # the host side ended too: close() sends the FIN
                    self.down_eof = True
                    return True
                if not self._connected():         # the stack's EOF stays there until it is
                    self.fin_waits = True
                    return True
                self.fin_waits = False
                self.down_eof = True
                try:
                    self.host.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return True
            self.pending += data

    def _up(self) -> bool:
        """Host -> stack. False when the bridge ended."""
        now = self.loop.now()
        tcp = self.tcp
        probed = False
        while not self.up_eof:
            room = tcp.sndbuf_size - len(tcp.sndq)
            if room <= 0:
                return True
            got = _recv(self.host, min(room, CHUNK))
            if isinstance(got, int):
                if got == -errno.EAGAIN:
                    return True
                self._reset_stack(-got)
                return False
            data = got
            try:
                if not data:
                    self.up_eof = True
                    tcp.shutdown(1, now)
                    return True
                if self.up_bytes == 0 and not tcp.corked:
                    # The connection's first reply waits for the next loop turn: a server that
                    # replies and closes has its FIN sent with the reply (one segment, and one
                    # ACK from the client, fewer per connection; nginx with `Connection: close`
                    # +11%). Every reply held so cost keep-alive ~9%: later ones leave at once.
                    tcp.corked = True
                    self.loop.later(self._uncork)
                tcp.send(data, now)
            except OSError as e:
                self._reset_host(e.errno or errno.EPIPE)
                return False
            self.up_bytes += len(data)
            if len(data) < min(room, CHUNK):
                # A short read drained the socket. One more recv (EAGAIN, ~1.5 µs, when nothing
                # is there) catches an end of stream that came with the data: a server that
                # replies and closes has its FIN follow the reply at once, as on Linux. Left
                # for a later turn, the client could close first and be the side left in
                # TIME-WAIT (wrk with `Connection: close` ran out of ports after ~14k requests).
                # Past that, READ interest stays: epoll (level-triggered) brings us back.
                if probed:
                    return True
                probed = True
        return True

    def _uncork(self) -> None:
        self.tcp.uncork(self.loop.now())

    # ---- endings ------------------------------------------------------------------------
    def _reset_host(self, code: int) -> None:
        """The stack side failed: the guest sees a reset."""
        try:
            self.host.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
        except OSError:
            pass
        self.error = code
        self._close(abort_stack=False)

    def _reset_stack(self, code: int) -> None:
        """The host side failed (or never connected): the remote sees a reset."""
        self.error = code
        self._close(abort_stack=True)

    def _finish(self) -> None:
        self._close(abort_stack=False)

    def _close(self, *, abort_stack: bool) -> None:
        self.closed = True
        self.tcp.on_event = None
        now = self.loop.now()
        if abort_stack:
            self.tcp.abort(now)
        else:
            self.tcp.close(now)  # after FIN both ways, or a stack error: nothing unread is lost
        self._set_interest(0)
        self.host.close()
        if self.on_done is not None:
            self.on_done(self)

    def abort(self) -> None:
        """Tear it down from outside (the uplink is stopping): reset both sides."""
        if not self.closed:
            try:
                self.host.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
            except OSError:
                pass
            self._close(abort_stack=True)

    def _set_interest(self, events: int) -> None:
        if events == self._interest:
            return
        self._interest = events
        if events:
            self.loop.watch(self.fd, events, self.service)
        else:
            self.loop.unwatch(self.fd)


def _recv(sock: _socket.socket, size: int) -> bytes | int:
    """What a non-blocking recv of up to ``size`` bytes returns: bytes (b"" at the end of the
    stream) or -errno (-EAGAIN when there is nothing yet)."""
    if _recv_nb is None:
        try:
            return sock.recv(size, socket.MSG_DONTWAIT)
        except OSError as e:
            return -(e.errno or errno.ECONNRESET)
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = _tapio.ffi.new("char[]", CHUNK)
    n: int = _recv_nb(sock.fileno(), buf, size)
    return n if n < 0 else _unpack(buf, n)

