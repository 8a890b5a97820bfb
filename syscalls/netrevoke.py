"""After a revoke: the guest's sockets that no capability covers any more are shut down.

Sockets carry data natively, so a revoked bind/listen/connect capability must also reach the
ones already open (DESIGN.md, principle 6). The translator takes each guest AF_INET socket
from the fd tables (dups, forks and passed fds included) and asks the CSpace again: a listener
needs its bound address, a connection its peer (connect) or its local address (a connection
accepted on a bound port), a bound datagram socket its address. One that fails is shut down
for both directions on the host socket itself, which the guest shares: its reads see end of
file, its writes EPIPE, its accept EINVAL. Nothing is injected into the guest.
"""
from __future__ import annotations

import os
import socket
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from caps import CSpace
    from net.uplink import Names

    from .kernel import Kernel, Process

_INET = (socket.AF_INET, socket.AF_INET6)


def _unmapped(ip: str) -> str:
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip


def still_allowed(cs: "CSpace", sock: socket.socket, outside: "Names | None" = None) -> bool:
    """`outside`: the names the uplink gives a socket it carries (net/uplink.py), whose own
    names are loopback ones."""
    proto = "tcp" if sock.type == socket.SOCK_STREAM else "udp"
    ip, port = outside.local if outside is not None else sock.getsockname()[:2]
    ip = _unmapped(ip)
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        return cs.allows_net("listen", proto, ip, port) or (ip == "::" and cs.allows_net("listen", proto, "0.0.0.0", port))
    try:
        if outside is not None and outside.peer is not None:
            peer_ip, peer_port = outside.peer
        else:
            peer_ip, peer_port = sock.getpeername()[:2]
    except OSError:  # unconnected: only its bound address matters
        return port == 0 or cs.allows_net("bind", proto, ip, port) or (
            ip == "::" and cs.allows_net("bind", proto, "0.0.0.0", port))
    return cs.allows_net("connect", proto, _unmapped(peer_ip), peer_port) or cs.allows_net("bind", proto, ip, port)


def close_revoked_relays(kernel: "Kernel") -> list[tuple[str, int]]:
    """The uplink's UDP relays to remotes no capability covers any more are closed: a guest's
    native sends to them (its socket is bound to lo) then reach nothing."""
    net = kernel.net_if_any
    uplink = net.uplink if net is not None else None
    cs = kernel.cspace
    if uplink is None or cs is None:
        return []
    return uplink.udp_revoke(lambda remote: cs.allows_net("connect", "udp", remote[0], remote[1]))


def shut_revoked_sockets(kernel: "Kernel") -> list[tuple["Process", int]]:
    """Shut every guest socket its sandbox may no longer use; the (process, fd) pairs shut."""
    cs = kernel.cspace
    if cs is None or kernel.dup_guest_fd is None:
        return []
    net = kernel.net_if_any
    uplink = net.uplink if net is not None else None
    shut: list[tuple[Process, int]] = []
    done: set[int] = set()  # socket inodes: one shutdown per socket, however many fds name it
    for proc in list(kernel.processes.values()):
        for fd in kernel.proc_fds(proc):
            try:
                st = os.stat(f"/proc/{proc.host_pid}/fd/{fd}")
            except OSError:
                continue
            if not stat.S_ISSOCK(st.st_mode):
                continue
            if st.st_ino in done:
                shut.append((proc, fd))
                continue
            try:
                host_fd = kernel.dup_guest_fd(proc, fd)
            except OSError:
                continue
            with socket.socket(fileno=host_fd) as sock:
                if sock.family not in _INET:
                    continue
                try:
                    outside = uplink.names_of(st.st_ino) if uplink is not None else None
                    if still_allowed(cs, sock, outside):
                        continue
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # never connected (ENOTCONN): nothing flows through it anyway
            done.add(st.st_ino)
            shut.append((proc, fd))
    return shut
