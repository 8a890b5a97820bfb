"""The virtio-net driver the stack sits on: it negotiates with a device, lays out both
virtqueues and fixed-size packet buffers in the shared region, and moves frames in and out."""
from __future__ import annotations

from collections import Counter
from typing import Final, Protocol

from . import features as F
from .device import NET_CONFIG, RX_QUEUE, TX_QUEUE
from .net_hdr import HDR_LEN, VirtioNetHdr
from .ring import DriverQueue, SplitLayout

WANTED: Final = (F.VIRTIO_F_VERSION_1 | F.VIRTIO_F_EVENT_IDX | F.VIRTIO_F_INDIRECT_DESC
          | F.VIRTIO_NET_F_MAC | F.VIRTIO_NET_F_MTU | F.VIRTIO_NET_F_STATUS
          | F.VIRTIO_NET_F_CSUM | F.VIRTIO_NET_F_GUEST_CSUM | F.VIRTIO_NET_F_HOST_TSO4
          | F.VIRTIO_NET_F_GUEST_TSO4 | F.VIRTIO_NET_F_MRG_RXBUF)

MAX_GSO_FRAME: Final = 14 + 65535          # Ethernet header + the largest IPv4 datagram


class DeviceTransport(F.Transport, Protocol):
    def read_config(self) -> bytes: ...
    def queue_max_size(self, index: int) -> int: ...
    def setup_queue(self, index: int, size: int, desc: int, avail: int, used: int) -> None: ...
    def notify(self, index: int) -> None: ...


class BlockPool:
    """Fixed-size packet buffers in the shared region, handed out from a free list."""

    def __init__(self, base: int, block_size: int, count: int) -> None:
        self.base, self.block_size, self.count = base, block_size, count
        self._free = [base + i * block_size for i in range(count - 1, -1, -1)]

    @property
    def end(self) -> int:
        return self.base + self.block_size * self.count

    @property
    def available(self) -> int:
        return len(self._free)

    def alloc(self, n: int) -> list[int] | None:
        if n > len(self._free):
            return None
        return [self._free.pop() for _ in range(n)]

    def free(self, blocks: list[int]) -> None:
        self._free.extend(blocks)


def _align(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1)


