"""The guest socket layer of one sandbox: AF_INET sockets whose data path is native.

A guest TCP socket is a host AF_UNIX stream socket the translator created (its "stand-in"):
read/write/send/recv/poll/epoll/shutdown/sendfile on it run natively. The control path is
here. A guest listener's stand-in listens on a rendezvous path in a private (0700) directory
of the translator; a guest connect() to a sandbox address is a host connect of the client's
stand-in to that path, so the two guest processes talk through one host socket pair and no
byte is copied by the translator. Each connection queued on a listener has a `Pending` record
(its AF_INET addresses) in the host kernel's own accept order, so accept() answers what Linux
would. A connection forwarded from the host (``-p``) queues a "doorbell" connection on the
listener, which makes it readable to native poll/epoll; accept() then hands the guest the
forwarded host TCP connection itself instead of the doorbell.

Guest sockets are recognised by the inode of their host object. The guest closes them
natively, so records are pruned against /proc/net/unix (the host sockets that still exist).
"""
from __future__ import annotations

import os
import select
import shutil
import socket
import stat
import tempfile
import threading

from linuxabi.abi import errno as E
from linuxabi.abi import flags as F

from .inet_sock import ANY, LOOPBACK, InetSocket, NetError, Pending, PortTable, State, is_loopback

_PRUNE_EVERY = 1024  # registrations between two sweeps of dead sockets
_HOST_BACKLOG = F.SOMAXCONN


def unix_inodes() -> set[int]:
    """Inodes of the AF_UNIX sockets that exist in this (the translator's) network namespace."""
    inodes: set[int] = set()
    with open("/proc/net/unix", "rb") as f:
        next(f, None)
        for line in f:
            parts = line.split()
            if len(parts) >= 7:
                inodes.add(int(parts[6]))
    return inodes


