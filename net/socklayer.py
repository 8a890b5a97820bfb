"""The guest socket layer of one sandbox.

A guest's AF_INET socket is a host socket inside the sandbox's own network namespace, which
has a loopback interface and nothing else: everything on it (data, readiness, options, port
rules, TCP itself between two guest processes) is the host kernel's, natively, and no guest
packet can reach the host's network from there. The translator holds the control path: every
bind, connect and addressed send passes the sandbox's capabilities first and is then carried
out by the translator on the guest's own socket, with the address it checked.

Connections from the host (``-p``) come in through that loopback: a forwarder thread, living
in the sandbox's network namespace, accepts on the host port and makes a "doorbell"
connection to the guest's listener, which makes it readable to native poll/epoll. The guest's
accept() on a published port is served here and hands over the host connection itself in
place of the doorbell, so the bytes move natively, with no copy by the translator.

With ``--net tap:NAME`` the sandbox also has an uplink (net/uplink.py): linuxabi's own stack on
a TAP device, whose loop thread lives in this namespace too. Outbound TCP connects, listeners
on 0.0.0.0 and the names of the sockets involved are carried out there (see syscalls/net.py);
everything else stays as above.
"""
from __future__ import annotations

import ctypes
import os
import queue
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .uplink import Uplink

_SO_NETNS_COOKIE = 71
_CLONE_NEWNET = 0x40000000


def _netns_cookie(sock: socket.socket) -> int:
    """Which network namespace a socket lives in (0 where the kernel cannot say: before 5.14)."""
    try:
        return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, _SO_NETNS_COOKIE, 8), "little")
    except OSError:
        return 0


@dataclass
class _Doorbell:
    conn: socket.socket  # the host connection the guest gets instead
    bell: socket.socket  # ours, in the sandbox: connected to the guest's listener
    rung: bool = False  # its connect() returned (the guest may accept before it does)
    answered: bool = False  # the guest accepted it


class GuestNet:
    def __init__(self) -> None:
        self.lock = threading.Lock()  # forwarder threads register doorbells concurrently
        self.published: dict[int, tuple[str, int]] = {}  # guest port -> host (ip, port)
        self.doorbells: dict[tuple[str, int], _Doorbell] = {}  # by the bell's local address
        self._netns_fd = -1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            self._host_cookie = _netns_cookie(s)  # sockets with it are the host's (forwarded)
        self.counters = {"forwarded": 0, "refused": 0}
        self._closer: queue.SimpleQueue[list[int | socket.socket]] = queue.SimpleQueue()
        threading.Thread(target=self._close_later, name="doorbell-closer", daemon=True).start()
        self.uplink: "Uplink | None" = None  # set by the embedder for --net tap:NAME

    # ---- the sandbox's network namespace -----------------------------------------------------

    def attach(self, netns_path: str) -> None:
        """The sandbox's network namespace (``/proc/PID/ns/net`` of its init)."""
        self._netns_fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)

    def enter(self) -> None:
        """Move the calling thread (a forwarder's) into the sandbox's network namespace."""
        if self._netns_fd < 0:
            raise RuntimeError("the sandbox's network namespace is not attached")
        if ctypes.CDLL(None, use_errno=True).setns(self._netns_fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    def close(self) -> None:
        with self.lock:
            for d in self.doorbells.values():
                d.conn.close()
                d.bell.close()
            self.doorbells.clear()
        if self._netns_fd >= 0:
            os.close(self._netns_fd)
            self._netns_fd = -1

    # ---- connections forwarded from the host (-p) --------------------------------------------

    def publish(self, guest_port: int, host_address: tuple[str, int]) -> None:
        self.published[guest_port] = host_address


    def ring(self, conn: socket.socket, guest_port: int) -> bool:
        """Queue host connection ``conn`` on the guest's listener for ``guest_port`` (called in
        a forwarder thread that has entered the sandbox's namespace). False: nothing listens."""
        bell = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        bell.settimeout(5.0)
        try:
            bell.bind(("127.0.0.1", 0))
        except OSError:
            bell.close()
            return False
        key = bell.getsockname()
        d = _Doorbell(conn, bell)
        with self.lock:  # registered before the guest can see the connection
            self.doorbells[key] = d
        try:
            bell.connect(("127.0.0.1", guest_port))
        except OSError:
            with self.lock:
                self.doorbells.pop(key, None)
            bell.close()
            self.counters["refused"] += 1
            return False
        with self.lock:
            d.rung = True
            if d.answered:  # the guest's accept came first: the bell is ours to close
                bell.close()
        self.counters["forwarded"] += 1
        return True

    def answer_door(self, accepted: int, peer: tuple[str, int]) -> socket.socket | None:
        """For a connection accepted on a published port (fd ``accepted``, from ``peer``): the
        host connection the guest gets instead if it is a doorbell's (``accepted`` is then
        closed), else None."""
        peer = (peer[0].removeprefix("::ffff:"), peer[1])  # a dual-stack listener: v4-mapped
        with self.lock:
            d = self.doorbells.pop(peer, None)
            if d is None:
                return None
            d.answered = True
            done: list[int | socket.socket] = [accepted, d.bell] if d.rung else [accepted]  # else
        self._closer.put(done)  # the forwarder, still in its connect(), closes the bell
        return d.conn

    def _close_later(self) -> None:
        """Closing the two ends of a doorbell runs TCP's FIN exchange (~15 us each): a thread
        of its own does it, off the loop that answers the guests."""
        while True:
            for sock in self._closer.get():
                if isinstance(sock, int):
                    os.close(sock)
                else:
                    sock.close()

    def host_local_name(self, sock: socket.socket) -> tuple[str, int] | None:
        """How the guest names the local end of a forwarded host connection: its own
        listener's address, never the host's port. None for the sandbox's own sockets."""
        if not self.published or not self._host_cookie or _netns_cookie(sock) != self._host_cookie:
            return None
        local = sock.getsockname()[:2]
        for guest_port, host_address in self.published.items():
            if host_address[1] == local[1]:
                return ("127.0.0.1", guest_port)
        return None

