"""The seccomp filter, derived from syscalls.table and compiled by libseccomp.

Default action: trap to the translator (so an undeclared number is answered ENOSYS by the
dispatcher, never allowed). NATIVE -> allow; DENIED -> errno in the kernel; execve/execveat ->
RET_TRACE (the call must be rewritten under ptrace); argument rules -> conditional allow/errno,
anything else falls through to the trap where the dispatcher applies the same rules.
"""
from __future__ import annotations

import functools
import tempfile

import pyseccomp as sc

from syscalls.base import Cmp, Disposition, SyscallDecl, Trap
from syscalls.table import SYSCALLS

# Marks our own RET_TRACE stops (a guest's own filter may use RET_TRACE too).
TRACE_MARKER = 0x1AB1


def _action(disposition: Disposition, errno: int) -> int | None:
    if disposition is Disposition.NATIVE:
        return sc.ALLOW
    if disposition is Disposition.DENIED:
        return sc.ERRNO(errno)
    return None  # translated: the default action (notify) already traps it


def _add(flt: sc.SyscallFilter, decl: SyscallDecl, *, trace_denied: bool = False) -> None:
    for rule in decl.rules:
        action = _action(rule.disposition, rule.errno)
        if action is None:
            continue
        op = sc.MASKED_EQ if rule.cmp is Cmp.MASKED_EQ else sc.EQ
        arg = sc.Arg(rule.arg, op, rule.mask, rule.value) if op == sc.MASKED_EQ else sc.Arg(rule.arg, op, rule.value)
        flt.add_rule(action, decl.nr, arg)
    if decl.rules:
        return  # the unmatched case is decided by the dispatcher
    if decl.trap is Trap.TRACE:
        flt.add_rule(sc.TRACE(TRACE_MARKER), decl.nr)
        return
    if trace_denied and decl.disposition is Disposition.DENIED:
        return  # the tracer wants to see (and count) denials: the dispatcher gives the same errno
    action = _action(decl.disposition, decl.errno)
    if action is not None:
        flt.add_rule(action, decl.nr)


@functools.cache
def build_filter(trace_denied: bool = False) -> bytes:
    """The filter program as raw BPF (struct sock_filter array), ready for seccomp(2)."""
    flt = sc.SyscallFilter(sc.NOTIFY)
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)  # x32 and foreign arches: never
    flt.set_attr(sc.Attr.CTL_NNP, 0)  # the launcher sets no_new_privs itself
    flt.set_attr(sc.Attr.CTL_OPTIMIZE, 2)  # binary tree: fewer instructions per trapped call
    for decl in SYSCALLS.values():
        _add(flt, decl, trace_denied=trace_denied)
    with tempfile.TemporaryFile() as f:
        flt.export_bpf(f)
        f.seek(0)
        return f.read()


def pfc() -> str:
    """Human-readable filter (libseccomp's pseudo-code), for debugging."""
    flt = sc.SyscallFilter(sc.NOTIFY)
    for decl in SYSCALLS.values():
        _add(flt, decl)
    with tempfile.TemporaryFile("w+") as f:
        flt.export_pfc(f)
        f.seek(0)
        return f.read()
