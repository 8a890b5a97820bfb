"""The guest socket layer of one sandbox.

A guest's AF_INET socket is a host socket inside the sandbox's own network namespace, which
has a loopback interface and nothing else: everything on it (data, readiness, options, port
rules, TCP itself between two guest processes) is the host kernel's, natively, and no guest
packet can reach the host's network from there. The translator holds the control path: every
bind, connect and addressed send passes the sandbox's capabilities first and is then carried
out by the translator on the guest's own socket, with the address it checked.

Connections from the host (``-p``) need no translator work each: a guest listener on a
published port is replaced by the host's listening socket itself (linuxabi/forward.py), so the
guest accepts host connections natively and their bytes move with no copy. A guest-internal
connect to that port is redirected to the host listener (syscalls/net.py).

With ``--net tap:NAME`` the sandbox also has an uplink (net/uplink.py): linuxabi's own stack on
a TAP device, whose loop thread lives in this namespace too. Outbound TCP connects, listeners
on 0.0.0.0 and the names of the sockets involved are carried out there (see syscalls/net.py);
everything else stays as above.
"""
from __future__ import annotations

import ctypes
import os
import socket
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .uplink_proc import UplinkProcess

_SO_NETNS_COOKIE = 71
_CLONE_NEWNET = 0x40000000


def _netns_cookie(sock: socket.socket) -> int:
    """Which network namespace a socket lives in (0 where the kernel cannot say: before 5.14)."""
    try:
        return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, _SO_NETNS_COOKIE, 8), "little")
    except OSError:
        return 0


class Published(Protocol):
    """A port forwarded in with -p (linuxabi.forward.PortForwarder)."""

    address: tuple[str, int]  # the host's (ip, port)
    guest_name: tuple[str, int] | None  # the guest listener's own address, once it listens
    handed: bool

    def take(self, family: int, guest_name: tuple[str, int]) -> socket.socket: ...

    def guest_listens(self) -> bool: ...


class GuestNet:
    def __init__(self) -> None:
        self.published: dict[int, Published] = {}  # by guest port
        self._netns_fd = -1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            self._host_cookie = _netns_cookie(s)  # sockets with it are the host's (forwarded)
        self.uplink: "UplinkProcess | None" = None  # set by the embedder for --net tap:NAME

    # ---- the sandbox's network namespace -----------------------------------------------------

    def attach(self, netns_path: str) -> None:
        """The sandbox's network namespace (``/proc/PID/ns/net`` of its init)."""
        self._netns_fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)

    @property
    def netns_fd(self) -> int:
        if self._netns_fd < 0:
            raise RuntimeError("the sandbox's network namespace is not attached")
        return self._netns_fd

    def attach_fd(self, fd: int) -> None:
        """The sandbox's network namespace as an open fd (this object owns it from now on)."""
        self._netns_fd = fd

    def enter(self) -> None:
        """Move the calling thread (a forwarder's) into the sandbox's network namespace."""
        if self._netns_fd < 0:
            raise RuntimeError("the sandbox's network namespace is not attached")
        if ctypes.CDLL(None, use_errno=True).setns(self._netns_fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    def close(self) -> None:
        if self._netns_fd >= 0:
            os.close(self._netns_fd)
            self._netns_fd = -1

    # ---- connections forwarded from the host (-p) --------------------------------------------

    def publish(self, guest_port: int, forwarder: Published) -> None:
        self.published[guest_port] = forwarder

    def is_host_socket(self, sock: socket.socket) -> bool:
        """A socket of the host's network namespace (a published port's listener, a connection
        accepted on it or redirected to it), not of the sandbox's."""
        return bool(self.published) and bool(self._host_cookie) and _netns_cookie(sock) == self._host_cookie

    def host_local_name(self, sock: socket.socket) -> tuple[str, int] | None:
        """How the guest names the local end of a published port's host socket: its listener's
        own address, a connection's 127.0.0.1 and the guest's port, never the host's port.
        None for the sandbox's own sockets."""
        if not self.is_host_socket(sock):
            return None
        local = sock.getsockname()[1]
        for guest_port, fwd in self.published.items():
            if fwd.address[1] == local:
                if fwd.guest_name is not None and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    return fwd.guest_name
                return ("127.0.0.1", guest_port)
        return None

    def host_peer_name(self, sock: socket.socket) -> tuple[str, int] | None:
        """How the guest names the peer of a connection redirected to a published port (its
        own server, at 127.0.0.1 and the guest's port). None for any other socket."""
        if not self.is_host_socket(sock):
            return None
        try:
            peer = sock.getpeername()[:2]
        except OSError:
            return None
        peer = (peer[0].removeprefix("::ffff:"), peer[1])
        for guest_port, fwd in self.published.items():
            if fwd.address == peer:
                return ("127.0.0.1", guest_port)
        return None
