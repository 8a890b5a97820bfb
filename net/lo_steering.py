"""Receive packet steering on the sandbox's lo: what the uplink's loop sends into lo is taken in
on the CPUs the loop does not use, while those have room.

On lo a send is processed to the end in the sender's context: a doorbell's connect runs the
guest listener's handshake, queues the connection and wakes nginx; its request and its FIN
are taken in by the guest's socket likewise. On the loop's CPU, the one that limits (nginx
through --net tap with ``Connection: close``: the loop's CPU full, the other ~30% idle), that
was ~13 µs a connection of its ~164. With lo's RPS mask set to the other CPUs a send ends once
its packet is queued for them: 6.04k / 6.10k -> 6.54k / 6.52k req/s (A/B in one run). But with
keep-alive the other CPU is full already (nginx, wrk, the TAP's writer): there the same mask cost
a quarter of the requests per second, and an idle loop gains nothing (a round trip through the
stack, ~190 µs, took ~10% longer steered). So ``LoSteering`` looks twice a second and steers
while the loop's thread was busy more than 80% of the time and the other CPUs less than 65%,
and stops below 50% or above 90% (``SteeringPolicy``, a pure state machine).

The mask is set through sysfs only (``queues/rx-0/rps_cpus``), and the sysfs that shows a
namespace's devices is one mounted from inside it: a short-lived helper process, forked by a
thread that is in the namespace, mounts one over /sys in a mount namespace of its own, writes
the mask and exits. Best effort: where it cannot (no CAP_SYS_ADMIN there, a kernel without
RPS), only the speed differs.
"""
from __future__ import annotations

import ctypes
import errno
import os
import time
from dataclasses import dataclass
from typing import Final

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNS: Final = 0x00020000
_MS_REC, _MS_PRIVATE = 0x4000, 1 << 18
_RPS_CPUS: Final = "/sys/class/net/lo/queues/rx-0/rps_cpus"


def cpu_mask(cpus: frozenset[int]) -> str:
    """A CPU set as sysfs bitmaps are written: hex, in 32-bit groups separated by commas."""
    bits = sum(1 << c for c in cpus)
    groups = [f"{(bits >> shift) & 0xFFFFFFFF:08x}" for shift in range(0, max(cpus, default=0) + 1, 32)]
    return ",".join(reversed(groups))


def steer(cpus: frozenset[int]) -> bool:
    """Set the calling thread's network namespace's lo to be taken in on ``cpus`` (none: by
    the sender, Linux's default); whether it could."""
    mask = cpu_mask(cpus).encode()
    try:
        pid = os.fork()
    except OSError:                                # (no memory, a process limit): as unable
        return False
    if pid == 0:                                   # the helper: system calls only, then _exit
        code = 1
        try:
            if (_libc.unshare(_CLONE_NEWNS) == 0
                    and _libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) == 0
                    and (_libc.mount(b"sysfs", b"/sys", b"sysfs", 0, None) == 0
                         or ctypes.get_errno() == errno.EBUSY)):   # (EBUSY: /sys shows this namespace)
                fd = os.open(_RPS_CPUS, os.O_WRONLY)
                code = 0 if os.write(fd, mask) == len(mask) else 1
        except BaseException:                      # noqa: BLE001 - nothing may escape the helper
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


@dataclass
class SteeringPolicy:
    """Whether lo's packets go to the other CPUs: while the loop is what limits (its thread busy
    most of the time) and the other CPUs have room. Fed each window's busy fractions: the loop
    thread's, and the other CPUs' (of their time, steered or not)."""

    loop_on: float = 0.80       # steer when the loop was busy more than this...
    others_on: float = 0.65     # ...and the others less than this
    loop_off: float = 0.50      # stop when the loop was busy less than this (latency: a steered
    others_off: float = 0.90    # packet waits for another CPU), or the others more than this
    steered: bool = False

    def update(self, loop: float, others: float) -> bool:
        """Feed one window's figures; True when the steering changes."""
        if self.steered:
            want = loop >= self.loop_off and others <= self.others_off
        else:
            want = loop > self.loop_on and others < self.others_on
        changed, self.steered = want != self.steered, want
        return changed


def busy_ticks(cpus: frozenset[int]) -> tuple[int, int]:
    """(busy, total) clock ticks of ``cpus`` since boot, from /proc/stat."""
    busy = total = 0
    try:
        with open("/proc/stat", "rb") as f:
            lines = f.read().split(b"\n")[1:]
    except OSError:                                  # no /proc: nothing to go by
        return 0, 0
    for line in lines:
        if not line.startswith(b"cpu"):
            break
        name, *values = line.split()
        if int(name[3:]) in cpus:
            v = [int(x) for x in values[:8]]
            total += sum(v)
            busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    return busy, total


class LoSteering:
    """The policy applied: ``tick()`` once a window, from the loop's thread (in the sandbox's
    namespace)."""

    def __init__(self, cpus: frozenset[int], policy: SteeringPolicy | None = None) -> None:
        self.cpus, self.policy = cpus, policy or SteeringPolicy()
        self.changes = 0
        self.failed = False
        self._last = busy_ticks(cpus)
        self._loop_last = (time.thread_time(), time.monotonic())

    @property
    def steered(self) -> bool:
        return self.policy.steered

    def tick(self) -> None:
        if self.failed:
            return
        now = busy_ticks(self.cpus)
        busy, total = now[0] - self._last[0], now[1] - self._last[1]
        self._last = now
        cpu, wall = time.thread_time(), time.monotonic()
        loop = (cpu - self._loop_last[0]) / max(wall - self._loop_last[1], 1e-3)
        self._loop_last = (cpu, wall)
        if total <= 0 or not self.policy.update(loop, busy / total):
            return
        if steer(self.cpus if self.policy.steered else frozenset()):
            self.changes += 1
        else:                                        # cannot here: leave lo as Linux has it
            self.failed = True
            self.policy.steered = False
