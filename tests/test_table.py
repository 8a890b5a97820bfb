"""The syscall table is complete, and the filter and the report are derived from it."""
from __future__ import annotations

import re
import subprocess
import sys

from linuxabi.abi import errno as E
from linuxabi.abi import x86_64
from linuxabi.compat import report
from linuxabi.host import filter as seccomp_filter
from linuxabi.host.filter import build_filter, pfc
from syscalls.base import Disposition
from syscalls.table import BY_NAME, SYSCALLS

from oracle import REPO


def test_every_x86_64_syscall_is_declared() -> None:
    assert set(SYSCALLS) == set(x86_64.NAMES)
    for decl in SYSCALLS.values():
        if decl.disposition is Disposition.TRANSLATED:
            assert decl.handler is not None, decl.name
        if decl.disposition is Disposition.DENIED:
            assert decl.errno > 0, decl.name


def test_dangerous_syscalls_are_denied() -> None:
    for name in ("mount", "umount2", "pivot_root", "ptrace", "bpf", "perf_event_open", "io_uring_setup",
                 "unshare", "setns", "open_by_handle_at", "kexec_load", "init_module", "clone3"):
        assert BY_NAME[name].disposition is Disposition.DENIED, name


def _filter_actions() -> dict[str, str]:
    """syscall name -> the action libseccomp's pseudo-code gives it without argument checks."""
    text = pfc()
    actions: dict[str, str] = {}
    for m in re.finditer(r'if \(\$syscall == (\d+)\)\n(\s+)action (\S+);', text):
        actions[x86_64.NAMES.get(int(m.group(1)), m.group(1))] = m.group(3)
    return actions


def test_filter_is_derived_from_the_table() -> None:
    assert len(build_filter()) % 8 == 0 and len(build_filter()) > 8 * 100
    actions = _filter_actions()
    assert actions["read"] == "ALLOW" and actions["mmap"] == "ALLOW"
    assert actions["mount"] == f"ERRNO({E.EPERM})"
    assert actions["execve"].startswith("TRACE")
    # translated calls are not mentioned: the default action (notify) traps them
    assert "openat" not in actions and "newfstatat" not in actions
    for name, decl in BY_NAME.items():
        if decl.rules or name not in actions:
            continue
        if decl.disposition is Disposition.NATIVE:
            assert actions[name] == "ALLOW", name
        elif decl.disposition is Disposition.DENIED:
            assert actions[name] == f"ERRNO({decl.errno})", name


def test_rules_resolve_like_the_filter() -> None:
    clone = BY_NAME["clone"]
    assert clone.resolve((0x11 | 0x1200000, 0, 0, 0, 0, 0))[0] is Disposition.NATIVE  # fork-like
    assert clone.resolve((0x10000000 | 0x11, 0, 0, 0, 0, 0)) == (Disposition.DENIED, E.EPERM)  # CLONE_NEWUSER
    ioctl = BY_NAME["ioctl"]
    assert ioctl.resolve((1, 0x5401, 0, 0, 0, 0))[0] is Disposition.NATIVE  # TCGETS
    assert ioctl.resolve((1, 0x5412, 0, 0, 0, 0))[0] is Disposition.TRANSLATED  # TIOCSTI


def test_compat_report_lists_every_syscall() -> None:
    text = report()
    for name in x86_64.NR:
        assert re.search(rf"^\s*\d+\s+{re.escape(name)}\s", text, re.M), name
    out = subprocess.run([sys.executable, "-m", "linuxabi", "compat", "--summary"], capture_output=True,
                         text=True, cwd=REPO, check=True).stdout
    counts = dict(re.findall(r"^\s+(native|translated|denied|argument-dependent)\s+(\d+)$", out, re.M))
    assert sum(int(v) for v in counts.values()) == len(x86_64.NR)


def test_a_call_served_only_for_a_feature_is_native_without_it() -> None:
    """getsockname/getpeername are translated only where -p or an uplink put something outside
    behind a guest's socket: elsewhere the filter allows them. accept is native everywhere."""
    assert BY_NAME["getpeername"].native_without == "outside"
    actions = _filter_actions()
    assert actions["getpeername"] == actions["getsockname"] == actions["accept4"] == actions["accept"] == "ALLOW"
    outside = seccomp_filter.filter_rules(features=frozenset({"outside"}))
    trapped = {nr for nr in (BY_NAME["getsockname"].nr, BY_NAME["getpeername"].nr)}
    assert not any(nr in trapped for nr, _, _ in outside)                  # no ALLOW rule: trapped
    assert any(nr == BY_NAME["accept4"].nr for nr, _, _ in outside)
    assert seccomp_filter._cache_path(outside) != seccomp_filter._cache_path(seccomp_filter.filter_rules())
