"""The seccomp filter, derived from syscalls.table and compiled by libseccomp.

Default action: trap to the translator (so an undeclared number is answered ENOSYS by the
dispatcher, never allowed). NATIVE -> allow; DENIED -> errno in the kernel; execve/execveat ->
RET_TRACE (the call must be rewritten under ptrace); argument rules -> conditional allow/errno,
anything else falls through to the trap where the dispatcher applies the same rules.

The table is first turned into a plain list of rules (``filter_rules``); libseccomp compiles
that list, and the program is kept in the cache directory under a digest of the list, so a
start whose table has not changed loads it instead of loading libseccomp (its bindings run
``ldconfig`` twice on import: ~15 ms of every start).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

from caps.digest import sha256_hex
from syscalls.base import Cmp, Disposition, SyscallDecl, Trap
from syscalls.table import SYSCALLS

# Marks our own RET_TRACE stops (a guest's own filter may use RET_TRACE too).
TRACE_MARKER = 0x1AB1

# A rule: (syscall number, action, condition). Action: ("allow",), ("errno", N) or
# ("trace", TRACE_MARKER); condition: None, or (arg index, "eq"/"masked_eq", mask, value).
Action = tuple
Rule = tuple[int, Action, "tuple[int, str, int, int] | None"]

# Changes whenever the way rules become a program changes (the attributes set in _compile).
_FORMAT = "linuxabi-filter-1: default notify, badarch kill-process, nnp off, optimize 2"
_SOCK_FILTER_SIZE = 8  # struct sock_filter


def _action(disposition: Disposition, errno: int) -> Action | None:
    if disposition is Disposition.NATIVE:
        return ("allow",)
    if disposition is Disposition.DENIED:
        return ("errno", errno)
    return None  # translated: the default action (notify) already traps it


def _decl_rules(decl: SyscallDecl, trace_denied: bool, features: frozenset[str]) -> list[Rule]:
    if decl.native_in(features):
        return [(decl.nr, ("allow",), None)]
    out: list[Rule] = []
    for rule in decl.rules:
        action = _action(rule.disposition, rule.errno)
        if action is None:
            continue
        if rule.cmp is Cmp.MASKED_EQ:
            out.append((decl.nr, action, (rule.arg, "masked_eq", rule.mask, rule.value)))
        else:
            out.append((decl.nr, action, (rule.arg, "eq", 0, rule.value)))
    if decl.rules:
        return out  # the unmatched case is decided by the dispatcher
    if decl.trap is Trap.TRACE:
        return [(decl.nr, ("trace", TRACE_MARKER), None)]
    if trace_denied and decl.disposition is Disposition.DENIED:
        return []  # the tracer wants to see (and count) denials: the dispatcher gives the same errno
    action = _action(decl.disposition, decl.errno)
    return [(decl.nr, action, None)] if action is not None else []


def filter_rules(trace_denied: bool = False, features: frozenset[str] = frozenset()) -> list[Rule]:
    """Every rule of the filter, in table order: what libseccomp is given. ``features``: what
    the sandbox has of those a declaration may depend on ("outside")."""
    return [r for decl in SYSCALLS.values() for r in _decl_rules(decl, trace_denied, features)]


def _compile(rules: list[Rule]):  # noqa: ANN202 - a pyseccomp.SyscallFilter
    import pyseccomp as sc  # only when compiling: see the module docstring

    flt = sc.SyscallFilter(sc.NOTIFY)
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)  # x32 and foreign arches: never
    flt.set_attr(sc.Attr.CTL_NNP, 0)  # the launcher sets no_new_privs itself
    flt.set_attr(sc.Attr.CTL_OPTIMIZE, 2)  # binary tree: fewer instructions per trapped call
    for nr, action, cond in rules:
        kind = action[0]
        act = sc.ALLOW if kind == "allow" else sc.ERRNO(action[1]) if kind == "errno" else sc.TRACE(action[1])
        if cond is None:
            flt.add_rule(act, nr)
        elif cond[1] == "masked_eq":
            flt.add_rule(act, nr, sc.Arg(cond[0], sc.MASKED_EQ, cond[2], cond[3]))
        else:
            flt.add_rule(act, nr, sc.Arg(cond[0], sc.EQ, cond[3]))
    return flt


def compile_filter(trace_denied: bool = False, features: frozenset[str] = frozenset()) -> bytes:
    """The program as libseccomp compiles it now (no cache)."""
    import tempfile

    with tempfile.TemporaryFile() as f:
        _compile(filter_rules(trace_denied, features)).export_bpf(f)
        f.seek(0)
        return f.read()


def _cache_path(rules: list[Rule]) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = sha256_hex(repr((_FORMAT, rules)).encode())[:40]
    return Path(base) / "linuxabi" / "filters" / f"{digest}.bpf"


def build_filter(trace_denied: bool = False, features: frozenset[str] = frozenset()) -> bytes:
    """The filter program as raw BPF (struct sock_filter array), ready for seccomp(2)."""
    # One memo key per program however it is asked for (positionally, by keyword, defaults):
    # a warm server's spare asks first, its run's launch again.
    return _build_filter(bool(trace_denied), frozenset(features))


@functools.cache
def _build_filter(trace_denied: bool, features: frozenset[str]) -> bytes:
    rules = filter_rules(trace_denied, features)
    path = _cache_path(rules)
    try:
        prog = path.read_bytes()
        if prog and len(prog) % _SOCK_FILTER_SIZE == 0:
            return prog
    except OSError:
        pass
    prog = compile_filter(trace_denied, features)
    try:  # best effort: a read-only cache only costs the next start the compile
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(prog)
        tmp.replace(path)  # readers never see half a program
    except OSError:
        pass
    return prog


build_filter.cache_clear = _build_filter.cache_clear  # type: ignore[attr-defined]


def pfc() -> str:
    """Human-readable filter (libseccomp's pseudo-code), for debugging."""
    import tempfile

    with tempfile.TemporaryFile("w+") as f:
        _compile(filter_rules()).export_pfc(f)
        f.seek(0)
        return f.read()
