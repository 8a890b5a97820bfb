"""Where a sandbox's threads run: all on the translator's CPU while that is enough (compact),
spread over the sandbox's CPUs when they compete for it.

Every trapped call, ptrace stop and fork hands the CPU between a guest thread and the
translator. On one CPU that is a context switch; across CPUs it is a wake-up of the other CPU,
which costs tens of µs where an idle CPU halts (small VMs), several times the switch. Left to
the scheduler, a new process starts on the idle CPU and every hand-off of its fork, exec and
exit crosses: fork+exit+wait took 2-3x longer than with the sandbox on one CPU. So a sandbox
starts compact: the translator's loop thread and its guests keep to one CPU (the one the
translator was on, if the guest may use it). When guests compete for that CPU (the scheduler
preempts them: two busy guest processes, say), it spreads: each thread gets back the CPUs it
would have; when the sandbox's CPUs are mostly idle again, it compacts again.

Guests never see the pin. Each thread has the CPU set Linux would give it (``wanted``: the
sandbox's CPUs, inherited on fork, or what the host kernel set when the guest called
sched_setaffinity); sched_getaffinity and /proc/PID/status report that; the thread runs on
``actual(tid)``: the home CPU while compact (if it wants it), else what it wants.

The policy (``PlacementPolicy``) is a pure state machine fed with the clock and two
counters: the guests' involuntary context switches (/proc/TID/status; a thread that blocks on
the translator switches voluntarily, one that the scheduler takes the CPU from does not) and
the busy time of the sandbox's CPUs (/proc/stat). The host's PSI cpu pressure would say the
same more cheaply, but on some kernels it misses contention on CPU 0.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from .notify import cpu_mask

_USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class PlacementPolicy:
    """When to spread and when to compact (times in seconds, counters cumulative)."""

    spread_preemptions: float = 200.0  # spread when guests were preempted this often per second...
    preemption_window: float = 0.2  # ...over a window this long
    compact_busy: float = 1.5  # compact when the sandbox's CPUs were busy less than this many
    busy_window: float = 1.0  # CPUs' worth over a window this long
    compact: bool = True
    _mark: tuple[float, float] | None = field(default=None, repr=False)  # window start: (time, counter)

    def window(self) -> float:
        """How long the current mode's window is (a counter is needed once per window)."""
        return self.preemption_window if self.compact else self.busy_window

    def due(self, now: float) -> bool:
        """Whether ``observe`` needs its counter now (a window starts or ends)."""
        return self._mark is None or now - self._mark[0] >= self.window()

    def observe(self, now: float, preempted: float | None = None, busy: float | None = None) -> bool:
        """Feed the clock and the counter the current mode watches (``preempted`` while
        compact, ``busy`` while spread); True when the mode changed (``compact`` says to which)."""
        counter = preempted if self.compact else busy
        if counter is None:
            return False
        if self._mark is None:
            self._mark = (now, counter)
            return False
        start, base = self._mark
        elapsed = now - start
        if elapsed < self.window():
            return False
        rate = (counter - base) / elapsed
        self._mark = None  # the next window starts with the next sample, in whichever mode
        if self.compact and rate >= self.spread_preemptions:
            self.compact = False
            return True
        if not self.compact and rate < self.compact_busy:
            self.compact = True
            return True
        return False


