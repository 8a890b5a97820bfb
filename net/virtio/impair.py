"""A backend wrapper that impairs traffic both ways as netem would: seeded loss, a delay, and
reordering (a fraction of frames skips the delay and so overtakes the ones held back, as
`netem delay D reorder P` does). GSO super-frames are cut into MTU frames first so that
loss hits segments, not 64 KiB at once. For links where `tc netem` is not available and for
manual experiments; the clock is the owner's."""
from __future__ import annotations

import heapq
import random
from collections import Counter
from typing import Callable

from .device import Backend
from .net_hdr import VirtioNetHdr
from .offload import finish_for_peer

Clock = Callable[[], float]
_Queue = list[tuple[float, int, VirtioNetHdr, bytes]]


class ImpairedBackend:
    def __init__(self, inner: Backend, clock: Clock, *, seed: int = 0, loss: float = 0.0,
                 delay: float = 0.0, reorder: float = 0.0, directions: str = "both",
                 queue_limit: int = 10000) -> None:
        self.inner, self.clock = inner, clock
        self.directions = directions            # "in" (towards the stack), "out", or "both"
        self.rng = random.Random(seed)
        self.loss, self.delay, self.reorder, self.queue_limit = loss, delay, reorder, queue_limit
        self.stats: Counter[str] = Counter()
        self._in: _Queue = []
        self._out: _Queue = []
        self._seq = 0

    def fileno(self) -> int:
        return self.inner.fileno()  # type: ignore[attr-defined]

    def _admit(self, q: _Queue, hdr: VirtioNetHdr, frame: bytes, now: float, way: str) -> None:
        if self.directions not in (way, "both") or not (self.loss or self.delay):
            self._seq += 1                      # this direction passes untouched
            heapq.heappush(q, (now, self._seq, hdr, frame))
            return
        frames = finish_for_peer(hdr, frame, csum_ok=True, tso4_ok=False)
        for h, f in frames or ():
            self.stats["frames"] += 1
            if self.loss and self.rng.random() < self.loss:
                self.stats["lost"] += 1
                continue
            at = now
            if self.delay and not (self.reorder and self.rng.random() < self.reorder):
                at += self.delay
            elif self.delay:
                self.stats["reordered"] += 1
            if len(q) >= self.queue_limit:
                self.stats["queue_drops"] += 1
                continue
            self._seq += 1
            heapq.heappush(q, (at, self._seq, h, f))

    def send_frame(self, hdr: VirtioNetHdr, frame: bytes) -> None:
        self._admit(self._out, hdr, frame, self.clock(), "out")
        self.pump()

    def recv_frame(self) -> tuple[VirtioNetHdr, bytes] | None:
        now = self.clock()
        for _ in range(64):                      # bounded: the device asks again
            got = self.inner.recv_frame()
            if got is None:
                break
            self._admit(self._in, got[0], got[1], now, "in")
        if self._in and self._in[0][0] <= now:
            _, _, h, f = heapq.heappop(self._in)
            return h, f
        return None

    def pump(self) -> None:
        """Send the outgoing frames whose delay is over."""
        now, q = self.clock(), self._out
        while q and q[0][0] <= now:
            _, _, h, f = heapq.heappop(q)
            self.inner.send_frame(h, f)

    def next_event(self) -> float | None:
        times = [q[0][0] for q in (self._in, self._out) if q]
        return min(times) if times else None
