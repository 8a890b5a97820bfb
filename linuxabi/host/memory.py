"""Guest memory access: reads through a kept-open /proc/TID/mem, writes with
process_vm_writev.

/proc/PID/mem writes with FOLL_FORCE: it would write into the guest's read-only and
executable pages (a stat buffer pointing at its code would overwrite the code) where Linux's
copy_to_user gives EFAULT. process_vm_writev respects the page protections as the kernel's
own copy does. Reads keep /proc/TID/mem, ~0.6 us cheaper than process_vm_readv here; the one
difference that leaves is that a PROT_NONE page reads where Linux would say EFAULT.
Faults (unmapped, or for writes unwritable, guest addresses) become EFAULT. The read fd is
bound to one address space: the platform opens a new one when the process execs, on the
address space's fifth read. The first four go through process_vm_readv: most programs a shell
starts make a call or two that read memory and exit, and opening the fd costs more than that.
"""
from __future__ import annotations

import errno
import os
from typing import Callable

from linuxabi.abi import errno as E


try:  # compiled by `make setup` (linuxabi/host/vm_build.py)
    from linuxabi.host._vm import ffi as _ffi
    from linuxabi.host._vm import lib as _vm

    _vm_write = _vm.vm_write
    _vm_read = _vm.vm_read
except (ImportError, AttributeError):  # the same calls through the ABI-mode libc bindings
    from .libc import ffi as _ffi
    from .libc import vm_read as _vm_read
    from .libc import vm_write as _vm_write

PATH_MAX = 4096
_PAGE = 4096
_FIRST_CHUNK = 256
_READS_BEFORE_FD = 4  # reads of a new address space through process_vm_readv
_BUF = _ffi.new("char[]", _PAGE)  # process_vm_readv's landing buffer (single-threaded loop)


def _efault() -> OSError:
    return OSError(errno.EFAULT, os.strerror(errno.EFAULT))


def open_mem(host_tid: int) -> int:
    """A read fd for the address space of ``host_tid`` (valid while that address space is)."""
    return os.open(f"/proc/{host_tid}/mem", os.O_RDONLY | os.O_CLOEXEC)


class GuestMemory:
    """One thread's view: reads through its process's /proc mem fd (``fd``, owned by the
    caller; or -1 and ``open_fd`` to get it once reads go past a few), writes through the
    thread itself."""

    __slots__ = ("host_pid", "fd", "_open_fd", "_reads")

    def __init__(self, host_pid: int, fd: int, open_fd: "Callable[[], int] | None" = None) -> None:
        self.host_pid = host_pid
        self.fd = fd
        self._open_fd = open_fd
        self._reads = 0

    def _pread(self, size: int, addr: int) -> bytes:
        """What os.pread(self.fd, size, addr) reads (raising OSError alike), the fd opened on
        the address space's fifth read."""
        fd = self.fd
        if fd < 0:
            self._reads += 1
            if self._reads > _READS_BEFORE_FD and self._open_fd is not None:
                fd = self.fd = self._open_fd()
            else:
                out: list[bytes] = []
                while size > 0:  # page by page: a short read stops at the first bad page
                    n = min(size, _PAGE - (addr % _PAGE))
                    got = _vm_read(self.host_pid, addr, _BUF, n)
                    if got < 0:
                        if out:
                            break
                        raise OSError(-got, os.strerror(-got))
                    out.append(_ffi.buffer(_BUF, got)[:])
                    if got < n:
                        break
                    addr += n
                    size -= n
                return b"".join(out)
        return os.pread(fd, size, addr)

    def read(self, addr: int, size: int) -> bytes:
        if size == 0:
            return b""
        if addr == 0 or addr < 0 or addr + size > 1 << 47:
            raise _efault()
        try:
            data = os.pread(self.fd, size, addr) if self.fd >= 0 else self._pread(size, addr)
        except OSError:
            raise _efault() from None
        if len(data) != size:
            raise _efault()
        return data

    def write(self, addr: int, data: bytes) -> None:
        if not data:
            return
        n = len(data)
        if addr == 0 or addr < 0 or addr + n > 1 << 47:
            raise _efault()
        if type(data) is not bytes:
            data = _ffi.from_buffer(data)  # type: ignore[assignment]
        if _vm_write(self.host_pid, addr, data, n) != n:
            raise _efault()

    def read_cstr(self, addr: int, limit: int = PATH_MAX) -> bytes:
        """A NUL-terminated string; ENAMETOOLONG past ``limit`` bytes (the kernel's PATH_MAX rule)."""
        if addr <= 0 or addr >= 1 << 47:
            raise _efault()
        chunk = min(_FIRST_CHUNK, _PAGE - (addr % _PAGE))
        try:  # the common case first: the whole string in the first chunk
            data = os.pread(self.fd, chunk, addr) if self.fd >= 0 else self._pread(chunk, addr)
        except OSError:
            raise _efault() from None
        nul = data.find(b"\0")
        if 0 <= nul < limit:
            return data[:nul]
        if not data:
            raise _efault()
        if nul >= 0 or len(data) >= limit:
            raise OSError(E.ENAMETOOLONG, os.strerror(E.ENAMETOOLONG))
        out = data
        addr += len(data)
        chunk = min(_PAGE, _PAGE - (addr % _PAGE)) or _PAGE
        while True:
            try:
                data = self._pread(chunk, addr)
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
