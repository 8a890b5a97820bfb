"""The TAP's writer thread (net/tap_writer.c): what the loop queues leaves whole, in order,
without loss, also when the fd pushes back, and nothing queued is lost when it stops.

The far end is a SOCK_SEQPACKET socketpair (a TAP keeps message boundaries the same way),
with a small send buffer so that the writer meets EAGAIN and the ring fills up."""
from __future__ import annotations

import socket
import struct
import threading
import time

from net.tap import TapBackend
from net.virtio.net_hdr import HDR_LEN, VirtioNetHdr

SIZES = (60, 1514, 9000, 65550, 200)


def _frame(i: int) -> bytes:
    n = SIZES[i % len(SIZES)]
    return struct.pack("<I", i) + bytes([i & 0xFF]) * (n - 4)


def _pair(sndbuf: int) -> tuple[TapBackend, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    return TapBackend("w", fd=a.detach()), b


def _read_all(far: socket.socket, count: int, out: list[bytes], after: float = 0.0) -> None:
    time.sleep(after)
    far.settimeout(20)
    for _ in range(count):
        out.append(far.recv(1 << 17))


def test_frames_leave_whole_and_in_order_through_a_full_ring_and_a_full_socket() -> None:
    tap, far = _pair(256 << 10)
    try:
        assert tap.start_writer() and tap.writer_running
        count = 600                              # ~9 MiB: twice what the ring and the socket hold
        got: list[bytes] = []
        # the far end starts reading only after a while: meanwhile the socket and then the ring fill up
        reader = threading.Thread(target=_read_all, args=(far, count, got, 0.5))
        reader.start()
        hdr = VirtioNetHdr(flags=1, gso_type=1, hdr_len=54, gso_size=1448, csum_start=34, csum_offset=16)
        for i in range(count):
            tap.send_frame(hdr, _frame(i))
        reader.join(30)
        assert len(got) == count
        for i, msg in enumerate(got):
            assert msg[:HDR_LEN] == hdr.pack_with(0)
            assert msg[HDR_LEN:] == _frame(i), i
        st = tap.stats
        assert st["tx_frames"] == count and st["tx_bytes"] == sum(len(m) for m in got)
        assert st["tx_waits"] > 0                # the sender waited for room, and lost nothing
    finally:
        tap.close()
        far.close()


def test_stopping_writes_what_was_queued_and_keeps_the_counts() -> None:
    tap, far = _pair(8 << 20)
    try:
        tap.start_writer()
        for i in range(300):
            tap.send_frame(VirtioNetHdr(), _frame(i))
        tap.stop_writer()                        # at once: most frames are still in the ring
        assert not tap.writer_running
        far.setblocking(False)
        got = [far.recv(1 << 17) for _ in range(300)]
        assert [m[HDR_LEN:] for m in got] == [_frame(i) for i in range(300)]
        assert tap.stats["tx_frames"] == 300
        tap.send_frame(VirtioNetHdr(), b"after" * 20)   # written by the caller again
        assert far.recv(1 << 17)[HDR_LEN:] == b"after" * 20
        assert tap.stats["tx_frames"] == 301
    finally:
        tap.close()
        far.close()
