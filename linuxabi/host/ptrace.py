"""The few ptrace requests the platform needs: exec rewriting and fork/exec/exit events.

Never on the hot path: only execve and task-lifecycle events stop a guest thread.
Raw syscalls through cffi (python-ptrace's high-level API is ~3x slower and not needed).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from linuxabi.abi import flags, x86_64

from .libc import address_of, raw_syscall

_SYS_PTRACE = x86_64.NR["ptrace"]
_REG_NAMES = (
    "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss "
    "fs_base gs_base ds es fs gs"
).split()
_REGS = struct.Struct(f"={len(_REG_NAMES)}Q")

# Options for every guest thread: follow fork/vfork/clone, see execve traps, tell syscall
# stops apart, and kill the guests if the supervisor dies. No exec events: the supervisor
# knows an exec is happening when it lets its own rewritten execveat through.
SEIZE_OPTIONS = (
    flags.PTRACE_O_TRACESECCOMP
    | flags.PTRACE_O_TRACEFORK
    | flags.PTRACE_O_TRACEVFORK
    | flags.PTRACE_O_TRACECLONE
    | flags.PTRACE_O_TRACESYSGOOD
    | flags.PTRACE_O_EXITKILL
)


@dataclass(slots=True)
class Regs:
    values: list[int]

    def __getattr__(self, name: str) -> int:  # only called for register names
        try:
            return self.values[_REG_NAMES.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    def set(self, name: str, value: int) -> None:
        self.values[_REG_NAMES.index(name)] = value & 0xFFFFFFFFFFFFFFFF


def _ptrace(request: int, tid: int, addr: int = 0, data: int = 0) -> int:
    return raw_syscall(_SYS_PTRACE, request, tid, addr, data)


def seize(tid: int, options: int = SEIZE_OPTIONS) -> None:
    _ptrace(flags.PTRACE_SEIZE, tid, 0, options)


def cont(tid: int, sig: int = 0) -> None:
    _ptrace(flags.PTRACE_CONT, tid, 0, sig)


def cont_to_syscall_exit(tid: int) -> None:
    """Resume and stop again at the next syscall boundary (used once, for fd injection)."""
    _ptrace(flags.PTRACE_SYSCALL, tid, 0, 0)


def listen(tid: int) -> None:
    _ptrace(flags.PTRACE_LISTEN, tid, 0, 0)


def get_regs(tid: int) -> Regs:
    buf = bytearray(_REGS.size)
    keep, addr = address_of(buf)
    _ptrace(flags.PTRACE_GETREGS, tid, 0, addr)
    del keep
    return Regs(list(_REGS.unpack(buf)))


def set_regs(tid: int, regs: Regs) -> None:
    buf = bytearray(_REGS.pack(*regs.values))
    keep, addr = address_of(buf)
    _ptrace(flags.PTRACE_SETREGS, tid, 0, addr)
    del keep


def event_msg(tid: int) -> int:
    buf = bytearray(8)
    keep, addr = address_of(buf)
    _ptrace(flags.PTRACE_GETEVENTMSG, tid, 0, addr)
    del keep
    return struct.unpack("=Q", buf)[0]
