"""The virtio-net device model (virtio 1.1, 5.1): queue 0 receives, queue 1 transmits.

It serves both queues from a backend: frames the driver transmits go to
`backend.send_frame(hdr, frame)`; frames the device pulls with `backend.recv_frame()` are
finished for the driver's negotiated offloads and written into its receive buffers (spanning
several with VIRTIO_NET_F_MRG_RXBUF). A driver that breaks the ring protocol gets
DEVICE_NEEDS_RESET, never an exception.
"""
from __future__ import annotations

import struct
from collections import Counter, deque
from typing import Callable, Final, Protocol

from . import features as F
from .net_hdr import HDR_LEN, VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4, VirtioNetHdr
from .offload import finish_for_peer
from .engine import DeviceEngine
from .ring import Chain, DeviceQueue, SplitLayout, VirtqueueError

RX_QUEUE: Final = 0
TX_QUEUE: Final = 1

NET_CONFIG: Final = struct.Struct("<6sHHH")     # mac, status, max_virtqueue_pairs, mtu
VIRTIO_NET_S_LINK_UP: Final = 1

DEFAULT_FEATURES: Final = (F.VIRTIO_F_VERSION_1 | F.VIRTIO_F_EVENT_IDX | F.VIRTIO_F_INDIRECT_DESC
                    | F.VIRTIO_NET_F_MAC | F.VIRTIO_NET_F_MTU | F.VIRTIO_NET_F_STATUS
                    | F.VIRTIO_NET_F_CSUM | F.VIRTIO_NET_F_GUEST_CSUM
                    | F.VIRTIO_NET_F_HOST_TSO4 | F.VIRTIO_NET_F_GUEST_TSO4
                    | F.VIRTIO_NET_F_MRG_RXBUF)


class Backend(Protocol):
    """Where a device's frames go and come from (a peer device, a pcap file, a TAP...)."""
    def send_frame(self, hdr: VirtioNetHdr, frame: bytes) -> None: ...
    def recv_frame(self) -> tuple[VirtioNetHdr, bytes] | None: ...


