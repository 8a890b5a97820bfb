"""Running a checked ioctl in the guest's own context (the NVIDIA shim's UVM commands, which
act on the calling process's address space and must not be re-issued by the translator).

The calling thread is held by its seccomp notification when the shim decides. Then:

1. every other thread of the process gets PTRACE_INTERRUPT: whatever it was doing, it cannot
   run another instruction of its own until it is resumed (a blocking call it was in is
   interrupted, to be restarted), so none can change the params or swap an fd meanwhile;
2. the calling thread is interrupted too and its notification answered with a restart: it
   stops for us with the ioctl set to run again. Its registers are saved; the checked params
   go to a scratch area below its stack pointer (past the red zone), and the ioctl's argument
   is pointed there;
3. it is resumed to its syscall-entry stop and on; the restarted ioctl traps again and is let
   through (CONTINUE): the kernel runs it in the guest, on the checked copy;
4. at its syscall-exit stop the result and the params are read back. The thread stays
   stopped until the supervisor answers the original call (``finish``): its saved registers
   come back with the result in rax, as if its own ioctl had returned it; then it and the
   other threads run on (their interrupt stops are resumed by the loop as usual).

Residual risk: a thread already inside an uninterruptible kernel operation when the threads
were stopped (a disk read into memory, say) completes it; the scratch area lies in the calling
thread's own stack, where such an operation would have to have been aimed on purpose.
"""
from __future__ import annotations

import os
import select
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from linuxabi.abi import flags as F

from linuxabi.abi.x86_64 import NR

from . import ptrace
from .libc import raw_syscall
from .task import host_tgid_of as _tgid

if TYPE_CHECKING:
    from .notify import Listener, Notification
    from .task import HostTask

_ERESTARTNOINTR = 513
_RED_ZONE = 128
_NR_IOCTL, _NR_TGKILL = NR["ioctl"], NR["tgkill"]
_SIGTRAP_SYSCALL = 0x80 | 5  # a syscall stop under PTRACE_O_TRACESYSGOOD


@dataclass
class Held:
    """A thread stopped at the exit of an in-guest ioctl, waiting for its original answer."""

    tid: int
    saved: ptrace.Regs
    deferred: list[int]  # signals that arrived meanwhile: raised again once it runs on


WaitStop = Callable[[int], int]  # tid -> its next stop's wait status (OSError if it ended)
# ``poll(tid)``: like WaitStop without blocking (None: nothing to report)


def run_ioctl(listener: "Listener", task: "HostTask", others: list[int], stash: Callable[["Notification"], None],
              wait_stop: WaitStop, poll: Callable[[int], int | None], fd: int, request: int,
              params: bytes) -> tuple[int, bytes, Held]:
    """Steps 1-4 above; the caller keeps the returned Held and passes it to ``finish``."""
    tid = task.host_tid
    deferred: list[int] = []
    for other in others:
        try:
            ptrace.interrupt(other)
        except OSError:
            pass  # gone already
    ptrace.interrupt(tid)
    listener.reply(task.notif_id, 0, -_ERESTARTNOINTR)
    _next_stop(tid, wait_stop, deferred, syscall=False, want=_EVENT_STOP)
    saved = ptrace.get_regs(tid)
    scratch = (saved.rsp - _RED_ZONE - max(len(params), 8)) & ~63
    if params:
        task.mem.write(scratch, params)
    regs = ptrace.Regs(list(saved.values))
    regs.set("rdi", fd)
    regs.set("rsi", request)
    regs.set("rdx", scratch if params else 0)
    ptrace.set_regs(tid, regs)
    ptrace.cont_to_syscall_exit(tid)  # PTRACE_SYSCALL: the restart's entry stop comes first
    _next_stop(tid, wait_stop, deferred, syscall=True, want=_SYSCALL_STOP)
    ptrace.cont_to_syscall_exit(tid)
    while True:  # the restarted ioctl, trapped again; others' calls wait for the loop
        if not select.select([listener.fd], [], [], 0.1)[0]:
            status = poll(tid)  # killed on the way (no notification will come), or a signal stop
            if status is not None:
                _held_back(tid, status, deferred, syscall=True)
            continue
        listener.prepare()
        n = listener.recv_prepared()
        if n is None:
            continue
        if n.pid == tid and n.nr == _NR_IOCTL and n.args[:3] == (fd, request, regs.rdx):
            listener.reply_continue(n.id)
            break
        stash(n)
    _next_stop(tid, wait_stop, deferred, syscall=True, want=_SYSCALL_STOP)
    done = ptrace.get_regs(tid)
    ret = done.rax - (1 << 64) if done.rax >= 1 << 63 else done.rax
    out = task.mem.read(scratch, len(params)) if params else b""
    return ret, out, Held(tid, saved, deferred)


def finish(held: Held, result: int) -> None:
    """The held thread returns ``result`` from its original ioctl, every register as it was;
    signals that came meanwhile are raised again, to be delivered as it runs on."""
    regs = ptrace.Regs(list(held.saved.values))
    regs.set("rax", result)
    try:
        ptrace.set_regs(held.tid, regs)
        for sig in held.deferred:
            raw_syscall(_NR_TGKILL, _tgid(held.tid), held.tid, sig)
        ptrace.cont(held.tid)
    except OSError:
        pass  # killed meanwhile


_EVENT_STOP = "event"
_SYSCALL_STOP = "syscall"


def _next_stop(tid: int, wait_stop: WaitStop, deferred: list[int], *, syscall: bool, want: str) -> None:
    """Wait for ``tid``'s next stop of kind ``want``; a signal-delivery stop on the way is held
    back (resumed without it, in the same mode) and remembered."""
    while True:
        status = wait_stop(tid)
        sig, event = os.WSTOPSIG(status), status >> 16
        if want == _EVENT_STOP and event == F.PTRACE_EVENT_STOP:
            return
        if want == _SYSCALL_STOP and sig == _SIGTRAP_SYSCALL and event == 0:
            return
        _held_back(tid, status, deferred, syscall=syscall)


def _held_back(tid: int, status: int, deferred: list[int], *, syscall: bool) -> None:
    """A stop we did not ask for: a signal is remembered (not delivered now), and the thread
    resumed in the same mode."""
    sig, event = os.WSTOPSIG(status), status >> 16
    if event == 0 and sig != _SIGTRAP_SYSCALL:
        deferred.append(sig)
    (ptrace.cont_to_syscall_exit if syscall else ptrace.cont)(tid)
