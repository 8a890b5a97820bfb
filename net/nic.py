"""One network interface as the stack sees it: a Stack on a virtio-net driver, and the
virtio-net device model behind it in the same memory region, served from a backend.
`step(now)` moves frames backend -> device -> driver -> stack and back; it does no I/O of
its own beyond what the backend does."""
from __future__ import annotations

from collections import deque

from mypy_extensions import mypyc_attr

from .ethernet import parse_mac
from .stack import Stack
from .virtio.device import DEFAULT_FEATURES, Backend, VirtioNetDevice
from .virtio.driver import WANTED, VirtioNetDriver
from .virtio.net_hdr import VirtioNetHdr


@mypyc_attr(allow_interpreted_subclasses=True)   # (compiled: net/mypyc_build.py; testbed.Host is not)
class Nic:
    def __init__(self, backend: Backend, mac: str | bytes, *, seed: int = 0, wanted: int = WANTED,
                 device_features: int = DEFAULT_FEATURES, mtu: int = 1500, block_size: int = 2048,
                 blocks: int = 512, name: str = "") -> None:
        mem = memoryview(bytearray(VirtioNetDriver.memory_size(block_size=block_size, rx_blocks=blocks,
                                                               tx_blocks=blocks)))
        self.backend = backend
        self.device = VirtioNetDevice(mem, backend, mac=parse_mac(mac) if isinstance(mac, str) else mac,
                                      mtu=mtu, features=device_features)
        self.driver = VirtioNetDriver(self.device, mem, wanted=wanted, block_size=block_size,
                                      rx_blocks=blocks, tx_blocks=blocks)
        self.stack = Stack(self.driver.mac, mtu=self.driver.mtu, seed=seed, tx_csum=self.driver.tx_csum,
                           tso=self.driver.tso4, name=name)
        self._pending: deque[tuple[VirtioNetHdr, bytes]] = deque()   # waiting for tx ring room

    def step(self, now: float) -> bool:
        """Move frames device -> stack -> device once; True if anything happened."""
        moved = self.device.poll()
        for hdr, frame in self.driver.receive():
            self.stack.input(frame, now, hdr)
            moved = True
        self.stack.poll(now)
        out = self.stack.take_output()
        if out:
            self._pending.extend(out)
            moved = True
        if self._pending:
            self.driver.reclaim_tx()
            while self._pending and self.driver.transmit(*self._pending[0]):
                self._pending.popleft()
            self.driver.flush()
            moved = self.device.poll() or moved
        return moved

    def next_deadline(self) -> float | None:
        return self.stack.next_deadline()

    @property
    def tx_backlog(self) -> int:
        return len(self._pending)
