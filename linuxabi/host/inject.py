"""Closing a guest's fds and unmapping its file mappings from outside, for revocation
(DESIGN.md, principle 6).

File data handed out as a host fd or mapped into memory bypasses the translator, so revoking a
capability must take it away. The thread is stopped with PTRACE_INTERRUPT; at that stop its
registers are saved and it is made to run close(fd) on a `syscall` instruction of its own code,
once per fd, then mmap(MAP_FIXED, PROT_NONE, anonymous) over each revoked mapping; then its
registers are restored, so a syscall the interrupt cut short restarts as it would have. Reads
through the fd then fail with EBADF, and touching the mapping faults (SIGSEGV). Rare and slow
is fine here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from linuxabi.abi import x86_64

from . import ptrace
from .memory import GuestMemory

_SYSCALL_INSN = b"\x0f\x05"
_NR_CLOSE = x86_64.NR["close"]
_NR_MMAP = x86_64.NR["mmap"]
_PROT_NONE = 0
_MAP_FIXED_ANON = 0x10 | 0x20 | 0x02  # MAP_FIXED | MAP_ANONYMOUS | MAP_PRIVATE


@dataclass
class FdRemoval:
    """close() runs for each fd, in the thread ``tid`` of the process holding them."""

    tid: int
    fds: list[int]
    unmaps: list[tuple[int, int]] = field(default_factory=list)  # [start, end) to replace
    saved: ptrace.Regs | None = None
    insn: int = 0  # address of a `syscall` instruction in the guest's code
    in_call: bool = False  # between the injected close's entry and its exit
    done: list[int] = field(default_factory=list)

    def start(self, regs: ptrace.Regs, mem: GuestMemory) -> None:
        """At the interrupt stop: remember where the thread was; find a syscall instruction."""
        if not self.fds and not self.unmaps:
            raise OSError(61, "nothing left to take away")  # ENODATA: the caller resumes it
        self.saved = ptrace.Regs(list(regs.values))
        self.insn = _find_syscall_insn(self.tid, regs.rip, mem)
        self._next()

    def on_syscall_stop(self, entry: bool) -> bool:
        """Returns True once every fd is closed and the thread runs on as before."""
        if entry:
            ptrace.cont_to_syscall_exit(self.tid)
            return False
        if self.fds:
            self.done.append(self.fds.pop(0))
        else:
            self.unmaps.pop(0)
        if self.fds or self.unmaps:
            self._next()
            return False
        assert self.saved is not None
        ptrace.set_regs(self.tid, _restarted(self.saved))
        ptrace.cont(self.tid)
        return True

    def _next(self) -> None:
        assert self.saved is not None
        regs = ptrace.Regs(list(self.saved.values))
        regs.set("rip", self.insn)
        regs.set("orig_rax", 0xFFFFFFFFFFFFFFFF)  # not in a syscall: no restart logic on resume
        if self.fds:
            regs.set("rax", _NR_CLOSE)
            regs.set("rdi", self.fds[0])
        else:
            lo, hi = self.unmaps[0]
            for reg, val in (("rax", _NR_MMAP), ("rdi", lo), ("rsi", hi - lo), ("rdx", _PROT_NONE),
                             ("r10", _MAP_FIXED_ANON), ("r8", 0xFFFFFFFFFFFFFFFF), ("r9", 0)):
                regs.set(reg, val)
        ptrace.set_regs(self.tid, regs)
        ptrace.cont_to_syscall_exit(self.tid)  # entry stop, then exit stop


_RESTART = {(1 << 64) - e for e in (512, 513, 514)}  # -ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND
_RESTART_BLOCK = (1 << 64) - 516  # -ERESTART_RESTARTBLOCK
_NR_RESTART_SYSCALL = x86_64.NR["restart_syscall"]


def _restarted(saved: ptrace.Regs) -> ptrace.Regs:
    """The registers to resume with. A blocking call the interrupt cut short says so in rax
    (-ERESTART*); the kernel would restart it on its way back to the guest, but we resume from
    our injected call's exit, where it no longer looks: restart it here, as it would."""
    regs = ptrace.Regs(list(saved.values))
    if regs.orig_rax >= 1 << 63:
        return regs
    if regs.rax in _RESTART:
        regs.set("rax", regs.orig_rax)
        regs.set("rip", regs.rip - 2)
    elif regs.rax == _RESTART_BLOCK:
        regs.set("rax", _NR_RESTART_SYSCALL)
        regs.set("rip", regs.rip - 2)
    return regs


def _find_syscall_insn(tid: int, rip: int, mem: GuestMemory) -> int:
    """The instruction just before rip when the thread stopped in a syscall (the usual case),
    else the first one in an executable mapping of its own."""
    try:
        if mem.read(rip - 2, 2) == _SYSCALL_INSN:
            return rip - 2
    except OSError:
        pass
    with open(f"/proc/{tid}/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2 or "x" not in parts[1] or line.rstrip().endswith(("[vsyscall]", "[vvar]")):
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            for off in range(lo, min(hi, lo + (1 << 20)), 1 << 16):
                try:
                    chunk = mem.read(off, min(1 << 16, hi - off))
                except OSError:
                    break
                i = chunk.find(_SYSCALL_INSN)
                if i >= 0:
                    return off + i
    raise OSError(2, "no syscall instruction in the guest's code")
