"""What procfs files say, generated from the translator's process table and the host kernel.

The host's /proc/<host pid>/... is read for what the host kernel owns (state, times, memory,
the command line in the guest's memory); every pid in it is rewritten to the sandbox's pid
namespace, every path to the guest's view, and nothing of the supervisor shows (TracerPid: 0).
"""
from __future__ import annotations

import os
import time
from typing import Callable, Protocol


class ProcInfo(Protocol):
    pid: int
    host_pid: int
    ppid: int
    exe: bytes
    comm: bytes
    kernel_comm: bytes


def _comm(p: ProcInfo, host_comm: bytes) -> bytes:
    """The name Linux would show: the exec'd path's basename, unless the task renamed itself."""
    if p.comm and host_comm == p.kernel_comm:
        return p.comm
    return host_comm


def _read_host(host_pid: int, name: str) -> bytes:
    with open(f"/proc/{host_pid}/{name}", "rb") as f:
        return f.read()


def _ns_field(status: bytes, key: bytes) -> int | None:
    for line in status.splitlines():
        if line.startswith(key + b":"):
            parts = line.split()
            return int(parts[-1]) if len(parts) > 1 else None
    return None


def stat_text(p: ProcInfo, caller_tid: int | None = None) -> bytes:
    """``caller_tid``: the host thread whose call is reading this; Linux shows it running,
    while the host shows it sleeping in the trapped call."""
    raw = _read_host(p.host_pid, "stat")
    status = _read_host(p.host_pid, "status")
    head, _, rest = raw.rpartition(b") ")
    comm = _comm(p, head.split(b" (", 1)[1])
    fields = rest.split()
    # fields[0] is state; then ppid, pgrp, session, tty_nr, tpgid
    if caller_tid == p.host_pid:
        fields[0] = b"R"
    fields[1] = str(p.ppid).encode()
    fields[2] = str(_ns_field(status, b"NSpgid") or 0).encode()
    fields[3] = str(_ns_field(status, b"NSsid") or 0).encode()
    fields[5] = b"-1" if fields[5] == b"-1" else b"0"
    return str(p.pid).encode() + b" (" + comm + b") " + b" ".join(fields) + b"\n"


_STATUS_REWRITE = {b"Tgid", b"Pid", b"PPid", b"TracerPid", b"NStgid", b"NSpid", b"NSpgid", b"NSsid"}


def render_mask(cpus: frozenset[int], like: bytes) -> bytes:
    """``cpus`` as /proc/PID/status writes Cpus_allowed, in the layout of the host's value
    ``like`` (the same width, comma-separated groups of 32 bits)."""
    digits = len(like.replace(b",", b""))
    text = format(sum(1 << c for c in cpus), "x").zfill(digits).encode()[-digits:]
    out, pos = [], 0
    for group in like.split(b","):
        out.append(text[pos:pos + len(group)])
        pos += len(group)
    return b",".join(out)


def render_list(cpus: frozenset[int]) -> bytes:
    """``cpus`` as Cpus_allowed_list writes them: "0-3,6"."""
    runs: list[str] = []
    ordered = sorted(cpus)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        runs.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(runs).encode()