class GuestNet:
    def __init__(self, *, seed: int | None = None) -> None:
        self.sockets: dict[int, InetSocket] = {}  # host inode -> guest socket
        self.ports = PortTable(seed)
        self.forwarded_ports: dict[tuple[int, int], int] = {}  # host (addr, port) -> guest port
        self.lock = threading.Lock()  # the -p forwarders queue connections from their threads
        self._dir: str | None = None
        self._registered = 0
        self.counters = {"connects": 0, "accepts": 0, "refused": 0, "forwarded": 0}

    # ---- objects ---------------------------------------------------------------------------

    def _rendezvous_dir(self) -> str:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="linuxabi-net-")  # mode 0700: ours alone
        return self._dir

    def close(self) -> None:
        with self.lock:
            for sock in self.sockets.values():
                while sock.pending:
                    pend = sock.pending.popleft()
                    for fd in (pend.replacement, *pend.keep):
                        if fd >= 0:
                            os.close(fd)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def new_socket(self, sock_type: int, nonblock: bool) -> int:
        """A host stand-in for a new guest socket of ``sock_type``; the caller hands it over."""
        if sock_type != F.SOCK_STREAM:
            raise NetError(E.EPROTONOSUPPORT)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        fd = s.detach()
        os.set_blocking(fd, not nonblock)
        self._register(InetSocket(os.fstat(fd).st_ino, sock_type))
        return fd

    def _register(self, sock: InetSocket) -> InetSocket:
        self.sockets[sock.ino] = sock
        self._registered += 1
        if self._registered % _PRUNE_EVERY == 0:
            self._prune()
        return sock

    def _prune(self) -> None:
        live = unix_inodes()
        for ino in [i for i in self.sockets if i not in live]:
            del self.sockets[ino]

    def lookup(self, host_fd: int) -> InetSocket | None:
        """The guest socket behind ``host_fd``, or None for other objects."""
        st = os.fstat(host_fd)
        if not stat.S_ISSOCK(st.st_mode):
            return None
        return self.sockets.get(st.st_ino)

    def _alive(self, ino: int) -> bool:
        return ino in unix_inodes()

    # ---- control path ----------------------------------------------------------------------

    def bind(self, sock: InetSocket, addr: int, port: int) -> None:
        if sock.local is not None:
            raise NetError(E.EINVAL)
        if addr != ANY and not is_loopback(addr):
            raise NetError(E.EADDRNOTAVAIL)  # --net none: the sandbox has loopback only
        with self.lock:
            self.ports.bind(sock, addr, port, self._alive_for_bind())

    def _alive_for_bind(self):  # noqa: ANN202 - one /proc/net/unix read per bind, on demand
        cache: list[set[int]] = []

        def alive(ino: int) -> bool:
            if not cache:
                cache.append(unix_inodes())
            return ino in cache[0]
        return alive

    def listen(self, sock: InetSocket, host_fd: int, backlog: int) -> None:
        if sock.state == State.ESTABLISHED:
            raise NetError(E.EINVAL)
        with self.lock:
            if sock.local is None:
                self.ports.bind(sock, ANY, 0, self._alive_for_bind())
            with socket.socket(fileno=os.dup(host_fd)) as s:
                if not sock.rendezvous:
                    path = os.path.join(self._rendezvous_dir(), str(sock.ino))
                    s.bind(path)
                    sock.rendezvous = path
                s.listen(_HOST_BACKLOG)
            sock.state = State.LISTEN

    def connect(self, sock: InetSocket, host_fd: int, addr: int, port: int) -> None:
        """Connect a stream socket to a sandbox address (the only ones there are)."""
        if sock.state == State.LISTEN or sock.state == State.ESTABLISHED:
            raise NetError(E.EISCONN)
        if addr == ANY:
            addr = LOOPBACK  # Linux sends a connect to 0.0.0.0 to the local host
        if not is_loopback(addr):
            raise NetError(E.ENETUNREACH)
        with self.lock:
            lst = self.ports.listener(F.SOCK_STREAM, addr, port, lambda ino: True)
            if lst is None:
                self.counters["refused"] += 1
                raise NetError(E.ECONNREFUSED)
            if sock.local is None:
                self.ports.bind(sock, LOOPBACK, 0, self._alive_for_bind())
            elif sock.local[0] == ANY:
                sock.local = (addr, sock.local[1])
            try:
                _connect_now(host_fd, lst.rendezvous)
            except ConnectionRefusedError:  # the listener was closed by its holders
                lst.state = State.CLOSED
                self.counters["refused"] += 1
                raise NetError(E.ECONNREFUSED) from None
            lst.pending.append(Pending(peer=sock.local, local=(addr, port)))
            sock.peer = (addr, port)
            sock.state = State.ESTABLISHED
            self.counters["connects"] += 1

    def accept(self, lst: InetSocket, host_fd: int, nonblock: bool) -> tuple[int, tuple[int, int]]:
        """The next connection of a listener: (host fd to hand over, the peer's address), or
        EAGAIN."""
        with self.lock:
            if not select.select([host_fd], [], [], 0)[0]:
                raise NetError(E.EAGAIN)
            with socket.socket(fileno=os.dup(host_fd)) as s:
                conn_fd, _ = s._accept()  # type: ignore[attr-defined]  # the raw fd
            pend = lst.pending.popleft() if lst.pending else Pending((ANY, 0), lst.local or (ANY, 0))
            self.counters["accepts"] += 1
            if pend.replacement >= 0:
                os.close(conn_fd)
                for fd in pend.keep:
                    os.close(fd)
                conn_fd = pend.replacement  # a host TCP connection: it answers for itself
            else:
                self._register(InetSocket(os.fstat(conn_fd).st_ino, F.SOCK_STREAM, local=pend.local,
                                          peer=pend.peer, state=State.ESTABLISHED))
        os.set_blocking(conn_fd, not nonblock)
        return conn_fd, pend.peer

    # ---- connections forwarded from the host (-p) --------------------------------------------

    def forward_in(self, conn: socket.socket, guest_port: int) -> bool:
        """Queue host TCP connection ``conn`` on the guest's listener for ``guest_port``.

        False (the caller closes it) when nothing listens there."""
        with self.lock:
            lst = self.ports.listener(F.SOCK_STREAM, LOOPBACK, guest_port, lambda ino: True)
            if lst is None:
                return False
            bell = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            bell.setblocking(False)
            try:
                bell.connect(lst.rendezvous)
            except OSError:
                bell.close()
                return False
            peer_ip, peer_port = conn.getpeername()[:2]
            lst.pending.append(Pending(peer=(_aton(peer_ip), peer_port), local=(LOOPBACK, guest_port),
                                       replacement=conn.detach(), keep=[bell.detach()]))
            self.counters["forwarded"] += 1
            return True

    def host_name(self, local: tuple[str, int]) -> tuple[int, int] | None:
        """How the guest names a forwarded connection's local end (its own port, not ours)."""
        guest_port = self.forwarded_ports.get((_aton(local[0]), local[1]))
        if guest_port is None:
            guest_port = self.forwarded_ports.get((ANY, local[1]))
        return None if guest_port is None else (LOOPBACK, guest_port)


def _aton(ip: str) -> int:
    return int.from_bytes(socket.inet_aton(ip), "big")


def _connect_now(host_fd: int, path: str) -> None:
    """Connect without ever blocking the translator: a full backlog is EAGAIN, as for a
    non-blocking guest; the host listener's backlog is SOMAXCONN, so it is rare."""
    blocking = os.get_blocking(host_fd)
    if blocking:
        os.set_blocking(host_fd, False)
    try:
        with socket.socket(fileno=os.dup(host_fd)) as s:
            err = s.connect_ex(path)
        if err == E.EAGAIN:
            raise NetError(E.EAGAIN)
        if err == E.ECONNREFUSED or err == E.ENOENT:
            raise ConnectionRefusedError(err, "")
        if err:
            raise NetError(err)
    finally:
        if blocking:
            os.set_blocking(host_fd, True)