class VirtioNetDriver:
    """Queue 0 receives into posted buffers, queue 1 transmits; the stack calls `transmit`,
    `flush` and `receive`."""

    @staticmethod
    def memory_size(queue_size: int = 256, *, block_size: int = 2048, rx_blocks: int = 512,
                    tx_blocks: int = 512) -> int:
        tx = SplitLayout.at(queue_size, SplitLayout.at(queue_size).end)
        return _align(tx.end, 64) + block_size * (rx_blocks + tx_blocks)

    def __init__(self, device: DeviceTransport, mem: memoryview, *, wanted: int = WANTED,
                 queue_size: int = 256, block_size: int = 2048, rx_blocks: int = 512,
                 tx_blocks: int = 512, fallback_mac: bytes = b"\x02\0\0\0\0\x01") -> None:
        self.device, self.mem = device, mem
        self.features = F.negotiate(device, wanted)
        feats = self.features
        size = min(queue_size, device.queue_max_size(RX_QUEUE), device.queue_max_size(TX_QUEUE))
        rx_lay = SplitLayout.at(size, 0)
        tx_lay = SplitLayout.at(size, rx_lay.end)
        base = _align(tx_lay.end, 64)
        self.rx_pool = BlockPool(base, block_size, rx_blocks)
        self.tx_pool = BlockPool(self.rx_pool.end, block_size, tx_blocks)
        if self.tx_pool.end > len(mem):
            raise ValueError(f"shared memory too small: need {self.tx_pool.end} bytes")
        event_idx, indirect = bool(feats & F.VIRTIO_F_EVENT_IDX), bool(feats & F.VIRTIO_F_INDIRECT_DESC)
        self.rx = DriverQueue(mem, rx_lay, event_idx=event_idx, indirect=indirect)
        self.tx = DriverQueue(mem, tx_lay, event_idx=event_idx, indirect=indirect)
        for index, lay in ((RX_QUEUE, rx_lay), (TX_QUEUE, tx_lay)):
            device.setup_queue(index, size, lay.desc, lay.avail, lay.used)
        device.set_status(F.ACKNOWLEDGE | F.DRIVER | F.FEATURES_OK | F.DRIVER_OK)
        mac, _status, _pairs, mtu = NET_CONFIG.unpack(device.read_config())
        self.mac = mac if feats & F.VIRTIO_NET_F_MAC else fallback_mac
        self.mtu = mtu if feats & F.VIRTIO_NET_F_MTU else 1500
        self.block_size = block_size
        self.mrg = bool(feats & F.VIRTIO_NET_F_MRG_RXBUF)
        # without mergeable buffers each receive chain must hold the largest frame (5.1.6.3.1)
        biggest = MAX_GSO_FRAME if feats & F.VIRTIO_NET_F_GUEST_TSO4 else 14 + self.mtu
        self._rx_chain_blocks = 1 if self.mrg else -(-(HDR_LEN + biggest) // block_size)
        self._partial: tuple[VirtioNetHdr, list[memoryview], list[list[int]], int] | None = None
        self.stats: Counter[str] = Counter()
        self.refill()

    # offloads the stack may use / must expect
    @property
    def tx_csum(self) -> bool:
        return bool(self.features & F.VIRTIO_NET_F_CSUM)

    @property
    def tso4(self) -> bool:
        return bool(self.features & F.VIRTIO_NET_F_HOST_TSO4)

    @property
    def broken(self) -> bool:
        return bool(self.device.get_status() & (F.DEVICE_NEEDS_RESET | F.FAILED))

    # -- transmit
    def transmit(self, hdr: VirtioNetHdr, frame: bytes | memoryview) -> bool:
        """Queue one frame; False if the ring or the buffers are full (try again later)."""
        total = HDR_LEN + len(frame)
        bs = self.block_size
        if total <= bs:                          # one block, one descriptor: most frames
            free = self.tx_pool._free
            if not free:
                self.reclaim_tx()
            if free:
                b = free.pop()
                mem = self.mem
                hdr.pack_into(mem, b)
                mem[b + HDR_LEN:b + total] = frame
                if self.tx.add_one(b, total, False, [b]) is None:
                    self.reclaim_tx()
                    if self.tx.add_one(b, total, False, [b]) is None:
                        free.append(b)
                        self.stats["tx_full"] += 1
                        return False
                self.stats["tx_frames"] += 1
                return True
        n = -(-total // bs)
        extra = 1 if n > 1 and self.tx.indirect else 0
        blocks = self.tx_pool.alloc(n + extra)
        if blocks is None:
            self.reclaim_tx()
            blocks = self.tx_pool.alloc(n + extra)
            if blocks is None:
                self.stats["tx_full"] += 1
                return False
        mem, fv = self.mem, memoryview(frame)
        hdr.pack_into(mem, blocks[0])
        bufs, pos, first = [], 0, True
        for b in blocks[:n]:
            off = HDR_LEN if first else 0
            k = min(bs - off, len(frame) - pos)
            mem[b + off:b + off + k] = fv[pos:pos + k]
            bufs.append((b, off + k))
            pos += k
            first = False
        head = self.tx.add(bufs, (), blocks, indirect_table=blocks[n] if extra else None)
        if head is None:
            self.reclaim_tx()
            head = self.tx.add(bufs, (), blocks, indirect_table=blocks[n] if extra else None)
            if head is None:
                self.tx_pool.free(blocks)
                self.stats["tx_full"] += 1
                return False
        self.stats["tx_frames"] += 1
        return True

    def flush(self) -> None:
        """Kick the device for everything queued, unless it asked not to be."""
        if self.tx.kick_needed():
            self.device.notify(TX_QUEUE)

    def reclaim_tx(self) -> None:
        free = self.tx_pool._free
        for blocks, _ in self.tx.take_used():
            free.extend(blocks)  # type: ignore[arg-type]

    # -- receive
    def refill(self) -> None:
        k = self._rx_chain_blocks
        extra = 1 if k > 1 and self.rx.indirect else 0
        bs, added = self.block_size, False
        if k == 1:                               # mergeable buffers: one block per chain
            rx, pool = self.rx, self.rx_pool._free
            while rx._free and pool:
                b = pool.pop()
                rx.add_one(b, bs, True, [b])
                added = True
            if added and rx.kick_needed():
                self.device.notify(RX_QUEUE)
            return
        while self.rx.num_free >= (1 if extra else k):
            blocks = self.rx_pool.alloc(k + extra)
            if blocks is None:
                break
            head = self.rx.add((), [(b, bs) for b in blocks[:k]], blocks,
                               indirect_table=blocks[k] if extra else None)
            assert head is not None
            added = True
        if added and self.rx.kick_needed():
            self.device.notify(RX_QUEUE)

    def receive(self) -> list[tuple[VirtioNetHdr, bytes]]:
        """Frames the device delivered since the last call (receive buffers are re-posted)."""
        out: list[tuple[VirtioNetHdr, bytes]] = []
        mem, bs = self.mem, self.block_size
        pool = self.rx_pool._free
        for blocks, length in self.rx.take_used():
            assert isinstance(blocks, list)
            if self._partial is None and HDR_LEN <= length <= bs:
                b = blocks[0]
                hdr = VirtioNetHdr.unpack(mem, b)
                if hdr.num_buffers <= 1 or not self.mrg:    # a frame in one buffer: most of them
                    out.append((hdr if hdr.num_buffers == 1 else hdr._replace(num_buffers=1),
                                bytes(mem[b + HDR_LEN:b + length])))
                    pool.extend(blocks)
                    continue
            if self._partial is None:
                if length < HDR_LEN or length > bs * self._rx_chain_blocks:
                    self.stats["rx_bad_length"] += 1
                    self.rx_pool.free(blocks)
                    continue
                hdr = VirtioNetHdr.unpack(mem, blocks[0])
                parts, left, off = [], length, HDR_LEN
                for b in blocks[:self._rx_chain_blocks]:
                    k = min(bs, left)
                    if k > off:
                        parts.append(mem[b + off:b + k])
                    left -= k
                    off = 0
                    if not left:
                        break
                remaining = max(hdr.num_buffers, 1) - 1 if self.mrg else 0
                self._partial = (hdr, parts, [blocks], remaining)
            else:
                hdr, parts, owned, remaining = self._partial
                if length > bs:
                    self.stats["rx_bad_length"] += 1
                    length = bs
                parts.append(mem[blocks[0]:blocks[0] + length])
                owned.append(blocks)
                self._partial = (hdr, parts, owned, remaining - 1)
            hdr, parts, owned, remaining = self._partial
            if remaining:
                continue
            self._partial = None
            out.append((hdr if hdr.num_buffers == 1 else hdr._replace(num_buffers=1),
                        bytes(parts[0]) if len(parts) == 1 else b"".join(parts)))
            for blocks in owned:
                self.rx_pool.free(blocks)
        if out:
            self.stats["rx_frames"] += len(out)
            self.refill()
        return out
