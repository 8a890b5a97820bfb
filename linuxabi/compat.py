"""`linuxabi compat`: the syscall table as a compatibility report."""
from __future__ import annotations

from linuxabi.abi import errno as E
from syscalls.base import Disposition, Trap
from syscalls.table import SYSCALLS


def _describe(decl) -> str:
    if decl.rules:
        allowed = ", ".join(sorted({r.why for r in decl.rules if r.why}))
        base = decl.disposition.value
        extra = f" -> {E.NAMES.get(decl.errno, decl.errno)}" if decl.disposition is Disposition.DENIED else ""
        return f"by argument: native when {allowed}; otherwise {base}{extra}" + (f" ({decl.note})" if decl.note else "")
    if decl.disposition is Disposition.DENIED:
        return f"denied -> {E.NAMES.get(decl.errno, decl.errno)}"
    if decl.disposition is Disposition.TRANSLATED:
        how = "ptrace-rewritten" if decl.trap is Trap.TRACE else "handler"
        note = f"; {decl.note}" if decl.native_without else ""
        return f"translated ({how}: {decl.handler.__module__}.{decl.handler.__name__}{note})"
    return "native"


def report(verbose: bool = True) -> str:
    counts: dict[str, int] = {}
    lines = []
    for nr in sorted(SYSCALLS):
        decl = SYSCALLS[nr]
        kind = "argument-dependent" if decl.rules else decl.disposition.value
        counts[kind] = counts.get(kind, 0) + 1
        lines.append(f"{nr:4d}  {decl.name:<24} {_describe(decl)}\n")
    head = [f"linuxabi x86_64 syscall table: {len(SYSCALLS)} syscalls declared\n"]
    for kind in ("native", "translated", "denied", "argument-dependent"):
        head.append(f"  {kind:<20} {counts.get(kind, 0):4d}\n")
    head.append("  any other number      denied -> ENOSYS (trapped, answered by the dispatcher)\n")
    return "".join(head) + ("\n" + "".join(lines) if verbose else "")
