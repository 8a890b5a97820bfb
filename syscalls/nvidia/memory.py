"""The two memories a shimmed ioctl touches, and the host ioctl itself.

- Guest memory: read once, checked, written back. ``GuestMem`` is the protocol the shim needs;
  ``ProcMaps`` answers "is [addr, addr+len) mapped in the guest with these permissions" from
  /proc/PID/maps. The check matters because /proc/PID/mem writes even to read-only mappings
  (the kernel's FOLL_FORCE), where the driver's own copy_to_user would have failed.
- Translator memory (``Arena``): every struct the driver sees lives here, so the driver never
  dereferences a guest address and the guest cannot change a struct after it was checked.
- ``libc_ioctl``: the real host ioctl(2) on the translator's own fd, with a raw address.
"""
from __future__ import annotations

import ctypes
import errno as E
import os
from bisect import bisect_right
from typing import Callable, Protocol

HostIoctl = Callable[[int, int, int], int]  # (host fd, request, arg address) -> result; OSError on failure


class GuestMem(Protocol):
    def read(self, addr: int, size: int) -> bytes: ...
    def write(self, addr: int, data: bytes) -> None: ...
    def mapped(self, addr: int, size: int, write: bool) -> bool: ...


class ProcMaps:
    """Mapped ranges of a process, from /proc/PID/maps, re-read when asked about an address it
    does not cover (mappings change between calls; a stale "mapped" would be the dangerous
    answer, so a hit is re-confirmed by a fresh read unless ``cache_hits``)."""

    def __init__(self, pid: int, *, cache_hits: bool = False) -> None:
        self.pid = pid
        self.cache_hits = cache_hits
        self._starts: list[int] = []
        self._ranges: list[tuple[int, int, str]] = []

    def refresh(self) -> None:
        ranges = []
        with open(f"/proc/{self.pid}/maps", "rb") as f:
            for line in f:
                parts = line.split(None, 5)
                lo, hi = parts[0].split(b"-")
                ranges.append((int(lo, 16), int(hi, 16), parts[1].decode()))
        ranges.sort()
        self._ranges = ranges
        self._starts = [r[0] for r in ranges]

    def _covered(self, addr: int, size: int, write: bool) -> bool:
        end = addr + size
        pos = addr
        while pos < end:
            i = bisect_right(self._starts, pos) - 1
            if i < 0:
                return False
            lo, hi, perms = self._ranges[i]
            if not (lo <= pos < hi) or perms[0] != "r" or (write and perms[1] != "w"):
                return False
            pos = hi
        return True

    def mapped(self, addr: int, size: int, write: bool) -> bool:
        if addr <= 0 or size < 0 or addr + size > 1 << 47:
            return False
        if size == 0:
            return True
        if self.cache_hits and self._ranges and self._covered(addr, size, write):
            return True
        self.refresh()
        return self._covered(addr, size, write)


class CheckedMemory:
    """GuestMem over any reader/writer (the platform's Task.mem) plus a ProcMaps check."""

    def __init__(self, mem: object, maps: ProcMaps) -> None:
        self._mem = mem
        self._maps = maps

    def read(self, addr: int, size: int) -> bytes:
        return self._mem.read(addr, size)  # type: ignore[attr-defined, no-any-return]

    def write(self, addr: int, data: bytes) -> None:
        self._mem.write(addr, data)  # type: ignore[attr-defined]

    def mapped(self, addr: int, size: int, write: bool) -> bool:
        return self._maps.mapped(addr, size, write)


class Arena:
    """Translator-side buffers for one ioctl; kept alive until the call is done."""

    def __init__(self) -> None:
        self._bufs: list[ctypes.Array[ctypes.c_char]] = []

    def put(self, data: bytes, size: int | None = None) -> int:
        """A new buffer of ``size`` bytes (default len(data)) holding ``data``; its address."""
        n = max(len(data), size or 0, 1)
        buf = ctypes.create_string_buffer(n)
        ctypes.memmove(buf, data, len(data))
        self._bufs.append(buf)
        return ctypes.addressof(buf)

    @staticmethod
    def get(addr: int, size: int) -> bytes:
        return ctypes.string_at(addr, size)

    @staticmethod
    def set(addr: int, data: bytes) -> None:
        ctypes.memmove(addr, data, len(data))

    def owns(self, addr: int, size: int) -> bool:
        for b in self._bufs:
            a = ctypes.addressof(b)
            if a <= addr and addr + size <= a + ctypes.sizeof(b):
                return True
        return False


_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
_libc.ioctl.restype = ctypes.c_int


def libc_ioctl(fd: int, request: int, addr: int) -> int:
    """ioctl(2) on the translator's own fd; OSError(errno) on failure."""
    r = _libc.ioctl(fd, request, addr)
    if r < 0:
        e = ctypes.get_errno() or E.EIO
        raise OSError(e, os.strerror(e))
    return r
