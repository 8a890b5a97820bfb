"""ICMP echo endpoints, as Linux's unprivileged ping sockets (SOCK_DGRAM, IPPROTO_ICMP):
the stack routes echo replies to the socket owning their identifier."""
from __future__ import annotations

import errno
from collections import deque
from typing import TYPE_CHECKING, Callable

from . import icmp
from .ipv4 import IPPROTO_ICMP, aton, ntoa

if TYPE_CHECKING:
    from .stack import Stack


class PingSocket:
    def __init__(self, stack: Stack, ident: int) -> None:
        self._stack, self.ident = stack, ident
        self.on_event: Callable[[PingSocket], None] | None = None
        self._rx: deque[tuple[int, int, bytes]] = deque()
        self.closed = False

    def send(self, dst: str | int, seq: int, data: bytes, now: float) -> None:
        d = aton(dst)
        src = self._stack.source_address(d)
        if src is None:
            raise OSError(errno.ENETUNREACH, "network is unreachable")
        msg = icmp.echo_request(self.ident, seq, data)
        why = self._stack.ip_output(IPPROTO_ICMP, src, d, msg, now, df=False)
        if why == "no_route":
            raise OSError(errno.ENETUNREACH, "network is unreachable")

    def recv(self) -> tuple[str, int, bytes] | None:
        """(source, sequence number, data) of the next echo reply, or None."""
        if not self._rx:
            return None
        src, seq, data = self._rx.popleft()
        return ntoa(src), seq, data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._stack._pings.pop(self.ident, None)

    def _deliver(self, src: int, seq: int, data: bytes) -> None:
        if len(self._rx) < 256:
            self._rx.append((src, seq, data))
            if self.on_event:
                self.on_event(self)