def _involuntary_switches(tid: int) -> int:
    """How often the scheduler took the CPU from thread ``tid`` (0 once it is gone)."""
    try:
        fd = os.open(f"/proc/{tid}/status", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        data = os.read(fd, 8192)
    except OSError:
        return 0
    finally:
        os.close(fd)
    at = data.rfind(b"nonvoluntary_ctxt_switches:")
    return int(data[at + 27:].split(b"\n", 1)[0]) if at >= 0 else 0


def _busy_seconds(cpus: frozenset[int]) -> float | None:
    """Seconds the CPUs in ``cpus`` spent running anything (user, nice, system, irq, softirq)."""
    try:
        with open("/proc/stat", "rb") as f:
            lines = f.read().split(b"\n")
    except OSError:
        return None
    ticks = 0
    for line in lines[1:]:
        if not line.startswith(b"cpu"):
            break
        name, *values = line.split()
        if int(name[3:]) in cpus:
            v = [int(x) for x in values[:7]]
            ticks += v[0] + v[1] + v[2] + v[5] + v[6]
    return ticks / _USER_HZ


# (CPU, the thread's own set) that claim_home settled on, for the sandbox served next
_claimed: tuple[int, frozenset[int]] | None = None


def claim_home() -> int:
    """Settle this thread on the CPU it runs on now, as the home of the sandbox it is about to
    serve (``Placement.for_sandbox`` takes it); that CPU, or -1 with a single CPU. A warm
    server prepares its next spare away from it (``away_from``): both at once on one CPU made
    the run wait for the preparation."""
    global _claimed
    from .libc import current_cpu

    own = frozenset(os.sched_getaffinity(0))
    if len(own) < 2:
        return -1
    cpu = current_cpu()
    _claimed = (cpu, own)
    os.sched_setaffinity(0, (cpu,))
    return cpu


@contextlib.contextmanager
def away_from(cpu: int) -> Iterator[None]:
    """Run the block on this thread's CPUs but ``cpu`` (all of them if that leaves none)."""
    own = frozenset(os.sched_getaffinity(0))
    rest = own - {cpu}
    if cpu < 0 or not rest or rest == own:
        yield
        return
    os.sched_setaffinity(0, rest)
    try:
        yield
    finally:
        os.sched_setaffinity(0, own)


class Placement:
    """The sandbox's CPUs, each thread's wanted set, and the mode (see the module's doc)."""

    SAMPLED = 128  # threads whose switches are read per window (the first ones: a bound on the cost)

    def __init__(self, cpus: frozenset[int], home: int, policy: PlacementPolicy | None = None,
                 translator_cpus: frozenset[int] | None = None) -> None:
        self.cpus = cpus  # the guest's first thread's set: the sandbox's CPUs
        self.home = home
        self.translator_cpus = translator_cpus or cpus  # the loop thread's own, given back on spreading
        self.policy = policy or PlacementPolicy()
        self._wanted: dict[int, frozenset[int]] = {}  # host tid -> its own set, where not ``cpus``
        self._switches: dict[int, int] = {}  # host tid -> involuntary switches at the last sample
        self._preempted = 0  # the sum of their increases: the policy's counter while compact
        self._cpus_mask: bytes | None = None  # ``cpus`` as a cpu_set_t, made on first use
        if len(cpus) < 2 or home not in cpus:
            self.policy.compact = False  # one CPU: nothing to place

    @classmethod
    def for_sandbox(cls, init_tid: int) -> "Placement":
        """The sandbox's CPUs are those its first thread was given (a warm server's client's,
        say); home is the CPU this thread runs on, if one of them."""
        from .libc import current_cpu

        if _claimed is not None:
            cpu, own = _claimed
        else:
            cpu, own = current_cpu(), frozenset(os.sched_getaffinity(0))
        try:
            cpus = frozenset(os.sched_getaffinity(init_tid))
        except OSError:
            cpus = own
        return cls(cpus, cpu if cpu in cpus else min(cpus), translator_cpus=own)

    @property
    def compact(self) -> bool:
        return self.policy.compact

    def helper_cpus(self) -> frozenset[int]:
        """Where a translator thread with work of its own (the uplink's stack) runs: the
        translator's CPUs but the sandbox's home, where there are others. On the home CPU it
        was preempted by each guest it woke (nginx, for every request it passed on) and
        waited for the loop thread's turns; there it served half the requests per second."""
        return self.translator_cpus - {self.home} or self.translator_cpus

    def wanted(self, tid: int) -> frozenset[int]:
        return self._wanted.get(tid, self.cpus)

    def actual(self, tid: int) -> frozenset[int]:
        wanted = self._wanted.get(tid, self.cpus)
        return frozenset((self.home,)) if self.compact and self.home in wanted else wanted

    @property
    def pins_wake_ups(self) -> bool:
        """Whether a thread woken by the translator is pinned to its CPU for the wake-up (spread
        over several CPUs; compact, every thread is there already)."""
        return len(self.cpus) > 1 and not self.compact

    def mask_after_pin(self, tid: int) -> bytes | None:
        """The cpu_set_t to give thread ``tid`` back after pinning it for a wake-up, or None
        when no pin is needed (see ``pins_wake_ups``)."""
        if not self.pins_wake_ups:
            return None
        actual = self.actual(tid)
        if actual == self.cpus:
            if self._cpus_mask is None:
                self._cpus_mask = cpu_mask(self.cpus)
            return self._cpus_mask
        return cpu_mask(actual)

    def start(self, init_tid: int) -> None:
        """Pin the translator's loop thread (the caller) and the guest's first thread, if compact."""
        if self.compact:
            self._apply(0, frozenset((self.home,)))
            self._apply(init_tid, self.actual(init_tid))
        elif _claimed is not None:
            self._apply(0, self.translator_cpus)  # (claimed for a sandbox with one CPU: give it back)

    def inherit(self, parent_tid: int, child_tid: int) -> None:
        """A new task (fork or thread) starts with its creator's set, as on Linux; the kernel
        copied the creator's actual mask already."""
        wanted = self._wanted.get(parent_tid)
        if wanted is not None:
            self._wanted[child_tid] = wanted

    def forget(self, tid: int) -> None:
        self._wanted.pop(tid, None)

    def set_wanted(self, tid: int, cpus: frozenset[int]) -> None:
        """The guest's sched_setaffinity: the host kernel applies Linux's rules (EINVAL for no
        usable CPU, ESRCH, its cpuset), and the set it kept is the thread's from then on."""
        os.sched_setaffinity(tid, cpus)
        kept = frozenset(os.sched_getaffinity(tid))
        if kept == self.cpus:
            self._wanted.pop(tid, None)
        else:
            self._wanted[tid] = kept
        if self.compact and self.home in kept:
            self._apply(tid, frozenset((self.home,)))

    def finish(self) -> None:
        """The sandbox is over: the loop thread gets its own CPUs back (an embedder's thread)."""
        if self.compact or _claimed is not None:
            self._apply(0, self.translator_cpus)

    def tick(self, now: float, tids: Iterable[int], installs: int = 0) -> bool:
        """On the loop's tick: measure when a window starts or ends, and move every guest
        thread (``tids``) and the loop thread if the mode changes. True if it did.

        ``installs``: fd installs into guests so far (an open's answer). Each costs the guest
        one involuntary switch that is no competition: the install wakes the translator, which
        waited for it, and the scheduler gives it the CPU back at once."""
        if len(self.cpus) < 2 or self.home not in self.cpus or not self.policy.due(now):
            return False
        if self.compact:
            changed = self.policy.observe(now, preempted=self._sample_switches(tids) - installs)
        else:
            changed = self.policy.observe(now, busy=_busy_seconds(self.cpus))
        if changed:
            self._switches.clear()
            self._apply(0, frozenset((self.home,)) if self.compact else self.translator_cpus)
            for tid in tids:
                self._apply(tid, self.actual(tid))
        return changed

    def _sample_switches(self, tids: Iterable[int]) -> int:
        """The preemption counter: each sampled thread's increase since the last sample (a
        new thread's since its start) added up."""
        now: dict[int, int] = {}
        for n, tid in enumerate(tids):
            if n == self.SAMPLED:
                break
            count = now[tid] = _involuntary_switches(tid)
            self._preempted += max(0, count - self._switches.get(tid, 0))
        self._switches = now
        return self._preempted

    @staticmethod
    def _apply(tid: int, cpus: frozenset[int]) -> None:
        with contextlib.suppress(OSError):  # a thread that has just exited
            os.sched_setaffinity(tid, cpus)
