"""Deadlines of many objects (the TCP layer's connections), a heap with lazy deletion.

Each object has at most one live entry (``_live``); re-arming later than that entry costs
nothing: it stays, fires early, and the object's ``on_timer``, finding nothing due, arms again
(so a deadline pushed back on every segment, the RTO on each ACK or the delayed ACK, costs no
heap push each time). A turn costs O(log n) however many wait (thousands of TIME-WAITs after
``Connection: close`` requests), and due objects fire in the order in which they first got a
live entry, as a plain scan of a table would fire them. The heap names its objects by number
(``_numbered``), not by reference: a stale entry must not keep a closed connection alive until
its old deadline.
"""
from __future__ import annotations

import heapq
from itertools import count
from typing import Protocol


class Timed(Protocol):
    def on_timer(self, now: float) -> None: ...


class TimerHeap:
    def __init__(self) -> None:
        self._live: dict[Timed, float] = {}          # each object's live heap entry (<= its deadline)
        self._first: dict[Timed, int] = {}           # when each got its live entry (scan order)
        self._numbered: dict[int, Timed] = {}        # _first's inverse
        self._heap: list[tuple[float, int, int]] = []  # (deadline, tie, object's number), some stale
        self._tie = count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, obj: object) -> bool:
        """Whether anything here still refers to ``obj``."""
        return obj in self._live or obj in self._first

    @property
    def entries(self) -> int:
        """Heap entries, stale ones included."""
        return len(self._heap)

    def set(self, obj: Timed, deadline: float | None) -> None:
        """Call ``obj.on_timer`` at ``deadline`` (or not before; None: never)."""
        if deadline is None:
            self.forget(obj)
            return
        old = self._live.get(obj)
        if old is not None and old <= deadline:
            return
        self._live[obj] = deadline
        number = self._first.get(obj)
        if number is None:
            number = self._first[obj] = next(self._tie)
            self._numbered[number] = obj
        heap = self._heap
        heapq.heappush(heap, (deadline, next(self._tie), number))
        if len(heap) > 64 + 4 * len(self._live):       # mostly stale entries: rebuild
            first = self._first
            self._heap = [(t, next(self._tie), first[o]) for o, t in self._live.items()]
            heapq.heapify(self._heap)

    def forget(self, obj: Timed) -> None:
        self._live.pop(obj, None)
        self._drop_number(obj)

    def _drop_number(self, obj: Timed) -> None:
        number = self._first.pop(obj, None)
        if number is not None:
            del self._numbered[number]

    def poll(self, now: float) -> None:
        """Run each due object's ``on_timer`` once (an object left due fires again next poll)."""
        heap, live = self._heap, self._live
        if not heap or heap[0][0] > now:
            return
        due: dict[Timed, float] = {}
        numbered = self._numbered
        while heap and heap[0][0] <= now:
            d, _, number = heapq.heappop(heap)
            o = numbered.get(number)
            if o is not None and live.get(o) == d:
                due[o] = d
        order = sorted(due, key=self._first.__getitem__) if len(due) > 1 else list(due)
        for o in due:
            del live[o]                                  # spent: on_timer arms what is left
        for o in order:
            o.on_timer(now)
        for o in due:
            if o not in live:                            # nothing left to wait for
                self._drop_number(o)

    def next_deadline(self) -> float | None:
        heap, live, numbered = self._heap, self._live, self._numbered
        while heap and ((o := numbered.get(heap[0][2])) is None or live.get(o) != heap[0][0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None