class VirtioNetDevice:
    def __init__(self, mem: memoryview, backend: Backend, *, mac: bytes, mtu: int = 1500,
                 features: int = DEFAULT_FEATURES, queue_max: int = 1024) -> None:
        self.mem, self.backend, self.mac, self.mtu = mem, backend, mac, mtu
        self.state = F.DeviceStatus(features)
        self.queue_max = queue_max
        self.queues: list[DeviceQueue | None] = [None, None]
        self.on_interrupt: Callable[[int], None] | None = None
        self._stats: Counter[str] = Counter()
        self._engine: DeviceEngine | None = None   # the data path in C, for a backend that offers it
        self._rx_pending: deque[tuple[VirtioNetHdr, bytes]] = deque()
        self.last_error = ""

    # -- transport registers (what virtio-pci's common config would expose)
    def get_status(self) -> int:
        return self.state.status

    @property
    def stats(self) -> Counter[str]:
        if self._engine is None:
            return self._stats
        return self._stats + self._engine.counters()[0]

    def set_status(self, value: int) -> None:
        self.state.write_status(value)
        if value == 0:
            self.queues = [None, None]
            self._rx_pending.clear()
            self._drop_engine()
        elif value & F.DRIVER_OK and self._engine is None and self.state.live and None not in self.queues:
            offer = getattr(self.backend, "device_engine", None)
            if offer is not None:                 # a TAP: its frames move in C (engine.py)
                rx, tx = self.queues
                assert rx is not None and tx is not None
                self._engine = offer(self.mem, self.state.negotiated, rx.layout, tx.layout)

    def _drop_engine(self) -> None:
        if self._engine is not None:
            self._stats += self._engine.counters()[0]
            self._engine.close()
            self._engine = None

    def get_device_features(self) -> int:
        return self.state.offered

    def set_driver_features(self, features: int) -> None:
        self.state.write_driver_features(features)

    def read_config(self) -> bytes:
        return NET_CONFIG.pack(self.mac, VIRTIO_NET_S_LINK_UP, 1, self.mtu)

    def queue_max_size(self, index: int) -> int:
        return self.queue_max if index in (RX_QUEUE, TX_QUEUE) else 0

    def setup_queue(self, index: int, size: int, desc: int, avail: int, used: int) -> None:
        st = self.state.status
        if index not in (RX_QUEUE, TX_QUEUE) or not st & F.FEATURES_OK or st & F.DRIVER_OK:
            raise ValueError("queue setup outside FEATURES_OK..DRIVER_OK, or no such queue")
        if size > self.queue_max:
            raise ValueError(f"queue size {size} above the device maximum {self.queue_max}")
        layout = SplitLayout.from_addresses(size, desc, avail, used, len(self.mem))
        feats = self.state.negotiated
        self.queues[index] = DeviceQueue(self.mem, layout, event_idx=bool(feats & F.VIRTIO_F_EVENT_IDX),
                                         indirect=bool(feats & F.VIRTIO_F_INDIRECT_DESC))

    def notify(self, index: int) -> None:
        """A kick from the driver: this model polls anyway, so it is only counted."""
        self._stats[f"kicks_q{index}"] += 1

    # -- the data path
    def poll(self) -> bool:
        """Move whatever can move; True if anything did."""
        if not self.state.live or None in self.queues:
            return False
        try:
            if self._engine is not None:
                return self._engine.poll()
            return self._tx() | self._rx()
        except VirtqueueError as e:
            self._stats["ring_errors"] += 1
            self.last_error = str(e)
            self.state.needs_reset()
            return False

    def _interrupt(self, index: int) -> None:
        self._stats[f"interrupts_q{index}"] += 1
        if self.on_interrupt is not None:
            self.on_interrupt(index)

    def _tx(self) -> bool:
        q = self.queues[TX_QUEUE]
        assert q is not None
        if not q.has_available():                # nothing posted: the notify state stays as set
            return False
        feats = self.state.negotiated
        moved = False
        q.disable_notify()
        while True:
            while (chain := q.pop()) is not None:
                moved = True
                if chain.readable_len < HDR_LEN or chain.writable:
                    self._stats["tx_bad_chain"] += 1
                else:
                    hdr = VirtioNetHdr.unpack(self.mem, chain.readable[0][0]) \
                        if chain.readable[0][1] >= HDR_LEN else VirtioNetHdr.unpack(q.read(chain)[:HDR_LEN])
                    if self._tx_hdr_ok(hdr, feats):
                        self._stats["tx_frames"] += 1
                        self.backend.send_frame(hdr, q.read(chain, HDR_LEN))
                    else:
                        self._stats["tx_bad_hdr"] += 1
                q.push(chain.head, 0)
            if not q.enable_notify():
                break
        if moved and q.need_interrupt():
            self._interrupt(TX_QUEUE)
        return moved

    @staticmethod
    def _tx_hdr_ok(hdr: VirtioNetHdr, feats: int) -> bool:
        if hdr.needs_csum and not feats & F.VIRTIO_NET_F_CSUM:
            return False
        if hdr.gso_type == VIRTIO_NET_HDR_GSO_NONE:
            return True
        return hdr.gso == VIRTIO_NET_HDR_GSO_TCPV4 and bool(feats & F.VIRTIO_NET_F_HOST_TSO4)

    def _rx(self) -> bool:
        q = self.queues[RX_QUEUE]
        assert q is not None
        feats = self.state.negotiated
        mrg = bool(feats & F.VIRTIO_NET_F_MRG_RXBUF)
        csum_ok = bool(feats & F.VIRTIO_NET_F_GUEST_CSUM)
        tso4_ok = bool(feats & F.VIRTIO_NET_F_GUEST_TSO4)
        pending, moved = self._rx_pending, False
        while True:
            if not pending:
                got = self.backend.recv_frame()
                if got is None:
                    break
                finished = finish_for_peer(got[0], got[1], csum_ok=csum_ok, tso4_ok=tso4_ok)
                if finished is None:
                    self._stats["rx_bad_offload"] += 1
                    continue
                pending.extend(finished)
            hdr, frame = pending[0]
            need = HDR_LEN + len(frame)
            chains: list[Chain] = []
            room = 0
            while room < need and (mrg or not chains):
                chain = q.pop()
                if chain is None:
                    break
                chains.append(chain)
                room += chain.writable_len
            if room < need:
                if chains and not mrg:          # this frame can never fit a buffer: drop it
                    q.unpop(len(chains))
                    pending.popleft()
                    self._stats["rx_too_big"] += 1
                    continue
                q.unpop(len(chains))           # wait for the driver to post more buffers
                if q.enable_notify():
                    continue
                break
            q.write(chains[0], hdr.pack_with(len(chains)))
            pos, offset = 0, HDR_LEN
            for chain in chains:
                n = q.write(chain, memoryview(frame)[pos:], offset)
                q.push(chain.head, offset + n)
                pos += n
                offset = 0
            pending.popleft()
            self._stats["rx_frames"] += 1
            moved = True
        if moved and q.need_interrupt():
            self._interrupt(RX_QUEUE)
        return moved
