"""The TCP layer's timer heap (net/timer_heap.py) against the plain scan it replaced: same sockets fire, in the same
order, under random rescheduling (including from inside on_timer); next_deadline is never later
than the earliest deadline. The heap keeps an entry that is earlier than its socket's deadline
(a deadline pushed back on every segment costs no push): a socket is then asked early, and
does nothing, as TcpSocket.on_timer does, but schedule itself again."""
from __future__ import annotations

import random
import weakref

from net.tcp import State
from net.timer_heap import TimerHeap


class FakeSock:
    def __init__(self, name: int, log: list, rng: random.Random) -> None:
        self.name, self.log, self.rng = name, log, rng
        self.deadline: float | None = None
        self.state = State.ESTABLISHED
        self.layer: object = None
        self.others: list["FakeSock"] = []

    def on_timer(self, now: float) -> None:
        if self.deadline is None or self.deadline > now:   # asked early: nothing due
            self.layer.schedule(self)               # type: ignore[attr-defined]
            return
        self.log.append(self.name)
        r = self.rng.random()
        if r < 0.3:
            self.deadline = None                    # fired for good
        elif r < 0.5:
            pass                                    # left due: must fire again next poll
        else:
            self.deadline = now + self.rng.choice([0.0, 0.001, 0.2, 1.0, 60.0])
        self.layer.schedule(self)                   # type: ignore[attr-defined]
        if self.others and self.rng.random() < 0.2:  # a timer touching another connection
            o = self.rng.choice(self.others)
            o.deadline = now + self.rng.random()
            o.layer.schedule(o)                     # type: ignore[attr-defined]


class ScanTimers:
    """The former implementation: a dict scanned on every poll."""

    def __init__(self) -> None:
        self._timers: dict = {}

    def schedule(self, sock: FakeSock) -> None:
        d = sock.deadline
        if d is None or sock.state == State.CLOSED:
            self._timers.pop(sock, None)
        else:
            self._timers[sock] = d

    def poll(self, now: float) -> None:
        for s in [s for s, d in self._timers.items() if d <= now]:
            s.on_timer(now)

    def next_deadline(self) -> float | None:
        return min(self._timers.values(), default=None)


class HeapTimers:
    """TcpLayer's use of the heap: a closed socket has no deadline."""

    def __init__(self) -> None:
        self.heap = TimerHeap()

    def schedule(self, sock: FakeSock) -> None:
        self.heap.set(sock, None if sock.state == State.CLOSED else sock.deadline)

    def poll(self, now: float) -> None:
        self.heap.poll(now)

    def next_deadline(self) -> float | None:
        return self.heap.next_deadline()


def _run(seed: int, layer: object, n: int = 60, steps: int = 3000) -> tuple[list, list]:
    rng = random.Random(seed)
    log: list = []
    socks = [FakeSock(i, log, rng) for i in range(n)]
    for s in socks:
        s.layer = layer
        s.others = socks
    deadlines: list = []
    now = 0.0
    for _ in range(steps):
        r = rng.random()
        s = rng.choice(socks)
        if r < 0.45:
            s.deadline = now + rng.choice([0.0, 0.0005, 0.04, 0.2, 1.0, 60.0]) * rng.random()
            s.state = State.ESTABLISHED
            layer.schedule(s)                       # type: ignore[attr-defined]
        elif r < 0.55:
            s.deadline = None
            layer.schedule(s)                       # type: ignore[attr-defined]
        elif r < 0.6:
            s.state = State.CLOSED
            layer.schedule(s)                       # type: ignore[attr-defined]
        else:
            nd = layer.next_deadline()              # type: ignore[attr-defined]
            due = [x.deadline for x in socks if x.deadline is not None and x.state != State.CLOSED]
            assert (nd is None) == (not due) and (nd is None or nd <= min(due))
            deadlines.append(min(due, default=None))
            now = min(due) if due and rng.random() < 0.5 else now + rng.random() * 0.05
            log.append(("poll", now))
            layer.poll(now)                         # type: ignore[attr-defined]
    return log, deadlines


def test_heap_timers_match_the_plain_scan() -> None:
    for seed in range(20):
        layer = HeapTimers()
        got = _run(seed, layer)
        want = _run(seed, ScanTimers())
        assert got == want, f"seed {seed}"
        assert layer.heap.entries <= 64 + 4 * len(layer.heap) + 1


def test_forgotten_sockets_leave_no_deadline() -> None:
    layer = HeapTimers()
    rng = random.Random(0)
    socks = [FakeSock(i, [], rng) for i in range(10)]
    for i, s in enumerate(socks):
        s.layer = layer
        s.deadline = 10.0 + i
        layer.schedule(s)
    for s in socks[:5]:
        s.deadline = None
        layer.schedule(s)
    assert layer.next_deadline() == 15.0
    layer.poll(100.0)
    assert [len(s.log) for s in socks] == [0] * 5 + [1] * 5


def test_a_forgotten_object_is_not_kept_alive_by_its_stale_entries() -> None:
    layer = HeapTimers()
    rng = random.Random(0)
    sock = FakeSock(0, [], rng)
    sock.layer = layer
    for d in (30.0, 20.0, 10.0):                    # three entries, two stale
        sock.deadline = d
        layer.schedule(sock)
    gone = weakref.ref(sock)
    sock.deadline = None
    layer.schedule(sock)
    del sock
    assert gone() is None
    assert layer.next_deadline() is None
