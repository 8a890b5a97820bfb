"""``-p HOST_IP:HOST_PORT:GUEST_PORT``: host TCP connections forwarded into the sandbox.

The host port is bound and listening from the sandbox's start (a taken port is the user's
error, reported before anything runs). Until a guest listens on GUEST_PORT, a thread accepts
each connection and closes it at once, as a refused one would be. When a guest listens on
GUEST_PORT, its listener is replaced by this host listener (syscalls/net.py, sys_listen): from
then on the guest accepts the host's connections itself, natively, with no translator work per
connection and no copy of their bytes. Once the guest has closed it, nothing listens on the host
port and the host refuses connections, as Linux does where nothing listens; a later listen
binds the host port again.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket
import threading
from dataclasses import dataclass

from net.socklayer import GuestNet


@dataclass(frozen=True)
class Published:
    host_ip: str
    host_port: int
    guest_port: int

    @classmethod
    def parse(cls, text: str) -> "Published":
        """``[HOST_IP:]HOST_PORT:GUEST_PORT`` (HOST_IP defaults to 127.0.0.1, not every
        interface: publishing beyond the host is an explicit choice)."""
        parts = text.rsplit(":", 2)
        if len(parts) == 2:
            parts = ["127.0.0.1", *parts]
        if len(parts) != 3:
            raise ValueError(f"-p {text!r}: expected [HOST_IP:]HOST_PORT:GUEST_PORT")
        ip, host_port, guest_port = parts
        try:
            addr = ipaddress.IPv4Address(ip)
            hp, gp = int(host_port), int(guest_port)
        except ValueError:
            raise ValueError(f"-p {text!r}: expected an IPv4 address and two port numbers") from None
        if not (0 <= hp < 65536 and 0 < gp < 65536):
            raise ValueError(f"-p {text!r}: ports are 1-65535 (host port 0: any free one)")
        return cls(str(addr), hp, gp)


class PortForwarder:
    def __init__(self, net: GuestNet, spec: Published) -> None:
        self.net, self.spec = net, spec
        self.sock: socket.socket | None = self._bind(socket.AF_INET, spec.host_port)
        self.address: tuple[str, int] = self.sock.getsockname()[:2]
        self.sock.setblocking(False)  # ours until handed over: accepted only under the lock
        self.guest_name: tuple[str, int] | None = None  # the address the guest's listener has
        self.handed = False  # a guest has (had) the host listener
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._stopping = False
        net.publish(spec.guest_port, self)
        self._thread = threading.Thread(target=self._refuse, name=f"forward-{self.address[1]}", daemon=True)

    def _bind(self, family: int, port: int) -> socket.socket:
        """A socket listening on the host address (v4-mapped for an AF_INET6 guest listener)."""
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.bind((f"::ffff:{self.spec.host_ip}", port))
            else:
                sock.bind((self.spec.host_ip, port))
            sock.listen(socket.SOMAXCONN)
        except OSError:
            sock.close()
            raise
        return sock

    def start(self) -> None:
        self._thread.start()

    def _refuse(self) -> None:
        """Until a guest listens: each connection is closed at once."""
        while True:
            sock = self.sock
            if sock is None:
                return
            try:
                ready, _, _ = select.select([sock, self._wake_r], [], [])
            except (OSError, ValueError):
                return
            with self._lock:
                if self._stopping or self.handed:
                    return
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue  # gone again (the client gave up), ECONNABORTED and the like
            conn.close()

    def take(self, family: int, guest_name: tuple[str, int]) -> socket.socket:
        """The host listener, for a guest listening on GUEST_PORT at ``guest_name``: ours on
        the first listen (with the connections already waiting on it), bound again on a later
        one (OSError where the host port was taken meanwhile). The caller owns it."""
        with self._lock:
            sock, self.sock = self.sock, None
            self.handed = True
            self.guest_name = guest_name
        os.write(self._wake_w, b"x")
        if sock is not None and sock.family != family:
            # An AF_INET6 guest listener: the same port, as a dual-stack socket. Our thread's
            # select holds the old one open until it returns: it must be gone to bind again.
            if self._thread.ident is not None:
                self._thread.join(timeout=2.0)
            sock.close()
            sock = None
        return sock if sock is not None else self._bind(family, self.address[1])

    def guest_listens(self) -> bool:
        """Whether a guest's listener still holds the host port (the port then also counts as
        taken in the sandbox). A probe bind with SO_REUSEADDR fails only against a listener."""
        if not self.handed:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(self.address)
            except OSError as e:
                return e.errno == errno.EADDRINUSE
        return False

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            sock, self.sock = self.sock, None
        os.write(self._wake_w, b"x")
        if self._thread.ident is not None:
            self._thread.join(timeout=2.0)
        if sock is not None:
            sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
