"""``-p HOST_IP:HOST_PORT:GUEST_PORT``: host TCP connections forwarded into the sandbox.

One thread per published port accepts on the host and, from inside the sandbox's network
namespace, rings the guest's listener (net.socklayer.GuestNet.ring); the guest's accept() then
receives the host connection itself, so its bytes move natively, with no copy by the
translator. A connection that arrives while nothing in the sandbox listens on GUEST_PORT is
closed at once, as a refused one would be.
"""
from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import traceback
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
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((spec.host_ip, spec.host_port))
            self.sock.listen(socket.SOMAXCONN)
        except OSError:
            self.sock.close()
            raise
        self.address: tuple[str, int] = self.sock.getsockname()
        net.publish(spec.guest_port, self.address)
        self._thread = threading.Thread(target=self._serve, name=f"forward-{self.address[1]}", daemon=True)
        self._stopping = False

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        self.net.enter()  # this thread's doorbells are the sandbox's sockets
        while not self._stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                if self._stopping:
                    return
                continue  # ECONNABORTED and the like: the next one
            try:
                rung = self.net.ring(conn, self.spec.guest_port)
            except Exception:  # a bug of ours must not stop the forwarding
                traceback.print_exc(file=sys.stderr)
                rung = False
            if not rung:
                conn.close()

    def stop(self) -> None:
        self._stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of our thread
        except OSError:
            pass
        self._thread.join(timeout=2.0)
        self.sock.close()
