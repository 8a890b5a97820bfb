"""The TAP's writer thread: frames queued by the uplink's loop, written by a native thread
(net/tap_writer.c, built by net/tapio_build.py).

A write to a TAP runs the receiving namespace's input path, the reader's wake-up included, in
the writer's context: under load a third of the loop thread's time, with the stack stalled
meanwhile. Queued, the loop pays a copy and the thread, which needs no interpreter lock, the
write. Order is kept; a full ring makes the sender wait for room, never drops a frame.
"""
from __future__ import annotations

from collections import Counter

try:  # compiled by `make setup` (net/tapio_build.py)
    from net._tapio import ffi as _ffi
    from net._tapio import lib as _lib
except ImportError:  # not built: the backend writes each frame itself
    _ffi = _lib = None

RING = 4 << 20      # bytes: ~60 of the largest (64 KiB TSO) frames, thousands of small ones


def available() -> bool:
    return _lib is not None


class TapWriter:
    """One writer thread for one TAP fd (which stays the caller's to close, after `close`)."""

    def __init__(self, fd: int) -> None:
        if _lib is None:
            raise RuntimeError("net._tapio is not built")
        w = _lib.tapw_new(fd, RING)
        if w == _ffi.NULL:
            raise OSError(_ffi.errno, "cannot start the TAP's writer thread")
        self._w = w
        self._counters = _ffi.new("unsigned long long[5]")

    @property
    def cdata(self) -> object:
        """The writer itself, for C code that queues frames (virtio/device_engine.c)."""
        return self._w

    def send(self, hdr: bytes, frame: bytes) -> None:
        """Queue one frame behind its vnet header (waits while the ring is full)."""
        rc = _lib.tapw_send(self._w, hdr, len(hdr), frame, len(frame))
        if rc:
            raise OSError(-rc, "frame too large for the writer's ring")

    def flush(self, timeout: float = 1.0) -> bool:
        """Wait until every queued frame is written; False if that took longer than timeout."""
        return bool(_lib.tapw_flush(self._w, int(timeout * 1000)))

    def counters(self) -> Counter[str]:
        """tx_frames, tx_bytes, tx_errors and tx_waits (times the ring was full) so far."""
        _lib.tapw_counters(self._w, self._counters)
        c = self._counters
        return Counter({"tx_frames": c[0], "tx_bytes": c[1], "tx_errors": c[2], "tx_waits": c[4]})

    def last_error(self) -> int:
        _lib.tapw_counters(self._w, self._counters)
        return int(self._counters[3])

    def close(self) -> tuple[Counter[str], int]:
        """Write what is queued, stop the thread, free the ring; the final counters and the
        last write's errno."""
        if self._w is None:
            return Counter(), 0
        self.flush(2.0)
        final, last = self.counters(), self.last_error()
        _lib.tapw_free(self._w)
        self._w = None
        return final, last