def status_text(p: ProcInfo, tid: int | None = None, caller_tid: int | None = None,
                cpus_of: "Callable[[int], frozenset[int] | None] | None" = None) -> bytes:
    """``cpus_of``: a thread's CPU set as the guest knows it, where the translator runs the
    thread on fewer (None: the host's lines are the guest's)."""
    shown = p.host_pid if tid is None else tid
    status = _read_host(shown, "status")
    cpus = cpus_of(shown) if cpus_of is not None else None
    values = {
        b"Tgid": p.pid, b"Pid": p.pid if tid is None else _ns_field(status, b"NSpid"), b"PPid": p.ppid,
        b"TracerPid": 0, b"NStgid": p.pid, b"NSpid": p.pid if tid is None else _ns_field(status, b"NSpid"),
        b"NSpgid": _ns_field(status, b"NSpgid"), b"NSsid": _ns_field(status, b"NSsid"),
    }
    out = []
    for line in status.splitlines():
        key = line.split(b":", 1)[0]
        if key in _STATUS_REWRITE:
            out.append(key + b":\t" + str(values[key] or 0).encode())
        elif key == b"Name":
            out.append(b"Name:\t" + _comm(p, line.split(b"\t", 1)[-1]))
        elif key == b"State" and caller_tid == shown:
            out.append(b"State:\tR (running)")  # see stat_text
        elif key == b"Cpus_allowed" and cpus is not None:
            out.append(b"Cpus_allowed:\t" + render_mask(cpus, line.split(b"\t", 1)[-1].strip()))
        elif key == b"Cpus_allowed_list" and cpus is not None:
            out.append(b"Cpus_allowed_list:\t" + render_list(cpus))
        elif key == b"Umask" and getattr(p, "fs", None) is not None:
            out.append(b"Umask:\t%04o" % p.fs.umask)  # the guest's, which the translator keeps
        else:
            out.append(line)
    return b"\n".join(out) + b"\n"


def cmdline_text(p: ProcInfo) -> bytes:
    return _read_host(p.host_pid, "cmdline")


def environ_text(p: ProcInfo) -> bytes:
    return _read_host(p.host_pid, "environ")


def maps_text(p: ProcInfo, path_of_host_file: Callable[[bytes], bytes | None]) -> bytes:
    """The host's maps with file paths translated (image files, memfds) to guest paths."""
    out = []
    for line in _read_host(p.host_pid, "maps").splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith(b"/"):
            guest = path_of_host_file(parts[5])
            parts[5] = guest if guest is not None else b"/[unknown]"
            line = b" ".join(parts[:5]).ljust(73) + b" " + parts[5]
        out.append(line)
    return b"\n".join(out) + (b"\n" if out else b"")


def meminfo_text() -> bytes:
    with open("/proc/meminfo", "rb") as f:
        return f.read()


def cpuinfo_text() -> bytes:
    with open("/proc/cpuinfo", "rb") as f:
        return f.read()


def loadavg_text(nprocs: int, last_pid: int) -> bytes:
    with open("/proc/loadavg", "rb") as f:
        parts = f.read().split()
    return b" ".join(parts[:3]) + f" 1/{nprocs} {last_pid}\n".encode()


def uptime_text(started_monotonic: float) -> bytes:
    """Uptime of the sandbox (its 'boot' is its start), idle time scaled like Linux's."""
    up = max(0.0, time.monotonic() - started_monotonic)
    return f"{up:.2f} {up * (os.cpu_count() or 1):.2f}\n".encode()


def mounts_text(mounts: list[tuple[bytes, bytes, bytes, bytes]]) -> bytes:
    """mounts: (source, mount point, fstype, options)."""
    return b"".join(b"%s %s %s %s 0 0\n" % m for m in mounts)


_MOUNT_ID_BASE = 21  # ids as a fresh Linux mount namespace would number them: arbitrary but stable


def mountinfo_text(mounts: list[tuple[bytes, bytes, bytes, bytes]]) -> bytes:
    """/proc/PID/mountinfo: each mount with its id, its parent's id and a device number."""
    out = []
    for i, (source, point, fstype, opts) in enumerate(mounts):
        parent = i
        for j, (_, other, _, _) in enumerate(mounts[:i]):
            if other == b"/" or point == other or point.startswith(other + b"/"):
                parent = j  # the last (deepest) earlier mount that contains this one
        mid, pid = _MOUNT_ID_BASE + i, _MOUNT_ID_BASE + parent
        mnt_opts, _, _ = opts.partition(b",relatime")
        out.append(b"%d %d 0:%d / %s %s,relatime - %s %s %s\n"
                   % (mid, pid, 30 + i, point, mnt_opts, fstype, source, mnt_opts.split(b",")[0]))
    return b"".join(out)


def limits_text(p: ProcInfo) -> bytes:
    """The guest's resource limits are its own (set natively): the host's view is exact."""
    return _read_host(p.host_pid, "limits")


def auxv_text(p: ProcInfo) -> bytes:
    return _read_host(p.host_pid, "auxv")
