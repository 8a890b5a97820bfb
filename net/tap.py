"""A TAP device as a virtio-net backend: the host side of the only door to the real world.

The fd is opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and a 12-byte (VERSION_1) vnet
header, so every read and write is `virtio_net_hdr + Ethernet frame`: the kernel takes our
partial checksums and TSO super-frames as they are, and (after `set_offload`) hands us its
own. The fd is non-blocking; an event loop polls `fileno()` for reading. This module does
the I/O and nothing else: plain ioctl/read/writev, no buffering beyond one frame.
"""
from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections import Counter

from . import tap_writer
from .virtio import engine
from .virtio.ring import SplitLayout
from .virtio.net_hdr import HDR_LEN, VirtioNetHdr

TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNGETFEATURES = 0x800454CF
TUNSETOFFLOAD = 0x400454D0
TUNGETIFF = 0x800454D2
TUNSETVNETHDRSZ = 0x400454D8
TUNSETVNETLE = 0x400454DC

IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000

TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02

IFNAMSIZ = 16
_IFREQ = struct.Struct(f"{IFNAMSIZ}sH22x")
# the largest frame the kernel hands a vnet-header TAP: a 64 KiB GSO packet plus headers
READ_SIZE = HDR_LEN + 14 + 65535 + 64


def open_tap(name: str) -> tuple[int, str]:
    """Open (creating if needed) TAP `name`; returns (non-blocking fd, the kernel's name)."""
    if len(name.encode()) >= IFNAMSIZ:
        raise ValueError(f"interface name too long: {name!r}")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        res = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
        fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", HDR_LEN))
        try:                                     # VERSION_1 headers are little-endian
            fcntl.ioctl(fd, TUNSETVNETLE, struct.pack("i", 1))
        except OSError:
            pass                                 # older kernels: native order, fine on x86
    except BaseException:
        os.close(fd)
        raise
    return fd, _IFREQ.unpack(res)[0].rstrip(b"\0").decode()


class TapBackend:
    """Backend protocol (`send_frame` / `recv_frame`) over a TAP fd (or any fd that keeps
    message boundaries and carries the same header, such as a SOCK_SEQPACKET socketpair)."""

    def __init__(self, name: str = "lxa%d", *, fd: int | None = None) -> None:
        if fd is None:
            fd, name = open_tap(name)
        self.fd, self.name = fd, name
        self.offload = 0
        self._stats: Counter[str] = Counter()
        self._writer: tap_writer.TapWriter | None = None
        self._engine: engine.DeviceEngine | None = None   # the device's data path in C, when it took it

    def fileno(self) -> int:
        return self.fd

    @property
    def stats(self) -> Counter[str]:
        """Frames and bytes each way, and what went wrong (the writer thread's and the
        device engine's I/O too)."""
        st = self._stats
        if self._writer is not None:
            st = st + self._writer.counters()
        if self._engine is not None:
            st = st + self._engine.counters()[1]
        return st

    def device_engine(self, mem: memoryview, negotiated: int, rx: SplitLayout,
                      tx: SplitLayout) -> engine.DeviceEngine | None:
        """For the virtio-net device on this TAP (device.py): its data path in C, reading and
        writing this fd (through the writer thread while it runs), or None where the module is
        not built (the device then calls recv_frame and send_frame)."""
        if not engine.available() or self.fd < 0:
            return None
        self._retire_engine()                   # (a device reset: the old one's counts stay)
        self._engine = engine.DeviceEngine(mem, self.fd, negotiated, rx, tx)
        self._engine.set_writer(self._writer.cdata if self._writer is not None else None)
        return self._engine

    def _retire_engine(self) -> None:
        if self._engine is not None:
            self._stats += self._engine.counters()[1]
            self._engine.close()
            self._engine = None

    def start_writer(self) -> bool:
        """Hand the writes to a writer thread (tap_writer.py), if it is built; True if so.
        An event loop in a thread of its own starts it and `stop_writer`s it when it stops."""
        if self._writer is None and tap_writer.available() and self.fd >= 0:
            self._writer = tap_writer.TapWriter(self.fd)
            if self._engine is not None:
                self._engine.set_writer(self._writer.cdata)
        return self._writer is not None

    @property
    def engine_running(self) -> bool:
        """Whether the device on this TAP moves its frames in C (device_engine)."""
        return self._engine is not None and self._engine.running

    @property
    def writer_running(self) -> bool:
        return self._writer is not None

    def stop_writer(self) -> None:
        """Write what is queued and stop the thread (its counters are kept)."""
        w, self._writer = self._writer, None
        if w is not None:
            if self._engine is not None:
                self._engine.set_writer(None)
            done, last = w.close()
            if done["tx_errors"]:
                self._stats[f"tx_error_{errno.errorcode.get(last, last)}"] += done["tx_errors"]
            self._stats["tx_frames"] += done["tx_frames"]
            self._stats["tx_bytes"] += done["tx_bytes"]

    def set_offload(self, *, csum: bool, tso4: bool) -> int:
        """Let the kernel send us partial checksums (csum) and TCPv4 GSO frames (tso4), as far
        as the driver negotiated taking them; returns the TUN_F_* flags in force."""
        flags = (TUN_F_CSUM if csum else 0) | (TUN_F_TSO4 if csum and tso4 else 0)
        try:
            fcntl.ioctl(self.fd, TUNSETOFFLOAD, flags)
        except OSError:                          # not a TAP (a socketpair in tests): no offloads
            self._stats["offload_refused"] += 1
            flags = 0
        self.offload = flags
        return flags

    def send_frame(self, hdr: VirtioNetHdr, frame: bytes) -> None:
        if self._writer is not None:
            self._writer.send(hdr.pack_with(0), frame if type(frame) is bytes else bytes(frame))
            return
        try:
            os.writev(self.fd, (hdr.pack_with(0), frame))
        except BlockingIOError:
            self._stats["tx_full"] += 1
            return
        except OSError as e:                     # EIO: link down; EINVAL: a header it refused
            self._stats[f"tx_error_{errno.errorcode.get(e.errno or 0, e.errno)}"] += 1
            return
        self._stats["tx_frames"] += 1
        self._stats["tx_bytes"] += len(frame)

    def recv_frame(self) -> tuple[VirtioNetHdr, bytes] | None:
        while True:
            try:
                buf = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return None
            except OSError as e:
                self._stats[f"rx_error_{errno.errorcode.get(e.errno or 0, e.errno)}"] += 1
                return None
            if len(buf) >= HDR_LEN + 14:
                break
            self._stats["rx_runt"] += 1
            if not buf:
                return None
        self._stats["rx_frames"] += 1
        self._stats["rx_bytes"] += len(buf) - HDR_LEN
        return VirtioNetHdr.unpack_with(buf, 1), buf[HDR_LEN:]

    def close(self) -> None:
        self.stop_writer()
        self._retire_engine()                   # (the device's: it must not read a closed fd)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
