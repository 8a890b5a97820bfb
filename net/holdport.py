"""The hold port: how a guest's outbound TCP connect waits, succeeds and fails natively.

A guest connect() to an outside address is carried out by the stack; meanwhile the guest's
own socket (in the sandbox's network namespace, loopback only) is connected to the hold
address, 127.0.0.1:H, where a listener whose accept queue is kept full drops every SYN: the
guest's socket stays in SYN_SENT, so poll/epoll show it not writable and a blocking connect
can park on it, exactly as for a connection in progress. Then, from inside that namespace:

- success: a socket bound to the hold address (SO_REUSEPORT, beside the listener) connects to
  the guest socket's address. The two SYNs cross (a simultaneous open, RFC 9293 3.5) and both
  become ESTABLISHED: the guest's connect completes with SO_ERROR 0, and that socket is the
  translator's end of the guest connection (bridged to the stack);
- failure: a RST from H (ECONNREFUSED), or an ICMP destination-unreachable quoting the
  guest's SYN (EHOSTUNREACH, ENETUNREACH), fails the connect as a real peer or router would;
  both need the SYN's sequence number, read from a raw socket that sees only SYNs to H (and
  sends the RST). A timeout needs nothing:
  the guest's own SYN retransmissions time out as the stack's do (same count, same backoff).

Everything here must be created by a thread inside the sandbox's network namespace; it needs
CAP_NET_RAW there (the translator owns the sandbox's user namespace).
"""
from __future__ import annotations

import ctypes
import errno
import socket
import struct

from .checksum import checksum

_SO_ATTACH_FILTER = 26
_ICMP_UNREACH = 3
_ICMP_CODE = {errno.ENETUNREACH: 0, errno.EHOSTUNREACH: 1, errno.ECONNREFUSED: 3}
LOOPBACK = "127.0.0.1"


def _syn_filter(port: int) -> list[tuple[int, int, int, int]]:
    """Classic BPF over an IPv4 packet: accept TCP segments to `port` with SYN and no ACK."""
    return [
        (0xB1, 0, 0, 0),        # ldxb 4*([0]&0xf)      X = IP header length
        (0x48, 0, 0, 2),        # ldh [x+2]             destination port
        (0x15, 0, 4, port),     # jeq #port, else drop
        (0x50, 0, 0, 13),       # ldb [x+13]            flags
        (0x54, 0, 0, 0x12),     # and #(SYN|ACK)
        (0x15, 0, 1, 0x02),     # jeq #SYN, else drop
        (0x06, 0, 0, 64),       # ret #64               keep the headers
        (0x06, 0, 0, 0),        # ret #0                drop
    ]


def _attach_filter(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    insns = b"".join(struct.pack("=HBBI", *i) for i in prog)
    buf = ctypes.create_string_buffer(insns, len(insns))
    fprog = struct.pack("=HxxxxxxQ", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


class HoldPort:
    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._fillers: list[socket.socket] = []
        self.capture: socket.socket | None = None
        self._icmp: socket.socket | None = None
        self.iss: dict[tuple[str, int], int] = {}  # guest address -> its SYN's sequence number
        try:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            self.listener.bind((LOOPBACK, 0))
            self.address: tuple[str, int] = self.listener.getsockname()
            self.capture = socket.socket(socket.AF_INET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.IPPROTO_TCP)
            _attach_filter(self.capture, _syn_filter(self.address[1]))
            self.capture.setblocking(False)
            self._icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.IPPROTO_ICMP)
            self.listener.listen(1)
            self._fill()
            self.drain_capture()      # the fillers' own SYNs
            self.iss.clear()
        except BaseException:
            self.close()
            raise

    def _fill(self) -> None:
        """Two connections nobody accepts fill a backlog-1 queue: every later SYN is dropped."""
        for _ in range(2):
            f = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            self._fillers.append(f)
            f.settimeout(2.0)
            f.connect(self.address)

    # ---- SYN sequence numbers ------------------------------------------------------------
    def drain_capture(self) -> None:
        """Read the guests' SYNs to H seen so far (called when the capture socket is readable)."""
        assert self.capture is not None
        while True:
            try:
                pkt = self.capture.recv(128)
            except (BlockingIOError, InterruptedError):
                return
            if len(pkt) < 20 or pkt[0] >> 4 != 4:
                continue
            ihl = (pkt[0] & 15) * 4
            if len(pkt) < ihl + 8:
                continue
            sport, _dport, seq = struct.unpack_from("!HHI", pkt, ihl)
            src = socket.inet_ntoa(pkt[12:16])
            self.iss[(src, sport)] = seq
            if len(self.iss) > 4096:  # guests that went away: forget the oldest
                del self.iss[next(iter(self.iss))]

    # ---- outcomes ------------------------------------------------------------------------
    def answer(self, guest: tuple[str, int]) -> socket.socket:
        """Complete the guest's connect by a simultaneous open; the returned socket (non-
        blocking, its connect in progress) is the translator's end of the connection."""
        self.iss.pop(guest, None)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(self.address)
            code = s.connect_ex(guest)
            if code not in (0, errno.EINPROGRESS):
                raise OSError(code, "answer connect failed")
        except BaseException:
            s.close()
            raise
        return s

    def refuse(self, guest: tuple[str, int], code: int) -> bool:
        """Fail the guest's connect with `code`; False if that cannot be said so (a timeout:
        the guest's own SYN timer says it) or its SYN was never seen. ECONNREFUSED is a RST,
        as a real peer's; the others are ICMP errors, which the kernel also leaves on the
        socket's error queue (6.x, even without IP_RECVERR): the translator empties it when
        the guest connects that socket again (syscalls/net.py)."""
        self.drain_capture()
        seq = self.iss.pop(guest, None)
        if seq is None or self.capture is None or self._icmp is None:
            return False
        src, dst = socket.inet_aton(guest[0]), socket.inet_aton(self.address[0])
        try:
            if code == errno.ECONNREFUSED:
                tcp = struct.pack("!HHIIBBHHH", self.address[1], guest[1], 0, (seq + 1) & 0xFFFFFFFF,
                                  5 << 4, 0x14, 0, 0, 0)  # RST|ACK acking the SYN
                pseudo = dst + src + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
                tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
                self.capture.sendto(tcp, (guest[0], 0))
                return True
            icmp_code = _ICMP_CODE.get(code)
            if icmp_code is None:
                return False
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, socket.IPPROTO_TCP, 0, src, dst)
            ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
            msg = struct.pack("!BBHI", _ICMP_UNREACH, icmp_code, 0, 0) + ip + struct.pack(
                "!HHI", guest[1], self.address[1], seq)
            msg = msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]
            self._icmp.sendto(msg, (guest[0], 0))
        except OSError:
            return False
        return True

    def close(self) -> None:
        for s in (*self._fillers, self.listener, self.capture, self._icmp):
            if s is not None:
                s.close()
        self._fillers.clear()
