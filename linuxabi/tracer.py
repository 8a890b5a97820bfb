"""`linuxabi trace`: each trapped syscall, strace-style, and a count per syscall at the end.

Argument names and types come from python-ptrace's syscall prototypes; string arguments are
read from guest memory (after the call, so a result buffer is already filled in).
"""
from __future__ import annotations

from typing import TextIO

from ptrace.syscall.prototypes import SYSCALL_PROTOTYPES

from linuxabi.abi import errno as E
from syscalls.table import SYSCALLS

_STRING_TYPES = ("const char *", "char *")
_MAX_STR = 64


class Tracer:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.errors: dict[int, int] = {}

    def __call__(self, task, nr: int, args: tuple[int, ...], result: int | str) -> None:
        decl = SYSCALLS.get(nr)
        name = decl.name if decl else f"syscall_{nr}"
        proto = SYSCALL_PROTOTYPES.get(name)
        shown = []
        if proto is not None:
            for (ctype, _argname), value in zip(proto[1], args):
                shown.append(self._format(task, ctype, value))
        else:
            shown = [hex(a) for a in args[:3]]
        if name == "ioctl":
            nv = _nvidia_ioctl(task, args)
            if nv is not None:
                shown[1:] = [nv]
        if isinstance(result, int) and result < 0:
            self.errors[nr] = self.errors.get(nr, 0) + 1
            res = f"-1 {E.NAMES.get(-result, str(-result))} ({E.MESSAGES.get(-result, '')})"
        else:
            res = str(result)
        self.out.write(f"[pid {task.tid}] {name}({', '.join(shown)}) = {res}\n")

    @staticmethod
    def _format(task, ctype: str, value: int) -> str:  # noqa: ANN001
        if ctype in _STRING_TYPES and value:
            try:
                s = task.mem.read_cstr(value, 4096)
            except OSError:
                return hex(value)
            text = s[:_MAX_STR].decode("utf-8", "backslashreplace")
            return repr(text).replace("'", '"') + ("..." if len(s) > _MAX_STR else "")
        if "*" in ctype:
            return hex(value) if value else "NULL"
        v = value & 0xFFFFFFFF
        if ctype in ("int", "pid_t") and v & 0x80000000:
            return str(v - (1 << 32))
        return str(value) if value < 1 << 20 else hex(value)

    def summary(self, dispatcher) -> None:
        rows = sorted(dispatcher.counts.items(), key=lambda kv: -kv[1])
        self.out.write(f"{'calls':>8} {'errors':>7} {'denied':>7}  syscall\n")
        for nr, count in rows:
            decl = SYSCALLS.get(nr)
            name = decl.name if decl else f"syscall_{nr}"
            self.out.write(f"{count:8d} {self.errors.get(nr, 0):7d} {dispatcher.denied.get(nr, 0):7d}  {name}\n")
        total = sum(dispatcher.counts.values())
        self.out.write(f"{total:8d} {sum(self.errors.values()):7d} {sum(dispatcher.denied.values()):7d}  total\n")


def _nvidia_ioctl(task, args: tuple[int, ...]) -> str | None:  # noqa: ANN001
    """An NVIDIA device ioctl by name with its key fields (class, command, status)."""
    shim = getattr(task.kernel, "_nvidia", None)
    if shim is None:
        return None
    try:
        return task.kernel.nvidia_describe(task, args[0] & 0xFFFFFFFF, args[1] & 0xFFFFFFFF, args[2])
    except (OSError, ValueError):
        return None
