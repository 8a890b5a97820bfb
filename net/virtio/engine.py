"""The virtio-net device's data path for a TAP, in C (net/virtio/device_engine.c, built into
``net._tapio`` by net/tapio_build.py).

VirtioNetDevice (device.py) hands both queues to a DeviceEngine when its backend offers one
(``TapBackend.device_engine``): the engine then pops, checks and pushes the rings, writes
frames to the TAP (through its writer thread when that runs, tap_writer.py) and reads frames
from it straight into the driver's buffers, with the Python model's checks and errors. The
Python model stays the definition and serves every other backend.
"""
from __future__ import annotations

import errno
import importlib
from collections import Counter
from typing import Any

from . import features as F
from .ring import SplitLayout, VirtqueueError

try:  # compiled by `make setup` (net/tapio_build.py)
    _tapio: Any = importlib.import_module("net._tapio")
    _ffi: Any = _tapio.ffi
    _lib: Any = _tapio.lib
except ImportError:  # not built: the Python device model serves the TAP
    _ffi = _lib = None

# the engine's counters, in its order (device_engine.c), as the Python model names them
_DEVICE = ("rx_frames", "tx_frames", "tx_bad_chain", "tx_bad_hdr", "rx_too_big", "rx_bad_offload",
           "interrupts_q0", "interrupts_q1")
_BACKEND = ("rx_frames", "rx_bytes", "rx_runt", "rx_errors", "tx_frames", "tx_bytes", "tx_errors")
_FEATURES = ((F.VIRTIO_F_EVENT_IDX, 1), (F.VIRTIO_F_INDIRECT_DESC, 2), (F.VIRTIO_NET_F_CSUM, 4),
             (F.VIRTIO_NET_F_HOST_TSO4, 8), (F.VIRTIO_NET_F_GUEST_CSUM, 16), (F.VIRTIO_NET_F_GUEST_TSO4, 32),
             (F.VIRTIO_NET_F_MRG_RXBUF, 64))


def available() -> bool:
    return _lib is not None


class DeviceEngine:
    """Both queues of one device on region ``mem`` (which it keeps alive), serving TAP fd."""

    def __init__(self, mem: memoryview, fd: int, negotiated: int, rx: SplitLayout, tx: SplitLayout) -> None:
        if _lib is None:
            raise RuntimeError("net._tapio is not built")
        self._mem = _ffi.from_buffer("char[]", mem, require_writable=True)
        feats = sum(bit for flag, bit in _FEATURES if negotiated & flag)
        e = _lib.engine_new(self._mem, len(mem), fd, _ffi.NULL, feats, rx.size, rx.desc, rx.avail, rx.used,
                            tx.size, tx.desc, tx.avail, tx.used)
        if e == _ffi.NULL:
            raise MemoryError("no memory for the device engine")
        self._e = e
        self._counters = _ffi.new(f"unsigned long long[{len(_DEVICE) + len(_BACKEND) + 2}]")
        self._final: tuple[Counter[str], Counter[str]] | None = None

    @property
    def running(self) -> bool:
        return self._e is not None

    def set_writer(self, writer: object) -> None:
        """Frames out through this writer thread's ring (a TapWriter's cdata), or None: write()."""
        if self._e is not None:
            _lib.engine_set_writer(self._e, writer if writer is not None else _ffi.NULL)

    def poll(self) -> bool:
        """Move what can move both ways; True if anything did. VirtqueueError on a ring error."""
        e = self._e
        if e is None:                            # closed (its TAP was): nothing moves
            return False
        tx = _lib.engine_tx(e)
        rx = _lib.engine_rx(e) if tx >= 0 else 0
        if tx < 0 or rx < 0:
            raise VirtqueueError(_ffi.string(_lib.engine_error(e)).decode())
        return bool(tx or rx)

    def counters(self) -> tuple[Counter[str], Counter[str]]:
        """The device's counters and the TAP's (frames and bytes each way, errors by errno)."""
        if self._final is not None:
            return self._final
        _lib.engine_counters(self._e, self._counters)
        c = list(self._counters)
        device = Counter({k: v for k, v in zip(_DEVICE, c) if v})
        raw = dict(zip(_BACKEND, c[len(_DEVICE):]))
        backend = Counter({k: v for k, v in raw.items() if v and not k.endswith("errors")})
        rx_errno, tx_errno = c[-2], c[-1]
        if raw["rx_errors"]:
            backend[f"rx_error_{errno.errorcode.get(rx_errno, rx_errno)}"] += raw["rx_errors"]
        if raw["tx_errors"]:
            backend[f"tx_error_{errno.errorcode.get(tx_errno, tx_errno)}"] += raw["tx_errors"]
        return device, backend

    def close(self) -> None:
        if self._e is not None:
            self._final = self.counters()
            _lib.engine_free(self._e)
            self._e = None
