"""The server's pages that warm runs write, learned from the runs served and copied by each
spare before its client comes (linuxabi/server.py).

A spare is a fork of the server: the first write to each page the two share costs a
copy-on-write fault (~3.5 µs here), and Python writes to every object it touches (reference
counts, the adaptive interpreter's counters), so a run of `busybox true` copies ~1,300 pages
that the spare's own warm-up did not (~5 ms of the client's wait). Once its client has its
status, a served child reports the server's pages it now owns alone (the exclusive bit of
/proc/self/pagemap); the server keeps their union, and the spares it forks afterwards copy
those pages ahead with MADV_POPULATE_WRITE (Linux 5.14; one call per run of pages, no fault
each). On an older kernel, or without pagemap, nothing is copied ahead and runs are as before.
"""
from __future__ import annotations

import os
import re
import struct
from typing import Callable

from linuxabi.abi.x86_64 import NR

from .host.libc import raw_syscall

PAGE = 4096
MADV_POPULATE_WRITE = 23
STOP_EVERY = 256    # pages (~0.25 ms of copying here) between two looks at populate's `stop`
REPORT_MAX = 4096  # one pipe write of at most PIPE_BUF bytes: reports from children never interleave
_RUN = struct.Struct("=QI")  # first page number, page count
_COUNT = struct.Struct("=I")
_MAX_RUNS = (REPORT_MAX - _COUNT.size) // _RUN.size
# A pagemap entry's top byte: bit 7 is "present" (bit 63), bit 0 "exclusively mapped" (bit 56).
_OWNED = bytes(1 if b & 0x81 == 0x81 else 0 for b in range(256))
_RUNS_OF_ONES = re.compile(b"\x01+")

Run = tuple[int, int]  # (first page number, page count)


def writable_ranges() -> list[tuple[int, int]]:
    """This process's private writable mappings, (start, end) addresses: the pages a fork shares
    copy-on-write with its parent."""
    out = []
    with open("/proc/self/maps", "rb") as f:
        for line in f:
            fields = line.split()
            perms = fields[1]
            if perms[1:2] == b"w" and perms[3:4] == b"p":
                lo, _, hi = fields[0].partition(b"-")
                out.append((int(lo, 16), int(hi, 16)))
    return out


def owned_runs(ranges: list[tuple[int, int]]) -> list[Run]:
    """The pages within ``ranges`` that this process alone maps (a fork's copies), as runs."""
    runs: list[Run] = []
    fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for lo, hi in ranges:
            first = lo // PAGE
            entries = os.pread(fd, (hi - lo) // PAGE * 8, first * 8)
            owned = entries[7::8].translate(_OWNED)
            runs.extend((first + m.start(), m.end() - m.start()) for m in _RUNS_OF_ONES.finditer(owned))
    finally:
        os.close(fd)
    return runs


def encode(runs: list[Run]) -> bytes:
    """A report of at most REPORT_MAX bytes: runs less than a gap apart are merged (copying a
    few pages too many ahead costs less than a fault each), the gap doubled until they fit."""
    gap = 0
    while len(runs) > _MAX_RUNS:
        gap = gap * 2 or 1
        runs = merge(runs, gap)
    return _COUNT.pack(len(runs)) + b"".join(_RUN.pack(*r) for r in runs)


def merge(runs: list[Run], gap: int = 0) -> list[Run]:
    """Sorted runs, those that overlap or lie at most ``gap`` pages apart made one."""
    out: list[list[int]] = []
    for first, count in sorted(runs):
        if out and first <= out[-1][0] + out[-1][1] + gap:
            last = out[-1]
            last[1] = max(last[1], first + count - last[0])
        else:
            out.append([first, count])
    return [(a, b) for a, b in out]


def within(runs: list[Run], ranges: list[tuple[int, int]]) -> list[Run]:
    """The parts of sorted ``runs`` inside sorted ``ranges`` (start, end addresses): what may be
    populated now (the server may have mapped something else, a shared file, where a run was)."""
    out: list[Run] = []
    i = 0
    for lo, hi in ranges:
        first, last = lo // PAGE, hi // PAGE
        while i < len(runs) and runs[i][0] + runs[i][1] <= first:
            i += 1
        j = i
        while j < len(runs) and runs[j][0] < last:
            a = max(runs[j][0], first)
            b = min(runs[j][0] + runs[j][1], last)
            out.append((a, b - a))
            j += 1
    return out


def decode_all(data: bytes) -> list[Run]:
    """The runs of the reports in ``data`` (whole reports, as pipe reads of them return); what
    does not parse as a report ends the reading."""
    runs: list[Run] = []
    at = 0
    while at + _COUNT.size <= len(data):
        (n,) = _COUNT.unpack_from(data, at)
        end = at + _COUNT.size + n * _RUN.size
        if n > _MAX_RUNS or end > len(data):
            break
        runs.extend(_RUN.unpack_from(data, at + _COUNT.size + i * _RUN.size) for i in range(n))
        at = end
    return runs


def populate(runs: list[Run], stop: Callable[[], bool] | None = None) -> int:
    """Copy ``runs`` of our pages now (what the first write to each would do, fault by fault);
    returns the pages copied. A run that is no longer mapped, or cannot be (a kernel without
    MADV_POPULATE_WRITE says EINVAL to each), is skipped. ``stop`` is asked every
    STOP_EVERY pages: once it says so, the rest is left to fault when written."""
    done = since = 0
    for first, count in runs:
        while count > 0:
            if stop is not None and since >= STOP_EVERY:
                if stop():
                    return done
                since = 0
            n = count if stop is None else min(count, STOP_EVERY)
            try:
                raw_syscall(NR["madvise"], first * PAGE, n * PAGE, MADV_POPULATE_WRITE)
                done += n
            except OSError:
                pass
            first, count, since = first + n, count - n, since + n
    return done
