"""Guest memory access through a kept-open /proc/PID/mem (cheapest for small transfers).

Faults (unmapped or unreadable guest addresses) become EFAULT, as the kernel would report.
The fd is bound to one address space: reopen after the process execs.
"""
from __future__ import annotations

import errno
import os

from linuxabi.abi import errno as E

PATH_MAX = 4096
_PAGE = 4096
_FIRST_CHUNK = 256


def _efault() -> OSError:
    return OSError(errno.EFAULT, os.strerror(errno.EFAULT))


class GuestMemory:
    def __init__(self, host_pid: int) -> None:
        self.host_pid = host_pid
        self.fd = os.open(f"/proc/{host_pid}/mem", os.O_RDWR | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def read(self, addr: int, size: int) -> bytes:
        if size == 0:
            return b""
        if addr == 0 or addr < 0 or addr + size > 1 << 47:
            raise _efault()
        try:
            data = os.pread(self.fd, size, addr)
        except OSError:
            raise _efault() from None
        if len(data) != size:
            raise _efault()
        return data

    def write(self, addr: int, data: bytes) -> None:
        if not data:
            return
        if addr == 0 or addr < 0 or addr + len(data) > 1 << 47:
            raise _efault()
        try:
            n = os.pwrite(self.fd, data, addr)
        except OSError:
            raise _efault() from None
        if n != len(data):
            raise _efault()

    def read_cstr(self, addr: int, limit: int = PATH_MAX) -> bytes:
        """A NUL-terminated string; ENAMETOOLONG past ``limit`` bytes (the kernel's PATH_MAX rule)."""
        if addr <= 0 or addr >= 1 << 47:
            raise _efault()
        out = b""
        chunk = min(_FIRST_CHUNK, _PAGE - (addr % _PAGE))
        while True:
            try:
                data = os.pread(self.fd, chunk, addr)
            except OSError:
                data = b""
            if not data:
                raise _efault()
            nul = data.find(b"\0")
            if nul >= 0:
                out += data[:nul]
                if len(out) >= limit:
                    raise OSError(E.ENAMETOOLONG, os.strerror(E.ENAMETOOLONG))
                return out
            out += data
            if len(out) >= limit:
                raise OSError(E.ENAMETOOLONG, os.strerror(E.ENAMETOOLONG))
            addr += len(data)
            chunk = min(_PAGE, _PAGE - (addr % _PAGE)) or _PAGE

    def read_ptr_array(self, addr: int, limit: int = 1 << 17) -> list[int]:
        """A NULL-terminated array of pointers (argv/envp)."""
        out: list[int] = []
        while True:
            raw = self.read(addr, 8)
            p = int.from_bytes(raw, "little")
            if p == 0:
                return out
            out.append(p)
            if len(out) > limit:
                raise OSError(E.E2BIG, os.strerror(E.E2BIG))
            addr += 8
