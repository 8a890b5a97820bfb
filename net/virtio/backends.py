"""Device backends: an in-process pair of links with seeded impairments, and pcap recording.

Every backend has `send_frame(hdr, frame)` (the device transmits) and `recv_frame()` (the
device pulls the next received frame or None). Time comes from a clock callable the owner
supplies (a simulated clock in tests), never from the host.
"""
from __future__ import annotations

import heapq
import random
import struct
from collections import Counter
from typing import BinaryIO, Callable

from .device import Backend
from .net_hdr import VirtioNetHdr
from .offload import finish_for_peer

Clock = Callable[[], float]


class PairLink:
    """Two backends (`a`, `b`) wired back to back.

    Each direction delays frames by `delay` seconds and, driven by one seeded
    random.Random, loses (`loss`), duplicates (`duplicate`) or reorders (`reorder`: held back
    an extra `reorder_delay`) them. With `segment` the sending side finishes offloads as a
    NIC would, so the wire carries only MTU-sized, fully checksummed frames and impairments
    hit each of them; without it GSO frames cross intact, as between two virtio devices on
    one host, and the receiving device finishes them for its own driver.
    """

    def __init__(self, clock: Clock, *, seed: int | random.Random = 0, loss: float = 0.0,
                 duplicate: float = 0.0, reorder: float = 0.0, delay: float = 0.0005,
                 reorder_delay: float = 0.002, segment: bool = True, queue_limit: int = 4096) -> None:
        self.clock = clock
        self.rng = seed if isinstance(seed, random.Random) else random.Random(seed)
        self.loss, self.duplicate, self.reorder = loss, duplicate, reorder
        self.delay, self.reorder_delay = delay, reorder_delay
        self.segment, self.queue_limit = segment, queue_limit
        self.stats: Counter[str] = Counter()
        self._queues: list[list[tuple[float, int, VirtioNetHdr, bytes]]] = [[], []]
        self._seq = 0
        self.a, self.b = LinkEnd(self, 0), LinkEnd(self, 1)

    def _carry(self, to: int, hdr: VirtioNetHdr, frame: bytes) -> None:
        if self.segment:
            frames = finish_for_peer(hdr, frame, csum_ok=False, tso4_ok=False)
            if frames is None:
                self.stats["bad_offload"] += 1
                return
        else:
            frames = [(hdr, frame)]
        q, rng, now = self._queues[to], self.rng, self.clock()
        for h, f in frames:
            self.stats["sent"] += 1
            if self.loss and rng.random() < self.loss:
                self.stats["lost"] += 1
                continue
            copies = 2 if self.duplicate and rng.random() < self.duplicate else 1
            self.stats["duplicated"] += copies - 1
            for _ in range(copies):
                at = now + self.delay
                if self.reorder and rng.random() < self.reorder:
                    self.stats["reordered"] += 1
                    at += self.reorder_delay
                if len(q) >= self.queue_limit:
                    self.stats["queue_drops"] += 1
                    continue
                self._seq += 1
                heapq.heappush(q, (at, self._seq, h, f))

    def _take(self, end: int) -> tuple[VirtioNetHdr, bytes] | None:
        q = self._queues[end]
        if q and q[0][0] <= self.clock():
            _, _, hdr, frame = heapq.heappop(q)
            return hdr, frame
        return None

    def next_event(self) -> float | None:
        times = [q[0][0] for q in self._queues if q]
        return min(times) if times else None

    def in_flight(self) -> int:
        return len(self._queues[0]) + len(self._queues[1])


class LinkEnd:
    """One end of a PairLink, as a device backend."""

    def __init__(self, link: PairLink, index: int) -> None:
        self.link, self.index = link, index

    def send_frame(self, hdr: VirtioNetHdr, frame: bytes) -> None:
        self.link._carry(1 - self.index, hdr, frame)

    def recv_frame(self) -> tuple[VirtioNetHdr, bytes] | None:
        return self.link._take(self.index)

    def next_event(self) -> float | None:
        q = self.link._queues[self.index]
        return q[0][0] if q else None


LINKTYPE_ETHERNET = 1
PCAP_MAGIC = 0xA1B2C3D4            # microsecond timestamps
_PCAP_HDR = struct.Struct("<IHHiIII")
_PCAP_REC = struct.Struct("<IIII")


class PcapWriter:
    """A backend that writes every frame it is sent to a classic pcap file; it never
    receives anything. `record` is also usable directly (PcapTap does)."""

    def __init__(self, out: BinaryIO, clock: Clock, *, snaplen: int = 262144) -> None:
        self.out, self.clock, self.snaplen = out, clock, snaplen
        out.write(_PCAP_HDR.pack(PCAP_MAGIC, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))
        self.frames = 0

    def record(self, frame: bytes | memoryview) -> None:
        t = self.clock()
        sec = int(t)
        usec = min(int(round((t - sec) * 1_000_000)), 999_999)
        cap = min(len(frame), self.snaplen)
        self.out.write(_PCAP_REC.pack(sec, usec, cap, len(frame)))
        self.out.write(frame[:cap])
        self.frames += 1

    def send_frame(self, hdr: VirtioNetHdr, frame: bytes) -> None:
        self.record(frame)

    def recv_frame(self) -> tuple[VirtioNetHdr, bytes] | None:
        return None


class PcapTap:
    """Wraps a backend and records both directions to a PcapWriter."""

    def __init__(self, inner: Backend, writer: PcapWriter) -> None:
        self.inner, self.writer = inner, writer

    def send_frame(self, hdr: VirtioNetHdr, frame: bytes) -> None:
        self.writer.record(frame)
        self.inner.send_frame(hdr, frame)

    def recv_frame(self) -> tuple[VirtioNetHdr, bytes] | None:
        got = self.inner.recv_frame()
        if got is not None:
            self.writer.record(got[1])
        return got

    def next_event(self) -> float | None:
        nxt = getattr(self.inner, "next_event", None)
        return nxt() if nxt else None

